/*
 * mex_commands.c: the commands of dime_mex, one function each, and the
 * {name, fn} table mexFunction looks them up in (see find_command).
 *
 *   [v, h] = dime_mex('version')                % libdime's, and dime.h's at compile time
 *   h     = dime_mex('connect', address)          % uint64 handle
 *   h     = dime_mex('connect', address, token, tls_ca, tls_cert, tls_key)
 *                                 % '' leaves an option to its DIME_* variable
 *           dime_mex('close', h)                  % idempotent
 *           dime_mex('join', h, group, ...)       % or a cellstr
 *           dime_mex('leave', h, group, ...)
 *           dime_mex('send', h, group, name1, val1, name2, val2, ...)
 *           dime_mex('broadcast', h, name1, val1, ...)
 *   [names, values, fix] = dime_mex('sync', h, n) % Kx1 cell, 1xK cell, 1xK logical
 *   n     = dime_mex('wait', h, timeout_ms)       % negative / Inf: forever
 *   g     = dime_mex('devices', h)                % Nx1 cell of char
 *   tf    = dime_mex('server_supports', h, name)  % logical: extension announced?
 *   e     = dime_mex('server_extensions', h)      % 1xN cell of char; {} for DiME2
 *   [y, fix] = dime_mex('convert', x)             % mx -> dime -> mx, no server
 *   k     = dime_mex('open_count')                % open connections
 *   ...   = dime_mex('share_<op>', h, share, ...)  % shared dictionaries
 *   ...   = dime_mex('ts_<op>', h, space, ...)     % tuple spaces
 *   ...   = dime_mex('watch_<op>', ...)            % change events
 *           (see the share_, ts_ and watch_ sections below; dime.m wraps them)
 *   ...   = dime_mex('call' | 'future_<op>' | 'provide' | 'next_call' |
 *                    'reply' | ..., ...)            % remote calls, in mex_rpc.c
 *   ...   = dime_mex('stream_<op>', ...)           % streams, in mex_stream.c
 *
 * `fix` (a logical) says a returned value holds map markers dime.m must
 * turn into containers.Map. Lists of names (groups, received variables,
 * share keys) are Nx1 cells, {} (0x0) when empty: the original dime.m
 * returned `jsondecode` of a JSON array, a column. Values are converted completely before
 * anything is sent, so a value that cannot be sent raises dime:type and
 * sends nothing; the connection stays usable.
 */
#include "dime_mex.h"

#include <math.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------- argument helpers */

void need_args(int nrhs, int n, const char *usage)
{
    if (nrhs < n)
        fail("argument", "usage: %s", usage);
}

double scalar_arg(const mxArray *a, const char *what)
{
    if (!mxIsNumeric(a) || mxIsComplex(a) || mxGetNumberOfElements(a) != 1)
        fail("argument", "%s must be a real numeric scalar", what);
    return mxGetScalar(a);
}

/* Milliseconds from argument i; missing, [], negative, NaN or Inf: forever. */
int64_t ms_arg(int nrhs, const mxArray *prhs[], int i)
{
    double t;
    if (i >= nrhs || mxIsEmpty(prhs[i]))
        return DIME_WAIT_FOREVER;
    t = scalar_arg(prhs[i], "the timeout");
    if (t < 0 || t != t || t > 9.2e18)
        return DIME_WAIT_FOREVER;
    return (int64_t)t;
}

/* A lock key, or NULL (the whole-share lock) for a missing [] / ''. */
static const char *lock_key_arg(int nrhs, const mxArray *prhs[], int i)
{
    if (i >= nrhs || mxIsEmpty(prhs[i]))
        return NULL;
    return name_arg(prhs[i], "a lock key");
}

/* plhs[0] = the value `v` (from the library, owned by the call until it is
 * converted, so a conversion that raises does not leak it), plhs[1] =
 * whether dime.m must resolve map markers. */
void return_value(mex_call *call, int nlhs, mxArray *plhs[], dime_value *v)
{
    mxArray *out;
    mex_call_own(call, v);
    call->has_marker = 0;
    out = from_dime(call, v);
    mex_call_free(call, v);
    plhs[0] = out;
    if (nlhs > 1)
        plhs[1] = mxCreateLogicalScalar(call->has_marker != 0);
}

/* An Nx1 cell ({} when n is 0): how lists of names are returned. */
static mxArray *name_column(size_t n)
{
    return n ? mxCreateCellMatrix(n, 1) : mxCreateCellMatrix(0, 0);
}

/* plhs[0] = the list of names `list` (from the library, owned by the call
 * until converted) as an Nx1 cell of char. */
static void return_names(mex_call *call, mxArray *plhs[], dime_value *list, const char *what)
{
    size_t n = 0, i;
    mxArray *out;
    mex_call_own(call, list);
    CHECK(dime_value_list_len(list, &n), what);
    out = name_column(n);
    for (i = 0; i < n; i++) {
        const dime_value *x = NULL;
        CHECK(dime_value_list_get(list, i, &x), what);
        mxSetCell(out, i, from_dime(call, x));
    }
    mex_call_free(call, list);
    plhs[0] = out;
}

static void return_none(int nlhs, mxArray *plhs[])
{
    plhs[0] = mxCreateDoubleMatrix(0, 0, mxREAL);
    if (nlhs > 1)
        plhs[1] = mxCreateLogicalScalar(0);
}

/* ------------------------------------------------- connections, messages */

/* [library, compiled] = dime_mex('version'): the loaded libdime's version
 * and the dime.h version this MEX file was compiled against (they differ
 * when the library was swapped under it; dime.version() refuses that). */
static void cmd_version(mex_call *call, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[])
{
    (void)call, (void)nrhs, (void)prhs;
    plhs[0] = mxCreateString(dime_version()); /* a static C string */
    if (nlhs > 1)
        plhs[1] = mxCreateString(DIME_VERSION_STRING);
}

/* The security options of 'connect' (token, CA, client certificate and
 * key), each '' to keep the environment's; the options, owned by the
 * caller. Raises (freeing them) on a bad one. */
static dime_connect_options *connect_options(const mxArray *prhs[])
{
    char *s[4];
    int i;
    dime_status st;
    dime_connect_options *o = NULL;
    static const char *what[4] = {"the token", "the CA file", "the certificate file",
                                  "the key file"};
    for (i = 0; i < 4; i++) {
        s[i] = name_arg(prhs[2 + i], what[i]);
        if (!s[i][0])
            s[i] = NULL;
    }
    CHECK(dime_connect_options_new(&o), "connect options");
    st = s[0] ? dime_connect_options_set_token(o, s[0]) : DIME_STATUS_OK;
    if (st == DIME_STATUS_OK && s[1])
        st = dime_connect_options_set_tls_ca(o, s[1]);
    if (st == DIME_STATUS_OK && (s[2] || s[3]))
        st = dime_connect_options_set_tls_client_cert(o, s[2], s[3]);
    if (st != DIME_STATUS_OK) {
        dime_connect_options_free(o);
        fail_status(st, "connect options");
    }
    return o;
}

