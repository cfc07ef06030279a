/* Tuple spaces through the C API: out / in / rd / inp / rdp / count, every
 * kind of pattern field (exact value, any, type names, matrix class and
 * rank, numeric ranges), pattern validation, and blocking calls that time
 * out or are woken by another connection's out.
 *
 * usage: tuples ADDRESS */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <time.h>

#include "check.h"
#include "clock.h"
#include "same_value.h"

/* A tuple (list value) of n fields, taking ownership of each. */
static dime_value *tuple(size_t n, ...)
{
    dime_value *t = dime_value_new_list();
    va_list ap;
    size_t i;
    va_start(ap, n);
    for (i = 0; i < n; i++) CHECK_OK(dime_value_list_append(t, va_arg(ap, dime_value *)));
    va_end(ap);
    return t;
}

/* Puts a tuple and frees it. */
static void out_and_free(dime_client *c, const char *space, dime_value *t)
{
    CHECK_OK(dime_out(c, space, t));
    dime_value_free(t);
}

/* Adds an exact string field. */
static void add_str(dime_pattern *p, const char *s)
{
    dime_value *v = str_value(s);
    CHECK_OK(dime_pattern_add_value(p, v));
    /* The pattern holds a copy, so the original can go at once. */
    dime_value_free(v);
}

/* The number of stored tuples matching p, or (size_t)-1 on failure. */
static size_t count(dime_client *c, const char *space, const dime_pattern *p)
{
    size_t n = 0;
    if (dime_count(c, space, p, &n) != DIME_STATUS_OK) return (size_t)-1;
    return n;
}

/* Field `i` of a tuple, borrowed. */
static const dime_value *field(const dime_value *t, size_t i)
{
    const dime_value *f = NULL;
    if (dime_value_list_get(t, i, &f) != DIME_STATUS_OK) return NULL;
    return f;
}

static int64_t i64_field(const dime_value *t, size_t i)
{
    int64_t x = INT64_MIN;
    if (dime_value_get_int64(field(t, i), &x) != DIME_STATUS_OK) return INT64_MIN;
    return x;
}

static void linda_basics(dime_client *c)
{
    dime_pattern *p = dime_pattern_new(), *ranged = dime_pattern_new();
    dime_pattern *one = dime_pattern_new(), *two_any = dime_pattern_new();
    dime_value *got = NULL, *expect, *sentinel;
    int dummy = 0;

    printf("# out, then rd/rdp copy and in/inp remove, oldest first\n");
    sentinel = (dime_value *)&dummy;
    out_and_free(c, "T", tuple(3, str_value("point"), dime_value_new_int64(1),
                               dime_value_new_double(2.5)));
    out_and_free(c, "T", tuple(3, str_value("point"), dime_value_new_int64(2),
                               dime_value_new_double(20.0)));
    out_and_free(c, "T", tuple(2, str_value("other"), dime_value_new_int64(3)));

    add_str(p, "point");
    CHECK_OK(dime_pattern_add_type(p, "int"));
    CHECK_OK(dime_pattern_add_type(p, "float"));
    CHECK(dime_pattern_len(p) == 3);
    CHECK(count(c, "T", p) == 2);
    CHECK_OK(dime_rdp(c, "T", p, &got));
    CHECK(i64_field(got, 1) == 1);
    dime_value_free(got);
    CHECK_OK(dime_rd(c, "T", p, 0, &got));
    CHECK(i64_field(got, 1) == 1);
    dime_value_free(got);
    CHECK(count(c, "T", p) == 2);

    add_str(ranged, "point");
    CHECK_OK(dime_pattern_add_any(ranged));
    CHECK_OK(dime_pattern_add_range(ranged, 10.0, 0.0, true, false));
    CHECK_OK(dime_inp(c, "T", ranged, &got));
    expect = tuple(3, str_value("point"), dime_value_new_int64(2), dime_value_new_double(20.0));
    CHECK(same_value(got, expect));
    dime_value_free(expect);
    dime_value_free(got);
    CHECK(count(c, "T", p) == 1);

    /* Arity must match. */
    add_str(one, "other");
    got = sentinel;
    CHECK_STATUS(dime_inp(c, "T", one, &got), DIME_STATUS_NOT_FOUND);
    CHECK_ERROR_HAS("no tuple");
    CHECK(got == sentinel);
    CHECK_STATUS(dime_rdp(c, "T", one, &got), DIME_STATUS_NOT_FOUND);
    CHECK(got == sentinel);
    CHECK_OK(dime_pattern_add_any(two_any));
    CHECK_OK(dime_pattern_add_any(two_any));
    CHECK(count(c, "T", two_any) == 1);
    CHECK_OK(dime_inp(c, "T", two_any, &got));
    expect = tuple(2, str_value("other"), dime_value_new_int64(3));
    CHECK(same_value(got, expect));
    dime_value_free(expect);
    dime_value_free(got);
    CHECK_STATUS(dime_rdp(c, "T", two_any, &got), DIME_STATUS_NOT_FOUND);

    CHECK_OK(dime_in(c, "T", p, 1000, &got));
    CHECK(i64_field(got, 1) == 1);
    dime_value_free(got);
    CHECK(count(c, "T", p) == 0);

    printf("# spaces are separate; NULL and \"\" are the default space\n");
    out_and_free(c, NULL, tuple(2, str_value("other"), dime_value_new_int64(4)));
    CHECK(count(c, "T", two_any) == 0);
    CHECK(count(c, "", two_any) == 1);
    CHECK_OK(dime_inp(c, "", two_any, &got));
    CHECK(i64_field(got, 1) == 4);
    dime_value_free(got);
    CHECK(count(c, NULL, two_any) == 0);

    dime_pattern_free(p);
    dime_pattern_free(ranged);
    dime_pattern_free(one);
    dime_pattern_free(two_any);
}

