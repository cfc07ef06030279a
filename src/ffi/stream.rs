//! Streams from C: a consumer opens one with `dime_stream_open` and reads
//! items with `dime_stream_next`; a provider answers a stream call (a
//! `dime_request` for which `dime_request_is_stream` is 1) with
//! `dime_stream_send` per item and `dime_stream_end`, in the pull form or
//! from a callback (`dime_provide_stream_callback`).

use super::args::{slice_arg, str_arg, timeout_arg, write_out};
use super::client::{dime_client, rpc_endpoint};
use super::rpc::{CallbackFn, answer, check_encoded, dime_drop_fn, dime_request, start_workers};
use super::status::{Fail, check_arg, dime_status, ffi_status, ffi_value};
use super::value::{dime_value, into_raw};
use crate::buffer::PooledBuf;
use crate::client::Error;
use crate::client::rpc::{CallError, Next, NextMany, StreamOptions, StreamReader};
use crate::codec::dimeb;
use crate::value::Value;
use std::ffi::{CString, c_char, c_void};

/// A stream being consumed, from `dime_stream_open`; release it with
/// `dime_stream_close` (which stops the producer if it has not ended).
#[allow(non_camel_case_types)]
pub struct dime_stream {
    reader: StreamReader,
    /// How it failed: the status, and for `dime_stream_error` the type,
    /// message and traceback.
    failure: Option<(dime_status, [CString; 3])>,
    /// The item `dime_stream_next_encoded` (or `dime_stream_next_many`,
    /// when it gave one) returned last, until the next call on the stream.
    current: Option<PooledBuf>,
    /// What `dime_stream_next_many` returned last, until the next call on
    /// the stream: the items' bytes one after another, and their lengths.
    many: Vec<u8>,
    lengths: Vec<usize>,
    /// The items taken for `many` (kept for its allocation).
    taken: Vec<PooledBuf>,
    /// Items and bytes `dime_stream_next_many` gave last: they count as
    /// read (their room goes back to the producer) at the next call.
    lent: (u64, u64),
}

/// Opens a stream from the generator `function` provides, called with
/// `args` (borrowed; NULL means a null value). `window_items` and
/// `window_bytes` bound how far the producer runs ahead of your reading (0
/// picks the default: 1024 items, 64 MiB); `timeout_ms` bounds the wait for
/// a provider (`DIME_WAIT_FOREVER`: no limit). On success writes a new
/// stream to `*out`, owned by the caller (`dime_stream_close`).
#[unsafe(no_mangle)]
pub extern "C" fn dime_stream_open(
    client: *mut dime_client,
    function: *const c_char,
    args: *const dime_value,
    window_items: u64,
    window_bytes: u64,
    timeout_ms: i64,
    out: *mut *mut dime_stream,
) -> dime_status {
    ffi_status! {
        let handle = check_arg!(ref client as dime_client);
        let function = str_arg(function, "function")?;
        check_arg!(out);
        let null = Value::Null;
        let args = if args.is_null() { &null } else { check_arg!(ref args as Value) };
        let default = StreamOptions::default();
        let window = StreamOptions {
            items: if window_items == 0 { default.items } else { window_items },
            bytes: if window_bytes == 0 { default.bytes } else { window_bytes },
        };
        let reader = rpc_endpoint(handle)?.open_stream(function, args, window, timeout_arg(timeout_ms))?;
        let s = dime_stream {
            reader,
            failure: None,
            current: None,
            many: Vec::new(),
            lengths: Vec::new(),
            taken: Vec::new(),
            lent: (0, 0),
        };
        write_out(out, Box::into_raw(Box::new(s)));
        Ok(())
    }
}