static void cmd_connect(mex_call *call, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[])
{
    char *addr;
    dime_client *c = NULL;
    (void)call, (void)nlhs;
    if (nrhs != 2 && nrhs != 6)
        fail("argument",
             "usage: h = dime_mex('connect', address[, token, tls_ca, tls_cert, tls_key])");
    addr = name_arg(prhs[1], "the address");
    if (nrhs == 6) {
        dime_connect_options *o = connect_options(prhs);
        dime_status st = dime_connect_with(addr, o, &c);
        dime_connect_options_free(o);
        CHECK(st, addr);
    } else {
        CHECK(dime_connect(addr, &c), addr);
    }
    handles_add(c);
    plhs[0] = mxCreateNumericMatrix(1, 1, mxUINT64_CLASS, mxREAL);
    *(uint64_t *)mxGetData(plhs[0]) = handles_of(c);
}

/* dime_mex('close', h) waits for the answers to pipelined sends, closes,
 * and raises dime:server for a failure among them not yet reported (the
 * connection is closed either way); dime_mex('close', h, false) closes
 * without waiting (object deletion). */
static void cmd_close(mex_call *call, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[])
{
    (void)call, (void)nlhs, (void)plhs;
    need_args(nrhs, 2, "dime_mex('close', h, [report])");
    if (nrhs > 2 && !mxIsLogicalScalarTrue(prhs[2])) {
        handles_close_arg(prhs[1]);
        return;
    }
    CHECK(handles_close_reporting(prhs[1]), "close");
}

static void cmd_open_count(mex_call *call, int nlhs, mxArray *plhs[], int nrhs,
                           const mxArray *prhs[])
{
    (void)call, (void)nlhs, (void)nrhs, (void)prhs;
    plhs[0] = mxCreateDoubleScalar((double)handles_count());
}

/* Group names from arguments 2..nrhs-1: strings or cellstrs. */
static void groups(int nrhs, const mxArray *prhs[], int join)
{
    dime_client *c;
    const char **names;
    size_t count = 0, cap = 0, k;
    int i;
    need_args(nrhs, 2, join ? "dime_mex('join', h, group, ...)" : "dime_mex('leave', h, group, ...)");
    c = handles_client_arg(prhs[1]);
    for (i = 2; i < nrhs; i++)
        cap += mxIsCell(prhs[i]) ? mxGetNumberOfElements(prhs[i]) : 1;
    names = (const char **)mxMalloc((cap ? cap : 1) * sizeof *names);
    for (i = 2; i < nrhs; i++) {
        if (mxIsCell(prhs[i])) {
            size_t n = mxGetNumberOfElements(prhs[i]);
            for (k = 0; k < n; k++) {
                const mxArray *x = mxGetCell(prhs[i], k);
                if (!x)
                    fail("argument", "group names must be character row vectors");
                names[count++] = name_arg(x, "a group name");
            }
        } else {
            names[count++] = name_arg(prhs[i], "a group name");
        }
    }
    if (join)
        CHECK(dime_join(c, names, count), "join");
    else
        CHECK(dime_leave(c, names, count), "leave");
}

static void cmd_join(mex_call *call, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[])
{
    (void)call, (void)nlhs, (void)plhs;
    groups(nrhs, prhs, 1);
}

static void cmd_leave(mex_call *call, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[])
{
    (void)call, (void)nlhs, (void)plhs;
    groups(nrhs, prhs, 0);
}

/* send/broadcast: name/value pairs from argument `first` on. All values
 * are converted before anything is sent. Their number has no bound, so
 * they are freed here on every path rather than owned by the call. */
static void send_values(int nrhs, const mxArray *prhs[], const char *group, int first,
                        dime_client *c)
{
    size_t count, k;
    const char **names;
    dime_value **values;
    dime_status st;
    if ((nrhs - first) % 2 != 0)
        fail("argument", "variables must come as name, value pairs");
    count = (size_t)(nrhs - first) / 2;
    if (count == 0)
        return;
    names = (const char **)mxMalloc(count * sizeof *names);
    values = (dime_value **)mxMalloc(count * sizeof *values);
    for (k = 0; k < count; k++)
        names[k] = name_arg(prhs[first + 2 * k], "a variable name");
    for (k = 0; k < count; k++) {
        conv_err e;
        conv_err_init(&e);
        values[k] = to_dime(prhs[first + 2 * k + 1], &e, 0);
        if (!values[k]) {
            size_t j;
            char msg[sizeof e.msg];
            const char *kind = e.kind ? e.kind : "internal";
            memcpy(msg, e.msg, sizeof msg);
            for (j = 0; j < k; j++)
                dime_value_free(values[j]);
            fail(kind, "variable '%s': %s", names[k], msg);
        }
    }
    if (group)
        st = dime_send_many(c, group, names, (const dime_value *const *)values, count);
    else
        st = dime_broadcast_many(c, names, (const dime_value *const *)values, count);
    if (st != DIME_STATUS_OK) {
        /* copied first: dime_value_free may replace dime_last_error() */
        char msg[2048];
        snprintf(msg, sizeof msg, "%s", dime_last_error());
        for (k = 0; k < count; k++)
            dime_value_free(values[k]);
        fail(status_kind(st), "%s: %s", group ? "send" : "broadcast", msg);
    }
    for (k = 0; k < count; k++)
        dime_value_free(values[k]);
}

static void cmd_send(mex_call *call, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[])
{
    dime_client *c;
    char *group;
    (void)call, (void)nlhs, (void)plhs;
    need_args(nrhs, 3, "dime_mex('send', h, group, name, value, ...)");
    c = handles_client_arg(prhs[1]);
    group = name_arg(prhs[2], "the group name");
    send_values(nrhs, prhs, group, 3, c);
}

static void cmd_broadcast(mex_call *call, int nlhs, mxArray *plhs[], int nrhs,
                          const mxArray *prhs[])
{
    dime_client *c;
    (void)call, (void)nlhs, (void)plhs;
    need_args(nrhs, 2, "dime_mex('broadcast', h, name, value, ...)");
    c = handles_client_arg(prhs[1]);
    send_values(nrhs, prhs, NULL, 2, c);
}

