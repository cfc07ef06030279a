/* Row-major matrices in their own layout (dimeb_layout) and, on one host,
 * through shared memory, seen from C.
 *
 * usage: arrays UNIX_ADDRESS TCP_ADDRESS
 *
 * - dime_matrix_copy_column_major and dime_matrix_data of row-major
 *   matrices of every class, in shapes that are not multiples of the
 *   transpose's tile (1023x77, 77x1023, 33x31, 1xN, Nx1, 3-D), against a
 *   naive element-by-element reference;
 * - a large row-major matrix C -> C on the unix socket: it arrives
 *   row-major, its stored elements are the sender's bytes and lie in a
 *   shared-memory mapping (a "memfd:dime" line of /proc/self/maps), its
 *   column-major view and copy match the reference;
 * - the same over TCP: row-major, the same bytes, in the process's own
 *   memory; and to a TCP client that asked for DiME2 only, column-major
 *   (the server converted it).
 */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"

/* True if [p, p + n) lies inside one mapping of a dime shared-memory
 * segment in this process. */
static int in_shared_memory(const void *p, size_t n)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    int found = 0;
    if (!f)
        return 0;
    while (!found && fgets(line, sizeof line, f)) {
        uintptr_t lo, hi;
        if (strstr(line, "memfd:dime") && sscanf(line, "%" SCNxPTR "-%" SCNxPTR, &lo, &hi) == 2)
            found = (uintptr_t)p >= lo && (uintptr_t)p + n <= hi;
    }
    fclose(f);
    return found;
}

/* Fills `numel` elements of `size` bytes so that every element differs
 * from its neighbours in every byte position that matters (logical: 0/1). */
static void fill(unsigned char *buf, size_t numel, size_t size, int logical)
{
    size_t k, b;
    for (k = 0; k < numel; k++)
        for (b = 0; b < size; b++)
            buf[k * size + b] = logical ? (unsigned char)(k % 13 < 6)
                                        : (unsigned char)((k >> (8 * (b % 3))) ^ (k * 31) ^ (b * 17));
}

/* The column-major copy of row-major `src`, element by element. */
static void naive_column_major(const unsigned char *src, size_t rank, const size_t *dims,
                               size_t size, unsigned char *dst)
{
    size_t idx[8] = {0}, numel = 1, k, d;
    for (d = 0; d < rank; d++)
        numel *= dims[d];
    for (k = 0; k < numel; k++) {
        /* idx is the row-major index of element k (last axis fastest). */
        size_t off = 0, stride = 1;
        for (d = 0; d < rank; d++) {
            off += idx[d] * stride;
            stride *= dims[d];
        }
        memcpy(dst + off * size, src + k * size, size);
        for (d = rank; d-- > 0;) {
            if (++idx[d] < dims[d])
                break;
            idx[d] = 0;
        }
    }
}

/* The alignment of one element of class `cls` (a complex number's is its
 * parts'). */
static size_t align_of(dime_class cls)
{
    size_t size = dime_class_size(cls);
    return cls == DIME_CLASS_COMPLEX_SINGLE || cls == DIME_CLASS_COMPLEX_DOUBLE ? size / 2 : size;
}

static const dime_class CLASSES[] = {
    DIME_CLASS_INT8,   DIME_CLASS_UINT8,  DIME_CLASS_INT16,  DIME_CLASS_UINT16, DIME_CLASS_INT32,
    DIME_CLASS_UINT32, DIME_CLASS_INT64,  DIME_CLASS_UINT64, DIME_CLASS_SINGLE, DIME_CLASS_DOUBLE,
    DIME_CLASS_COMPLEX_SINGLE, DIME_CLASS_COMPLEX_DOUBLE, DIME_CLASS_LOGICAL,
};
#define N_CLASSES (sizeof CLASSES / sizeof CLASSES[0])

struct shape {
    size_t rank;
    size_t dims[4];
};

