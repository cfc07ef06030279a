//! Remote calls from the client side: an [`Rpc`] endpoint calls functions
//! that other clients provide, and provides functions of its own.
//!
//! An endpoint owns one connection to the broker and a reader thread. Calls
//! are written and left in flight; the reader thread routes what comes back:
//! results to their [`CallFuture`]s, calls for this endpoint's functions to
//! the queue [`Rpc::next_call`] takes from, and replies to acknowledged
//! commands (`provide`, `ping`) to whoever waits for them. So any number of
//! threads may call, wait and reply at once, and a long call never holds up
//! the others.

use crate::buffer::PooledBuf;
use crate::codec::dimeb;
use crate::proto::extensions;
use crate::transport::Address;
use crate::transport::split::{self, SplitReader, SplitWriter};
use crate::value::Value;
use crate::wire::{Frame, FrameReader, try_encode_head};
use rustc_hash::FxHashMap;
use serde_json::{Map, Value as Json, json};
use std::collections::VecDeque;
use std::fmt;
use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::stream;
pub use super::stream::{Next, StreamOptions};
use super::{Error, Result, encode_pooled};

/// Why a call produced no result.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    /// The provider's function raised an error.
    Remote {
        /// The error's type name on the provider (e.g. `ValueError`).
        error_type: String,
        /// Its message.
        message: String,
        /// The provider's traceback, as text (may be empty).
        traceback: String,
    },
    /// The provider went away while running the call.
    ProviderLost(String),
    /// No provider took the call before its timeout.
    NoProvider(String),
    /// The caller cancelled the call.
    Cancelled,
    /// The connection to the broker broke, or the broker went silent.
    Connection(String),
    /// The broker refused the call (bad arguments, unsupported).
    Refused(String),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Remote {
                error_type,
                message,
                ..
            } => write!(f, "{error_type}: {message}"),
            CallError::ProviderLost(m)
            | CallError::NoProvider(m)
            | CallError::Connection(m)
            | CallError::Refused(m) => f.write_str(m),
            CallError::Cancelled => f.write_str("the call was cancelled"),
        }
    }
}

impl std::error::Error for CallError {}

/// How a call ended: its encoded result, or why there is none.
pub type CallResult = std::result::Result<PooledBuf, CallError>;

/// Endpoint settings.
#[derive(Debug, Clone, Default)]
pub struct RpcOptions {
    /// Most calls in flight at once; [`Rpc::call`] waits for room. None: no cap.
    pub max_in_flight: Option<usize>,
    /// Declare the broker dead when it has sent nothing for this long while
    /// calls are in flight (pings are sent after half of it). None: never.
    pub maxage: Option<Duration>,
    /// Keep retrying to connect until then while nothing listens yet.
    pub retry_until: Option<Instant>,
    /// Raise an error of a dropped, unread future at the next call.
    pub raise_dropped_errors: bool,
    /// The token to present and how to check a `tls:` broker. The default
    /// is none and the system's CAs; `ConnectOptions::from_env()` takes
    /// them from `DIME_TOKEN` and `DIME_TLS_*` as `Client::connect` does
    /// (the C ABI passes its client's options).
    pub connect: super::ConnectOptions,
}

/// A call this endpoint was asked to run.
#[derive(Debug)]
pub struct IncomingCall {
    /// The broker's id of the call, to answer with [`Rpc::reply`].
    pub id: u64,
    /// The function's name.
    pub function: String,
    /// The encoded arguments.
    pub args: PooledBuf,
    /// True for a stream: answer with [`Rpc::stream_send`] for each item
    /// and [`Rpc::stream_end`] (or [`Rpc::reply_error`]) at the end.
    pub stream: bool,
}

impl IncomingCall {
    /// Decodes the arguments.
    pub fn decode(&self) -> Result<Value> {
        Ok(dimeb::decode(&self.args)?)
    }
}

enum SlotState {
    Pending,
    Done(CallResult),
    Taken,
}

struct Slot {
    state: Mutex<SlotState>,
    done: Condvar,
    /// The future was dropped: an error result goes to `unread_errors`.
    dropped: std::sync::atomic::AtomicBool,
}

/// A reply awaited by a thread that wrote an acknowledged command.
struct Ack {
    reply: Mutex<Option<Result<Map<String, Json>>>>,
    done: Condvar,
}

