/*
 * dime_mex.h: what the files of the MEX file behind matlab/dime.m share.
 * Internal: not installed, not part of libdime's API.
 *
 *   dime_mex.c      mexFunction: per-call state, command lookup
 *   mex_errors.c    raising dime:<kind> errors; conversion errors
 *   mex_handles.c   the registry of uint64 handles: open connections, and
 *                   the futures and requests of remote calls
 *   mex_text.c      char arrays <-> UTF-8; string arguments
 *   mex_convert.c   mxArray <-> dime_value
 *   mex_commands.c  the commands and their {name, fn} table
 *   mex_rpc.c       the remote-call commands (call/future_*, provide/next_call/reply)
 *
 * Every file is a plain client of include/dime.h; none knows the wire
 * protocol.
 */
#ifndef DIME_MEX_H
#define DIME_MEX_H

#include "mex.h"
#include "dime.h"

#include <stddef.h>
#include <stdint.h>

/* The field of the 1x1 struct standing for a map whose keys are not all
 * valid field names (containers.Map): a 1x2 cell {keys, values}, each a
 * 1xN cell. dime.m builds it before sending and resolves it after sync. */
#define MAP_MARKER "dime__containers_Map__"

/* Octave's MEX layer narrows a returned complex array whose imaginary part
 * is all zero to a real one; MATLAB does not. Under Octave we build such
 * arrays with the interpreter's complex(), which keeps them complex. */
#if defined(DIME_OCTAVE)
#define NARROWS_ZERO_IMAG 1
#else
#define NARROWS_ZERO_IMAG 0
#endif

/* ------------------------------------------------ per-call state */

/* How many values one command may own at once (share_cas: new, expected
 * and the result it converts back). */
#define MEX_CALL_MAX_VALUES 8

/* Everything one dime_mex call owns that is not an mxArray or mxMalloc'd
 * (those the MEX layer frees when an error unwinds the call). A raised
 * error (mexErrMsgIdAndTxt) does not return, so whatever is still here
 * when a call ends by raising is freed by mex_call_release at the start of
 * the next call; a call that returns normally releases it on the way out.
 * There is one, in dime_mex.c; everything that needs it is passed it. */
typedef struct mex_call {
    dime_messages *messages;                  /* sync's list while it is converted */
    dime_value *values[MEX_CALL_MAX_VALUES];  /* values built or received */
    dime_pattern *pattern;                    /* the tuple-space pattern */
    dime_request *request; /* a request taken but not yet registered */
    int has_marker; /* from_dime produced a map marker dime.m must resolve */
} mex_call;

/* Takes ownership of `v` for the rest of the call and returns it; raises
 * dime:internal (freeing v) if the call owns too many already. */
dime_value *mex_call_own(mex_call *call, dime_value *v);
/* Frees `v` now and forgets it (NULL is fine). */
void mex_call_free(mex_call *call, dime_value *v);
/* Frees everything the call still owns. */
void mex_call_release(mex_call *call);

/* ------------------------------------------------ errors (mex_errors.c) */

/* Raises dime:<kind> with a formatted message; does not return. */
void fail(const char *kind, const char *fmt, ...);
/* The <kind> of a dime_status ("argument", "timeout", ...). */
const char *status_kind(dime_status st);
/* Raises the error of a failed library call: call it right after the
 * failing call, before anything else can replace dime_last_error(). */
void fail_status(dime_status st, const char *context);

#define CHECK(call, context)                                                   \
    do {                                                                       \
        dime_status st_ = (call);                                              \
        if (st_ != DIME_STATUS_OK)                                             \
            fail_status(st_, (context));                                       \
    } while (0)

/* Conversion errors are collected here instead of raised at once, so the
 * converter can free the partly built value first. */
typedef struct {
    const char *kind; /* NULL: no error */
    char msg[1024];
} conv_err;

void conv_err_init(conv_err *e);
/* Records the first error; later ones are dropped. */
void conv_fail(conv_err *e, const char *kind, const char *fmt, ...);

/* ------------------------------------------------ handles (mex_handles.c) */

/* Adds a connection (raises dime:internal, freeing it, if out of memory). */
void handles_add(dime_client *c);
/* The connection of a handle argument; dime:argument if it is not a uint64
 * scalar, dime:closed if no open connection has it. */
dime_client *handles_client_arg(const mxArray *a);
/* Closes the connection of a handle argument if open (idempotent), after
 * freeing its futures and requests. */
void handles_close_arg(const mxArray *a);
/* The same, after waiting for the answers to its pipelined sends: the
 * status of dime_close (a failure not yet reported), or OK. */
dime_status handles_close_reporting(const mxArray *a);
/* Open connections. */
size_t handles_count(void);
/* Frees every future and request and closes every connection (mexAtExit). */
void handles_close_all(void);
/* The handle MATLAB sees for a connection, future or request. */
uint64_t handles_of(const void *p);

/* Registers a future made on `owner` (raises dime:internal, freeing it, if
 * out of memory). The registry owns it from then on. */
void handles_add_future(dime_client *owner, dime_future *f);
/* The future of a handle argument; dime:closed if it was released. */
dime_future *handles_future_arg(const mxArray *a);
/* Frees the future of a handle argument if registered (idempotent),
 * cancelling its call first if `cancel` and it has not finished;
 * otherwise the call goes on (its result is dropped). */
void handles_free_future_arg(const mxArray *a, int cancel);
/* Registers a request taken on `owner`; `stashed`: kept for a later wait
 * for its function, not handed to MATLAB (raises dime:internal, freeing
 * it, if out of memory). */