/// Reads the next item: writes a new value to `*out`, owned by the caller.
/// `DIME_STATUS_END_OF_STREAM` once the producer has ended (and on every
/// call after); `DIME_STATUS_TIMEOUT` if no item came within `timeout_ms`
/// (`DIME_WAIT_FOREVER`: no limit). If the stream failed, after the items
/// sent before the failure: `DIME_STATUS_REMOTE_ERROR` (the producer
/// raised; see `dime_stream_error`), `DIME_STATUS_PROVIDER_LOST`,
/// `DIME_STATUS_NO_PROVIDER`, `DIME_STATUS_CONNECTION_LOST` or
/// `DIME_STATUS_SERVER_ERROR`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_stream_next(
    stream: *mut dime_stream,
    timeout_ms: i64,
    out: *mut *mut dime_value,
) -> dime_status {
    ffi_status! {
        let s = check_arg!(mut stream as dime_stream);
        check_arg!(out);
        if let Some((status, [_, message, _])) = &s.failure {
            return Err(Fail::new(*status, message.to_string_lossy()));
        }
        s.current = None;
        let buf = next_item(s, timeout_ms)?;
        let v = dimeb::decode(&buf).map_err(|e| Fail::from(Error::Codec(e)))?;
        write_out(out, into_raw(v));
        Ok(())
    }
}

/// Like `dime_stream_next`, with the item given as its dimeb bytes
/// (docs/protocol.md §4), for bindings that decode small values faster
/// themselves: `*data` and `*len` are borrowed from the stream until the
/// next call on it; `dime_stream_item` decodes them instead.
#[unsafe(no_mangle)]
pub extern "C" fn dime_stream_next_encoded(
    stream: *mut dime_stream,
    timeout_ms: i64,
    data: *mut *const u8,
    len: *mut usize,
) -> dime_status {
    ffi_status! {
        let s = check_arg!(mut stream as dime_stream);
        check_arg!(data);
        check_arg!(len);
        s.current = None;
        let buf = next_item(s, timeout_ms)?;
        write_out(data, buf.as_ptr());
        write_out(len, buf.len());
        s.current = Some(buf);
        Ok(())
    }
}

/// Decodes the item `dime_stream_next_encoded` returned last into a new
/// value written to `*out`, owned by the caller (`dime_value_free`).
/// `DIME_STATUS_NOT_FOUND` if there is none.
#[unsafe(no_mangle)]
pub extern "C" fn dime_stream_item(
    stream: *const dime_stream,
    out: *mut *mut dime_value,
) -> dime_status {
    ffi_status! {
        let s = check_arg!(ref stream as dime_stream);
        check_arg!(out);
        let Some(buf) = &s.current else {
            return Err(Fail::new(dime_status::NotFound, "no item: call dime_stream_next_encoded first"));
        };
        let v = dimeb::decode(buf).map_err(|e| Fail::from(Error::Codec(e)))?;
        write_out(out, into_raw(v));
        Ok(())
    }
}

/// Reads every item already received, waiting for the first as
/// `dime_stream_next_encoded` does (with the same statuses): one call for
/// a whole batch of small items. Writes how many to `*count` (at least 1),
/// their dimeb bytes one after another to `*data`, and each one's length
/// to `(*lengths)[i]`, all borrowed from the stream until the next call
/// on it. The first item is given whatever its size; more only up to
/// `max_items` (0 counts as 1), while the bytes given stay within
/// `max_bytes`, and up to half the stream's window. The items count as
/// read (the producer may send more in their place) at the next call on
/// the stream, when you are done with them. When `*count` is 1,
/// `dime_stream_item` decodes the item.
#[unsafe(no_mangle)]
pub extern "C" fn dime_stream_next_many(
    stream: *mut dime_stream,
    timeout_ms: i64,
    max_items: usize,
    max_bytes: usize,
    data: *mut *const u8,
    lengths: *mut *const usize,
    count: *mut usize,
) -> dime_status {
    ffi_status! {
        let s = check_arg!(mut stream as dime_stream);
        check_arg!(data);
        check_arg!(lengths);
        check_arg!(count);
        if let Some((status, [_, message, _])) = &s.failure {
            return Err(Fail::new(*status, message.to_string_lossy()));
        }
        s.current = None;
        s.many.clear();
        s.lengths.clear();
        release_lent(s);
        let mut items = std::mem::take(&mut s.taken);
        items.clear();
        match s.reader.take_many(timeout_arg(timeout_ms), max_items.max(1), max_bytes, &mut items) {
            Ok(NextMany::Items(_)) => {}
            Ok(NextMany::End) => return Err(ended()),
            Ok(NextMany::Timeout) => return Err(timed_out()),
            Err(e) => return Err(failed(s, &e)),
        }
        s.lengths.extend(items.iter().map(|b| b.len()));
        if items.len() == 1 {
            // One item (perhaps a large one): lent as it is, not copied.
            let buf = items.pop().expect("one item");
            write_out(data, buf.as_ptr());
            s.current = Some(buf);
        } else {
            for b in items.drain(..) {
                s.many.extend_from_slice(&b);
            }
            write_out(data, s.many.as_ptr());
        }
        s.taken = items;
        s.lent = (s.lengths.len() as u64, s.lengths.iter().sum::<usize>() as u64);
        write_out(lengths, s.lengths.as_ptr());
        write_out(count, s.lengths.len());
        Ok(())
    }
}