struct Inner {
    pending: FxHashMap<u64, Arc<Slot>>,
    acks: VecDeque<Arc<Ack>>,
    /// Calls for functions served through `next_call`.
    incoming: VecDeque<IncomingCall>,
    /// Calls for functions with their own queue (see `route_to_own_queue`).
    own_queues: FxHashMap<String, VecDeque<IncomingCall>>,
    /// Why the endpoint is closed, once it is.
    closed: Option<String>,
    /// Errors of futures dropped unread, raised at the next call.
    unread_errors: VecDeque<CallError>,
    /// Ids of finished calls, when someone asked to be told.
    completed: Option<VecDeque<u64>>,
    /// When the broker last sent anything, or the first call went out.
    last_heard: Instant,
    ping_out: bool,
    /// Streams this endpoint consumes, by the caller's id.
    streams: FxHashMap<u64, Arc<stream::Consumer>>,
    /// Calls this endpoint runs and has not answered yet, by the broker's
    /// id: whether the caller gave up, and a stream's window.
    running: FxHashMap<u64, Arc<stream::Producer>>,
}

struct Shared {
    writer: Mutex<SplitWriter>,
    inner: Mutex<Inner>,
    /// Signalled on new incoming calls, on completions (for `completed`
    /// and room under `max_in_flight`) and on close.
    changed: Condvar,
    next_id: AtomicU64,
    options: RpcOptions,
    /// Why streams cannot be opened, when the broker does not announce them.
    streams_unsupported: Option<String>,
}

/// An endpoint for remote calls: one connection to the broker with a
/// reader thread.
pub struct Rpc {
    shared: Arc<Shared>,
    reader: Mutex<Option<JoinHandle<()>>>,
}

/// A call in flight: wait for it, then take its result.
pub struct CallFuture {
    id: u64,
    slot: Arc<Slot>,
    shared: Arc<Shared>,
}

/// Frames up to this size are written with one copy into one buffer
/// rather than two writes.
const COALESCE: usize = 16 << 10;

impl Rpc {
    /// Connects to the broker at `address` and handshakes.
    pub fn connect(address: &str, options: RpcOptions) -> Result<Rpc> {
        let addr = Address::parse(address).map_err(Error::InvalidArgument)?;
        Rpc::connect_to(&addr, options)
    }