static void cmd_sync(mex_call *call, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[])
{
    dime_client *c;
    dime_messages *msgs = NULL;
    double n = -1;
    size_t len, i;
    mxArray *names, *values, *fix;
    mxLogical *fx;
    need_args(nrhs, 2, "[names, values, fix] = dime_mex('sync', h, n)");
    c = handles_client_arg(prhs[1]);
    if (nrhs > 2)
        n = scalar_arg(prhs[2], "n");
    CHECK(dime_sync(c, (n < 0 || n != n || n > 9.2e18) ? DIME_SYNC_ALL : (int64_t)n, &msgs), "sync");
    call->messages = msgs; /* freed by mex_call_release if a conversion raises */
    len = dime_messages_len(msgs);
    names = name_column(len);
    values = mxCreateCellMatrix(1, len);
    fix = mxCreateLogicalMatrix(1, len);
    fx = mxGetLogicals(fix);
    for (i = 0; i < len; i++) {
        const char *name = NULL;
        const dime_value *v = NULL;
        CHECK(dime_messages_get(msgs, i, &name, &v), "sync");
        call->has_marker = 0;
        /* message names are NUL-terminated (dime.h), unlike string values */
        mxSetCell(names, i, utf8_to_mx(name, strlen(name)));
        mxSetCell(values, i, from_dime(call, v));
        fx[i] = call->has_marker ? 1 : 0;
    }
    call->messages = NULL;
    dime_messages_free(msgs);
    plhs[0] = names;
    if (nlhs > 1)
        plhs[1] = values;
    else
        mxDestroyArray(values);
    if (nlhs > 2)
        plhs[2] = fix;
    else
        mxDestroyArray(fix);
}

static void cmd_wait(mex_call *call, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[])
{
    dime_client *c;
    double t = -1;
    size_t count = 0;
    (void)call, (void)nlhs;
    need_args(nrhs, 2, "n = dime_mex('wait', h, timeout_ms)");
    c = handles_client_arg(prhs[1]);
    if (nrhs > 2)
        t = scalar_arg(prhs[2], "the timeout");
    CHECK(dime_wait(c, (t < 0 || t != t || t > 9.2e18) ? DIME_WAIT_FOREVER : (int64_t)t, &count),
          "wait");
    plhs[0] = mxCreateDoubleScalar((double)count);
}

static void cmd_devices(mex_call *call, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[])
{
    dime_client *c;
    dime_value *list = NULL;
    need_args(nrhs, 2, "g = dime_mex('devices', h)");
    c = handles_client_arg(prhs[1]);
    CHECK(dime_devices(c, &list), "devices");
    (void)nlhs;
    return_names(call, plhs, list, "devices");
}

/* Pipelined sends (dime_set_pipeline): w = dime_mex('pipeline', h) reads
 * the window; dime_mex('pipeline', h, n) sets it (true: the default
 * window; false or 0: off) and returns the window in force. */
static void cmd_pipeline(mex_call *call, int nlhs, mxArray *plhs[], int nrhs,
                         const mxArray *prhs[])
{
    dime_client *c;
    size_t window = 0;
    (void)call, (void)nlhs;
    need_args(nrhs, 2, "w = dime_mex('pipeline', h, [n])");
    c = handles_client_arg(prhs[1]);
    if (nrhs > 2) {
        if (mxIsLogical(prhs[2]) && mxGetNumberOfElements(prhs[2]) == 1) {
            window = mxIsLogicalScalarTrue(prhs[2]) ? DIME_PIPELINE_WINDOW : 0;
        } else {
            double n = scalar_arg(prhs[2], "the pipelining window");
            if (!(n >= 0) || n != floor(n))
                fail("argument", "the pipelining window must be true, false or a whole "
                                 "number of sends >= 0");
            /* the library clamps what is larger than it allows */
            window = n > 1e9 ? (size_t)1e9 : (size_t)n;
        }
        CHECK(dime_set_pipeline(c, window), "pipeline");
    }
    CHECK(dime_pipeline_window(c, &window), "pipeline");
    plhs[0] = mxCreateDoubleScalar((double)window);
}

/* dime_mex('flush', h): waits for the answers to every pipelined send;
 * raises the oldest failure not yet reported. */
static void cmd_flush(mex_call *call, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[])
{
    (void)call, (void)nlhs, (void)plhs;
    need_args(nrhs, 2, "dime_mex('flush', h)");
    CHECK(dime_flush(handles_client_arg(prhs[1])), "flush");
}

/* n = dime_mex('unacknowledged', h): pipelined sends not answered yet. */
static void cmd_unacknowledged(mex_call *call, int nlhs, mxArray *plhs[], int nrhs,
                               const mxArray *prhs[])
{
    size_t n = 0;
    (void)call, (void)nlhs;
    need_args(nrhs, 2, "n = dime_mex('unacknowledged', h)");
    CHECK(dime_unacknowledged(handles_client_arg(prhs[1]), &n), "unacknowledged");
    plhs[0] = mxCreateDoubleScalar((double)n);
}

/* What the server announced in its handshake (docs/protocol-extensions.md):
 * an original DiME2 server announces nothing. */
static void cmd_server_supports(mex_call *call, int nlhs, mxArray *plhs[], int nrhs,
                                const mxArray *prhs[])
{
    dime_client *c;
    const char *name;
    bool yes = false;
    (void)call, (void)nlhs;
    need_args(nrhs, 3, "tf = dime_mex('server_supports', h, name)");
    c = handles_client_arg(prhs[1]);
    name = name_arg(prhs[2], "the extension name");
    CHECK(dime_server_supports(c, name, &yes), "server_supports");
    plhs[0] = mxCreateLogicalScalar(yes);
}

static void cmd_server_extensions(mex_call *call, int nlhs, mxArray *plhs[], int nrhs,
                                  const mxArray *prhs[])
{
    dime_client *c;
    dime_value *list = NULL;
    (void)nlhs;
    need_args(nrhs, 2, "e = dime_mex('server_extensions', h)");
    c = handles_client_arg(prhs[1]);
    CHECK(dime_server_extensions(c, &list), "server_extensions");
    return_value(call, 0, plhs, list); /* a list of strings: no fix flag */
}

static void cmd_convert(mex_call *call, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[])
{
    dime_value *v, *copy = NULL;
    dime_status st;
    need_args(nrhs, 2, "y = dime_mex('convert', x)");
    v = value_arg(call, prhs[1], NULL);
    st = dime_value_clone(v, &copy); /* an owning copy, like a received value */
    if (st != DIME_STATUS_OK)
        fail_status(st, "convert");
    mex_call_free(call, v);
    return_value(call, nlhs, plhs, copy);
}

/* ------------------------------------------------------------- shares */

