/* Remote calls through the C API: an embedded broker (dime_server_start),
 * a pull-form provider (dime_next_call / dime_reply), a callback provider
 * (dime_provide_callback) with its userdata dropped on close, futures
 * (wait, done, result, error, cancel), no-provider timeouts, a provider
 * lost mid-call, and the in-flight cap.
 *
 * usage: rpc ADDRESS   (an external broker; the embedded one is tested too) */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdint.h>

#include "check.h"
#include "clock.h"

static dime_client *connect_to(const char *address)
{
    dime_client *c = NULL;
    REQUIRE_OK(dime_connect(address, &c));
    return c;
}

static dime_value *int_value(int64_t i)
{
    return dime_value_new_int64(i);
}

static int64_t as_int(const dime_value *v)
{
    int64_t i = -1;
    if (dime_value_get_int64(v, &i) != DIME_STATUS_OK) return -999;
    return i;
}

/* A callback doubling an int64; fails (with a message) on anything else. */
static int32_t double_it(void *userdata, const dime_value *args, dime_value **result)
{
    int64_t i;
    int *calls = userdata;
    __atomic_add_fetch(calls, 1, __ATOMIC_SEQ_CST);
    if (dime_value_get_int64(args, &i) != DIME_STATUS_OK) {
        dime_value_new_string("double_it wants an int64", strlen("double_it wants an int64"), result);
        return 1;
    }
    *result = dime_value_new_int64(2 * i);
    return 0;
}

static int dropped = 0;
static void drop_counter(void *userdata)
{
    (void)userdata;
    __atomic_add_fetch(&dropped, 1, __ATOMIC_SEQ_CST);
}

/* Calls `function` with int64 `arg` and returns the int64 result, or -999. */
static int64_t call_int(dime_client *c, const char *function, int64_t arg)
{
    dime_value *a = int_value(arg), *r = NULL;
    dime_future *f = NULL;
    int64_t out = -999;
    if (dime_call(c, function, a, DIME_WAIT_FOREVER, &f) == DIME_STATUS_OK &&
        dime_future_wait(f, 10000) == DIME_STATUS_OK && dime_future_result(f, &r) == DIME_STATUS_OK) {
        out = as_int(r);
    }
    dime_value_free(r);
    dime_value_free(a);
    dime_future_free(f);
    return out;
}

static void callback_provider(const char *address)
{
    dime_client *p = connect_to(address), *c = connect_to(address);
    int calls = 0, i, ok = 1;
    dime_future *f = NULL;
    dime_value *s = NULL;
    const char *type = NULL, *msg = NULL, *tb = NULL;

    CHECK_STATUS(dime_provide_callback(p, "double", 2, NULL, NULL, NULL), DIME_STATUS_NULL_ARGUMENT);
    CHECK_OK(dime_provide_callback(p, "double", 2, double_it, &calls, drop_counter));
    for (i = 0; i < 50; i++) ok &= call_int(c, "double", i) == 2 * i;
    CHECK(ok);
    CHECK(__atomic_load_n(&calls, __ATOMIC_SEQ_CST) == 50);

    /* A failing callback reaches the caller as a remote error. */
    CHECK_OK(dime_value_new_string("not a number", 12, &s));
    CHECK_OK(dime_call(c, "double", s, DIME_WAIT_FOREVER, &f));
    CHECK_OK(dime_future_wait(f, 10000));
    CHECK(dime_future_done(f) == 1);
    {
        dime_value *r = NULL;
        CHECK_STATUS(dime_future_result(f, &r), DIME_STATUS_REMOTE_ERROR);
        CHECK(r == NULL);
    }
    CHECK_ERROR_HAS("double_it wants an int64");
    CHECK_OK(dime_future_error(f, &type, &msg, &tb));
    CHECK(type != NULL && strcmp(type, "Error") == 0);
    CHECK(msg != NULL && strcmp(msg, "double_it wants an int64") == 0);
    dime_future_free(f);
    dime_value_free(s);

    /* Closing the provider stops its workers, which drop the userdata once. */
    CHECK_OK(dime_close(p));
    for (i = 0; i < 300 && __atomic_load_n(&dropped, __ATOMIC_SEQ_CST) == 0; i++) sleep_ms(10);
    CHECK(__atomic_load_n(&dropped, __ATOMIC_SEQ_CST) == 1);
    dime_client_free(p);
    dime_client_free(c);
}

