/* libdime against an original DiME2 server (tests/dime2_double.py, which
 * knows only DiME2's commands and announces no extensions): DiME2's calls
 * round-trip, dime_wait blocks in the server instead of returning at once,
 * a timed dime_wait polls gently, and shares and tuple spaces fail with
 * DIME_STATUS_UNSUPPORTED; against our server the extensions are there.
 *
 * usage: original_server DOUBLE_ADDRESS DOUBLE_REQUEST_LOG OUR_ADDRESS
 * (the double's --log file: one request's command per line) */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>

#include "check.h"
#include "clock.h"

static const char *double_address;

/* Lines of the double's request log equal to `command`. */
static int requests(const char *log, const char *command)
{
    char line[256];
    int n = 0;
    FILE *f = fopen(log, "r");
    if (!f) return -1;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (strcmp(line, command) == 0) n++;
    }
    fclose(f);
    return n;
}

/* A second client that sends 42.0 as "late" to group "c" after 300 ms. */
static void *send_late(void *arg)
{
    dime_client *other = NULL;
    dime_value *v = dime_value_new_double(42.0);
    (void)arg;
    sleep_ms(300);
    if (dime_connect(double_address, &other) == DIME_STATUS_OK) {
        dime_send(other, "c", "late", v);
    }
    dime_client_free(other);
    dime_value_free(v);
    return NULL;
}

/* The single double received under `name` by one dime_sync, or -1. */
static double sync_one(dime_client *c, const char *name)
{
    dime_messages *msgs = NULL;
    const char *got;
    const dime_value *v;
    double x = -1;
    if (dime_sync(c, DIME_SYNC_ALL, &msgs) == DIME_STATUS_OK && dime_messages_len(msgs) == 1 &&
        dime_messages_get(msgs, 0, &got, &v) == DIME_STATUS_OK && strcmp(got, name) == 0) {
        dime_value_get_double(v, &x);
    }
    dime_messages_free(msgs);
    return x;
}

static void against_the_original(const char *log)
{
    dime_client *c = NULL;
    const char *groups[] = {"c"};
    bool yes = true;
    dime_value *list = NULL, *v = NULL, *tuple = NULL, *devices = NULL;
    size_t len = 99, n = 0;
    pthread_t sender;
    double t0, took;
    int syncs, waits;

    REQUIRE_OK(dime_connect(double_address, &c));

    /* It announces nothing. */
    CHECK_OK(dime_server_supports(c, "share", &yes));
    CHECK(!yes);
    yes = true;
    CHECK_OK(dime_server_supports(c, "sync_wait", &yes));
    CHECK(!yes);
    CHECK_OK(dime_server_extensions(c, &list));
    CHECK_OK(dime_value_list_len(list, &len));
    CHECK(len == 0);
    dime_value_free(list);
    CHECK_STATUS(dime_server_supports(c, NULL, &yes), DIME_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(dime_server_supports(c, "share", NULL), DIME_STATUS_NULL_ARGUMENT);

    /* DiME2's calls round-trip. */
    REQUIRE_OK(dime_join(c, groups, 1));
    v = dime_value_new_double(1.5);
    CHECK_OK(dime_send(c, "c", "x", v));
    CHECK(sync_one(c, "x") == 1.5);

    /* dime_wait without a limit blocks in the server (one DiME2 wait), no polling. */
    syncs = requests(log, "sync");
    waits = requests(log, "wait");
    CHECK(pthread_create(&sender, NULL, send_late, NULL) == 0);
    t0 = now_ms();
    CHECK_OK(dime_wait(c, DIME_WAIT_FOREVER, &n));
    took = now_ms() - t0;
    pthread_join(sender, NULL);
    CHECK(n == 1);
    CHECK(took >= 250);
    CHECK(requests(log, "wait") == waits + 1);
    CHECK(requests(log, "sync") == syncs);
    CHECK(sync_one(c, "late") == 42.0);

    /* A timed wait polls with sync, backing off: a handful per second. */
    syncs = requests(log, "sync");
    t0 = now_ms();
    CHECK_STATUS(dime_wait(c, 1000, &n), DIME_STATUS_TIMEOUT);
    took = now_ms() - t0;
    CHECK(took >= 1000 && took < 2000);
    syncs = requests(log, "sync") - syncs;
    printf("# %d syncs polled in %.0f ms\n", syncs, took);
    CHECK(syncs >= 2 && syncs <= 40);

    /* Shares and tuple spaces fail clearly, send nothing, and the client
     * stays usable. */
    CHECK_STATUS(share_set(c, NULL, "k", v), DIME_STATUS_UNSUPPORTED);
    CHECK_ERROR_HAS("this server does not support shared dictionaries");
    CHECK_ERROR_HAS("original DiME2 server");
    tuple = dime_value_new_list();
    CHECK_STATUS(dime_out(c, NULL, tuple), DIME_STATUS_UNSUPPORTED);
    CHECK_ERROR_HAS("does not support tuple spaces");
    CHECK(requests(log, "share_set") == 0 && requests(log, "ts_out") == 0);
    CHECK_OK(dime_devices(c, &devices));

    dime_value_free(devices);
    dime_value_free(tuple);
    dime_value_free(v);
    dime_client_free(c);
}

static void against_ours(const char *address)
{
    dime_client *c = NULL;
    bool yes = false;
    dime_value *list = NULL;
    const dime_value *item;
    const char *s;
    size_t len = 0, i, slen;
    int share = 0;

    REQUIRE_OK(dime_connect(address, &c));
    CHECK_OK(dime_server_supports(c, "share", &yes));
    CHECK(yes);
    CHECK_OK(dime_server_supports(c, "no such extension", &yes));
    CHECK(!yes);
    CHECK_OK(dime_server_extensions(c, &list));
    CHECK_OK(dime_value_list_len(list, &len));
    CHECK(len >= 5);
    for (i = 0; i < len; i++) {
        if (dime_value_list_get(list, i, &item) == DIME_STATUS_OK &&
            dime_value_get_string(item, &s, &slen) == DIME_STATUS_OK && slen == 5 &&
            memcmp(s, "share", 5) == 0) {
            share = 1;
        }
    }
    CHECK(share);
    dime_value_free(list);
    CHECK_OK(dime_close(c));
    CHECK_STATUS(dime_server_supports(c, "share", &yes), DIME_STATUS_CLOSED);
    dime_client_free(c);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s DOUBLE_ADDRESS DOUBLE_REQUEST_LOG OUR_ADDRESS\n", argv[0]);
        return 2;
    }
    double_address = argv[1];
    against_the_original(argv[2]);
    against_ours(argv[3]);
    return check_done();
}
