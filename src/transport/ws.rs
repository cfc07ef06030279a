//! WebSocket transport (docs/protocol.md §1): DiME frames carried in binary
//! WebSocket messages, with `tungstenite` doing the RFC 6455 work.
//!
//! [`WsStream`] turns a WebSocket into the plain byte stream the server
//! loop and client expect. Reading yields the payloads of incoming data
//! messages back to back, text or binary alike, as the original server
//! reads them: a DiME frame may span messages (or a fragmented one), and
//! one message may hold several frames. Writing cuts the outgoing byte
//! stream at DiME frame boundaries and sends each whole frame as exactly
//! one binary message, because the original JavaScript client decodes one
//! frame per message.
//!
//! On the server the stream is non-blocking and starts mid-handshake: the
//! loop's first reads drive the HTTP upgrade. Anything that is not a valid
//! upgrade gets an HTTP error answer and the connection ends; nothing here
//! ever waits for a slow or vanished peer. `wss:` runs the same over a TLS
//! session (`super::tls`), whose handshake those first reads drive too.

use super::Transport;
use super::tcp::TcpTransportListener;
use super::tls::{self, TlsClientOptions, TlsIo};
use crate::wire::{PREFIX_LEN, parse_prefix};
use rustls::ServerConfig;
use std::io::{self, IoSlice, Read, Write};
use std::net::{IpAddr, Shutdown, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tungstenite::handshake::HandshakeError;
use tungstenite::handshake::server::{Callback, ErrorResponse, Request, Response, ServerHandshake};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tungstenite::{Bytes, Message, WebSocket};

/// Settings a `ws:` listener takes from the server's configuration.
#[derive(Clone, Debug, Default)]
pub struct WsOptions {
    /// Largest DiME frame body (JSON + payload) the server accepts; it also
    /// bounds single WebSocket frames and messages.
    pub max_message: u64,
    /// Browser origins allowed to connect; empty allows every origin.
    pub origins: Vec<String>,
}

/// The socket shared between tungstenite (which owns a handle for the
/// whole handshake and session) and [`WsStream`], which must keep the file
/// descriptor open until the server has removed it from its poller, even
/// when tungstenite drops its handle after a failed handshake. On the
/// server, what it reads passes through [`TextAsBinary`]. Over `wss:` the
/// bytes go through a TLS session, shared the same way.
struct Sock {
    tcp: Arc<TcpStream>,
    tls: Option<SharedTls>,
    inbound: Option<TextAsBinary>,
}

/// A TLS session shared by [`Sock`] and [`WsStream`]. Only the server
/// loop's one thread (or one client's) ever takes the lock.
type SharedTls = Arc<Mutex<TlsIo>>;

fn lock(tls: &SharedTls) -> MutexGuard<'_, TlsIo> {
    tls.lock().unwrap_or_else(|p| p.into_inner())
}

impl Read for Sock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match &self.tls {
            Some(tls) => lock(tls).read(buf)?,
            None => (&*self.tcp).read(buf)?,
        };
        if let Some(scan) = &mut self.inbound {
            scan.rewrite(&mut buf[..n]);
        }
        Ok(n)
    }
}

impl Write for Sock {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &self.tls {
            Some(tls) => lock(tls).write(buf),
            None => (&*self.tcp).write(buf),
        }
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match &self.tls {
            Some(tls) => lock(tls).write_vectored(bufs),
            None => (&*self.tcp).write_vectored(bufs),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        // TLS output the socket could not take yet counts as unflushed,
        // so tungstenite reports the socket as full.
        match &self.tls {
            Some(tls) => lock(tls).flush(),
            None => Ok(()),
        }
    }
}

/// Marks every incoming text frame as binary before tungstenite parses it.
///
/// DiME reads a message's bytes whatever its opcode, as the original
/// server does, and clients do send DiME frames in text messages (some
/// WebSocket libraries default to text). Such a frame is rarely valid
/// UTF-8 (its length prefix alone need not be), and tungstenite fails a
/// text message that is not, so the opcode is changed in the byte stream
/// instead: the rest of RFC 6455 (masking, fragments, control frames,
/// limits) stays tungstenite's. This follows frame boundaries through the
/// client's bytes from the end of its HTTP upgrade request, which
/// tungstenite may read in the same chunk as the first frames.
struct TextAsBinary {
    at: Scan,
}

