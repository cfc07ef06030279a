//! Unix domain sockets.

use super::{BACKLOG, Transport};
use socket2::{Domain, SockAddr, Socket, Type};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

impl Transport for UnixStream {
    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        UnixStream::set_nonblocking(self, on)
    }
    fn peer(&self) -> String {
        "unix peer".into()
    }
    fn shutdown(&self) -> io::Result<()> {
        UnixStream::shutdown(self, std::net::Shutdown::Both)
    }
    fn read_nonblocking(&mut self, buf: &mut [u8]) -> Option<io::Result<usize>> {
        Some(super::recv_dontwait(self.as_raw_fd(), buf))
    }
    fn peer_uid(&self) -> Option<u32> {
        peer_uid(self.as_raw_fd())
    }
}

/// The user id of the process at the other end of a unix socket.
fn peer_uid(fd: RawFd) -> Option<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writing, sized as the call expects.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (r == 0).then_some(cred.uid)
}

/// A listening unix socket that removes its file when dropped.
pub struct UnixTransportListener {
    listener: UnixListener,
    path: PathBuf,
}

impl UnixTransportListener {
    /// Binds `path`, replacing a stale socket file but refusing a live one.
    pub fn bind(path: &Path, mode: u32) -> io::Result<UnixTransportListener> {
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "{} exists and is not a socket; refusing to replace it",
                        path.display()
                    ),
                ));
            }
            match UnixStream::connect(path) {
                Ok(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!("another server is already listening on {}", path.display()),
                    ));
                }
                Err(_) => std::fs::remove_file(path)?,
            }
        }
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
        socket.bind(&SockAddr::unix(path)?)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        socket.listen(BACKLOG)?;
        socket.set_nonblocking(true)?;
        Ok(UnixTransportListener {
            listener: socket.into(),
            path: path.to_owned(),
        })
    }

    /// Accepts one connection as a non-blocking stream.
    pub fn accept(&self) -> io::Result<Box<dyn Transport>> {
        let (s, _) = self.listener.accept()?;
        s.set_nonblocking(true)?;
        Ok(Box::new(s))
    }

    /// `unix:PATH`.
    pub fn local_addr(&self) -> String {
        format!("unix:{}", self.path.display())
    }
}

impl AsRawFd for UnixTransportListener {
    fn as_raw_fd(&self) -> RawFd {
        self.listener.as_raw_fd()
    }
}

impl Drop for UnixTransportListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Connects to the socket at `path`, blocking.
pub fn connect(path: &Path) -> io::Result<Box<dyn Transport>> {
    let s = UnixStream::connect(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot connect to unix:{}: {e}", path.display()),
        )
    })?;
    Ok(Box::new(s))
}
