//! A blocking DiME client, used by tests, benchmarks and the C ABI: DiME2
//! messaging here, one module per further service ([`share`], [`space`]).

mod options;
pub mod rpc;
pub mod share;
pub mod space;
pub mod stream;

pub use options::ConnectOptions;

use crate::buffer::PooledBuf;
use crate::codec::dimeb::{self, CodecError};
use crate::proto::extensions;
use crate::transport::{self, Address, Transport};
use crate::value::Value;
use crate::wire::{Frame, FrameReader, try_encode_head};
use serde_json::{Map, Value as Json, json};
use std::collections::VecDeque;
use std::fmt;
use std::io::{self, IoSlice, Write};
use std::time::{Duration, Instant};

/// What can go wrong talking to a server.
#[derive(Debug)]
pub enum Error {
    /// Bad argument from the caller (address syntax, oversized value …).
    InvalidArgument(String),
    /// Could not connect, or the connection broke.
    ConnectionLost(String),
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
            Error::ConnectionLost(m) => write!(f, "connection lost: {m}"),
            Error::Protocol(m) => write!(f, "protocol error: {m}"),
            Error::Server(m) => write!(f, "server error: {m}"),
            Error::Timeout => f.write_str("timed out"),
            Error::Codec(e) => write!(f, "{e}"),
            Error::Unsupported(m) => f.write_str(m),
            Error::NotPermitted(m) => write!(f, "not permitted: {m}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::ConnectionLost(e.to_string())
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
    /// The encoded value.
    pub payload: PooledBuf,
}

impl Message {
    /// Decodes a dimeb payload.
    pub fn decode(&self) -> Result<Value> {
        if self.serialization != "dimeb" {
            return Err(Error::Codec(CodecError(format!(
                "variable '{}' uses the {} serialization, which only its own language can read",
                self.varname, self.serialization
            ))));
        }
        dimeb::decode(&self.payload)
            .map_err(|e| Error::Codec(CodecError(format!("variable '{}': {}", self.varname, e.0))))
    }
}

/// How long to poll for a reply before blocking.
const SPIN: Duration = Duration::from_micros(50);

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

/// Most requests written before reading their replies (as DiME2's Python client).
const PIPELINE: usize = 16;

/// The first and the longest pause between two polls for messages, when a
/// wait with a timeout must poll: an original DiME2 server cannot wait
/// with a timeout, and a `wait` sent to it cannot be withdrawn. Doubling
/// from 1 ms to 50 ms answers a quick reply quickly and costs an idle
/// waiter about 20 small requests a second.
const POLL_FIRST: Duration = Duration::from_millis(1);
const POLL_LONGEST: Duration = Duration::from_millis(50);

/// A connection to a DiME server.
pub struct Client {
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
}

impl Client {
    /// Connects to `address` (`unix:PATH`, `ipc:PATH`, `tcp:HOST:PORT`,
    /// `tls:HOST:PORT`, `ws:…`, `wss:…`) and handshakes with the dimeb
    /// serialization, with the token and TLS settings of the environment
    /// ([`ConnectOptions::from_env`]).
    pub fn connect(address: &str) -> Result<Client> {
        let addr = Address::parse(address).map_err(Error::InvalidArgument)?;
        Client::connect_to(&addr)
    }

    /// Connects to a parsed address, with the environment's options.
    pub fn connect_to(addr: &Address) -> Result<Client> {
        Client::connect_with(addr, &ConnectOptions::from_env())
    }