    /// Connects to a parsed address and handshakes.
    pub fn connect_to(addr: &Address, options: RpcOptions) -> Result<Rpc> {
        let (mut read_sock, sock) = loop {
            match split::open(addr, &options.connect.tls) {
                Ok(s) => break s,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                    ) && options.retry_until.is_some_and(|t| Instant::now() < t) =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(Error::ConnectionLost(e.to_string())),
            }
        };
        let mut reader = FrameReader::new(u64::MAX);
        write_frame(&sock, &options.connect.handshake(), &[])?;
        let (hs, _) = read_one(&mut reader, &mut read_sock)?;
        let hs = super::check_status(hs)?;
        let extensions = super::announced_extensions(&hs)?;
        super::require(extensions.as_deref(), extensions::RPC, "remote calls")?;
        let streams_unsupported =
            super::require(extensions.as_deref(), extensions::STREAM, "streams")
                .err()
                .map(|e| e.to_string());
        if let Some(maxage) = options.maxage {
            read_sock.set_read_timeout(Some((maxage / 4).max(Duration::from_millis(5))))?;
        }
        let shared = Arc::new(Shared {
            writer: Mutex::new(sock),
            inner: Mutex::new(Inner {
                pending: FxHashMap::default(),
                acks: VecDeque::new(),
                incoming: VecDeque::new(),
                own_queues: FxHashMap::default(),
                closed: None,
                unread_errors: VecDeque::new(),
                completed: None,
                last_heard: Instant::now(),
                ping_out: false,
                streams: FxHashMap::default(),
                running: FxHashMap::default(),
            }),
            changed: Condvar::new(),
            next_id: AtomicU64::new(1),
            options,
            streams_unsupported,
        });
        let s = shared.clone();
        let reader = std::thread::Builder::new()
            .name("dime-rpc-reader".into())
            .spawn(move || read_loop(&s, reader, read_sock))
            .map_err(|e| Error::ConnectionLost(format!("cannot start the reader thread: {e}")))?;
        Ok(Rpc {
            shared,
            reader: Mutex::new(Some(reader)),
        })
    }

    /// Calls `function` with `args`; `timeout` bounds the wait for a
    /// provider (None: wait as long as it takes).
    pub fn call(
        &self,
        function: &str,
        args: &Value,
        timeout: Option<Duration>,
    ) -> Result<CallFuture> {
        let payload = encode_pooled(args).map_err(|e| Error::InvalidArgument(e.0))?;
        self.call_encoded(function, &payload, timeout)
    }

    /// Calls `function` with already-encoded dimeb arguments (no copy).
    pub fn call_encoded(
        &self,
        function: &str,
        args: &[u8],
        timeout: Option<Duration>,
    ) -> Result<CallFuture> {
        let sh = &self.shared;
        let mut inner = sh.lock();
        if sh.options.raise_dropped_errors {
            if let Some(e) = inner.unread_errors.pop_front() {
                return Err(Error::Server(format!(
                    "an earlier call whose result was never read failed: {e}"
                )));
            }
        }
        if let Some(cap) = sh.options.max_in_flight {
            while inner.pending.len() >= cap.max(1) && inner.closed.is_none() {
                inner = sh.changed.wait(inner).unwrap_or_else(|p| p.into_inner());
            }
        }
        if let Some(why) = &inner.closed {
            return Err(Error::ConnectionLost(why.clone()));
        }
        let id = sh.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            state: Mutex::new(SlotState::Pending),
            done: Condvar::new(),
            dropped: Default::default(),
        });
        if inner.pending.is_empty() {
            inner.last_heard = Instant::now();
        }
        inner.pending.insert(id, slot.clone());
        drop(inner);
        let mut head = json!({"command": "call", "function": function, "id": id});
        if let Some(t) = timeout {
            head["timeout"] = json!(t.as_secs_f64() * 1000.0);
        }
        if let Err(e) = sh.write(&head, args) {
            sh.lock().pending.remove(&id);
            return Err(e);
        }
        Ok(CallFuture {
            id,
            slot,
            shared: sh.clone(),
        })
    }

    /// Offers `function` to callers, running up to `capacity` calls of it
    /// at once. Its calls arrive through [`Rpc::next_call`].
    pub fn provide(&self, function: &str, capacity: u32) -> Result<()> {
        self.shared.lock().own_queues.remove(function);
        self.shared
            .request(&json!({"command": "provide", "function": function, "capacity": capacity}))
            .map(drop)
    }

    /// Like [`Rpc::provide`], but calls of `function` go to a queue of their
    /// own, taken with [`Rpc::next_call_of`] (library worker threads that
    /// serve one function each).
    pub fn provide_own_queue(&self, function: &str, capacity: u32) -> Result<()> {
        self.shared
            .lock()
            .own_queues
            .entry(function.to_owned())
            .or_default();
        self.shared
            .request(&json!({"command": "provide", "function": function, "capacity": capacity}))
            .map(drop)
    }

    /// Stops offering `function`; calls already handed over still run.
    pub fn unprovide(&self, function: &str) -> Result<()> {
        self.shared
            .request(&json!({"command": "unprovide", "function": function}))
            .map(drop)
    }

    /// The next call for a function provided with [`Rpc::provide`]; None
    /// when `timeout` passes first.
    pub fn next_call(&self, timeout: Option<Duration>) -> Result<Option<IncomingCall>> {
        self.shared.take_call(None, timeout)
    }

    /// The next call of `function` (provided with
    /// [`Rpc::provide_own_queue`]); None when `timeout` passes first.
    pub fn next_call_of(
        &self,
        function: &str,
        timeout: Option<Duration>,
    ) -> Result<Option<IncomingCall>> {
        self.shared.take_call(Some(function), timeout)
    }

    /// Answers call `id` with an encoded result.
    pub fn reply_encoded(&self, id: u64, result: &[u8]) -> Result<()> {
        self.shared.lock().running.remove(&id);
        self.shared
            .write(&json!({"command": "return", "call": id}), result)
    }

    /// Answers call `id` with a value.
    pub fn reply(&self, id: u64, result: &Value) -> Result<()> {
        let payload = encode_pooled(result).map_err(|e| Error::InvalidArgument(e.0))?;
        self.reply_encoded(id, &payload)
    }

    /// Answers call `id` with an error, which the caller sees as
    /// [`CallError::Remote`].
    pub fn reply_error(
        &self,
        id: u64,
        error_type: &str,
        message: &str,
        traceback: &str,
    ) -> Result<()> {
        self.shared.lock().running.remove(&id);
        self.shared.write(
            &json!({"command": "return", "call": id, "error": message,
                "error_type": error_type, "traceback": traceback}),
            &[],
        )
    }

    /// Opens a stream from the generator `function` provides, with `args`;
    /// `timeout` bounds the wait for a provider. Items arrive as the
    /// producer makes them, at most `window` ahead of the reader.
    pub fn open_stream(
        &self,
        function: &str,
        args: &Value,
        window: StreamOptions,
        timeout: Option<Duration>,
    ) -> Result<StreamReader> {
        let payload = encode_pooled(args).map_err(|e| Error::InvalidArgument(e.0))?;
        self.open_stream_encoded(function, &payload, window, timeout)
    }

    /// [`Rpc::open_stream`] with already-encoded arguments.
    pub fn open_stream_encoded(
        &self,
        function: &str,
        args: &[u8],
        window: StreamOptions,
        timeout: Option<Duration>,
    ) -> Result<StreamReader> {
        if window.items == 0 || window.bytes == 0 {
            return Err(Error::InvalidArgument(
                "a stream's window needs at least 1 item and 1 byte".into(),
            ));
        }
        let sh = &self.shared;
        if let Some(m) = &sh.streams_unsupported {
            return Err(Error::Unsupported(m.clone()));
        }
        let id = sh.next_id.fetch_add(1, Ordering::Relaxed);
        let consumer = Arc::new(stream::Consumer::new(window));
        {
            let mut inner = sh.lock();
            if let Some(why) = &inner.closed {
                return Err(Error::ConnectionLost(why.clone()));
            }
            if inner.pending.is_empty() && inner.streams.is_empty() {
                inner.last_heard = Instant::now();
            }
            inner.streams.insert(id, consumer.clone());
        }
        let mut head = json!({"command": "call", "function": function, "id": id,
            "stream": true, "items": window.items, "bytes": window.bytes});
        if let Some(t) = timeout {
            head["timeout"] = json!(t.as_secs_f64() * 1000.0);
        }
        if let Err(e) = sh.write(&head, args) {
            sh.lock().streams.remove(&id);
            return Err(e);
        }
        Ok(StreamReader {
            id,
            consumer,
            shared: sh.clone(),
            done: false,
        })
    }

    /// Sends the next item of stream call `id`, waiting while the
    /// consumer's window is full. Ok(false) when the consumer has gone
    /// (stopped early, cancelled or disconnected): stop producing.
    /// `Error::Timeout` if no room came within `timeout`.
    pub fn stream_send(&self, id: u64, item: &[u8], timeout: Option<Duration>) -> Result<bool> {
        let producer = self.shared.lock().running.get(&id).cloned();
        let Some(p) = producer else {
            return Ok(false);
        };
        let mut timed_out = false;
        if !p.take_room(item.len(), timeout, &mut timed_out) {
            return if timed_out {
                Err(Error::Timeout)
            } else {
                Ok(false)
            };
        }
        self.shared
            .write(&json!({"command": "yield", "call": id}), item)?;
        Ok(true)
    }

    /// Sends the next item of stream call `id` as a value (see
    /// [`Rpc::stream_send`]).
    pub fn stream_send_value(
        &self,
        id: u64,
        item: &Value,
        timeout: Option<Duration>,
    ) -> Result<bool> {
        let payload = encode_pooled(item).map_err(|e| Error::InvalidArgument(e.0))?;
        self.stream_send(id, &payload, timeout)
    }

    /// Ends stream call `id` normally.
    pub fn stream_end(&self, id: u64) -> Result<()> {
        self.reply_encoded(id, &[])
    }

    /// True once the caller of running call `id` gave up on it (a plain
    /// call not yet started can then be skipped; a stream must stop).
    pub fn is_cancelled(&self, id: u64) -> bool {
        self.shared
            .lock()
            .running
            .get(&id)
            .is_none_or(|p| p.is_cancelled())
    }

    /// A round trip to the broker.
    pub fn ping(&self) -> Result<Duration> {
        let t = Instant::now();
        self.shared.request(&json!({"command": "ping"}))?;
        Ok(t.elapsed())
    }

    /// Starts recording finished calls for [`Rpc::next_completed`].
    pub fn track_completions(&self) {
        self.shared
            .lock()
            .completed
            .get_or_insert_with(VecDeque::new);
    }

    /// The id of the next call to finish (see
    /// [`Rpc::track_completions`]); None when `timeout` passes first.
    pub fn next_completed(&self, timeout: Option<Duration>) -> Result<Option<u64>> {
        let sh = &self.shared;
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut inner = sh.lock();
        loop {
            if let Some(id) = inner.completed.as_mut().and_then(VecDeque::pop_front) {
                return Ok(Some(id));
            }
            if let Some(why) = &inner.closed {
                return Err(Error::ConnectionLost(why.clone()));
            }
            inner = match sh.wait_until(inner, deadline) {
                Some(g) => g,
                None => return Ok(None),
            };
        }
    }

    /// Calls in flight.
    pub fn in_flight(&self) -> usize {
        self.shared.lock().pending.len()
    }

    /// Closes the connection: calls in flight fail, waiters wake.
    pub fn close(&self) {
        let _ = self.shared.writer().shutdown();
        let handle = self.reader.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    /// True once the connection is closed.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed.is_some()
    }
}

