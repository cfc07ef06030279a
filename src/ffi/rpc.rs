//! Remote calls from C: `dime_call` and `dime_future_*` on the calling
//! side; `dime_provide` with `dime_next_call` / `dime_reply` (pull form) or
//! `dime_provide_callback` (library threads run a callback) on the
//! providing side.
//!
//! Remote calls travel on a second connection of the client, opened on
//! first use, with a reader thread of its own: calls never wait behind a
//! blocked `dime_wait` on the same client, and any thread may call, wait
//! and reply at once.

use super::args::{str_arg, timeout_arg, write_out};
use super::client::{dime_client, rpc_endpoint};
use super::status::{Fail, check_arg, dime_status, ffi_status, ffi_value};
use super::value::{as_raw, dime_value, from_raw, into_raw};
use crate::client::rpc::{CallError, CallFuture, IncomingCall, Rpc};
use crate::codec::dimeb;
use crate::value::Value;
use std::ffi::{CString, c_char, c_void};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A remote call in flight, from `dime_call`; release it with
/// `dime_future_free` (which does not cancel the call).
#[allow(non_camel_case_types)]
pub struct dime_future {
    future: CallFuture,
    /// The finished call's outcome once taken from the future.
    outcome: Option<Outcome>,
}

/// A finished call, decoded.
enum Outcome {
    Value(Value),
    Failed {
        error: CallError,
        /// NUL-terminated copies for `dime_future_error`.
        texts: [CString; 3],
    },
    /// `dime_future_result` handed the value out.
    Taken,
}

/// A call this client was asked to run, from `dime_next_call`; answer it
/// with `dime_reply` or `dime_reply_error`, then release it with
/// `dime_request_free`. Freeing an unanswered request answers it with an
/// error, so its caller never waits forever.
#[allow(non_camel_case_types)]
pub struct dime_request {
    pub(super) call: IncomingCall,
    function: CString,
    args: Value,
    pub(super) endpoint: Arc<Rpc>,
    pub(super) answered: bool,
}

/// Sets the remote-call options of `client`; they apply when its
/// remote-call connection opens (at the first `dime_call`, `dime_provide`
/// or `dime_provide_callback`), so call this before those.
/// `max_in_flight`: most calls in flight at once, `dime_call` waits for
/// room (0: no cap). `maxage_ms`: fail every call in flight when the broker
/// has sent nothing for this long, pinging it after half (negative: never).
/// `DIME_STATUS_INVALID_ARGUMENT` once the connection is open.
#[unsafe(no_mangle)]
pub extern "C" fn dime_call_options(
    client: *mut dime_client,
    max_in_flight: usize,
    maxage_ms: i64,
) -> dime_status {
    ffi_status! {
        let handle = check_arg!(ref client as dime_client);
        let mut slot = handle.rpc.lock().unwrap_or_else(|p| p.into_inner());
        if slot.endpoint.is_some() {
            return Err(Fail::invalid(
                "call options must be set before the first remote call or provide",
            ));
        }
        slot.options.max_in_flight = (max_in_flight > 0).then_some(max_in_flight);
        slot.options.maxage = timeout_arg(maxage_ms);
        Ok(())
    }
}

/// Calls the function `function` that some client provides, with `args`
/// (borrowed; NULL means a null value). On success writes a new future to
/// `*out`, owned by the caller. Returns once the call is written; the
/// result comes later (`dime_future_wait`). `timeout_ms` bounds the wait
/// for a provider to take the call (`DIME_WAIT_FOREVER`: no limit); past
/// it the future fails with `DIME_STATUS_NO_PROVIDER`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_call(
    client: *mut dime_client,
    function: *const c_char,
    args: *const dime_value,
    timeout_ms: i64,
    out: *mut *mut dime_future,
) -> dime_status {
    ffi_status! {
        let handle = check_arg!(ref client as dime_client);
        let function = str_arg(function, "function")?;
        check_arg!(out);
        let null = Value::Null;
        let args = if args.is_null() { &null } else { check_arg!(ref args as Value) };
        let endpoint = rpc_endpoint(handle)?;
        let future = endpoint.call(function, args, timeout_arg(timeout_ms))?;
        write_out(out, Box::into_raw(Box::new(dime_future { future, outcome: None })));
        Ok(())
    }
}

