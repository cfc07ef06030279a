/* Pipelined sends and encoded values in the C API: dime_send returns once
 * written, a refused send is reported later naming it, dime_flush waits for
 * every answer, the window bounds what is unanswered, DIME_PIPELINE turns
 * it on at connect; dime_value_encode/decode, dime_send_encoded and
 * dime_sync_encoded; and, against an original DiME2 server (the test
 * double), the window of its own client.
 *
 * usage: pipeline OUR_ADDRESS DOUBLE_ADDRESS */
#define _POSIX_C_SOURCE 200809L

#include "check.h"

static dime_client *connect_to(const char *address)
{
    dime_client *c = NULL;
    REQUIRE_OK(dime_connect(address, &c));
    return c;
}

static size_t window_of(dime_client *c)
{
    size_t w = 9999;
    CHECK_OK(dime_pipeline_window(c, &w));
    return w;
}

static size_t unacknowledged(dime_client *c)
{
    size_t n = 9999;
    CHECK_OK(dime_unacknowledged(c, &n));
    return n;
}

static void join(dime_client *c, const char *group)
{
    const char *groups[] = {group};
    REQUIRE_OK(dime_join(c, groups, 1));
}

/* Receives everything queued and checks it is `count` int64 values 0, 1, ...
 * in order. */
static void check_sequence(dime_client *c, size_t count)
{
    dime_messages *msgs = NULL;
    size_t in_order = 0;
    REQUIRE_OK(dime_sync(c, DIME_SYNC_ALL, &msgs));
    CHECK(dime_messages_len(msgs) == count);
    for (size_t i = 0; i < dime_messages_len(msgs); i++) {
        const char *name;
        const dime_value *v;
        int64_t x = -1;
        if (dime_messages_get(msgs, i, &name, &v) == DIME_STATUS_OK &&
            dime_value_get_int64(v, &x) == DIME_STATUS_OK && x == (int64_t)i) {
            in_order++;
        }
    }
    CHECK(in_order == count);
    dime_messages_free(msgs);
}

static void pipelining_against_our_server(const char *address)
{
    dime_client *a = connect_to(address);
    dime_client *b = connect_to(address);
    dime_value *v = dime_value_new_int64(7);
    join(b, "b");

    /* Off by default: a refused send fails at once, as in DiME2. */
    CHECK(window_of(a) == 0);
    CHECK_STATUS(dime_send(a, "nobody", "x", v), DIME_STATUS_SERVER_ERROR);
    CHECK_ERROR_HAS("No such group exists: nobody");

    /* On: the refused send returns at once and is reported by flush. */
    CHECK_OK(dime_set_pipeline(a, 64));
    CHECK(window_of(a) == 64);
    CHECK_OK(dime_send(a, "b", "first", v));
    CHECK_OK(dime_send(a, "nobody", "lost", v));
    CHECK_OK(dime_broadcast(a, "third", v));
    CHECK(unacknowledged(a) == 3);
    CHECK_STATUS(dime_flush(a), DIME_STATUS_SERVER_ERROR);
    CHECK_ERROR_HAS("pipelined send #3 of 'lost' to group 'nobody' failed: No such group exists");
    CHECK(unacknowledged(a) == 0);
    CHECK_OK(dime_flush(a));
    {
        dime_messages *msgs = NULL;
        REQUIRE_OK(dime_sync(b, DIME_SYNC_ALL, &msgs));
        CHECK(dime_messages_len(msgs) == 2);
        dime_messages_free(msgs);
    }

    /* A burst: never more than the window unanswered, all delivered in
     * order once flushed. */
    {
        size_t most = 0;
        for (int64_t i = 0; i < 500; i++) {
            dime_value *x = dime_value_new_int64(i);
            CHECK_OK(dime_send(a, "b", "seq", x));
            dime_value_free(x);
            if (unacknowledged(a) > most) most = unacknowledged(a);
        }
        CHECK(most <= 64);
        CHECK_OK(dime_flush(a));
        check_sequence(b, 500);
    }

    /* The client's own sync sees its earlier sends, and reports a failure
     * without losing what it fetched. */
    join(a, "a");
    {
        dime_value *x = dime_value_new_int64(0);
        dime_messages *msgs = NULL;
        CHECK_OK(dime_send(a, "a", "mine", x));
        CHECK_OK(dime_send(a, "nobody", "bad", x));
        CHECK_STATUS(dime_sync(a, DIME_SYNC_ALL, &msgs), DIME_STATUS_SERVER_ERROR);
        CHECK_ERROR_HAS("'bad' to group 'nobody'");
        check_sequence(a, 1);
        dime_value_free(x);
    }

    /* Turning it off waits for the answers and reports a failure. */
    CHECK_OK(dime_send(a, "nobody", "off", v));
    CHECK_STATUS(dime_set_pipeline(a, 0), DIME_STATUS_SERVER_ERROR);
    CHECK(window_of(a) == 0);

    /* dime_close reports what is still unreported, and closes anyway. */
    CHECK_OK(dime_set_pipeline(a, DIME_PIPELINE_WINDOW));
    CHECK_OK(dime_send(a, "nobody", "at_close", v));
    CHECK_STATUS(dime_close(a), DIME_STATUS_SERVER_ERROR);
    CHECK_ERROR_HAS("'at_close'");
    CHECK_STATUS(dime_send(a, "b", "x", v), DIME_STATUS_CLOSED);
    CHECK_OK(dime_close(a));

    dime_value_free(v);
    dime_client_free(a);
    dime_client_free(b);
}