/* One pattern field: a type name, or (type NULL) a matrix class and rank. */
struct spec {
    const char *type;
    dime_class cls;
    int32_t rank;
};

#define NFIELDS 14

static dime_status add_spec(dime_pattern *p, struct spec s)
{
    return s.type ? dime_pattern_add_type(p, s.type) : dime_pattern_add_matrix(p, s.cls, s.rank);
}

/* A pattern of `any` fields except field i, which is s. */
static dime_pattern *any_but(size_t i, struct spec s)
{
    dime_pattern *p = dime_pattern_new();
    size_t k;
    for (k = 0; k < NFIELDS; k++) {
        CHECK_OK(k == i ? add_spec(p, s) : dime_pattern_add_any(p));
    }
    return p;
}

static dime_value *matrix(dime_class cls, size_t rank, const size_t *dims, unsigned char seed)
{
    unsigned char data[24 * 8];
    size_t numel = 1, i;
    dime_value *v = NULL;
    for (i = 0; i < rank; i++) numel *= dims[i];
    for (i = 0; i < numel * dime_class_size(cls); i++) {
        data[i] = cls == DIME_CLASS_LOGICAL ? (unsigned char)(i % 2) : (unsigned char)(seed + i);
    }
    CHECK_OK(dime_value_new_matrix(cls, rank, dims, data, &v));
    return v;
}