/// Where in the client's byte stream [`TextAsBinary`] is.
enum Scan {
    /// In the upgrade request; how much of its closing `\r\n\r\n` was just seen.
    Request(usize),
    /// In a frame header: the bytes of it seen so far.
    Header {
        bytes: [u8; MAX_WS_HEADER],
        len: usize,
    },
    /// In a frame's payload: the bytes still to come.
    Payload(u64),
}

/// A WebSocket frame header's most bytes: 2, an 8-byte length, a mask.
const MAX_WS_HEADER: usize = 14;
const OPCODE_TEXT: u8 = 0x1;
const OPCODE_BINARY: u8 = 0x2;

impl TextAsBinary {
    fn new() -> TextAsBinary {
        TextAsBinary {
            at: Scan::Request(0),
        }
    }

    /// Rewrites the opcodes in `bytes`, the next bytes of the stream.
    fn rewrite(&mut self, bytes: &mut [u8]) {
        let mut i = 0;
        while i < bytes.len() {
            match &mut self.at {
                Scan::Request(seen) => {
                    const END: &[u8] = b"\r\n\r\n";
                    let b = bytes[i];
                    *seen = if b == END[*seen] {
                        *seen + 1
                    } else {
                        usize::from(b == b'\r')
                    };
                    i += 1;
                    if *seen == END.len() {
                        self.at = Scan::new_header();
                    }
                }
                Scan::Header { bytes: head, len } => {
                    if *len == 0 && bytes[i] & 0x0F == OPCODE_TEXT {
                        bytes[i] = (bytes[i] & 0xF0) | OPCODE_BINARY;
                    }
                    head[*len] = bytes[i];
                    *len += 1;
                    i += 1;
                    if let Some(payload) = header_payload_len(&head[..*len]) {
                        self.at = if payload == 0 {
                            Scan::new_header()
                        } else {
                            Scan::Payload(payload)
                        };
                    }
                }
                Scan::Payload(left) => {
                    let take = (bytes.len() - i).min(usize::try_from(*left).unwrap_or(usize::MAX));
                    i += take;
                    *left -= take as u64;
                    if *left == 0 {
                        self.at = Scan::new_header();
                    }
                }
            }
        }
    }
}

/// Checks, for a fuzzer, that [`TextAsBinary`] rewrites `data` (after its
/// first byte, which sets a read size) the same however it is split, and
/// only ever turns a text opcode into a binary one.
pub(super) fn fuzz_rewrite(data: &[u8]) {
    let Some((&step, rest)) = data.split_first() else {
        return;
    };
    let mut whole = rest.to_vec();
    TextAsBinary::new().rewrite(&mut whole);
    let mut split = rest.to_vec();
    let mut scan = TextAsBinary::new();
    for chunk in split.chunks_mut(usize::from(step) + 1) {
        scan.rewrite(chunk);
    }
    assert!(
        whole == split,
        "the rewrite depends on how reads split the stream"
    );
    for (before, after) in rest.iter().zip(&whole) {
        if before != after {
            assert_eq!(before & 0x0F, OPCODE_TEXT, "a non-text byte was changed");
            assert_eq!(*after, (before & 0xF0) | OPCODE_BINARY);
        }
    }
}

impl Scan {
    fn new_header() -> Scan {
        Scan::Header {
            bytes: [0; MAX_WS_HEADER],
            len: 0,
        }
    }
}

/// The payload length a frame header declares, once `head` holds all of
/// the header (RFC 6455 §5.2); None while it is incomplete.
fn header_payload_len(head: &[u8]) -> Option<u64> {
    let second = *head.get(1)?;
    let (ext, short) = match second & 0x7F {
        126 => (2, None),
        127 => (8, None),
        n => (0, Some(u64::from(n))),
    };
    let mask = if second & 0x80 != 0 { 4 } else { 0 };
    if head.len() < 2 + ext + mask {
        return None;
    }
    Some(short.unwrap_or_else(|| {
        head[2..2 + ext]
            .iter()
            .fold(0u64, |n, &b| (n << 8) | u64::from(b))
    }))
}

/// Handshake callback: enforces the origin allow-list and records that the
/// request has been read, i.e. that the handshake has moved on to writing
/// its answer (tungstenite does not expose its stage otherwise).
struct OriginCheck {
    origins: Arc<Vec<String>>,
    request_read: Arc<AtomicBool>,
}

