//! Byte-stream transports: listeners and connected streams for unix, tcp,
//! TLS and WebSocket (plain or over TLS), behind one trait so the server
//! and client never care which.

mod addr;
pub(crate) mod split;
mod tcp;
pub mod tls;
mod unix;
mod ws;

pub use addr::Address;
pub use tcp::set_keepalive as set_tcp_keepalive;
pub use tls::{TlsClientOptions, TlsFiles};
pub use ws::WsOptions;

use rustls::ServerConfig;
use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;

/// A connected, full-duplex byte stream.
pub trait Transport: Read + Write + AsRawFd + Send {
    /// Switches between blocking and non-blocking I/O.
    fn set_nonblocking(&self, on: bool) -> io::Result<()>;
    /// Human-readable peer description for logs.
    fn peer(&self) -> String;
    /// Shuts both directions down (wakes a peer blocked on us).
    fn shutdown(&self) -> io::Result<()>;
    /// Writes output the transport has accepted but kept back (WebSocket
    /// keeps a message the socket could not take whole). Returns true when
    /// nothing is left; until then the server keeps waiting for the socket
    /// to become writable. Plain sockets keep nothing back.
    fn flush_buffered(&mut self) -> io::Result<bool> {
        Ok(true)
    }
    /// True when input already taken off the socket waits to be read
    /// (WebSocket messages decoded in one go), which no readable event
    /// would announce. Plain sockets buffer nothing.
    fn has_buffered_input(&self) -> bool {
        false
    }
    /// Reads without blocking even on a blocking socket (`MSG_DONTWAIT`),
    /// or None where the transport cannot (WebSocket framing).
    fn read_nonblocking(&mut self, _buf: &mut [u8]) -> Option<io::Result<usize>> {
        None
    }
    /// False while a transport-level handshake (TLS, the WebSocket
    /// upgrade) is still under way; the server drops connections that
    /// stay there too long. Plain sockets have none.
    fn handshake_done(&self) -> bool {
        true
    }
    /// The peer's IP address, for network transports.
    fn peer_ip(&self) -> Option<IpAddr> {
        None
    }
    /// The peer process's user id, for unix sockets (`SO_PEERCRED`).
    fn peer_uid(&self) -> Option<u32> {
        None
    }
    /// True where file descriptors can travel with the bytes (unix sockets).
    fn passes_fds(&self) -> bool {
        false
    }
    /// True where written bytes go to the peer as they are (unix, TCP), so
    /// a frame may be written in parts with pauses between them. WebSocket
    /// sends each frame as one message, so it is not.
    fn is_plain_stream(&self) -> bool {
        false
    }
    /// Reads like `read` (without blocking when `dontwait`), appending the
    /// descriptors that came with these bytes to `fds`. `Unsupported` where
    /// none can come.
    fn recv_with_fds(
        &mut self,
        _buf: &mut [u8],
        _fds: &mut VecDeque<OwnedFd>,
        _dontwait: bool,
    ) -> io::Result<usize> {
        Err(io::ErrorKind::Unsupported.into())
    }
    /// Writes like `write_vectored`, passing `fds` along with the first
    /// byte written (so they arrive no later than it). `Unsupported` where
    /// descriptors cannot travel.
    fn send_with_fds(
        &mut self,
        _bufs: &[IoSlice<'_>],
        _fds: &[BorrowedFd<'_>],
    ) -> io::Result<usize> {
        Err(io::ErrorKind::Unsupported.into())
    }
    /// Writes as `write_vectored` does, but a peer that has gone is an
    /// `EPIPE` error and never a SIGPIPE (`MSG_NOSIGNAL`), or None where
    /// the transport cannot (WebSocket framing): callers embedded in other
    /// programs then block SIGPIPE around their writes instead.
    fn write_nosignal(&mut self, _bufs: &[IoSlice<'_>]) -> Option<io::Result<usize>> {
        None
    }
    /// Writes `head`, then up to `len` bytes of `file` from `offset`
    /// taken by the kernel straight from the file (`sendfile`: no copy
    /// through this process); returns the bytes written, counting both.
    /// `UnexpectedEof` when the file ends before `offset` (it shrank). None
    /// where the transport changes the bytes it sends (TLS, WebSocket):
    /// the caller then reads the file and writes what it read.
    fn send_file(
        &mut self,
        _head: &[u8],
        _file: BorrowedFd<'_>,
        _offset: u64,
        _len: usize,
    ) -> Option<io::Result<usize>> {
        None
    }
}

/// Most descriptors taken from one read: more in one message means the
/// peer does not follow the protocol (ours send one per frame).
pub const MAX_FDS_PER_READ: usize = 16;

/// A `Read` over a transport that keeps the descriptors arriving with the
/// bytes (see [`Transport::recv_with_fds`]).
pub struct ReadWithFds<'a> {
    /// The transport read from.
    pub transport: &'a mut dyn Transport,
    /// Where received descriptors go, in arrival order.
    pub fds: &'a mut VecDeque<OwnedFd>,
    /// Never block (`MSG_DONTWAIT`).
    pub dontwait: bool,
}

impl Read for ReadWithFds<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.transport.recv_with_fds(buf, self.fds, self.dontwait)
    }
}

