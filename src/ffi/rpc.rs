//! Remote calls from C: `dime_call` and `dime_future_*` on the calling
//! side; `dime_provide` with `dime_next_call` / `dime_reply` (pull form) or
//! `dime_provide_callback` (library threads run a callback) on the
//! providing side.
//!
//! Remote calls travel on a second connection of the client, opened on
//! first use, with a reader thread of its own: calls never wait behind a
//! blocked `dime_wait` on the same client, and any thread may call, wait
//! and reply at once. A future may be waited on, looked at and cancelled
//! from several threads at once (a binding's caller thread and the thread
//! that resolves futures as they finish); only freeing it is exclusive.

use super::args::{slice_arg, str_arg, timeout_arg, write_out};
use super::client::{dime_client, rpc_endpoint};
use super::status::{Fail, check_arg, dime_status, ffi_status, ffi_value};
use super::value::{as_raw, dime_value, from_raw, into_raw};
use crate::buffer::PooledBuf;
use crate::client::rpc::{CallError, CallFuture, IncomingCall, Rpc};
use crate::codec::dimeb;
use crate::value::Value;
use std::cell::{Cell, OnceCell};
use std::ffi::{CString, c_char, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// A remote call in flight, from `dime_call`; release it with
/// `dime_future_free` (which does not cancel the call).
#[allow(non_camel_case_types)]
pub struct dime_future {
    future: CallFuture,
    /// The finished call's outcome once taken from the future. Behind a
    /// lock so that every function but `dime_future_free` may run on
    /// several threads at once; a `Failed` outcome is never replaced, so
    /// the strings `dime_future_error` lends stay put.
    outcome: Mutex<Option<Outcome>>,
}

impl dime_future {
    fn outcome(&self) -> MutexGuard<'_, Option<Outcome>> {
        self.outcome.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A finished call.
enum Outcome {
    /// The result as it came (dimeb), until `dime_future_result` decodes it.
    Encoded(PooledBuf),
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
    /// The decoded arguments, once asked for (set through a shared
    /// reference: `dime_request_args` takes a const request); None inside
    /// after `dime_request_take_args` moved them out.
    args: OnceCell<Option<Value>>,
    pub(super) endpoint: Arc<Rpc>,
    pub(super) answered: Cell<bool>,
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
        write_out(out, Box::into_raw(Box::new(dime_future { future, outcome: Mutex::new(None) })));
        Ok(())
    }
}

/// Like `dime_call`, with the arguments given as dimeb bytes
/// (docs/protocol.md §4): `len` bytes at `args`, borrowed for the call,
/// which must hold exactly one value (`DIME_STATUS_INVALID_ARGUMENT`
/// otherwise). For bindings that encode small values faster themselves.
#[unsafe(no_mangle)]
pub extern "C" fn dime_call_encoded(
    client: *mut dime_client,
    function: *const c_char,
    args: *const c_void,
    len: usize,
    timeout_ms: i64,
    out: *mut *mut dime_future,
) -> dime_status {
    ffi_status! {
        let handle = check_arg!(ref client as dime_client);
        let function = str_arg(function, "function")?;
        check_arg!(out);
        let bytes = slice_arg(args.cast::<u8>(), len, "args")?;
        check_encoded(bytes, "args")?;
        let endpoint = rpc_endpoint(handle)?;
        let future = endpoint.call_encoded(function, bytes, timeout_arg(timeout_ms))?;
        write_out(out, Box::into_raw(Box::new(dime_future { future, outcome: Mutex::new(None) })));
        Ok(())
    }
}

/// Refuses bytes that are not exactly one dimeb value.
pub(super) fn check_encoded(bytes: &[u8], what: &str) -> Result<(), Fail> {
    match dimeb::value_len(bytes) {
        Ok(n) if n == bytes.len() => Ok(()),
        Ok(n) => Err(Fail::invalid(format!(
            "argument '{what}' holds {} bytes after its value",
            bytes.len() - n
        ))),
        Err(e) => Err(Fail::invalid(format!(
            "argument '{what}' is not a dimeb value: {}",
            e.0
        ))),
    }
}

/// Waits until the call has finished (with a result or an error):
/// `DIME_STATUS_OK` when it has, `DIME_STATUS_TIMEOUT` if `timeout_ms`
/// passed first (`DIME_WAIT_FOREVER`: no limit; 0: just look).
#[unsafe(no_mangle)]
pub extern "C" fn dime_future_wait(future: *mut dime_future, timeout_ms: i64) -> dime_status {
    ffi_status! {
        let f = check_arg!(ref future as dime_future);
        // Once the outcome is taken the slot reads as finished too, so the
        // outcome lock is not needed (nor held while waiting).
        if f.future.wait(timeout_arg(timeout_ms)) {
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
        i32::from(f.future.is_done())
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
        let f = check_arg!(ref future as dime_future);
        check_arg!(out);
        let mut outcome = settle(f)?;
        if let Some(Outcome::Encoded(buf)) = &*outcome {
            let v = dimeb::decode(buf).map_err(|e| {
                Fail::new(
                    dime_status::CodecError,
                    format!("the call's result cannot be decoded: {}", e.0),
                )
            })?;
            *outcome = Some(Outcome::Value(v));
        }
        match outcome.as_mut().expect("settled") {
            Outcome::Encoded(_) => unreachable!("decoded above"),
            Outcome::Value(_) => {
                let Some(Outcome::Value(v)) = outcome.replace(Outcome::Taken) else {
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

/// Like `dime_future_result`, but lends the result as it came: its dimeb
/// bytes (docs/protocol.md §4), for bindings that decode small values
/// faster themselves. Writes a pointer to `len` bytes to `*data`, borrowed
/// until `dime_future_free` or `dime_future_result` (which may still be
/// called once to take the decoded value). Failures as for
/// `dime_future_result`; `DIME_STATUS_NOT_FOUND` once the value was taken.
#[unsafe(no_mangle)]
pub extern "C" fn dime_future_payload(
    future: *mut dime_future,
    data: *mut *const c_void,
    len: *mut usize,
) -> dime_status {
    ffi_status! {
        let f = check_arg!(ref future as dime_future);
        check_arg!(data);
        check_arg!(len);
        let outcome = settle(f)?;
        match outcome.as_ref().expect("settled") {
            Outcome::Encoded(buf) => {
                write_out(data, buf.as_ptr().cast());
                write_out(len, buf.len());
                Ok(())
            }
            Outcome::Failed { error, .. } => Err(call_fail(error)),
            Outcome::Value(_) | Outcome::Taken => Err(Fail::new(
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
        let f = check_arg!(ref future as dime_future);
        let outcome = settle(f)?;
        let Some(Outcome::Failed { texts, .. }) = &*outcome else {
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
        if f.outcome().is_none() && f.future.cancel() {
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

/// The id of the call, unique among the calls of its client; the number
/// `dime_next_completed` reports when it finishes. 0 if `future` is NULL.
#[unsafe(no_mangle)]
pub extern "C" fn dime_future_id(future: *const dime_future) -> u64 {
    ffi_value!(0, {
        if future.is_null() {
            return 0;
        }
        // SAFETY: non-NULL; validity is the caller's contract.
        unsafe { &*future }.future.id()
    })
}

/// Starts recording the calls of `client` that finish, for
/// `dime_next_completed`; calls that finished before are not recorded
/// (look at them with `dime_future_done`). Opens the remote-call
/// connection if it is not open yet. Calling it again does nothing.
#[unsafe(no_mangle)]
pub extern "C" fn dime_track_completions(client: *mut dime_client) -> dime_status {
    ffi_status! {
        let handle = check_arg!(ref client as dime_client);
        rpc_endpoint(handle)?.track_completions();
        Ok(())
    }
}

/// Writes to `*out` the id (`dime_future_id`) of the next call of
/// `client` to finish, in the order they finished, once
/// `dime_track_completions` was called; for a thread that resolves futures
/// as they finish. `DIME_STATUS_TIMEOUT` if none finished within
/// `timeout_ms` (`DIME_WAIT_FOREVER`: no limit); `DIME_STATUS_CONNECTION_LOST`
/// once the remote-call connection is gone and every finished call was
/// reported.
#[unsafe(no_mangle)]
pub extern "C" fn dime_next_completed(
    client: *mut dime_client,
    timeout_ms: i64,
    out: *mut u64,
) -> dime_status {
    ffi_status! {
        let handle = check_arg!(ref client as dime_client);
        check_arg!(out);
        let endpoint = rpc_endpoint(handle)?;
        let Some(id) = endpoint.next_completed(timeout_arg(timeout_ms))? else {
            return Err(Fail::new(dime_status::Timeout, "no call finished before the timeout"));
        };
        write_out(out, id);
        Ok(())
    }
}

/// Moves a finished call's outcome into `f.outcome`; the locked outcome.
fn settle(f: &dime_future) -> Result<MutexGuard<'_, Option<Outcome>>, Fail> {
    let mut outcome = f.outcome();
    if outcome.is_some() {
        return Ok(outcome);
    }
    let Some(result) = f.future.take() else {
        return Err(Fail::new(
            dime_status::Timeout,
            "the call has not finished yet",
        ));
    };
    *outcome = Some(match result {
        Ok(buf) => Outcome::Encoded(buf),
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
    Ok(outcome)
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
        let call = endpoint.next_call(timeout_arg(timeout_ms))?;
        hand_out(call, endpoint, out)
    }
}

/// Like `dime_provide`, but the calls of `function` wait in a queue of
/// their own, taken with `dime_next_call_of` (not `dime_next_call`): the
/// threads serving one function never take another function's calls, so
/// each function can have its own workers.
#[unsafe(no_mangle)]
pub extern "C" fn dime_provide_own_queue(
    client: *mut dime_client,
    function: *const c_char,
    capacity: u32,
) -> dime_status {
    ffi_status! {
        let handle = check_arg!(ref client as dime_client);
        let function = str_arg(function, "function")?;
        rpc_endpoint(handle)?.provide_own_queue(function, capacity.max(1))?;
        Ok(())
    }
}

/// Takes the next call of `function`, provided with
/// `dime_provide_own_queue`: writes a new request to `*out`, owned by the
/// caller (`dime_request_free`). `DIME_STATUS_TIMEOUT` if none came within
/// `timeout_ms` (`DIME_WAIT_FOREVER`: no limit).
#[unsafe(no_mangle)]
pub extern "C" fn dime_next_call_of(
    client: *mut dime_client,
    function: *const c_char,
    timeout_ms: i64,
    out: *mut *mut dime_request,
) -> dime_status {
    ffi_status! {
        let handle = check_arg!(ref client as dime_client);
        let function = str_arg(function, "function")?;
        check_arg!(out);
        let endpoint = rpc_endpoint(handle)?;
        let call = endpoint.next_call_of(function, timeout_arg(timeout_ms))?;
        hand_out(call, endpoint, out)
    }
}

/// Writes the request for `call` to `*out`, or says why there is none.
fn hand_out(
    call: Option<IncomingCall>,
    endpoint: Arc<Rpc>,
    out: *mut *mut dime_request,
) -> Result<(), Fail> {
    let Some(call) = call else {
        return Err(Fail::new(
            dime_status::Timeout,
            "no call came before the timeout",
        ));
    };
    let request = make_request(call, endpoint)?;
    write_out(out, Box::into_raw(Box::new(request)));
    Ok(())
}

/// A request for an incoming call; its arguments are decoded when asked for.
fn make_request(call: IncomingCall, endpoint: Arc<Rpc>) -> Result<dime_request, Fail> {
    Ok(dime_request {
        function: CString::new(call.function.replace('\0', "\\0")).unwrap_or_default(),
        call,
        args: OnceCell::new(),
        endpoint,
        answered: Cell::new(false),
    })
}

/// The request's arguments, decoded on first use (None: taken); arguments
/// that cannot be decoded answer the call with an error at once.
fn decode_args(r: &dime_request) -> Result<&Option<Value>, Fail> {
    if let Some(args) = r.args.get() {
        return Ok(args);
    }
    match r.call.decode() {
        Ok(v) => Ok(r.args.get_or_init(|| Some(v))),
        Err(e) => {
            let msg = format!("the arguments cannot be decoded: {e}");
            if !r.answered.replace(true) {
                let _ = r.endpoint.reply_error(r.call.id, "CodecError", &msg, "");
            }
            Err(Fail::new(dime_status::CodecError, msg))
        }
    }
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
/// if `request` is NULL, its arguments were taken with
/// `dime_request_take_args`, or they cannot be decoded (the call is then
/// answered with an error; `dime_last_error()` says why).
#[unsafe(no_mangle)]
pub extern "C" fn dime_request_args(request: *const dime_request) -> *const dime_value {
    ffi_value!(std::ptr::null(), {
        if request.is_null() {
            return std::ptr::null();
        }
        // SAFETY: non-NULL; validity is the caller's contract.
        match decode_args(unsafe { &*request }) {
            Ok(args) => args.as_ref().map_or(std::ptr::null(), as_raw),
            Err(f) => {
                super::status::set_last_error(&f.message, 0);
                std::ptr::null()
            }
        }
    })
}

/// Moves the call's arguments out of the request: writes them to `*out`,
/// owned by the caller (`dime_value_free`), so their matrices can be taken
/// without copying (`dime_matrix_take_data`). The request can still be
/// answered. `DIME_STATUS_NOT_FOUND` if they were already taken;
/// `DIME_STATUS_CODEC_ERROR` if they cannot be decoded (the call is then
/// answered with an error).
#[unsafe(no_mangle)]
pub extern "C" fn dime_request_take_args(
    request: *mut dime_request,
    out: *mut *mut dime_value,
) -> dime_status {
    ffi_status! {
        let r = check_arg!(mut request as dime_request);
        check_arg!(out);
        decode_args(r)?;
        let Some(args) = r.args.get_mut().and_then(Option::take) else {
            return Err(Fail::new(dime_status::NotFound, "the arguments were already taken"));
        };
        // The encoded copy is not needed any more: back to the pool now.
        r.call.args = PooledBuf::default();
        write_out(out, into_raw(args));
        Ok(())
    }
}

/// Lends the call's arguments as they came: their dimeb bytes
/// (docs/protocol.md §4), for bindings that decode small values faster
/// themselves. Writes a pointer to `len` bytes to `*data`, borrowed until
/// `dime_request_free`. `DIME_STATUS_NOT_FOUND` once the arguments were
/// decoded (`dime_request_args`, `dime_request_take_args`).
#[unsafe(no_mangle)]
pub extern "C" fn dime_request_payload(
    request: *const dime_request,
    data: *mut *const c_void,
    len: *mut usize,
) -> dime_status {
    ffi_status! {
        let r = check_arg!(ref request as dime_request);
        check_arg!(data);
        check_arg!(len);
        if r.args.get().is_some() {
            return Err(Fail::new(dime_status::NotFound, "the arguments were already decoded"));
        }
        write_out(data, r.call.args.as_ptr().cast());
        write_out(len, r.call.args.len());
        Ok(())
    }
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

/// Like `dime_reply`, with the result given as dimeb bytes
/// (docs/protocol.md §4): `len` bytes at `result`, borrowed for the call,
/// which must hold exactly one value (`DIME_STATUS_INVALID_ARGUMENT`
/// otherwise).
#[unsafe(no_mangle)]
pub extern "C" fn dime_reply_encoded(
    request: *mut dime_request,
    result: *const c_void,
    len: usize,
) -> dime_status {
    ffi_status! {
        let r = check_arg!(mut request as dime_request);
        let bytes = slice_arg(result.cast::<u8>(), len, "result")?;
        check_encoded(bytes, "result")?;
        answer(r, |e, id| e.reply_encoded(id, bytes))
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
    if r.answered.get() {
        return Err(Fail::invalid("this call was already answered"));
    }
    send(&r.endpoint, r.call.id)?;
    r.answered.set(true);
    Ok(())
}

impl Drop for dime_request {
    fn drop(&mut self) {
        if !self.answered.get() {
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
        return Ok(());
    };
    let args = match decode_args(&request) {
        Ok(args) => args.as_ref().map_or(std::ptr::null(), as_raw),
        // Already answered with the decoding error.
        Err(_) => return Ok(()),
    };
    let rc = f(userdata, args, &mut request);
    if request.answered.replace(true) {
        return Ok(());
    }
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
