/* One dime_client shared by several threads: the handle is internally
 * locked, so concurrent sends are safe and none is lost.
 *
 * usage: threads ADDRESS */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>

#include "check.h"

#define THREADS 4
#define PER_THREAD 50

static dime_client *client;
static int sent_ok[THREADS];

static void *sender(void *arg)
{
    int id = *(int *)arg, i;
    dime_value *v = dime_value_new_int32(id);
    for (i = 0; i < PER_THREAD; i++) {
        if (dime_send(client, "self", "t", v) == DIME_STATUS_OK) sent_ok[id]++;
    }
    /* Failures in other threads must not leak into this thread's message. */
    if (dime_value_get_double(v, NULL) != DIME_STATUS_NULL_ARGUMENT) sent_ok[id] = -1;
    dime_value_free(v);
    return NULL;
}

int main(int argc, char **argv)
{
    const char *groups[] = {"self"};
    pthread_t threads[THREADS];
    int ids[THREADS], i, counts[THREADS] = {0};
    dime_messages *msgs = NULL;
    size_t k;

    if (argc != 2) {
        fprintf(stderr, "usage: %s ADDRESS\n", argv[0]);
        return 2;
    }
    REQUIRE_OK(dime_connect(argv[1], &client));
    REQUIRE_OK(dime_join(client, groups, 1));
    for (i = 0; i < THREADS; i++) {
        ids[i] = i;
        CHECK(pthread_create(&threads[i], NULL, sender, &ids[i]) == 0);
    }
    for (i = 0; i < THREADS; i++) {
        pthread_join(threads[i], NULL);
        CHECK(sent_ok[i] == PER_THREAD);
    }
    CHECK_OK(dime_sync(client, DIME_SYNC_ALL, &msgs));
    CHECK(dime_messages_len(msgs) == THREADS * PER_THREAD);
    for (k = 0; k < dime_messages_len(msgs); k++) {
        const char *name;
        const dime_value *v;
        int32_t id = -1;
        if (dime_messages_get(msgs, k, &name, &v) == DIME_STATUS_OK &&
            dime_value_get_int32(v, &id) == DIME_STATUS_OK && id >= 0 && id < THREADS) {
            counts[id]++;
        }
    }
    for (i = 0; i < THREADS; i++) CHECK(counts[i] == PER_THREAD);
    dime_messages_free(msgs);
    dime_client_free(client);
    return check_done();
}