/*   dime_mex('share_set', h, share, key, value)
 *   [v, fix] = dime_mex('share_get' | 'share_pop', h, share, key)
 *   found = dime_mex('share_del' | 'share_contains', h, share, key)
 *   keys  = dime_mex('share_keys', h, share)           % Nx1 cell
 *   n     = dime_mex('share_len', h, share)
 *           dime_mex('share_clear', h, share)
 *   [m, fix] = dime_mex('share_get_many', h, share, keys)  % cellstr -> map
 *           dime_mex('share_set_many', h, share, map)
 *   [v, fix] = dime_mex('share_incr', h, share, key, delta)
 *   swapped = dime_mex('share_cas', h, share, key, new [, expected])  % no expected: absent
 *   [v, fix] = dime_mex('share_wait_key', h, share, key, timeout_ms)
 *           dime_mex('share_lock', h, share, key_or_[], timeout_ms)
 *   ok    = dime_mex('share_try_lock', h, share, key_or_[])
 *           dime_mex('share_unlock', h, share, key_or_[])
 *   token = dime_mex('share_lock_lease', h, share, key_or_[], timeout_ms, ttl_ms)  % uint64
 *   token = dime_mex('share_lock_renew', h, share, key_or_[], ttl_ms)
 *           dime_mex('share_set_fenced', h, share, key, value, token)
 *   found = dime_mex('share_del_fenced', h, share, key, token) */

#define SHARE_USAGE "dime_mex('share_<op>', h, share, ...); see mex_commands.c"

/* The arguments every share command starts with. */
typedef struct {
    dime_client *c;
    const char *share;
    const char *key; /* NULL unless keyed */
} share_args;

static share_args share_begin(int nrhs, const mxArray *prhs[], int keyed)
{
    share_args a;
    need_args(nrhs, keyed ? 4 : 3, SHARE_USAGE);
    a.c = handles_client_arg(prhs[1]);
    a.share = name_arg(prhs[2], "the share name");
    a.key = keyed ? name_arg(prhs[3], "the key") : NULL;
    return a;
}

static void cmd_share_set(mex_call *call, int nlhs, mxArray *plhs[], int nrhs,
                          const mxArray *prhs[])
{
    share_args a = share_begin(nrhs, prhs, 1);
    dime_value *v;
    (void)nlhs, (void)plhs;
    need_args(nrhs, 5, "dime_mex('share_set', h, share, key, value)");
    v = value_arg(call, prhs[4], NULL);
    CHECK(share_set(a.c, a.share, a.key, v), "share_set");
}

static void cmd_share_get(mex_call *call, int nlhs, mxArray *plhs[], int nrhs,
                          const mxArray *prhs[])
{
    share_args a = share_begin(nrhs, prhs, 1);
    dime_value *out = NULL;
    CHECK(share_get(a.c, a.share, a.key, &out), "share_get");
    return_value(call, nlhs, plhs, out);
}

static void cmd_share_pop(mex_call *call, int nlhs, mxArray *plhs[], int nrhs,
                          const mxArray *prhs[])
{
    share_args a = share_begin(nrhs, prhs, 1);
    dime_value *out = NULL;
    CHECK(share_pop(a.c, a.share, a.key, &out), "share_pop");
    return_value(call, nlhs, plhs, out);
}

static void cmd_share_del(mex_call *call, int nlhs, mxArray *plhs[], int nrhs,
                          const mxArray *prhs[])
{
    share_args a = share_begin(nrhs, prhs, 1);
    bool found = false;
    (void)call, (void)nlhs;
    CHECK(share_del(a.c, a.share, a.key, &found), "share_del");
    plhs[0] = mxCreateLogicalScalar(found);
}

static void cmd_share_contains(mex_call *call, int nlhs, mxArray *plhs[], int nrhs,
                               const mxArray *prhs[])
{
    share_args a = share_begin(nrhs, prhs, 1);
    bool found = false;
    (void)call, (void)nlhs;
    CHECK(share_contains(a.c, a.share, a.key, &found), "share_contains");
    plhs[0] = mxCreateLogicalScalar(found);
}

static void cmd_share_keys(mex_call *call, int nlhs, mxArray *plhs[], int nrhs,
                           const mxArray *prhs[])
{
    share_args a = share_begin(nrhs, prhs, 0);
    dime_value *out = NULL;
    (void)nlhs;
    CHECK(share_keys(a.c, a.share, &out), "share_keys");
    return_names(call, plhs, out, "share_keys");
}

static void cmd_share_len(mex_call *call, int nlhs, mxArray *plhs[], int nrhs,
                          const mxArray *prhs[])
{
    share_args a = share_begin(nrhs, prhs, 0);
    size_t n = 0;
    (void)call, (void)nlhs;
    CHECK(share_len(a.c, a.share, &n), "share_len");
    plhs[0] = mxCreateDoubleScalar((double)n);
}

static void cmd_share_clear(mex_call *call, int nlhs, mxArray *plhs[], int nrhs,
                            const mxArray *prhs[])
{
    share_args a = share_begin(nrhs, prhs, 0);
    (void)call, (void)nlhs, (void)plhs;
    CHECK(share_clear(a.c, a.share), "share_clear");
}

static void cmd_share_get_many(mex_call *call, int nlhs, mxArray *plhs[], int nrhs,
                               const mxArray *prhs[])
{
    share_args a = share_begin(nrhs, prhs, 0);
    const mxArray *k;
    const char **keys;
    size_t n, i;
    dime_value *out = NULL;
    need_args(nrhs, 4, "dime_mex('share_get_many', h, share, keys)");
    k = prhs[3];
    if (mxIsChar(k)) {
        n = 1;
        keys = (const char **)mxMalloc(sizeof *keys);
        keys[0] = name_arg(k, "a key");
    } else if (mxIsCell(k)) {
        n = mxGetNumberOfElements(k);
        keys = (const char **)mxMalloc((n ? n : 1) * sizeof *keys);
        for (i = 0; i < n; i++) {
            const mxArray *x = mxGetCell(k, i);
            if (!x)
                fail("argument", "keys must be character row vectors");
            keys[i] = name_arg(x, "a key");
        }
    } else {
        fail("argument", "keys must be a cell array of character row vectors");
        return;
    }
    CHECK(share_get_many(a.c, a.share, keys, n, &out), "share_get_many");
    return_value(call, nlhs, plhs, out);
}

static void cmd_share_set_many(mex_call *call, int nlhs, mxArray *plhs[], int nrhs,
                               const mxArray *prhs[])
{
    share_args a = share_begin(nrhs, prhs, 0);
    dime_value *m;
    (void)nlhs, (void)plhs;
    need_args(nrhs, 4, "dime_mex('share_set_many', h, share, map)");
    m = value_arg(call, prhs[3], NULL);
    CHECK(share_set_many(a.c, a.share, m), "share_set_many");
}

