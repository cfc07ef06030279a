/*
 * mex_errors.c: raising dime:<kind> errors, and collecting conversion
 * errors until the partly built value is freed.
 */
#include "dime_mex.h"

#include <stdarg.h>
#include <stdio.h>

/* Static, not on the stack: long messages, and mexErrMsgIdAndTxt does not
 * return, so nothing here outlives the call that formats it anyway. */
static char g_msg[2048];

/* Callers own nothing that needs freeing when they call this except what
 * the per-call state holds (mex_call) or the MEX layer frees (mxArrays,
 * mxMalloc'd memory). */
void fail(const char *kind, const char *fmt, ...)
{
    char id[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_msg, sizeof g_msg, fmt, ap);
    va_end(ap);
    snprintf(id, sizeof id, "dime:%s", kind);
    mexErrMsgIdAndTxt(id, "%s", g_msg);
}

const char *status_kind(dime_status st)
{
    switch (st) {
    case DIME_STATUS_NULL_ARGUMENT:
    case DIME_STATUS_INVALID_ARGUMENT: return "argument";
    case DIME_STATUS_WRONG_TYPE: return "type";
    case DIME_STATUS_OUT_OF_RANGE: return "range";
    case DIME_STATUS_NOT_FOUND: return "notfound";
    case DIME_STATUS_CONNECTION_LOST: return "connection";
    case DIME_STATUS_CLOSED: return "closed";
    case DIME_STATUS_PROTOCOL_ERROR: return "protocol";
    case DIME_STATUS_SERVER_ERROR: return "server";
    case DIME_STATUS_TIMEOUT: return "timeout";
    case DIME_STATUS_CODEC_ERROR: return "codec";
    case DIME_STATUS_REMOTE_ERROR: return "remoteError";
    case DIME_STATUS_PROVIDER_LOST: return "providerLost";
    case DIME_STATUS_CANCELLED: return "cancelled";
    case DIME_STATUS_NO_PROVIDER: return "noProvider";
    case DIME_STATUS_UNSUPPORTED: return "unsupported";
    case DIME_STATUS_NOT_PERMITTED: return "permission";
    case DIME_STATUS_PANIC: return "internal";
    default: return "unknown";
    }
}

void fail_status(dime_status st, const char *context)
{
    const char *m = dime_last_error(); /* a C string owned by libdime */
    if (context && *context)
        fail(status_kind(st), "%s: %s", context, (m && *m) ? m : "(no message)");
    else
        fail(status_kind(st), "%s", (m && *m) ? m : "(no message)");
}

void conv_err_init(conv_err *e)
{
    e->kind = NULL;
    e->msg[0] = 0;
}

void conv_fail(conv_err *e, const char *kind, const char *fmt, ...)
{
    va_list ap;
    if (e->kind)
        return; /* keep the first error: the later ones follow from it */
    e->kind = kind;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
}
