/*
 * mex_handles.c: the open connections. MATLAB holds a connection as a
 * uint64 handle (the client's address); a handle is only dereferenced
 * after it is found here, so a stale or made-up handle raises dime:closed
 * instead of crashing.
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

dime_status handles_close_reporting(const mxArray *a)
{
    long i = find_client(handle_arg(a));
    dime_status st = DIME_STATUS_OK;
    if (i >= 0) {
        dime_client *c = g_clients[i];
        g_clients[i] = g_clients[--g_nclients];
        /* dime_close waits for the answers to pipelined sends and reports
         * a failure among them; the message stays in dime_last_error()
         * for the caller, as dime_client_free sets none. */
        st = dime_close(c);
        dime_client_free(c);
    }
    return st;
}

size_t handles_count(void)
{
    return g_nclients;
}

void handles_close_all(void)
{
    size_t i;
    for (i = 0; i < g_nclients; i++)
        dime_client_free(g_clients[i]);
    free(g_clients);
    g_clients = NULL;
    g_nclients = g_capclients = 0;
}