static void cmd_share_incr(mex_call *call, int nlhs, mxArray *plhs[], int nrhs,
                           const mxArray *prhs[])
{
    share_args a = share_begin(nrhs, prhs, 1);
    dime_value *d, *out = NULL;
    need_args(nrhs, 5, "dime_mex('share_incr', h, share, key, delta)");
    d = value_arg(call, prhs[4], NULL);
    CHECK(share_incr(a.c, a.share, a.key, d, &out), "share_incr");
    return_value(call, nlhs, plhs, out);
}

static void cmd_share_cas(mex_call *call, int nlhs, mxArray *plhs[], int nrhs,
                          const mxArray *prhs[])
{
    share_args a = share_begin(nrhs, prhs, 1);
    dime_value *nv, *ev = NULL;
    bool swapped = false;
    (void)nlhs;
    need_args(nrhs, 5, "dime_mex('share_cas', h, share, key, new [, expected])");
    nv = value_arg(call, prhs[4], NULL);
    if (nrhs > 5)
        ev = value_arg(call, prhs[5], NULL);
    CHECK(share_cas(a.c, a.share, a.key, ev, nv, &swapped), "share_cas");
    plhs[0] = mxCreateLogicalScalar(swapped);
}

static void cmd_share_wait_key(mex_call *call, int nlhs, mxArray *plhs[], int nrhs,
                               const mxArray *prhs[])
{
    share_args a = share_begin(nrhs, prhs, 1);
    dime_value *out = NULL;
    CHECK(share_wait_key(a.c, a.share, a.key, ms_arg(nrhs, prhs, 4), &out), "share_wait_key");
    return_value(call, nlhs, plhs, out);
}

static void cmd_share_lock(mex_call *call, int nlhs, mxArray *plhs[], int nrhs,
                           const mxArray *prhs[])
{
    share_args a = share_begin(nrhs, prhs, 0);
    const char *k = lock_key_arg(nrhs, prhs, 3);
    (void)call, (void)nlhs, (void)plhs;
    CHECK(share_lock(a.c, a.share, k, ms_arg(nrhs, prhs, 4)), "share_lock");
}

static void cmd_share_try_lock(mex_call *call, int nlhs, mxArray *plhs[], int nrhs,
                               const mxArray *prhs[])
{
    share_args a = share_begin(nrhs, prhs, 0);
    const char *k = lock_key_arg(nrhs, prhs, 3);
    dime_status st = share_try_lock(a.c, a.share, k);
    (void)call, (void)nlhs;
    if (st != DIME_STATUS_OK && st != DIME_STATUS_TIMEOUT) /* TIMEOUT: held by someone */
        fail_status(st, "share_try_lock");
    plhs[0] = mxCreateLogicalScalar(st == DIME_STATUS_OK);
}

static void cmd_share_unlock(mex_call *call, int nlhs, mxArray *plhs[], int nrhs,
                             const mxArray *prhs[])
{
    share_args a = share_begin(nrhs, prhs, 0);
    (void)call, (void)nlhs, (void)plhs;
    CHECK(share_unlock(a.c, a.share, lock_key_arg(nrhs, prhs, 3)), "share_unlock");
}

/* A fencing token argument: a uint64 scalar, or a whole non-negative double. */
static uint64_t token_arg(const mxArray *a)
{
    double d;
    if (mxIsUint64(a) && !mxIsComplex(a) && mxGetNumberOfElements(a) == 1)
        return *(const uint64_t *)mxGetData(a);
    d = scalar_arg(a, "a fencing token");
    if (d < 0 || d != d || d != (double)(uint64_t)d)
        fail("argument", "a fencing token must be a whole non-negative number");
    return (uint64_t)d;
}

static mxArray *uint64_scalar(uint64_t x)
{
    mxArray *m = mxCreateNumericMatrix(1, 1, mxUINT64_CLASS, mxREAL);
    *(uint64_t *)mxGetData(m) = x;
    return m;
}

/* Milliseconds of a lease from argument i; missing or [] (or <= 0): none. */
static int64_t ttl_arg(int nrhs, const mxArray *prhs[], int i)
{
    double t;
    if (i >= nrhs || mxIsEmpty(prhs[i]))
        return 0;
    t = scalar_arg(prhs[i], "the lease");
    if (t != t || t > 9.2e18)
        fail("argument", "the lease must be a finite number of milliseconds");
    return t > 0 ? (int64_t)(t < 1 ? 1 : t) : 0;
}

static void cmd_share_lock_lease(mex_call *call, int nlhs, mxArray *plhs[], int nrhs,
                                 const mxArray *prhs[])
{
    share_args a = share_begin(nrhs, prhs, 0);
    const char *k = lock_key_arg(nrhs, prhs, 3);
    uint64_t token = 0;
    (void)call, (void)nlhs;
    CHECK(share_lock_lease(a.c, a.share, k, ms_arg(nrhs, prhs, 4), ttl_arg(nrhs, prhs, 5), &token),
          "share_lock");
    plhs[0] = uint64_scalar(token);
}

static void cmd_share_lock_renew(mex_call *call, int nlhs, mxArray *plhs[], int nrhs,
                                 const mxArray *prhs[])
{
    share_args a = share_begin(nrhs, prhs, 0);
    const char *k = lock_key_arg(nrhs, prhs, 3);
    uint64_t token = 0;
    (void)call, (void)nlhs;
    CHECK(share_lock_renew(a.c, a.share, k, ttl_arg(nrhs, prhs, 4), &token), "share_lock_renew");
    plhs[0] = uint64_scalar(token);
}

static void cmd_share_set_fenced(mex_call *call, int nlhs, mxArray *plhs[], int nrhs,
                                 const mxArray *prhs[])
{
    share_args a = share_begin(nrhs, prhs, 1);
    dime_value *v;
    uint64_t token;
    (void)nlhs, (void)plhs;
    need_args(nrhs, 6, "dime_mex('share_set_fenced', h, share, key, value, token)");
    token = token_arg(prhs[5]);
    v = value_arg(call, prhs[4], NULL);
    CHECK(share_set_fenced(a.c, a.share, a.key, v, token), "share_set");
}

static void cmd_share_del_fenced(mex_call *call, int nlhs, mxArray *plhs[], int nrhs,
                                 const mxArray *prhs[])
{
    share_args a = share_begin(nrhs, prhs, 1);
    bool found = false;
    (void)call, (void)nlhs;
    need_args(nrhs, 5, "dime_mex('share_del_fenced', h, share, key, token)");
    CHECK(share_del_fenced(a.c, a.share, a.key, token_arg(prhs[4]), &found), "share_del");
    plhs[0] = mxCreateLogicalScalar(found);
}

