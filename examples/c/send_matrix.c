/* send_matrix: connect, join, send a 3x3 matrix to another group, receive it
 * there, print it.
 *
 * Build (after installing libdime, see docs/c-api.md):
 *     cc send_matrix.c $(pkg-config --cflags --libs dime) -o send_matrix
 * Run against a server (`dime -l unix:/tmp/dime.sock`):
 *     ./send_matrix unix:/tmp/dime.sock
 */
#include <stdio.h>

#include <dime.h>

/* Prints the failed call and the library's reason, then returns 1. */
static int fail(const char *what)
{
    fprintf(stderr, "send_matrix: %s: %s\n", what, dime_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    const char *address = argc > 1 ? argv[1] : "unix:/tmp/dime.sock";
    const char *sender_groups[] = {"sender"};
    const char *receiver_groups[] = {"receiver"};
    /* Column-major: data[i + 3*j] is row i, column j. */
    double data[9] = {1, 4, 7, 2, 5, 8, 3, 6, 9};
    size_t dims[2] = {3, 3};
    dime_client *sender = NULL, *receiver = NULL;
    dime_value *matrix = NULL;
    dime_messages *received = NULL;
    const dime_value *got = NULL;
    const char *name = NULL;
    const double *elems = NULL;
    const void *bytes = NULL;
    const size_t *got_dims = NULL;
    size_t nbytes = 0, count = 0, i, j;
    int rc = 1;

    if (dime_connect(address, &sender) != DIME_STATUS_OK) return fail("connect");
    if (dime_connect(address, &receiver) != DIME_STATUS_OK) {
        rc = fail("connect");
        goto done;
    }
    if (dime_join(sender, sender_groups, 1) != DIME_STATUS_OK ||
        dime_join(receiver, receiver_groups, 1) != DIME_STATUS_OK) {
        rc = fail("join");
        goto done;
    }

    /* Borrow `data` (no copy); it outlives `matrix`. */
    if (dime_value_new_matrix_borrowed(DIME_CLASS_DOUBLE, 2, dims, data, &matrix) !=
        DIME_STATUS_OK) {
        rc = fail("matrix");
        goto done;
    }
    if (dime_send(sender, "receiver", "M", matrix) != DIME_STATUS_OK) {
        rc = fail("send");
        goto done;
    }

    if (dime_wait(receiver, 5000, &count) != DIME_STATUS_OK ||
        dime_sync(receiver, DIME_SYNC_ALL, &received) != DIME_STATUS_OK ||
        dime_messages_get(received, 0, &name, &got) != DIME_STATUS_OK) {
        rc = fail("receive");
        goto done;
    }
    if (dime_matrix_dims(got, &got_dims) != DIME_STATUS_OK ||
        dime_matrix_data(got, &bytes, &nbytes) != DIME_STATUS_OK) {
        rc = fail("read matrix");
        goto done;
    }
    elems = (const double *)bytes;
    printf("%s (%zu x %zu):\n", name, got_dims[0], got_dims[1]);
    for (i = 0; i < got_dims[0]; i++) {
        for (j = 0; j < got_dims[1]; j++) {
            printf(" %4g", elems[i + got_dims[0] * j]);
        }
        printf("\n");
    }
    rc = 0;

done:
    /* Every free function accepts NULL, so cleanup needs no checks. */
    dime_messages_free(received);
    dime_value_free(matrix);
    dime_client_free(receiver);
    dime_client_free(sender);
    return rc;
}