static void every_field_kind(dime_client *c)
{
    /* Field i of the tuple below, matched by right[i] and by alt[i], and
     * not by wrong[i]. */
    static const struct spec right[NFIELDS] = {
        {"null", 0, 0},    {"bool", 0, 0},   {"int", 0, 0},     {"int", 0, 0},
        {"float", 0, 0},   {"float", 0, 0},  {"complex", 0, 0}, {"complex", 0, 0},
        {"string", 0, 0},  {"list", 0, 0},   {"map", 0, 0},     {NULL, DIME_CLASS_DOUBLE, 2},
        {NULL, DIME_CLASS_INT32, 3},         {NULL, DIME_CLASS_LOGICAL, DIME_RANK_ANY},
    };
    static const struct spec alt[NFIELDS] = {
        {"null", 0, 0},           {"bool", 0, 0},          {"int16", 0, 0},
        {"uint64", 0, 0},         {"single", 0, 0},        {"double", 0, 0},
        {"complex single", 0, 0}, {"complex double", 0, 0}, {"string", 0, 0},
        {"list", 0, 0},           {"map", 0, 0},           {"matrix", 0, 0},
        {NULL, DIME_CLASS_ANY, 3}, {NULL, DIME_CLASS_ANY, -7},
    };
    static const struct spec wrong[NFIELDS] = {
        {"bool", 0, 0},           {"null", 0, 0},          {"float", 0, 0},
        {"int8", 0, 0},           {"double", 0, 0},        {"single", 0, 0},
        {"complex double", 0, 0}, {"complex single", 0, 0}, {"list", 0, 0},
        {"map", 0, 0},            {"string", 0, 0},        {NULL, DIME_CLASS_SINGLE, 2},
        {NULL, DIME_CLASS_INT32, 2}, {"bool", 0, 0},
    };
    size_t dims23[2] = {2, 3}, dims32[2] = {3, 2}, dims432[3] = {4, 3, 2};
    dime_value *t, *got = NULL, *fields[NFIELDS], *changed, *reshaped;
    dime_pattern *p, *exact;
    size_t i;

    printf("# every type name, matrix class/rank and exact values\n");
    fields[0] = dime_value_new_null();
    fields[1] = dime_value_new_bool(true);
    fields[2] = dime_value_new_int16(7);
    fields[3] = dime_value_new_uint64(UINT64_MAX);
    fields[4] = dime_value_new_single(1.5f);
    fields[5] = dime_value_new_double(2.0);
    fields[6] = dime_value_new_complex_single(1.0f, 2.0f);
    fields[7] = dime_value_new_complex_double(3.0, 4.0);
    fields[8] = str_value("s");
    fields[9] = tuple(1, dime_value_new_int64(1));
    fields[10] = dime_value_new_map();
    fields[11] = matrix(DIME_CLASS_DOUBLE, 2, dims23, 1);
    fields[12] = matrix(DIME_CLASS_INT32, 3, dims432, 2);
    fields[13] = matrix(DIME_CLASS_LOGICAL, 2, dims23, 0);
    t = dime_value_new_list();
    for (i = 0; i < NFIELDS; i++) {
        dime_value *copy = NULL;
        CHECK_OK(dime_value_clone(fields[i], &copy));
        CHECK_OK(dime_value_list_append(t, copy));
    }
    CHECK_OK(dime_out(c, "K", t));

    for (i = 0; i < NFIELDS; i++) {
        p = any_but(i, right[i]);
        CHECK(count(c, "K", p) == 1);
        dime_pattern_free(p);
        p = any_but(i, alt[i]);
        CHECK(count(c, "K", p) == 1);
        dime_pattern_free(p);
        p = any_but(i, wrong[i]);
        if (count(c, "K", p) != 0) printf("# field %zu matched a wrong pattern\n", i);
        CHECK(count(c, "K", p) == 0);
        dime_pattern_free(p);
    }
    p = dime_pattern_new();
    for (i = 0; i < NFIELDS; i++) CHECK_OK(add_spec(p, right[i]));
    CHECK_OK(dime_rdp(c, "K", p, &got));
    CHECK(same_value(got, t));
    dime_value_free(got);
    dime_pattern_free(p);
    /* A scalar double is not a matrix of class double. */
    p = any_but(5, right[11]);
    CHECK(count(c, "K", p) == 0);
    dime_pattern_free(p);

    /* Exact values: type and bits, matrices by class, shape and content. */
    exact = dime_pattern_new();
    for (i = 0; i < NFIELDS; i++) CHECK_OK(dime_pattern_add_value(exact, fields[i]));
    CHECK(count(c, "K", exact) == 1);
    dime_pattern_free(exact);
    changed = matrix(DIME_CLASS_DOUBLE, 2, dims23, 9);
    reshaped = matrix(DIME_CLASS_DOUBLE, 2, dims32, 1);
    for (i = 0; i < 3; i++) {
        dime_value *field11 = i == 0 ? changed : i == 1 ? reshaped : fields[5];
        size_t k;
        exact = dime_pattern_new();
        for (k = 0; k < NFIELDS; k++) {
            CHECK_OK(dime_pattern_add_value(exact, k == 11 ? field11 : fields[k]));
        }
        CHECK(count(c, "K", exact) == 0);
        dime_pattern_free(exact);
    }
    {
        /* int16 7 is not int64 7. */
        dime_value *seven = dime_value_new_int64(7);
        exact = dime_pattern_new();
        for (i = 0; i < NFIELDS; i++) {
            CHECK_OK(dime_pattern_add_value(exact, i == 2 ? seven : fields[i]));
        }
        CHECK(count(c, "K", exact) == 0);
        dime_pattern_free(exact);
        dime_value_free(seven);
    }
    dime_value_free(changed);
    dime_value_free(reshaped);

    p = any_but(0, right[0]);
    CHECK_OK(dime_inp(c, "K", p, &got));
    CHECK(same_value(got, t));
    dime_value_free(got);
    CHECK(count(c, "K", p) == 0);
    dime_pattern_free(p);
    for (i = 0; i < NFIELDS; i++) dime_value_free(fields[i]);
    dime_value_free(t);
}

static size_t count_range(dime_client *c, double min, double max, bool has_min, bool has_max)
{
    dime_pattern *p = dime_pattern_new();
    size_t n;
    add_str(p, "r");
    CHECK_OK(dime_pattern_add_range(p, min, max, has_min, has_max));
    n = count(c, "R", p);
    dime_pattern_free(p);
    return n;
}

