//! A blocking DiME client, used by tests, benchmarks and the C ABI: DiME2
//! messaging here, one module per further service ([`share`], [`space`]).

mod options;
pub mod pipeline;
pub mod rpc;
pub mod share;
mod shm;
pub mod space;
pub mod stream;
pub mod watch;

pub use options::ConnectOptions;

use crate::buffer::PooledBuf;
use crate::codec::dimeb::{self, CodecError, MatrixEncoding, Piece};
use crate::proto::extensions;
use crate::shm::{Mapping, Segment};
use crate::transport::{self, Address, ReadWithFds, Transport};
use crate::value::Value;
use crate::wire::{Frame, FrameReader, try_encode_head};
use pipeline::Pipeline;
use serde_json::{Map, Value as Json, json};
use shm::{FillError, ReleaseLink, ShmSide};
use std::collections::VecDeque;
use std::fmt;
use std::io::{self, IoSlice, Write};
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use shm::DEFAULT_THRESHOLD as DEFAULT_SHM_THRESHOLD;

/// What can go wrong talking to a server.
#[derive(Debug)]
pub enum Error {
    /// Bad argument from the caller (address syntax, oversized value …).
    InvalidArgument(String),
    /// Could not connect to `address` (a libdime address): what the
    /// operating system said, or how the connection ended during the
    /// handshake.
    Connect {
        /// The address connected to, as `unix:PATH`, `tcp:HOST:PORT` …
        address: String,
        /// Why it failed.
        source: io::Error,
    },
    /// The connection broke while in use (a write or read failed, or the
    /// server closed it).
    ConnectionLost(io::Error),
    /// The server sent something that is not valid DiME.
    Protocol(String),
    /// The server answered with `status < 0`; its error message.
    Server(String),
    /// A wait ran past its timeout.
    Timeout,
    /// A payload could not be decoded.
    Codec(CodecError),
    /// The server does not offer what was asked (an original DiME2 server,
    /// which announces no extensions, asked for a share, say). The message
    /// names the feature and why; the client stays usable.
    Unsupported(String),
    /// The server refused this client's credentials, or a command its
    /// roles do not permit (`--auth`); the message says which. After a
    /// refused command the client stays usable.
    NotPermitted(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
            Error::Connect { address, source } => {
                write!(f, "cannot connect to {address}: {source}")
            }
            Error::ConnectionLost(e) => write!(f, "connection lost: {e}"),
            Error::Protocol(m) => write!(f, "protocol error: {m}"),
            Error::Server(m) => write!(f, "server error: {m}"),
            Error::Timeout => f.write_str("timed out"),
            Error::Codec(e) => write!(f, "{e}"),
            Error::Unsupported(m) => f.write_str(m),
            // The server's message says it all ("Not permitted: user …",
            // "Authentication required: …").
            Error::NotPermitted(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    /// The operating system's error number (`errno`) behind a failed
    /// connect or a lost connection: `ENOENT` for a missing unix socket,
    /// `ECONNREFUSED`, `EACCES`, `ETIMEDOUT`, `EPIPE`, `ECONNRESET` …
    /// A connection the server closed counts as `ECONNRESET`. `None` for
    /// failures that did not come from the operating system (including a
    /// host name that did not resolve).
    pub fn os_error(&self) -> Option<i32> {
        match self {
            Error::Connect { source, .. } | Error::ConnectionLost(source) => errno_of(source),
            _ => None,
        }
    }
}

/// `e`'s errno: the raw one when the OS gave it, else the one its kind
/// stands for (errors built by std or by us carry only a kind).
fn errno_of(e: &io::Error) -> Option<i32> {
    use io::ErrorKind as K;
    e.raw_os_error().or(match e.kind() {
        K::NotFound => Some(libc::ENOENT),
        K::PermissionDenied => Some(libc::EACCES),
        K::ConnectionRefused => Some(libc::ECONNREFUSED),
        K::ConnectionReset | K::UnexpectedEof => Some(libc::ECONNRESET),
        K::ConnectionAborted => Some(libc::ECONNABORTED),
        K::BrokenPipe => Some(libc::EPIPE),
        K::TimedOut => Some(libc::ETIMEDOUT),
        K::AddrNotAvailable => Some(libc::EADDRNOTAVAIL),
        K::NotConnected => Some(libc::ENOTCONN),
        K::InvalidInput => Some(libc::EINVAL),
        _ => None,
    })
}

impl Error {
    /// A lost connection described by `why`, with no OS error behind it.
    pub fn lost(why: impl Into<String>) -> Error {
        Error::ConnectionLost(io::Error::other(why.into()))
    }
}

/// The error for a peer (`"server"`, `"broker"`) that closed the
/// connection (a read or write of 0 bytes): `UnexpectedEof`, which
/// `Error::os_error` reports as ECONNRESET.
fn closed_by(peer: &str) -> Error {
    Error::ConnectionLost(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("the {peer} closed the connection"),
    ))
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::ConnectionLost(e)
    }
}

impl From<CodecError> for Error {
    fn from(e: CodecError) -> Error {
        Error::Codec(e)
    }
}

/// `Ok` if `extensions` (from a handshake reply; None for an original
/// DiME2 server) holds `name`, else [`Error::Unsupported`] saying the
/// server does not support `what` and why.
pub(crate) fn require(extensions: Option<&[String]>, name: &str, what: &str) -> Result<()> {
    match extensions {
        Some(e) if e.iter().any(|n| n == name) => Ok(()),
        None => Err(Error::Unsupported(format!(
            "this server does not support {what} (it is an original DiME2 server: its \
             handshake announces no extensions)"
        ))),
        Some(_) => Err(Error::Unsupported(format!(
            "this server does not support {what} (its handshake does not announce the \
             \"{name}\" extension)"
        ))),
    }
}

/// The `"extensions"` list of a handshake reply; None when it has none
/// (an original DiME2 server).
pub(crate) fn announced_extensions(reply: &Map<String, Json>) -> Result<Option<Vec<String>>> {
    match reply.get("extensions") {
        None => Ok(None),
        Some(Json::Array(names)) => names
            .iter()
            .map(|n| n.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .map(Some)
            .ok_or_else(|| Error::Protocol("handshake \"extensions\" holds a non-string".into())),
        Some(_) => Err(Error::Protocol(
            "handshake \"extensions\" is not a list".into(),
        )),
    }
}

/// Result of client calls.
pub type Result<T> = std::result::Result<T, Error>;

/// One message received by `sync`, still encoded.
#[derive(Debug)]
pub struct Message {
    /// The variable name.
    pub varname: String,
    /// The sender's serialization (`dimeb` for our clients); the session's
    /// negotiated one when the sender's header names none.
    pub serialization: String,
    /// The encoded value (empty when it came in shared memory).
    pub payload: PooledBuf,
    /// The encoded value when it came in shared memory: the segment mapped
    /// privately, or why it could not be.
    pub mapped: Option<std::result::Result<Arc<Mapping>, String>>,
}

impl Message {
    /// A message whose value is in `payload`.
    pub fn new(varname: String, serialization: String, payload: PooledBuf) -> Message {
        Message {
            varname,
            serialization,
            payload,
            mapped: None,
        }
    }

    /// The encoded value, wherever it arrived.
    pub fn bytes(&self) -> Result<&[u8]> {
        match &self.mapped {
            None => Ok(&self.payload),
            Some(Ok(m)) => Ok(m.as_ref().as_ref()),
            Some(Err(e)) => Err(self.codec_error(CodecError(e.clone()))),
        }
    }

    /// True when the value came in shared memory.
    pub fn is_shared(&self) -> bool {
        matches!(self.mapped, Some(Ok(_)))
    }

    /// Decodes a dimeb payload (matrices get buffers of their own).
    pub fn decode(&self) -> Result<Value> {
        self.check_serialization()?;
        dimeb::decode(self.bytes()?).map_err(|e| self.codec_error(e))
    }

    /// Decodes a dimeb payload, consuming the message: large matrices that
    /// arrived in their own layout and byte order point into the received
    /// buffer or shared-memory mapping instead of being copied (it stays
    /// alive as long as they do).
    pub fn into_value(self) -> Result<Value> {
        self.check_serialization()?;
        self.bytes()?;
        let Message {
            varname,
            payload,
            mapped,
            ..
        } = self;
        let named =
            |e: CodecError| Error::Codec(CodecError(format!("variable '{varname}': {}", e.0)));
        match mapped {
            Some(Ok(m)) => dimeb::decode_in(m).map_err(named),
            // Small payloads have no matrix worth sharing the buffer for.
            _ if payload.len() < dimeb::SHARE_MIN => dimeb::decode(&payload).map_err(named),
            _ => dimeb::decode_in(Arc::new(payload)).map_err(named),
        }
    }

    /// `Ok` if the payload is one well-formed dimeb value (what
    /// [`Message::decode`] would accept), checked without decoding it.
    pub fn check(&self) -> Result<()> {
        self.check_serialization()?;
        let bytes = self.bytes()?;
        match dimeb::value_len(bytes) {
            Ok(n) if n == bytes.len() => Ok(()),
            Ok(n) => Err(self.codec_error(CodecError(format!(
                "{} trailing bytes after the value",
                bytes.len() - n
            )))),
            Err(e) => Err(self.codec_error(e)),
        }
    }

    fn check_serialization(&self) -> Result<()> {
        if self.serialization != "dimeb" {
            return Err(Error::Codec(CodecError(format!(
                "variable '{}' uses the {} serialization, which only its own language can read",
                self.varname, self.serialization
            ))));
        }
        Ok(())
    }

    fn codec_error(&self, e: CodecError) -> Error {
        Error::Codec(CodecError(format!("variable '{}': {}", self.varname, e.0)))
    }
}

/// A payload ready to go.
enum Outgoing<'v> {
    /// In the frame itself.
    Inline(PooledBuf),
    /// In a segment lent to the broker: the number naming it, the bytes used.
    Shared { segment: u64, len: usize },
    /// In the frame, written from the pieces of its encoding: the elements
    /// of its large matrices straight from the value's own memory, never
    /// copied into a buffer first.
    Pieces(Vec<Part<'v>>),
}

/// A piece of an [`Outgoing::Pieces`] payload.
enum Part<'v> {
    /// Encoded bytes.
    Encoded(Vec<u8>),
    /// A matrix's elements, in the value's memory.
    InPlace(&'v [u8]),
}

impl Part<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Part::Encoded(b) => b,
            Part::InPlace(b) => b,
        }
    }
}