/* ------------------------------------------------------- change events */

/*   w   = dime_mex('watch_share', h, share, prefix, resume_or_[])  % uint64 handle
 *   w   = dime_mex('watch_space', h, space, resume_or_[])
 *   w   = dime_mex('watch_groups', h, prefix, resume_or_[])
 *   [ev, fix] = dime_mex('watch_next', w, timeout_ms)  % struct, or [] on timeout
 *   pos = dime_mex('watch_position', w)                % uint64 [epoch seq]
 *         dime_mex('watch_close', w)                   % idempotent
 * resume: a uint64 [epoch seq] from watch_position. An event is a struct
 * with fields kind (char), seq (double), topic, key (char, or [] when
 * none), value ([] when none), client (double, or [] when none). */

static const dime_watch_position *resume_arg(int nrhs, const mxArray *prhs[], int i,
                                             dime_watch_position *pos)
{
    const uint64_t *p;
    if (i >= nrhs || mxIsEmpty(prhs[i]))
        return NULL;
    if (!mxIsUint64(prhs[i]) || mxIsComplex(prhs[i]) || mxGetNumberOfElements(prhs[i]) != 2)
        fail("argument", "resume must be the uint64 [epoch seq] watch_position returned");
    p = (const uint64_t *)mxGetData(prhs[i]);
    pos->epoch = p[0];
    pos->seq = p[1];
    return pos;
}

static void return_watch(mxArray *plhs[], dime_watch *w)
{
    handles_add_watch(w);
    plhs[0] = uint64_scalar(handles_of_watch(w));
}

static void cmd_watch_share(mex_call *call, int nlhs, mxArray *plhs[], int nrhs,
                            const mxArray *prhs[])
{
    dime_watch_position pos;
    dime_watch *w = NULL;
    dime_client *c;
    const char *share, *prefix;
    (void)call, (void)nlhs;
    need_args(nrhs, 3, "dime_mex('watch_share', h, share, [prefix], [resume])");
    c = handles_client_arg(prhs[1]);
    share = name_arg(prhs[2], "the share name");
    prefix = nrhs > 3 && !mxIsEmpty(prhs[3]) ? name_arg(prhs[3], "the prefix") : "";
    CHECK(dime_watch_share(c, share, prefix, resume_arg(nrhs, prhs, 4, &pos), &w), "watch_share");
    return_watch(plhs, w);
}

static void cmd_watch_space(mex_call *call, int nlhs, mxArray *plhs[], int nrhs,
                            const mxArray *prhs[])
{
    dime_watch_position pos;
    dime_watch *w = NULL;
    dime_client *c;
    const char *space;
    (void)call, (void)nlhs;
    need_args(nrhs, 3, "dime_mex('watch_space', h, space, [resume])");
    c = handles_client_arg(prhs[1]);
    space = name_arg(prhs[2], "the space name");
    CHECK(dime_watch_space(c, space, resume_arg(nrhs, prhs, 3, &pos), &w), "watch_space");
    return_watch(plhs, w);
}

static void cmd_watch_groups(mex_call *call, int nlhs, mxArray *plhs[], int nrhs,
                             const mxArray *prhs[])
{
    dime_watch_position pos;
    dime_watch *w = NULL;
    dime_client *c;
    const char *prefix;
    (void)call, (void)nlhs;
    need_args(nrhs, 2, "dime_mex('watch_groups', h, [prefix], [resume])");
    c = handles_client_arg(prhs[1]);
    prefix = nrhs > 2 && !mxIsEmpty(prhs[2]) ? name_arg(prhs[2], "the prefix") : "";
    CHECK(dime_watch_groups(c, prefix, resume_arg(nrhs, prhs, 3, &pos), &w), "watch_groups");
    return_watch(plhs, w);
}

static mxArray *text_or_empty(const char *s)
{
    return s ? utf8_to_mx(s, strlen(s)) : mxCreateDoubleMatrix(0, 0, mxREAL);
}

static void cmd_watch_next(mex_call *call, int nlhs, mxArray *plhs[], int nrhs,
                           const mxArray *prhs[])
{
    static const char *fields[] = {"kind", "seq", "topic", "key", "value", "client"};
    static const char *kinds[] = {"none", "set", "del", "clear", "out", "in", "join", "leave", "lost"};
    dime_watch *w;
    dime_event *ev = NULL;
    dime_value *copy = NULL;
    const dime_value *v;
    mxArray *out, *value = NULL;
    dime_status st;
    int kind;
    int64_t client;
    need_args(nrhs, 2, "dime_mex('watch_next', w, [timeout_ms])");
    w = handles_watch_arg(prhs[1]);
    st = dime_watch_next(w, ms_arg(nrhs, prhs, 2), &ev);
    if (st == DIME_STATUS_TIMEOUT) {
        return_none(nlhs, plhs);
        return;
    }
    if (st != DIME_STATUS_OK)
        fail_status(st, "watch_next");
    v = dime_event_value(ev);
    call->has_marker = 0;
    if (v != NULL) {
        st = dime_value_clone(v, &copy);
        if (st != DIME_STATUS_OK) {
            dime_event_free(ev);
            fail_status(st, "watch_next");
        }
        mex_call_own(call, copy);
    }
    kind = (int)dime_event_kind(ev);
    client = dime_event_client(ev);
    out = mxCreateStructMatrix(1, 1, 6, fields);
    mxSetField(out, 0, "kind", mxCreateString(kinds[kind >= 0 && kind <= 8 ? kind : 0]));
    mxSetField(out, 0, "seq", mxCreateDoubleScalar((double)dime_event_seq(ev)));
    mxSetField(out, 0, "topic", text_or_empty(dime_event_topic(ev)));
    mxSetField(out, 0, "key", text_or_empty(dime_event_key(ev)));
    mxSetField(out, 0, "client",
               client < 0 ? mxCreateDoubleMatrix(0, 0, mxREAL) : mxCreateDoubleScalar((double)client));
    dime_event_free(ev);
    if (copy != NULL) {
        value = from_dime(call, copy);
        mex_call_free(call, copy);
    }
    mxSetField(out, 0, "value", value ? value : mxCreateDoubleMatrix(0, 0, mxREAL));
    plhs[0] = out;
    if (nlhs > 1)
        plhs[1] = mxCreateLogicalScalar(call->has_marker != 0);
}

