/*
 * mex_handles.c: the open connections. MATLAB holds a connection as a
 * uint64 handle (the client's address); a handle is only dereferenced
 * after it is found here, so a stale or made-up handle raises dime:closed
 * instead of crashing. Watches (dime_watch) are held the same way, in a
 * registry of their own.
 */
#include "dime_mex.h"

#include <stdlib.h>

static dime_client **g_clients;
static size_t g_nclients, g_capclients;

uint64_t handles_of(const dime_client *c)
{
    return (uint64_t)(uintptr_t)c;
}

void handles_add(dime_client *c)
{
    if (g_nclients == g_capclients) {
        size_t cap = g_capclients ? 2 * g_capclients : 8;
        /* malloc, not mxMalloc: the registry outlives every call */
        dime_client **p = (dime_client **)realloc(g_clients, cap * sizeof *p);
        if (!p) {
            dime_client_free(c);
            fail("internal", "out of memory");
        }
        g_clients = p;
        g_capclients = cap;
    }
    g_clients[g_nclients++] = c;
}

static long find_client(uint64_t h)
{
    size_t i;
    for (i = 0; i < g_nclients; i++)
        if (handles_of(g_clients[i]) == h)
            return (long)i;
    return -1;
}

static uint64_t handle_arg(const mxArray *a)
{
    if (!mxIsUint64(a) || mxIsComplex(a) || mxGetNumberOfElements(a) != 1)
        fail("argument", "a connection handle must be a uint64 scalar");
    return *(const uint64_t *)mxGetData(a);
}

dime_client *handles_client_arg(const mxArray *a)
{
    long i = find_client(handle_arg(a));
    if (i < 0)
        fail("closed", "this dime connection is closed");
    return g_clients[i];
}

void handles_close_arg(const mxArray *a)
{
    long i = find_client(handle_arg(a));
    if (i >= 0) {
        dime_client *c = g_clients[i];
        g_clients[i] = g_clients[--g_nclients];
        dime_client_free(c);
    }
}

size_t handles_count(void)
{
    return g_nclients;
}

static dime_watch **g_watches;
static size_t g_nwatches, g_capwatches;

uint64_t handles_of_watch(const dime_watch *w)
{
    return (uint64_t)(uintptr_t)w;
}

void handles_add_watch(dime_watch *w)
{
    if (g_nwatches == g_capwatches) {
        size_t cap = g_capwatches ? 2 * g_capwatches : 8;
        dime_watch **p = (dime_watch **)realloc(g_watches, cap * sizeof *p);
        if (!p) {
            dime_watch_free(w);
            fail("internal", "out of memory");
        }
        g_watches = p;
        g_capwatches = cap;
    }
    g_watches[g_nwatches++] = w;
}

static long find_watch(uint64_t h)
{
    size_t i;
    for (i = 0; i < g_nwatches; i++)
        if (handles_of_watch(g_watches[i]) == h)
            return (long)i;
    return -1;
}

dime_watch *handles_watch_arg(const mxArray *a)
{
    long i = find_watch(handle_arg(a));
    if (i < 0)
        fail("closed", "this dime watch is closed");
    return g_watches[i];
}

void handles_close_watch_arg(const mxArray *a)
{
    long i = find_watch(handle_arg(a));
    if (i >= 0) {
        dime_watch *w = g_watches[i];
        g_watches[i] = g_watches[--g_nwatches];
        dime_watch_free(w);
    }
}

void handles_close_all(void)
{
    size_t i;
    for (i = 0; i < g_nclients; i++)
        dime_client_free(g_clients[i]);
    free(g_clients);
    g_clients = NULL;
    g_nclients = g_capclients = 0;
    for (i = 0; i < g_nwatches; i++)
        dime_watch_free(g_watches[i]);
    free(g_watches);
    g_watches = NULL;
    g_nwatches = g_capwatches = 0;
}
