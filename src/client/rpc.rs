//! Remote calls from the client side: an [`Rpc`] endpoint calls functions
//! that other clients provide, and provides functions of its own.
//!
//! An endpoint owns one connection to the broker. Calls are written and left
//! in flight; whatever comes back is routed: results to their
//! [`CallFuture`]s, calls for this endpoint's functions to the queues
//! [`Rpc::next_call`] takes from, replies to acknowledged commands
//! (`provide`, `ping`) to whoever waits for them. So any number of threads
//! may call, wait and reply at once, and a long call never holds up the
//! others.
//!
//! Who reads: a thread that waits for something (a result, a call to
//! serve, room under the in-flight cap) reads the socket itself while no
//! other thread does, and routes every frame it gets, so the frame it
//! waits for wakes it straight from the kernel, with no thread in between:
//! that halves the wake-ups of a small call. The other waiters sleep and
//! are woken by the reader when their frame arrives, or to take over the
//! reading when it leaves. A background thread reads when nobody has
//! waited for a few milliseconds, so results, calls and pings are routed
//! (and a silent broker noticed) even then.

use crate::buffer::PooledBuf;
use crate::codec::dimeb::{self, MatrixEncoding, Piece};
use crate::proto::{extensions, stream_batch};
use crate::transport::split::{self, SplitReader, SplitWriter};
use crate::transport::{Address, TlsClientOptions};
use crate::value::Value;
use crate::wire::{Frame, FrameReader, try_encode_head};
use rustc_hash::FxHashMap;
use serde_json::{Map, Value as Json, json};
use std::collections::VecDeque;
use std::fmt;
use std::io::{self, IoSlice, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::stream;
pub use super::stream::{Next, NextMany, StreamOptions};
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

/// Where a call stands, in [`Inner::calls`] until its result is taken (or
/// its future dropped).
struct CallSlot {
    /// None while the call runs.
    result: Option<CallResult>,
    /// The future was dropped: an error result goes to `unread_errors`.
    dropped: bool,
}

/// What a sleeping thread waits for, so the reader wakes only the threads
/// a frame concerns.
#[derive(Clone, PartialEq, Eq)]
enum Want {
    /// The result of this call.
    Result(u64),
    /// A call of a function served through `next_call` (None) or with its
    /// own queue (its name).
    Incoming(Option<String>),
    /// Any finished call (`next_completed`).
    Completion,
    /// Room under `max_in_flight`.
    Room,
    /// The reply to this acknowledged command.
    Ack(u64),
    /// An item or the end of the stream this endpoint consumes.
    Stream(u64),
    /// Room (or a cancel) for the stream call this endpoint produces.
    Credit(u64),
}

/// A thread sleeping in [`Shared::wait_for`].
struct Sleeper {
    want: Want,
    wake: Arc<Condvar>,
}

struct Inner {
    calls: FxHashMap<u64, CallSlot>,
    /// Calls written whose result has not come (nor been cancelled).
    in_flight: usize,
    /// Acknowledged commands written, oldest first: their id, and whether
    /// a thread waits for the reply (pings of heartbeats and cancels do not).
    acks: VecDeque<(u64, bool)>,
    /// Replies to acknowledged commands, until their waiter takes them.
    ack_replies: FxHashMap<u64, Result<Map<String, Json>>>,
    next_ack: u64,
    /// Calls for functions served through `next_call`.
    incoming: VecDeque<IncomingCall>,
    /// Calls for functions with their own queue (`provide_own_queue`).
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
    /// A thread is reading the socket.
    reading: bool,
    /// Threads inside `wait_for`, and when the last one left.
    waiting: usize,
    last_waiter: Instant,
    sleepers: Vec<Sleeper>,
    /// Streams this endpoint consumes, by the caller's id.
    streams: FxHashMap<u64, Arc<stream::Consumer>>,
    /// Calls this endpoint runs and has not answered yet, by the broker's
    /// id: whether the caller gave up, and a stream's window.
    running: FxHashMap<u64, Arc<stream::Producer>>,
}

impl Inner {
    /// Wakes the sleepers that want `want`: all of them, or the first one.
    /// A woken sleeper leaves the list, so the next wake picks another.
    fn wake(&mut self, want: &Want, all: bool) {
        let mut i = 0;
        while i < self.sleepers.len() {
            if &self.sleepers[i].want == want {
                self.sleepers.remove(i).wake.notify_one();
                if !all {
                    return;
                }
            } else {
                i += 1;
            }
        }
    }

    /// Wakes one sleeper to take over the reading, if nobody reads.
    fn hand_over_reading(&mut self) {
        if !self.reading && !self.sleepers.is_empty() {
            self.sleepers.remove(0).wake.notify_one();
        }
    }
}

/// The reading end: only the thread that set [`Inner::reading`] touches it.
struct ReadSide {
    reader: FrameReader,
    sock: SplitReader,
    /// The socket's read timeout as last set (a syscall to change).
    timeout: Option<Duration>,
}

struct Shared {
    writer: Mutex<SplitWriter>,
    inner: Mutex<Inner>,
    read_side: Mutex<ReadSide>,
    /// Wakes the background reader (on close).
    background: Condvar,
    next_id: AtomicU64,
    options: RpcOptions,
    /// Why streams cannot be opened, when the broker does not announce them.
    streams_unsupported: Option<String>,
    /// The broker takes and relays batches of stream items.
    batch_streams: bool,
    /// When items held back by this endpoint's streams are due.
    flush_timer: stream::FlushTimer,
    /// How values this endpoint sends write their matrices: in their own
    /// layout when the broker announced `dimeb_layout` (we always ask).
    encoding: MatrixEncoding,
}

/// An endpoint for remote calls: one connection to the broker with a
/// background reader thread.
pub struct Rpc {
    shared: Arc<Shared>,
    reader: Mutex<Option<JoinHandle<()>>>,
    /// Writes items held back past their deadline; started by the first
    /// stream this endpoint produces that holds items back.
    flusher: Mutex<Option<JoinHandle<()>>>,
}

/// A call in flight: wait for it, then take its result.
pub struct CallFuture {
    id: u64,
    shared: Arc<Shared>,
}

impl Shared {
    /// `v` encoded for sending, and whether it holds `dimeb_layout`
    /// matrices (its header must then say so).
    fn encode(&self, v: &Value) -> Result<(PooledBuf, bool)> {
        let payload = encode_pooled(v, self.encoding).map_err(|e| Error::InvalidArgument(e.0))?;
        Ok((
            payload,
            self.encoding == MatrixEncoding::Native && dimeb::has_matrix(v),
        ))
    }

    /// Writes a frame with `head` (marked when the payload holds
    /// `dimeb_layout` matrices) and `v` as its payload: encoded whole when
    /// small, in pieces as it is written when large (no buffer the size of
    /// the value; in the native encoding a large matrix's elements go
    /// straight from its memory to the socket).
    fn send_value(&self, head: &Json, v: &Value) -> Result<()> {
        let enc = self.encoding;
        let head = mark(
            head.clone(),
            enc == MatrixEncoding::Native && dimeb::has_matrix(v),
        );
        let len =
            dimeb::checked_encoded_len_with(v, enc).map_err(|e| Error::InvalidArgument(e.0))?;
        if len < STREAM_MIN {
            let payload = encode_pooled(v, enc).map_err(|e| Error::InvalidArgument(e.0))?;
            return self.write(&head, &payload);
        }
        let pieces = dimeb::encode_pieces_with(v, STREAM_CHUNK, enc)
            .map_err(|e| Error::InvalidArgument(e.0))?;
        self.write_pieces(&head, len, &pieces)
    }
}

/// `head` marked as carrying `dimeb_layout` matrices when `layout`.
fn mark(mut head: Json, layout: bool) -> Json {
    if layout {
        head["dimeb_layout"] = json!(true);
    }
    head
}

/// Frames up to this size are written with one copy into one buffer
/// rather than two writes.
const COALESCE: usize = 16 << 10;

/// Values whose encoding is at least this large are encoded as they are
/// written, in pieces of [`STREAM_CHUNK`] bytes: no buffer the size of the
/// value, and one pass over its matrices instead of two.
const STREAM_MIN: usize = 4 << 20;
const STREAM_CHUNK: usize = 256 << 10;

/// How long the background thread leaves the reading to waiting threads
/// after the last one left: longer than a caller's turnaround between two
/// calls, so a tight loop of calls never hands the socket to it.
const GRACE: Duration = Duration::from_millis(5);

impl Rpc {
    /// Connects to the broker at `address` and handshakes.
    pub fn connect(address: &str, options: RpcOptions) -> Result<Rpc> {
        let addr = Address::parse(address).map_err(Error::InvalidArgument)?;
        Rpc::connect_to(&addr, options)
    }

    /// Connects to a parsed address and handshakes.
    pub fn connect_to(addr: &Address, options: RpcOptions) -> Result<Rpc> {
        let (mut read_sock, sock) = loop {
            match open(addr, &options.connect.tls) {
                Ok(s) => break s,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                    ) && options.retry_until.is_some_and(|t| Instant::now() < t) =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(source) => {
                    return Err(Error::Connect {
                        address: addr.to_string(),
                        source,
                    });
                }
            }
        };
        let mut reader = FrameReader::new(u64::MAX);
        let mut handshake = options.connect.handshake();
        // A side connection: it never syncs, so it takes no broadcasts.
        handshake["broadcasts"] = json!(false);
        handshake["extensions"] = json!([extensions::DIMEB_LAYOUT]);
        write_frame(&sock, &handshake, &[])?;
        let (hs, _) = read_one(&mut reader, &mut read_sock)?;
        let hs = super::check_status(hs)?;
        let extensions = super::announced_extensions(&hs)?;
        let encoding = if extensions
            .as_ref()
            .is_some_and(|e| e.iter().any(|n| n == extensions::DIMEB_LAYOUT))
        {
            MatrixEncoding::Native
        } else {
            MatrixEncoding::Classic
        };
        super::require(extensions.as_deref(), extensions::RPC, "remote calls")?;
        let streams_unsupported =
            super::require(extensions.as_deref(), extensions::STREAM, "streams")
                .err()
                .map(|e| e.to_string());
        let now = Instant::now();
        let shared = Arc::new(Shared {
            writer: Mutex::new(sock),
            inner: Mutex::new(Inner {
                calls: FxHashMap::default(),
                in_flight: 0,
                acks: VecDeque::new(),
                ack_replies: FxHashMap::default(),
                next_ack: 0,
                incoming: VecDeque::new(),
                own_queues: FxHashMap::default(),
                closed: None,
                unread_errors: VecDeque::new(),
                completed: None,
                last_heard: now,
                ping_out: false,
                reading: false,
                waiting: 0,
                last_waiter: now,
                sleepers: Vec::new(),
                streams: FxHashMap::default(),
                running: FxHashMap::default(),
            }),
            read_side: Mutex::new(ReadSide {
                reader,
                sock: read_sock,
                timeout: None,
            }),
            background: Condvar::new(),
            next_id: AtomicU64::new(1),
            options,
            streams_unsupported,
            batch_streams: extensions
                .as_deref()
                .is_some_and(|e| e.iter().any(|x| x == extensions::STREAM_BATCH)),
            flush_timer: stream::FlushTimer::default(),
            encoding,
        });
        let s = shared.clone();
        let reader = std::thread::Builder::new()
            .name("dime-rpc-reader".into())
            .spawn(move || background_reader(&s))
            .map_err(|e| Error::lost(format!("cannot start the reader thread: {e}")))?;
        Ok(Rpc {
            shared,
            reader: Mutex::new(Some(reader)),
            flusher: Mutex::new(None),
        })
    }

    /// Calls `function` with `args`; `timeout` bounds the wait for a
    /// provider (None: wait as long as it takes). Large arguments are
    /// encoded as they are written (see [`dimeb::encode_pieces`]).
    pub fn call(
        &self,
        function: &str,
        args: &Value,
        timeout: Option<Duration>,
    ) -> Result<CallFuture> {
        self.start_call(function, timeout, |sh, head| sh.send_value(head, args))
    }

    /// Calls `function` with already-encoded dimeb arguments (no copy), in
    /// DiME2's classic encoding.
    pub fn call_encoded(
        &self,
        function: &str,
        args: &[u8],
        timeout: Option<Duration>,
    ) -> Result<CallFuture> {
        self.start_call(function, timeout, |sh, head| sh.write(head, args))
    }

    /// Registers a call, then has `write` send its frame with `head`.
    fn start_call(
        &self,
        function: &str,
        timeout: Option<Duration>,
        write: impl FnOnce(&Shared, &Json) -> Result<()>,
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
            let cap = cap.max(1);
            inner = sh
                .wait_for(inner, Want::Room, None, |g| {
                    g.in_flight < cap || g.closed.is_some()
                })
                .0;
        }
        if let Some(why) = &inner.closed {
            return Err(Error::lost(why.clone()));
        }
        let id = sh.next_id.fetch_add(1, Ordering::Relaxed);
        if inner.in_flight == 0 {
            inner.last_heard = Instant::now();
        }
        inner.in_flight += 1;
        inner.calls.insert(
            id,
            CallSlot {
                result: None,
                dropped: false,
            },
        );
        drop(inner);
        let mut head = json!({"command": "call", "function": function, "id": id});
        if let Some(t) = timeout {
            head["timeout"] = json!(t.as_secs_f64() * 1000.0);
        }
        if let Err(e) = write(sh, &head) {
            let mut inner = sh.lock();
            if inner.calls.remove(&id).is_some_and(|c| c.result.is_none()) {
                inner.in_flight -= 1;
            }
            return Err(e);
        }
        Ok(CallFuture {
            id,
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

    /// Answers call `id` with an encoded result (DiME2's classic encoding).
    pub fn reply_encoded(&self, id: u64, result: &[u8]) -> Result<()> {
        self.reply_raw(id, result, false)
    }

    fn reply_raw(&self, id: u64, result: &[u8], layout: bool) -> Result<()> {
        self.shared.end_running(id, || {
            self.shared.write(
                &mark(json!({"command": "return", "call": id}), layout),
                result,
            )
        })
    }

    /// Answers call `id` with a value (a large one encoded as it is
    /// written).
    pub fn reply(&self, id: u64, result: &Value) -> Result<()> {
        self.shared.end_running(id, || {
            self.shared
                .send_value(&json!({"command": "return", "call": id}), result)
        })
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
        self.shared.end_running(id, || {
            self.shared.write(
                &json!({"command": "return", "call": id, "error": message,
                    "error_type": error_type, "traceback": traceback}),
                &[],
            )
        })
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
        let (payload, layout) = self.shared.encode(args)?;
        self.open_stream_raw(function, &payload, window, timeout, layout)
    }

    /// [`Rpc::open_stream`] with already-encoded arguments (DiME2's
    /// classic encoding).
    pub fn open_stream_encoded(
        &self,
        function: &str,
        args: &[u8],
        window: StreamOptions,
        timeout: Option<Duration>,
    ) -> Result<StreamReader> {
        self.open_stream_raw(function, args, window, timeout, false)
    }

    fn open_stream_raw(
        &self,
        function: &str,
        args: &[u8],
        window: StreamOptions,
        timeout: Option<Duration>,
        layout: bool,
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
                return Err(Error::lost(why.clone()));
            }
            if inner.in_flight == 0 && inner.streams.is_empty() {
                inner.last_heard = Instant::now();
            }
            inner.streams.insert(id, consumer.clone());
        }
        let mut head = mark(
            json!({"command": "call", "function": function, "id": id,
                "stream": true, "items": window.items, "bytes": window.bytes}),
            layout,
        );
        if sh.batch_streams {
            head["batch"] = json!(true);
        }
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
    ///
    /// A small item may be held back briefly to go in one frame with the
    /// next ones (when the broker takes batches): never when the stream
    /// had been quiet, at most [`stream::LINGER`] otherwise, and never
    /// past the end of the stream or a wait for room.
    pub fn stream_send(&self, id: u64, item: &[u8], timeout: Option<Duration>) -> Result<bool> {
        self.stream_send_raw(id, item, timeout, false)
    }

    fn stream_send_raw(
        &self,
        id: u64,
        item: &[u8],
        timeout: Option<Duration>,
        layout: bool,
    ) -> Result<bool> {
        let producer = self.shared.lock().running.get(&id).cloned();
        let Some(p) = producer else {
            return Ok(false);
        };
        // Credit arrives on the socket: read it here while nobody else does.
        if !p.can_go_on() {
            // Held items go before waiting (they already have when the
            // room ran out): the consumer grants room for what it reads.
            self.shared.write_pending(id, &mut p.pending())?;
            let deadline = timeout.map(|t| Instant::now() + t);
            let g = self.shared.lock();
            drop(self.shared.wait_for(g, Want::Credit(id), deadline, |g| {
                p.can_go_on() || g.closed.is_some()
            }));
        }
        let mut timed_out = false;
        if !p.take_room(item.len(), timeout, &mut timed_out) {
            return if timed_out {
                Err(Error::Timeout)
            } else {
                p.pending().clear();
                Ok(false)
            };
        }
        let mut pending = p.pending();
        if !self.shared.batch_streams || item.len() > stream::BATCH_ITEM_MAX {
            self.shared.write_pending(id, &mut pending)?;
            self.shared
                .write(&mark(json!({"command": "yield", "call": id}), layout), item)?;
            pending.wrote(Instant::now());
            return Ok(true);
        }
        match pending.add(item, layout, p.has_room(), Instant::now()) {
            stream::Hold::WriteNow => self.shared.write_pending(id, &mut pending)?,
            stream::Hold::Arm(when) => {
                drop(pending);
                self.start_flusher()?;
                self.shared.flush_timer.set(id, when);
            }
            stream::Hold::Keep => {}
        }
        Ok(true)
    }

    /// Starts the thread that writes held-back stream items when they are
    /// due, unless it runs.
    fn start_flusher(&self) -> Result<()> {
        let mut f = self.flusher.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none() {
            let s = self.shared.clone();
            let handle = std::thread::Builder::new()
                .name("dime-rpc-flush".into())
                .spawn(move || flush_when_due(&s))
                .map_err(|e| Error::lost(format!("cannot start the flush thread: {e}")))?;
            *f = Some(handle);
        }
        Ok(())
    }

    /// Sends the next item of stream call `id` as a value (see
    /// [`Rpc::stream_send`]).
    pub fn stream_send_value(
        &self,
        id: u64,
        item: &Value,
        timeout: Option<Duration>,
    ) -> Result<bool> {
        let (payload, layout) = self.shared.encode(item)?;
        self.stream_send_raw(id, &payload, timeout, layout)
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
        let inner = sh.lock();
        let (mut inner, _) = sh.wait_for(inner, Want::Completion, deadline, |g| {
            g.completed.as_ref().is_some_and(|c| !c.is_empty()) || g.closed.is_some()
        });
        if let Some(id) = inner.completed.as_mut().and_then(VecDeque::pop_front) {
            return Ok(Some(id));
        }
        match &inner.closed {
            Some(why) => Err(Error::lost(why.clone())),
            None => Ok(None),
        }
    }

    /// Calls in flight.
    pub fn in_flight(&self) -> usize {
        self.shared.lock().in_flight
    }

    /// Closes the connection: calls in flight fail, waiters wake.
    pub fn close(&self) {
        let _ = self.shared.writer().shutdown();
        self.shared.flush_timer.close();
        for thread in [&self.reader, &self.flusher] {
            let handle = thread.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(h) = handle {
                let _ = h.join();
            }
        }
        // Whoever was reading may have stopped without meeting the end of
        // the socket (the background reader leaves when told to), so the
        // calls still in flight are failed here, not left to a later
        // reader: a future waited on after close must not wait out its
        // timeout.
        self.shared.fail_all("the connection was closed".into());
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
        self.wait_for_news(timeout);
        let r = self.consumer.next(timeout.map(|_| Duration::ZERO));
        match &r {
            Ok((_, Some(grant))) => self.grant(*grant),
            Ok((Next::End, _)) | Err(_) => self.done = true,
            _ => {}
        }
        r.map(|(n, _)| n)
    }

    /// Like [`StreamReader::next`], but takes every item already received
    /// (waiting for the first), up to `max_items` and, after the first
    /// (taken whatever its size), `max_bytes` in all, and at most half the
    /// window, appending them to `out`: one call for a whole batch of
    /// small items.
    pub fn next_many(
        &mut self,
        timeout: Option<Duration>,
        max_items: usize,
        max_bytes: usize,
        out: &mut Vec<PooledBuf>,
    ) -> std::result::Result<NextMany, CallError> {
        let before = out.len();
        let r = self.take_many(timeout, max_items, max_bytes, out);
        let taken = &out[before..];
        self.mark_read(
            taken.len() as u64,
            taken.iter().map(|b| b.len() as u64).sum(),
        );
        r
    }

    /// Like [`StreamReader::next_many`], but the items taken do not count
    /// as read (their room is not granted to the producer again) until
    /// [`StreamReader::mark_read`]: for a binding that hands them out one
    /// by one later, so its hidden buffer never lets the producer run
    /// further ahead than the window.
    pub fn take_many(
        &mut self,
        timeout: Option<Duration>,
        max_items: usize,
        max_bytes: usize,
        out: &mut Vec<PooledBuf>,
    ) -> std::result::Result<NextMany, CallError> {
        if self.done {
            return Ok(NextMany::End);
        }
        self.wait_for_news(timeout);
        let r = self
            .consumer
            .take_many(timeout.map(|_| Duration::ZERO), max_items, max_bytes, out);
        if matches!(r, Ok(NextMany::End) | Err(_)) {
            self.done = true;
        }
        r
    }

    /// `items` items of `bytes` bytes taken with
    /// [`StreamReader::take_many`] have been read: grants the producer
    /// room for them when it is time to.
    pub fn mark_read(&mut self, items: u64, bytes: u64) {
        if items == 0 || self.done {
            return;
        }
        if let Some(grant) = self.consumer.read(items, bytes) {
            self.grant(grant);
        }
    }

    /// Items arrive on the socket: reads it here while nobody else does,
    /// until an item or the end arrived or `timeout` passed.
    fn wait_for_news(&self, timeout: Option<Duration>) {
        if self.consumer.has_news() {
            return;
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        let g = self.shared.lock();
        let c = &self.consumer;
        drop(
            self.shared
                .wait_for(g, Want::Stream(self.id), deadline, |g| {
                    c.has_news() || g.closed.is_some()
                }),
        );
    }

    /// Grants the producer room for `(items, bytes)` read.
    fn grant(&self, (items, bytes): (u64, u64)) {
        // Best effort: a broken connection ends the stream anyway.
        let _ = self.shared.write(
            &json!({"command": "credit", "id": self.id, "items": items, "bytes": bytes}),
            &[],
        );
    }

    /// Decodes the next item: Ok(None) at the end.
    pub fn next_value(&mut self, timeout: Option<Duration>) -> Result<Option<Value>> {
        match self.next(timeout) {
            Ok(Next::Item(b)) => Ok(Some(dimeb::decode_in(Arc::new(b))?)),
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
        let sh = &self.shared;
        let id = self.id;
        let inner = sh.lock();
        sh.wait_for(inner, Want::Result(id), deadline, |g| finished(g, id))
            .1
    }

    /// True once the call has finished.
    pub fn is_done(&self) -> bool {
        finished(&self.shared.lock(), self.id)
    }

    /// Takes the result of a finished call: None while it runs, and after
    /// the result was taken.
    pub fn take(&self) -> Option<CallResult> {
        let mut inner = self.shared.lock();
        let slot = inner.calls.get_mut(&self.id)?;
        let result = slot.result.take()?;
        inner.calls.remove(&self.id);
        Some(result)
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
            Some(Ok(buf)) => Ok(Ok(dimeb::decode_in(Arc::new(buf))?)),
            Some(Err(e)) => Ok(Err(e)),
            None => Err(Error::InvalidArgument(
                "the result was already taken".into(),
            )),
        }
    }

    /// Withdraws the call: a queued call never runs, a running one's result
    /// is discarded. False if it had already finished.
    pub fn cancel(&self) -> bool {
        let sh = &self.shared;
        let reading = {
            let mut inner = sh.lock();
            match inner.calls.get_mut(&self.id) {
                Some(slot) if slot.result.is_none() => {
                    slot.result = Some(Err(CallError::Cancelled));
                }
                _ => return false,
            }
            inner.in_flight -= 1;
            if let Some(c) = &mut inner.completed {
                c.push_back(self.id);
            }
            inner.wake(&Want::Result(self.id), true);
            inner.wake(&Want::Completion, false);
            inner.wake(&Want::Room, false);
            inner.reading
        };
        // Best effort: if the connection is gone there is nothing to withdraw.
        let _ = sh.write(&json!({"command": "cancel", "id": self.id}), &[]);
        if reading {
            // A thread waiting for this call may be the one blocked reading
            // the socket: the broker's answer to a ping wakes it.
            sh.ping_unawaited();
        }
        true
    }
}

/// True when call `id` has finished (or its result was taken).
fn finished(g: &Inner, id: u64) -> bool {
    g.calls.get(&id).is_none_or(|c| c.result.is_some())
}

impl Drop for CallFuture {
    fn drop(&mut self) {
        let sh = &self.shared;
        let mut inner = sh.lock();
        let Some(slot) = inner.calls.get_mut(&self.id) else {
            return;
        };
        match &slot.result {
            None => slot.dropped = true,
            Some(result) => {
                let unread = match result {
                    Err(e) if !matches!(e, CallError::Cancelled) => Some(e.clone()),
                    _ => None,
                };
                inner.calls.remove(&self.id);
                if let (Some(e), true) = (unread, sh.options.raise_dropped_errors) {
                    inner.unread_errors.push_back(e);
                }
            }
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn writer(&self) -> MutexGuard<'_, SplitWriter> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until `ready` holds (true) or `deadline` passes (false),
    /// reading the socket itself while no other thread does.
    fn wait_for<'a>(
        &'a self,
        mut g: MutexGuard<'a, Inner>,
        want: Want,
        deadline: Option<Instant>,
        mut ready: impl FnMut(&mut Inner) -> bool,
    ) -> (MutexGuard<'a, Inner>, bool) {
        let mut wake: Option<Arc<Condvar>> = None;
        g.waiting += 1;
        let done = loop {
            if ready(&mut g) {
                break true;
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                break false;
            }
            if !g.reading && g.closed.is_none() {
                g = self.read_some(g, deadline);
                continue;
            }
            let w = wake.get_or_insert_with(|| Arc::new(Condvar::new())).clone();
            g.sleepers.push(Sleeper {
                want: want.clone(),
                wake: w.clone(),
            });
            g = match deadline {
                None => w.wait(g).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    w.wait_timeout(g, d.saturating_duration_since(now))
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
            g.sleepers.retain(|s| !Arc::ptr_eq(&s.wake, &w));
        };
        g.waiting -= 1;
        if g.waiting == 0 {
            g.last_waiter = Instant::now();
        }
        // Leaving: whoever still waits must not be left without a reader.
        g.hand_over_reading();
        (g, done)
    }

    /// Reads the socket once (up to `deadline`) as the reading thread and
    /// routes every complete frame; closes the endpoint on failure.
    fn read_some<'a>(
        &'a self,
        mut g: MutexGuard<'a, Inner>,
        deadline: Option<Instant>,
    ) -> MutexGuard<'a, Inner> {
        g.reading = true;
        drop(g);
        let outcome = {
            let mut rs = self.read_side.lock().unwrap_or_else(|p| p.into_inner());
            self.read_and_route(&mut rs, deadline)
        };
        let mut g = self.lock();
        g.reading = false;
        if let Err(why) = outcome {
            drop(g);
            self.fail_all(why);
            g = self.lock();
        }
        g.hand_over_reading();
        g
    }

    fn read_and_route(
        &self,
        rs: &mut ReadSide,
        deadline: Option<Instant>,
    ) -> std::result::Result<(), String> {
        // The read ends by the deadline, and often enough to ping a quiet
        // broker (maxage) while calls are in flight.
        let mut timeout = deadline.map(|d| {
            d.saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1))
        });
        if let Some(maxage) = self.options.maxage {
            let beat = (maxage / 4).max(Duration::from_millis(5));
            timeout = Some(timeout.map_or(beat, |t| t.min(beat)));
        }
        // Whole milliseconds: waits in slices keep asking for the same one.
        let timeout = timeout.map(|t| Duration::from_millis(t.as_millis().max(1) as u64));
        if timeout != rs.timeout {
            rs.sock
                .set_read_timeout(timeout)
                .map_err(|e| format!("cannot set the read timeout: {e}"))?;
            rs.timeout = timeout;
        }
        match rs.reader.read_from(&mut rs.sock) {
            Ok(0) => return Err("the broker closed the connection".to_owned()),
            Ok(_) => {
                let mut inner = self.lock();
                inner.last_heard = Instant::now();
                inner.ping_out = false;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return match self.heartbeat() {
                    Some(why) => Err(why),
                    None => Ok(()),
                };
            }
            Err(e) => return Err(format!("connection to the broker lost: {e}")),
        }
        loop {
            match rs.reader.next_frame() {
                Ok(Some(frame)) => self.route(frame)?,
                Ok(None) => return Ok(()),
                Err(e) => return Err(format!("protocol error from the broker: {e}")),
            }
        }
    }

    fn write(&self, head: &Json, payload: &[u8]) -> Result<()> {
        let w = self.writer();
        write_frame(&w, head, payload).inspect_err(|_| {
            let _ = w.shutdown();
        })
    }

    /// Writes the items stream call `id` holds back, if any: one `yield`,
    /// of a batch when there are several.
    fn write_pending(&self, id: u64, pending: &mut stream::Pending) -> Result<()> {
        if pending.count() == 0 {
            return Ok(());
        }
        let (n, buf, layout) = pending.take(Instant::now());
        let head = if n == 1 {
            json!({"command": "yield", "call": id})
        } else {
            json!({"command": "yield", "call": id, "count": n})
        };
        self.write(&mark(head, layout), &buf)?;
        pending.recycle(buf);
        Ok(())
    }

    /// Forgets running call `id` and has `write` send its end, after the
    /// stream items it still holds back: the end never overtakes them.
    fn end_running(&self, id: u64, write: impl FnOnce() -> Result<()>) -> Result<()> {
        let producer = self.lock().running.remove(&id);
        let Some(p) = producer else {
            return write();
        };
        let mut pending = p.pending();
        if p.is_cancelled() {
            pending.clear();
        }
        self.write_pending(id, &mut pending)?;
        write()
    }

    /// Writes call `id`'s held-back items if they have waited long enough
    /// (at `now`), or sets the timer again for when they will have.
    fn flush_due(&self, id: u64, now: Instant) {
        let producer = self.lock().running.get(&id).cloned();
        let Some(p) = producer else {
            return; // ended: its end wrote them
        };
        let mut pending = p.pending();
        match pending.due(now) {
            (true, _) => {
                // A failed write closes the endpoint: the stream's
                // producer learns it at its next item.
                let _ = self.write_pending(id, &mut pending);
            }
            (false, Some(when)) => self.flush_timer.set(id, when),
            (false, None) => {}
        }
    }

    /// Writes one frame whose `len`-byte payload is `pieces`, encoding large
    /// matrices as they go out.
    fn write_pieces(&self, head: &Json, len: usize, pieces: &[Piece<'_>]) -> Result<()> {
        let mut pending = try_encode_head(head.to_string().as_bytes(), len)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let w = self.writer();
        let mut sock = NoSigpipe(&w);
        let mut buf = Vec::new();
        let mut send = || -> io::Result<()> {
            for p in pieces {
                match p {
                    Piece::Bytes(b) => pending.extend_from_slice(b),
                    Piece::Elements(m) => {
                        sock.write_all(&pending)?;
                        pending.clear();
                        dimeb::stream_elements(m, STREAM_CHUNK, &mut buf, |b| sock.write_all(b))?;
                    }
                    Piece::Stored(elems) => {
                        sock.write_all(&pending)?;
                        pending.clear();
                        sock.write_all(elems)?;
                    }
                }
            }
            sock.write_all(&pending)
        };
        send().map_err(|e| {
            // Half a frame went out: the connection cannot be used any more.
            let _ = w.shutdown();
            Error::from(e)
        })
    }

    /// Writes an acknowledged command, its reply expected in order; its id.
    fn write_acked(&self, head: &Json, awaited: bool) -> Result<u64> {
        let w = self.writer();
        let id = {
            let mut inner = self.lock();
            if let Some(why) = &inner.closed {
                return Err(Error::lost(why.clone()));
            }
            inner.next_ack += 1;
            let id = inner.next_ack;
            inner.acks.push_back((id, awaited));
            id
        };
        write_frame(&w, head, &[])?;
        Ok(id)
    }

    /// Writes an acknowledged command and waits for its reply.
    fn request(&self, head: &Json) -> Result<Map<String, Json>> {
        let id = self.write_acked(head, true)?;
        let inner = self.lock();
        let (mut inner, _) = self.wait_for(inner, Want::Ack(id), None, |g| {
            g.ack_replies.contains_key(&id)
        });
        inner
            .ack_replies
            .remove(&id)
            .expect("waited for it")
            .and_then(super::check_status)
    }

    /// Pings the broker without waiting for the answer (it is dropped).
    fn ping_unawaited(&self) {
        let _ = self.write_acked(&json!({"command": "ping"}), false);
    }

    fn take_call(
        &self,
        function: Option<&str>,
        timeout: Option<Duration>,
    ) -> Result<Option<IncomingCall>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let want = Want::Incoming(function.map(str::to_owned));
        let inner = self.lock();
        let (mut inner, _) = self.wait_for(inner, want, deadline, |g| {
            g.closed.is_some()
                || match function {
                    None => !g.incoming.is_empty(),
                    Some(f) => g.own_queues.get(f).is_some_and(|q| !q.is_empty()),
                }
        });
        let next = match function {
            None => inner.incoming.pop_front(),
            Some(f) => inner.own_queues.get_mut(f).and_then(VecDeque::pop_front),
        };
        match (next, &inner.closed) {
            (Some(c), _) => Ok(Some(c)),
            (None, Some(why)) => Err(Error::lost(why.clone())),
            (None, None) => Ok(None),
        }
    }

    /// Finishes call `id` with `result`.
    fn complete(&self, inner: &mut Inner, id: u64, result: CallResult) {
        let Some(slot) = inner.calls.get_mut(&id) else {
            return;
        };
        if slot.result.is_some() {
            return; // cancelled: its result is discarded
        }
        inner.in_flight -= 1;
        if slot.dropped {
            inner.calls.remove(&id);
            if let (Err(e), true) = (result, self.options.raise_dropped_errors) {
                inner.unread_errors.push_back(e);
            }
        } else {
            slot.result = Some(result);
            inner.wake(&Want::Result(id), true);
        }
        if let Some(c) = &mut inner.completed {
            c.push_back(id);
            inner.wake(&Want::Completion, false);
        }
        inner.wake(&Want::Room, false);
    }

    /// Closes the endpoint: everything waiting fails with `why`.
    fn fail_all(&self, why: String) {
        let mut inner = self.lock();
        if inner.closed.is_none() {
            inner.closed = Some(why.clone());
        }
        let ids: Vec<u64> = inner
            .calls
            .iter()
            .filter(|(_, c)| c.result.is_none())
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.complete(&mut inner, id, Err(CallError::Connection(why.clone())));
        }
        for (_, c) in inner.streams.drain() {
            c.end(Err(CallError::Connection(why.clone())));
        }
        for (_, p) in inner.running.drain() {
            p.cancel();
        }
        for (id, awaited) in std::mem::take(&mut inner.acks) {
            if awaited {
                inner.ack_replies.insert(id, Err(Error::lost(why.clone())));
            }
        }
        for s in &inner.sleepers {
            s.wake.notify_all();
        }
        drop(inner);
        self.background.notify_all();
        self.flush_timer.close();
        let _ = self.writer().shutdown();
    }

    /// Routes one frame from the broker.
    fn route(&self, frame: Frame) -> std::result::Result<(), String> {
        let json: Map<String, Json> = serde_json::from_slice(frame.json())
            .map_err(|e| format!("invalid JSON from the broker: {e}"))?;
        let mut inner = self.lock();
        if let Some(id) = json.get("item").and_then(Json::as_u64) {
            if let Some(c) = inner.streams.get(&id) {
                match json.get("count").map(Json::as_u64) {
                    None => c.push(frame.payload),
                    Some(n) => {
                        let items = stream_batch::ranges(&frame.payload, n.unwrap_or(0))
                            .map_err(|e| format!("the broker sent a malformed batch: {e}"))?;
                        c.push_batch(&frame.payload, items);
                    }
                }
                inner.wake(&Want::Stream(id), true);
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
                inner.wake(&Want::Stream(id), true);
                return Ok(());
            }
            self.complete(&mut inner, id, result);
            return Ok(());
        }
        if let Some(id) = json.get("call").and_then(Json::as_u64) {
            let function = json
                .get("function")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_owned();
            let want = if inner.own_queues.contains_key(&function) {
                Want::Incoming(Some(function.clone()))
            } else {
                Want::Incoming(None)
            };
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
            inner.wake(&want, false);
            return Ok(());
        }
        if let Some(id) = json.get("credit").and_then(Json::as_u64) {
            if let Some(p) = inner.running.get(&id) {
                let n = |k: &str| json.get(k).and_then(Json::as_i64).unwrap_or(0);
                p.grant(n("items"), n("bytes"));
                inner.wake(&Want::Credit(id), true);
            }
            return Ok(());
        }
        if let Some(id) = json.get("cancel").and_then(Json::as_u64) {
            if let Some(p) = inner.running.get(&id) {
                p.cancel();
                inner.wake(&Want::Credit(id), true);
            }
            return Ok(());
        }
        if json.get("meta").and_then(Json::as_bool) == Some(true) {
            return Ok(());
        }
        let Some((id, awaited)) = inner.acks.pop_front() else {
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
        // A reply nobody waits for (a heartbeat's or cancel's ping) is
        // dropped; the others go to their waiter.
        if awaited {
            inner.ack_replies.insert(id, Ok(json));
            inner.wake(&Want::Ack(id), true);
        }
        Ok(())
    }

    /// On a quiet read: pings the broker, or gives up on it after `maxage`.
    fn heartbeat(&self) -> Option<String> {
        let maxage = self.options.maxage?;
        let mut inner = self.lock();
        if inner.in_flight == 0 && inner.acks.is_empty() && inner.streams.is_empty() {
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
            drop(inner);
            self.ping_unawaited();
        }
        None
    }
}