static void pipeline_from_the_environment(const char *address)
{
    dime_client *c = NULL;
    setenv("DIME_PIPELINE", "on", 1);
    c = connect_to(address);
    CHECK(window_of(c) == DIME_PIPELINE_WINDOW);
    dime_client_free(c);
    setenv("DIME_PIPELINE", "8", 1);
    c = connect_to(address);
    CHECK(window_of(c) == 8);
    dime_client_free(c);
    c = NULL;
    setenv("DIME_PIPELINE", "sometimes", 1);
    CHECK_STATUS(dime_connect(address, &c), DIME_STATUS_INVALID_ARGUMENT);
    CHECK_ERROR_HAS("DIME_PIPELINE");
    CHECK(c == NULL);
    unsetenv("DIME_PIPELINE");
    c = connect_to(address);
    CHECK(window_of(c) == 0);
    dime_client_free(c);
}

static void encoded_values(const char *address)
{
    dime_client *a = connect_to(address);
    dime_client *b = connect_to(address);
    dime_value *map = dime_value_new_map();
    void *bytes = NULL;
    size_t len = 0;
    join(b, "enc");
    dime_value_map_set(map, "t", dime_value_new_double(0.5));
    dime_value_map_set(map, "k", dime_value_new_int64(3));
    REQUIRE_OK(dime_value_encode(map, &bytes, &len));
    /* 0x22 (map), 2 entries, then "t"... */
    CHECK(len > 5 && ((unsigned char *)bytes)[0] == 0x22 && ((unsigned char *)bytes)[4] == 2);

    {
        dime_value *back = NULL;
        void *again = NULL;
        size_t again_len = 0;
        REQUIRE_OK(dime_value_decode(bytes, len, &back));
        REQUIRE_OK(dime_value_encode(back, &again, &again_len));
        CHECK(again_len == len && memcmp(again, bytes, len) == 0);
        dime_data_free(again, again_len);
        dime_value_free(back);
        CHECK_STATUS(dime_value_decode(bytes, len - 1, &back), DIME_STATUS_CODEC_ERROR);
        CHECK_ERROR_HAS("truncated");
    }

    /* Sent as they are; bytes that are not one value are refused. */
    CHECK_OK(dime_send_encoded(a, "enc", "m", bytes, len));
    CHECK_STATUS(dime_send_encoded(a, "enc", "short", bytes, len - 1), DIME_STATUS_INVALID_ARGUMENT);
    CHECK_ERROR_HAS("variable 'short'");
    {
        const char *names[] = {"m2", "m3"};
        const void *data[] = {bytes, bytes};
        size_t lens[] = {len, len};
        CHECK_OK(dime_send_encoded_many(a, "enc", names, data, lens, 2));
        CHECK_OK(dime_broadcast_encoded(a, "m4", bytes, len));
        CHECK_OK(dime_broadcast_encoded_many(a, names, data, lens, 1));
    }

    {
        dime_messages *msgs = NULL;
        const char *name = NULL;
        const void *data = NULL;
        size_t n = 0;
        const dime_value *v = NULL;
        dime_value *taken = NULL;
        int64_t k = 0;
        REQUIRE_OK(dime_sync_encoded(b, DIME_SYNC_ALL, &msgs));
        CHECK(dime_messages_len(msgs) == 5);
        REQUIRE_OK(dime_messages_payload(msgs, 0, &name, &data, &n));
        CHECK(strcmp(name, "m") == 0 && n == len && memcmp(data, bytes, len) == 0);
        REQUIRE_OK(dime_messages_get(msgs, 1, &name, &v));
        CHECK(strcmp(name, "m2") == 0 && dime_value_kind(v) == DIME_KIND_MAP);
        REQUIRE_OK(dime_messages_take(msgs, 2, &taken));
        {
            const dime_value *kv = NULL;
            CHECK_OK(dime_value_map_get(taken, "k", &kv));
            CHECK_OK(dime_value_get_int64(kv, &k));
            CHECK(k == 3);
        }
        CHECK_STATUS(dime_messages_payload(msgs, 2, &name, &data, &n), DIME_STATUS_WRONG_TYPE);
        CHECK_STATUS(dime_messages_payload(msgs, 5, &name, &data, &n), DIME_STATUS_OUT_OF_RANGE);
        dime_value_free(taken);
        dime_messages_free(msgs);
        /* A list from dime_sync has no payloads. */
        CHECK_OK(dime_send_encoded(a, "enc", "m", bytes, len));
        REQUIRE_OK(dime_sync(b, DIME_SYNC_ALL, &msgs));
        CHECK_STATUS(dime_messages_payload(msgs, 0, &name, &data, &n), DIME_STATUS_WRONG_TYPE);
        dime_messages_free(msgs);
    }

    dime_data_free(bytes, len);
    dime_value_free(map);
    dime_client_free(a);
    dime_client_free(b);
}

