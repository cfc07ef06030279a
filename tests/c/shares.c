/* Shared dictionaries through the C API: every kind of value stored and
 * read back, the dictionary operations, incr and cas semantics, share and
 * key locks (including a holder killed with SIGKILL), and wait_key waking
 * and timing out.
 *
 * usage: shares ADDRESS */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "clock.h"
#include "same_value.h"

static const char *address;

static dime_client *connect_or_die(void)
{
    dime_client *c = NULL;
    REQUIRE_OK(dime_connect(address, &c));
    return c;
}

/* Reads an int64 scalar, or INT64_MIN + 1 if v is not one. */
static int64_t as_i64(const dime_value *v)
{
    int64_t x = INT64_MIN + 1;
    if (dime_value_get_int64(v, &x) != DIME_STATUS_OK) return INT64_MIN + 1;
    return x;
}

/* A matrix of class cls and shape dims filled with a byte pattern that is
 * valid for every class (logical elements 0/1). */
static dime_value *matrix_value(dime_class cls, size_t rank, const size_t *dims)
{
    unsigned char data[4 * 3 * 2 * 16];
    size_t numel = 1, i, n;
    dime_value *v = NULL;
    for (i = 0; i < rank; i++) numel *= dims[i];
    n = numel * dime_class_size(cls);
    for (i = 0; i < n && i < sizeof data; i++) {
        data[i] = cls == DIME_CLASS_LOGICAL ? (unsigned char)(i % 2) : (unsigned char)(i * 37 + 5);
    }
    if (dime_value_new_matrix(cls, rank, dims, data, &v) != DIME_STATUS_OK) return NULL;
    return v;
}

#define MAX_VALUES 64

/* One value of every row of the type table, plus edge cases. */
static size_t every_kind(dime_value **out)
{
    static const dime_class classes[] = {
        DIME_CLASS_INT8,   DIME_CLASS_INT16,  DIME_CLASS_INT32,  DIME_CLASS_INT64,
        DIME_CLASS_UINT8,  DIME_CLASS_UINT16, DIME_CLASS_UINT32, DIME_CLASS_UINT64,
        DIME_CLASS_SINGLE, DIME_CLASS_DOUBLE, DIME_CLASS_COMPLEX_SINGLE,
        DIME_CLASS_COMPLEX_DOUBLE, DIME_CLASS_LOGICAL,
    };
    static const char nul_string[] = "h\xc3\xa9llo\0world";
    size_t dims23[2] = {2, 3}, dims432[3] = {4, 3, 2}, dims03[2] = {0, 3};
    size_t n = 0, k;
    dime_value *list, *inner, *map, *sub, *key;

    out[n++] = dime_value_new_null();
    out[n++] = dime_value_new_bool(true);
    out[n++] = dime_value_new_bool(false);
    out[n++] = dime_value_new_int8(INT8_MIN);
    out[n++] = dime_value_new_int16(INT16_MAX);
    out[n++] = dime_value_new_int32(INT32_MIN);
    out[n++] = dime_value_new_int64(INT64_MIN);
    out[n++] = dime_value_new_uint8(UINT8_MAX);
    out[n++] = dime_value_new_uint16(UINT16_MAX);
    out[n++] = dime_value_new_uint32(UINT32_MAX);
    out[n++] = dime_value_new_uint64(UINT64_MAX);
    out[n++] = dime_value_new_single(-1.5f);
    out[n++] = dime_value_new_double(-0.0);
    out[n++] = dime_value_new_double(NAN);
    out[n++] = dime_value_new_double(INFINITY);
    out[n++] = dime_value_new_complex_single(1.25f, -2.5f);
    out[n++] = dime_value_new_complex_double(3.0, 0.0);
    out[n] = NULL;
    CHECK_OK(dime_value_new_string(nul_string, sizeof nul_string - 1, &out[n]));
    n++;
    out[n++] = str_value("");
    for (k = 0; k < sizeof classes / sizeof classes[0]; k++) {
        out[n++] = matrix_value(classes[k], 2, dims23);
    }
    out[n++] = matrix_value(DIME_CLASS_DOUBLE, 3, dims432);
    out[n++] = matrix_value(DIME_CLASS_INT32, 2, dims03);
    out[n++] = matrix_value(DIME_CLASS_DOUBLE, 0, NULL);

    /* ["a", 7, [true, null], {}] */
    list = dime_value_new_list();
    CHECK_OK(dime_value_list_append(list, str_value("a")));
    CHECK_OK(dime_value_list_append(list, dime_value_new_int64(7)));
    inner = dime_value_new_list();
    CHECK_OK(dime_value_list_append(inner, dime_value_new_bool(true)));
    CHECK_OK(dime_value_list_append(inner, dime_value_new_null()));
    CHECK_OK(dime_value_list_append(list, inner));
    CHECK_OK(dime_value_list_append(list, dime_value_new_map()));
    out[n++] = list;
    out[n++] = dime_value_new_list();

    /* {"x": 1.5, "m": {"deep": [1x1 uint8]}, 3: "int key"} */
    map = dime_value_new_map();
    CHECK_OK(dime_value_map_set(map, "x", dime_value_new_double(1.5)));
    sub = dime_value_new_map();
    CHECK_OK(dime_value_map_set(sub, "deep", matrix_value(DIME_CLASS_UINT8, 2, dims23)));
    CHECK_OK(dime_value_map_set(map, "m", sub));
    key = dime_value_new_int32(3);
    CHECK_OK(dime_value_map_set_value(map, key, str_value("int key")));
    out[n++] = map;
    out[n++] = dime_value_new_map();
    for (k = 0; k < n; k++) CHECK(out[k] != NULL);
    return n;
}