/// Waits until the call has finished (with a result or an error):
/// `DIME_STATUS_OK` when it has, `DIME_STATUS_TIMEOUT` if `timeout_ms`
/// passed first (`DIME_WAIT_FOREVER`: no limit; 0: just look).
#[unsafe(no_mangle)]
pub extern "C" fn dime_future_wait(future: *mut dime_future, timeout_ms: i64) -> dime_status {
    ffi_status! {
        let f = check_arg!(ref future as dime_future);
        if f.outcome.is_some() || f.future.wait(timeout_arg(timeout_ms)) {
            Ok(())
        } else {
            Err(Fail::new(dime_status::Timeout, "the call has not finished yet"))
        }
    }
}

/// 1 if the call has finished, 0 if not (or `future` is NULL).
#[unsafe(no_mangle)]
pub extern "C" fn dime_future_done(future: *const dime_future) -> i32 {
    ffi_value!(0, {
        if future.is_null() {
            return 0;
        }
        // SAFETY: non-NULL; validity is the caller's contract.
        let f = unsafe { &*future };
        i32::from(f.outcome.is_some() || f.future.is_done())
    })
}

/// Takes the result of a finished call: writes a new value to `*out`,
/// owned by the caller, and returns `DIME_STATUS_OK`. If the call failed,
/// returns why: `DIME_STATUS_REMOTE_ERROR` (see `dime_future_error`),
/// `DIME_STATUS_PROVIDER_LOST`, `DIME_STATUS_NO_PROVIDER`,
/// `DIME_STATUS_CANCELLED`, `DIME_STATUS_CONNECTION_LOST` or
/// `DIME_STATUS_SERVER_ERROR`, with the message in `dime_last_error()`.
/// `DIME_STATUS_TIMEOUT` if it has not finished; `DIME_STATUS_NOT_FOUND`
/// if its value was already taken.
#[unsafe(no_mangle)]
pub extern "C" fn dime_future_result(
    future: *mut dime_future,
    out: *mut *mut dime_value,
) -> dime_status {
    ffi_status! {
        let f = check_arg!(mut future as dime_future);
        check_arg!(out);
        settle(f)?;
        match f.outcome.as_mut().expect("settled") {
            Outcome::Value(_) => {
                let Some(Outcome::Value(v)) = f.outcome.replace(Outcome::Taken) else {
                    unreachable!("matched above")
                };
                write_out(out, into_raw(v));
                Ok(())
            }
            Outcome::Failed { error, .. } => Err(call_fail(error)),
            Outcome::Taken => Err(Fail::new(
                dime_status::NotFound,
                "the result of this call was already taken",
            )),
        }
    }
}

/// The remote error of a call that ended with `DIME_STATUS_REMOTE_ERROR`:
/// writes borrowed, NUL-terminated strings (valid until
/// `dime_future_free`) to each non-NULL output: the error's type name
/// (e.g. `ValueError`), its message and the provider's traceback (may be
/// empty). For other failures the type is empty and the message says what
/// happened. `DIME_STATUS_NOT_FOUND` if the call succeeded,
/// `DIME_STATUS_TIMEOUT` if it has not finished.
#[unsafe(no_mangle)]
pub extern "C" fn dime_future_error(
    future: *mut dime_future,
    error_type: *mut *const c_char,
    message: *mut *const c_char,
    traceback: *mut *const c_char,
) -> dime_status {
    ffi_status! {
        let f = check_arg!(mut future as dime_future);
        settle(f)?;
        let Some(Outcome::Failed { texts, .. }) = &f.outcome else {
            return Err(Fail::new(dime_status::NotFound, "the call did not fail"));
        };
        for (out, text) in [error_type, message, traceback].into_iter().zip(texts.iter()) {
            if !out.is_null() {
                write_out(out, text.as_ptr());
            }
        }
        Ok(())
    }
}

/// Withdraws the call: one not yet taken by a provider never runs; a
/// running one's result is discarded. The future then fails with
/// `DIME_STATUS_CANCELLED`. `DIME_STATUS_NOT_FOUND` if it had already
/// finished (its result stays readable).
#[unsafe(no_mangle)]
pub extern "C" fn dime_future_cancel(future: *mut dime_future) -> dime_status {
    ffi_status! {
        let f = check_arg!(ref future as dime_future);
        if f.outcome.is_none() && f.future.cancel() {
            Ok(())
        } else {
            Err(Fail::new(dime_status::NotFound, "the call has already finished"))
        }
    }
}

/// Releases a future. The call itself goes on if it has not finished (its
/// result is dropped). NULL is accepted and does nothing.
#[unsafe(no_mangle)]
pub extern "C" fn dime_future_free(future: *mut dime_future) {
    ffi_value!((), {
        if !future.is_null() {
            // SAFETY: the caller's contract: from dime_call, not used again.
            drop(unsafe { Box::from_raw(future) });
        }
    })
}

