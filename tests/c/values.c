/* Every kind of value goes through a live server and comes back intact.
 *
 * usage: values ADDRESS
 *
 * One client joins group "self" and sends each value to it (a sender in the
 * group receives its own messages), then syncs it back and checks class,
 * shape and bits. A second client checks broadcast and send_many. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "check.h"

static dime_client *client;

/* Sends v to "self" and returns what comes back (owned), or NULL. */
static dime_value *round_trip(const dime_value *v)
{
    dime_messages *msgs = NULL;
    dime_value *back = NULL;
    const char *name = NULL;
    const dime_value *peek = NULL;
    if (dime_send(client, "self", "x", v) != DIME_STATUS_OK) {
        CHECK(!"send failed");
        return NULL;
    }
    if (dime_sync(client, 1, &msgs) != DIME_STATUS_OK || dime_messages_len(msgs) != 1) {
        CHECK(!"sync did not return one message");
        dime_messages_free(msgs);
        return NULL;
    }
    if (dime_messages_get(msgs, 0, &name, &peek) != DIME_STATUS_OK || strcmp(name, "x") != 0) {
        CHECK(!"message is not named x");
    }
    if (dime_messages_take(msgs, 0, &back) != DIME_STATUS_OK) {
        back = NULL;
    }
    /* The taken slot is now null; freeing the list leaves `back` alone. */
    CHECK(dime_value_kind(peek) == DIME_KIND_NULL);
    dime_messages_free(msgs);
    return back;
}

/* Round-trips a scalar and checks kind and exact bits via memcmp. */
#define SCALAR_CASE(ctor, kind, getter, ctype, x) \
    do { \
        ctype in_ = (x), out_; \
        dime_value *v_ = ctor(in_); \
        dime_value *b_ = round_trip(v_); \
        CHECK(dime_value_kind(b_) == (kind)); \
        CHECK_OK(getter(b_, &out_)); \
        CHECK(memcmp(&in_, &out_, sizeof in_) == 0); \
        dime_value_free(v_); \
        dime_value_free(b_); \
    } while (0)

static void scalars(void)
{
    dime_value *v, *b;
    bool flag;
    float fre, fim;
    double dre, dim;

    v = dime_value_new_null();
    b = round_trip(v);
    CHECK(dime_value_kind(b) == DIME_KIND_NULL);
    dime_value_free(v);
    dime_value_free(b);

    v = dime_value_new_bool(true);
    b = round_trip(v);
    CHECK_OK(dime_value_get_bool(b, &flag));
    CHECK(flag == true);
    dime_value_free(v);
    dime_value_free(b);
    v = dime_value_new_bool(false);
    b = round_trip(v);
    CHECK_OK(dime_value_get_bool(b, &flag));
    CHECK(flag == false);
    dime_value_free(v);
    dime_value_free(b);

    SCALAR_CASE(dime_value_new_int8, DIME_KIND_INT8, dime_value_get_int8, int8_t, INT8_MIN);
    SCALAR_CASE(dime_value_new_int16, DIME_KIND_INT16, dime_value_get_int16, int16_t, INT16_MIN);
    SCALAR_CASE(dime_value_new_int32, DIME_KIND_INT32, dime_value_get_int32, int32_t, INT32_MIN);
    SCALAR_CASE(dime_value_new_int64, DIME_KIND_INT64, dime_value_get_int64, int64_t, INT64_MIN);
    SCALAR_CASE(dime_value_new_int64, DIME_KIND_INT64, dime_value_get_int64, int64_t, INT64_MAX);
    SCALAR_CASE(dime_value_new_uint8, DIME_KIND_UINT8, dime_value_get_uint8, uint8_t, UINT8_MAX);
    SCALAR_CASE(dime_value_new_uint16, DIME_KIND_UINT16, dime_value_get_uint16, uint16_t, UINT16_MAX);
    SCALAR_CASE(dime_value_new_uint32, DIME_KIND_UINT32, dime_value_get_uint32, uint32_t, UINT32_MAX);
    SCALAR_CASE(dime_value_new_uint64, DIME_KIND_UINT64, dime_value_get_uint64, uint64_t, UINT64_MAX);
    SCALAR_CASE(dime_value_new_single, DIME_KIND_SINGLE, dime_value_get_single, float, 1.5f);
    SCALAR_CASE(dime_value_new_double, DIME_KIND_DOUBLE, dime_value_get_double, double, -0.0);
    SCALAR_CASE(dime_value_new_double, DIME_KIND_DOUBLE, dime_value_get_double, double, NAN);
    SCALAR_CASE(dime_value_new_double, DIME_KIND_DOUBLE, dime_value_get_double, double, -INFINITY);
    SCALAR_CASE(dime_value_new_double, DIME_KIND_DOUBLE, dime_value_get_double, double, 0.1);

    v = dime_value_new_complex_single(1.25f, -2.5f);
    b = round_trip(v);
    CHECK(dime_value_kind(b) == DIME_KIND_COMPLEX_SINGLE);
    CHECK_OK(dime_value_get_complex_single(b, &fre, &fim));
    CHECK(fre == 1.25f && fim == -2.5f);
    dime_value_free(v);
    dime_value_free(b);

    /* A zero imaginary part stays complex. */
    v = dime_value_new_complex_double(3.0, 0.0);
    b = round_trip(v);
    CHECK(dime_value_kind(b) == DIME_KIND_COMPLEX_DOUBLE);
    CHECK_OK(dime_value_get_complex_double(b, &dre, &dim));
    CHECK(dre == 3.0 && dim == 0.0);
    dime_value_free(v);
    dime_value_free(b);
}

