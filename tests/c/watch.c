/* Leases, fencing tokens and change events through the C API: a leased
 * lock that runs out passes to the next waiter with a larger token, the
 * old token's writes are refused, renewal keeps a lock, and watches of a
 * share (by prefix), a tuple space and group membership deliver their
 * events, resuming from a saved position.
 *
 * usage: watch ADDRESS */
#define _POSIX_C_SOURCE 200809L

#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

static const char *address;

static dime_client *connect_or_die(void)
{
    dime_client *c = NULL;
    REQUIRE_OK(dime_connect(address, &c));
    return c;
}

static int64_t as_i64(const dime_value *v)
{
    int64_t x = INT64_MIN + 1;
    if (v == NULL || dime_value_get_int64(v, &x) != DIME_STATUS_OK) return INT64_MIN + 1;
    return x;
}

static int key_is(const dime_event *ev, const char *key)
{
    const char *k = dime_event_key(ev);
    return k != NULL && strcmp(k, key) == 0;
}

static void leases_and_fencing(void)
{
    dime_client *a = connect_or_die(), *b = connect_or_die();
    uint64_t t1 = 0, t2 = 0, t3 = 0;
    dime_value *v = dime_value_new_int64(1), *got = NULL;
    bool found = false;

    CHECK_OK(share_lock_lease(a, "c", "job", DIME_WAIT_FOREVER, 150, &t1));
    CHECK(t1 > 0);
    /* b waits until a's lease runs out (a never renews). */
    CHECK_OK(share_lock_lease(b, "c", "job", 5000, 0, &t2));
    CHECK(t2 > t1);
    CHECK_STATUS(share_lock_renew(a, "c", "job", 1000, &t3), DIME_STATUS_SERVER_ERROR);
    CHECK_ERROR_HAS("does not hold the lock");
    CHECK_OK(share_set_fenced(b, "c", "job", v, t2));
    CHECK_STATUS(share_set_fenced(a, "c", "job", v, t1), DIME_STATUS_SERVER_ERROR);
    CHECK_ERROR_HAS("refused");
    CHECK_STATUS(share_del_fenced(a, "c", "job", t1, &found), DIME_STATUS_SERVER_ERROR);
    CHECK_OK(share_get(a, "c", "job", &got));
    CHECK(as_i64(got) == 1);
    dime_value_free(got);
    CHECK_OK(share_del_fenced(b, "c", "job", t2, &found));
    CHECK(found);
    CHECK_OK(share_unlock(b, "c", "job"));

    /* Renewing keeps a leased lock past its first lease. */
    CHECK_OK(share_lock_lease(a, "c", NULL, DIME_WAIT_FOREVER, 200, &t1));
    CHECK_OK(share_lock_renew(a, "c", NULL, 2000, &t3));
    CHECK(t3 == t1);
    {
        struct timespec pause = {0, 300 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    CHECK_STATUS(share_lock_lease(b, "c", NULL, 0, 0, &t2), DIME_STATUS_TIMEOUT);
    CHECK_OK(share_unlock(a, "c", NULL));
    CHECK_STATUS(share_lock_lease(NULL, "c", NULL, 0, 0, &t2), DIME_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(share_lock_lease(a, "c", NULL, 0, 0, NULL), DIME_STATUS_NULL_ARGUMENT);

    dime_value_free(v);
    dime_client_free(a);
    dime_client_free(b);
}

static void share_watch(void)
{
    dime_client *c = connect_or_die();
    dime_watch *w = NULL;
    dime_event *ev = NULL;
    dime_watch_position pos;
    dime_value *one = dime_value_new_int64(1), *two = dime_value_new_int64(2);
    bool found = false;
    uint64_t seq = 0;

    REQUIRE_OK(dime_watch_share(c, "w", "jobs/", NULL, &w));
    CHECK_OK(share_set(c, "w", "jobs/1", one));
    CHECK_OK(share_set(c, "w", "other", two));
    CHECK_OK(share_del(c, "w", "jobs/1", &found));

    CHECK_OK(dime_watch_next(w, 5000, &ev));
    CHECK(dime_event_kind(ev) == DIME_CHANGE_SET);
    CHECK(key_is(ev, "jobs/1"));
    CHECK(strcmp(dime_event_topic(ev), "w") == 0);
    CHECK(as_i64(dime_event_value(ev)) == 1);
    CHECK(dime_event_client(ev) == -1);
    seq = dime_event_seq(ev);
    dime_event_free(ev);

    CHECK_OK(dime_watch_next(w, 5000, &ev));
    CHECK(dime_event_kind(ev) == DIME_CHANGE_DEL);
    CHECK(key_is(ev, "jobs/1"));
    CHECK(dime_event_value(ev) == NULL);
    CHECK(dime_event_seq(ev) > seq);
    dime_event_free(ev);
    ev = NULL;
    CHECK_STATUS(dime_watch_next(w, 50, &ev), DIME_STATUS_TIMEOUT);
    CHECK(ev == NULL);

    /* Close, miss two changes, resume from the saved position. */
    CHECK_OK(dime_watch_get_position(w, &pos));
    dime_watch_free(w);
    w = NULL;
    CHECK_OK(share_set(c, "w", "jobs/2", two));
    CHECK_OK(share_set(c, "w", "jobs/3", one));
    REQUIRE_OK(dime_watch_share(c, "w", "jobs/", &pos, &w));
    CHECK_OK(dime_watch_next(w, 5000, &ev));
    CHECK(key_is(ev, "jobs/2") && as_i64(dime_event_value(ev)) == 2);
    dime_event_free(ev);
    CHECK_OK(dime_watch_next(w, 5000, &ev));
    CHECK(key_is(ev, "jobs/3") && as_i64(dime_event_value(ev)) == 1);
    dime_event_free(ev);

    /* A position from another broker run (another epoch) is lost. */
    dime_watch_free(w);
    pos.epoch ^= 1;
    REQUIRE_OK(dime_watch_share(c, "w", "jobs/", &pos, &w));
    CHECK_OK(dime_watch_next(w, 5000, &ev));
    CHECK(dime_event_kind(ev) == DIME_CHANGE_LOST);
    CHECK(strstr(dime_event_message(ev), "re-read") != NULL);
    dime_event_free(ev);

    dime_watch_free(w);
    dime_value_free(one);
    dime_value_free(two);
    dime_client_free(c);
}

static void space_and_group_watch(void)
{
    dime_client *c = connect_or_die(), *other = connect_or_die();
    dime_watch *ws = NULL, *wg = NULL;
    dime_event *ev = NULL;
    dime_value *tuple = dime_value_new_list();
    const char *groups[] = {"lab/1"};

    REQUIRE_OK(dime_watch_space(c, "t", NULL, &ws));
    REQUIRE_OK(dime_watch_groups(c, "lab/", NULL, &wg));
    CHECK_OK(dime_value_list_append(tuple, dime_value_new_int64(7)));
    CHECK_OK(dime_out(c, "t", tuple));
    CHECK_OK(dime_watch_next(ws, 5000, &ev));
    CHECK(dime_event_kind(ev) == DIME_CHANGE_OUT);
    CHECK(strcmp(dime_event_topic(ev), "t") == 0);
    CHECK(dime_event_value(ev) != NULL);
    dime_event_free(ev);

    CHECK_OK(dime_join(other, groups, 1));
    CHECK_OK(dime_watch_next(wg, 5000, &ev));
    CHECK(dime_event_kind(ev) == DIME_CHANGE_JOIN);
    CHECK(key_is(ev, "lab/1"));
    CHECK(dime_event_client(ev) >= 0);
    dime_event_free(ev);
    dime_client_free(other);
    CHECK_OK(dime_watch_next(wg, 5000, &ev));
    CHECK(dime_event_kind(ev) == DIME_CHANGE_LEAVE);
    dime_event_free(ev);

    /* NULL handles: statuses and documented defaults. */
    CHECK_STATUS(dime_watch_next(NULL, 0, &ev), DIME_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(dime_watch_space(c, "t", NULL, NULL), DIME_STATUS_NULL_ARGUMENT);
    CHECK(dime_event_kind(NULL) == DIME_CHANGE_NONE);
    CHECK(dime_event_seq(NULL) == 0 && dime_event_key(NULL) == NULL);
    CHECK(dime_event_value(NULL) == NULL && dime_event_client(NULL) == -1);
    dime_watch_free(NULL);
    dime_event_free(NULL);

    dime_value_free(tuple);
    dime_watch_free(ws);
    dime_watch_free(wg);
    dime_client_free(c);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s ADDRESS\n", argv[0]);
        return 2;
    }
    address = argv[1];
    leases_and_fencing();
    share_watch();
    space_and_group_watch();
    return check_done();
}