/// Moves a finished call's outcome into `f.outcome`.
fn settle(f: &mut dime_future) -> Result<(), Fail> {
    if f.outcome.is_some() {
        return Ok(());
    }
    let Some(result) = f.future.take() else {
        return Err(Fail::new(
            dime_status::Timeout,
            "the call has not finished yet",
        ));
    };
    f.outcome = Some(match result {
        Ok(buf) => match dimeb::decode_in(std::sync::Arc::new(buf)) {
            Ok(v) => Outcome::Value(v),
            Err(e) => {
                return Err(Fail::new(
                    dime_status::CodecError,
                    format!("the call's result cannot be decoded: {}", e.0),
                ));
            }
        },
        Err(error) => {
            let (t, m, tb) = match &error {
                CallError::Remote {
                    error_type,
                    message,
                    traceback,
                } => (error_type.clone(), message.clone(), traceback.clone()),
                other => (String::new(), other.to_string(), String::new()),
            };
            let c = |s: String| CString::new(s.replace('\0', "\\0")).unwrap_or_default();
            Outcome::Failed {
                error,
                texts: [c(t), c(m), c(tb)],
            }
        }
    });
    Ok(())
}

/// The status and message of a failed call.
pub(super) fn call_fail(e: &CallError) -> Fail {
    let status = match e {
        CallError::Remote { .. } => dime_status::RemoteError,
        CallError::ProviderLost(_) => dime_status::ProviderLost,
        CallError::NoProvider(_) => dime_status::NoProvider,
        CallError::Cancelled => dime_status::Cancelled,
        CallError::Connection(_) => dime_status::ConnectionLost,
        CallError::Refused(_) => dime_status::ServerError,
    };
    Fail::new(status, e.to_string())
}

/// Offers the function `function` to callers, running up to `capacity`
/// calls at once (0 counts as 1). Its calls arrive through
/// `dime_next_call`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_provide(
    client: *mut dime_client,
    function: *const c_char,
    capacity: u32,
) -> dime_status {
    ffi_status! {
        let handle = check_arg!(ref client as dime_client);
        let function = str_arg(function, "function")?;
        rpc_endpoint(handle)?.provide(function, capacity.max(1))?;
        Ok(())
    }
}

/// Stops offering `function`; calls already taken still run and may be
/// answered. `DIME_STATUS_SERVER_ERROR` if this client does not provide it.
#[unsafe(no_mangle)]
pub extern "C" fn dime_unprovide(client: *mut dime_client, function: *const c_char) -> dime_status {
    ffi_status! {
        let handle = check_arg!(ref client as dime_client);
        let function = str_arg(function, "function")?;
        rpc_endpoint(handle)?.unprovide(function)?;
        Ok(())
    }
}

/// Takes the next call of a function provided with `dime_provide`: writes
/// a new request to `*out`, owned by the caller (`dime_request_free`).
/// `DIME_STATUS_TIMEOUT` if none came within `timeout_ms`
/// (`DIME_WAIT_FOREVER`: no limit).
#[unsafe(no_mangle)]
pub extern "C" fn dime_next_call(
    client: *mut dime_client,
    timeout_ms: i64,
    out: *mut *mut dime_request,
) -> dime_status {
    ffi_status! {
        let handle = check_arg!(ref client as dime_client);
        check_arg!(out);
        let endpoint = rpc_endpoint(handle)?;
        let Some(call) = endpoint.next_call(timeout_arg(timeout_ms))? else {
            return Err(Fail::new(dime_status::Timeout, "no call came before the timeout"));
        };
        let request = make_request(call, endpoint)?;
        write_out(out, Box::into_raw(Box::new(request)));
        Ok(())
    }
}

/// Decodes an incoming call; one that cannot be decoded is answered with
/// an error at once.
fn make_request(call: IncomingCall, endpoint: Arc<Rpc>) -> Result<dime_request, Fail> {
    let args = match call.decode() {
        Ok(v) => v,
        Err(e) => {
            let msg = format!("the arguments cannot be decoded: {e}");
            let _ = endpoint.reply_error(call.id, "CodecError", &msg, "");
            return Err(Fail::new(dime_status::CodecError, msg));
        }
    };
    Ok(dime_request {
        function: CString::new(call.function.replace('\0', "\\0")).unwrap_or_default(),
        call,
        args,
        endpoint,
        answered: false,
    })
}

