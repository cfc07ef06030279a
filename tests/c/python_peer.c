/* The C half of the C <-> Python test (see python_peer.py).
 *
 * usage: python_peer ADDRESS
 *
 * Joins group "c", waits until the Python client has joined "py", sends it
 * two matrices, then receives three from it and checks class, shape and
 * values (numpy's C order must arrive as column-major). */
#define _POSIX_C_SOURCE 200809L

#include <time.h>

#include "check.h"

/* True once some group named `name` exists on the server. */
static bool group_exists(dime_client *c, const char *name)
{
    dime_value *devices = NULL;
    size_t n = 0, i;
    bool found = false;
    if (dime_devices(c, &devices) != DIME_STATUS_OK) return false;
    if (dime_value_list_len(devices, &n) == DIME_STATUS_OK) {
        for (i = 0; i < n; i++) {
            const dime_value *s;
            const char *str;
            size_t len;
            if (dime_value_list_get(devices, i, &s) == DIME_STATUS_OK &&
                dime_value_get_string(s, &str, &len) == DIME_STATUS_OK &&
                len == strlen(name) && memcmp(str, name, len) == 0) {
                found = true;
            }
        }
    }
    dime_value_free(devices);
    return found;
}

/* Looks up message `name` in the received lists; checks class and shape. */
static const dime_value *expect_matrix(dime_messages *const *lists, size_t nlists,
                                       const char *name, dime_class cls, size_t rank,
                                       const size_t *dims)
{
    size_t l, i, got_rank = 0;
    dime_class got_cls = 0;
    const size_t *got_dims = NULL;
    for (l = 0; l < nlists; l++) for (i = 0; i < dime_messages_len(lists[l]); i++) {
        const char *n;
        const dime_value *v;
        if (dime_messages_get(lists[l], i, &n, &v) == DIME_STATUS_OK && strcmp(n, name) == 0) {
            printf("# %s\n", name);
            CHECK_OK(dime_matrix_class(v, &got_cls));
            CHECK(got_cls == cls);
            CHECK_OK(dime_matrix_rank(v, &got_rank));
            CHECK(got_rank == rank);
            CHECK_OK(dime_matrix_dims(v, &got_dims));
            CHECK(got_rank == rank && memcmp(got_dims, dims, rank * sizeof(size_t)) == 0);
            return v;
        }
    }
    CHECK(!"message missing");
    return NULL;
}

int main(int argc, char **argv)
{
    dime_client *c = NULL;
    dime_messages *lists[3] = {NULL, NULL, NULL};
    size_t nlists = 0;
    const char *groups[] = {"c"};
    const char *names[] = {"a", "b"};
    const dime_value *values[2];
    dime_value *a = NULL, *b = NULL;
    double a_data[6] = {1, 2, 3, 4, 5, 6};
    int16_t b_data[12];
    size_t a_dims[2] = {3, 2}, b_dims[3] = {2, 3, 2};
    size_t x_dims[2] = {2, 4}, y_dims[1] = {3}, z_dims[2] = {2, 2};
    int i;
    size_t total = 0, n;
    const void *data;

    if (argc != 2) {
        fprintf(stderr, "usage: %s ADDRESS\n", argv[0]);
        return 2;
    }
    for (i = 0; i < 12; i++) b_data[i] = (int16_t)i;

    REQUIRE_OK(dime_connect(argv[1], &c));
    REQUIRE_OK(dime_join(c, groups, 1));
    for (i = 0; i < 1000 && !group_exists(c, "py"); i++) {
        struct timespec ms10 = {0, 10 * 1000 * 1000};
        nanosleep(&ms10, NULL);
    }
    REQUIRE_OK(group_exists(c, "py") ? DIME_STATUS_OK : DIME_STATUS_TIMEOUT);

    REQUIRE_OK(dime_value_new_matrix_borrowed(DIME_CLASS_DOUBLE, 2, a_dims, a_data, &a));
    REQUIRE_OK(dime_value_new_matrix(DIME_CLASS_INT16, 3, b_dims, b_data, &b));
    values[0] = a;
    values[1] = b;
    CHECK_OK(dime_send_many(c, "py", names, values, 2));
    dime_value_free(a);
    dime_value_free(b);

    /* Collect x, y, z: Python pipelines its sends, so they may arrive over
     * several wait/sync rounds. */
    while (total < 3 && nlists < 3) {
        REQUIRE_OK(dime_wait(c, 20000, &n));
        REQUIRE_OK(dime_sync(c, DIME_SYNC_ALL, &lists[nlists]));
        total += dime_messages_len(lists[nlists]);
        nlists++;
    }
    CHECK(total == 3);

    {
        /* numpy [[1,2,3,4],[5,6,7,8]] column-major */
        int32_t want[8] = {1, 5, 2, 6, 3, 7, 4, 8};
        const dime_value *x = expect_matrix(lists, nlists, "x", DIME_CLASS_INT32, 2, x_dims);
        CHECK(x != NULL && dime_matrix_data(x, &data, &n) == DIME_STATUS_OK && n == sizeof want &&
              memcmp(data, want, n) == 0);
    }
    {
        float want[3] = {1.5f, -2.5f, 3.5f};
        const dime_value *y = expect_matrix(lists, nlists, "y", DIME_CLASS_SINGLE, 1, y_dims);
        CHECK(y != NULL && dime_matrix_data(y, &data, &n) == DIME_STATUS_OK && n == sizeof want &&
              memcmp(data, want, n) == 0);
    }
    {
        /* [[1+2j, 3-4j], [0-5j, 6]] column-major, (re, im) interleaved */
        double want[8] = {1, 2, 0, -5, 3, -4, 6, 0};
        const dime_value *z = expect_matrix(lists, nlists, "z", DIME_CLASS_COMPLEX_DOUBLE, 2, z_dims);
        CHECK(z != NULL && dime_matrix_data(z, &data, &n) == DIME_STATUS_OK && n == sizeof want &&
              memcmp(data, want, n) == 0);
    }
    for (i = 0; i < 3; i++) dime_messages_free(lists[i]);
    CHECK_OK(dime_close(c));
    dime_client_free(c);
    return check_done();
}