/* Checks that m is a matrix of class cls, shape dims, elements data. */
static void check_matrix(const dime_value *m, dime_class cls, size_t rank, const size_t *dims,
                         const void *data, size_t nbytes)
{
    dime_class got_cls = 0;
    size_t got_rank = 99, numel = 0, got_nbytes = 0;
    const size_t *got_dims = NULL;
    const void *got_data = NULL;
    CHECK(dime_value_kind(m) == DIME_KIND_MATRIX);
    CHECK_OK(dime_matrix_class(m, &got_cls));
    CHECK(got_cls == cls);
    CHECK_OK(dime_matrix_rank(m, &got_rank));
    CHECK(got_rank == rank);
    CHECK_OK(dime_matrix_dims(m, &got_dims));
    CHECK(rank == 0 || memcmp(got_dims, dims, rank * sizeof *dims) == 0);
    CHECK_OK(dime_matrix_numel(m, &numel));
    CHECK(numel * dime_class_size(cls) == nbytes);
    CHECK_OK(dime_matrix_data(m, &got_data, &got_nbytes));
    CHECK(got_nbytes == nbytes);
    CHECK(nbytes == 0 || memcmp(got_data, data, nbytes) == 0);
    /* Received buffers are malloc-aligned, good for any element class
     * (an empty one has a placeholder pointer that must not be read). */
    CHECK(nbytes == 0 || ((uintptr_t)got_data % 8) == 0);
}

