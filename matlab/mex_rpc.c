/*
 * mex_rpc.c: the remote-call commands of dime_mex (include/dime.h's
 * dime_call / dime_future_* and dime_provide / dime_next_call / dime_reply).
 * dime.m builds d.call, d.call_async (dime_future.m) and d.serve on them,
 * waiting in short slices so Ctrl-C gets through between two commands.
 *
 * Calling:
 *   f    = dime_mex('call', h, function, args, timeout_ms)  % future handle;
 *          timeout_ms bounds the wait for a provider (-1: forever)
 *   done = dime_mex('future_wait', f, ms)     % finished within ms?
 *   done = dime_mex('future_done', f)
 *   [ok, v, fix] = dime_mex('future_result', f)
 *          ok: v is the result (fix: map markers for dime.m); not ok: v is
 *          a struct {identifier, type, message, traceback} saying why
 *          (dime:remoteError, dime:providerLost, dime:noProvider,
 *          dime:cancelled, dime:connection, dime:server, dime:codec).
 *          dime:timeout if the call has not finished, dime:notfound if
 *          its result was already taken.
 *   ok   = dime_mex('future_cancel', f)       % false: it had finished
 *          dime_mex('future_free', f, cancel) % idempotent; cancels the call
 *                                             % first if cancel is true and it
 *                                             % has not finished
 * Providing:
 *          dime_mex('provide', h, function, capacity)
 *          dime_mex('unprovide', h, function)
 *   [r, args, fix] = dime_mex('next_call', h, function, timeout_ms)
 *          r: a request handle, uint64(0) if no call of `function` came
 *          (a call of another function this client provides may end the
 *          wait early; it is kept for a wait for that function)
 *          dime_mex('reply', r, value)
 *          dime_mex('reply_error', r, type, message, traceback)
 *          dime_mex('request_free', r)        % idempotent; answers an
 *                                             % unanswered call with an error
 *   n    = dime_mex('serve_end', h, function, message)
 *          stop providing `function` (no error if it was not provided),
 *          answer its calls taken but never started with dime:providerStopped
 *          and `message`, release its requests; n: how many there were
 *   [futures, requests, streams] = dime_mex('rpc_count')   % registered, for tests
 *
 * Futures and requests live in the handle registry (mex_handles.c), owned
 * by their connection: closing it frees them.
 */
#include "dime_mex.h"

#include <stdio.h>
#include <string.h>

static mxArray *handle_mx(const void *p)
{
    mxArray *a = mxCreateNumericMatrix(1, 1, mxUINT64_CLASS, mxREAL);
    *(uint64_t *)mxGetData(a) = handles_of(p);
    return a;
}

static mxArray *text_mx(const char *s)
{
    return utf8_to_mx(s ? s : "", s ? strlen(s) : 0);
}

void cmd_call(mex_call *call, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[])
{
    dime_client *c;
    const char *function;
    dime_value *args = NULL;
    dime_future *f = NULL;
    dime_status st;
    (void)nlhs;
    need_args(nrhs, 3, "f = dime_mex('call', h, function, args, timeout_ms)");
    c = handles_client_arg(prhs[1]);
    function = name_arg(prhs[2], "the function name");
    if (nrhs > 3)
        args = value_arg(call, prhs[3], "the arguments");
    st = dime_call(c, function, args, ms_arg(nrhs, prhs, 4), &f);
    if (st != DIME_STATUS_OK)
        fail_status(st, "call");
    handles_add_future(c, f);
    plhs[0] = handle_mx(f);
}

void cmd_future_wait(mex_call *call, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[])
{
    dime_future *f;
    dime_status st;
    (void)call, (void)nlhs;
    need_args(nrhs, 2, "done = dime_mex('future_wait', f, timeout_ms)");
    f = handles_future_arg(prhs[1]);
    st = dime_future_wait(f, ms_arg(nrhs, prhs, 2));
    if (st != DIME_STATUS_OK && st != DIME_STATUS_TIMEOUT)
        fail_status(st, "future_wait");
    plhs[0] = mxCreateLogicalScalar(st == DIME_STATUS_OK);
}

void cmd_future_done(mex_call *call, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[])
{
    (void)call, (void)nlhs;
    need_args(nrhs, 2, "done = dime_mex('future_done', f)");
    plhs[0] = mxCreateLogicalScalar(dime_future_done(handles_future_arg(prhs[1])) != 0);
}

/* Why a finished call failed (with `st`), as the struct dime.m raises
 * from: identifier dime:<kind>, and the remote error's type, message and
 * traceback (the type and traceback are empty unless it is a remote
 * error). */