struct puller {
    dime_client *client;
    int served;
};

/* Serves "triple" calls until one with argument -1 arrives. */
static void *pull_loop(void *arg)
{
    struct puller *pl = arg;
    for (;;) {
        dime_request *rq = NULL;
        dime_value *r = NULL;
        int64_t i;
        if (dime_next_call(pl->client, 10000, &rq) != DIME_STATUS_OK) break;
        i = as_int(dime_request_args(rq));
        if (strcmp(dime_request_function(rq), "triple") != 0 || i == -1) {
            dime_reply_error(rq, "StopIteration", "stopping", "traceback line");
            dime_request_free(rq);
            break;
        }
        r = dime_value_new_int64(3 * i);
        if (dime_reply(rq, r) == DIME_STATUS_OK) pl->served++;
        /* A second answer is refused. */
        if (dime_reply(rq, r) != DIME_STATUS_INVALID_ARGUMENT) pl->served = -1000;
        dime_value_free(r);
        dime_request_free(rq);
    }
    return NULL;
}

static void pull_provider(const char *address)
{
    struct puller pl;
    pthread_t t;
    dime_client *c = connect_to(address);
    dime_value *stop = int_value(-1);
    dime_future *f = NULL;
    const char *type = NULL, *tb = NULL;
    int i, ok = 1;

    pl.client = connect_to(address);
    pl.served = 0;
    CHECK_OK(dime_provide(pl.client, "triple", 1));
    pthread_create(&t, NULL, pull_loop, &pl);
    for (i = 0; i < 100; i++) ok &= call_int(c, "triple", i) == 3 * i;
    CHECK(ok);
    CHECK_OK(dime_call(c, "triple", stop, DIME_WAIT_FOREVER, &f));
    CHECK_OK(dime_future_wait(f, 10000));
    {
        dime_value *r = NULL;
        CHECK_STATUS(dime_future_result(f, &r), DIME_STATUS_REMOTE_ERROR);
    }
    CHECK_OK(dime_future_error(f, &type, NULL, &tb));
    CHECK(strcmp(type, "StopIteration") == 0 && strcmp(tb, "traceback line") == 0);
    pthread_join(t, NULL);
    CHECK(pl.served == 100);
    dime_future_free(f);

    /* An unanswered request, freed, answers its caller with an error. */
    CHECK_OK(dime_call(c, "triple", stop, DIME_WAIT_FOREVER, &f));
    {
        dime_request *rq = NULL;
        dime_value *r = NULL;
        CHECK_OK(dime_next_call(pl.client, 10000, &rq));
        dime_request_free(rq);
        CHECK_OK(dime_future_wait(f, 10000));
        CHECK_STATUS(dime_future_result(f, &r), DIME_STATUS_REMOTE_ERROR);
        CHECK_ERROR_HAS("without answering");
    }
    dime_future_free(f);

    /* No call waiting: dime_next_call times out. */
    {
        dime_request *rq = NULL;
        CHECK_STATUS(dime_next_call(pl.client, 20, &rq), DIME_STATUS_TIMEOUT);
        CHECK(rq == NULL);
    }
    CHECK_OK(dime_unprovide(pl.client, "triple"));
    CHECK_STATUS(dime_unprovide(pl.client, "triple"), DIME_STATUS_SERVER_ERROR);

    dime_value_free(stop);
    dime_client_free(pl.client);
    dime_client_free(c);
}