impl Drop for Rpc {
    fn drop(&mut self) {
        self.close();
    }
}

/// A stream being consumed: read items with [`StreamReader::next`]; drop
/// or [`StreamReader::close`] it to stop the producer early.
pub struct StreamReader {
    id: u64,
    consumer: Arc<stream::Consumer>,
    shared: Arc<Shared>,
    /// Ended, failed or closed: nothing more to read or to cancel.
    done: bool,
}

impl StreamReader {
    /// The next item (or the end, or a timeout). The producer's error, or
    /// the loss of the producer, ends the stream with an `Err` after the
    /// items sent before it.
    pub fn next(&mut self, timeout: Option<Duration>) -> std::result::Result<Next, CallError> {
        if self.done {
            return Ok(Next::End);
        }
        let r = self.consumer.next(timeout);
        match &r {
            Ok((_, Some((items, bytes)))) => {
                // Best effort: a broken connection ends the stream anyway.
                let _ = self.shared.write(
                    &json!({"command": "credit", "id": self.id, "items": items, "bytes": bytes}),
                    &[],
                );
            }
            Ok((Next::End, _)) | Err(_) => self.done = true,
            _ => {}
        }
        r.map(|(n, _)| n)
    }

    /// Decodes the next item: Ok(None) at the end.
    pub fn next_value(&mut self, timeout: Option<Duration>) -> Result<Option<Value>> {
        match self.next(timeout) {
            Ok(Next::Item(b)) => Ok(Some(dimeb::decode(&b)?)),
            Ok(Next::End) => Ok(None),
            Ok(Next::Timeout) => Err(Error::Timeout),
            Err(e) => Err(Error::Server(e.to_string())),
        }
    }