/// A listening socket of any transport.
pub enum Listener {
    /// Unix domain socket; the file is removed on drop.
    Unix(unix::UnixTransportListener),
    /// TCP socket.
    Tcp(tcp::TcpTransportListener),
    /// TCP socket whose connections speak WebSocket (`ws:`, or `wss:`
    /// over TLS).
    Ws(ws::WsTransportListener),
    /// TCP socket whose connections speak TLS.
    Tls(tls::TlsTransportListener),
}

impl Listener {
    /// Binds `addr` (non-blocking). Unix sockets get file mode `socket_mode`;
    /// a stale socket file is replaced, a live one is an error. WebSocket
    /// listeners take their limits and origin allow-list from `ws`; `tls:`
    /// and `wss:` listeners serve with `tls`, which they need.
    pub fn bind(
        addr: &Address,
        socket_mode: u32,
        ws: &WsOptions,
        tls: Option<&Arc<ServerConfig>>,
    ) -> io::Result<Listener> {
        let need_tls = || {
            tls.cloned().ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "listening on {addr} needs a certificate and key (--tls-cert, --tls-key)"
                    ),
                )
            })
        };
        match addr {
            Address::Unix(path) => Ok(Listener::Unix(unix::UnixTransportListener::bind(
                path,
                socket_mode,
            )?)),
            Address::Tcp(host, port) => {
                Ok(Listener::Tcp(tcp::TcpTransportListener::bind(host, *port)?))
            }
            Address::Ws(host, port) => Ok(Listener::Ws(ws::WsTransportListener::bind(
                host, *port, ws, None,
            )?)),
            Address::Wss(host, port) => Ok(Listener::Ws(ws::WsTransportListener::bind(
                host,
                *port,
                ws,
                Some(need_tls()?),
            )?)),
            Address::Tls(host, port) => Ok(Listener::Tls(tls::TlsTransportListener::bind(
                host,
                *port,
                need_tls()?,
            )?)),
        }
    }

    /// Serves new connections of a `tls:` or `wss:` listener with `config`
    /// (certificates reloaded); open sessions keep theirs. Other
    /// listeners are left alone.
    pub fn set_tls_config(&mut self, config: &Arc<ServerConfig>) {
        match self {
            Listener::Tls(l) => l.set_config(config.clone()),
            Listener::Ws(l) => l.set_tls_config(config.clone()),
            Listener::Unix(_) | Listener::Tcp(_) => {}
        }
    }

    /// Accepts one pending connection, non-blocking.
    pub fn accept(&self) -> io::Result<Box<dyn Transport>> {
        match self {
            Listener::Unix(l) => l.accept(),
            Listener::Tcp(l) => l.accept(),
            Listener::Ws(l) => l.accept(),
            Listener::Tls(l) => l.accept(),
        }
    }

    /// The address actually bound, in `-l` syntax (`tcp:127.0.0.1:40123`).
    pub fn local_addr(&self) -> String {
        match self {
            Listener::Unix(l) => l.local_addr(),
            Listener::Tcp(l) => l.local_addr(),
            Listener::Ws(l) => l.local_addr(),
            Listener::Tls(l) => l.local_addr(),
        }
    }
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Listener::Unix(l) => l.as_raw_fd(),
            Listener::Tcp(l) => l.as_raw_fd(),
            Listener::Ws(l) => l.as_raw_fd(),
            Listener::Tls(l) => l.as_raw_fd(),
        }
    }
}