static void matrices(void)
{
    static const dime_class classes[] = {
        DIME_CLASS_INT8,   DIME_CLASS_INT16,  DIME_CLASS_INT32,  DIME_CLASS_INT64,
        DIME_CLASS_UINT8,  DIME_CLASS_UINT16, DIME_CLASS_UINT32, DIME_CLASS_UINT64,
        DIME_CLASS_SINGLE, DIME_CLASS_DOUBLE, DIME_CLASS_COMPLEX_SINGLE,
        DIME_CLASS_COMPLEX_DOUBLE, DIME_CLASS_LOGICAL,
    };
    size_t dims23[2] = {2, 3};
    size_t dims234[3] = {2, 3, 4};
    size_t dims5[1] = {5};
    size_t dims03[2] = {0, 3};
    unsigned char bytes[2 * 3 * 4 * 16];
    size_t i, k;
    dime_value *v, *b;

    for (i = 0; i < sizeof bytes; i++) {
        bytes[i] = (unsigned char)(i * 37 + 11);
    }

    for (k = 0; k < sizeof classes / sizeof classes[0]; k++) {
        dime_class cls = classes[k];
        size_t nbytes = 6 * dime_class_size(cls);
        unsigned char data[6 * 16];
        memcpy(data, bytes, nbytes);
        if (cls == DIME_CLASS_LOGICAL) {
            for (i = 0; i < nbytes; i++) data[i] = (unsigned char)(i % 2);
        }
        if (cls == DIME_CLASS_SINGLE || cls == DIME_CLASS_COMPLEX_SINGLE) {
            for (i = 0; i < nbytes / 4; i++) {
                float f = (float)i - 2.5f;
                memcpy(data + 4 * i, &f, 4);
            }
        }
        if (cls == DIME_CLASS_DOUBLE || cls == DIME_CLASS_COMPLEX_DOUBLE) {
            for (i = 0; i < nbytes / 8; i++) {
                double d = (double)i / 3.0;
                memcpy(data + 8 * i, &d, 8);
            }
        }
        printf("# class %u: copying and borrowing 2x3\n", (unsigned)cls);
        CHECK(dime_class_size(cls) > 0);

        REQUIRE_OK(dime_value_new_matrix(cls, 2, dims23, data, &v));
        check_matrix(v, cls, 2, dims23, data, nbytes);
        b = round_trip(v);
        check_matrix(b, cls, 2, dims23, data, nbytes);
        dime_value_free(v);
        dime_value_free(b);

        REQUIRE_OK(dime_value_new_matrix_borrowed(cls, 2, dims23, data, &v));
        {
            const void *p = NULL;
            size_t n = 0;
            CHECK_OK(dime_matrix_data(v, &p, &n));
            CHECK(p == (const void *)data); /* no copy */
        }
        b = round_trip(v);
        check_matrix(b, cls, 2, dims23, data, nbytes);
        dime_value_free(v);
        dime_value_free(b);
    }

    /* 3-D, column-major order preserved. */
    {
        double d[24];
        for (i = 0; i < 24; i++) d[i] = (double)i;
        REQUIRE_OK(dime_value_new_matrix(DIME_CLASS_DOUBLE, 3, dims234, d, &v));
        b = round_trip(v);
        check_matrix(b, DIME_CLASS_DOUBLE, 3, dims234, d, sizeof d);
        dime_value_free(v);
        dime_value_free(b);
    }
    /* Rank 1 (numpy (N,)) and rank 0 (numpy 0-d). */
    {
        int32_t d[5] = {1, -2, 3, -4, 5};
        REQUIRE_OK(dime_value_new_matrix(DIME_CLASS_INT32, 1, dims5, d, &v));
        b = round_trip(v);
        check_matrix(b, DIME_CLASS_INT32, 1, dims5, d, sizeof d);
        dime_value_free(v);
        dime_value_free(b);
    }
    {
        double d = 42.0;
        REQUIRE_OK(dime_value_new_matrix(DIME_CLASS_DOUBLE, 0, NULL, &d, &v));
        b = round_trip(v);
        check_matrix(b, DIME_CLASS_DOUBLE, 0, NULL, &d, sizeof d);
        dime_value_free(v);
        dime_value_free(b);
    }
    /* Empty 0x3 int8 keeps class and shape; data may be NULL when empty. */
    REQUIRE_OK(dime_value_new_matrix(DIME_CLASS_INT8, 2, dims03, NULL, &v));
    b = round_trip(v);
    check_matrix(b, DIME_CLASS_INT8, 2, dims03, NULL, 0);
    dime_value_free(v);
    dime_value_free(b);

    /* A copied logical matrix stores any non-zero byte as 1. */
    {
        unsigned char in[6] = {0, 2, 255, 0, 1, 7};
        unsigned char want[6] = {0, 1, 1, 0, 1, 1};
        REQUIRE_OK(dime_value_new_matrix(DIME_CLASS_LOGICAL, 2, dims23, in, &v));
        b = round_trip(v);
        check_matrix(b, DIME_CLASS_LOGICAL, 2, dims23, want, 6);
        dime_value_free(v);
        dime_value_free(b);
    }

    /* Taking the buffer out: the caller owns it, the value turns null. */
    {
        double d[6] = {1, 2, 3, 4, 5, 6};
        void *taken = NULL;
        size_t n = 0;
        const void *inside = NULL;
        REQUIRE_OK(dime_value_new_matrix(DIME_CLASS_DOUBLE, 2, dims23, d, &v));
        b = round_trip(v);
        CHECK_OK(dime_matrix_data(b, &inside, &n));
        CHECK_OK(dime_matrix_take_data(b, &taken, &n));
        CHECK(n == sizeof d && memcmp(taken, d, n) == 0);
        CHECK(taken == inside); /* same block: no copy */
        CHECK(dime_value_kind(b) == DIME_KIND_NULL);
        dime_data_free(taken, n);
        dime_value_free(v);
        dime_value_free(b);
    }

    /* A clone of a borrowing matrix owns its elements. */
    {
        double d[6] = {1, 2, 3, 4, 5, 6};
        double keep[6];
        dime_value *copy = NULL;
        memcpy(keep, d, sizeof d);
        REQUIRE_OK(dime_value_new_matrix_borrowed(DIME_CLASS_DOUBLE, 2, dims23, d, &v));
        CHECK_OK(dime_value_clone(v, &copy));
        dime_value_free(v);
        memset(d, 0, sizeof d);
        check_matrix(copy, DIME_CLASS_DOUBLE, 2, dims23, keep, sizeof keep);
        dime_value_free(copy);
    }

    /* A row-major (C-order) buffer arrives column-major, transposed. */
    {
        int32_t rows[2][3] = {{1, 2, 3}, {4, 5, 6}};
        int32_t col[6] = {1, 4, 2, 5, 3, 6};
        dime_value *back;
        REQUIRE_OK(dime_value_new_matrix_borrowed_row_major(DIME_CLASS_INT32, 2, dims23, rows, &v));
        back = round_trip(v);
        check_matrix(back, DIME_CLASS_INT32, 2, dims23, col, sizeof col);
        dime_value_free(back);
        dime_value_free(v);
    }
}