void handles_add_request(dime_client *owner, dime_request *r, int stashed);
/* The request of a handle argument; dime:closed if it was released. */
dime_request *handles_request_arg(const mxArray *a);
/* Frees the request of a handle argument if registered (idempotent; an
 * unanswered one is answered with an error by the library). */
void handles_free_request_arg(const mxArray *a);
/* A stashed request of `owner` for `function`, now handed out, or NULL. */
dime_request *handles_unstash(const dime_client *owner, const char *function);
/* Frees every request of `owner` for `function`; the stashed ones (never
 * started) are first answered with error_type/message. Returns how many. */
size_t handles_release_requests(const dime_client *owner, const char *function,
                                const char *error_type, const char *message);
/* Registers a stream opened on `owner` (raises dime:internal, closing
 * it, if out of memory). The registry owns it from then on. */
void handles_add_stream(dime_client *owner, dime_stream *st);
/* The stream of a handle argument; dime:closed if it was closed. */
dime_stream *handles_stream_arg(const mxArray *a);
/* Closes the stream of a handle argument if registered (idempotent),
 * stopping its producer if it has not ended. */
void handles_close_stream_arg(const mxArray *a);
/* How many futures, requests and streams are registered. */
void handles_count_objects(size_t *futures, size_t *requests, size_t *streams);
/* Watches, held the same way (a uint64 handle each). */
void handles_add_watch(dime_watch *w);
uint64_t handles_of_watch(const dime_watch *w);
/* The watch of a handle argument (raises dime:closed if closed or unknown). */
dime_watch *handles_watch_arg(const mxArray *a);
/* Closes the watch of a handle argument if open (idempotent). */
void handles_close_watch_arg(const mxArray *a);

/* ------------------------------------------------ text (mex_text.c) */

/* UTF-8 bytes of `n` mxChars read with stride `stride` from `c`, in a new
 * mxMalloc'd NUL-terminated buffer (*len excludes the NUL). */
char *chars_to_utf8(const mxChar *c, size_t n, size_t stride, size_t *len);
/* A 1xN char row (0x0 when empty) of `len` UTF-8 bytes; `s` need not be
 * NUL-terminated. */
mxArray *utf8_to_mx(const char *s, size_t len);
/* A UTF-8 copy of a char row-vector argument (may hold NULs; *len counts
 * them). dime:argument if `a` is not a char row. */
char *text_arg(const mxArray *a, const char *what, size_t *len);
/* A NUL-terminated UTF-8 copy of a char row for a library call that takes
 * a C string: dime:argument if it holds a NUL, which would cut it short. */
char *name_arg(const mxArray *a, const char *what);

/* ------------------------------------------------ conversion (mex_convert.c) */

/* An mxArray as a new dime_value (owned by the caller), or NULL with *e set. */
dime_value *to_dime(const mxArray *a, conv_err *e, int depth);
/* to_dime raising dime:<kind> on failure; the value is owned by `call`.
 * `name` (may be NULL) names the variable in the message. */
dime_value *value_arg(mex_call *call, const mxArray *a, const char *name);
/* A dime_value as a new mxArray; sets call->has_marker when a map came
 * back as a marker for dime.m to finish. Raises on a malformed value. */
mxArray *from_dime(mex_call *call, const dime_value *v);

/* ------------------------------------------------ commands (mex_commands.c) */

typedef void (*mex_command_fn)(mex_call *call, int nlhs, mxArray *plhs[], int nrhs,
                               const mxArray *prhs[]);
/* The command named `name`, or NULL. */
mex_command_fn find_command(const char *name);

/* Argument helpers the command files share. */
/* dime:argument with `usage` unless there are at least n arguments. */
void need_args(int nrhs, int n, const char *usage);
/* A real numeric scalar argument (dime:argument otherwise). */
double scalar_arg(const mxArray *a, const char *what);
/* Milliseconds from argument i; missing, [], negative, NaN or Inf: forever. */
int64_t ms_arg(int nrhs, const mxArray *prhs[], int i);
/* plhs[0] = `v` (from the library; owned by the call until converted, so a
 * conversion that raises does not leak it) and, if asked, plhs[1] = the
 * map-marker flag. */
void return_value(mex_call *call, int nlhs, mxArray *plhs[], dime_value *v);

/* ------------------------------------------------ remote calls (mex_rpc.c) */

void cmd_call(mex_call *call, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[]);
void cmd_future_wait(mex_call *call, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[]);
void cmd_future_done(mex_call *call, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[]);
void cmd_future_result(mex_call *call, int nlhs, mxArray *plhs[], int nrhs,
                       const mxArray *prhs[]);
void cmd_future_cancel(mex_call *call, int nlhs, mxArray *plhs[], int nrhs,
                       const mxArray *prhs[]);
void cmd_future_free(mex_call *call, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[]);
void cmd_provide(mex_call *call, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[]);
void cmd_unprovide(mex_call *call, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[]);
void cmd_next_call(mex_call *call, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[]);
void cmd_reply(mex_call *call, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[]);
void cmd_reply_error(mex_call *call, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[]);
void cmd_request_free(mex_call *call, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[]);
void cmd_serve_end(mex_call *call, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[]);
void cmd_rpc_count(mex_call *call, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[]);

/* ------------------------------------------------ streams (mex_stream.c) */

void cmd_stream_open(mex_call *call, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[]);
void cmd_stream_next(mex_call *call, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[]);
void cmd_stream_close(mex_call *call, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[]);
void cmd_request_is_stream(mex_call *call, int nlhs, mxArray *plhs[], int nrhs,
                           const mxArray *prhs[]);
void cmd_stream_send(mex_call *call, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[]);
void cmd_stream_end(mex_call *call, int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[]);

#endif
