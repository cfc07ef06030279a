//! TCP sockets (Nagle off: DiME traffic is request/response).

use super::{BACKLOG, Transport};
use socket2::{Domain, Socket, Type};
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};

impl Transport for TcpStream {
    fn is_plain_stream(&self) -> bool {
        true
    }
    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        TcpStream::set_nonblocking(self, on)
    }
    fn peer(&self) -> String {
        self.peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| "tcp peer".into())
    }
    fn shutdown(&self) -> io::Result<()> {
        TcpStream::shutdown(self, std::net::Shutdown::Both)
    }
    fn read_nonblocking(&mut self, buf: &mut [u8]) -> Option<io::Result<usize>> {
        Some(super::recv_dontwait(self.as_raw_fd(), buf))
    }
    fn write_nosignal(&mut self, bufs: &[io::IoSlice<'_>]) -> Option<io::Result<usize>> {
        Some(super::send_nosignal(self.as_raw_fd(), bufs))
    }
    fn peer_ip(&self) -> Option<std::net::IpAddr> {
        self.peer_addr().ok().map(|a| a.ip())
    }
    fn send_file(
        &mut self,
        head: &[u8],
        file: std::os::fd::BorrowedFd<'_>,
        offset: u64,
        len: usize,
    ) -> Option<io::Result<usize>> {
        Some(super::send_file_plain(
            self.as_raw_fd(),
            head,
            file,
            offset,
            len,
        ))
    }
}

/// A listening TCP socket.
pub struct TcpTransportListener {
    listener: TcpListener,
}

fn resolve(host: &str, port: u16) -> io::Result<SocketAddr> {
    (host, port).to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("host '{host}' has no address"),
        )
    })
}

impl TcpTransportListener {
    /// Binds `host:port` with SO_REUSEADDR.
    pub fn bind(host: &str, port: u16) -> io::Result<TcpTransportListener> {
        let addr = resolve(host, port)?;
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        socket
            .bind(&addr.into())
            .map_err(|e| io::Error::new(e.kind(), format!("cannot bind tcp:{addr}: {e}")))?;
        socket.listen(BACKLOG)?;
        socket.set_nonblocking(true)?;
        Ok(TcpTransportListener {
            listener: socket.into(),
        })
    }

    /// Accepts one connection as a non-blocking stream.
    pub fn accept(&self) -> io::Result<Box<dyn Transport>> {
        Ok(Box::new(self.accept_stream()?))
    }

    /// Accepts one connection as a non-blocking socket with Nagle off
    /// (the WebSocket listener wraps it).
    pub fn accept_stream(&self) -> io::Result<TcpStream> {
        let (s, _) = self.listener.accept()?;
        s.set_nonblocking(true)?;
        s.set_nodelay(true)?;
        set_keepalive(&s)?;
        Ok(s)
    }

    /// `tcp:HOST:PORT` as bound (the real port when 0 was asked for).
    pub fn local_addr(&self) -> String {
        format!("tcp:{}", self.host_port())
    }

    /// `HOST:PORT` as bound, IPv6 hosts in brackets.
    pub fn host_port(&self) -> String {
        match self.listener.local_addr() {
            Ok(SocketAddr::V6(a)) => format!("[{}]:{}", a.ip(), a.port()),
            Ok(a) => a.to_string(),
            Err(_) => "?".into(),
        }
    }
}

impl AsRawFd for TcpTransportListener {
    fn as_raw_fd(&self) -> RawFd {
        self.listener.as_raw_fd()
    }
}

/// Probes a quiet peer after this long …
const KEEPALIVE_IDLE: std::time::Duration = std::time::Duration::from_secs(10);
/// … every this long, and gives it up after this many unanswered probes:
/// a peer whose host died or whose network went away is noticed within
/// about 16 s, so a remote call it was running fails instead of hanging.
const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);
const KEEPALIVE_RETRIES: u32 = 3;

/// Turns on TCP keepalive probes (see `KEEPALIVE_IDLE`).
pub fn set_keepalive(s: &TcpStream) -> io::Result<()> {
    let ka = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_RETRIES);
    socket2::SockRef::from(s).set_tcp_keepalive(&ka)
}

/// Connects to `host:port`, blocking, with Nagle off.
pub fn connect(host: &str, port: u16) -> io::Result<Box<dyn Transport>> {
    // The error goes back as the OS gave it (its errno intact); the caller
    // names the address.
    let s = TcpStream::connect((host, port))?;
    s.set_nodelay(true)?;
    Ok(Box::new(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_connections_probe_a_silent_peer() {
        let l = TcpTransportListener::bind("127.0.0.1", 0).unwrap();
        let port: u16 = l.host_port().rsplit(':').next().unwrap().parse().unwrap();
        let _client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let s = loop {
            match l.accept_stream() {
                Ok(s) => break s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        };
        let r = socket2::SockRef::from(&s);
        assert!(r.keepalive().unwrap());
        assert_eq!(r.tcp_keepalive_time().unwrap(), KEEPALIVE_IDLE);
        assert_eq!(r.tcp_keepalive_interval().unwrap(), KEEPALIVE_INTERVAL);
        assert_eq!(r.tcp_keepalive_retries().unwrap(), KEEPALIVE_RETRIES);
    }
}