impl Callback for OriginCheck {
    fn on_request(self, request: &Request, response: Response) -> Result<Response, ErrorResponse> {
        self.request_read.store(true, Ordering::Relaxed);
        // Only browsers send Origin, and only browsers need protecting from
        // hostile pages; other programs could forge the header anyway.
        let Some(origin) = request.headers().get("origin") else {
            return Ok(response);
        };
        if self.origins.is_empty()
            || self
                .origins
                .iter()
                .any(|o| o.as_bytes() == origin.as_bytes())
        {
            return Ok(response);
        }
        let body = format!(
            "origin {} is not allowed (see --ws-origin)\n",
            String::from_utf8_lossy(origin.as_bytes())
        );
        let mut resp = ErrorResponse::new(Some(body));
        *resp.status_mut() = tungstenite::http::StatusCode::FORBIDDEN;
        Err(resp)
    }
}

type ServerMid = tungstenite::handshake::MidHandshake<ServerHandshake<Sock, OriginCheck>>;

enum State {
    /// Server side, HTTP upgrade not finished.
    Handshaking(Box<ServerMid>),
    /// Messages flow.
    Open(Box<WebSocket<Sock>>),
    /// The handshake failed or the session ended: reads see end of stream.
    Closed,
}

/// A DiME byte stream over one WebSocket connection.
pub struct WsStream {
    sock: Arc<TcpStream>,
    /// The TLS session under a `wss:` connection.
    tls: Option<SharedTls>,
    state: State,
    /// Set by the handshake callback once the upgrade request is read.
    request_read: Arc<AtomicBool>,
    /// The binary message being handed out to `read`, and how far.
    rx: Bytes,
    rx_pos: usize,
    /// tungstenite may hold further messages it read in the same syscall;
    /// true from a received message until a read reports `WouldBlock`.
    maybe_buffered: bool,
    /// Output queued before the upgrade finished (a reregister meta
    /// message), sent once it has.
    pre_open: Vec<u8>,
    /// Outgoing bytes of the DiME frame not yet complete.
    tx: Vec<u8>,
    /// Total length of the frame being collected in `tx`, once known.
    tx_frame_len: Option<usize>,
    peer: String,
}

/// Outgoing bytes taken per `write` call beyond the frame in progress, so
/// one call never copies a whole queue of large frames.
const WRITE_CHUNK: usize = 1 << 20;

/// Most bytes of a rejected connection drained before closing it, so the
/// kernel sends FIN after our HTTP answer rather than a reset that could
/// destroy it.
const REJECT_DRAIN: usize = 64 << 10;

impl WsStream {
    fn new(
        sock: Arc<TcpStream>,
        tls: Option<SharedTls>,
        state: State,
        request_read: Arc<AtomicBool>,
    ) -> WsStream {
        let scheme = if tls.is_some() { "wss" } else { "ws" };
        let peer = sock
            .peer_addr()
            .map(|a| format!("{scheme} {a}"))
            .unwrap_or_else(|_| format!("{scheme} peer"));
        WsStream {
            sock,
            tls,
            state,
            request_read,
            rx: Bytes::new(),
            rx_pos: 0,
            maybe_buffered: false,
            pre_open: Vec::new(),
            tx: Vec::new(),
            tx_frame_len: None,
            peer,
        }
    }