/// The items `dime_stream_next_many` gave last have been read.
fn release_lent(s: &mut dime_stream) {
    let (items, bytes) = std::mem::take(&mut s.lent);
    s.reader.mark_read(items, bytes);
}

/// The next item's bytes, or the failure `dime_stream_next` reports.
fn next_item(s: &mut dime_stream, timeout_ms: i64) -> Result<PooledBuf, Fail> {
    if let Some((status, [_, message, _])) = &s.failure {
        return Err(Fail::new(*status, message.to_string_lossy()));
    }
    release_lent(s);
    match s.reader.next(timeout_arg(timeout_ms)) {
        Ok(Next::Item(buf)) => Ok(buf),
        Ok(Next::End) => Err(ended()),
        Ok(Next::Timeout) => Err(timed_out()),
        Err(e) => Err(failed(s, &e)),
    }
}

fn ended() -> Fail {
    Fail::new(dime_status::EndOfStream, "the stream has ended")
}

fn timed_out() -> Fail {
    Fail::new(dime_status::Timeout, "no item came before the timeout")
}

/// The stream failed with `e`: kept for `dime_stream_error` and every
/// later read.
fn failed(s: &mut dime_stream, e: &CallError) -> Fail {
    let fail = super::rpc::call_fail(e);
    let (t, tb) = match e {
        CallError::Remote {
            error_type,
            traceback,
            ..
        } => (error_type.clone(), traceback.clone()),
        _ => (String::new(), String::new()),
    };
    s.failure = Some((fail.status, [c(t), c(fail.message.clone()), c(tb)]));
    fail
}

fn c(s: String) -> CString {
    CString::new(s.replace('\0', "\\0")).unwrap_or_default()
}

/// How a failed stream failed: writes borrowed, NUL-terminated strings
/// (valid until `dime_stream_close`) to each non-NULL output: the
/// producer's error type (empty unless it raised), the message, and its
/// traceback. `DIME_STATUS_NOT_FOUND` if the stream has not failed.
#[unsafe(no_mangle)]
pub extern "C" fn dime_stream_error(
    stream: *const dime_stream,
    error_type: *mut *const c_char,
    message: *mut *const c_char,
    traceback: *mut *const c_char,
) -> dime_status {
    ffi_status! {
        let s = check_arg!(ref stream as dime_stream);
        let Some((_, texts)) = &s.failure else {
            return Err(Fail::new(dime_status::NotFound, "the stream has not failed"));
        };
        for (out, text) in [error_type, message, traceback].into_iter().zip(texts.iter()) {
            if !out.is_null() {
                write_out(out, text.as_ptr());
            }
        }
        Ok(())
    }
}

/// Closes a stream and frees it: a producer still running is stopped (its
/// next `dime_stream_send` returns `DIME_STATUS_CANCELLED`). NULL is
/// accepted and does nothing.
#[unsafe(no_mangle)]
pub extern "C" fn dime_stream_close(stream: *mut dime_stream) {
    ffi_value!((), {
        if !stream.is_null() {
            // SAFETY: the caller's contract: from dime_stream_open, not used again.
            drop(unsafe { Box::from_raw(stream) });
        }
    })
}

/// 1 if `request` is a stream call (answer it with `dime_stream_send` and
/// `dime_stream_end`), 0 for a plain call or NULL.
#[unsafe(no_mangle)]
pub extern "C" fn dime_request_is_stream(request: *const dime_request) -> i32 {
    ffi_value!(0, {
        if request.is_null() {
            return 0;
        }
        // SAFETY: non-NULL; validity is the caller's contract.
        i32::from(unsafe { &*request }.call.stream)
    })
}

