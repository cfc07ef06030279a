//! One rustls session over a TCP socket as a plain byte stream: reads
//! return plaintext, writes take plaintext. On a non-blocking socket
//! (the server) nothing here ever waits: a read without a whole record
//! says `WouldBlock`, and a write is refused while earlier ciphertext is
//! still waiting for the socket, so the server's queue, and so its
//! backpressure, sees a full socket. On a blocking socket (clients) the
//! same calls block.

use crate::wire::{MAGIC, encode_head};
use rustls::{AlertDescription, CertificateError, Connection};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

/// Plaintext taken per `write` call, so one call never encrypts a whole
/// queue of large frames while the socket is full.
const WRITE_CHUNK: usize = 256 << 10;

/// A TLS session and its socket.
pub(crate) struct TlsIo {
    /// Shared with the WebSocket layer above, which keeps the descriptor
    /// open until the server has removed it from its poller.
    pub(crate) tcp: Arc<TcpStream>,
    conn: Connection,
    /// Decrypted bytes not read yet: input no readable event announces.
    plain_left: usize,
    /// The first bytes a client sent, until four are known: a client
    /// speaking plain DiME (or plain HTTP) to a TLS port is told so.
    first: Vec<u8>,
    /// What the session is with, for error messages (`tls:host:port`).
    label: String,
}

/// A `Read` over the socket that keeps the first bytes a peer sent.
struct Capture<'a> {
    tcp: &'a TcpStream,
    first: &'a mut Vec<u8>,
}

impl Read for Capture<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (&*self.tcp).read(buf)?;
        let want = MAGIC.len().saturating_sub(self.first.len()).min(n);
        self.first.extend_from_slice(&buf[..want]);
        Ok(n)
    }
}

impl TlsIo {
    /// Wraps `tcp` in `conn`; `label` names the peer in errors.
    pub(crate) fn new(tcp: Arc<TcpStream>, mut conn: Connection, label: String) -> TlsIo {
        // Backpressure is ours (see `write`): during the handshake rustls
        // may hold what the server queued for the client, at most the
        // replies and meta messages of a few seconds (the handshake
        // timeout), never a stream of data.
        conn.set_buffer_limit(None);
        TlsIo {
            tcp,
            conn,
            plain_left: 0,
            first: Vec::with_capacity(MAGIC.len()),
            label,
        }
    }

    /// The socket and the session, for a client that shares them between
    /// threads (`transport::split`).
    pub(crate) fn into_parts(self) -> (Arc<TcpStream>, Connection) {
        (self.tcp, self.conn)
    }

    /// True until the TLS handshake is complete.
    pub(crate) fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// True when decrypted input waits to be read.
    pub(crate) fn has_plaintext(&self) -> bool {
        self.plain_left > 0
    }