static void no_provider_cancel_and_lost(const char *address)
{
    dime_client *c = connect_to(address), *p = connect_to(address);
    dime_future *f = NULL, *g = NULL;
    dime_value *r = NULL;
    dime_request *rq = NULL;
    double t0;

    /* Nobody provides "ghost": the call fails after its timeout. */
    t0 = now_ms();
    CHECK_OK(dime_call(c, "ghost", NULL, 100, &f));
    CHECK_STATUS(dime_future_wait(f, 0), DIME_STATUS_TIMEOUT);
    CHECK(dime_future_done(f) == 0);
    CHECK_STATUS(dime_future_result(f, &r), DIME_STATUS_TIMEOUT);
    CHECK_OK(dime_future_wait(f, 10000));
    CHECK(now_ms() - t0 >= 95);
    CHECK_STATUS(dime_future_result(f, &r), DIME_STATUS_NO_PROVIDER);
    CHECK_ERROR_HAS("ghost");
    dime_future_free(f);

    /* Cancelled before any provider: the future fails with CANCELLED. */
    CHECK_OK(dime_call(c, "ghost", NULL, DIME_WAIT_FOREVER, &f));
    CHECK_OK(dime_future_cancel(f));
    CHECK_STATUS(dime_future_cancel(f), DIME_STATUS_NOT_FOUND);
    CHECK_STATUS(dime_future_result(f, &r), DIME_STATUS_CANCELLED);
    dime_future_free(f);

    /* The provider goes away mid-call: PROVIDER_LOST within a second. */
    CHECK_OK(dime_provide(p, "slow", 1));
    CHECK_OK(dime_call(c, "slow", NULL, DIME_WAIT_FOREVER, &g));
    CHECK_OK(dime_next_call(p, 10000, &rq));
    t0 = now_ms();
    CHECK_OK(dime_close(p));
    CHECK_OK(dime_future_wait(g, 5000));
    CHECK(now_ms() - t0 < 1000);
    CHECK_STATUS(dime_future_result(g, &r), DIME_STATUS_PROVIDER_LOST);
    CHECK_ERROR_HAS("slow");
    /* Answering after the close fails cleanly; freeing is still fine. */
    CHECK(dime_reply(rq, NULL) != DIME_STATUS_OK);
    dime_request_free(rq);
    dime_future_free(g);
    dime_client_free(p);
    dime_client_free(c);
}

struct third_call {
    dime_client *client;
    dime_future *future;
    int made;
};