/* dime_matrix_copy_column_major and dime_matrix_data against the naive
 * transpose, for every class and shape, on a borrowed row-major matrix. */
static void copy_column_major_matches_reference(void)
{
    static const struct shape shapes[] = {
        {2, {1023, 77}}, {2, {77, 1023}}, {2, {33, 31}}, {2, {31, 33}}, {2, {1, 4099}},
        {2, {4099, 1}},  {2, {2, 3}},     {3, {5, 7, 9}}, {3, {31, 1, 33}}, {4, {3, 5, 2, 7}},
        {3, {65, 3, 67}},
    };
    size_t s, c;
    for (s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        for (c = 0; c < N_CLASSES; c++) {
            const struct shape *sh = &shapes[s];
            size_t size = dime_class_size(CLASSES[c]), numel = 1, d, nbytes, got_n = 0;
            unsigned char *src, *want, *got;
            const void *view = NULL;
            dime_value *v = NULL;
            dime_layout layout = 99;
            int same_as_reference;
            for (d = 0; d < sh->rank; d++)
                numel *= sh->dims[d];
            nbytes = numel * size;
            src = malloc(nbytes);
            want = malloc(nbytes);
            got = malloc(nbytes);
            fill(src, numel, size, CLASSES[c] == DIME_CLASS_LOGICAL);
            naive_column_major(src, sh->rank, sh->dims, size, want);
            REQUIRE_OK(dime_value_new_matrix_borrowed_row_major(CLASSES[c], sh->rank, sh->dims,
                                                                src, &v));
            memset(got, 0xAB, nbytes);
            same_as_reference = dime_matrix_copy_column_major(v, got, nbytes) == DIME_STATUS_OK
                 && memcmp(got, want, nbytes) == 0
                 && dime_matrix_data(v, &view, &got_n) == DIME_STATUS_OK && got_n == nbytes
                 && memcmp(view, want, nbytes) == 0
                 && dime_matrix_layout(v, &layout) == DIME_STATUS_OK;
            /* Shapes with one dimension above 1 are the same bytes either way. */
            {
                size_t above1 = 0;
                for (d = 0; d < sh->rank; d++)
                    above1 += sh->dims[d] > 1;
                same_as_reference = same_as_reference && layout == (above1 >= 2 ? DIME_LAYOUT_ROW_MAJOR : DIME_LAYOUT_COLUMN_MAJOR);
            }
            if (!same_as_reference)
                printf("# class %u, rank %zu, dims %zu x %zu x ...: column-major copy differs\n",
                       (unsigned)CLASSES[c], sh->rank, sh->dims[0], sh->dims[1]);
            CHECK(same_as_reference);
            dime_value_free(v);
            free(src);
            free(want);
            free(got);
        }
    }
}

/* Sends a large row-major matrix from `from` to group `group`, which
 * `to` joined, and checks what `to` receives: row-major (or, when
 * `want_row_major` is 0, converted to column-major by the server), the
 * right shape and elements, and in shared memory exactly when `shared`. */