static void cmd_watch_position(mex_call *call, int nlhs, mxArray *plhs[], int nrhs,
                               const mxArray *prhs[])
{
    dime_watch_position pos;
    uint64_t *p;
    (void)call, (void)nlhs;
    need_args(nrhs, 2, "dime_mex('watch_position', w)");
    CHECK(dime_watch_get_position(handles_watch_arg(prhs[1]), &pos), "watch_position");
    plhs[0] = mxCreateNumericMatrix(1, 2, mxUINT64_CLASS, mxREAL);
    p = (uint64_t *)mxGetData(plhs[0]);
    p[0] = pos.epoch;
    p[1] = pos.seq;
}

static void cmd_watch_close(mex_call *call, int nlhs, mxArray *plhs[], int nrhs,
                            const mxArray *prhs[])
{
    (void)call, (void)nlhs, (void)plhs;
    need_args(nrhs, 2, "dime_mex('watch_close', w)");
    handles_close_watch_arg(prhs[1]);
}

/* -------------------------------------------------------- tuple spaces */

/*   dime_mex('ts_out', h, space, tuple)                  % tuple: a cell
 *   [t, fix] = dime_mex('ts_in' | 'ts_rd', h, space, spec, timeout_ms)
 *   [t, fix] = dime_mex('ts_inp' | 'ts_rdp', h, space, spec)   % [] if none
 *   n = dime_mex('ts_count', h, space, spec)
 * spec: the 2xN cell dime.m compiles from a pattern (see pattern_arg). */

static dime_class matrix_class_named(const char *s)
{
    static const struct {
        const char *name;
        dime_class cls;
    } t[] = {
        {"", DIME_CLASS_ANY}, {"any", DIME_CLASS_ANY},
        {"int8", DIME_CLASS_INT8}, {"int16", DIME_CLASS_INT16},
        {"int32", DIME_CLASS_INT32}, {"int64", DIME_CLASS_INT64},
        {"uint8", DIME_CLASS_UINT8}, {"uint16", DIME_CLASS_UINT16},
        {"uint32", DIME_CLASS_UINT32}, {"uint64", DIME_CLASS_UINT64},
        {"single", DIME_CLASS_SINGLE}, {"double", DIME_CLASS_DOUBLE},
        {"complex single", DIME_CLASS_COMPLEX_SINGLE},
        {"complex double", DIME_CLASS_COMPLEX_DOUBLE},
        {"logical", DIME_CLASS_LOGICAL},
    };
    size_t i;
    for (i = 0; i < sizeof t / sizeof t[0]; i++)
        if (strcmp(s, t[i].name) == 0) /* s is from name_arg: no NUL inside */
            return t[i].cls;
    fail("argument", "unknown matrix class '%s'", s);
    return DIME_CLASS_ANY;
}

/* The pattern dime.m compiled: a 2xN cell, row 1 the kinds ('value',
 * 'any', 'type', 'matrix', 'range'), row 2 their arguments (the value; [];
 * a dime type name; {class name, rank}; [lo hi has_lo has_hi]). Owned by
 * the call. */
static dime_pattern *pattern_arg(mex_call *call, const mxArray *spec)
{
    dime_pattern *p;
    size_t n, i;
    if (!mxIsCell(spec) || (mxGetNumberOfElements(spec) > 0 && mxGetM(spec) != 2))
        fail("argument", "a compiled pattern must be a 2xN cell (use dime.m)");
    n = mxGetNumberOfElements(spec) / 2; /* not mxGetN: Octave 7 leaks its dims cache */
    p = dime_pattern_new();
    call->pattern = p;
    for (i = 0; i < n; i++) {
        const mxArray *k = mxGetCell(spec, 2 * i), *a = mxGetCell(spec, 2 * i + 1);
        char *kind;
        char ctx[48];
        snprintf(ctx, sizeof ctx, "pattern field %u", (unsigned)(i + 1));
        if (!k)
            fail("argument", "%s: no kind", ctx);
        kind = name_arg(k, "a pattern kind");
        if (strcmp(kind, "value") == 0) {
            dime_value *v;
            conv_err e;
            conv_err_init(&e);
            v = a ? to_dime(a, &e, 0) : dime_value_new_null();
            if (!v)
                fail(e.kind ? e.kind : "internal", "%s: %s", ctx, e.msg);
            mex_call_own(call, v);
            CHECK(dime_pattern_add_value(p, v), ctx); /* copies v */
            mex_call_free(call, v); /* so a long pattern does not fill the call's slots */
        } else if (strcmp(kind, "any") == 0) {
            CHECK(dime_pattern_add_any(p), ctx);
        } else if (strcmp(kind, "type") == 0) {
            if (!a)
                fail("argument", "%s: no type name", ctx);
            CHECK(dime_pattern_add_type(p, name_arg(a, "a type name")), ctx);
        } else if (strcmp(kind, "matrix") == 0) {
            const mxArray *cn, *rk;
            double r;
            if (!a || !mxIsCell(a) || mxGetNumberOfElements(a) != 2 || !(cn = mxGetCell(a, 0))
                || !(rk = mxGetCell(a, 1)))
                fail("argument", "%s: a matrix field needs {class, rank}", ctx);
            r = mxIsEmpty(rk) ? -1 : scalar_arg(rk, "a rank");
            if (r != r || r > 255 || (r >= 0 && r != (double)(int32_t)r))
                fail("argument", "%s: the rank must be an integer 0..255 (or [] for any)", ctx);
            CHECK(dime_pattern_add_matrix(p, matrix_class_named(name_arg(cn, "a class name")),
                                          r < 0 ? DIME_RANK_ANY : (int32_t)r),
                  ctx);
        } else if (strcmp(kind, "range") == 0) {
            const double *b;
            if (!a || !mxIsDouble(a) || mxIsComplex(a) || mxGetNumberOfElements(a) != 4)
                fail("argument", "%s: a range field needs [lo hi has_lo has_hi]", ctx);
            b = (const double *)mxGetData(a);
            CHECK(dime_pattern_add_range(p, b[0], b[1], b[2] != 0, b[3] != 0), ctx);
        } else {
            fail("argument", "%s: unknown kind '%s'", ctx, kind);
        }
    }
    return p;
}

/* The client and space every tuple-space command starts with. */
static dime_client *ts_begin(int nrhs, const mxArray *prhs[], const char **space)
{
    dime_client *c;
    need_args(nrhs, 4, "dime_mex('ts_<op>', h, space, tuple_or_pattern, ...)");
    c = handles_client_arg(prhs[1]);
    *space = name_arg(prhs[2], "the space name");
    return c;
}