    /// Runs the server handshake as far as the socket allows.
    fn drive_handshake(&mut self) -> io::Result<()> {
        let State::Handshaking(mid) = std::mem::replace(&mut self.state, State::Closed) else {
            return Ok(());
        };
        match mid.handshake() {
            Ok(ws) => {
                self.state = State::Open(Box::new(ws));
                // tungstenite keeps what the socket cannot take yet, and
                // this output is small, so it all goes in at once.
                let pre = std::mem::take(&mut self.pre_open);
                let mut rest = &pre[..];
                while !rest.is_empty() {
                    let (n, _) = self.push_bytes(rest)?;
                    rest = &rest[n..];
                }
                Ok(())
            }
            Err(HandshakeError::Interrupted(mid)) => {
                self.state = State::Handshaking(Box::new(mid));
                Err(io::ErrorKind::WouldBlock.into())
            }
            Err(HandshakeError::Failure(e)) => {
                self.reject(&e);
                Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("WebSocket handshake failed: {e}"),
                ))
            }
        }
    }

    /// Answers a failed upgrade with `400 Bad Request` (unless tungstenite
    /// already answered, as for a refused origin, or the peer is gone) and
    /// half-closes the socket.
    fn reject(&mut self, e: &tungstenite::Error) {
        use tungstenite::error::{Error, ProtocolError};
        let answered = matches!(
            e,
            Error::Http(_)
                | Error::Io(_)
                | Error::ConnectionClosed
                | Error::Protocol(ProtocolError::HandshakeIncomplete)
        );
        let mut s = Sock {
            tcp: self.sock.clone(),
            tls: self.tls.clone(),
            inbound: None,
        };
        if !answered {
            let body = format!("This is a DiME WebSocket endpoint: {e}\n");
            let resp = format!(
                "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            // Best effort on a non-blocking socket: the answer is small and
            // the socket fresh, and a peer that does not read loses nothing.
            let _ = s.write_all(resp.as_bytes());
            let _ = s.flush();
        }
        if let Some(tls) = &self.tls {
            lock(tls).close();
        }
        let _ = self.sock.shutdown(Shutdown::Write);
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained < REJECT_DRAIN {
            match (&*self.sock).read(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    }

    /// Starts the WebSocket closing handshake with `code` and returns the
    /// error that ends the connection for the server loop.
    fn fail(&mut self, code: CloseCode, reason: &str) -> io::Error {
        if let State::Open(ws) = &mut self.state {
            // A close reason is limited to 123 bytes by RFC 6455.
            let mut short = reason.to_owned();
            while short.len() > 123 {
                short.pop();
            }
            let _ = ws.close(Some(CloseFrame {
                code,
                reason: short.into(),
            }));
        }
        io::Error::new(io::ErrorKind::InvalidData, reason.to_owned())
    }

    /// Bytes still needed to complete the frame being collected in `tx`.
    fn tx_needed(&mut self) -> io::Result<usize> {
        if self.tx.len() < PREFIX_LEN {
            return Ok(PREFIX_LEN - self.tx.len());
        }
        let total = match self.tx_frame_len {
            Some(t) => t,
            None => {
                let prefix = self.tx[..PREFIX_LEN].try_into().expect("a whole prefix");
                let (json, payload) = parse_prefix(prefix).map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "WebSocket output is not a DiME frame",
                    )
                })?;
                let total = PREFIX_LEN + json + payload;
                self.tx.reserve_exact(total - self.tx.len());
                self.tx_frame_len = Some(total);
                total
            }
        };
        Ok(total - self.tx.len())
    }

    /// Takes bytes of the outgoing stream up to the end of the current
    /// frame, sending the frame if that completes it. Returns the bytes
    /// taken and whether the socket took everything sent so far.
    fn push_bytes(&mut self, b: &[u8]) -> io::Result<(usize, bool)> {
        let n = self.tx_needed()?.min(b.len());
        self.tx.extend_from_slice(&b[..n]);
        if self.tx.len() >= PREFIX_LEN {
            // Learns the frame's length as soon as its prefix is complete.
            self.tx_needed()?;
        }
        Ok((n, self.send_complete_frames()?))
    }

    /// Sends the frame in `tx` as one message once it is complete. Returns
    /// false when the socket could not take all of it yet.
    fn send_complete_frames(&mut self) -> io::Result<bool> {
        let State::Open(ws) = &mut self.state else {
            return Ok(true);
        };
        if self.tx_frame_len.is_some_and(|t| t == self.tx.len()) {
            self.tx_frame_len = None;
            let frame = std::mem::take(&mut self.tx);
            match ws.write(Message::binary(frame)) {
                Ok(()) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(false);
                }
                Err(e) => return Err(to_io(e)),
            }
        }
        flush_ws(ws)
    }
}

/// Flushes tungstenite's pending output; false if the socket is full.
fn flush_ws(ws: &mut WebSocket<Sock>) -> io::Result<bool> {
    match ws.flush() {
        Ok(()) => Ok(true),
        Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(to_io(e)),
    }
}

fn to_io(e: tungstenite::Error) -> io::Error {
    match e {
        tungstenite::Error::Io(e) => e,
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            io::ErrorKind::BrokenPipe.into()
        }
        other => io::Error::other(other.to_string()),
    }
}