    /// Writes pending ciphertext; true when none is left.
    pub(crate) fn write_pending(&mut self) -> io::Result<bool> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut &*self.tcp) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Runs the handshake to its end on a blocking socket (clients), so
    /// certificate errors surface when connecting.
    pub(crate) fn complete_handshake(&mut self) -> io::Result<()> {
        while self.conn.is_handshaking() {
            self.write_pending()?;
            if !self.conn.is_handshaking() {
                break;
            }
            let n = match self.conn.read_tls(&mut &*self.tcp) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.process()?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    format!(
                        "TLS handshake with {} failed: the server closed the connection",
                        self.label
                    ),
                ));
            }
        }
        self.write_pending()?;
        Ok(())
    }

    /// Starts closing the session (best effort: the peer may be gone).
    pub(crate) fn close(&mut self) {
        self.conn.send_close_notify();
        let _ = self.write_pending();
    }

    /// Decrypts what `read_tls` took in.
    fn process(&mut self) -> io::Result<()> {
        match self.conn.process_new_packets() {
            Ok(state) => {
                self.plain_left = state.plaintext_bytes_to_read();
                Ok(())
            }
            Err(e) => {
                // rustls queued an alert telling the peer why: send it,
                // unless the peer does not speak TLS at all.
                if !self.answer_plain_client() {
                    let _ = self.write_pending();
                }
                Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    self.describe(&e),
                ))
            }
        }
    }

    /// A server whose client spoke plain DiME or plain HTTP to this TLS
    /// port answers in kind, so the client's error says what is wrong
    /// instead of "connection reset". True if it answered.
    fn answer_plain_client(&mut self) -> bool {
        if !matches!(self.conn, Connection::Server(_)) || self.first.len() < MAGIC.len() {
            return false;
        }
        let answer = if self.first == MAGIC {
            let json = br#"{"status":-1,"error":"This server listens with TLS here: connect with a tls: address (tls://HOST:PORT)"}"#;
            encode_head(json, 0)
        } else if self.first == *b"GET " {
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n\
              This DiME endpoint speaks TLS: use a wss:// address\n"
                .to_vec()
        } else {
            return false;
        };
        let _ = (&*self.tcp).write_all(&answer);
        true
    }

    /// One clear sentence for a TLS failure, naming the peer.
    fn describe(&self, e: &rustls::Error) -> String {
        let why = match e {
            rustls::Error::InvalidCertificate(c) => match c {
                CertificateError::UnknownIssuer => "its certificate is not signed by a trusted certificate authority (name the CA with DIME_TLS_CA or the tls_ca option)".to_owned(),
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                    "its certificate is not valid for the host name connected to".to_owned()
                }
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    "its certificate has expired".to_owned()
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    "its certificate is not valid yet".to_owned()
                }
                CertificateError::BadSignature => "its certificate has a bad signature".to_owned(),
                other => format!("its certificate is not acceptable: {other:?}"),
            },
            rustls::Error::NoCertificatesPresented => {
                "it presented no certificate (this server requires a client certificate)".to_owned()
            }
            rustls::Error::AlertReceived(AlertDescription::CertificateRequired) => {
                "the server requires a client certificate (set DIME_TLS_CERT and DIME_TLS_KEY)"
                    .to_owned()
            }
            rustls::Error::AlertReceived(
                AlertDescription::BadCertificate
                | AlertDescription::UnknownCA
                | AlertDescription::CertificateUnknown,
            ) => "the other side refused the certificate it was given".to_owned(),
            rustls::Error::InvalidMessage(_) => {
                "the other side does not speak TLS (is it a plain tcp:/ws: listener?)".to_owned()
            }
            other => other.to_string(),
        };
        format!("TLS with {} failed: {why}", self.label)
    }
}

impl Read for TlsIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => {
                    self.plain_left = self.plain_left.saturating_sub(n);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The peer closed the socket without a close_notify: DiME
                // frames carry their own lengths, so this is an ordinary
                // end of stream (a frame cut short shows as one).
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            self.plain_left = 0;
            // Handshake messages the peer waits for go out before we wait
            // on it; a full socket sends them when it drains.
            self.write_pending()?;
            let capture = Capture {
                tcp: &self.tcp,
                first: &mut self.first,
            };
            let n = if capture.first.len() < MAGIC.len() {
                self.conn.read_tls(&mut { capture })
            } else {
                self.conn.read_tls(&mut &*self.tcp)
            };
            let n = match n {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.process()?;
            self.write_pending()?;
            if n == 0 {
                return match self.conn.reader().read(buf) {
                    Ok(n) => {
                        self.plain_left = self.plain_left.saturating_sub(n);
                        Ok(n)
                    }
                    Err(_) => Ok(0),
                };
            }
        }
    }
}

impl Write for TlsIo {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if !self.write_pending()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let take = buf.len().min(WRITE_CHUNK);
        let n = self.conn.writer().write(&buf[..take])?;
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        // Best effort now; whatever the socket refuses goes first next time.
        self.write_pending()?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.write_pending()? {
            Ok(())
        } else {
            Err(io::ErrorKind::WouldBlock.into())
        }
    }
}