/// Values whose encoding is at least this large, in their own layout
/// (`dimeb_layout`), go out from their own memory ([`Outgoing::Pieces`]):
/// copying them into one buffer first costs about as much as the socket.
const GATHER_MIN: usize = 1 << 20;
/// In those, matrices whose elements take more than this are written in
/// place; smaller parts are gathered into the encoded bytes around them.
const GATHER_IN_PLACE: usize = 64 << 10;

impl<'v> Outgoing<'v> {
    fn body(&self) -> Body<'_> {
        match self {
            Outgoing::Inline(p) => Body::Bytes(p),
            &Outgoing::Shared { segment, len } => Body::Shared { segment, len },
            Outgoing::Pieces(parts) => Body::Pieces(parts),
        }
    }
}

/// Where the payload of a relay is.
#[derive(Clone, Copy)]
enum Body<'a> {
    /// These bytes, in the frame.
    Bytes(&'a [u8]),
    /// A lent segment (see [`Outgoing::Shared`]).
    Shared { segment: u64, len: usize },
    /// These pieces one after the other, in the frame.
    Pieces(&'a [Part<'a>]),
}

impl Body<'_> {
    /// Payload bytes in the frame.
    fn in_frame(&self) -> usize {
        match self {
            Body::Bytes(b) => b.len(),
            Body::Shared { .. } => 0,
            Body::Pieces(parts) => parts.iter().map(|p| p.bytes().len()).sum(),
        }
    }
}

/// A `send` or `broadcast` ready to write.
struct Relay<'a> {
    varname: &'a str,
    body: Body<'a>,
    /// The payload holds `dimeb_layout` matrices: the header says so (see
    /// `mark_layout`).
    layout: bool,
}

/// The longest a wait written behind unanswered pipelined sends waits at
/// first (see `wait_behind_sends`): how late, at most, such a wait
/// reports a failure among those sends when nothing arrives.
const FIRST_WAIT: Duration = Duration::from_millis(100);

/// `{"command":"devices"}` framed: what [`Client::devices`] writes (a
/// simulator asks every step).
const DEVICES_REQUEST: &[u8] = b"DiME\0\0\0\x15\0\0\0\0{\"command\":\"devices\"}";

/// A success reply as our server writes it, byte for byte.
const STATUS_OK: &[u8] = br#"{"status":0}"#;

/// How long to poll for a reply before blocking.
const SPIN: Duration = Duration::from_micros(50);

/// How long a sender waits for the broker to free a segment it could
/// reuse before it makes a new one.
const SEGMENT_WAIT: Duration = Duration::from_millis(2);

/// A `Read` over a transport's non-blocking read (`Unsupported` where the
/// transport has none).
struct DontWait<'a>(&'a mut dyn Transport);

impl io::Read for DontWait<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0
            .read_nonblocking(buf)
            .unwrap_or_else(|| Err(io::ErrorKind::Unsupported.into()))
    }
}

/// Most requests of one call written before reading their replies, when
/// pipelining across calls is off (as DiME2's Python client does).
const BATCH: usize = 16;

/// The first and the longest pause between two polls for messages, when a
/// wait with a timeout must poll: an original DiME2 server cannot wait
/// with a timeout, and a `wait` sent to it cannot be withdrawn. Doubling
/// from 1 ms to 50 ms answers a quick reply quickly and costs an idle
/// waiter about 20 small requests a second.
const POLL_FIRST: Duration = Duration::from_millis(1);
const POLL_LONGEST: Duration = Duration::from_millis(50);

/// A connection to a DiME server.
pub struct Client {
    /// Where it is connected (watches open their own connection there).
    address: Address,
    stream: Box<dyn Transport>,
    reader: FrameReader,
    serialization: String,
    /// Messages received but not yet handed out (after a partial failure).
    stash: VecDeque<Message>,
    /// The extensions the server announced in its handshake; None for an
    /// original DiME2 server, whose reply has no list.
    extensions: Option<Vec<String>>,
    /// The pause before the next poll for messages (see `poll_messages`):
    /// it keeps growing across the slices of a long wait and starts over
    /// once messages arrive.
    poll_pause: Duration,
    /// How this client writes matrices: in their own layout where the
    /// server announced `dimeb_layout` and we asked for it.
    encoding: MatrixEncoding,
    /// Shared memory, where negotiated.
    shm: Option<ShmSide>,
    /// Frames read ahead while looking for pushes (`drain_pushes`), to be
    /// read first.
    early: VecDeque<Frame>,
    /// Reading relayed messages, which may come with descriptors: only then
    /// (and only with shared memory on) are reads `recvmsg`, which costs
    /// more than `recv`. Nothing else the broker sends carries one.
    reading_relayed: bool,
    /// Sends written but not yet answered, when pipelining is on
    /// ([`Client::set_pipeline`]).
    pipeline: Pipeline,
    /// The header of the last relay, its memory reused by the next.
    head_buf: Vec<u8>,
    /// True once a write went through plain `write` (no `MSG_NOSIGNAL`).
    raw_writes: bool,
}

impl Client {
    /// Connects to `address` (`unix:PATH`, `ipc:PATH`, `tcp:HOST:PORT`,
    /// `tls:HOST:PORT`, `ws:…`, `wss:…`) and handshakes with the dimeb
    /// serialization, with the token and TLS settings of the environment
    /// ([`ConnectOptions::from_env`]).
    pub fn connect(address: &str) -> Result<Client> {
        Client::connect_with(address, ConnectOptions::from_env())
    }

    /// As [`Client::connect`], with `options` as given (the environment is
    /// read only by [`ConnectOptions::from_env`]).
    pub fn connect_with(address: &str, options: ConnectOptions) -> Result<Client> {
        let addr = Address::parse(address).map_err(Error::InvalidArgument)?;
        Client::connect_to_with(&addr, options)
    }

    /// Connects to a parsed address, with the environment's options.
    pub fn connect_to(addr: &Address) -> Result<Client> {
        Client::connect_to_with(addr, ConnectOptions::from_env())
    }

    /// Connects a side connection (a watch, a monitor): one that never
    /// syncs, so it asks not to receive broadcasts, which would only pile
    /// up in its queue (nor shared memory, which it would never use).
    /// Token and TLS come from the environment.
    pub fn connect_side(addr: &Address) -> Result<Client> {
        let options = ConnectOptions {
            shm: false,
            ..ConnectOptions::from_env()
        };
        Client::open(addr, false, options)
    }

    /// Connects to a parsed address, asking for what `options` says:
    /// presenting `options.token` (if any) and checking a `tls:`/`wss:`
    /// server as `options.tls` says.
    pub fn connect_to_with(addr: &Address, options: ConnectOptions) -> Result<Client> {
        Client::open(addr, true, options)
    }

    fn open(addr: &Address, broadcasts: bool, options: ConnectOptions) -> Result<Client> {
        let failed = |source| Error::Connect {
            address: addr.to_string(),
            source,
        };
        let stream = transport::connect_with(addr, &options.tls).map_err(failed)?;
        let mut c = Client {
            address: addr.clone(),
            stream,
            reader: FrameReader::new(u64::MAX),
            serialization: "dimeb".into(),
            stash: VecDeque::new(),
            extensions: None,
            poll_pause: POLL_FIRST,
            encoding: MatrixEncoding::Classic,
            shm: None,
            early: VecDeque::new(),
            reading_relayed: false,
            pipeline: Pipeline::default(),
            head_buf: Vec::new(),
            raw_writes: false,
        };
        let mut handshake = options.handshake();
        // What we ask to be sent (our extension; an original server
        // ignores the field).
        let mut asked = Vec::new();
        if options.layout {
            asked.push(extensions::DIMEB_LAYOUT);
        }
        let shm = options.shm && c.stream.passes_fds() && cfg!(target_os = "linux");
        if shm {
            asked.push(extensions::SHM);
        }
        if options.cut_through {
            asked.push(extensions::CUT_THROUGH);
        }
        if !asked.is_empty() {
            handshake["extensions"] = json!(asked);
        }
        if !broadcasts {
            handshake["broadcasts"] = json!(false);
        }
        // A connection that ends during the handshake never was one: report
        // it as a failed connect, not as a lost connection.
        let reply = c.request(handshake).map_err(|e| match e {
            Error::ConnectionLost(source) => failed(source),
            other => other,
        })?;
        if let Some(s) = reply.get("serialization").and_then(Json::as_str) {
            c.serialization = s.to_owned();
        }
        c.extensions = announced_extensions(&reply)?;
        if options.layout && c.supports(extensions::DIMEB_LAYOUT) {
            c.encoding = MatrixEncoding::Native;
        }
        if shm && c.supports(extensions::SHM) {
            // SAFETY: the stream's descriptor is open for as long as `c`.
            let own = unsafe { BorrowedFd::borrow_raw(c.stream.as_raw_fd()) };
            let dup = own.try_clone_to_owned().map_err(Error::ConnectionLost)?;
            c.shm = Some(ShmSide {
                pool: Default::default(),
                fds: VecDeque::new(),
                link: ReleaseLink::new(dup),
                threshold: options.shm_threshold.max(1),
                sending: None,
                receiving: false,
                want_receiving: false,
            });
            if options.shm_receive_now {
                let ok = c.request(json!({"command": "shm_receive"})).is_ok();
                if let Some(side) = c.shm.as_mut() {
                    side.receiving = ok;
                }
            }
        }
        Ok(c)
    }

