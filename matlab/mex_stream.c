/*
 * mex_stream.c: the stream commands of dime_mex (include/dime.h's
 * dime_stream_open / _next / _close for consumers and dime_stream_send /
 * _end for producers). dime.m builds d.stream (dime_stream.m) and
 * d.serve_stream on them, waiting in short slices so Ctrl-C gets through
 * between two commands.
 *
 * Consuming:
 *   s    = dime_mex('stream_open', h, function, args, items, bytes, timeout_ms)
 *          stream handle; items/bytes: the credit window (0: the library's
 *          default); timeout_ms bounds the wait for a provider (-1: forever)
 *   [state, v, fix] = dime_mex('stream_next', s, ms)
 *          state 1: v is the next item (fix: map markers for dime.m);
 *          0: nothing came within ms; -1: the stream ended normally;
 *          -2: it failed, v is a struct {identifier, type, message,
 *          traceback} saying why (dime:remoteError, dime:providerLost,
 *          dime:noProvider, dime:connection, dime:server). Ended or failed
 *          streams answer the same on every later call.
 *          dime_mex('stream_close', s)   % idempotent; stops the producer
 *                                        % if it has not ended
 * Producing (on a request from dime_mex('next_call', ...)):
 *   tf   = dime_mex('request_is_stream', r)  % a stream call, not a plain call?
 *   st   = dime_mex('stream_send', r, item, ms)
 *          1: sent; 0: the consumer stopped (closed early or gone), stop
 *          producing; -1: no room in the consumer's window within ms
 *          (nothing was sent; send it again)
 *          dime_mex('stream_end', r)     % ends the stream normally
 *
 * Streams live in the handle registry (mex_handles.c) next to futures,
 * owned by their connection: closing it closes them.
 */
#include "dime_mex.h"

#include <stdio.h>
#include <string.h>

static mxArray *text_mx(const char *s)
{
    return utf8_to_mx(s ? s : "", s ? strlen(s) : 0);
}

/* A non-negative whole number below 2^53 (a window size). */
static uint64_t count_arg(int nrhs, const mxArray *prhs[], int i, const char *what)
{
    double d;
    if (nrhs <= i)
        return 0;
    d = scalar_arg(prhs[i], what);
    if (!(d >= 0 && d <= 9007199254740992.0) || d != (double)(uint64_t)d)
        fail("argument", "%s must be a whole number >= 0", what);
    return (uint64_t)d;
}

void cmd_stream_open(mex_call *call, int nlhs, mxArray *plhs[], int nrhs,
                     const mxArray *prhs[])
{
    dime_client *c;
    const char *function;
    dime_value *args = NULL;
    dime_stream *st = NULL;
    uint64_t items, bytes;
    dime_status rc;
    mxArray *h;
    (void)nlhs;
    need_args(nrhs, 3, "s = dime_mex('stream_open', h, function, args, items, bytes, timeout_ms)");
    c = handles_client_arg(prhs[1]);
    function = name_arg(prhs[2], "the function name");
    if (nrhs > 3)
        args = value_arg(call, prhs[3], "the arguments");
    items = count_arg(nrhs, prhs, 4, "the window's items");
    bytes = count_arg(nrhs, prhs, 5, "the window's bytes");
    rc = dime_stream_open(c, function, args, items, bytes, ms_arg(nrhs, prhs, 6), &st);
    if (rc != DIME_STATUS_OK)
        fail_status(rc, "stream_open");
    handles_add_stream(c, st);
    h = mxCreateNumericMatrix(1, 1, mxUINT64_CLASS, mxREAL);
    *(uint64_t *)mxGetData(h) = handles_of(st);
    plhs[0] = h;
}

/* Why a stream failed (with `rc`), as the struct dime.m raises from:
 * identifier dime:<kind>, and the producer's error type, message and
 * traceback (type and traceback empty unless it raised). */