/* A row-major matrix travels row-major to a client that negotiated
 * layouts (dime_connect's default) and column-major to one that did not
 * (the server converts); either way dime_matrix_data is column-major. */
static void layouts(const char *address)
{
    static const size_t dims23[] = {2, 3};
    int32_t rows[2][3] = {{1, 2, 3}, {4, 5, 6}};
    int32_t col[6] = {1, 4, 2, 5, 3, 6}, got[6];
    enum { R = 400, C = 100 }; /* 320 kB: through shared memory, received as a view */
    static const size_t big_dims[] = {R, C};
    double *big = malloc(sizeof(double) * R * C), *big_col = malloc(sizeof(double) * R * C);
    dime_value *v, *back;
    dime_layout layout = 99;
    const void *p = NULL;
    void *taken = NULL;
    size_t n = 0, i, j;
    dime_client *classic = NULL;
    dime_connect_options *options = NULL;
    const char *groups[] = {"classic"};
    dime_messages *msgs = NULL;

    REQUIRE_OK(dime_value_new_matrix_borrowed_row_major(DIME_CLASS_INT32, 2, dims23, rows, &v));
    CHECK_OK(dime_matrix_layout(v, &layout));
    CHECK(layout == DIME_LAYOUT_ROW_MAJOR);
    CHECK_OK(dime_matrix_stored_data(v, &p, &n));
    CHECK(p == (const void *)rows && n == sizeof rows);
    back = round_trip(v);
    CHECK_OK(dime_matrix_layout(back, &layout));
    CHECK(layout == DIME_LAYOUT_ROW_MAJOR);
    CHECK_OK(dime_matrix_stored_data(back, &p, &n));
    CHECK(n == sizeof rows && memcmp(p, rows, n) == 0);
    check_matrix(back, DIME_CLASS_INT32, 2, dims23, col, sizeof col);
    CHECK_OK(dime_matrix_copy_column_major(back, got, sizeof got));
    CHECK(memcmp(got, col, sizeof col) == 0);
    CHECK(dime_matrix_copy_column_major(back, got, sizeof got - 1) == DIME_STATUS_INVALID_ARGUMENT);
    CHECK_OK(dime_matrix_take_stored_data(back, &taken, &n));
    CHECK(n == sizeof rows && memcmp(taken, rows, n) == 0);
    CHECK(dime_value_kind(back) == DIME_KIND_NULL);
    dime_data_free(taken, n);
    dime_value_free(back);

    /* A client that asked for DiME2 only gets the converted matrix. */
    REQUIRE_OK(dime_connect_options_new(&options));
    CHECK(dime_connect_options_set_flags(options, 0x80) == DIME_STATUS_INVALID_ARGUMENT);
    CHECK_OK(dime_connect_options_set_flags(options, DIME_CONNECT_DIME2));
    REQUIRE_OK(dime_connect_with(address, options, &classic));
    dime_connect_options_free(options);
    REQUIRE_OK(dime_join(classic, groups, 1));
    CHECK_OK(dime_send(client, "classic", "x", v));
    CHECK_OK(dime_sync(classic, -1, &msgs));
    CHECK(dime_messages_len(msgs) == 1);
    CHECK_OK(dime_messages_take(msgs, 0, &back));
    CHECK_OK(dime_matrix_layout(back, &layout));
    CHECK(layout == DIME_LAYOUT_COLUMN_MAJOR);
    check_matrix(back, DIME_CLASS_INT32, 2, dims23, col, sizeof col);
    dime_value_free(back);
    dime_messages_free(msgs);
    dime_client_free(classic);
    dime_value_free(v);

    /* A large one: the received elements are a view of the message, taken
     * without a copy as stored, or transposed by dime_matrix_take_data. */
    for (i = 0; i < R; i++)
        for (j = 0; j < C; j++)
            big[i * C + j] = big_col[j * R + i] = (double)(i * 1000 + j);
    REQUIRE_OK(dime_value_new_matrix_borrowed_row_major(DIME_CLASS_DOUBLE, 2, big_dims, big, &v));
    back = round_trip(v);
    check_matrix(back, DIME_CLASS_DOUBLE, 2, big_dims, big_col, sizeof(double) * R * C);
    CHECK_OK(dime_matrix_take_stored_data(back, &taken, &n));
    CHECK(n == sizeof(double) * R * C && memcmp(taken, big, n) == 0);
    ((double *)taken)[0] = -1; /* the caller owns it: writable */
    dime_data_free(taken, n);
    dime_value_free(back);
    back = round_trip(v);
    CHECK_OK(dime_matrix_take_data(back, &taken, &n));
    CHECK(n == sizeof(double) * R * C && memcmp(taken, big_col, n) == 0);
    dime_data_free(taken, n);
    dime_value_free(back);
    dime_value_free(v);
    free(big);
    free(big_col);
}