static void large_row_major(dime_client *from, dime_client *to, const char *group,
                            dime_class cls, size_t rows, size_t cols, int want_row_major,
                            int shared, const char *what)
{
    size_t dims[2], size = dime_class_size(cls), numel = rows * cols, nbytes = numel * size;
    size_t n = 0, rank = 0;
    unsigned char *src = malloc(nbytes), *want = malloc(nbytes), *got = malloc(nbytes);
    dime_value *v = NULL, *back = NULL;
    dime_messages *msgs = NULL;
    const size_t *got_dims = NULL;
    const void *stored = NULL, *view = NULL;
    dime_layout layout = 99;
    dime_class got_cls = 0;
    void *taken = NULL;
    dims[0] = rows;
    dims[1] = cols;
    printf("# %s\n", what);
    fill(src, numel, size, cls == DIME_CLASS_LOGICAL);
    naive_column_major(src, 2, dims, size, want);
    REQUIRE_OK(dime_value_new_matrix_borrowed_row_major(cls, 2, dims, src, &v));
    CHECK_OK(dime_send(from, group, "m", v));
    REQUIRE_OK(dime_sync(to, 1, &msgs));
    CHECK(dime_messages_len(msgs) == 1);
    REQUIRE_OK(dime_messages_take(msgs, 0, &back));
    dime_messages_free(msgs);

    CHECK_OK(dime_matrix_class(back, &got_cls));
    CHECK(got_cls == cls);
    CHECK_OK(dime_matrix_rank(back, &rank));
    CHECK_OK(dime_matrix_dims(back, &got_dims));
    CHECK(rank == 2 && got_dims[0] == rows && got_dims[1] == cols);
    CHECK_OK(dime_matrix_layout(back, &layout));
    CHECK(layout == (want_row_major ? DIME_LAYOUT_ROW_MAJOR : DIME_LAYOUT_COLUMN_MAJOR));
    /* As stored: the sender's bytes (row-major), or the server's
     * column-major conversion. Strides follow from layout and dims. */
    CHECK_OK(dime_matrix_stored_data(back, &stored, &n));
    CHECK(n == nbytes && memcmp(stored, want_row_major ? src : want, nbytes) == 0);
    CHECK((uintptr_t)stored % align_of(cls) == 0);
    CHECK(in_shared_memory(stored, nbytes) == shared);
    /* Column-major: a copy in one pass, and the view dime_matrix_data keeps. */
    memset(got, 0xCD, nbytes);
    CHECK_OK(dime_matrix_copy_column_major(back, got, nbytes));
    CHECK(memcmp(got, want, nbytes) == 0);
    CHECK_OK(dime_matrix_data(back, &view, &n));
    CHECK(n == nbytes && memcmp(view, want, nbytes) == 0);
    /* Received elements are the receiver's own: writable once taken, and
     * the taken block outlives the value (and, for a mapping, its view). */
    CHECK_OK(dime_matrix_take_stored_data(back, &taken, &n));
    CHECK(n == nbytes && memcmp(taken, want_row_major ? src : want, nbytes) == 0);
    ((unsigned char *)taken)[0] ^= 1;
    dime_value_free(back);
    CHECK(((unsigned char *)taken)[1] == (want_row_major ? src : want)[1]);
    dime_data_free(taken, n);
    dime_value_free(v);
    free(src);
    free(want);
    free(got);
}

/* A value received in shared memory and freed after its broker has gone:
 * the release it writes meets a closed socket, which must be an ignored
 * error, not a SIGPIPE that kills this process (C does not ignore it). */
static void freed_after_the_broker_stopped(void)
{
    char dir[] = "/tmp/dime-arrays-XXXXXX", addr[64];
    const char *addrs[1] = {addr}, *gr[] = {"r"};
    dime_server *srv = NULL;
    dime_client *s = NULL, *r = NULL;
    dime_messages *msgs = NULL;
    dime_value *v = NULL, *back = NULL;
    size_t dims[2] = {600, 500}, numel = 600 * 500;
    double *src = malloc(numel * sizeof *src);
    const void *stored = NULL;
    size_t n = 0;
    printf("# a shared-memory value freed after the broker stopped\n");
    REQUIRE(mkdtemp(dir) != NULL);
    snprintf(addr, sizeof addr, "unix:%s/s", dir);
    fill((unsigned char *)src, numel, sizeof *src, 0);
    REQUIRE_OK(dime_server_start(addrs, 1, &srv));
    REQUIRE_OK(dime_connect(addr, &s));
    REQUIRE_OK(dime_connect(addr, &r));
    REQUIRE_OK(dime_join(r, gr, 1));
    REQUIRE_OK(dime_value_new_matrix_borrowed_row_major(DIME_CLASS_DOUBLE, 2, dims, src, &v));
    CHECK_OK(dime_send(s, "r", "m", v));
    REQUIRE_OK(dime_sync(r, 1, &msgs));
    REQUIRE(dime_messages_len(msgs) == 1);
    REQUIRE_OK(dime_messages_take(msgs, 0, &back));
    dime_messages_free(msgs);
    CHECK_OK(dime_matrix_stored_data(back, &stored, &n));
    CHECK(n == numel * sizeof *src && in_shared_memory(stored, n));
    dime_server_stop(srv);
    dime_value_free(back); /* writes shm_release to a closed socket */
    CHECK(1);              /* still running */
    dime_value_free(v);
    dime_close(s);
    dime_close(r);
    dime_client_free(s);
    dime_client_free(r);
    rmdir(dir);
    free(src);
}