/// The name of the function called (borrowed, valid until
/// `dime_request_free`); NULL if `request` is NULL.
#[unsafe(no_mangle)]
pub extern "C" fn dime_request_function(request: *const dime_request) -> *const c_char {
    ffi_value!(std::ptr::null(), {
        if request.is_null() {
            return std::ptr::null();
        }
        // SAFETY: non-NULL; validity is the caller's contract.
        unsafe { &*request }.function.as_ptr()
    })
}

/// The call's arguments (borrowed, valid until `dime_request_free`); NULL
/// if `request` is NULL.
#[unsafe(no_mangle)]
pub extern "C" fn dime_request_args(request: *const dime_request) -> *const dime_value {
    ffi_value!(std::ptr::null(), {
        if request.is_null() {
            return std::ptr::null();
        }
        // SAFETY: non-NULL; validity is the caller's contract.
        as_raw(&unsafe { &*request }.args)
    })
}

/// Answers a call with `result` (borrowed; NULL means a null value). A
/// request is answered once: `DIME_STATUS_INVALID_ARGUMENT` after that.
/// The request must still be freed.
#[unsafe(no_mangle)]
pub extern "C" fn dime_reply(request: *mut dime_request, result: *const dime_value) -> dime_status {
    ffi_status! {
        let r = check_arg!(mut request as dime_request);
        let null = Value::Null;
        let result = if result.is_null() { &null } else { check_arg!(ref result as Value) };
        answer(r, |e, id| e.reply(id, result))
    }
}

/// Answers a call with an error: the caller's future fails with
/// `DIME_STATUS_REMOTE_ERROR`, and `dime_future_error` gives it
/// `error_type` (NULL: `"Error"`), `message` and `traceback` (NULL: empty).
#[unsafe(no_mangle)]
pub extern "C" fn dime_reply_error(
    request: *mut dime_request,
    error_type: *const c_char,
    message: *const c_char,
    traceback: *const c_char,
) -> dime_status {
    ffi_status! {
        let r = check_arg!(mut request as dime_request);
        let message = str_arg(message, "message")?;
        let error_type = if error_type.is_null() { "Error" } else { str_arg(error_type, "error_type")? };
        let traceback = if traceback.is_null() { "" } else { str_arg(traceback, "traceback")? };
        answer(r, |e, id| e.reply_error(id, error_type, message, traceback))
    }
}

pub(super) fn answer(
    r: &mut dime_request,
    send: impl FnOnce(&Rpc, u64) -> crate::client::Result<()>,
) -> Result<(), Fail> {
    if r.answered {
        return Err(Fail::invalid("this call was already answered"));
    }
    send(&r.endpoint, r.call.id)?;
    r.answered = true;
    Ok(())
}

impl Drop for dime_request {
    fn drop(&mut self) {
        if !self.answered {
            let _ = self.endpoint.reply_error(
                self.call.id,
                "Error",
                "the provider released the call without answering it",
                "",
            );
        }
    }
}

/// Releases a request, answering it with an error if it was not answered.
/// NULL is accepted and does nothing.
#[unsafe(no_mangle)]
pub extern "C" fn dime_request_free(request: *mut dime_request) {
    ffi_value!((), {
        if !request.is_null() {
            // SAFETY: the caller's contract: from dime_next_call, not used again.
            drop(unsafe { Box::from_raw(request) });
        }
    })
}

/// A provider callback: runs one call. `args` is borrowed for the call.
/// Return 0 and set `*result` to a value you own (the library takes and
/// frees it; leaving it NULL answers a null value), or return non-zero to
/// fail the call: then `*result`, if set to a string value, is the error
/// message (also taken and freed by the library).
#[allow(non_camel_case_types)]
pub type dime_call_fn = Option<
    extern "C" fn(
        userdata: *mut c_void,
        args: *const dime_value,
        result: *mut *mut dime_value,
    ) -> i32,
>;

/// Releases a provider callback's userdata once no worker uses it.
#[allow(non_camel_case_types)]
pub type dime_drop_fn = Option<extern "C" fn(userdata: *mut c_void)>;

/// What a callback provider runs for each call.
#[derive(Clone, Copy)]
pub(super) enum CallbackFn {
    /// A plain function: args in, result out.
    Call(extern "C" fn(*mut c_void, *const dime_value, *mut *mut dime_value) -> i32),
    /// A stream producer: sends items through the request (see `ffi::stream`).
    Stream(extern "C" fn(*mut c_void, *const dime_value, *mut dime_request) -> i32),
}

/// The callback, its userdata and its release, shared by the workers.
pub(super) struct Callback {
    call: CallbackFn,
    userdata: *mut c_void,
    drop: dime_drop_fn,
    /// Workers still running; the last one out calls `drop`.
    workers: AtomicUsize,
}