static void strings(void)
{
    static const char text[] = "h\xc3\xa9llo \xf0\x9f\x98\x80"; /* héllo 😀 */
    static const char with_nul[] = {'a', '\0', 'b'};
    const char *p;
    size_t n;
    dime_value *v, *b;

    REQUIRE_OK(dime_value_new_string(text, strlen(text), &v));
    b = round_trip(v);
    CHECK(dime_value_kind(b) == DIME_KIND_STRING);
    CHECK_OK(dime_value_get_string(b, &p, &n));
    CHECK(n == strlen(text) && memcmp(p, text, n) == 0);
    dime_value_free(v);
    dime_value_free(b);

    /* Empty string stays a string, never null. */
    REQUIRE_OK(dime_value_new_string(NULL, 0, &v));
    b = round_trip(v);
    CHECK(dime_value_kind(b) == DIME_KIND_STRING);
    CHECK_OK(dime_value_get_string(b, &p, &n));
    CHECK(n == 0);
    dime_value_free(v);
    dime_value_free(b);

    REQUIRE_OK(dime_value_new_string(with_nul, 3, &v));
    b = round_trip(v);
    CHECK_OK(dime_value_get_string(b, &p, &n));
    CHECK(n == 3 && memcmp(p, with_nul, 3) == 0);
    dime_value_free(v);
    dime_value_free(b);
}