int main(int argc, char **argv)
{
    dime_client *a = NULL, *b = NULL, *t = NULL, *old = NULL;
    const char *gb[] = {"b"}, *gt[] = {"t"}, *gold[] = {"old"};
    if (argc != 3) {
        fprintf(stderr, "usage: %s UNIX_ADDRESS TCP_ADDRESS\n", argv[0]);
        return 2;
    }
    copy_column_major_matches_reference();

    REQUIRE_OK(dime_connect(argv[1], &a));
    REQUIRE_OK(dime_connect(argv[1], &b));
    REQUIRE_OK(dime_join(b, gb, 1));
    REQUIRE_OK(dime_connect(argv[2], &t));
    REQUIRE_OK(dime_join(t, gt, 1));
    {
        dime_connect_options *dime2 = NULL;
        REQUIRE_OK(dime_connect_options_new(&dime2));
        REQUIRE_OK(dime_connect_options_set_flags(dime2, DIME_CONNECT_DIME2));
        REQUIRE_OK(dime_connect_with(argv[2], dime2, &old));
        dime_connect_options_free(dime2);
    }
    REQUIRE_OK(dime_join(old, gold, 1));

    /* 1023 x 301 doubles (2.4 MB), 1023 x 301 int16 (600 kB) and 1001 x 97
     * complex doubles (1.5 MB): through shared memory on the unix socket.
     * Twice each: the second reuses the sender's segment. */
    large_row_major(a, b, "b", DIME_CLASS_DOUBLE, 1023, 301, 1, 1, "unix: 1023x301 double");
    large_row_major(a, b, "b", DIME_CLASS_DOUBLE, 1023, 301, 1, 1, "unix: 1023x301 double again");
    large_row_major(a, b, "b", DIME_CLASS_INT16, 1023, 301, 1, 1, "unix: 1023x301 int16");
    large_row_major(a, b, "b", DIME_CLASS_COMPLEX_DOUBLE, 1001, 97, 1, 1,
                    "unix: 1001x97 complex double");
    /* Below the shared-memory threshold (65 kB): through the socket. */
    large_row_major(a, b, "b", DIME_CLASS_DOUBLE, 101, 81, 1, 0, "unix: 101x81 double (small)");
    /* Over TCP: no shared memory; the layout is negotiated all the same. */
    large_row_major(a, t, "t", DIME_CLASS_DOUBLE, 1023, 301, 1, 0, "unix -> tcp: 1023x301 double");
    large_row_major(t, b, "b", DIME_CLASS_SINGLE, 1023, 301, 1, 0, "tcp -> unix: 1023x301 single");
    /* A client that asked for DiME2 only: the server transposed it. */
    large_row_major(a, old, "old", DIME_CLASS_DOUBLE, 1023, 301, 0, 0,
                    "unix -> tcp DiME2 client: 1023x301 double, converted");

    freed_after_the_broker_stopped();

    CHECK_OK(dime_close(a));
    CHECK_OK(dime_close(b));
    CHECK_OK(dime_close(t));
    CHECK_OK(dime_close(old));
    dime_client_free(a);
    dime_client_free(b);
    dime_client_free(t);
    dime_client_free(old);
    return check_done();
}
