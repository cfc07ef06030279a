/* The C half of the C <-> Python remote-call tests
 * (bindings/python/tests/test_rpc_c.py).
 *
 * usage: rpc_peer ADDRESS serve N   provides, then answers N calls and exits:
 *          "c_scale" {"x": double matrix, "k": double} -> x * k, same shape
 *                    (pull form: dime_provide + dime_next_call + dime_reply)
 *          "c_fail"  anything -> an error ("ValueError", "c says no", a traceback)
 *          "c_neg"   double -> -double (callback form, 2 library workers)
 *        rpc_peer ADDRESS call      calls Python's functions and checks:
 *          "py_add"  {"a": 2x3 double matrix, "b": 5.0} -> a + b
 *          "py_fail" -> a ZeroDivisionError with its traceback
 *          "nobody"  with a 200 ms timeout -> DIME_STATUS_NO_PROVIDER
 *
 * Prints "ready" (serve) once every function is provided, then TAP-like
 * checks; exits 0 only if every check passed. */
#define _POSIX_C_SOURCE 200809L

#include "check.h"

/* Callback form: negates a double. */
static int32_t negate(void *userdata, const dime_value *args, dime_value **result)
{
    double x;
    (void)userdata;
    if (dime_value_get_double(args, &x) != DIME_STATUS_OK) {
        const char *msg = "c_neg takes a double";
        dime_value_new_string(msg, strlen(msg), result);
        return 1;
    }
    *result = dime_value_new_double(-x);
    return 0;
}

/* Pull form: x * k for c_scale's arguments, or NULL (with a message). */
static dime_value *scale(const dime_value *args, const char **why)
{
    const dime_value *x = NULL, *k = NULL;
    const size_t *dims = NULL;
    size_t rank = 0, nbytes = 0, i;
    dime_class cls = 0;
    const void *data = NULL;
    double factor, *out;
    dime_value *result = NULL;
    if (dime_value_map_get(args, "x", &x) != DIME_STATUS_OK ||
        dime_value_map_get(args, "k", &k) != DIME_STATUS_OK ||
        dime_value_get_double(k, &factor) != DIME_STATUS_OK ||
        dime_matrix_class(x, &cls) != DIME_STATUS_OK || cls != DIME_CLASS_DOUBLE ||
        dime_matrix_rank(x, &rank) != DIME_STATUS_OK ||
        dime_matrix_dims(x, &dims) != DIME_STATUS_OK ||
        dime_matrix_data(x, &data, &nbytes) != DIME_STATUS_OK) {
        *why = "c_scale takes {\"x\": double matrix, \"k\": double}";
        return NULL;
    }
    out = malloc(nbytes ? nbytes : 1);
    for (i = 0; i < nbytes / sizeof(double); i++) out[i] = ((const double *)data)[i] * factor;
    if (dime_value_new_matrix(DIME_CLASS_DOUBLE, rank, dims, out, &result) != DIME_STATUS_OK) {
        *why = dime_last_error();
        result = NULL;
    }
    free(out);
    return result;
}

static int serve(dime_client *c, int n)
{
    int i;
    REQUIRE_OK(dime_provide(c, "c_scale", 2));
    REQUIRE_OK(dime_provide(c, "c_fail", 1));
    REQUIRE_OK(dime_provide_callback(c, "c_neg", 2, negate, NULL, NULL));
    printf("ready\n");
    fflush(stdout);
    for (i = 0; i < n; i++) {
        dime_request *req = NULL;
        const char *fn, *why = NULL;
        dime_value *result;
        REQUIRE_OK(dime_next_call(c, 20000, &req));
        fn = dime_request_function(req);
        if (strcmp(fn, "c_fail") == 0) {
            CHECK_OK(dime_reply_error(req, "ValueError", "c says no",
                                      "  File \"rpc_peer.c\", in serve\n"));
        } else if ((result = scale(dime_request_args(req), &why)) != NULL) {
            CHECK_OK(dime_reply(req, result));
            dime_value_free(result);
        } else {
            CHECK_OK(dime_reply_error(req, "TypeError", why, NULL));
        }
        CHECK_STATUS(dime_reply(req, NULL), DIME_STATUS_INVALID_ARGUMENT);   /* once only */
        dime_request_free(req);
    }
    return 0;
}