static void cmd_ts_out(mex_call *call, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[])
{
    const char *space;
    dime_client *c = ts_begin(nrhs, prhs, &space);
    dime_value *t;
    (void)nlhs, (void)plhs;
    if (!mxIsCell(prhs[3]))
        fail("argument", "a tuple must be a cell array");
    t = value_arg(call, prhs[3], NULL);
    CHECK(dime_out(c, space, t), "out");
}

/* in / rd: block up to the timeout (argument 4). */
static void ts_take(mex_call *call, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[],
                    int in)
{
    const char *space;
    dime_client *c = ts_begin(nrhs, prhs, &space);
    dime_pattern *p = pattern_arg(call, prhs[3]);
    int64_t ms = ms_arg(nrhs, prhs, 4);
    dime_value *out = NULL;
    dime_status st = in ? dime_in(c, space, p, ms, &out) : dime_rd(c, space, p, ms, &out);
    if (st != DIME_STATUS_OK)
        fail_status(st, in ? "in" : "rd");
    return_value(call, nlhs, plhs, out);
}

/* inp / rdp: [] at once if nothing matches. */
static void ts_try(mex_call *call, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[],
                   int in)
{
    const char *space;
    dime_client *c = ts_begin(nrhs, prhs, &space);
    dime_pattern *p = pattern_arg(call, prhs[3]);
    dime_value *out = NULL;
    dime_status st = in ? dime_inp(c, space, p, &out) : dime_rdp(c, space, p, &out);
    if (st == DIME_STATUS_NOT_FOUND)
        return_none(nlhs, plhs);
    else if (st != DIME_STATUS_OK)
        fail_status(st, in ? "inp" : "rdp");
    else
        return_value(call, nlhs, plhs, out);
}

static void cmd_ts_in(mex_call *call, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[])
{
    ts_take(call, nlhs, plhs, nrhs, prhs, 1);
}

static void cmd_ts_rd(mex_call *call, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[])
{
    ts_take(call, nlhs, plhs, nrhs, prhs, 0);
}

static void cmd_ts_inp(mex_call *call, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[])
{
    ts_try(call, nlhs, plhs, nrhs, prhs, 1);
}

static void cmd_ts_rdp(mex_call *call, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[])
{
    ts_try(call, nlhs, plhs, nrhs, prhs, 0);
}

static void cmd_ts_count(mex_call *call, int nlhs, mxArray *plhs[], int nrhs,
                         const mxArray *prhs[])
{
    const char *space;
    dime_client *c = ts_begin(nrhs, prhs, &space);
    dime_pattern *p = pattern_arg(call, prhs[3]);
    size_t n = 0;
    (void)nlhs;
    CHECK(dime_count(c, space, p, &n), "count");
    plhs[0] = mxCreateDoubleScalar((double)n);
}

/* ------------------------------------------------------------- the table */

typedef struct {
    const char *name;
    mex_command_fn fn;
} command;

/* Sorted by strcmp, for bsearch; find_command checks the order once, so a
 * command added out of order fails loudly instead of going missing. */
static const command COMMANDS[] = {
    {"broadcast", cmd_broadcast},
    {"call", cmd_call},
    {"close", cmd_close},
    {"connect", cmd_connect},
    {"convert", cmd_convert},
    {"devices", cmd_devices},
    {"flush", cmd_flush},
    {"future_cancel", cmd_future_cancel},
    {"future_done", cmd_future_done},
    {"future_free", cmd_future_free},
    {"future_result", cmd_future_result},
    {"future_wait", cmd_future_wait},
    {"join", cmd_join},
    {"leave", cmd_leave},
    {"next_call", cmd_next_call},
    {"open_count", cmd_open_count},
    {"pipeline", cmd_pipeline},
    {"provide", cmd_provide},
    {"reply", cmd_reply},
    {"reply_error", cmd_reply_error},
    {"request_free", cmd_request_free},
    {"request_is_stream", cmd_request_is_stream},
    {"rpc_count", cmd_rpc_count},
    {"send", cmd_send},
    {"serve_end", cmd_serve_end},
    {"server_extensions", cmd_server_extensions},
    {"server_supports", cmd_server_supports},
    {"share_cas", cmd_share_cas},
    {"share_clear", cmd_share_clear},
    {"share_contains", cmd_share_contains},
    {"share_del", cmd_share_del},
    {"share_del_fenced", cmd_share_del_fenced},
    {"share_get", cmd_share_get},
    {"share_get_many", cmd_share_get_many},
    {"share_incr", cmd_share_incr},
    {"share_keys", cmd_share_keys},
    {"share_len", cmd_share_len},
    {"share_lock", cmd_share_lock},
    {"share_lock_lease", cmd_share_lock_lease},
    {"share_lock_renew", cmd_share_lock_renew},
    {"share_pop", cmd_share_pop},
    {"share_set", cmd_share_set},
    {"share_set_fenced", cmd_share_set_fenced},
    {"share_set_many", cmd_share_set_many},
    {"share_try_lock", cmd_share_try_lock},
    {"share_unlock", cmd_share_unlock},
    {"share_wait_key", cmd_share_wait_key},
    {"stream_close", cmd_stream_close},
    {"stream_end", cmd_stream_end},
    {"stream_next", cmd_stream_next},
    {"stream_open", cmd_stream_open},
    {"stream_send", cmd_stream_send},
    {"sync", cmd_sync},
    {"ts_count", cmd_ts_count},
    {"ts_in", cmd_ts_in},
    {"ts_inp", cmd_ts_inp},
    {"ts_out", cmd_ts_out},
    {"ts_rd", cmd_ts_rd},
    {"ts_rdp", cmd_ts_rdp},
    {"unacknowledged", cmd_unacknowledged},
    {"unprovide", cmd_unprovide},
    {"version", cmd_version},
    {"wait", cmd_wait},
    {"watch_close", cmd_watch_close},
    {"watch_groups", cmd_watch_groups},
    {"watch_next", cmd_watch_next},
    {"watch_position", cmd_watch_position},
    {"watch_share", cmd_watch_share},
    {"watch_space", cmd_watch_space},
};

static int by_name(const void *key, const void *elem)
{
    return strcmp((const char *)key, ((const command *)elem)->name);
}

mex_command_fn find_command(const char *name)
{
    static int checked = 0;
    const size_t n = sizeof COMMANDS / sizeof COMMANDS[0];
    const command *c;
    if (!checked) {
        size_t i;
        for (i = 1; i < n; i++)
            if (strcmp(COMMANDS[i - 1].name, COMMANDS[i].name) >= 0)
                fail("internal", "dime_mex command table out of order at '%s'", COMMANDS[i].name);
        checked = 1;
    }
    c = (const command *)bsearch(name, COMMANDS, n, sizeof COMMANDS[0], by_name);
    return c ? c->fn : NULL;
}