/// The background reader: reads while no thread waits, so frames are routed
/// and a silent broker noticed even then; ends when the endpoint closes.
fn background_reader(sh: &Shared) {
    let mut g = sh.lock();
    loop {
        if g.closed.is_some() && !g.reading {
            break;
        }
        let idle = g.waiting == 0 && !g.reading && g.last_waiter.elapsed() >= GRACE;
        if idle && g.closed.is_none() {
            g = sh.read_some(g, None);
            continue;
        }
        g = sh
            .background
            .wait_timeout(g, GRACE)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}

/// The flush thread: writes held-back stream items as they fall due,
/// until the endpoint closes.
fn flush_when_due(sh: &Shared) {
    while let Some((id, now)) = sh.flush_timer.next_due() {
        sh.flush_due(id, now);
    }
}

/// The error a result push describes.
pub(crate) fn call_error(json: &Map<String, Json>) -> CallError {
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

/// Send buffer asked of the kernel (it caps it at `net.core.wmem_max`):
/// while a large value is encoded piece by piece, the broker drains the
/// pieces already written instead of waiting for each one.
const SEND_BUFFER: usize = 4 << 20;

/// Opens a blocking connection to `addr` (unix, tcp or tls, checked as
/// `tls` says), split into its reading and writing halves.
fn open(addr: &Address, tls: &TlsClientOptions) -> io::Result<(SplitReader, SplitWriter)> {
    let (r, w) = split::open(addr, tls)?;
    // Best effort: the default buffer works too, only slower.
    let _ = w.set_send_buffer_size(SEND_BUFFER);
    Ok((r, w))
}

/// Writes one frame whole. Sends with `MSG_NOSIGNAL` (see
/// `transport::split`): these writes happen on library threads (reader,
/// callback workers) where a broken connection must be an error, never a
/// SIGPIPE that kills the host process.
pub(crate) fn write_frame(w: &SplitWriter, head: &Json, payload: &[u8]) -> Result<()> {
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
        io::ErrorKind::WriteZero => super::closed_by("broker"),
        _ => e.into(),
    })
}

/// Writes through a connection's writing half, with `MSG_NOSIGNAL` (see
/// `write_frame`).
struct NoSigpipe<'a>(&'a SplitWriter);

impl Write for NoSigpipe<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.send_all(&mut [IoSlice::new(buf)])?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
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
                return Err(super::closed_by("broker"));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
}
