/*
 * mex_handles.c: what MATLAB holds as uint64 handles: open connections,
 * and the futures (remote calls in flight) and requests (calls this
 * process was given to run) made on them. A handle is the object's
 * address; it is only dereferenced after it is found here, so a stale or
 * made-up handle raises dime:closed instead of crashing.
 *
 * Futures and requests belong to the connection they were made on:
 * closing it frees them first (a request still unanswered is answered
 * with an error by dime_request_free, so its caller never waits forever).
 *
 * A request can also be "stashed": taken from the library by a wait for
 * another function's calls (dime_next_call hands out the calls of every
 * function a client provides, in arrival order), kept here, unseen by
 * MATLAB, until a wait for its own function takes it (handles_unstash).
 *
 * Watches (dime_watch) are held the same way, in a registry of their own.
 */
#include "dime_mex.h"

#include <stdlib.h>
#include <string.h>

static dime_client **g_clients;
static size_t g_nclients, g_capclients;

/* A future, a request or a stream, and the connection it belongs to. */
typedef struct {
    dime_future *future;   /* exactly one of future, request, stream is set */
    dime_request *request;
    dime_stream *stream;
    dime_client *owner;
    int stashed;           /* a request not handed to MATLAB yet */
} rpc_object;

static rpc_object *g_objects;
static size_t g_nobjects, g_capobjects;

uint64_t handles_of(const void *p)
{
    return (uint64_t)(uintptr_t)p;
}

/* Room for one more element in a registry grown with realloc (malloc, not
 * mxMalloc: the registry outlives every call). 0 if out of memory. */
static int grow(void **items, size_t n, size_t *cap, size_t size)
{
    void *p;
    size_t c;
    if (n < *cap)
        return 1;
    c = *cap ? 2 * *cap : 8;
    p = realloc(*items, c * size);
    if (!p)
        return 0;
    *items = p;
    *cap = c;
    return 1;
}