static void every_kind_round_trips(dime_client *c)
{
    dime_value *values[MAX_VALUES];
    const char *keys[MAX_VALUES];
    char names[MAX_VALUES][16];
    size_t n = every_kind(values), k, len = 0;
    dime_value *many = NULL;

    printf("# %zu values of every kind through share_set / share_get\n", n);
    for (k = 0; k < n; k++) {
        dime_value *back = NULL;
        snprintf(names[k], sizeof names[k], "v%02zu", k);
        keys[k] = names[k];
        CHECK_OK(share_set(c, "types", names[k], values[k]));
        /* share_set only reads: the value is still the caller's and intact. */
        CHECK(dime_value_kind(values[k]) != DIME_KIND_INVALID);
        CHECK_OK(share_get(c, "types", names[k], &back));
        if (!same_value(values[k], back)) printf("# value %zu differs after the round trip\n", k);
        CHECK(same_value(values[k], back));
        dime_value_free(back);
    }
    CHECK_OK(share_len(c, "types", &len));
    CHECK(len == n);

    /* get_many returns a map of the keys that exist, in request order. */
    keys[n] = "missing";
    CHECK_OK(share_get_many(c, "types", keys, n + 1, &many));
    CHECK(dime_value_kind(many) == DIME_KIND_MAP);
    CHECK_OK(dime_value_map_len(many, &len));
    CHECK(len == n);
    for (k = 0; k < n; k++) {
        const dime_value *got = NULL;
        CHECK(dime_value_map_get(many, names[k], &got) == DIME_STATUS_OK &&
              same_value(values[k], got));
    }
    dime_value_free(many);
    many = NULL;
    CHECK_OK(share_get_many(c, "types", NULL, 0, &many));
    CHECK(dime_value_map_len(many, &len) == DIME_STATUS_OK && len == 0);
    dime_value_free(many);

    for (k = 0; k < n; k++) dime_value_free(values[k]);
    CHECK_OK(share_clear(c, "types"));
}