impl Read for WsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.rx_pos < self.rx.len() {
                let n = buf.len().min(self.rx.len() - self.rx_pos);
                buf[..n].copy_from_slice(&self.rx[self.rx_pos..self.rx_pos + n]);
                self.rx_pos += n;
                return Ok(n);
            }
            let ws = match &mut self.state {
                State::Handshaking(_) => {
                    self.drive_handshake()?;
                    continue;
                }
                State::Closed => return Ok(0),
                State::Open(ws) => ws,
            };
            match ws.read() {
                // A message's bytes are DiME bytes whatever its opcode (a
                // server sees no text: `TextAsBinary` made it binary).
                Ok(Message::Binary(b)) => {
                    self.rx = b;
                    self.rx_pos = 0;
                    self.maybe_buffered = true;
                }
                Ok(Message::Text(t)) => {
                    self.rx = t.into();
                    self.rx_pos = 0;
                    self.maybe_buffered = true;
                }
                // tungstenite answers pings itself.
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
                Ok(Message::Close(_)) => {
                    // Sends tungstenite's reply to the close, if it can.
                    let _ = ws.flush();
                    self.state = State::Closed;
                    return Ok(0);
                }
                Err(tungstenite::Error::Io(e)) => {
                    if e.kind() == io::ErrorKind::WouldBlock {
                        self.maybe_buffered = false;
                    }
                    return Err(e);
                }
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    self.state = State::Closed;
                    return Ok(0);
                }
                Err(tungstenite::Error::Protocol(
                    tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                )) => {
                    self.state = State::Closed;
                    return Ok(0);
                }
                Err(tungstenite::Error::Capacity(e)) => {
                    return Err(self.fail(CloseCode::Size, &format!("{e} (see --max-message)")));
                }
                Err(e) => return Err(self.fail(CloseCode::Protocol, &e.to_string())),
            }
        }
    }
}

impl Write for WsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match &mut self.state {
            State::Closed => return Err(io::ErrorKind::BrokenPipe.into()),
            // Keeping earlier output queued in tungstenite is what makes
            // the server's queue, and so its backpressure, see a full socket.
            State::Open(ws) => {
                if !flush_ws(ws)? {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
            }
            // Held until the upgrade is done (see `pre_open`).
            State::Handshaking(_) => {
                let before = self.pre_open.len();
                for b in bufs {
                    self.pre_open.extend_from_slice(b);
                }
                return Ok(self.pre_open.len() - before);
            }
        }
        let mut accepted = 0;
        for b in bufs {
            let mut b: &[u8] = b;
            while !b.is_empty() {
                let (n, sent_all) = self.push_bytes(b)?;
                accepted += n;
                b = &b[n..];
                if !sent_all || accepted >= WRITE_CHUNK {
                    return Ok(accepted);
                }
            }
        }
        Ok(accepted)
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.state {
            State::Open(ws) => {
                if flush_ws(ws)? {
                    Ok(())
                } else {
                    Err(io::ErrorKind::WouldBlock.into())
                }
            }
            _ => Ok(()),
        }
    }
}

impl AsRawFd for WsStream {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

impl Transport for WsStream {
    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        self.sock.set_nonblocking(on)
    }
    fn peer(&self) -> String {
        self.peer.clone()
    }
    fn shutdown(&self) -> io::Result<()> {
        self.sock.shutdown(Shutdown::Both)
    }
    fn flush_buffered(&mut self) -> io::Result<bool> {
        if let Some(tls) = &self.tls {
            if !lock(tls).write_pending()? {
                return Ok(false);
            }
        }
        match &mut self.state {
            State::Open(ws) => flush_ws(ws),
            // Before the request is read there is nothing to write; after
            // it, the answer may still be going out.
            State::Handshaking(_) if self.request_read.load(Ordering::Relaxed) => {
                match self.drive_handshake() {
                    Ok(()) => self.flush_buffered(),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
                    Err(e) => Err(e),
                }
            }
            State::Handshaking(_) | State::Closed => Ok(true),
        }
    }
    fn has_buffered_input(&self) -> bool {
        // Decrypted bytes wait in the TLS session in any state, the
        // upgrade request's included.
        let tls = self.tls.as_ref().is_some_and(|t| lock(t).has_plaintext());
        tls || matches!(self.state, State::Open(_))
            && (self.rx_pos < self.rx.len() || self.maybe_buffered)
    }
    fn handshake_done(&self) -> bool {
        matches!(self.state, State::Open(_))
    }
    fn peer_ip(&self) -> Option<IpAddr> {
        self.sock.peer_addr().ok().map(|a| a.ip())
    }
}