static void lists_and_maps(void)
{
    dime_value *list = dime_value_new_list();
    dime_value *inner = dime_value_new_list();
    dime_value *map = dime_value_new_map();
    dime_value *s, *b, *taken;
    const dime_value *item, *key;
    size_t n, dims[2] = {1, 2};
    int64_t i64;
    double d, md[2] = {7.0, 8.0};
    const char *p;
    dime_value *m;

    CHECK_OK(dime_value_list_append(list, dime_value_new_int64(1)));
    REQUIRE_OK(dime_value_new_string("two", 3, &s));
    CHECK_OK(dime_value_list_append(list, s));
    CHECK_OK(dime_value_list_append(inner, dime_value_new_null()));
    CHECK_OK(dime_value_list_append(list, inner));
    REQUIRE_OK(dime_value_new_matrix(DIME_CLASS_DOUBLE, 2, dims, md, &m));
    CHECK_OK(dime_value_list_append(list, m));

    b = round_trip(list);
    CHECK(dime_value_kind(b) == DIME_KIND_LIST);
    CHECK_OK(dime_value_list_len(b, &n));
    CHECK(n == 4);
    CHECK_OK(dime_value_list_get(b, 0, &item));
    CHECK_OK(dime_value_get_int64(item, &i64));
    CHECK(i64 == 1);
    CHECK_OK(dime_value_list_get(b, 1, &item));
    CHECK_OK(dime_value_get_string(item, &p, &n));
    CHECK(n == 3 && memcmp(p, "two", 3) == 0);
    CHECK_OK(dime_value_list_get(b, 2, &item));
    CHECK_OK(dime_value_list_len(item, &n));
    CHECK(n == 1);
    CHECK_OK(dime_value_list_take(b, 3, &taken));
    check_matrix(taken, DIME_CLASS_DOUBLE, 2, dims, md, sizeof md);
    CHECK_OK(dime_value_list_get(b, 3, &item));
    CHECK(dime_value_kind(item) == DIME_KIND_NULL);
    CHECK_STATUS(dime_value_list_get(b, 4, &item), DIME_STATUS_OUT_OF_RANGE);
    dime_value_free(taken);
    dime_value_free(b);
    dime_value_free(list);

    /* Map: string keys, a replaced key keeps its place, a non-string key. */
    CHECK_OK(dime_value_map_set(map, "a", dime_value_new_double(1.0)));
    CHECK_OK(dime_value_map_set(map, "b", dime_value_new_double(2.0)));
    CHECK_OK(dime_value_map_set(map, "a", dime_value_new_double(3.0)));
    CHECK_OK(dime_value_map_set_value(map, dime_value_new_int64(7), dime_value_new_bool(true)));
    b = round_trip(map);
    CHECK(dime_value_kind(b) == DIME_KIND_MAP);
    CHECK_OK(dime_value_map_len(b, &n));
    CHECK(n == 3);
    CHECK_OK(dime_value_map_key_at(b, 0, &key));
    CHECK_OK(dime_value_get_string(key, &p, &n));
    CHECK(n == 1 && p[0] == 'a');
    CHECK_OK(dime_value_map_value_at(b, 0, &item));
    CHECK_OK(dime_value_get_double(item, &d));
    CHECK(d == 3.0);
    CHECK_OK(dime_value_map_get(b, "b", &item));
    CHECK_OK(dime_value_get_double(item, &d));
    CHECK(d == 2.0);
    CHECK_OK(dime_value_map_key_at(b, 2, &key));
    CHECK_OK(dime_value_get_int64(key, &i64));
    CHECK(i64 == 7);
    CHECK_STATUS(dime_value_map_get(b, "zzz", &item), DIME_STATUS_NOT_FOUND);
    CHECK_ERROR_HAS("zzz");
    CHECK_OK(dime_value_map_take_at(b, 1, &taken));
    CHECK_OK(dime_value_get_double(taken, &d));
    CHECK(d == 2.0);
    dime_value_free(taken);
    dime_value_free(b);
    dime_value_free(map);
}