static mxArray *call_failure(dime_future *f, dime_status st)
{
    static const char *fields[] = {"identifier", "type", "message", "traceback"};
    char id[64];
    mxArray *s = mxCreateStructMatrix(1, 1, 4, fields);
    snprintf(id, sizeof id, "dime:%s", status_kind(st));
    mxSetFieldByNumber(s, 0, 0, mxCreateString(id));
    if (st == DIME_STATUS_REMOTE_ERROR) {
        const char *type = NULL, *message = NULL, *traceback = NULL;
        /* borrowed until dime_future_free; copied right here */
        CHECK(dime_future_error(f, &type, &message, &traceback), "future_result");
        mxSetFieldByNumber(s, 0, 1, text_mx(type));
        mxSetFieldByNumber(s, 0, 2, text_mx(message));
        mxSetFieldByNumber(s, 0, 3, text_mx(traceback));
    } else {
        /* the message of the dime_future_result that just failed */
        mxSetFieldByNumber(s, 0, 1, text_mx(""));
        mxSetFieldByNumber(s, 0, 2, text_mx(dime_last_error()));
        mxSetFieldByNumber(s, 0, 3, text_mx(""));
    }
    return s;
}

void cmd_future_result(mex_call *call, int nlhs, mxArray *plhs[], int nrhs,
                       const mxArray *prhs[])
{
    dime_future *f;
    dime_value *v = NULL;
    dime_status st;
    need_args(nrhs, 2, "[ok, v, fix] = dime_mex('future_result', f)");
    f = handles_future_arg(prhs[1]);
    st = dime_future_result(f, &v);
    switch (st) {
    case DIME_STATUS_OK:
        if (nlhs > 1) {
            /* plhs[1] = the value, plhs[2] = its map-marker flag */
            return_value(call, nlhs > 2 ? 2 : 1, plhs + 1, v);
        } else {
            dime_value_free(v);
        }
        plhs[0] = mxCreateLogicalScalar(1);
        return;
    case DIME_STATUS_REMOTE_ERROR:
    case DIME_STATUS_PROVIDER_LOST:
    case DIME_STATUS_CANCELLED:
    case DIME_STATUS_NO_PROVIDER:
    case DIME_STATUS_CONNECTION_LOST:
    case DIME_STATUS_SERVER_ERROR:
    case DIME_STATUS_CODEC_ERROR:
        if (nlhs > 1)
            plhs[1] = call_failure(f, st);
        if (nlhs > 2)
            plhs[2] = mxCreateLogicalScalar(0);
        plhs[0] = mxCreateLogicalScalar(0);
        return;
    default: /* TIMEOUT: not finished; NOT_FOUND: already taken */
        fail_status(st, "future_result");
    }
}

void cmd_future_cancel(mex_call *call, int nlhs, mxArray *plhs[], int nrhs,
                       const mxArray *prhs[])
{
    dime_status st;
    (void)call, (void)nlhs;
    need_args(nrhs, 2, "ok = dime_mex('future_cancel', f)");
    st = dime_future_cancel(handles_future_arg(prhs[1]));
    if (st != DIME_STATUS_OK && st != DIME_STATUS_NOT_FOUND) /* NOT_FOUND: finished */
        fail_status(st, "future_cancel");
    plhs[0] = mxCreateLogicalScalar(st == DIME_STATUS_OK);
}

void cmd_future_free(mex_call *call, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[])
{
    int cancel = 0;
    (void)call, (void)nlhs, (void)plhs;
    need_args(nrhs, 2, "dime_mex('future_free', f, cancel)");
    if (nrhs > 2) {
        const mxArray *c = prhs[2];
        if ((!mxIsLogical(c) && !mxIsNumeric(c)) || mxGetNumberOfElements(c) != 1)
            fail("argument", "cancel must be a logical scalar");
        cancel = mxGetScalar(c) != 0;
    }
    handles_free_future_arg(prhs[1], cancel);
}

void cmd_provide(mex_call *call, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[])
{
    dime_client *c;
    const char *function;
    double cap = 1;
    (void)call, (void)nlhs, (void)plhs;
    need_args(nrhs, 3, "dime_mex('provide', h, function, capacity)");
    c = handles_client_arg(prhs[1]);
    function = name_arg(prhs[2], "the function name");
    if (nrhs > 3)
        cap = scalar_arg(prhs[3], "the capacity");
    if (!(cap >= 1 && cap <= 4294967295.0) || cap != (double)(uint32_t)cap)
        fail("argument", "the capacity must be a whole number from 1 to 2^32-1");
    CHECK(dime_provide(c, function, (uint32_t)cap), "provide");
}

void cmd_unprovide(mex_call *call, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[])
{
    dime_client *c;
    const char *function;
    (void)call, (void)nlhs, (void)plhs;
    need_args(nrhs, 3, "dime_mex('unprovide', h, function)");
    c = handles_client_arg(prhs[1]);
    function = name_arg(prhs[2], "the function name");
    CHECK(dime_unprovide(c, function), "unprovide");
}