static void call(dime_client *c)
{
    double a[6] = {1, 2, 3, 4, 5, 6};     /* column-major 2 x 3 */
    size_t dims[2] = {2, 3}, rank = 0, nbytes = 0, i;
    double x = 0;
    const size_t *got_dims = NULL;
    const void *data = NULL;
    const char *type = NULL, *message = NULL, *traceback = NULL;
    dime_value *args = dime_value_new_map(), *m = NULL, *result = NULL;
    dime_future *f = NULL;

    REQUIRE_OK(dime_call_options(c, 4, -1));
    REQUIRE_OK(dime_value_new_matrix(DIME_CLASS_DOUBLE, 2, dims, a, &m));
    REQUIRE_OK(dime_value_map_set(args, "a", m));
    REQUIRE_OK(dime_value_map_set(args, "b", dime_value_new_double(5.0)));

    printf("# py_add\n");
    REQUIRE_OK(dime_call(c, "py_add", args, DIME_WAIT_FOREVER, &f));
    CHECK_OK(dime_future_wait(f, 10000));
    CHECK(dime_future_done(f) == 1);
    CHECK(dime_future_id(f) != 0);
    REQUIRE_OK(dime_future_result(f, &result));
    CHECK_OK(dime_matrix_rank(result, &rank));
    CHECK_OK(dime_matrix_dims(result, &got_dims));
    CHECK(rank == 2 && got_dims[0] == 2 && got_dims[1] == 3);
    CHECK_OK(dime_matrix_data(result, &data, &nbytes));
    CHECK(nbytes == sizeof a);
    for (i = 0; i < 6 && nbytes == sizeof a; i++) CHECK(((const double *)data)[i] == a[i] + 5.0);
    CHECK_STATUS(dime_future_result(f, &result), DIME_STATUS_NOT_FOUND);   /* taken */
    dime_value_free(result);
    dime_future_free(f);

    printf("# py_add, encoded: {\"a\": 1.0 (a double scalar), \"b\": 5.0}\n");
    {
        static const unsigned char bad[] = {0x23};
        static const unsigned char enc[] = {
            0x22, 0, 0, 0, 2,
            0x20, 0, 0, 0, 1, 'a', 0x0C, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0,
            0x20, 0, 0, 0, 1, 'b', 0x0C, 0x40, 0x14, 0, 0, 0, 0, 0, 0};
        const void *data = NULL;
        size_t len = 0;
        CHECK_STATUS(dime_call_encoded(c, "py_add", bad, sizeof bad, -1, &f),
                     DIME_STATUS_INVALID_ARGUMENT);
        REQUIRE_OK(dime_call_encoded(c, "py_add", enc, sizeof enc, -1, &f));
        CHECK_OK(dime_future_wait(f, 10000));
        CHECK_OK(dime_future_payload(f, &data, &len));   /* 6.0 as dimeb: 0C 40 18 00 ... */
        CHECK(len == 9 && ((const unsigned char *)data)[0] == 0x0C &&
              ((const unsigned char *)data)[1] == 0x40 && ((const unsigned char *)data)[2] == 0x18);
        CHECK_OK(dime_future_result(f, &result));        /* and still decodable once */
        CHECK(dime_value_get_double(result, &x) == DIME_STATUS_OK && x == 6.0);
        dime_value_free(result);
        dime_future_free(f);
    }

    printf("# py_fail\n");
    REQUIRE_OK(dime_call(c, "py_fail", args, DIME_WAIT_FOREVER, &f));
    CHECK_OK(dime_future_wait(f, 10000));
    CHECK_STATUS(dime_future_result(f, &result), DIME_STATUS_REMOTE_ERROR);
    CHECK_OK(dime_future_error(f, &type, &message, &traceback));
    CHECK(strcmp(type, "ZeroDivisionError") == 0);
    CHECK(strstr(message, "division by zero") != NULL);
    CHECK(strstr(traceback, "py_fail") != NULL);
    printf("# remote traceback:\n# %s\n", traceback);
    dime_future_free(f);

    printf("# nobody\n");
    REQUIRE_OK(dime_call(c, "nobody", NULL, 200, &f));
    CHECK_OK(dime_future_wait(f, 10000));
    CHECK_STATUS(dime_future_result(f, &result), DIME_STATUS_NO_PROVIDER);
    dime_future_free(f);

    dime_value_free(args);
}

int main(int argc, char **argv)
{
    dime_client *c = NULL;
    if (argc < 3) {
        fprintf(stderr, "usage: rpc_peer ADDRESS serve N | rpc_peer ADDRESS call\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    REQUIRE_OK(dime_connect(argv[1], &c));
    if (strcmp(argv[2], "serve") == 0 && argc == 4) {
        serve(c, atoi(argv[3]));
    } else if (strcmp(argv[2], "call") == 0) {
        call(c);
    } else {
        fprintf(stderr, "unknown mode %s\n", argv[2]);
        return 2;
    }
    CHECK_OK(dime_close(c));
    dime_client_free(c);
    return check_done();
}