static void *make_third_call(void *arg)
{
    struct third_call *tc = arg;
    if (dime_call(tc->client, "echo", NULL, DIME_WAIT_FOREVER, &tc->future) == DIME_STATUS_OK)
        __atomic_store_n(&tc->made, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static void in_flight_cap(const char *address)
{
    dime_client *c = connect_to(address), *p = connect_to(address);
    dime_future *fs[2] = {NULL, NULL};
    dime_request *rq = NULL;
    struct third_call tc;
    pthread_t t;
    int i;

    CHECK_OK(dime_call_options(c, 2, -1));
    CHECK_OK(dime_provide(p, "echo", 4));
    CHECK_OK(dime_call(c, "echo", NULL, DIME_WAIT_FOREVER, &fs[0]));
    CHECK_STATUS(dime_call_options(c, 5, -1), DIME_STATUS_INVALID_ARGUMENT);
    CHECK_OK(dime_call(c, "echo", NULL, DIME_WAIT_FOREVER, &fs[1]));
    tc.client = c;
    tc.future = NULL;
    tc.made = 0;
    pthread_create(&t, NULL, make_third_call, &tc);
    sleep_ms(150);
    CHECK(__atomic_load_n(&tc.made, __ATOMIC_SEQ_CST) == 0);
    /* One answer makes room: the third call goes out. */
    CHECK_OK(dime_next_call(p, 10000, &rq));
    CHECK_OK(dime_reply(rq, NULL));
    dime_request_free(rq);
    pthread_join(t, NULL);
    CHECK(tc.made == 1);
    for (i = 0; i < 2; i++) {
        CHECK_OK(dime_next_call(p, 10000, &rq));
        CHECK_OK(dime_reply(rq, NULL));
        dime_request_free(rq);
    }
    CHECK_OK(dime_future_wait(tc.future, 10000));
    for (i = 0; i < 2; i++) {
        CHECK_OK(dime_future_wait(fs[i], 10000));
        dime_future_free(fs[i]);
    }
    dime_future_free(tc.future);
    dime_client_free(p);
    dime_client_free(c);
}

/* Produces the ints 0..n-1 where n is the argument; counts cancellations. */
static int stream_cancels = 0;
static int32_t count_up(void *userdata, const dime_value *args, dime_request *rq)
{
    int64_t n = as_int(args), i;
    (void)userdata;
    if (n < 0) return 7; /* an error end */
    for (i = 0; i < n; i++) {
        dime_value *v = dime_value_new_int64(i);
        dime_status st = dime_stream_send(rq, v, DIME_WAIT_FOREVER);
        dime_value_free(v);
        if (st == DIME_STATUS_CANCELLED) {
            __atomic_add_fetch(&stream_cancels, 1, __ATOMIC_SEQ_CST);
            return 0;
        }
        if (st != DIME_STATUS_OK) return 1;
    }
    return 0;
}

static void streams(const char *address)
{
    dime_client *p = connect_to(address), *c = connect_to(address);
    dime_stream *s = NULL;
    dime_value *n = int_value(10000), *v = NULL, *neg = int_value(-1);
    int64_t expect = 0;
    int ok = 1, i;
    const char *type = NULL, *msg = NULL;

    CHECK_OK(dime_provide_stream_callback(p, "count", 2, count_up, NULL, NULL));
    /* Every item in order, then the end, also on later calls. */
    CHECK_OK(dime_stream_open(c, "count", n, 16, 0, DIME_WAIT_FOREVER, &s));
    while (dime_stream_next(s, 10000, &v) == DIME_STATUS_OK) {
        ok &= as_int(v) == expect++;
        dime_value_free(v);
        v = NULL;
    }
    CHECK(ok);
    CHECK(expect == 10000);
    CHECK_STATUS(dime_stream_next(s, 0, &v), DIME_STATUS_END_OF_STREAM);
    CHECK_STATUS(dime_stream_error(s, &type, &msg, NULL), DIME_STATUS_NOT_FOUND);
    dime_stream_close(s);

    /* Closing early stops the producer. */
    CHECK_OK(dime_stream_open(c, "count", n, 4, 0, DIME_WAIT_FOREVER, &s));
    CHECK_OK(dime_stream_next(s, 10000, &v));
    CHECK(as_int(v) == 0);
    dime_value_free(v);
    dime_stream_close(s);
    for (i = 0; i < 300 && __atomic_load_n(&stream_cancels, __ATOMIC_SEQ_CST) == 0; i++) sleep_ms(10);
    CHECK(__atomic_load_n(&stream_cancels, __ATOMIC_SEQ_CST) == 1);

    /* A producer's error ends the stream with REMOTE_ERROR, and stays. */
    CHECK_OK(dime_stream_open(c, "count", neg, 0, 0, DIME_WAIT_FOREVER, &s));
    CHECK_STATUS(dime_stream_next(s, 10000, &v), DIME_STATUS_REMOTE_ERROR);
    CHECK_ERROR_HAS("returned 7");
    CHECK_STATUS(dime_stream_next(s, 10000, &v), DIME_STATUS_REMOTE_ERROR);
    CHECK_OK(dime_stream_error(s, &type, &msg, NULL));
    CHECK(strcmp(type, "Error") == 0 && strstr(msg, "returned 7") != NULL);
    dime_stream_close(s);

    /* Pull form: a stream request, items, and an explicit end. */
    {
        dime_request *rq = NULL;
        dime_value *one = int_value(1);
        CHECK_OK(dime_provide(p, "pulled", 1));
        CHECK_OK(dime_stream_open(c, "pulled", NULL, 0, 0, DIME_WAIT_FOREVER, &s));
        CHECK_OK(dime_next_call(p, 10000, &rq));
        CHECK(dime_request_is_stream(rq) == 1);
        CHECK_STATUS(dime_reply(rq, NULL), DIME_STATUS_OK); /* a plain answer ends it too */
        CHECK_STATUS(dime_stream_send(rq, one, 0), DIME_STATUS_INVALID_ARGUMENT);
        dime_request_free(rq);
        CHECK_STATUS(dime_stream_next(s, 10000, &v), DIME_STATUS_END_OF_STREAM);
        dime_stream_close(s);
        CHECK_OK(dime_stream_open(c, "pulled", NULL, 0, 0, DIME_WAIT_FOREVER, &s));
        CHECK_OK(dime_next_call(p, 10000, &rq));
        CHECK_OK(dime_stream_send(rq, one, 10000));
        CHECK_OK(dime_stream_end(rq));
        CHECK_STATUS(dime_stream_end(rq), DIME_STATUS_INVALID_ARGUMENT);
        dime_request_free(rq);
        CHECK_OK(dime_stream_next(s, 10000, &v));
        CHECK(as_int(v) == 1);
        dime_value_free(v);
        CHECK_STATUS(dime_stream_next(s, 10000, &v), DIME_STATUS_END_OF_STREAM);
        dime_stream_close(s);
        dime_value_free(one);
    }
    dime_stream_close(NULL);
    dime_value_free(n);
    dime_value_free(neg);
    dime_client_free(p);
    dime_client_free(c);
}

/* The int64 a dimeb item of 9 bytes holds (tag 0x06, big-endian), or -1. */
static int64_t item_int(const uint8_t *b, size_t len)
{
    uint64_t v = 0;
    size_t i;
    if (len != 9 || b[0] != 0x06) return -1;
    for (i = 1; i < 9; i++) v = (v << 8) | b[i];
    return (int64_t)v;
}

/* dime_stream_next_many: every item once, in order, several per call when
 * they arrive in batches; at most half the window per call; the end. */
static void streams_many(const char *address)
{
    dime_client *p = connect_to(address), *c = connect_to(address);
    dime_stream *s = NULL;
    dime_value *n = int_value(10000), *v = NULL;
    const uint8_t *data = NULL;
    const size_t *lens = NULL;
    size_t count = 0, most = 0, i;
    int64_t expect = 0;
    int ok = 1;
    dime_status st;

    CHECK_OK(dime_provide_stream_callback(p, "count", 1, count_up, NULL, NULL));
    CHECK_OK(dime_stream_open(c, "count", n, 64, 0, DIME_WAIT_FOREVER, &s));
    CHECK_STATUS(dime_stream_next_many(s, 10000, 100, 1 << 20, NULL, &lens, &count),
                 DIME_STATUS_NULL_ARGUMENT);
    while ((st = dime_stream_next_many(s, 10000, 100, 1 << 20, &data, &lens, &count)) ==
           DIME_STATUS_OK) {
        size_t at = 0;
        ok &= count >= 1 && count <= 32;
        if (count > most) most = count;
        for (i = 0; i < count; i++) {
            ok &= item_int(data + at, lens[i]) == expect++;
            at += lens[i];
        }
        /* One item can be decoded by the library; several cannot. */
        if (count == 1) {
            CHECK_OK(dime_stream_item(s, &v));
            ok &= as_int(v) == expect - 1;
            dime_value_free(v);
            v = NULL;
        } else {
            ok &= dime_stream_item(s, &v) == DIME_STATUS_NOT_FOUND;
        }
    }
    CHECK(ok);
    CHECK_STATUS(st, DIME_STATUS_END_OF_STREAM);
    CHECK(expect == 10000);
    CHECK(most > 1);
    CHECK_STATUS(dime_stream_next_many(s, 0, 100, 1 << 20, &data, &lens, &count),
                 DIME_STATUS_END_OF_STREAM);
    dime_stream_close(s);
    dime_value_free(n);
    dime_client_free(p);
    dime_client_free(c);
}

static void embedded_server(void)
{
    const char *addrs[] = {"tcp:127.0.0.1:0"};
    const char *bad[] = {"nonsense:"};
    dime_server *srv = NULL;
    dime_client *p, *c;
    int calls = 0;

    CHECK_STATUS(dime_server_start(bad, 1, &srv), DIME_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(dime_server_start(addrs, 0, &srv), DIME_STATUS_INVALID_ARGUMENT);
    REQUIRE_OK(dime_server_start(addrs, 1, &srv));
    CHECK(strncmp(dime_server_address(srv, 0), "tcp:127.0.0.1:", 14) == 0);
    CHECK(strcmp(dime_server_address(srv, 0), "tcp:127.0.0.1:0") != 0);
    CHECK(dime_server_address(srv, 1) == NULL);
    p = connect_to(dime_server_address(srv, 0));
    c = connect_to(dime_server_address(srv, 0));
    CHECK_OK(dime_provide_callback(p, "double", 1, double_it, &calls, NULL));
    CHECK(call_int(c, "double", 21) == 42);
    dime_client_free(p);
    dime_client_free(c);
    CHECK_OK(dime_server_stop(srv));
    dime_server_stop(NULL);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s ADDRESS\n", argv[0]);
        return 2;
    }
    callback_provider(argv[1]);
    pull_provider(argv[1]);
    no_provider_cancel_and_lost(argv[1]);
    in_flight_cap(argv[1]);
    streams(argv[1]);
    streams_many(argv[1]);
    embedded_server();
    return check_done();
}