// SAFETY: the caller's contract (stated in dime_provide_callback's doc):
// the callback may be called from several library threads at once with
// this userdata.
unsafe impl Send for Callback {}
// SAFETY: as above.
unsafe impl Sync for Callback {}

/// Offers `function`, run by `workers` library threads (0 counts as 1),
/// each calling `callback(userdata, args, &result)` for one call at a
/// time. The callback must be safe to run on several threads at once when
/// `workers` > 1. The workers stop when the client is closed or freed;
/// then `drop(userdata)` is called once (if `drop` is not NULL), on a
/// worker thread.
#[unsafe(no_mangle)]
pub extern "C" fn dime_provide_callback(
    client: *mut dime_client,
    function: *const c_char,
    workers: u32,
    callback: dime_call_fn,
    userdata: *mut c_void,
    drop: dime_drop_fn,
) -> dime_status {
    ffi_status! {
        let Some(call) = callback else {
            return Err(Fail::null("callback"));
        };
        start_workers(client, function, workers, CallbackFn::Call(call), userdata, drop)
    }
}

/// Provides `function` through `workers` library threads running `call`.
pub(super) fn start_workers(
    client: *mut dime_client,
    function: *const c_char,
    workers: u32,
    call: CallbackFn,
    userdata: *mut c_void,
    drop: dime_drop_fn,
) -> Result<(), Fail> {
    let handle = check_arg!(ref client as dime_client);
    let function = str_arg(function, "function")?.to_owned();
    let workers = workers.max(1);
    let endpoint = rpc_endpoint(handle)?;
    endpoint.provide_own_queue(&function, workers)?;
    let cb = Arc::new(Callback {
        call,
        userdata,
        drop,
        workers: AtomicUsize::new(workers as usize),
    });
    for i in 0..workers {
        let (endpoint, worker_cb, function) = (endpoint.clone(), cb.clone(), function.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("dime-provide-{i}"))
            .spawn(move || run_worker(&endpoint, &worker_cb, &function));
        if spawned.is_err() {
            // Count the worker that never started as finished.
            finish_worker(&cb);
        }
    }
    Ok(())
}

/// One callback worker: serves calls until the endpoint closes.
fn run_worker(endpoint: &Arc<Rpc>, cb: &Callback, function: &str) {
    while let Ok(next) = endpoint.next_call_of(function, Some(Duration::from_secs(1))) {
        let Some(call) = next else { continue };
        let id = call.id;
        let call_fn = match cb.call {
            CallbackFn::Call(f) => f,
            CallbackFn::Stream(f) => {
                if run_stream(endpoint, cb.userdata, f, call).is_err() {
                    break;
                }
                continue;
            }
        };
        let Ok(args) = call.decode() else {
            let _ = endpoint.reply_error(id, "CodecError", "the arguments cannot be decoded", "");
            continue;
        };
        let mut result: *mut dime_value = std::ptr::null_mut();
        let rc = call_fn(cb.userdata, as_raw(&args), &mut result);
        let value = (!result.is_null()).then(|| from_raw(result));
        let sent = if rc == 0 {
            endpoint.reply(id, value.as_ref().unwrap_or(&Value::Null))
        } else {
            let msg = match &value {
                Some(Value::String(s)) => s.clone(),
                _ => format!("the provider's callback returned {rc}"),
            };
            endpoint.reply_error(id, "Error", &msg, "")
        };
        if sent.is_err() {
            break;
        }
    }
    finish_worker(cb);
}

/// Runs a stream callback for one call, then ends the stream: normally if
/// it returned 0 (and did not end it itself), with an error otherwise.
fn run_stream(
    endpoint: &Arc<Rpc>,
    userdata: *mut c_void,
    f: extern "C" fn(*mut c_void, *const dime_value, *mut dime_request) -> i32,
    call: IncomingCall,
) -> crate::client::Result<()> {
    let Ok(mut request) = make_request(call, endpoint.clone()) else {
        // Already answered with the decoding error.
        return Ok(());
    };
    let args = as_raw(&request.args);
    let rc = f(userdata, args, &mut request);
    if request.answered {
        return Ok(());
    }
    request.answered = true;
    let id = request.call.id;
    if rc == 0 {
        endpoint.stream_end(id)
    } else {
        endpoint.reply_error(
            id,
            "Error",
            &format!("the stream callback returned {rc}"),
            "",
        )
    }
}

fn finish_worker(cb: &Callback) {
    if cb.workers.fetch_sub(1, Ordering::AcqRel) == 1 {
        if let Some(d) = cb.drop {
            d(cb.userdata);
        }
    }
}