/// Connects to `addr`, blocking; `tls:` and `wss:` servers are checked
/// as the `DIME_TLS_*` environment variables say
/// ([`TlsClientOptions::from_env`]).
pub fn connect(addr: &Address) -> io::Result<Box<dyn Transport>> {
    connect_with(addr, &TlsClientOptions::from_env())
}

/// Connects to `addr`, blocking; `tls:` and `wss:` servers are checked as
/// `tls` says (other addresses ignore it).
pub fn connect_with(addr: &Address, tls: &TlsClientOptions) -> io::Result<Box<dyn Transport>> {
    match addr {
        Address::Unix(path) => unix::connect(path),
        Address::Tcp(host, port) => tcp::connect(host, *port),
        Address::Ws(host, port) => ws::connect(host, *port, None),
        Address::Wss(host, port) => ws::connect(host, *port, Some(tls)),
        Address::Tls(host, port) => tls::connect(host, *port, tls),
    }
}

/// The WebSocket reader's text-to-binary rewriter under a fuzzer: see
/// `crate::fuzzing::ws_rewrite`.
pub(crate) fn fuzz_ws_rewrite(data: &[u8]) {
    ws::fuzz_rewrite(data);
}

/// `recv(MSG_DONTWAIT)` on a socket: one non-blocking read without
/// switching the socket's mode.
fn recv_dontwait(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` writable bytes.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// `sendmsg(MSG_NOSIGNAL)` of `bufs` on a socket.
fn send_nosignal(fd: RawFd, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: an all-zero msghdr is valid (no name, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // IoSlice is guaranteed ABI-compatible with iovec on Unix.
    msg.msg_iov = bufs.as_ptr().cast_mut().cast();
    msg.msg_iovlen = bufs.len().min(libc::c_int::MAX as usize) as _;
    // SAFETY: `msg` points at `bufs`, valid for the call.
    let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// `len` bytes of an open file from `offset`, sent as they are in the file.
pub struct FileSpan {
    /// The file, open for reading.
    pub file: std::fs::File,
    /// Where the bytes start.
    pub offset: u64,
    /// How many bytes go out. A file that has shrunk meanwhile is made up
    /// with zeros, so the frame keeps its declared length (the receiver's
    /// checksum then fails, where a short frame would break the stream).
    pub len: usize,
}

/// [`Transport::send_file`] on a plain socket: `head` with `MSG_MORE` (it
/// leaves in one segment with the file's first bytes), then `sendfile`.
fn send_file_plain(
    sock: RawFd,
    head: &[u8],
    file: BorrowedFd<'_>,
    offset: u64,
    len: usize,
) -> io::Result<usize> {
    let mut sent = 0;
    if !head.is_empty() {
        let more = if len > 0 { libc::MSG_MORE } else { 0 };
        // SAFETY: `head` is valid for `head.len()` bytes.
        let n = unsafe {
            libc::send(
                sock,
                head.as_ptr().cast(),
                head.len(),
                libc::MSG_NOSIGNAL | more,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        sent = n as usize;
        if sent < head.len() || len == 0 {
            return Ok(sent);
        }
    }
    let mut off = libc::off_t::try_from(offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file offset out of range"))?;
    // Linux moves at most this much per call anyway.
    let count = len.min(0x7fff_f000);
    // SAFETY: both descriptors are open for the call; `off` is a valid
    // offset variable that sendfile advances.
    let n = unsafe { libc::sendfile(sock, file.as_raw_fd(), &mut off, count) };
    match n {
        n if n > 0 => Ok(sent + n as usize),
        0 if sent > 0 => Ok(sent),
        0 => Err(io::ErrorKind::UnexpectedEof.into()),
        _ => {
            let e = io::Error::last_os_error();
            // The head went: report it, the error comes again next time.
            if sent > 0 { Ok(sent) } else { Err(e) }
        }
    }
}

/// How many connections may wait in a listener's accept queue.
const BACKLOG: i32 = 4096;