impl Drop for WsStream {
    fn drop(&mut self) {
        // Tells the peer the session is over (after, say, a fatal DiME
        // error reply) instead of leaving it to notice a bare TCP close.
        if let State::Open(ws) = &mut self.state {
            if ws.can_write() {
                let _ = ws.close(Some(CloseFrame {
                    code: CloseCode::Normal,
                    reason: "".into(),
                }));
            }
        }
    }
}

fn ws_config(max_message: u64) -> WebSocketConfig {
    // A DiME frame travels in one message: its prefix plus the limit.
    let limit =
        usize::try_from(max_message.saturating_add(PREFIX_LEN as u64)).unwrap_or(usize::MAX);
    WebSocketConfig::default()
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit))
}

/// A listening TCP socket whose connections speak WebSocket (over TLS
/// for `wss:`).
pub struct WsTransportListener {
    tcp: TcpTransportListener,
    options: WsOptions,
    origins: Arc<Vec<String>>,
    /// The TLS configuration of a `wss:` listener.
    tls: Option<Arc<ServerConfig>>,
}

impl WsTransportListener {
    /// Binds `host:port`; with `tls`, connections speak WebSocket over TLS.
    pub fn bind(
        host: &str,
        port: u16,
        options: &WsOptions,
        tls: Option<Arc<ServerConfig>>,
    ) -> io::Result<WsTransportListener> {
        Ok(WsTransportListener {
            tcp: TcpTransportListener::bind(host, port)?,
            origins: Arc::new(options.origins.clone()),
            options: options.clone(),
            tls,
        })
    }

    /// Accepts one connection; its handshakes run on the loop's first reads.
    pub fn accept(&self) -> io::Result<Box<dyn Transport>> {
        let (s, tls) = match &self.tls {
            Some(config) => {
                let (io, _) = tls::accept_tls(&self.tcp, config)?;
                (io.tcp.clone(), Some(Arc::new(Mutex::new(io))))
            }
            None => (Arc::new(self.tcp.accept_stream()?), None),
        };
        let request_read = Arc::new(AtomicBool::new(false));
        let callback = OriginCheck {
            origins: self.origins.clone(),
            request_read: request_read.clone(),
        };
        let sock = Sock {
            tcp: s.clone(),
            tls: tls.clone(),
            inbound: Some(TextAsBinary::new()),
        };
        let mid = ServerHandshake::start(sock, callback, Some(ws_config(self.options.max_message)));
        Ok(Box::new(WsStream::new(
            s,
            tls,
            State::Handshaking(Box::new(mid)),
            request_read,
        )))
    }

    /// Serves new `wss:` connections with `config` (reloaded
    /// certificates); sessions already open keep theirs.
    pub fn set_tls_config(&mut self, config: Arc<ServerConfig>) {
        if self.tls.is_some() {
            self.tls = Some(config);
        }
    }

    /// `ws:HOST:PORT` (or `wss:…`) as bound.
    pub fn local_addr(&self) -> String {
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        format!("{scheme}:{}", self.tcp.host_port())
    }
}

impl AsRawFd for WsTransportListener {
    fn as_raw_fd(&self) -> RawFd {
        self.tcp.as_raw_fd()
    }
}