    /// Connects to a parsed address presenting `options.token` (if any)
    /// and checking a `tls:`/`wss:` server as `options.tls` says.
    pub fn connect_with(addr: &Address, options: &ConnectOptions) -> Result<Client> {
        let stream = transport::connect_with(addr, &options.tls)
            .map_err(|e| Error::ConnectionLost(e.to_string()))?;
        let mut c = Client {
            stream,
            reader: FrameReader::new(u64::MAX),
            serialization: "dimeb".into(),
            stash: VecDeque::new(),
            extensions: None,
            poll_pause: POLL_FIRST,
        };
        let reply = c.request(options.handshake())?;
        if let Some(s) = reply.get("serialization").and_then(Json::as_str) {
            c.serialization = s.to_owned();
        }
        c.extensions = announced_extensions(&reply)?;
        Ok(c)
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

    fn write_frame(&mut self, json: &Json, payload: &[u8]) -> Result<()> {
        // A length that does not fit the prefix's u32 fields would be
        // wrapped and desync the stream; refuse it before writing a byte.
        let head = try_encode_head(json.to_string().as_bytes(), payload.len())
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let mut bufs = [IoSlice::new(&head), IoSlice::new(payload)];
        let mut bufs = &mut bufs[..];
        while !bufs.is_empty() && bufs.iter().any(|b| !b.is_empty()) {
            match self.stream.write_vectored(bufs) {
                Ok(0) => return Err(Error::ConnectionLost("server closed the connection".into())),
                Ok(n) => IoSlice::advance_slices(&mut bufs, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Reads the next frame, handling meta messages on the way.
    fn read_frame(&mut self) -> Result<(Map<String, Json>, PooledBuf)> {
        loop {
            let frame = self.next_raw_frame()?;
            let json: Json = match serde_json::from_slice(frame.json()) {
                Ok(json) => json,
                Err(e) => relayed_fields(frame.json())
                    .ok_or_else(|| Error::Protocol(format!("invalid JSON from server: {e}")))?,
            };
            let Json::Object(obj) = json else {
                return Err(Error::Protocol("server header is not a JSON object".into()));
            };
            let is_meta = obj.get("meta").and_then(Json::as_bool) == Some(true)
                && obj
                    .get("status")
                    .and_then(Json::as_i64)
                    .is_some_and(|s| s > 0);
            if is_meta {
                if obj.get("command").and_then(Json::as_str) == Some("reregister") {
                    if let Some(s) = obj.get("serialization").and_then(Json::as_str) {
                        self.serialization = s.to_owned();
                    }
                }
                continue;
            }
            return Ok((obj, frame.payload));
        }
    }

    fn next_raw_frame(&mut self) -> Result<Frame> {
        loop {
            if let Some(f) = self
                .reader
                .next_frame()
                .map_err(|e| Error::Protocol(e.to_string()))?
            {
                return Ok(f);
            }
            // A reply usually arrives within tens of microseconds: poll for
            // it briefly (yielding the CPU to anything runnable, such as the
            // server) before a blocking read, which would pay a sleep and a
            // wake-up, the larger part of a small round trip here.
            let spin_until = Instant::now() + SPIN;
            let read = loop {
                match self.reader.read_from(&mut DontWait(&mut *self.stream)) {
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
                        break self.reader.read_from(&mut *self.stream);
                    }
                    other => break other,
                }
            };
            match read {
                Ok(0) => return Err(Error::ConnectionLost("server closed the connection".into())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn read_status(&mut self) -> Result<Map<String, Json>> {
        let (obj, _) = self.read_frame()?;
        check_status(obj)
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
        // Encode everything first: a value that cannot be encoded sends nothing.
        let payloads = vars
            .iter()
            .map(|(name, v)| {
                encode_pooled(v)
                    .map_err(|e| Error::InvalidArgument(format!("variable '{name}': {}", e.0)))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut first_err = None;
        for chunk in vars
            .iter()
            .zip(&payloads)
            .collect::<Vec<_>>()
            .chunks(PIPELINE)
        {
            for ((name, _), payload) in chunk {
                self.write_frame(&relay_header(group, name), payload)?;
            }
            for _ in chunk {
                if let Err(e) = self.read_status() {
                    if matches!(e, Error::ConnectionLost(_) | Error::Protocol(_)) {
                        return Err(e);
                    }
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Sends an already-encoded dimeb payload to `group` (no copy).
    pub fn send_encoded(&mut self, group: &str, varname: &str, payload: &[u8]) -> Result<()> {
        self.write_frame(&relay_header(Some(group), varname), payload)?;
        self.read_status().map(drop)
    }

    /// Broadcasts an already-encoded dimeb payload (no copy).
    pub fn broadcast_encoded(&mut self, varname: &str, payload: &[u8]) -> Result<()> {
        self.write_frame(&relay_header(None, varname), payload)?;
        self.read_status().map(drop)
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
            .map(|m| Ok((m.varname.clone(), m.decode()?)))
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
        let payload = encode_pooled(value)
            .map_err(|e| Error::InvalidArgument(format!("variable '{varname}': {}", e.0)))?;
        let mut req = relay_header(Some(group), varname);
        req["receive"] = json!(true);
        req["n"] = json!(n);
        if let Some(t) = timeout {
            req["timeout"] = json!(t.as_secs_f64() * 1000.0);
        }
        self.write_frame(&req, &payload)?;
        self.read_messages(Vec::new())?
            .into_iter()
            .map(|m| Ok((m.varname.clone(), m.decode()?)))
            .collect()
    }

    /// `sync`, optionally blocking (`wait`) with an optional timeout.
    fn sync_request(&mut self, n: i64, wait: Option<Option<Duration>>) -> Result<Vec<Message>> {
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
        if want == 0 {
            return Ok(out);
        }
        // Messages already in hand end a wait.
        let wait = wait.filter(|_| out.is_empty());
        if wait.is_some() && !self.supports(extensions::SYNC_WAIT) {
            // An original DiME2 server answers a sync with "wait" as a plain
            // sync, at once: wait its own way, then sync.
            let wait = wait.flatten();
            self.wait_dime2(wait)?;
            return self.sync_request(want, None);
        }
        let mut req = json!({"command": "sync", "n": want});
        if let Some(timeout) = wait {
            req["wait"] = json!(true);
            if let Some(t) = timeout {
                req["timeout"] = json!(t.as_secs_f64() * 1000.0);
            }
        }
        self.write_frame(&req, &[])?;
        self.read_messages(out)
    }

    /// Reads relayed messages until the closing status reply.
    fn read_messages(&mut self, mut out: Vec<Message>) -> Result<Vec<Message>> {
        loop {
            let (obj, payload) = self.read_frame()?;
            if obj.contains_key("status") {
                check_status(obj)?;
                return Ok(out);
            }
            let field = |k: &str| obj.get(k).and_then(Json::as_str);
            out.push(Message {
                varname: field("varname").unwrap_or_default().to_owned(),
                // DiME2 makes "serialization" optional in a send: such a
                // payload is in the one the session negotiated.
                serialization: field("serialization")
                    .unwrap_or(&self.serialization)
                    .to_owned(),
                payload,
            });
        }
    }

    /// Receives up to `n` messages (all when `n < 0`) and decodes them.
    /// If one cannot be decoded, the error names it and the messages after
    /// it are kept for the next call.
    pub fn sync(&mut self, n: i64) -> Result<Vec<(String, Value)>> {
        let mut msgs = self.sync_messages(n)?.into_iter();
        let mut out = Vec::new();
        for m in msgs.by_ref() {
            match m.decode() {
                Ok(v) => out.push((m.varname, v)),
                Err(e) => {
                    // Keep the ones already decoded and the rest for the next sync.
                    let rest: Vec<Message> = msgs.collect();
                    for (name, v) in out.into_iter().rev() {
                        self.stash.push_front(Message {
                            varname: name,
                            serialization: "dimeb".into(),
                            payload: PooledBuf::from_vec(dimeb::encode(&v)?),
                        });
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
        if !self.stash.is_empty() {
            return Ok(self.stash.len());
        }
        if !self.supports(extensions::SYNC_WAIT) {
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
        let reply = self.request(json!({"command": "devices"}))?;
        let list = reply
            .get("devices")
            .and_then(Json::as_array)
            .ok_or_else(|| Error::Protocol("devices reply has no list".into()))?;
        Ok(list
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect())
    }

    /// Closes the connection (also done on drop).
    pub fn close(self) {}
}

/// Encodes into a buffer from this thread's pool: sending a large value
/// again then reuses memory that is already mapped instead of faulting in
/// a fresh allocation (about 40 ms per 100 MB here).
/// Encodes `v` into a pooled buffer, refusing (before allocating) a value
/// whose encoding would not fit a frame's u32 payload length, and
/// reporting an allocation failure instead of aborting.
fn encode_pooled(v: &Value) -> std::result::Result<PooledBuf, CodecError> {
    let len = dimeb::checked_encoded_len(v)?;
    let mut buf = PooledBuf::try_with_capacity(len).map_err(|e| {
        CodecError(format!(
            "cannot allocate {len} bytes to encode a value: {e}"
        ))
    })?;
    dimeb::encode_into(v, &mut buf)?;
    Ok(buf)
}

fn relay_header(group: Option<&str>, varname: &str) -> Json {
    match group {
        Some(g) => {
            json!({"command": "send", "name": g, "varname": varname, "serialization": "dimeb"})
        }
        None => json!({"command": "broadcast", "varname": varname, "serialization": "dimeb"}),
    }
}

fn check_status(obj: Map<String, Json>) -> Result<Map<String, Json>> {
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
    }
    let r: Relayed = serde_json::from_slice(text).ok()?;
    let mut fields = Map::new();
    if let Some(v) = r.varname {
        fields.insert("varname".into(), Json::String(v));
    }
    if let Some(s) = r.serialization {
        fields.insert("serialization".into(), Json::String(s));
    }
    Some(Json::Object(fields))
}