static mxArray *stream_failure(const dime_stream *st, dime_status rc)
{
    static const char *fields[] = {"identifier", "type", "message", "traceback"};
    const char *type = NULL, *message = NULL, *traceback = NULL;
    char id[64];
    mxArray *s = mxCreateStructMatrix(1, 1, 4, fields);
    snprintf(id, sizeof id, "dime:%s", status_kind(rc));
    mxSetFieldByNumber(s, 0, 0, mxCreateString(id));
    /* borrowed until dime_stream_close; copied right here */
    if (dime_stream_error(st, &type, &message, &traceback) != DIME_STATUS_OK) {
        type = traceback = NULL;
        message = dime_last_error();
    }
    mxSetFieldByNumber(s, 0, 1, text_mx(type));
    mxSetFieldByNumber(s, 0, 2, text_mx(message));
    mxSetFieldByNumber(s, 0, 3, text_mx(traceback));
    return s;
}

void cmd_stream_next(mex_call *call, int nlhs, mxArray *plhs[], int nrhs,
                     const mxArray *prhs[])
{
    dime_stream *st;
    dime_value *v = NULL;
    dime_status rc;
    double state = 0;
    need_args(nrhs, 2, "[state, v, fix] = dime_mex('stream_next', s, timeout_ms)");
    st = handles_stream_arg(prhs[1]);
    rc = dime_stream_next(st, ms_arg(nrhs, prhs, 2), &v);
    switch (rc) {
    case DIME_STATUS_OK:
        if (nlhs > 1)
            return_value(call, nlhs > 2 ? 2 : 1, plhs + 1, v); /* owns v */
        else
            dime_value_free(v);
        plhs[0] = mxCreateDoubleScalar(1);
        return;
    case DIME_STATUS_TIMEOUT:
    case DIME_STATUS_END_OF_STREAM:
        state = rc == DIME_STATUS_TIMEOUT ? 0 : -1;
        if (nlhs > 1)
            plhs[1] = mxCreateDoubleMatrix(0, 0, mxREAL);
        break;
    case DIME_STATUS_REMOTE_ERROR:
    case DIME_STATUS_PROVIDER_LOST:
    case DIME_STATUS_NO_PROVIDER:
    case DIME_STATUS_CONNECTION_LOST:
    case DIME_STATUS_SERVER_ERROR:
    case DIME_STATUS_CODEC_ERROR:
        state = -2;
        if (nlhs > 1)
            plhs[1] = stream_failure(st, rc);
        break;
    default:
        fail_status(rc, "stream_next");
    }
    if (nlhs > 2)
        plhs[2] = mxCreateLogicalScalar(0);
    plhs[0] = mxCreateDoubleScalar(state);
}

void cmd_stream_close(mex_call *call, int nlhs, mxArray *plhs[], int nrhs,
                      const mxArray *prhs[])
{
    (void)call, (void)nlhs, (void)plhs;
    need_args(nrhs, 2, "dime_mex('stream_close', s)");
    handles_close_stream_arg(prhs[1]);
}

void cmd_request_is_stream(mex_call *call, int nlhs, mxArray *plhs[], int nrhs,
                           const mxArray *prhs[])
{
    (void)call, (void)nlhs;
    need_args(nrhs, 2, "tf = dime_mex('request_is_stream', r)");
    plhs[0] = mxCreateLogicalScalar(dime_request_is_stream(handles_request_arg(prhs[1])) != 0);
}

void cmd_stream_send(mex_call *call, int nlhs, mxArray *plhs[], int nrhs,
                     const mxArray *prhs[])
{
    dime_request *r;
    dime_value *item;
    dime_status rc;
    double state = 0;
    (void)nlhs;
    need_args(nrhs, 3, "st = dime_mex('stream_send', r, item, timeout_ms)");
    r = handles_request_arg(prhs[1]);
    item = value_arg(call, prhs[2], "the item");
    rc = dime_stream_send(r, item, ms_arg(nrhs, prhs, 3));
    if (rc == DIME_STATUS_OK)
        state = 1;
    else if (rc == DIME_STATUS_CANCELLED)
        state = 0;
    else if (rc == DIME_STATUS_TIMEOUT)
        state = -1;
    else
        fail_status(rc, "stream_send");
    mex_call_free(call, item);
    plhs[0] = mxCreateDoubleScalar(state);
}

void cmd_stream_end(mex_call *call, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[])
{
    (void)call, (void)nlhs, (void)plhs;
    need_args(nrhs, 2, "dime_mex('stream_end', r)");
    CHECK(dime_stream_end(handles_request_arg(prhs[1])), "stream_end");
}