    /// True when payloads of at least [`ConnectOptions::shm_threshold`]
    /// bytes go through shared memory on this connection.
    pub fn uses_shm(&self) -> bool {
        self.shm.is_some()
    }

    /// Shared-memory segments this client has sent and not yet been told
    /// are free, and ones it keeps for reuse: (busy, free).
    pub fn shm_segments(&self) -> (usize, usize) {
        self.shm
            .as_ref()
            .map_or((0, 0), |s| (s.pool.busy_count(), s.pool.free_count()))
    }

    /// How this client writes matrices it sends: [`MatrixEncoding::Native`]
    /// (their own layout) when it asked for `dimeb_layout` and the server
    /// announced it, else DiME2's classic encoding.
    pub fn matrix_encoding(&self) -> MatrixEncoding {
        self.encoding
    }

    /// The extensions the server announced in its handshake reply
    /// (`docs/protocol-extensions.md`; names in [`crate::proto::extensions`]),
    /// or None for an original DiME2 server, which announces none: this
    /// client then keeps to DiME2's own commands, and features that need an
    /// extension fail with [`Error::Unsupported`].
    pub fn server_extensions(&self) -> Option<&[String]> {
        self.extensions.as_deref()
    }

    /// Whether the server announced extension `name`.
    pub fn supports(&self, name: &str) -> bool {
        self.extensions
            .as_ref()
            .is_some_and(|e| e.iter().any(|n| n == name))
    }

    /// `Ok` if the server announced extension `name`, else
    /// [`Error::Unsupported`] saying the server does not support `what`
    /// (a description such as "shared dictionaries") and why.
    pub fn require(&self, name: &str, what: &str) -> Result<()> {
        require(self.extensions.as_deref(), name, what)
    }

    /// The serialization the server asked for (we always send dimeb, and
    /// receivers decode by each message's own header).
    pub fn serialization(&self) -> &str {
        &self.serialization
    }

    /// Turns pipelined sends on (`window` ≥ 1) or off (0, the default).
    ///
    /// When on, [`Client::send`], [`Client::broadcast`] and their `_many`
    /// and `_encoded` forms return once their request is written, without
    /// waiting for the server's `{"status":0}`; at most `window` sends stay
    /// unanswered (a send that finds the window full first reads replies
    /// until it is half empty, so that they are read in batches). Replies
    /// come in request order and are read by
    /// later calls. A failed send (an unknown group, a full queue) is
    /// reported by a later call, named after it ("pipelined send #N of 'x'
    /// to group 'g' failed: …"): by the next call that reads replies
    /// (flush, sync, wait, devices, join, leave, share and tuple-space
    /// requests, or a send that finds the window full), or, when that call
    /// already reported one, by the call after it. The call that reports
    /// it does nothing else (sync keeps the messages it fetched for the
    /// next call). [`Client::flush`] waits for every reply.
    ///
    /// What DiME2 promised and pipelining changes: a send that returns has
    /// not yet been accepted, so another connection that looks at once may
    /// not see its message yet (this connection's own later calls always
    /// do: the server runs its requests in order); a refused send is
    /// reported late; and a sync that follows a wait returns the messages
    /// the wait fetched without asking the server again (DiME2's
    /// wait-then-sync in one exchange), so a message that reached the
    /// server in between comes with the next sync. A wait written behind
    /// unanswered sends waits at most 0.1 s at first, so that it reports
    /// a failure among them that soon even when nothing arrives.
    ///
    /// The window is clamped to [`pipeline::MAX_WINDOW`], and to
    /// [`pipeline::ORIGINAL_SERVER_WINDOW`] for an original DiME2 server.
    /// Shrinking it reads replies down to the new size; turning it off
    /// first waits for every reply and returns the first failure among
    /// them, if any (pipelining is off either way). Returns the window in
    /// force.
    pub fn set_pipeline(&mut self, window: usize) -> Result<usize> {
        if window == 0 {
            let settled = self.settle_all();
            self.pipeline.set_window(0, 0);
            settled?;
            return self.pipeline.take_failure().map(|()| 0);
        }
        let limit = if self.extensions.is_some() {
            pipeline::MAX_WINDOW
        } else {
            pipeline::ORIGINAL_SERVER_WINDOW
        };
        let window = self.pipeline.set_window(window, limit);
        while self.pipeline.unacked() > window {
            self.settle_one()?;
        }
        Ok(window)
    }

    /// The pipelining window in force: 0 when sends wait for their reply.
    pub fn pipeline_window(&self) -> usize {
        self.pipeline.window()
    }

    /// Sends written but not yet answered (always 0 without pipelining).
    pub fn unacknowledged(&self) -> usize {
        self.pipeline.unacked()
    }

    /// Waits until the server has answered every pipelined send; the
    /// oldest failure not yet reported, if any, is returned (call again
    /// for the next one). Without pipelining there is nothing to wait for.
    pub fn flush(&mut self) -> Result<()> {
        self.catch_up()
    }

    /// Reads the reply of the oldest unanswered send; a refusal is kept
    /// for a later report, a broken connection returned.
    fn settle_one(&mut self) -> Result<()> {
        let outcome = self.read_ok();
        self.pipeline.acknowledge(outcome)
    }

    /// Reads the reply of every unanswered send.
    fn settle_all(&mut self) -> Result<()> {
        while self.pipeline.unacked() > 0 {
            self.settle_one()?;
        }
        Ok(())
    }

    /// Reads the reply of every unanswered send written before a sync
    /// that is now written too: the relayed messages that answer the sync
    /// may come in the same reads, so their descriptors (shared memory)
    /// are kept, as `read_messages` does.
    fn settle_behind_sync(&mut self) -> Result<()> {
        self.reading_relayed = true;
        let settled = self.settle_all();
        self.reading_relayed = false;
        settled
    }

    /// Writes `json` and returns its reply, reading the replies to earlier
    /// pipelined sends on the way (their failures are kept for a later
    /// call to report): for requests the client makes on its own account
    /// (shared-memory setup), or that report those failures themselves.
    fn exchange(&mut self, json: &Json) -> Result<Map<String, Json>> {
        self.write_frame(json, &[])?;
        self.settle_all()?;
        let (obj, _) = self.read_frame()?;
        check_status(obj)
    }

    /// As [`Client::exchange`], for a request already framed.
    fn exchange_framed(&mut self, frame: &[u8]) -> Result<Map<String, Json>> {
        self.write_parts(frame, &[], None)?;
        self.settle_all()?;
        let (obj, _) = self.read_frame()?;
        check_status(obj)
    }

    /// Reads every outstanding reply and returns the oldest failure not
    /// yet reported: what a call that changes something does first, so
    /// that when it reports an earlier send's failure it has done nothing.
    fn catch_up(&mut self) -> Result<()> {
        self.settle_all()?;
        self.pipeline.take_failure()
    }

    fn write_frame(&mut self, json: &Json, payload: &[u8]) -> Result<()> {
        self.write_frame_with(json, payload, None)
    }

    /// Writes one frame, `fd` passed along its first byte. The whole frame
    /// is written under the release link's lock, so a release written by
    /// another thread never lands inside it.
    fn write_frame_with(&mut self, json: &Json, payload: &[u8], fd: Option<RawFd>) -> Result<()> {
        // A length that does not fit the prefix's u32 fields would be
        // wrapped and desync the stream; refuse it before writing a byte.
        let head = try_encode_head(json.to_string().as_bytes(), payload.len())
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        self.write_parts(&head, payload, fd)
    }

    /// Writes one `send` (to `group`) or `broadcast` (None), its header
    /// built straight into a reused buffer: the cost of a pipelined send
    /// is little more than its write.
    fn write_relay(&mut self, group: Option<&str>, relay: &Relay<'_>) -> Result<()> {
        let mut head = std::mem::take(&mut self.head_buf);
        if let Body::Pieces(parts) = relay.body {
            let written = relay_head(group, relay, &mut head)
                .and_then(|()| self.write_gathered(&head, parts));
            self.head_buf = head;
            return written;
        }
        let (payload, fd) = match relay.body {
            Body::Bytes(b) => (b, None),
            Body::Pieces(_) => (&[][..], None),
            Body::Shared { segment, .. } => {
                let fd = self
                    .shm
                    .as_ref()
                    .and_then(|s| s.pool.fd_of(segment))
                    .ok_or_else(|| Error::Protocol("a lent segment went missing".into()));
                (&[][..], Some(fd))
            }
        };
        let written = match fd.transpose() {
            Ok(fd) => relay_head(group, relay, &mut head)
                .and_then(|()| self.write_parts(&head, payload, fd)),
            Err(e) => Err(e),
        };
        self.head_buf = head;
        written
    }

