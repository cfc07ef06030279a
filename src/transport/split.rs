//! A client connection shared by one reading thread and any number of
//! writers (who take turns under their own lock): the remote-call
//! endpoint's. Over a plain socket each half is a handle of the socket.
//! Over TLS both halves share the session: the reader waits for the
//! socket without holding the session, so a writer blocked on a full
//! socket never stops the reader from draining the other direction, and
//! a writer encrypts under the session's lock but sends without it.
//! Writes use `MSG_NOSIGNAL`: they happen on library threads, where a
//! broken connection must be an error, not a SIGPIPE.

use super::Address;
use super::tls::{self, TlsClientOptions};
use rustls::Connection;
use socket2::{SockRef, Socket};
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The session both halves of a TLS connection use.
pub(crate) struct Session {
    tcp: Arc<TcpStream>,
    conn: Mutex<Connection>,
}

impl Session {
    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The reading half.
pub(crate) enum SplitReader {
    /// A handle of the socket.
    Plain(Socket),
    /// The shared session, and ciphertext read but not yet taken by it.
    Tls(Arc<Session>, Vec<u8>, usize),
}

/// The writing half.
pub(crate) enum SplitWriter {
    /// A handle of the socket.
    Plain(Socket),
    /// The shared session.
    Tls(Arc<Session>),
}

/// Connects to `addr` (unix, tcp or tls; with TCP keepalive probes so a
/// vanished host is noticed) and completes any TLS handshake. Errors are
/// the operating system's (errno intact) or TLS's; the caller names the
/// address.
pub(crate) fn open(
    addr: &Address,
    tls: &TlsClientOptions,
) -> io::Result<(SplitReader, SplitWriter)> {
    let plain = |s: Socket| -> io::Result<(SplitReader, SplitWriter)> {
        Ok((SplitReader::Plain(s.try_clone()?), SplitWriter::Plain(s)))
    };
    match addr {
        Address::Unix(path) => plain(Socket::from(std::os::unix::net::UnixStream::connect(path)?)),
        Address::Tcp(host, port) => {
            let s = TcpStream::connect((host.as_str(), *port))?;
            s.set_nodelay(true)?;
            super::set_tcp_keepalive(&s)?;
            plain(Socket::from(s))
        }
        Address::Tls(host, port) => {
            let io = tls::connect_session(host, *port, tls)?;
            let (tcp, conn) = io.into_parts();
            super::set_tcp_keepalive(&tcp)?;
            let session = Arc::new(Session {
                tcp,
                conn: Mutex::new(conn),
            });
            Ok((
                SplitReader::Tls(session.clone(), Vec::new(), 0),
                SplitWriter::Tls(session),
            ))
        }
        Address::Ws(..) | Address::Wss(..) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "remote calls need a unix:, tcp: or tls: address (WebSocket clients call through the JavaScript client)",
        )),
    }
}

/// Ciphertext read from the socket per call.
const RAW_CHUNK: usize = 64 << 10;
/// Plaintext encrypted per turn of the session's lock.
const SEAL_CHUNK: usize = 16 << 10;

impl SplitReader {
    /// Read timeout of the socket (both halves share it).
    pub(crate) fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            SplitReader::Plain(s) => s.set_read_timeout(t),
            SplitReader::Tls(s, ..) => s.tcp.set_read_timeout(t),
        }
    }
}

impl Read for SplitReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (session, raw, used) = match self {
            SplitReader::Plain(s) => return s.read(buf),
            SplitReader::Tls(s, raw, used) => (s, raw, used),
        };
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            {
                let mut conn = session.lock();
                // Ciphertext left over from the last read goes in first.
                while *used < raw.len() {
                    match conn.reader().read(buf) {
                        // Ok(0): the peer's close_notify.
                        Ok(n) => return Ok(n),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                        Err(e) => return Err(e),
                    }
                    let n = conn.read_tls(&mut &raw[*used..])?;
                    if n == 0 {
                        return Ok(0);
                    }
                    *used += n;
                    conn.process_new_packets().map_err(|e| {
                        io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}"))
                    })?;
                }
                match conn.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    // A socket closed without close_notify: DiME frames
                    // carry their lengths, so a cut frame shows anyway.
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                    Err(e) => return Err(e),
                }
            }
            // Waits for the socket without the session: writers go on.
            raw.resize(RAW_CHUNK, 0);
            *used = 0;
            let n = match (&*session.tcp).read(raw) {
                Ok(n) => n,
                Err(e) => {
                    raw.clear();
                    return Err(e);
                }
            };
            raw.truncate(n);
            if n == 0 {
                return Ok(0);
            }
        }
    }
}

impl SplitWriter {
    /// Writes all of `bufs`, blocking.
    pub(crate) fn send_all(&self, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
        match self {
            SplitWriter::Plain(s) => {
                while bufs.iter().any(|b| !b.is_empty()) {
                    match s.send_vectored_with_flags(bufs, libc::MSG_NOSIGNAL) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(n) => IoSlice::advance_slices(&mut bufs, n),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
            SplitWriter::Tls(session) => {
                for b in bufs.iter() {
                    for chunk in b.chunks(SEAL_CHUNK) {
                        // Also carries whatever the session owes the peer
                        // from the reader's side (key updates, alerts).
                        let sealed = {
                            let mut conn = session.lock();
                            conn.writer().write_all(chunk)?;
                            let mut out = Vec::with_capacity(chunk.len() + 64);
                            while conn.wants_write() {
                                conn.write_tls(&mut out)?;
                            }
                            out
                        };
                        send_nosignal(&session.tcp, &sealed)?;
                    }
                }
                Ok(())
            }
        }
    }

    /// Asks the kernel for a send buffer of `bytes` (it caps the size at
    /// `net.core.wmem_max`).
    pub(crate) fn set_send_buffer_size(&self, bytes: usize) -> io::Result<()> {
        match self {
            SplitWriter::Plain(s) => s.set_send_buffer_size(bytes),
            SplitWriter::Tls(session) => SockRef::from(&*session.tcp).set_send_buffer_size(bytes),
        }
    }

    /// Shuts the socket down both ways, waking the reader.
    pub(crate) fn shutdown(&self) -> io::Result<()> {
        match self {
            SplitWriter::Plain(s) => s.shutdown(Shutdown::Both),
            SplitWriter::Tls(session) => session.tcp.shutdown(Shutdown::Both),
        }
    }
}

fn send_nosignal(tcp: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    let sock = SockRef::from(tcp);
    while !bytes.is_empty() {
        match sock.send_with_flags(bytes, libc::MSG_NOSIGNAL) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
