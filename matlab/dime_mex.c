/*
 * dime_mex.c: the entry point (mexFunction) of the one MEX file behind
 * matlab/dime.m, and the state one call owns.
 *
 * A thin C client of include/dime.h (libdime): it converts between
 * mxArrays and dime_values and calls the library; it knows nothing of the
 * wire protocol. The work is split by job (see dime_mex.h): errors
 * (mex_errors.c), connection handles (mex_handles.c), text (mex_text.c),
 * value conversion (mex_convert.c, with the conversion table) and the
 * commands (mex_commands.c, with the list of commands; the remote-call
 * ones in mex_rpc.c). Build it with
 * matlab/build_mex.m (MATLAB or Octave) or matlab/build.sh (Octave, from a
 * shell); both compile every one of these .c files.
 *
 * Every failure raises mexErrMsgIdAndTxt("dime:<kind>", library message),
 * <kind> derived from the dime_status (see status_kind).
 */
#include "dime_mex.h"

/* The one per-call state. Static, because a raised error leaves the call
 * by longjmp: whatever it still holds is freed when the next call starts
 * (or at exit). */
static mex_call g_call;

dime_value *mex_call_own(mex_call *call, dime_value *v)
{
    size_t i;
    for (i = 0; i < MEX_CALL_MAX_VALUES; i++) {
        if (!call->values[i]) {
            call->values[i] = v;
            return v;
        }
    }
    dime_value_free(v);
    fail("internal", "too many values in one command");
    return NULL;
}

void mex_call_free(mex_call *call, dime_value *v)
{
    size_t i;
    if (!v)
        return;
    for (i = 0; i < MEX_CALL_MAX_VALUES; i++)
        if (call->values[i] == v)
            call->values[i] = NULL;
    dime_value_free(v);
}

void mex_call_release(mex_call *call)
{
    size_t i;
    dime_messages_free(call->messages);
    call->messages = NULL;
    for (i = 0; i < MEX_CALL_MAX_VALUES; i++) {
        dime_value_free(call->values[i]);
        call->values[i] = NULL;
    }
    dime_pattern_free(call->pattern);
    call->pattern = NULL;
    dime_request_free(call->request); /* answers its caller with an error */
    call->request = NULL;
    call->has_marker = 0;
}

static void at_exit(void)
{
    handles_close_all();
    mex_call_release(&g_call);
}

void mexFunction(int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[])
{
    static int at_exit_set = 0;
    char *cmd;
    mex_command_fn fn;
    if (!at_exit_set) {
        mexAtExit(at_exit);
        at_exit_set = 1;
    }
    mex_call_release(&g_call); /* what a call that raised left behind */
    if (nrhs < 1 || !mxIsChar(prhs[0]))
        fail("argument", "usage: dime_mex(command, ...); see mex_commands.c");
    cmd = name_arg(prhs[0], "the command");
    fn = find_command(cmd);
    if (!fn)
        fail("argument", "unknown command '%s'", cmd);
    fn(&g_call, nlhs, plhs, nrhs, prhs);
    mex_call_release(&g_call);
}