    /// Writes a plain `sync` of `n` messages, its header built straight
    /// into the reused buffer (the call a polling program makes most).
    fn write_sync(&mut self, n: i64) -> Result<()> {
        use crate::wire::{MAGIC, PREFIX_LEN};
        let mut head = std::mem::take(&mut self.head_buf);
        head.clear();
        head.extend_from_slice(&[0; PREFIX_LEN]);
        // A number: written with `write!`, which cannot fail on a Vec.
        let _ = write!(head, r#"{{"command":"sync","n":{n}}}"#);
        let json_len = (head.len() - PREFIX_LEN) as u32;
        head[..4].copy_from_slice(MAGIC);
        head[4..8].copy_from_slice(&json_len.to_be_bytes());
        head[8..12].copy_from_slice(&0u32.to_be_bytes());
        let written = self.write_parts(&head, &[], None);
        self.head_buf = head;
        written
    }

    /// Writes `head` then `payload`, whole, `fd` passed along the first
    /// byte. The whole frame is written under the release link's lock, so
    /// a release written by another thread never lands inside it. On a
    /// socket the write cannot raise SIGPIPE (`MSG_NOSIGNAL`; see
    /// [`Client::writes_raise_sigpipe`]).
    fn write_parts(&mut self, head: &[u8], payload: &[u8], fd: Option<RawFd>) -> Result<()> {
        self.write_slices(&mut [IoSlice::new(head), IoSlice::new(payload)], fd)
    }

    /// Writes `head` then the `parts` of a payload, whole (as
    /// `write_parts`).
    fn write_gathered(&mut self, head: &[u8], parts: &[Part<'_>]) -> Result<()> {
        let mut bufs: Vec<IoSlice> = std::iter::once(head)
            .chain(parts.iter().map(Part::bytes))
            .map(IoSlice::new)
            .collect();
        self.write_slices(&mut bufs, None)
    }

    /// Writes every byte of `bufs` (see `write_parts`).
    fn write_slices(&mut self, bufs: &mut [IoSlice<'_>], fd: Option<RawFd>) -> Result<()> {
        // Releases are written by received mappings, which only exist once
        // this client takes descriptors.
        let _writing = self
            .shm
            .as_ref()
            .filter(|s| s.receiving)
            .map(|s| s.link.lock());
        let mut bufs = bufs;
        let mut fd = fd;
        while !bufs.is_empty() && bufs.iter().any(|b| !b.is_empty()) {
            let written = match fd {
                // SAFETY: the descriptor belongs to a segment in our pool,
                // which is not touched during this call.
                Some(raw) => self
                    .stream
                    .send_with_fds(bufs, &[unsafe { BorrowedFd::borrow_raw(raw) }]),
                None => match self.stream.write_nosignal(bufs) {
                    Some(r) => r,
                    None => {
                        self.raw_writes = true;
                        self.stream.write_vectored(bufs)
                    }
                },
            };
            match written {
                Ok(0) => return Err(closed_by("server")),
                Ok(n) => {
                    // The descriptor went with the first bytes.
                    fd = None;
                    IoSlice::advance_slices(&mut bufs, n)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Encodes `v` for sending: into a shared-memory segment when it is
    /// large enough and one can be had, else into a pooled buffer.
    fn prepare<'v>(&mut self, v: &'v Value) -> std::result::Result<Outgoing<'v>, CodecError> {
        let enc = self.encoding;
        let len = dimeb::checked_encoded_len_with(v, enc)?;
        if self.shm.as_ref().is_some_and(|s| len >= s.threshold) {
            if let Some(mut seg) = self.segment_for(len) {
                // Sealed only once written: a new segment is filled with
                // `pwrite`, which the seals would refuse.
                let filled = shm::encode_to_segment(v, &mut seg, len, enc)
                    .and_then(|()| seg.seal().map_err(FillError::Segment));
                let side = self.shm.as_mut().expect("checked above");
                match filled {
                    Ok(()) => {
                        let segment = side.pool.lend(seg);
                        return Ok(Outgoing::Shared { segment, len });
                    }
                    Err(FillError::Codec(e)) => {
                        let n = side.pool.lend(seg);
                        side.pool.freed(n);
                        return Err(e);
                    }
                    Err(FillError::Segment(e)) => {
                        // The socket can still carry it.
                        log::warn!(
                            "shared-memory segment of {len} bytes failed ({e}); using the socket"
                        );
                    }
                }
            }
        }
        if enc == MatrixEncoding::Native && len >= GATHER_MIN {
            // Native pieces are bytes and stored elements only (nothing is
            // left to convert on the way out); anything else is encoded
            // whole below.
            let parts: Option<Vec<Part>> = dimeb::encode_pieces_with(v, GATHER_IN_PLACE, enc)?
                .into_iter()
                .map(|p| match p {
                    Piece::Bytes(b) => Some(Part::Encoded(b)),
                    Piece::Stored(b) => Some(Part::InPlace(b)),
                    Piece::Elements(_) => None,
                })
                .collect();
            // Without a matrix to write in place, one pooled buffer is
            // cheaper than fresh pieces.
            if let Some(parts) = parts.filter(|p| p.iter().any(|p| matches!(p, Part::InPlace(_)))) {
                return Ok(Outgoing::Pieces(parts));
            }
        }
        encode_pooled(v, enc).map(Outgoing::Inline)
    }

    /// A segment for a `len`-byte payload: a free one, one the broker has
    /// just freed (notices may be waiting unread), or a new one. None when
    /// none can be had: the payload then goes through the socket.
    fn segment_for(&mut self, len: usize) -> Option<Segment> {
        if self.shm.as_ref()?.sending.is_none() {
            // Once, before the first segment: the broker then keeps the
            // descriptors that come with this connection's bytes.
            let ok = self.exchange(&json!({"command": "shm_send"})).is_ok();
            self.shm.as_mut()?.sending = Some(ok);
        }
        let side = self.shm.as_mut().filter(|s| s.sending == Some(true))?;
        if let Some(s) = side.pool.take_free(len) {
            return Some(s);
        }
        let busy_fits = side.pool.busy_fits(len);
        // A recipient that just let go of a segment of this size has most
        // likely been heard of within a moment; a new segment costs a page
        // fault per 4 KiB on first use.
        let wait = if busy_fits {
            SEGMENT_WAIT
        } else {
            Duration::ZERO
        };
        if self.drain_pushes(wait).is_err() {
            return None;
        }
        let side = self.shm.as_mut()?;
        if let Some(s) = side.pool.take_free(len) {
            return Some(s);
        }
        match side.pool.create(len) {
            Ok(s) => s,
            Err(e) => {
                log::warn!("no shared-memory segment of {len} bytes ({e}); using the socket");
                None
            }
        }
    }

    /// Writes a request whose payload is `out`.
    fn send_outgoing(&mut self, mut header: Json, out: &Outgoing) -> Result<()> {
        match out {
            Outgoing::Inline(p) => self.write_frame(&header, p),
            Outgoing::Pieces(parts) => {
                let len = out.body().in_frame();
                let head = try_encode_head(header.to_string().as_bytes(), len)
                    .map_err(|e| Error::InvalidArgument(e.to_string()))?;
                self.write_gathered(&head, parts)
            }
            Outgoing::Shared { segment, len } => {
                header["shm"] = json!({"len": len, "segment": segment});
                let fd = self
                    .shm
                    .as_ref()
                    .and_then(|s| s.pool.fd_of(*segment))
                    .ok_or_else(|| Error::Protocol("a lent segment went missing".into()))?;
                self.write_frame_with(&header, &[], Some(fd))
            }
        }
    }

    /// Handles a meta message; false if `obj` is not one.
    fn take_meta(&mut self, obj: &Map<String, Json>) -> bool {
        let is_meta = obj.get("meta").and_then(Json::as_bool) == Some(true)
            && obj
                .get("status")
                .and_then(Json::as_i64)
                .is_some_and(|s| s > 0);
        if !is_meta {
            return false;
        }
        match obj.get("command").and_then(Json::as_str) {
            Some("reregister") => {
                if let Some(s) = obj.get("serialization").and_then(Json::as_str) {
                    self.serialization = s.to_owned();
                }
            }
            Some("shm_free") => {
                if let (Some(side), Some(n)) =
                    (self.shm.as_mut(), obj.get("segment").and_then(Json::as_u64))
                {
                    side.pool.freed(n);
                }
            }
            _ => {}
        }
        true
    }

    /// Reads whatever has arrived unasked (meta messages: a segment freed,
    /// a serialization switch) without blocking, waiting up to `wait` for
    /// a segment to be freed. Only called with no request outstanding, so
    /// anything else read is kept for the next read.
    fn drain_pushes(&mut self, wait: Duration) -> Result<()> {
        let deadline = Instant::now() + wait;
        let free_before = self.shm.as_ref().map_or(0, |s| s.pool.free_count());
        loop {
            while let Some(f) = self
                .reader
                .next_frame()
                .map_err(|e| Error::Protocol(e.to_string()))?
            {
                let meta = serde_json::from_slice::<Map<String, Json>>(f.json())
                    .is_ok_and(|obj| self.take_meta(&obj));
                if !meta {
                    self.early.push_back(f);
                }
            }
            if self.shm.as_ref().map_or(0, |s| s.pool.free_count()) > free_before {
                return Ok(());
            }
            match self.read_some(true) {
                Ok(0) => return Err(closed_by("server")),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        return Ok(());
                    }
                    std::thread::yield_now();
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// One read into the frame reader, keeping descriptors that come with
    /// the bytes when shared memory is on.
    fn read_some(&mut self, dontwait: bool) -> io::Result<usize> {
        match self
            .shm
            .as_mut()
            .filter(|s| s.receiving && self.reading_relayed)
        {
            Some(side) => self.reader.read_from(&mut ReadWithFds {
                transport: &mut *self.stream,
                fds: &mut side.fds,
                dontwait,
            }),
            None if dontwait => self.reader.read_from(&mut DontWait(&mut *self.stream)),
            None => self.reader.read_from(&mut *self.stream),
        }
    }

    /// The address this client is connected to.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Whether a write to this connection may raise SIGPIPE when the
    /// server has gone (a WebSocket connection): a library embedded in
    /// another program then blocks the signal around its calls. Socket
    /// writes never raise it.
    pub fn writes_raise_sigpipe(&self) -> bool {
        self.raw_writes
    }

    /// Reads the next frame, handling meta messages on the way.
    fn read_frame(&mut self) -> Result<(Map<String, Json>, PooledBuf)> {
        self.read_frame_until(None)?
            .ok_or_else(|| Error::Protocol("no frame and no deadline".into()))
    }

    /// As `read_frame`, giving up (None) at `deadline`.
    pub(crate) fn read_frame_until(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Option<(Map<String, Json>, PooledBuf)>> {
        loop {
            let Some(frame) = self.next_raw_frame(deadline)? else {
                return Ok(None);
            };
            if let Some(reply) = self.unless_meta(frame)? {
                return Ok(Some(reply));
            }
        }
    }

    /// Reads the next reply, which must be a bare success or failure status
    /// (the reply to a send): `Ok` for success, the failure otherwise. A
    /// plain `{"status":0}`, what our server sends, is taken as it is,
    /// unparsed: a pipelined send's reply costs little more than its bytes.
    fn read_ok(&mut self) -> Result<()> {
        loop {
            let Some(frame) = self.next_raw_frame(None)? else {
                return Err(Error::Protocol("no frame and no deadline".into()));
            };
            if frame.json() == STATUS_OK {
                return Ok(());
            }
            if let Some((obj, _)) = self.unless_meta(frame)? {
                return check_status(obj).map(drop);
            }
        }
    }

    /// The header and payload of `frame`, or None for a meta message,
    /// which is handled here.
    fn unless_meta(&mut self, frame: Frame) -> Result<Option<(Map<String, Json>, PooledBuf)>> {
        let json: Json = match serde_json::from_slice(frame.json()) {
            Ok(json) => json,
            Err(e) => relayed_fields(frame.json())
                .ok_or_else(|| Error::Protocol(format!("invalid JSON from server: {e}")))?,
        };
        let Json::Object(obj) = json else {
            return Err(Error::Protocol("server header is not a JSON object".into()));
        };
        if self.take_meta(&obj) {
            return Ok(None);
        }
        Ok(Some((obj, frame.payload)))
    }

    /// The next frame; None once `deadline` passes without one.
    fn next_raw_frame(&mut self, deadline: Option<Instant>) -> Result<Option<Frame>> {
        if let Some(f) = self.early.pop_front() {
            return Ok(Some(f));
        }
        loop {
            if let Some(f) = self
                .reader
                .next_frame()
                .map_err(|e| Error::Protocol(e.to_string()))?
            {
                return Ok(Some(f));
            }
            if let Some(d) = deadline {
                if !self.stream.has_buffered_input() && !readable_before(&*self.stream, d)? {
                    return Ok(None);
                }
            }
            // A reply usually arrives within tens of microseconds: poll for
            // it briefly (yielding the CPU to anything runnable, such as the
            // server) before a blocking read, which would pay a sleep and a
            // wake-up, the larger part of a small round trip here.
            let spin_until = Instant::now() + SPIN;
            let read = loop {
                match self.read_some(true) {
                    Err(e)
                        if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < spin_until =>
                    {
                        std::thread::yield_now()
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::Unsupported
                        ) =>
                    {
                        break self.read_some(false);
                    }
                    other => break other,
                }
            };
            match read {
                Ok(0) => return Err(closed_by("server")),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Sends any request and returns the success reply (extension point for
    /// new command families).
    pub fn request(&mut self, json: Json) -> Result<Map<String, Json>> {
        self.request_with_payload(json, &[]).map(|(m, _)| m)
    }

    /// Sends a request with a payload; returns the reply and its payload.
    pub fn request_with_payload(
        &mut self,
        json: Json,
        payload: &[u8],
    ) -> Result<(Map<String, Json>, PooledBuf)> {
        self.catch_up()?;
        self.write_frame(&json, payload)?;
        let (obj, payload) = self.read_frame()?;
        Ok((check_status(obj)?, payload))
    }

    /// Joins one or more groups.
    pub fn join(&mut self, groups: &[&str]) -> Result<()> {
        self.request(json!({"command": "join", "name": groups}))
            .map(drop)
    }

    /// Leaves one or more groups.
    pub fn leave(&mut self, groups: &[&str]) -> Result<()> {
        self.request(json!({"command": "leave", "name": groups}))
            .map(drop)
    }

    /// Sends one value to every member of `group`.
    pub fn send(&mut self, group: &str, varname: &str, value: &Value) -> Result<()> {
        self.send_many(group, &[(varname, value)])
    }

    /// Sends several values to `group`, pipelining the requests.
    pub fn send_many(&mut self, group: &str, vars: &[(&str, &Value)]) -> Result<()> {
        self.relay_many(Some(group), vars)
    }

    /// Sends one value to every other connected client.
    pub fn broadcast(&mut self, varname: &str, value: &Value) -> Result<()> {
        self.broadcast_many(&[(varname, value)])
    }

    /// Broadcasts several values, pipelining the requests.
    pub fn broadcast_many(&mut self, vars: &[(&str, &Value)]) -> Result<()> {
        self.relay_many(None, vars)
    }

    fn relay_many(&mut self, group: Option<&str>, vars: &[(&str, &Value)]) -> Result<()> {
        // An earlier pipelined send's failure is reported before anything
        // of this call is done (a segment taken, a request written).
        self.pipeline.take_failure()?;
        // Encode everything first: a value that cannot be encoded sends nothing.
        let enc = self.encoding;
        let mut payloads = Vec::with_capacity(vars.len());
        for (name, v) in vars {
            match self.prepare(v) {
                Ok(out) => payloads.push(out),
                Err(e) => {
                    self.unlend_all(&payloads);
                    return Err(Error::InvalidArgument(format!(
                        "variable '{name}': {}",
                        e.0
                    )));
                }
            }
        }
        let relays: Vec<Relay<'_>> = vars
            .iter()
            .zip(&payloads)
            .map(|((name, v), out)| Relay {
                varname: name,
                body: out.body(),
                layout: enc == MatrixEncoding::Native && dimeb::has_matrix(v),
            })
            .collect();
        let mut written = 0;
        let sent = self.relay(group, &relays, &mut written);
        // Segments lent for requests that were never written go back to
        // the pool (nobody else would ever free them).
        self.unlend_all(&payloads[written..]);
        sent
    }

    /// Takes back the segment of a payload that was prepared but will not
    /// be sent.
    fn unlend(&mut self, out: &Outgoing) {
        if let (Outgoing::Shared { segment, .. }, Some(side)) = (out, self.shm.as_mut()) {
            side.pool.freed(*segment);
        }
    }

    fn unlend_all(&mut self, outs: &[Outgoing<'_>]) {
        for out in outs {
            self.unlend(out);
        }
    }

    /// Writes one `send` (to `group`) or `broadcast` (None) per relay:
    /// pipelined when pipelining is on, else DiME2's way, waiting for the
    /// replies. `written` counts the requests written.
    fn relay(
        &mut self,
        group: Option<&str>,
        relays: &[Relay<'_>],
        written: &mut usize,
    ) -> Result<()> {
        self.pipeline.take_failure()?;
        if self.pipeline.window() == 0 {
            self.relay_and_wait(group, relays, written)
        } else {
            self.relay_pipelined(group, relays, written)
        }
    }

    /// DiME2's sends: up to [`BATCH`] requests written, then their replies
    /// read; if the server refuses some, the rest are still sent and the
    /// first refusal is returned.
    fn relay_and_wait(
        &mut self,
        group: Option<&str>,
        relays: &[Relay<'_>],
        written: &mut usize,
    ) -> Result<()> {
        let mut first_err = None;
        for chunk in relays.chunks(BATCH) {
            for relay in chunk {
                self.write_relay(group, relay)?;
                *written += 1;
                self.pipeline.written(group, relay.varname, false);
            }
            for _ in chunk {
                if let Err(e) = self.read_ok() {
                    if matches!(e, Error::ConnectionLost(_) | Error::Protocol(_)) {
                        return Err(e);
                    }
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Pipelined sends: room is made for the whole call first, and an
    /// earlier send's failure found on the way is returned before anything
    /// of this call is written. A full window is read down to half (or to
    /// nothing, for a call larger than the window): replies are then read
    /// in batches, where reading one reply per send would pay a read, and
    /// often a wait for the server, per send. A call larger than the
    /// window reads its own first replies as it goes and returns the first
    /// of its own failures, if any, once everything is written.
    fn relay_pipelined(
        &mut self,
        group: Option<&str>,
        relays: &[Relay<'_>],
        written: &mut usize,
    ) -> Result<()> {
        let window = self.pipeline.window();
        if self.pipeline.unacked() + relays.len() > window {
            let low = (window / 2).min(window.saturating_sub(relays.len()));
            while self.pipeline.unacked() > low {
                self.settle_one()?;
            }
        }
        self.pipeline.take_failure()?;
        for relay in relays {
            if self.pipeline.unacked() >= window {
                self.settle_one()?;
            }
            self.write_relay(group, relay)?;
            *written += 1;
            self.pipeline.written(group, relay.varname, true);
        }
        self.pipeline.take_failure()
    }

    /// Relays of already-encoded payloads, marked as holding
    /// `dimeb_layout` matrices where they do. Each payload must be one
    /// well-formed dimeb value (checked here: a broken one would reach
    /// every recipient as a value they cannot decode), and may hold
    /// layout-encoded matrices only if this connection negotiated them.
    fn encoded_relays<'a>(&self, vars: &[(&'a str, &'a [u8])]) -> Result<Vec<Relay<'a>>> {
        vars.iter()
            .map(|&(varname, payload)| {
                let layout = dimeb::uses_layout(payload).map_err(|e| {
                    Error::InvalidArgument(format!(
                        "variable '{varname}' is not one dimeb value: {}",
                        e.0
                    ))
                })?;
                if layout && self.encoding != MatrixEncoding::Native {
                    return Err(Error::InvalidArgument(format!(
                        "variable '{varname}' holds matrices in the dimeb_layout encoding, \
                         which this connection did not negotiate"
                    )));
                }
                Ok(Relay {
                    varname,
                    body: Body::Bytes(payload),
                    layout,
                })
            })
            .collect()
    }

    fn relay_encoded(&mut self, group: Option<&str>, vars: &[(&str, &[u8])]) -> Result<()> {
        let relays = self.encoded_relays(vars)?;
        self.relay(group, &relays, &mut 0)
    }

    /// Sends an already-encoded dimeb payload to `group` (no copy). It
    /// must be one well-formed dimeb value, with matrices in the
    /// `dimeb_layout` encoding only where [`Client::matrix_encoding`] is
    /// native (`Error::InvalidArgument` otherwise, nothing sent).
    pub fn send_encoded(&mut self, group: &str, varname: &str, payload: &[u8]) -> Result<()> {
        self.relay_encoded(Some(group), &[(varname, payload)])
    }

    /// Broadcasts an already-encoded dimeb payload (no copy; as
    /// [`Client::send_encoded`]).
    pub fn broadcast_encoded(&mut self, varname: &str, payload: &[u8]) -> Result<()> {
        self.relay_encoded(None, &[(varname, payload)])
    }

    /// Sends several already-encoded payloads to `group`, as
    /// [`Client::send_many`] (each as in [`Client::send_encoded`]; all are
    /// checked before anything is sent).
    pub fn send_encoded_many(&mut self, group: &str, vars: &[(&str, &[u8])]) -> Result<()> {
        self.relay_encoded(Some(group), vars)
    }

    /// Broadcasts several already-encoded payloads, as
    /// [`Client::broadcast_many`] (each as in [`Client::send_encoded`]).
    pub fn broadcast_encoded_many(&mut self, vars: &[(&str, &[u8])]) -> Result<()> {
        self.relay_encoded(None, vars)
    }

    /// Receives up to `n` queued messages (all when `n < 0`), undecoded.
    pub fn sync_messages(&mut self, n: i64) -> Result<Vec<Message>> {
        self.sync_request(n, None)
    }

    /// Blocks until at least one message is queued (or `timeout` passes:
    /// `Error::Timeout`), then receives up to `n` (all when `n < 0`), in one
    /// exchange with the server instead of `wait` + `sync`.
    pub fn receive_messages(&mut self, n: i64, timeout: Option<Duration>) -> Result<Vec<Message>> {
        self.sync_request(n, Some(timeout))
    }

    /// As [`Client::receive_messages`], decoded.
    pub fn receive(&mut self, n: i64, timeout: Option<Duration>) -> Result<Vec<(String, Value)>> {
        self.receive_messages(n, timeout)?
            .into_iter()
            .map(|m| Ok((m.varname.clone(), m.into_value()?)))
            .collect()
    }

    /// Sends `value` to `group` and, in the same exchange, blocks for this
    /// client's next messages (up to `n`, all when `n < 0`; `Error::Timeout`
    /// after `timeout`): a request/reply round trip costs one exchange.
    /// If the send fails, its error is returned and nothing is received.
    pub fn send_receive(
        &mut self,
        group: &str,
        varname: &str,
        value: &Value,
        n: i64,
        timeout: Option<Duration>,
    ) -> Result<Vec<(String, Value)>> {
        if !self.supports(extensions::SEND_RECEIVE) {
            // DiME2's way, in two exchanges (an original server would relay
            // "receive" and answer a bare status).
            self.send(group, varname, value)?;
            return self.receive(n, timeout);
        }
        // It blocks: earlier sends' failures are reported before, not after
        // (and before a segment is taken: nothing is outstanding after).
        self.catch_up()?;
        let payload = self
            .prepare(value)
            .map_err(|e| Error::InvalidArgument(format!("variable '{varname}': {}", e.0)))?;
        let mut req = mark_layout(relay_header(Some(group), varname), value, self.encoding);
        req["receive"] = json!(true);
        req["n"] = json!(n);
        if let Some(t) = timeout {
            req["timeout"] = json!(t.as_secs_f64() * 1000.0);
        }
        let deadline = timeout.map(|t| Instant::now().checked_add(t));
        self.send_outgoing(req, &payload)?;
        self.pipeline.written(Some(group), varname, false);
        let mut got = self.read_messages(Vec::new())?;
        if got.is_empty() {
            // Every message it was woken for was aborted by its sender
            // (cut-through): the send is done, wait on for a reply.
            got = self.receive_messages(n, time_left(deadline)?)?;
        }
        got.into_iter()
            .map(|m| Ok((m.varname.clone(), m.into_value()?)))
            .collect()
    }

    /// `sync`, optionally blocking (`wait`) with an optional timeout.
    fn sync_request(&mut self, n: i64, wait: Option<Option<Duration>>) -> Result<Vec<Message>> {
        self.pipeline.take_failure()?;
        let mut out: Vec<Message> = Vec::new();
        let mut want = n;
        while want != 0 {
            match self.stash.pop_front() {
                Some(m) => {
                    out.push(m);
                    want -= 1;
                }
                None => break,
            }
        }
        // With pipelining on, what a wait fetched is the sync's answer: a
        // wait then a sync cost one exchange, not two (messages that came
        // to the server in between come with the next sync).
        if want == 0 || (!out.is_empty() && wait.is_none() && self.pipeline.window() > 0) {
            return Ok(out);
        }
        // Messages already in hand end a wait.
        let wait = wait.filter(|_| out.is_empty());
        if let Some(timeout) = wait {
            if !self.supports(extensions::SYNC_WAIT) {
                // An original DiME2 server answers a sync with "wait" as a
                // plain sync, at once: wait its own way (after the earlier
                // sends' answers: its wait may block for long), then sync.
                self.catch_up()?;
                self.wait_dime2(timeout)?;
                return self.sync_request(want, None);
            }
            if self.pipeline.unacked() > 0 {
                return self.wait_behind_sends(want, timeout);
            }
        }
        let deadline = wait.flatten().map(|t| Instant::now().checked_add(t));
        // Written before the replies to earlier sends are read, so a sync
        // right after sends costs one exchange; those replies come first.
        match wait {
            None => self.write_sync(want)?,
            Some(timeout) => {
                let mut req = json!({"command": "sync", "n": want, "wait": true});
                if let Some(t) = timeout {
                    req["timeout"] = json!(t.as_secs_f64() * 1000.0);
                }
                self.write_frame(&req, &[])?;
            }
        }
        self.settle_behind_sync()?;
        let got = self.read_messages(out);
        if self.pipeline.has_failure() {
            // Report the earlier send's failure; what this sync fetched is
            // kept for the next call (the stash was empty, see above).
            match got {
                Ok(msgs) => self.stash.extend(msgs),
                Err(e @ (Error::ConnectionLost(_) | Error::Protocol(_))) => return Err(e),
                Err(_) => {}
            }
            return self.pipeline.take_failure().map(|()| Vec::new());
        }
        match got {
            // Every message this wait was woken for was aborted by its
            // sender (cut-through): wait on for the rest of the time.
            Ok(msgs) if msgs.is_empty() && wait.is_some() => {
                self.sync_request(n, Some(time_left(deadline)?))
            }
            other => other,
        }
    }

    /// A waiting sync written right behind unanswered pipelined sends, so
    /// that send-then-wait (DiME2's request and reply) costs the client one
    /// exchange and the server one wake-up. The first wait is capped at
    /// [`FIRST_WAIT`], so that a failure among the sends, read before the
    /// wait's reply, is reported that soon at the latest even when nothing
    /// arrives (what this wait fetched is then kept for the next call);
    /// the rest of `timeout` is waited for after.
    fn wait_behind_sends(&mut self, n: i64, timeout: Option<Duration>) -> Result<Vec<Message>> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let first = timeout.map_or(FIRST_WAIT, |t| t.min(FIRST_WAIT));
        let mut req = json!({"command": "sync", "n": n, "wait": true});
        req["timeout"] = json!(first.as_secs_f64() * 1000.0);
        self.write_frame(&req, &[])?;
        self.settle_behind_sync()?;
        let got = self.read_messages(Vec::new());
        if self.pipeline.has_failure() {
            match got {
                Ok(msgs) => self.stash.extend(msgs),
                Err(e @ (Error::ConnectionLost(_) | Error::Protocol(_))) => return Err(e),
                Err(_) => {}
            }
            return self.pipeline.take_failure().map(|()| Vec::new());
        }
        match got {
            Err(Error::Timeout) if timeout.is_none_or(|t| t > first) => {
                // Every send is answered now: wait out the rest plainly.
                let rest = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                self.sync_request(n, Some(rest))
            }
            // Every message it was woken for was aborted (cut-through).
            Ok(msgs) if msgs.is_empty() && n != 0 => {
                let rest = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                if rest.is_some_and(|r| r.is_zero()) {
                    return Err(Error::Timeout);
                }
                self.sync_request(n, Some(rest))
            }
            other => other,
        }
    }

    /// Reads relayed messages until the closing status reply.
    fn read_messages(&mut self, out: Vec<Message>) -> Result<Vec<Message>> {
        self.reading_relayed = true;
        let r = self.read_relayed(out);
        self.reading_relayed = false;
        if r.is_ok() && self.shm.as_ref().is_some_and(|s| s.want_receiving) {
            // Nothing is outstanding now: ask for descriptors from here on.
            let ok = self.exchange(&json!({"command": "shm_receive"})).is_ok();
            if let Some(side) = self.shm.as_mut() {
                side.want_receiving = false;
                side.receiving = ok;
            }
        }
        r
    }

    fn read_relayed(&mut self, mut out: Vec<Message>) -> Result<Vec<Message>> {
        // Messages already in hand (kept from an earlier reply) come first.
        let first = out.len();
        loop {
            let Some(frame) = self.next_raw_frame(None)? else {
                return Err(Error::Protocol("no frame and no deadline".into()));
            };
            // The closing reply as our server writes it, taken unparsed.
            if frame.json() == STATUS_OK {
                return Ok(out);
            }
            let Some((obj, payload)) = self.unless_meta(frame)? else {
                continue;
            };
            if obj.contains_key("status") {
                let obj = check_status(obj)?;
                drop_aborted(&obj, &mut out, first)?;
                return Ok(out);
            }
            let field = |k: &str| obj.get(k).and_then(Json::as_str);
            let mut m = Message::new(
                field("varname").unwrap_or_default().to_owned(),
                // DiME2 makes "serialization" optional in a send: such a
                // payload is in the one the session negotiated.
                field("serialization")
                    .unwrap_or(&self.serialization)
                    .to_owned(),
                payload,
            );
            if let Some(shm) = obj.get("shm") {
                m.mapped = Some(self.map_received(shm));
            } else if let Some(side) = self.shm.as_mut() {
                side.want_receiving |= !side.receiving && m.payload.len() >= side.threshold;
            }
            out.push(m);
        }
    }

    /// Maps the shared-memory payload a relayed header announces: the next
    /// descriptor received, checked (never trusting the header) and mapped
    /// privately; dropping the mapping tells the broker.
    fn map_received(&mut self, field: &Json) -> std::result::Result<Arc<Mapping>, String> {
        let side = self
            .shm
            .as_mut()
            .ok_or("a shared-memory message on a connection that did not negotiate it")?;
        let fd = side
            .fds
            .pop_front()
            .ok_or("a shared-memory message came without its descriptor")?;
        let len = field
            .get("len")
            .and_then(Json::as_u64)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or("a shared-memory message without a valid \"len\"")?;
        let m = Mapping::open(fd, len).map_err(|e| format!("shared memory: {e}"))?;
        m.on_release(ReleaseLink::releaser(&side.link));
        Ok(Arc::new(m))
    }

    /// Receives up to `n` queued messages (all when `n < 0`) undecoded,
    /// each checked to be one well-formed dimeb value: for a caller that
    /// decodes them itself. If one is not (another serialization, or
    /// broken), the error names it, and the messages before and after it
    /// are kept for the next call.
    pub fn sync_checked(&mut self, n: i64) -> Result<Vec<Message>> {
        let mut msgs = self.sync_messages(n)?;
        let failed = msgs
            .iter()
            .enumerate()
            .find_map(|(i, m)| m.check().err().map(|e| (i, e)));
        let Some((bad, err)) = failed else {
            return Ok(msgs);
        };
        let rest = msgs.split_off(bad + 1);
        msgs.truncate(bad);
        for m in msgs.into_iter().chain(rest).rev() {
            self.stash.push_front(m);
        }
        Err(err)
    }

    /// Receives up to `n` messages (all when `n < 0`) and decodes them.
    /// If one cannot be decoded, the error names it and the messages after
    /// it are kept for the next call.
    pub fn sync(&mut self, n: i64) -> Result<Vec<(String, Value)>> {
        let mut msgs = self.sync_messages(n)?.into_iter();
        let mut out = Vec::new();
        for m in msgs.by_ref() {
            let name = m.varname.clone();
            match m.into_value() {
                Ok(v) => out.push((name, v)),
                Err(e) => {
                    // Keep the ones already decoded and the rest for the next sync.
                    let rest: Vec<Message> = msgs.collect();
                    for (name, v) in out.into_iter().rev() {
                        self.stash.push_front(Message::new(
                            name,
                            "dimeb".into(),
                            PooledBuf::from_vec(dimeb::encode(&v)?),
                        ));
                    }
                    self.stash.extend(rest);
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    /// Blocks until at least one message is queued for this client, or the
    /// timeout passes (`None` waits forever). Returns the number queued.
    pub fn wait(&mut self, timeout: Option<Duration>) -> Result<usize> {
        self.pipeline.take_failure()?;
        if !self.stash.is_empty() {
            return Ok(self.stash.len());
        }
        if !self.supports(extensions::SYNC_WAIT) {
            // DiME2's wait may block for long: earlier sends' failures first.
            self.catch_up()?;
            return self.wait_dime2(timeout);
        }
        // Fetch the messages in the same exchange (a sync that waits) and
        // keep them for the next sync: DiME2's wait-then-sync costs one
        // round trip to the server instead of two.
        let msgs = self.receive_messages(-1, timeout)?;
        let n = msgs.len();
        self.stash.extend(msgs);
        Ok(n)
    }

    /// `wait` with DiME2's commands only (for an original server): without
    /// a timeout DiME2's own `wait`, which blocks in the server; with one,
    /// polls with `sync`, since the original server ignores a `wait`'s
    /// timeout and a `wait` once sent cannot be withdrawn. Polled messages
    /// are kept for the next sync. Returns the number of messages queued.
    fn wait_dime2(&mut self, timeout: Option<Duration>) -> Result<usize> {
        if !self.stash.is_empty() {
            return Ok(self.stash.len());
        }
        let Some(timeout) = timeout else {
            let reply = self.request(json!({"command": "wait"}))?;
            return reply
                .get("n")
                .and_then(Json::as_u64)
                .map(|n| n as usize)
                .ok_or_else(|| Error::Protocol("wait reply has no count".into()));
        };
        let msgs = self.poll_messages(timeout)?;
        let n = msgs.len();
        self.stash.extend(msgs);
        Ok(n)
    }

    /// Syncs until at least one message comes, pausing between polls
    /// (`POLL_FIRST` doubling up to `POLL_LONGEST`, never past the
    /// deadline); `Error::Timeout` once `timeout` has passed.
    fn poll_messages(&mut self, timeout: Duration) -> Result<Vec<Message>> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let msgs = self.sync_messages(-1)?;
            if !msgs.is_empty() {
                self.poll_pause = POLL_FIRST;
                return Ok(msgs);
            }
            let now = Instant::now();
            let left = match deadline {
                Some(d) if d <= now => return Err(Error::Timeout),
                Some(d) => d - now,
                None => Duration::MAX,
            };
            std::thread::sleep(self.poll_pause.min(left));
            self.poll_pause = (self.poll_pause * 2).min(POLL_LONGEST);
        }
    }

    /// Names of every group with at least one member.
    pub fn devices(&mut self) -> Result<Vec<String>> {
        self.pipeline.take_failure()?;
        // Written before the replies to earlier sends are read (one
        // exchange); a failure among them is reported instead of the list.
        let reply = match self.exchange_framed(DEVICES_REQUEST) {
            Err(e @ (Error::ConnectionLost(_) | Error::Protocol(_))) => return Err(e),
            other => other,
        };
        self.pipeline.take_failure()?;
        let reply = reply?;
        let list = reply
            .get("devices")
            .and_then(Json::as_array)
            .ok_or_else(|| Error::Protocol("devices reply has no list".into()))?;
        Ok(list
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect())
    }

    /// Watches joins and leaves of groups whose names start with `prefix`
    /// ("" for all), on a connection of its own, resuming after `resume`
    /// if given.
    pub fn watch_groups(
        &self,
        prefix: &str,
        resume: Option<watch::Position>,
    ) -> Result<watch::Watch> {
        let target = watch::Target::Groups {
            prefix: prefix.to_owned(),
        };
        watch::Watch::open(&self.address, target, resume)
    }

    /// Waits for the replies to pipelined sends, then closes the
    /// connection; returns the oldest failure not yet reported, if any
    /// (the connection is closed either way). Dropping a client closes it
    /// without waiting: the server still runs every request written, but
    /// their failures go unreported.
    pub fn close(mut self) -> Result<()> {
        self.catch_up()
    }
}

/// Waits until `stream` has input or `deadline` passes; true if it has.
fn readable_before(stream: &dyn Transport, deadline: Instant) -> Result<bool> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = i32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX);
        let mut p = libc::pollfd {
            fd: stream.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut p, 1, ms) };
        if n > 0 {
            return Ok(true);
        }
        if n == 0 {
            if Instant::now() >= deadline {
                return Ok(false);
            }
            continue;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e.into());
        }
    }
}

/// Encodes `v` (matrices as `enc` says) into a buffer from this thread's
/// pool: sending a large value again then reuses memory that is already
/// mapped instead of faulting in a fresh allocation (about 40 ms per 100 MB
/// here). Refuses, before allocating, a value whose encoding would not fit
/// a frame's u32 payload length, and reports an allocation failure instead
/// of aborting.
fn encode_pooled(v: &Value, enc: MatrixEncoding) -> std::result::Result<PooledBuf, CodecError> {
    let len = dimeb::checked_encoded_len_with(v, enc)?;
    let mut buf = PooledBuf::try_with_capacity(len).map_err(|e| {
        CodecError(format!(
            "cannot allocate {len} bytes to encode a value: {e}"
        ))
    })?;
    dimeb::encode_into_with(v, &mut buf, enc)?;
    Ok(buf)
}

/// `header` marked as carrying `dimeb_layout` matrices when `v`, encoded
/// with `enc`, does: the broker then converts it for recipients that read
/// only DiME2's encoding. Values without a matrix are the same bytes in
/// both encodings and go unmarked, so nobody converts them.
fn mark_layout(mut header: Json, v: &Value, enc: MatrixEncoding) -> Json {
    if enc == MatrixEncoding::Native && dimeb::has_matrix(v) {
        header["dimeb_layout"] = json!(true);
    }
    header
}

/// Writes the prefix and JSON header of `relay` into `out` (cleared
/// first): the header [`relay_header`] and [`Client::send_outgoing`] would
/// write, with `"dimeb_layout"` and `"shm"` where they apply.
fn relay_head(group: Option<&str>, relay: &Relay<'_>, out: &mut Vec<u8>) -> Result<()> {
    let too_large = |e: crate::wire::WireError| Error::InvalidArgument(e.to_string());
    let in_frame = relay.body.in_frame();
    let payload_len = crate::wire::field_len("payload", in_frame).map_err(too_large)?;
    out.clear();
    out.extend_from_slice(&[0; crate::wire::PREFIX_LEN]);
    // serde_json writes each name as a JSON string, escaped.
    let strings = |out: &mut Vec<u8>, s: &str| serde_json::to_writer(out, s);
    let written = match group {
        Some(g) => {
            out.extend_from_slice(br#"{"command":"send","name":"#);
            strings(out, g)
        }
        None => {
            out.extend_from_slice(br#"{"command":"broadcast""#);
            Ok(())
        }
    };
    written
        .and_then(|()| {
            out.extend_from_slice(br#","varname":"#);
            strings(out, relay.varname)
        })
        .map_err(|e| Error::InvalidArgument(e.to_string()))?;
    out.extend_from_slice(br#","serialization":"dimeb""#);
    if relay.layout {
        out.extend_from_slice(br#","dimeb_layout":true"#);
    }
    if let Body::Shared { segment, len } = relay.body {
        // Plain numbers: written with `write!`, which cannot fail on a Vec.
        let _ = write!(out, r#","shm":{{"len":{len},"segment":{segment}}}"#);
    }
    out.push(b'}');
    let json_len = crate::wire::field_len("JSON header", out.len() - crate::wire::PREFIX_LEN)
        .map_err(too_large)?;
    out[..4].copy_from_slice(crate::wire::MAGIC);
    out[4..8].copy_from_slice(&json_len.to_be_bytes());
    out[8..12].copy_from_slice(&payload_len.to_be_bytes());
    Ok(())
}

fn relay_header(group: Option<&str>, varname: &str) -> Json {
    match group {
        Some(g) => {
            json!({"command": "send", "name": g, "varname": varname, "serialization": "dimeb"})
        }
        None => json!({"command": "broadcast", "varname": varname, "serialization": "dimeb"}),
    }
}

/// What is left of a wait's timeout that ends at `deadline` (None: no
/// timeout; Some(None): past the clock's range, so none either);
/// `Error::Timeout` once it has passed.
fn time_left(deadline: Option<Option<Instant>>) -> Result<Option<Duration>> {
    match deadline.flatten() {
        None => Ok(None),
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout);
            }
            Ok(Some(left))
        }
    }
}

/// Drops the messages a sync reply's closing status names in `"aborted"`
/// (`cut_through`): positions in this reply, whose messages start at
/// `out[first]`. Their senders went away mid-payload, so their bytes past
/// that point are zeros the broker wrote to keep the stream in step.
fn drop_aborted(status: &Map<String, Json>, out: &mut Vec<Message>, first: usize) -> Result<()> {
    let Some(list) = status.get("aborted") else {
        return Ok(());
    };
    let bad = || {
        Error::Protocol(format!(
            "a sync reply's \"aborted\" is not a list of its positions: {list}"
        ))
    };
    let mut at = list
        .as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|k| {
            k.as_u64()
                .and_then(|k| usize::try_from(k).ok())
                .filter(|k| first + k < out.len())
                .ok_or_else(bad)
        })
        .collect::<Result<Vec<usize>>>()?;
    at.sort_unstable();
    at.dedup();
    for k in at.into_iter().rev() {
        out.remove(first + k);
    }
    Ok(())
}

pub(crate) fn check_status(obj: Map<String, Json>) -> Result<Map<String, Json>> {
    match obj.get("status").and_then(Json::as_i64) {
        Some(s) if s >= 0 => Ok(obj),
        Some(_) if obj.get("timeout") == Some(&Json::Bool(true)) => Err(Error::Timeout),
        Some(_) if obj.get("denied") == Some(&Json::Bool(true)) => Err(Error::NotPermitted(
            obj.get("error")
                .and_then(Json::as_str)
                .unwrap_or("refused")
                .to_owned(),
        )),
        Some(_) => Err(Error::Server(
            obj.get("error")
                .and_then(Json::as_str)
                .unwrap_or("unknown error")
                .to_owned(),
        )),
        None => Err(Error::Protocol("reply has no status".into())),
    }
}

/// The fields a client reads from a relayed message's header, when the
/// whole header does not parse as a `serde_json::Value`. Another client
/// wrote that header and the server relays it unchanged; a number no f64
/// holds (`1e400`, which other JSON readers take as infinity) in a field
/// nobody reads must not make every recipient's sync fail. Unknown fields
/// are skipped without converting their numbers; either field may be
/// absent, as DiME2 senders need not give them.
fn relayed_fields(text: &[u8]) -> Option<Json> {
    #[derive(serde::Deserialize)]
    struct Relayed {
        varname: Option<String>,
        serialization: Option<String>,
        shm: Option<Json>,
    }
    let r: Relayed = serde_json::from_slice(text).ok()?;
    let mut fields = Map::new();
    if let Some(shm) = r.shm {
        fields.insert("shm".into(), shm);
    }
    if let Some(v) = r.varname {
        fields.insert("varname".into(), Json::String(v));
    }
    if let Some(s) = r.serialization {
        fields.insert("serialization".into(), Json::String(s));
    }
    Some(Json::Object(fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_devices_request_is_framed_right() {
        let json = json!({"command": "devices"}).to_string();
        let want = try_encode_head(json.as_bytes(), 0).unwrap();
        assert_eq!(DEVICES_REQUEST, &want[..]);
    }

    #[test]
    fn a_relay_head_is_the_relay_header_framed() {
        let payload = [1u8, 2, 3, 4, 5];
        for (group, varname) in [
            (Some("g"), "x"),
            (None, "a\"b\\c\u{1}é\n"),
            (Some("q\"uote"), ""),
        ] {
            let parts = [Part::Encoded(vec![1, 2]), Part::InPlace(&payload[..5])];
            for layout in [false, true] {
                for body in [
                    Body::Bytes(&payload),
                    Body::Shared {
                        segment: 7,
                        len: 1 << 40,
                    },
                    Body::Pieces(&parts),
                ] {
                    let relay = Relay {
                        varname,
                        body,
                        layout,
                    };
                    let mut out = vec![9; 3];
                    relay_head(group, &relay, &mut out).unwrap();
                    assert_eq!(&out[..4], b"DiME");
                    let json_len = u32::from_be_bytes(out[4..8].try_into().unwrap()) as usize;
                    assert_eq!(json_len, out.len() - 12);
                    let in_frame = u32::from_be_bytes(out[8..12].try_into().unwrap());
                    let mut want = relay_header(group, varname);
                    if layout {
                        want["dimeb_layout"] = json!(true);
                    }
                    match body {
                        Body::Bytes(b) => assert_eq!(in_frame as usize, b.len()),
                        Body::Pieces(_) => assert_eq!(in_frame, 7),
                        Body::Shared { segment, len } => {
                            assert_eq!(in_frame, 0);
                            want["shm"] = json!({"len": len, "segment": segment});
                        }
                    }
                    let parsed: Json = serde_json::from_slice(&out[12..]).unwrap();
                    assert_eq!(parsed, want);
                }
            }
        }
    }
}