/// Connects to `ws://host:port/` (`wss://` with `tls`), blocking, and
/// completes the TLS handshake and the upgrade.
pub fn connect(
    host: &str,
    port: u16,
    tls: Option<&TlsClientOptions>,
) -> io::Result<Box<dyn Transport>> {
    let (s, session) = match tls {
        Some(opts) => {
            let io = tls::connect_session(host, port, opts)?;
            (io.tcp.clone(), Some(Arc::new(Mutex::new(io))))
        }
        None => {
            // The error goes back as the OS gave it (its errno intact); the
            // caller names the address.
            let s = TcpStream::connect((host, port))?;
            s.set_nodelay(true)?;
            (Arc::new(s), None)
        }
    };
    let sock = Sock {
        tcp: s.clone(),
        tls: session.clone(),
        inbound: None,
    };
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    let url = if host.contains(':') {
        format!("{scheme}://[{host}]:{port}/")
    } else {
        format!("{scheme}://{host}:{port}/")
    };
    // The client trusts its server's sizes; the DiME reader has no limit either.
    let config = WebSocketConfig::default()
        .max_message_size(None)
        .max_frame_size(None);
    let (ws, _) = tungstenite::client::client_with_config(url.as_str(), sock, Some(config))
        .map_err(|e| match e {
            HandshakeError::Failure(e) => io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("the WebSocket upgrade failed: {e}"),
            ),
            HandshakeError::Interrupted(_) => io::ErrorKind::WouldBlock.into(),
        })?;
    Ok(Box::new(WsStream::new(
        s,
        session,
        State::Open(Box::new(ws)),
        Arc::new(AtomicBool::new(true)),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame: `first` is the FIN/opcode byte.
    fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![first];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n < 1 << 16 => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        // Keeps each byte's low nibble, so masked payloads still hold
        // bytes that would pass for text headers.
        let mask = [0x00, 0x10, 0x20, 0x30];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    /// A client's stream: the upgrade request, then frames of every kind;
    /// and the same stream as tungstenite must see it.
    fn stream() -> (Vec<u8>, Vec<u8>) {
        let mut sent = b"GET / HTTP/1.1\r\nHost: x\r\n\r\r\nUpgrade: websocket\r\n\r\n".to_vec();
        let mut want = sent.clone();
        // Payloads that look like headers, so a lost boundary shows.
        let text = vec![0x81u8; 300];
        let bin = vec![0x01u8; 70_000];
        for (first, payload, rewritten) in [
            (0x81, &b"DiME"[..], 0x82),     // a whole text message
            (0x01, &text[..], 0x02),        // a text message's first fragment…
            (0x89, &b"ping"[..], 0x89),     // a ping between fragments
            (0x80, &b"\x01\x81"[..], 0x80), // …and its last one
            (0x82, &bin[..], 0x82),         // binary, 8-byte length
            (0x81, &b""[..], 0x82),         // empty text
            (0xC1, &b"x"[..], 0xC2),        // reserved bit kept for tungstenite to refuse
            (0x88, &b"\x03\xe8"[..], 0x88), // close
        ] {
            let f = client_frame(first, payload);
            sent.extend_from_slice(&f);
            want.push(rewritten);
            want.extend_from_slice(&f[1..]);
        }
        (sent, want)
    }

    #[test]
    fn text_frames_become_binary_wherever_reads_split_the_stream() {
        let (sent, want) = stream();
        let mut whole = sent.clone();
        TextAsBinary::new().rewrite(&mut whole);
        assert_eq!(whole, want);
        // Every cut point, and reads of every small size.
        for cut in (0..sent.len())
            .step_by(7)
            .chain(sent.len() - 40..sent.len())
        {
            let mut got = sent.clone();
            let mut scan = TextAsBinary::new();
            let (a, b) = got.split_at_mut(cut);
            scan.rewrite(a);
            scan.rewrite(b);
            assert!(got == want, "split at {cut}");
        }
        for size in 1..=15 {
            let mut got = sent.clone();
            let mut scan = TextAsBinary::new();
            for chunk in got.chunks_mut(size) {
                scan.rewrite(chunk);
            }
            assert!(got == want, "reads of {size} bytes");
        }
    }

    #[test]
    fn header_lengths() {
        assert_eq!(header_payload_len(&[0x81]), None);
        assert_eq!(header_payload_len(&[0x81, 0x05]), Some(5));
        assert_eq!(header_payload_len(&[0x81, 0x85, 0, 0, 0]), None);
        assert_eq!(header_payload_len(&[0x81, 0x85, 0, 0, 0, 0]), Some(5));
        assert_eq!(header_payload_len(&[0x82, 0xFE, 0x01]), None);
        assert_eq!(header_payload_len(&[0x82, 0x7E, 0x01, 0x00]), Some(256));
        let long = [0x82, 0xFF, 0, 0, 0, 1, 0, 0, 0, 0, 9, 9, 9];
        assert_eq!(header_payload_len(&long), None);
        let mut full = long.to_vec();
        full.push(9);
        assert_eq!(header_payload_len(&full), Some(1 << 32));
    }
}
