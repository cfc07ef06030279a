//! Byte-stream transports: listeners and connected streams for unix, tcp
//! and WebSocket, behind one trait so the server and client never care
//! which.

mod addr;
mod tcp;
mod unix;
mod ws;

pub use addr::Address;
pub use tcp::set_keepalive as set_tcp_keepalive;
pub use ws::WsOptions;

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

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
    /// TCP socket whose connections speak WebSocket.
    Ws(ws::WsTransportListener),
}

impl Listener {
    /// Binds `addr` (non-blocking). Unix sockets get file mode `socket_mode`;
    /// a stale socket file is replaced, a live one is an error. WebSocket
    /// listeners take their limits and origin allow-list from `ws`.
    pub fn bind(addr: &Address, socket_mode: u32, ws: &WsOptions) -> io::Result<Listener> {
        match addr {
            Address::Unix(path) => Ok(Listener::Unix(unix::UnixTransportListener::bind(
                path,
                socket_mode,
            )?)),
            Address::Tcp(host, port) => {
                Ok(Listener::Tcp(tcp::TcpTransportListener::bind(host, *port)?))
            }
            Address::Ws(host, port) => Ok(Listener::Ws(ws::WsTransportListener::bind(
                host, *port, ws,
            )?)),
        }
    }

    /// Accepts one pending connection, non-blocking.
    pub fn accept(&self) -> io::Result<Box<dyn Transport>> {
        match self {
            Listener::Unix(l) => l.accept(),
            Listener::Tcp(l) => l.accept(),
            Listener::Ws(l) => l.accept(),
        }
    }

    /// The address actually bound, in `-l` syntax (`tcp:127.0.0.1:40123`).
    pub fn local_addr(&self) -> String {
        match self {
            Listener::Unix(l) => l.local_addr(),
            Listener::Tcp(l) => l.local_addr(),
            Listener::Ws(l) => l.local_addr(),
        }
    }
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Listener::Unix(l) => l.as_raw_fd(),
            Listener::Tcp(l) => l.as_raw_fd(),
            Listener::Ws(l) => l.as_raw_fd(),
        }
    }
}

/// Connects to `addr`, blocking.
pub fn connect(addr: &Address) -> io::Result<Box<dyn Transport>> {
    match addr {
        Address::Unix(path) => unix::connect(path),
        Address::Tcp(host, port) => tcp::connect(host, *port),
        Address::Ws(host, port) => ws::connect(host, *port),
    }
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

/// How many connections may wait in a listener's accept queue.
const BACKLOG: i32 = 4096;
