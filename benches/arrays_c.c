/* The C side of benches/arrays.py: a float64 matrix from one C process to
 * another through the broker, timed from the sender's dime_send to the
 * receiver's dime_sync returning, against memcpy of the same bytes.
 *
 *   arrays_c recv ADDRESS ROUNDS        receives ROUNDS matrices, prints one
 *                                      line "seconds S" per round
 *   arrays_c send ADDRESS MB ROUNDS     sends them, each after the
 *                                      receiver's go-ahead
 *   arrays_c memcpy MB ROUNDS           prints the best memcpy time
 *
 * The sender lends its column-major buffer (dime_value_new_matrix_borrowed)
 * and sends it with a timestamp (CLOCK_MONOTONIC, the same clock in every
 * process); the receiver reads the elements through dime_matrix_data and
 * checks two of them, frees the message (releasing shared memory), then
 * tells the sender to go on. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dime.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void must(dime_status st, const char *what)
{
    if (st != DIME_STATUS_OK) {
        fprintf(stderr, "%s failed: %s\n", what, dime_last_error());
        exit(1);
    }
}

/* Waits for one message and returns the list holding it. */
static dime_messages *next_message(dime_client *c)
{
    dime_messages *m = NULL;
    size_t n = 0;
    for (;;) {
        must(dime_wait(c, DIME_WAIT_FOREVER, &n), "dime_wait");
        must(dime_sync(c, 1, &m), "dime_sync");
        if (dime_messages_len(m) > 0)
            return m;
        dime_messages_free(m);
    }
}

static int receive(const char *address, int rounds)
{
    dime_client *c = NULL;
    const char *groups[] = {"c_recv"};
    dime_value *go = dime_value_new_bool(true);
    int i;
    must(dime_connect(address, &c), "dime_connect");
    must(dime_join(c, groups, 1), "dime_join");
    /* The sender may not have joined its group yet. */
    for (i = 0; dime_send(c, "c_send", "go", go) != DIME_STATUS_OK; i++) {
        struct timespec pause = {0, 10000000};
        if (i == 3000)
            must(DIME_STATUS_TIMEOUT, "waiting for the sender");
        nanosleep(&pause, NULL);
    }
    for (i = 0; i < rounds; i++) {
        dime_messages *m = next_message(c);
        double t1 = now(), t0 = 0;
        const char *name = NULL;
        const dime_value *v = NULL, *ts = NULL;
        const double *x = NULL;
        size_t nbytes = 0;
        /* The timestamp comes first, then the matrix. */
        must(dime_messages_get(m, 0, &name, &ts), "dime_messages_get");
        must(dime_value_get_double(ts, &t0), "timestamp");
        dime_messages_free(m);
        m = next_message(c);
        t1 = now();
        must(dime_messages_get(m, 0, &name, &v), "dime_messages_get");
        must(dime_matrix_data(v, (const void **)&x, &nbytes), "dime_matrix_data");
        if (x[0] != 0.5 || x[nbytes / 8 - 1] != (double)(nbytes / 8 - 1) + 0.5) {
            fprintf(stderr, "wrong elements\n");
            return 1;
        }
        printf("seconds %.6f\n", t1 - t0);
        fflush(stdout);
        dime_messages_free(m);
        must(dime_send(c, "c_send", "go", go), "dime_send");
    }
    dime_value_free(go);
    dime_client_free(c);
    return 0;
}

static int send(const char *address, size_t mb, int rounds)
{
    dime_client *c = NULL;
    const char *groups[] = {"c_send"};
    size_t n = mb * 1000000 / 8, i, dims[2];
    double *x = malloc(n * sizeof *x);
    dime_value *m = NULL;
    int r;
    if (x == NULL)
        return 2;
    for (i = 0; i < n; i++)
        x[i] = (double)i + 0.5;
    dims[0] = 1000;
    dims[1] = n / 1000;
    must(dime_connect(address, &c), "dime_connect");
    must(dime_join(c, groups, 1), "dime_join");
    must(dime_value_new_matrix_borrowed(DIME_CLASS_DOUBLE, 2, dims, x, &m), "matrix");
    for (r = 0; r < rounds; r++) {
        dime_messages *go = next_message(c);
        dime_value *t = NULL;
        dime_messages_free(go);
        t = dime_value_new_double(now());
        must(dime_send(c, "c_recv", "t0", t), "dime_send");
        must(dime_send(c, "c_recv", "x", m), "dime_send");
        dime_value_free(t);
    }
    dime_messages_free(next_message(c));
    dime_value_free(m);
    dime_client_free(c);
    free(x);
    return 0;
}

static int copy(size_t mb, int rounds)
{
    size_t n = mb * 1000000;
    char *a = malloc(n), *b = malloc(n);
    double best = 1e9;
    int r;
    if (a == NULL || b == NULL)
        return 2;
    memset(a, 1, n);
    memset(b, 2, n); /* both faulted in: memcpy at memory speed */
    for (r = 0; r < rounds; r++) {
        double t0 = now();
        memcpy(b, a, n);
        t0 = now() - t0;
        if (t0 < best)
            best = t0;
    }
    printf("memcpy %.6f %d\n", best, b[n / 2]);
    free(a);
    free(b);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "recv") == 0)
        return receive(argv[2], atoi(argv[3]));
    if (argc == 5 && strcmp(argv[1], "send") == 0)
        return send(argv[2], (size_t)atol(argv[3]), atoi(argv[4]));
    if (argc == 4 && strcmp(argv[1], "memcpy") == 0)
        return copy((size_t)atol(argv[2]), atoi(argv[3]));
    fprintf(stderr, "usage: %s recv ADDRESS ROUNDS | send ADDRESS MB ROUNDS | memcpy MB ROUNDS\n",
            argv[0]);
    return 2;
}
