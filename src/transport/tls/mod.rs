//! TLS over TCP with rustls (`tls:` addresses; `wss:` is WebSocket over
//! the same, in `ws`). The server's stream is non-blocking and starts
//! mid-handshake: the loop's first reads drive it, and a peer that never
//! finishes is dropped by the server's handshake timeout. A client
//! completes the handshake while connecting, so a certificate problem is
//! reported there, in one sentence naming the server and the reason.

mod config;
mod io;

pub use config::{TlsClientOptions, TlsFiles, client_config, server_config};
pub(crate) use io::TlsIo;

use super::Transport;
use super::tcp::TcpTransportListener;
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, ServerConfig, ServerConnection};
use std::io::{Error, ErrorKind, Read, Result, Write};
use std::net::{IpAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

/// A DiME byte stream over one TLS session.
pub struct TlsStream {
    io: TlsIo,
    peer: String,
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.io.read(buf)
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> Result<usize> {
        self.io.write(buf)
    }
    fn flush(&mut self) -> Result<()> {
        self.io.flush()
    }
}

impl AsRawFd for TlsStream {
    fn as_raw_fd(&self) -> RawFd {
        self.io.tcp.as_raw_fd()
    }
}

impl Transport for TlsStream {
    fn set_nonblocking(&self, on: bool) -> Result<()> {
        self.io.tcp.set_nonblocking(on)
    }
    fn peer(&self) -> String {
        self.peer.clone()
    }
    fn shutdown(&self) -> Result<()> {
        self.io.tcp.shutdown(std::net::Shutdown::Both)
    }
    fn flush_buffered(&mut self) -> Result<bool> {
        self.io.write_pending()
    }
    fn has_buffered_input(&self) -> bool {
        self.io.has_plaintext()
    }
    fn handshake_done(&self) -> bool {
        !self.io.is_handshaking()
    }
    fn peer_ip(&self) -> Option<IpAddr> {
        self.io.tcp.peer_addr().ok().map(|a| a.ip())
    }
}

impl Drop for TlsStream {
    fn drop(&mut self) {
        // Tells the peer the session ended on purpose (after a fatal
        // DiME error, say), not by a cut connection.
        if !self.io.is_handshaking() {
            self.io.close();
        }
    }
}

/// A listening TCP socket whose connections speak TLS.
pub struct TlsTransportListener {
    tcp: TcpTransportListener,
    config: Arc<ServerConfig>,
}

impl TlsTransportListener {
    /// Binds `host:port`, serving with `config`.
    pub fn bind(host: &str, port: u16, config: Arc<ServerConfig>) -> Result<TlsTransportListener> {
        Ok(TlsTransportListener {
            tcp: TcpTransportListener::bind(host, port)?,
            config,
        })
    }

    /// Accepts one connection; its handshake runs on the loop's first reads.
    pub fn accept(&self) -> Result<Box<dyn Transport>> {
        let (io, peer) = accept_tls(&self.tcp, &self.config)?;
        Ok(Box::new(TlsStream { io, peer }))
    }

    /// Serves new connections with `config` (reloaded certificates);
    /// sessions already open keep theirs.
    pub fn set_config(&mut self, config: Arc<ServerConfig>) {
        self.config = config;
    }

    /// `tls:HOST:PORT` as bound.
    pub fn local_addr(&self) -> String {
        format!("tls:{}", self.tcp.host_port())
    }
}

impl AsRawFd for TlsTransportListener {
    fn as_raw_fd(&self) -> RawFd {
        self.tcp.as_raw_fd()
    }
}

/// Accepts one TCP connection on `tcp` and starts a server session on it.
pub(crate) fn accept_tls(
    tcp: &TcpTransportListener,
    config: &Arc<ServerConfig>,
) -> Result<(TlsIo, String)> {
    let s = tcp.accept_stream()?;
    let peer = s
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "peer".into());
    let conn = ServerConnection::new(config.clone())
        .map_err(|e| Error::other(format!("cannot start a TLS session: {e}")))?;
    let io = TlsIo::new(Arc::new(s), conn.into(), format!("client {peer}"));
    Ok((io, format!("tls {peer}")))
}

/// Connects to `host:port` and completes a TLS handshake checked as
/// `opts` says, blocking. Errors say what went wrong with the server;
/// the caller names the address (as for every transport).
pub(crate) fn connect_session(host: &str, port: u16, opts: &TlsClientOptions) -> Result<TlsIo> {
    let config = client_config(opts)?;
    let name = ServerName::try_from(host.to_owned()).map_err(|_| {
        Error::new(
            ErrorKind::InvalidInput,
            format!("'{host}' is not a host name TLS can check a certificate against"),
        )
    })?;
    // The error goes back as the OS gave it (its errno intact).
    let s = TcpStream::connect((host, port))?;
    s.set_nodelay(true)?;
    let conn = ClientConnection::new(config, name)
        .map_err(|e| Error::other(format!("cannot start a TLS session: {e}")))?;
    let mut io = TlsIo::new(Arc::new(s), conn.into(), "the server".to_owned());
    io.complete_handshake()?;
    Ok(io)
}

/// Connects to `tls:host:port`, blocking, and completes the handshake.
pub fn connect(host: &str, port: u16, opts: &TlsClientOptions) -> Result<Box<dyn Transport>> {
    let io = connect_session(host, port, opts)?;
    let peer = format!("tls {host}:{port}");
    Ok(Box::new(TlsStream { io, peer }))
}
