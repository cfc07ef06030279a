//! Byte-stream transports: listeners and connected streams for unix and
//! tcp, behind one trait so the server and client never care which.

mod addr;
mod tcp;
mod unix;

pub use addr::Address;

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};

/// A connected, full-duplex byte stream.
pub trait Transport: Read + Write + AsRawFd + Send {
    /// Switches between blocking and non-blocking I/O.
    fn set_nonblocking(&self, on: bool) -> io::Result<()>;
    /// Human-readable peer description for logs.
    fn peer(&self) -> String;
    /// Shuts both directions down (wakes a peer blocked on us).
    fn shutdown(&self) -> io::Result<()>;
}

/// A listening socket of any transport.
pub enum Listener {
    /// Unix domain socket; the file is removed on drop.
    Unix(unix::UnixTransportListener),
    /// TCP socket.
    Tcp(tcp::TcpTransportListener),
}

impl Listener {
    /// Binds `addr` (non-blocking). Unix sockets get file mode `socket_mode`;
    /// a stale socket file is replaced, a live one is an error.
    pub fn bind(addr: &Address, socket_mode: u32) -> io::Result<Listener> {
        match addr {
            Address::Unix(path) => Ok(Listener::Unix(unix::UnixTransportListener::bind(
                path,
                socket_mode,
            )?)),
            Address::Tcp(host, port) => {
                Ok(Listener::Tcp(tcp::TcpTransportListener::bind(host, *port)?))
            }
        }
    }

    /// Accepts one pending connection, non-blocking.
    pub fn accept(&self) -> io::Result<Box<dyn Transport>> {
        match self {
            Listener::Unix(l) => l.accept(),
            Listener::Tcp(l) => l.accept(),
        }
    }

    /// The address actually bound, in `-l` syntax (`tcp:127.0.0.1:40123`).
    pub fn local_addr(&self) -> String {
        match self {
            Listener::Unix(l) => l.local_addr(),
            Listener::Tcp(l) => l.local_addr(),
        }
    }
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Listener::Unix(l) => l.as_raw_fd(),
            Listener::Tcp(l) => l.as_raw_fd(),
        }
    }
}

/// Connects to `addr`, blocking.
pub fn connect(addr: &Address) -> io::Result<Box<dyn Transport>> {
    match addr {
        Address::Unix(path) => unix::connect(path),
        Address::Tcp(host, port) => tcp::connect(host, *port),
    }
}

/// How many connections may wait in a listener's accept queue.
const BACKLOG: i32 = 4096;