static void ranges(dime_client *c)
{
    size_t dims11[2] = {1, 1};
    dime_pattern *p;
    dime_value *got = NULL;
    size_t n = 0;

    printf("# ranges: real scalars only, bounds inclusive, NaN never\n");
    out_and_free(c, "R", tuple(2, str_value("r"), dime_value_new_int8(5)));
    out_and_free(c, "R", tuple(2, str_value("r"), dime_value_new_uint64(UINT64_MAX)));
    out_and_free(c, "R", tuple(2, str_value("r"), dime_value_new_double(NAN)));
    out_and_free(c, "R", tuple(2, str_value("r"), dime_value_new_single(-1.5f)));
    out_and_free(c, "R", tuple(2, str_value("r"), str_value("5")));
    out_and_free(c, "R", tuple(2, str_value("r"), dime_value_new_complex_double(5, 0)));
    out_and_free(c, "R", tuple(2, str_value("r"), matrix(DIME_CLASS_DOUBLE, 2, dims11, 0)));

    CHECK(count_range(c, 0, 10, true, true) == 1);
    CHECK(count_range(c, 5, 5, true, true) == 1);  /* inclusive */
    CHECK(count_range(c, 5.5, 10, true, true) == 0);
    CHECK(count_range(c, 0, -1.5, false, true) == 1);
    CHECK(count_range(c, 1e19, 0, true, false) == 1);
    CHECK(count_range(c, -INFINITY, INFINITY, true, true) == 3);
    CHECK(count_range(c, 0, 0, false, false) == 3);

    p = dime_pattern_new();
    add_str(p, "r");
    CHECK_OK(dime_pattern_add_any(p));
    CHECK(count(c, "R", p) == 7);
    while (dime_inp(c, "R", p, &got) == DIME_STATUS_OK) {
        dime_value_free(got);
        n++;
    }
    CHECK(n == 7);
    dime_pattern_free(p);
}