static void pipelining_against_an_original_server(const char *address)
{
    dime_client *a = connect_to(address);
    dime_value *v = dime_value_new_int64(1);
    size_t count = 0;
    join(a, "a");
    /* Held to the 16 sends DiME2's own Python client writes ahead. */
    CHECK_OK(dime_set_pipeline(a, DIME_PIPELINE_WINDOW));
    CHECK(window_of(a) == 16);
    for (int i = 0; i < 40; i++) {
        CHECK_OK(dime_send(a, "a", "x", v));
        CHECK(unacknowledged(a) <= 16);
    }
    /* DiME2's blocking wait, behind the answers to the sends. */
    CHECK_OK(dime_wait(a, DIME_WAIT_FOREVER, &count));
    CHECK(count == 40);
    CHECK_OK(dime_send(a, "nobody", "x", v));
    CHECK_STATUS(dime_flush(a), DIME_STATUS_SERVER_ERROR);
    CHECK_ERROR_HAS("pipelined send #41");
    dime_value_free(v);
    dime_client_free(a);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: pipeline OUR_ADDRESS DOUBLE_ADDRESS\n");
        return 2;
    }
    pipelining_against_our_server(argv[1]);
    pipeline_from_the_environment(argv[1]);
    encoded_values(argv[1]);
    pipelining_against_an_original_server(argv[2]);
    return check_done();
}