    /// Stops the stream: the producer's generator is closed at its next
    /// item. Items already received are dropped.
    pub fn close(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        let was_open = self.shared.lock().streams.remove(&self.id).is_some();
        if was_open {
            let _ = self
                .shared
                .write(&json!({"command": "cancel", "id": self.id}), &[]);
        }
    }

    /// True once the stream ended and every item was read.
    pub fn is_finished(&self) -> bool {
        self.done || self.consumer.is_finished()
    }
}

impl Drop for StreamReader {
    fn drop(&mut self) {
        self.close();
    }
}

impl CallFuture {
    /// The caller's id of the call.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Waits until the call has finished; false if `timeout` passed first.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = self.slot.lock();
        loop {
            if !matches!(*st, SlotState::Pending) {
                return true;
            }
            st = match deadline {
                None => self.slot.done.wait(st).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return false;
                    }
                    self.slot
                        .done
                        .wait_timeout(st, d - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }

    /// True once the call has finished.
    pub fn is_done(&self) -> bool {
        !matches!(*self.slot.lock(), SlotState::Pending)
    }

    /// Takes the result of a finished call: None while it runs, and after
    /// the result was taken.
    pub fn take(&self) -> Option<CallResult> {
        let mut st = self.slot.lock();
        match std::mem::replace(&mut *st, SlotState::Taken) {
            SlotState::Done(r) => Some(r),
            other => {
                *st = other;
                None
            }
        }
    }

    /// Waits for the result and decodes it.
    pub fn result(
        &self,
        timeout: Option<Duration>,
    ) -> Result<std::result::Result<Value, CallError>> {
        if !self.wait(timeout) {
            return Err(Error::Timeout);
        }
        match self.take() {
            Some(Ok(buf)) => Ok(Ok(dimeb::decode(&buf)?)),
            Some(Err(e)) => Ok(Err(e)),
            None => Err(Error::InvalidArgument(
                "the result was already taken".into(),
            )),
        }
    }

    /// Withdraws the call: a queued call never runs, a running one's result
    /// is discarded. False if it had already finished.
    pub fn cancel(&self) -> bool {
        {
            let mut st = self.slot.lock();
            if !matches!(*st, SlotState::Pending) {
                return false;
            }
            *st = SlotState::Done(Err(CallError::Cancelled));
        }
        self.slot.done.notify_all();
        let sh = &self.shared;
        let removed = sh.lock().pending.remove(&self.id).is_some();
        if removed {
            sh.changed.notify_all();
            // Best effort: if the connection is gone there is nothing to withdraw.
            let _ = sh.write(&json!({"command": "cancel", "id": self.id}), &[]);
        }
        true
    }
}

impl Drop for CallFuture {
    fn drop(&mut self) {
        let st = self.slot.lock();
        match &*st {
            SlotState::Done(Err(e)) if !matches!(e, CallError::Cancelled) => {
                let e = e.clone();
                drop(st);
                if self.shared.options.raise_dropped_errors {
                    self.shared.lock().unread_errors.push_back(e);
                }
            }
            SlotState::Pending => self.slot.dropped.store(true, Ordering::SeqCst),
            _ => {}
        }
    }
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn writer(&self) -> MutexGuard<'_, SplitWriter> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits on `changed` until `deadline`; None once it has passed.
    fn wait_until<'a>(
        &self,
        g: MutexGuard<'a, Inner>,
        deadline: Option<Instant>,
    ) -> Option<MutexGuard<'a, Inner>> {
        match deadline {
            None => Some(self.changed.wait(g).unwrap_or_else(|p| p.into_inner())),
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    return None;
                }
                Some(
                    self.changed
                        .wait_timeout(g, d - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0,
                )
            }
        }
    }

    fn write(&self, head: &Json, payload: &[u8]) -> Result<()> {
        let w = self.writer();
        write_frame(&w, head, payload).inspect_err(|_| {
            let _ = w.shutdown();
        })
    }

    /// Writes an acknowledged command and waits for its reply.
    fn request(&self, head: &Json) -> Result<Map<String, Json>> {
        let ack = Arc::new(Ack {
            reply: Mutex::new(None),
            done: Condvar::new(),
        });
        {
            let w = self.writer();
            {
                let mut inner = self.lock();
                if let Some(why) = &inner.closed {
                    return Err(Error::ConnectionLost(why.clone()));
                }
                inner.acks.push_back(ack.clone());
            }
            write_frame(&w, head, &[])?;
        }
        let mut r = ack.reply.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(reply) = r.take() {
                return reply.and_then(super::check_status);
            }
            r = ack.done.wait(r).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn take_call(
        &self,
        function: Option<&str>,
        timeout: Option<Duration>,
    ) -> Result<Option<IncomingCall>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut inner = self.lock();
        loop {
            let next = match function {
                None => inner.incoming.pop_front(),
                Some(f) => inner.own_queues.get_mut(f).and_then(VecDeque::pop_front),
            };
            if let Some(c) = next {
                return Ok(Some(c));
            }
            if let Some(why) = &inner.closed {
                return Err(Error::ConnectionLost(why.clone()));
            }
            inner = match self.wait_until(inner, deadline) {
                Some(g) => g,
                None => return Ok(None),
            };
        }
    }

    /// Finishes call `id` with `result`.
    fn complete(&self, inner: &mut Inner, id: u64, result: CallResult) {
        let Some(slot) = inner.pending.remove(&id) else {
            return;
        };
        let mut st = slot.lock();
        if !matches!(*st, SlotState::Pending) {
            return;
        }
        if slot.dropped.load(Ordering::SeqCst) {
            if let (Err(e), true) = (result, self.options.raise_dropped_errors) {
                inner.unread_errors.push_back(e);
            }
            *st = SlotState::Taken;
        } else {
            *st = SlotState::Done(result);
        }
        drop(st);
        slot.done.notify_all();
        if let Some(c) = &mut inner.completed {
            c.push_back(id);
        }
    }

    /// Closes the endpoint: everything waiting fails with `why`.
    fn fail_all(&self, why: String) {
        let mut inner = self.lock();
        if inner.closed.is_none() {
            inner.closed = Some(why.clone());
        }
        let ids: Vec<u64> = inner.pending.keys().copied().collect();
        for id in ids {
            self.complete(&mut inner, id, Err(CallError::Connection(why.clone())));
        }
        for (_, c) in inner.streams.drain() {
            c.end(Err(CallError::Connection(why.clone())));
        }
        for (_, p) in inner.running.drain() {
            p.cancel();
        }
        for ack in inner.acks.drain(..) {
            *ack.reply.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(Err(Error::ConnectionLost(why.clone())));
            ack.done.notify_all();
        }
        drop(inner);
        self.changed.notify_all();
        let _ = self.writer().shutdown();
    }

    /// Routes one frame from the broker.
    fn route(&self, frame: Frame) -> std::result::Result<(), String> {
        let json: Map<String, Json> = serde_json::from_slice(frame.json())
            .map_err(|e| format!("invalid JSON from the broker: {e}"))?;
        let mut inner = self.lock();
        if let Some(id) = json.get("item").and_then(Json::as_u64) {
            if let Some(c) = inner.streams.get(&id) {
                c.push(frame.payload);
            }
            return Ok(());
        }
        if let Some(id) = json.get("result").and_then(Json::as_u64) {
            let result = if json.get("status").and_then(Json::as_i64) == Some(0) {
                Ok(frame.payload)
            } else {
                Err(call_error(&json))
            };
            if let Some(c) = inner.streams.remove(&id) {
                c.end(result.map(drop));
                return Ok(());
            }
            self.complete(&mut inner, id, result);
            drop(inner);
            self.changed.notify_all();
            return Ok(());
        }
        if let Some(id) = json.get("call").and_then(Json::as_u64) {
            let function = json
                .get("function")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_owned();
            let is_stream = json.get("stream").and_then(Json::as_bool) == Some(true);
            let window = is_stream.then(|| {
                let n = |k: &str| json.get(k).and_then(Json::as_i64).unwrap_or(0);
                (n("items"), n("bytes"))
            });
            inner
                .running
                .insert(id, Arc::new(stream::Producer::new(window)));
            let call = IncomingCall {
                id,
                function,
                args: frame.payload,
                stream: is_stream,
            };
            match inner.own_queues.get_mut(&call.function) {
                Some(q) => q.push_back(call),
                None => inner.incoming.push_back(call),
            }
            drop(inner);
            self.changed.notify_all();
            return Ok(());
        }
        if let Some(id) = json.get("credit").and_then(Json::as_u64) {
            if let Some(p) = inner.running.get(&id) {
                let n = |k: &str| json.get(k).and_then(Json::as_i64).unwrap_or(0);
                p.grant(n("items"), n("bytes"));
            }
            return Ok(());
        }
        if let Some(id) = json.get("cancel").and_then(Json::as_u64) {
            if let Some(p) = inner.running.get(&id) {
                p.cancel();
            }
            return Ok(());
        }
        if json.get("meta").and_then(Json::as_bool) == Some(true) {
            return Ok(());
        }
        let Some(ack) = inner.acks.pop_front() else {
            // An error nobody asked for: a broker that does not know the
            // remote-call commands answering a `call`.
            let what = json
                .get("error")
                .and_then(Json::as_str)
                .unwrap_or("an unexpected reply");
            return Err(format!(
                "this server does not support remote calls (it answered: {what})"
            ));
        };
        drop(inner);
        *ack.reply.lock().unwrap_or_else(|p| p.into_inner()) = Some(Ok(json));
        ack.done.notify_all();
        Ok(())
    }
}