static void several_clients(const char *address)
{
    dime_client *other = NULL;
    dime_messages *msgs = NULL;
    const char *groups[] = {"other"};
    const char *names[] = {"p", "q"};
    const dime_value *values[2];
    dime_value *p = dime_value_new_int32(1), *q = dime_value_new_int32(2);
    const dime_value *got;
    const char *name;
    int32_t x;
    size_t n = 0;
    dime_value *devices = NULL;
    bool seen_self = false, seen_other = false;

    REQUIRE_OK(dime_connect(address, &other));
    REQUIRE_OK(dime_join(other, groups, 1));

    /* send_many to another group, in order. */
    values[0] = p;
    values[1] = q;
    CHECK_OK(dime_send_many(client, "other", names, values, 2));
    CHECK_OK(dime_wait(other, 5000, &n));
    CHECK(n == 2);
    CHECK_OK(dime_sync(other, DIME_SYNC_ALL, &msgs));
    CHECK(dime_messages_len(msgs) == 2);
    CHECK_OK(dime_messages_get(msgs, 1, &name, &got));
    CHECK(strcmp(name, "q") == 0);
    CHECK_OK(dime_value_get_int32(got, &x));
    CHECK(x == 2);
    dime_messages_free(msgs);

    /* broadcast reaches the other client, never the sender. */
    CHECK_OK(dime_broadcast(client, "b", p));
    CHECK_OK(dime_wait(other, 5000, &n));
    CHECK_OK(dime_sync(other, DIME_SYNC_ALL, &msgs));
    CHECK(dime_messages_len(msgs) == 1);
    dime_messages_free(msgs);
    CHECK_OK(dime_broadcast_many(other, names, values, 2));
    CHECK_OK(dime_sync(client, DIME_SYNC_ALL, &msgs));
    CHECK(dime_messages_len(msgs) == 2);
    dime_messages_free(msgs);
    CHECK_OK(dime_sync(other, DIME_SYNC_ALL, &msgs));
    CHECK(dime_messages_len(msgs) == 0);
    dime_messages_free(msgs);

    CHECK_OK(dime_devices(client, &devices));
    CHECK_OK(dime_value_list_len(devices, &n));
    while (n-- > 0) {
        const dime_value *s;
        const char *str;
        size_t len;
        if (dime_value_list_get(devices, n, &s) == DIME_STATUS_OK &&
            dime_value_get_string(s, &str, &len) == DIME_STATUS_OK) {
            seen_self = seen_self || (len == 4 && memcmp(str, "self", 4) == 0);
            seen_other = seen_other || (len == 5 && memcmp(str, "other", 5) == 0);
        }
    }
    CHECK(seen_self && seen_other);
    dime_value_free(devices);

    CHECK_OK(dime_leave(other, groups, 1));
    CHECK_OK(dime_close(other));
    dime_client_free(other);
    dime_value_free(p);
    dime_value_free(q);
}

/* A value whose encoding exceeds a frame's u32 payload length is refused
 * by the send with DIME_STATUS_INVALID_ARGUMENT (its length used to wrap
 * and desync the stream), and the client stays usable. 65 borrowed views
 * of one 64 MiB block encode to more than 4 GiB without that memory. */
static void too_large_to_send(void)
{
    const size_t n = (size_t)64 << 20;
    const size_t dims[] = {n};
    unsigned char *block = calloc(n, 1);
    dime_value *list = dime_value_new_list(), *small = NULL, *b;
    CHECK(list != NULL && block != NULL);
    for (int i = 0; block != NULL && i < 65; i++) {
        dime_value *view = NULL;
        REQUIRE_OK(dime_value_new_matrix_borrowed(DIME_CLASS_UINT8, 1, dims, block, &view));
        CHECK_OK(dime_value_list_append(list, view));
    }
    CHECK_STATUS(dime_send(client, "self", "x", list), DIME_STATUS_INVALID_ARGUMENT);
    CHECK_ERROR_HAS("too large");
    CHECK_ERROR_HAS("4294967295");
    dime_value_free(list);
    free(block);
    /* Nothing went out: the next message through is the small one. */
    small = dime_value_new_double(2.5);
    b = round_trip(small);
    {
        double x = 0;
        CHECK_OK(dime_value_get_double(b, &x));
        CHECK(x == 2.5);
    }
    dime_value_free(small);
    dime_value_free(b);
}

int main(int argc, char **argv)
{
    const char *groups[] = {"self"};
    if (argc != 2) {
        fprintf(stderr, "usage: %s ADDRESS\n", argv[0]);
        return 2;
    }
    CHECK(strcmp(dime_version(), DIME_VERSION_STRING) == 0);
    REQUIRE_OK(dime_connect(argv[1], &client));
    REQUIRE_OK(dime_join(client, groups, 1));
    scalars();
    matrices();
    layouts(argv[1]);
    strings();
    lists_and_maps();
    several_clients(argv[1]);
    too_large_to_send();
    CHECK_OK(dime_close(client));
    dime_client_free(client);
    return check_done();
}