static void pattern_api(dime_client *c)
{
    dime_pattern *p = dime_pattern_new();
    dime_value *not_a_tuple = dime_value_new_int64(1), *got = NULL;
    size_t n = 0;

    printf("# pattern building refuses bad fields and leaves the pattern as it was\n");
    CHECK(p != NULL);
    CHECK(dime_pattern_len(p) == 0);
    CHECK_STATUS(dime_pattern_add_type(p, "quaternion"), DIME_STATUS_INVALID_ARGUMENT);
    CHECK_ERROR_HAS("quaternion");
    CHECK_STATUS(dime_pattern_add_type(p, "logical"), DIME_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(dime_pattern_add_type(p, NULL), DIME_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(dime_pattern_add_matrix(p, 99, 2), DIME_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(dime_pattern_add_matrix(p, DIME_CLASS_DOUBLE, 256), DIME_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(dime_pattern_add_range(p, NAN, 1, true, true), DIME_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(dime_pattern_add_range(p, INFINITY, 1, true, false), DIME_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(dime_pattern_add_range(p, 2, 1, true, true), DIME_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(dime_pattern_add_value(p, NULL), DIME_STATUS_NULL_ARGUMENT);
    CHECK(dime_pattern_len(p) == 0);
    CHECK_STATUS(dime_pattern_add_any(NULL), DIME_STATUS_NULL_ARGUMENT);
    CHECK(dime_pattern_len(NULL) == 0);
    dime_pattern_free(NULL);

    /* The empty pattern matches the empty tuple. */
    out_and_free(c, "E", dime_value_new_list());
    CHECK_OK(dime_count(c, "E", p, &n));
    CHECK(n == 1);
    CHECK_OK(dime_inp(c, "E", p, &got));
    CHECK(dime_value_list_len(got, &n) == DIME_STATUS_OK && n == 0);
    dime_value_free(got);

    CHECK_STATUS(dime_out(c, "E", not_a_tuple), DIME_STATUS_WRONG_TYPE);
    CHECK_STATUS(dime_out(c, "E", NULL), DIME_STATUS_NULL_ARGUMENT);
    got = dime_value_new_list();
    CHECK_STATUS(dime_out(NULL, "E", got), DIME_STATUS_NULL_ARGUMENT);
    dime_value_free(got);
    CHECK_STATUS(dime_in(c, "E", NULL, 0, &got), DIME_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(dime_rd(c, "E", p, 0, NULL), DIME_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(dime_count(c, "E", p, NULL), DIME_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(dime_inp(c, "\xff", p, &got), DIME_STATUS_INVALID_ARGUMENT);
    dime_value_free(not_a_tuple);
    dime_pattern_free(p);
}

/* An out from a second connection after a delay, run on its own thread. */
struct outer {
    dime_client *client;
    dime_value *tuple; /* owned; freed by the thread */
    long delay_ms;
    dime_status status;
};

static void *out_later(void *arg)
{
    struct outer *o = arg;
    sleep_ms(o->delay_ms);
    o->status = dime_out(o->client, "B", o->tuple);
    dime_value_free(o->tuple);
    return NULL;
}

static void blocking(dime_client *c1, dime_client *c2)
{
    dime_pattern *job = dime_pattern_new(), *news = dime_pattern_new();
    dime_value *got = NULL, *sentinel, *expect;
    struct outer o;
    pthread_t t;
    double t0, took;
    int dummy = 0;

    printf("# in/rd time out, never take a tuple afterwards, and wake on out\n");
    sentinel = (dime_value *)&dummy;
    add_str(job, "job");
    CHECK_OK(dime_pattern_add_type(job, "int"));
    add_str(news, "news");
    CHECK_OK(dime_pattern_add_any(news));

    got = sentinel;
    t0 = now_ms();
    CHECK_STATUS(dime_in(c1, "B", job, 200, &got), DIME_STATUS_TIMEOUT);
    took = now_ms() - t0;
    CHECK(took >= 180 && took < 3000);
    CHECK(got == sentinel);
    CHECK_STATUS(dime_rd(c1, "B", job, 0, &got), DIME_STATUS_TIMEOUT);
    CHECK_STATUS(dime_in(c1, "B", job, 0, &got), DIME_STATUS_TIMEOUT);
    CHECK(got == sentinel);
    /* The timed-out in is withdrawn: a matching out is stored, not taken. */
    out_and_free(c2, "B", tuple(2, str_value("job"), dime_value_new_int64(1)));
    CHECK(count(c1, "B", job) == 1);
    CHECK_OK(dime_inp(c1, "B", job, &got));
    dime_value_free(got);

    o.client = c2;
    o.tuple = tuple(2, str_value("job"), dime_value_new_int64(42));
    o.delay_ms = 200;
    o.status = DIME_STATUS_PANIC;
    t0 = now_ms();
    CHECK(pthread_create(&t, NULL, out_later, &o) == 0);
    got = NULL;
    CHECK_OK(dime_in(c1, "B", job, DIME_WAIT_FOREVER, &got));
    took = now_ms() - t0;
    pthread_join(t, NULL);
    CHECK(o.status == DIME_STATUS_OK);
    CHECK(took >= 150);
    CHECK(i64_field(got, 1) == 42);
    dime_value_free(got);
    CHECK(count(c1, "B", job) == 0); /* handed to the waiter, never stored */

    o.tuple = tuple(2, str_value("news"), dime_value_new_double(0.5));
    o.status = DIME_STATUS_PANIC;
    t0 = now_ms();
    CHECK(pthread_create(&t, NULL, out_later, &o) == 0);
    got = NULL;
    CHECK_OK(dime_rd(c1, "B", news, 5000, &got));
    took = now_ms() - t0;
    pthread_join(t, NULL);
    CHECK(o.status == DIME_STATUS_OK);
    CHECK(took >= 150);
    expect = tuple(2, str_value("news"), dime_value_new_double(0.5));
    CHECK(same_value(got, expect));
    dime_value_free(expect);
    dime_value_free(got);
    CHECK(count(c1, "B", news) == 1); /* rd copied it; no in took it */
    CHECK_OK(dime_inp(c1, "B", news, &got));
    dime_value_free(got);

    dime_pattern_free(job);
    dime_pattern_free(news);
}

int main(int argc, char **argv)
{
    dime_client *c1 = NULL, *c2 = NULL;
    dime_pattern *p;
    size_t n = 0;

    if (argc != 2) {
        fprintf(stderr, "usage: %s ADDRESS\n", argv[0]);
        return 2;
    }
    REQUIRE_OK(dime_connect(argv[1], &c1));
    REQUIRE_OK(dime_connect(argv[1], &c2));

    linda_basics(c1);
    every_field_kind(c1);
    ranges(c1);
    pattern_api(c1);
    blocking(c1, c2);

    p = dime_pattern_new();
    CHECK_OK(dime_close(c2));
    CHECK_STATUS(dime_count(c2, NULL, p, &n), DIME_STATUS_CLOSED);
    dime_pattern_free(p);
    dime_client_free(c2);
    dime_client_free(c1);
    return check_done();
}