/// The error a result push describes.
fn call_error(json: &Map<String, Json>) -> CallError {
    let text = |k: &str| {
        json.get(k)
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let flag = |k: &str| json.get(k).and_then(Json::as_bool) == Some(true);
    let message = text("error");
    if flag("remote") {
        CallError::Remote {
            error_type: text("error_type"),
            message,
            traceback: text("traceback"),
        }
    } else if flag("lost") {
        CallError::ProviderLost(message)
    } else if flag("timeout") {
        CallError::NoProvider(message)
    } else {
        CallError::Refused(message)
    }
}

/// The reader thread: routes frames until the connection ends.
fn read_loop(sh: &Shared, mut reader: FrameReader, mut sock: SplitReader) {
    let why = loop {
        match reader.read_from(&mut sock) {
            Ok(0) => break "the broker closed the connection".to_owned(),
            Ok(_) => {
                let mut inner = sh.lock();
                inner.last_heard = Instant::now();
                inner.ping_out = false;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if let Some(why) = heartbeat(sh) {
                    break why;
                }
                continue;
            }
            Err(e) => break format!("connection to the broker lost: {e}"),
        }
        let mut failed = None;
        loop {
            match reader.next_frame() {
                Ok(Some(frame)) => {
                    if let Err(why) = sh.route(frame) {
                        failed = Some(why);
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    failed = Some(format!("protocol error from the broker: {e}"));
                    break;
                }
            }
        }
        if let Some(why) = failed {
            break why;
        }
    };
    sh.fail_all(why);
}

/// On a quiet read: pings the broker, or gives up on it after `maxage`.
fn heartbeat(sh: &Shared) -> Option<String> {
    let maxage = sh.options.maxage?;
    let mut inner = sh.lock();
    if inner.pending.is_empty() && inner.acks.is_empty() && inner.streams.is_empty() {
        return None;
    }
    let quiet = inner.last_heard.elapsed();
    if quiet >= maxage {
        return Some(format!(
            "the broker sent nothing for {:.1} s while calls were in flight (maxage)",
            quiet.as_secs_f64()
        ));
    }
    if quiet >= maxage / 2 && !inner.ping_out {
        inner.ping_out = true;
        // The ping's reply needs no waiter of its own, but must not be
        // taken for another command's: queue an ack nobody waits on.
        inner.acks.push_back(Arc::new(Ack {
            reply: Mutex::new(None),
            done: Condvar::new(),
        }));
        drop(inner);
        let _ = sh.write(&json!({"command": "ping"}), &[]);
    }
    None
}

/// Writes one frame whole. Sends with `MSG_NOSIGNAL` (see
/// `transport::split`): these writes happen on library threads (reader,
/// callback workers) where a broken connection must be an error, never a
/// SIGPIPE that kills the host process.
fn write_frame(w: &SplitWriter, head: &Json, payload: &[u8]) -> Result<()> {
    let head = try_encode_head(head.to_string().as_bytes(), payload.len())
        .map_err(|e| Error::InvalidArgument(e.to_string()))?;
    if payload.len() <= COALESCE {
        let mut buf = head;
        buf.extend_from_slice(payload);
        return send_all(w, &mut [IoSlice::new(&buf)]);
    }
    send_all(w, &mut [IoSlice::new(&head), IoSlice::new(payload)])
}

fn send_all(w: &SplitWriter, bufs: &mut [IoSlice<'_>]) -> Result<()> {
    w.send_all(bufs).map_err(|e| match e.kind() {
        io::ErrorKind::WriteZero => {
            Error::ConnectionLost("the broker closed the connection".into())
        }
        _ => e.into(),
    })
}

/// Reads one whole frame (the handshake reply) before the reader thread starts.
fn read_one(
    reader: &mut FrameReader,
    sock: &mut SplitReader,
) -> Result<(Map<String, Json>, PooledBuf)> {
    loop {
        if let Some(f) = reader
            .next_frame()
            .map_err(|e| Error::Protocol(e.to_string()))?
        {
            let json = serde_json::from_slice(f.json())
                .map_err(|e| Error::Protocol(format!("invalid JSON from the broker: {e}")))?;
            return Ok((json, f.payload));
        }
        match reader.read_from(sock) {
            Ok(0) => {
                return Err(Error::ConnectionLost(
                    "the broker closed the connection".into(),
                ));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
}