/// Refuses an item for a plain call, or for a stream that has ended.
fn still_streaming(r: &dime_request) -> Result<(), Fail> {
    if !r.call.stream {
        return Err(Fail::invalid(
            "this is a plain call: answer it with dime_reply",
        ));
    }
    if r.answered.get() {
        return Err(Fail::invalid("this stream has already ended"));
    }
    Ok(())
}

/// An item's fate: sent, or refused because the consumer stopped.
fn sent(delivered: bool) -> Result<(), Fail> {
    if delivered {
        Ok(())
    } else {
        Err(Fail::new(
            dime_status::Cancelled,
            "the consumer stopped the stream",
        ))
    }
}

/// Sends the next item of a stream call (`item` borrowed; NULL means a null
/// value), waiting while the consumer's window is full. Returns
/// `DIME_STATUS_CANCELLED` once the consumer has stopped (closed the stream
/// early, or gone): stop producing and end the call. `DIME_STATUS_TIMEOUT`
/// if no room came within `timeout_ms` (`DIME_WAIT_FOREVER`: no limit).
#[unsafe(no_mangle)]
pub extern "C" fn dime_stream_send(
    request: *mut dime_request,
    item: *const dime_value,
    timeout_ms: i64,
) -> dime_status {
    ffi_status! {
        let r = check_arg!(ref request as dime_request);
        still_streaming(r)?;
        let null = Value::Null;
        let item = if item.is_null() { &null } else { check_arg!(ref item as Value) };
        sent(r.endpoint.stream_send_value(r.call.id, item, timeout_arg(timeout_ms))?)
    }
}

/// Like `dime_stream_send`, with the item given as dimeb bytes
/// (docs/protocol.md §4): `len` bytes at `item`, borrowed for the call,
/// which must hold exactly one value (`DIME_STATUS_INVALID_ARGUMENT`
/// otherwise).
#[unsafe(no_mangle)]
pub extern "C" fn dime_stream_send_encoded(
    request: *mut dime_request,
    item: *const c_void,
    len: usize,
    timeout_ms: i64,
) -> dime_status {
    ffi_status! {
        let r = check_arg!(ref request as dime_request);
        still_streaming(r)?;
        let bytes = slice_arg(item.cast::<u8>(), len, "item")?;
        check_encoded(bytes, "item")?;
        sent(r.endpoint.stream_send(r.call.id, bytes, timeout_arg(timeout_ms))?)
    }
}

/// Ends a stream call normally (the consumer's `dime_stream_next` then
/// returns `DIME_STATUS_END_OF_STREAM`); `dime_reply_error` ends it with an
/// error instead. The request must still be freed.
#[unsafe(no_mangle)]
pub extern "C" fn dime_stream_end(request: *mut dime_request) -> dime_status {
    ffi_status! {
        let r = check_arg!(mut request as dime_request);
        if !r.call.stream {
            return Err(Fail::invalid("this is a plain call: answer it with dime_reply"));
        }
        answer(r, |e, id| e.stream_end(id))
    }
}

/// A stream producer callback: sends items with `dime_stream_send(request,
/// …)` (stop when it returns `DIME_STATUS_CANCELLED`) and returns 0 to end
/// the stream normally, non-zero to end it with an error. `args` and
/// `request` are borrowed for the call; do not free them.
#[allow(non_camel_case_types)]
pub type dime_stream_fn = Option<
    extern "C" fn(
        userdata: *mut c_void,
        args: *const dime_value,
        request: *mut dime_request,
    ) -> i32,
>;

/// Offers the stream `function`, produced by `workers` library threads
/// (0 counts as 1), each running `callback(userdata, args, request)` for
/// one stream at a time; as `dime_provide_callback` otherwise (the
/// callback may run on several threads at once; `drop(userdata)` once
/// after the client closes).
#[unsafe(no_mangle)]
pub extern "C" fn dime_provide_stream_callback(
    client: *mut dime_client,
    function: *const c_char,
    workers: u32,
    callback: dime_stream_fn,
    userdata: *mut c_void,
    drop: dime_drop_fn,
) -> dime_status {
    ffi_status! {
        let Some(f) = callback else {
            return Err(Fail::null("callback"));
        };
        start_workers(client, function, workers, CallbackFn::Stream(f), userdata, drop)
    }
}