static int is_call_of(const dime_request *r, const char *function)
{
    const char *f = dime_request_function(r); /* NUL-terminated, borrowed */
    return f && strcmp(f, function) == 0;
}

void cmd_next_call(mex_call *call, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[])
{
    dime_client *c;
    const char *function;
    dime_request *r;
    mxArray *args;
    need_args(nrhs, 3, "[r, args, fix] = dime_mex('next_call', h, function, timeout_ms)");
    c = handles_client_arg(prhs[1]);
    function = name_arg(prhs[2], "the function name");
    r = handles_unstash(c, function); /* registered already */
    if (!r) {
        dime_request *got = NULL;
        dime_status st = dime_next_call(c, ms_arg(nrhs, prhs, 3), &got);
        if (st == DIME_STATUS_TIMEOUT) {
            plhs[0] = handle_mx(NULL);
            if (nlhs > 1)
                plhs[1] = mxCreateDoubleMatrix(0, 0, mxREAL);
            if (nlhs > 2)
                plhs[2] = mxCreateLogicalScalar(0);
            return;
        }
        if (st != DIME_STATUS_OK)
            fail_status(st, "next_call");
        if (!is_call_of(got, function)) {
            /* another function's call: keep it for its own wait */
            handles_add_request(c, got, 1);
            plhs[0] = handle_mx(NULL);
            if (nlhs > 1)
                plhs[1] = mxCreateDoubleMatrix(0, 0, mxREAL);
            if (nlhs > 2)
                plhs[2] = mxCreateLogicalScalar(0);
            return;
        }
        /* Owned by the call until registered: a conversion that raises
         * frees it (answering its caller) when the next command starts. */
        call->request = got;
        call->has_marker = 0;
        args = from_dime(call, dime_request_args(got));
        call->request = NULL;
        handles_add_request(c, got, 0);
        r = got;
    } else {
        call->has_marker = 0;
        args = from_dime(call, dime_request_args(r));
    }
    plhs[0] = handle_mx(r);
    if (nlhs > 1)
        plhs[1] = args;
    else
        mxDestroyArray(args);
    if (nlhs > 2)
        plhs[2] = mxCreateLogicalScalar(call->has_marker != 0);
}

void cmd_reply(mex_call *call, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[])
{
    dime_request *r;
    dime_value *v;
    (void)nlhs, (void)plhs;
    need_args(nrhs, 3, "dime_mex('reply', r, value)");
    r = handles_request_arg(prhs[1]);
    v = value_arg(call, prhs[2], "the result");
    CHECK(dime_reply(r, v), "reply");
}

void cmd_reply_error(mex_call *call, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[])
{
    dime_request *r;
    const char *type, *message, *traceback = NULL;
    (void)call, (void)nlhs, (void)plhs;
    need_args(nrhs, 4, "dime_mex('reply_error', r, type, message, traceback)");
    r = handles_request_arg(prhs[1]);
    /* NULs would cut the C strings short: refused by name_arg */
    type = name_arg(prhs[2], "the error type");
    message = name_arg(prhs[3], "the error message");
    if (nrhs > 4)
        traceback = name_arg(prhs[4], "the traceback");
    CHECK(dime_reply_error(r, type, message, traceback), "reply_error");
}

void cmd_request_free(mex_call *call, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[])
{
    (void)call, (void)nlhs, (void)plhs;
    need_args(nrhs, 2, "dime_mex('request_free', r)");
    handles_free_request_arg(prhs[1]);
}

void cmd_serve_end(mex_call *call, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[])
{
    dime_client *c;
    const char *function, *message;
    dime_request *r = NULL;
    (void)call, (void)nlhs;
    need_args(nrhs, 4, "n = dime_mex('serve_end', h, function, message)");
    c = handles_client_arg(prhs[1]);
    function = name_arg(prhs[2], "the function name");
    message = name_arg(prhs[3], "the message");
    /* Not provided (any more), or the connection is gone: nothing to stop. */
    (void)dime_unprovide(c, function);
    /* The broker sends nothing for `function` after acknowledging the
     * unprovide, and every call it sent before is queued here by now. */
    while (dime_next_call(c, 0, &r) == DIME_STATUS_OK) {
        handles_add_request(c, r, 1);
        r = NULL;
    }
    plhs[0] = mxCreateDoubleScalar(
        (double)handles_release_requests(c, function, "dime:providerStopped", message));
}

void cmd_rpc_count(mex_call *call, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[])
{
    size_t futures, requests, streams;
    (void)call, (void)nrhs, (void)prhs;
    handles_count_objects(&futures, &requests, &streams);
    plhs[0] = mxCreateDoubleScalar((double)futures);
    if (nlhs > 1)
        plhs[1] = mxCreateDoubleScalar((double)requests);
    if (nlhs > 2)
        plhs[2] = mxCreateDoubleScalar((double)streams);
}