static void dictionary_operations(dime_client *c)
{
    dime_value *v = dime_value_new_int64(11), *back = NULL, *keys = NULL, *sentinel;
    dime_value *map;
    bool flag = false;
    size_t len = 99;
    const dime_value *item = NULL;
    const char *s = NULL;

    printf("# set/get/del/contains/keys/len/clear/pop on the default share\n");
    sentinel = (dime_value *)&flag; /* any non-NULL address, never freed */
    CHECK_OK(share_clear(c, NULL));
    /* NULL and "" both name the default share. */
    CHECK_OK(share_set(c, NULL, "b", v));
    CHECK_OK(share_get(c, "", "b", &back));
    CHECK(as_i64(back) == 11);
    dime_value_free(back);
    CHECK_OK(share_set(c, "", "a", v));

    back = sentinel;
    CHECK_STATUS(share_get(c, NULL, "nope", &back), DIME_STATUS_NOT_FOUND);
    CHECK_ERROR_HAS("nope");
    CHECK(back == sentinel); /* outputs are written only on success */
    CHECK_STATUS(share_get(c, NULL, "b", NULL), DIME_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(share_get(c, NULL, NULL, &back), DIME_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(share_get(NULL, NULL, "b", &back), DIME_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(share_get(c, NULL, "\xff", &back), DIME_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(share_set(c, NULL, "b", NULL), DIME_STATUS_NULL_ARGUMENT);

    CHECK_OK(share_contains(c, NULL, "a", &flag));
    CHECK(flag == true);
    CHECK_OK(share_contains(c, NULL, "zzz", &flag));
    CHECK(flag == false);

    CHECK_OK(share_keys(c, NULL, &keys));
    CHECK(dime_value_list_len(keys, &len) == DIME_STATUS_OK && len == 2);
    CHECK(dime_value_list_get(keys, 0, &item) == DIME_STATUS_OK &&
          dime_value_get_string(item, &s, &len) == DIME_STATUS_OK && len == 1 && s[0] == 'a');
    CHECK(dime_value_list_get(keys, 1, &item) == DIME_STATUS_OK &&
          dime_value_get_string(item, &s, &len) == DIME_STATUS_OK && len == 1 && s[0] == 'b');
    dime_value_free(keys);
    CHECK_OK(share_len(c, NULL, &len));
    CHECK(len == 2);

    CHECK_OK(share_del(c, NULL, "a", &flag));
    CHECK(flag == true);
    flag = true;
    CHECK_OK(share_del(c, NULL, "a", &flag));
    CHECK(flag == false);

    CHECK_OK(share_pop(c, NULL, "b", &back));
    CHECK(as_i64(back) == 11);
    dime_value_free(back);
    back = sentinel;
    CHECK_STATUS(share_pop(c, NULL, "b", &back), DIME_STATUS_NOT_FOUND);
    CHECK(back == sentinel);
    CHECK_OK(share_len(c, NULL, &len));
    CHECK(len == 0);

    /* set_many stores a map in one step; keys must be strings. */
    map = dime_value_new_map();
    CHECK_OK(dime_value_map_set(map, "p", dime_value_new_int64(1)));
    CHECK_OK(dime_value_map_set(map, "q", str_value("two")));
    CHECK_OK(share_set_many(c, NULL, map));
    CHECK_OK(share_len(c, NULL, &len));
    CHECK(len == 2);
    CHECK_OK(share_get(c, NULL, "p", &back));
    CHECK(as_i64(back) == 1);
    dime_value_free(back);
    CHECK_OK(dime_value_map_set_value(map, dime_value_new_int64(5), dime_value_new_null()));
    CHECK_STATUS(share_set_many(c, NULL, map), DIME_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(share_set_many(c, NULL, v), DIME_STATUS_WRONG_TYPE);
    dime_value_free(map);
    CHECK_OK(share_clear(c, NULL));
    CHECK_OK(share_len(c, NULL, &len));
    CHECK(len == 0);

    /* Shares are separate namespaces. */
    CHECK_OK(share_set(c, "one", "k", v));
    CHECK_STATUS(share_get(c, "two", "k", &back), DIME_STATUS_NOT_FOUND);
    CHECK_STATUS(share_get(c, NULL, "k", &back), DIME_STATUS_NOT_FOUND);
    CHECK_OK(share_clear(c, "one"));
    dime_value_free(v);
}

static void incr_and_cas(dime_client *c)
{
    dime_value *d5 = dime_value_new_int64(5), *dm2 = dime_value_new_int64(-2);
    dime_value *d32 = dime_value_new_int32(1), *half = dime_value_new_double(0.5);
    dime_value *one = dime_value_new_int64(1), *one_f = dime_value_new_double(1.0);
    dime_value *max = dime_value_new_int64(INT64_MAX), *text = str_value("two");
    dime_value *out = NULL, *sentinel;
    double x = 0;
    bool swapped = false;
    size_t len = 0;

    printf("# incr creates at 0, keeps the stored integer kind, promotes to double\n");
    sentinel = (dime_value *)&x;
    CHECK_OK(share_incr(c, "n", "count", d5, &out));
    CHECK(dime_value_kind(out) == DIME_KIND_INT64 && as_i64(out) == 5);
    dime_value_free(out);
    CHECK_OK(share_incr(c, "n", "count", dm2, &out));
    CHECK(as_i64(out) == 3);
    dime_value_free(out);
    CHECK_OK(share_incr(c, "n", "count", d32, &out));
    CHECK(dime_value_kind(out) == DIME_KIND_INT64 && as_i64(out) == 4);
    dime_value_free(out);
    CHECK_OK(share_incr(c, "n", "count", half, &out));
    CHECK(dime_value_get_double(out, &x) == DIME_STATUS_OK && x == 4.5);
    dime_value_free(out);
    CHECK_OK(share_get(c, "n", "count", &out));
    CHECK(dime_value_get_double(out, &x) == DIME_STATUS_OK && x == 4.5);
    dime_value_free(out);

    /* Not a number, or overflow: refused, nothing changes, client usable. */
    CHECK_OK(share_set(c, "n", "text", text));
    out = sentinel;
    CHECK_STATUS(share_incr(c, "n", "text", one, &out), DIME_STATUS_SERVER_ERROR);
    CHECK(out == sentinel);
    CHECK_STATUS(share_incr(c, "n", "count", text, &out), DIME_STATUS_SERVER_ERROR);
    CHECK_OK(share_set(c, "n", "big", max));
    CHECK_STATUS(share_incr(c, "n", "big", one, &out), DIME_STATUS_SERVER_ERROR);
    CHECK_OK(share_get(c, "n", "big", &out));
    CHECK(as_i64(out) == INT64_MAX);
    dime_value_free(out);
    CHECK_STATUS(share_incr(c, "n", "count", NULL, &out), DIME_STATUS_NULL_ARGUMENT);

    printf("# cas: NULL expected means absent; equality is type and bits\n");
    CHECK_OK(share_cas(c, "n", "c", NULL, one, &swapped));
    CHECK(swapped == true);
    CHECK_OK(share_cas(c, "n", "c", NULL, text, &swapped));
    CHECK(swapped == false);
    swapped = true;
    CHECK_OK(share_cas(c, "n", "c", one_f, text, &swapped));
    CHECK(swapped == false); /* double 1.0 is not int64 1 */
    CHECK_OK(share_get(c, "n", "c", &out));
    CHECK(as_i64(out) == 1);
    dime_value_free(out);
    CHECK_OK(share_cas(c, "n", "c", one, text, &swapped));
    CHECK(swapped == true);
    CHECK_OK(share_get(c, "n", "c", &out));
    CHECK(same_value(out, text));
    dime_value_free(out);
    CHECK_OK(share_cas(c, "n", "c", one, max, &swapped));
    CHECK(swapped == false); /* stale expectation */
    CHECK_STATUS(share_cas(c, "n", "c", one, NULL, &swapped), DIME_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(share_cas(c, "n", "c", one, text, NULL), DIME_STATUS_NULL_ARGUMENT);
    CHECK_OK(share_clear(c, "n"));
    CHECK_OK(share_len(c, "n", &len));
    CHECK(len == 0);

    dime_value_free(d5);
    dime_value_free(dm2);
    dime_value_free(d32);
    dime_value_free(half);
    dime_value_free(one);
    dime_value_free(one_f);
    dime_value_free(max);
    dime_value_free(text);
}

/* A write from a second connection, run on its own thread. */
struct writer {
    dime_client *client;
    const char *share, *key;
    long delay_ms;
    dime_status status;
    double done_at;
};

static void *write_later(void *arg)
{
    struct writer *w = arg;
    dime_value *v = str_value("written");
    sleep_ms(w->delay_ms);
    w->status = share_set(w->client, w->share, w->key, v);
    w->done_at = now_ms();
    dime_value_free(v);
    return NULL;
}

static void locks(dime_client *c1, dime_client *c2)
{
    dime_client *c3;
    dime_value *v = dime_value_new_int64(1), *out = NULL;
    struct writer w;
    pthread_t t;
    bool flag = true;
    double t0, unlocked_at;

    printf("# whole-share lock: exclusive, not re-entrant, holds back writes\n");
    CHECK_OK(share_lock(c1, "L", NULL, DIME_WAIT_FOREVER));
    CHECK_STATUS(share_lock(c1, "L", NULL, 0), DIME_STATUS_SERVER_ERROR);
    CHECK_ERROR_HAS("re-entrant");
    CHECK_STATUS(share_try_lock(c2, "L", NULL), DIME_STATUS_TIMEOUT);
    t0 = now_ms();
    CHECK_STATUS(share_lock(c2, "L", NULL, 150), DIME_STATUS_TIMEOUT);
    CHECK(now_ms() - t0 >= 140);
    CHECK_STATUS(share_unlock(c2, "L", NULL), DIME_STATUS_SERVER_ERROR);
    /* The holder writes freely; others still read. */
    CHECK_OK(share_set(c1, "L", "x", v));
    CHECK_OK(share_get(c2, "L", "x", &out));
    CHECK(as_i64(out) == 1);
    dime_value_free(out);

    /* Another client's write waits until the lock is released. */
    w.client = c2;
    w.share = "L";
    w.key = "y";
    w.delay_ms = 0;
    w.status = DIME_STATUS_PANIC;
    w.done_at = 0;
    CHECK(pthread_create(&t, NULL, write_later, &w) == 0);
    sleep_ms(300);
    CHECK_OK(share_contains(c1, "L", "y", &flag));
    CHECK(flag == false);
    unlocked_at = now_ms();
    CHECK_OK(share_unlock(c1, "L", NULL));
    pthread_join(t, NULL);
    CHECK(w.status == DIME_STATUS_OK);
    CHECK(w.done_at >= unlocked_at);
    CHECK_OK(share_contains(c1, "L", "y", &flag));
    CHECK(flag == true);

    printf("# key locks: independent of each other and of writes\n");
    CHECK_OK(share_lock(c1, "L", "k", 1000));
    CHECK_STATUS(share_try_lock(c2, "L", "k"), DIME_STATUS_TIMEOUT);
    CHECK_OK(share_try_lock(c2, "L", "other"));
    CHECK_OK(share_try_lock(c2, "L", NULL)); /* the share lock is separate */
    CHECK_OK(share_unlock(c2, "L", NULL));
    CHECK_OK(share_set(c2, "L", "k", v)); /* advisory: writes go through */
    CHECK_STATUS(share_unlock(c2, "L", "k"), DIME_STATUS_SERVER_ERROR);
    CHECK_OK(share_unlock(c1, "L", "k"));
    CHECK_OK(share_try_lock(c2, "L", "k"));
    CHECK_OK(share_unlock(c2, "L", "k"));
    CHECK_OK(share_unlock(c2, "L", "other"));

    printf("# closing a client releases its locks\n");
    c3 = connect_or_die();
    CHECK_OK(share_lock(c3, "L", NULL, 0));
    CHECK_OK(share_lock(c3, "L", "k", 0));
    CHECK_OK(dime_close(c3));
    CHECK_OK(share_lock(c1, "L", NULL, 1000));
    CHECK_OK(share_lock(c1, "L", "k", 1000));
    CHECK_OK(share_unlock(c1, "L", NULL));
    CHECK_OK(share_unlock(c1, "L", "k"));
    CHECK_STATUS(share_lock(c3, "L", NULL, 0), DIME_STATUS_CLOSED);
    dime_client_free(c3);
    CHECK_OK(share_clear(c1, "L"));
    dime_value_free(v);
}

/* The child: connects, takes the share lock and a key lock, tells the
 * parent, and waits to be killed. Never returns. */
static void hold_locks_until_killed(int ready_fd)
{
    dime_client *c = NULL;
    char ok = 'L';
    if (dime_connect(address, &c) != DIME_STATUS_OK ||
        share_lock(c, "K", NULL, 5000) != DIME_STATUS_OK ||
        share_lock(c, "K", "job", 5000) != DIME_STATUS_OK)
        ok = 'E';
    if (write(ready_fd, &ok, 1) != 1) _exit(3);
    for (;;) pause();
}

static void lock_released_when_holder_is_killed(dime_client *c)
{
    int fds[2];
    pid_t pid;
    char ready = 0;
    int status = 0;
    double t0, took;

    printf("# a holder killed with SIGKILL loses its locks within a second\n");
    if (pipe(fds) != 0) {
        CHECK(!"pipe failed");
        return;
    }
    /* Flush first, or the child would inherit (and might repeat) output. */
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        close(fds[0]);
        hold_locks_until_killed(fds[1]);
    }
    close(fds[1]);
    CHECK(pid > 0);
    if (pid <= 0) return;
    CHECK(read(fds[0], &ready, 1) == 1 && ready == 'L');
    close(fds[0]);
    /* The child really holds both locks. */
    CHECK_STATUS(share_try_lock(c, "K", NULL), DIME_STATUS_TIMEOUT);
    CHECK_STATUS(share_try_lock(c, "K", "job"), DIME_STATUS_TIMEOUT);

    t0 = now_ms();
    CHECK(kill(pid, SIGKILL) == 0);
    CHECK_OK(share_lock(c, "K", NULL, 1000));
    CHECK_OK(share_lock(c, "K", "job", 1000));
    took = now_ms() - t0;
    printf("# locks acquired %.1f ms after SIGKILL\n", took);
    CHECK(took < 1000);
    CHECK(waitpid(pid, &status, 0) == pid && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    CHECK_OK(share_unlock(c, "K", NULL));
    CHECK_OK(share_unlock(c, "K", "job"));
}

static void wait_key(dime_client *c1, dime_client *c2)
{
    dime_value *out = NULL, *sentinel, *v = dime_value_new_int64(7), *expect;
    struct writer w;
    pthread_t t;
    double t0, took;
    int dummy = 0;

    printf("# wait_key: times out, returns at once for a present key, wakes on set\n");
    sentinel = (dime_value *)&dummy;
    out = sentinel;
    t0 = now_ms();
    CHECK_STATUS(share_wait_key(c1, "W", "absent", 200, &out), DIME_STATUS_TIMEOUT);
    took = now_ms() - t0;
    CHECK(took >= 180 && took < 3000);
    CHECK(out == sentinel);
    CHECK_STATUS(share_wait_key(c1, "W", "absent", 0, &out), DIME_STATUS_TIMEOUT);
    /* The client is still usable after a timeout. */
    CHECK_OK(share_set(c1, "W", "here", v));
    CHECK_OK(share_wait_key(c1, "W", "here", 0, &out));
    CHECK(as_i64(out) == 7);
    dime_value_free(out);

    w.client = c2;
    w.share = "W";
    w.key = "late";
    w.delay_ms = 200;
    w.status = DIME_STATUS_PANIC;
    w.done_at = 0;
    t0 = now_ms();
    CHECK(pthread_create(&t, NULL, write_later, &w) == 0);
    out = NULL;
    CHECK_OK(share_wait_key(c1, "W", "late", DIME_WAIT_FOREVER, &out));
    took = now_ms() - t0;
    pthread_join(t, NULL);
    CHECK(w.status == DIME_STATUS_OK);
    CHECK(took >= 150);
    expect = str_value("written");
    CHECK(same_value(out, expect));
    dime_value_free(expect);
    dime_value_free(out);
    /* wait_key does not remove the key. */
    CHECK_OK(share_get(c1, "W", "late", &out));
    dime_value_free(out);
    CHECK_OK(share_clear(c1, "W"));
    dime_value_free(v);
}

int main(int argc, char **argv)
{
    dime_client *c1, *c2;
    dime_value *out = NULL;

    if (argc != 2) {
        fprintf(stderr, "usage: %s ADDRESS\n", argv[0]);
        return 2;
    }
    address = argv[1];
    c1 = connect_or_die();
    c2 = connect_or_die();

    every_kind_round_trips(c1);
    dictionary_operations(c1);
    incr_and_cas(c1);
    locks(c1, c2);
    wait_key(c1, c2);
    lock_released_when_holder_is_killed(c1);

    CHECK_OK(dime_close(c2));
    CHECK_STATUS(share_get(c2, NULL, "x", &out), DIME_STATUS_CLOSED);
    dime_client_free(c2);
    dime_client_free(c1);
    return check_done();
}