void handles_add(dime_client *c)
{
    if (!grow((void **)&g_clients, g_nclients, &g_capclients, sizeof *g_clients)) {
        dime_client_free(c);
        fail("internal", "out of memory");
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

static uint64_t handle_arg(const mxArray *a, const char *what)
{
    if (!mxIsUint64(a) || mxIsComplex(a) || mxGetNumberOfElements(a) != 1)
        fail("argument", "%s must be a uint64 scalar", what);
    return *(const uint64_t *)mxGetData(a);
}

dime_client *handles_client_arg(const mxArray *a)
{
    long i = find_client(handle_arg(a, "a connection handle"));
    if (i < 0)
        fail("closed", "this dime connection is closed");
    return g_clients[i];
}

/* Frees object i (a request unanswered is answered with an error by the
 * library) and removes it, moving the last one into its place. */
static void free_object(size_t i)
{
    rpc_object o = g_objects[i];
    g_objects[i] = g_objects[--g_nobjects];
    dime_future_free(o.future);
    dime_request_free(o.request);
    dime_stream_close(o.stream); /* stops its producer if still running */
}

/* Frees every future, request and stream of `owner`. */
static void free_objects_of(const dime_client *owner)
{
    size_t i = 0;
    while (i < g_nobjects) {
        if (g_objects[i].owner == owner)
            free_object(i); /* the last one moved to i: look at i again */
        else
            i++;
    }
}

void handles_close_arg(const mxArray *a)
{
    long i = find_client(handle_arg(a, "a connection handle"));
    if (i >= 0) {
        dime_client *c = g_clients[i];
        free_objects_of(c);
        g_clients[i] = g_clients[--g_nclients];
        dime_client_free(c);
    }
}

dime_status handles_close_reporting(const mxArray *a)
{
    long i = find_client(handle_arg(a, "a connection handle"));
    dime_status st = DIME_STATUS_OK;
    if (i >= 0) {
        dime_client *c = g_clients[i];
        free_objects_of(c);
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
    long i = find_watch(handle_arg(a, "a watch handle"));
    if (i < 0)
        fail("closed", "this dime watch is closed");
    return g_watches[i];
}

void handles_close_watch_arg(const mxArray *a)
{
    long i = find_watch(handle_arg(a, "a watch handle"));
    if (i >= 0) {
        dime_watch *w = g_watches[i];
        g_watches[i] = g_watches[--g_nwatches];
        dime_watch_free(w);
    }
}

void handles_close_all(void)
{
    size_t i;
    while (g_nobjects > 0)
        free_object(g_nobjects - 1);
    free(g_objects);
    g_objects = NULL;
    g_capobjects = 0;
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

/* ------------------------------------------------ futures and requests */

static void add_object(rpc_object o)
{
    if (!grow((void **)&g_objects, g_nobjects, &g_capobjects, sizeof *g_objects)) {
        dime_future_free(o.future);
        dime_request_free(o.request);
        dime_stream_close(o.stream);
        fail("internal", "out of memory");
    }
    g_objects[g_nobjects++] = o;
}

enum object_kind { KIND_REQUEST, KIND_FUTURE, KIND_STREAM };

/* The index of the object of that kind with handle h. */
static long find_object(uint64_t h, enum object_kind kind)
{
    size_t i;
    for (i = 0; i < g_nobjects; i++) {
        const rpc_object *o = &g_objects[i];
        const void *p = kind == KIND_FUTURE   ? (const void *)o->future
                        : kind == KIND_STREAM ? (const void *)o->stream
                                              : (const void *)o->request;
        if (p && handles_of(p) == h)
            return (long)i;
    }
    return -1;
}

void handles_add_future(dime_client *owner, dime_future *f)
{
    rpc_object o = {0};
    o.future = f;
    o.owner = owner;
    add_object(o);
}

dime_future *handles_future_arg(const mxArray *a)
{
    long i = find_object(handle_arg(a, "a future handle"), KIND_FUTURE);
    if (i < 0)
        fail("closed", "this call's future was released (or its connection closed)");
    return g_objects[i].future;
}

void handles_free_future_arg(const mxArray *a, int cancel)
{
    long i = find_object(handle_arg(a, "a future handle"), KIND_FUTURE);
    if (i < 0)
        return;
    if (cancel)
        (void)dime_future_cancel(g_objects[i].future); /* NOT_FOUND: it had finished */
    free_object((size_t)i);
}

void handles_add_stream(dime_client *owner, dime_stream *st)
{
    rpc_object o = {0};
    o.stream = st;
    o.owner = owner;
    add_object(o);
}

dime_stream *handles_stream_arg(const mxArray *a)
{
    long i = find_object(handle_arg(a, "a stream handle"), KIND_STREAM);
    if (i < 0)
        fail("closed", "this stream was closed (or its connection closed)");
    return g_objects[i].stream;
}

void handles_close_stream_arg(const mxArray *a)
{
    long i = find_object(handle_arg(a, "a stream handle"), KIND_STREAM);
    if (i >= 0)
        free_object((size_t)i);
}

void handles_add_request(dime_client *owner, dime_request *r, int stashed)
{
    rpc_object o = {0};
    o.request = r;
    o.owner = owner;
    o.stashed = stashed;
    add_object(o);
}

dime_request *handles_request_arg(const mxArray *a)
{
    long i = find_object(handle_arg(a, "a request handle"), KIND_REQUEST);
    if (i < 0 || g_objects[i].stashed)
        fail("closed", "this request was released (or its connection closed)");
    return g_objects[i].request;
}

void handles_free_request_arg(const mxArray *a)
{
    long i = find_object(handle_arg(a, "a request handle"), KIND_REQUEST);
    if (i >= 0 && !g_objects[i].stashed)
        free_object((size_t)i);
}

static int is_call_of(const dime_request *r, const char *function)
{
    const char *f = dime_request_function(r); /* NUL-terminated, borrowed */
    return f && strcmp(f, function) == 0;
}

dime_request *handles_unstash(const dime_client *owner, const char *function)
{
    size_t i;
    for (i = 0; i < g_nobjects; i++) {
        rpc_object *o = &g_objects[i];
        if (o->request && o->stashed && o->owner == owner && is_call_of(o->request, function)) {
            o->stashed = 0;
            return o->request;
        }
    }
    return NULL;
}

size_t handles_release_requests(const dime_client *owner, const char *function,
                                const char *error_type, const char *message)
{
    size_t i = 0, n = 0;
    while (i < g_nobjects) {
        rpc_object *o = &g_objects[i];
        if (o->request && o->owner == owner && is_call_of(o->request, function)) {
            if (o->stashed) {
                /* never started: say so rather than "released unanswered" */
                (void)dime_reply_error(o->request, error_type, message, NULL);
            }
            free_object(i);
            n++;
        } else {
            i++;
        }
    }
    return n;
}

void handles_count_objects(size_t *futures, size_t *requests, size_t *streams)
{
    size_t i;
    *futures = *requests = *streams = 0;
    for (i = 0; i < g_nobjects; i++) {
        if (g_objects[i].future)
            (*futures)++;
        else if (g_objects[i].stream)
            (*streams)++;
        else
            (*requests)++;
    }
}
