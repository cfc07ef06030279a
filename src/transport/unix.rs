//! Unix domain sockets.

use super::{BACKLOG, Transport};
use socket2::{Domain, SockAddr, Socket, Type};
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

impl Transport for UnixStream {
    fn is_plain_stream(&self) -> bool {
        true
    }
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
    fn passes_fds(&self) -> bool {
        true
    }
    fn recv_with_fds(
        &mut self,
        buf: &mut [u8],
        fds: &mut VecDeque<OwnedFd>,
        dontwait: bool,
    ) -> io::Result<usize> {
        recv_fds(self.as_raw_fd(), buf, fds, dontwait)
    }
    fn send_with_fds(&mut self, bufs: &[IoSlice<'_>], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
        send_fds(self.as_raw_fd(), bufs, fds)
    }
    fn write_nosignal(&mut self, bufs: &[IoSlice<'_>]) -> Option<io::Result<usize>> {
        Some(super::send_nosignal(self.as_raw_fd(), bufs))
    }
    fn peer_uid(&self) -> Option<u32> {
        peer_uid(self.as_raw_fd())
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

/// Room for [`super::MAX_FDS_PER_READ`] descriptors in a control message.
const CMSG_ROOM: usize = 128;

/// A control-message buffer aligned as `cmsghdr` requires.
#[repr(C, align(8))]
struct CmsgBuf([u8; CMSG_ROOM]);

/// `recvmsg` with room for descriptors, which are appended to `fds`
/// (close-on-exec). Descriptors the kernel had to drop for lack of room
/// would desynchronise frames and descriptors: that is an error.
fn recv_fds(
    fd: RawFd,
    buf: &mut [u8],
    fds: &mut VecDeque<OwnedFd>,
    dontwait: bool,
) -> io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut cmsg = CmsgBuf([0; CMSG_ROOM]);
    // SAFETY: an all-zero msghdr is a valid empty one.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.0.as_mut_ptr().cast();
    msg.msg_controllen = CMSG_ROOM as _;
    let flags = libc::MSG_CMSG_CLOEXEC | if dontwait { libc::MSG_DONTWAIT } else { 0 };
    // SAFETY: `msg` points at live buffers of the sizes it states.
    let n = unsafe { libc::recvmsg(fd, &mut msg, flags) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: walking the control messages recvmsg wrote, within
    // msg_controllen, with the libc macros.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c) as *const RawFd;
                let count = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize)
                    / std::mem::size_of::<RawFd>();
                for i in 0..count {
                    fds.push_back(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "more file descriptors arrived at once than the protocol allows",
        ));
    }
    Ok(n as usize)
}

/// `sendmsg` of `bufs` with `fds` attached (none: a plain vectored write).
fn send_fds(fd: RawFd, bufs: &[IoSlice<'_>], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
    if fds.len() > super::MAX_FDS_PER_READ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many descriptors for one message",
        ));
    }
    let mut cmsg = CmsgBuf([0; CMSG_ROOM]);
    // SAFETY: an all-zero msghdr is a valid empty one.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = bufs.len() as _;
    if !fds.is_empty() {
        let bytes = std::mem::size_of_val(fds);
        // SAFETY: CMSG_SPACE/CMSG_LEN of a small size; the header and
        // data fit CMSG_ROOM (checked count above).
        unsafe {
            msg.msg_control = cmsg.0.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(bytes as u32) as _;
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(bytes as u32) as _;
            let data = libc::CMSG_DATA(c) as *mut RawFd;
            for (i, f) in fds.iter().enumerate() {
                data.add(i).write_unaligned(f.as_raw_fd());
            }
        }
    }
    // SAFETY: IoSlice is ABI-compatible with iovec; buffers live for the call.
    let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
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
        match staging_address(path) {
            Some((staging, addr)) => {
                // Bound at a staging name and published only once listening:
                // a client (or script) that waits for the file to appear and
                // then connects is never refused in between.
                let _ = std::fs::remove_file(&staging);
                socket.bind(&addr)?;
                let published =
                    std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(mode))
                        .and_then(|()| socket.listen(BACKLOG))
                        .and_then(|()| publish(&staging, path));
                let _ = std::fs::remove_file(&staging);
                published?;
            }
            None => {
                socket.bind(&SockAddr::unix(path)?)?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
                socket.listen(BACKLOG)?;
            }
        }
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

/// A name beside `path` to bind before publishing the socket as `path`,
/// with its address; None when it would not fit in a socket address (the
/// socket is then bound at `path` directly).
fn staging_address(path: &Path) -> Option<(PathBuf, SockAddr)> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let name = path.file_name()?.to_string_lossy();
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let staging = path.with_file_name(format!(".{name}.{}.{n}.binding", std::process::id()));
    let addr = SockAddr::unix(&staging).ok()?;
    Some((staging, addr))
}

/// Gives the listening socket at `staging` its public name `path`, refusing
/// to replace a socket another server published there meanwhile.
fn publish(staging: &Path, path: &Path) -> io::Result<()> {
    match std::fs::hard_link(staging, path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("another server is already listening on {}", path.display()),
        )),
        // A file system without hard links: a rename publishes it as well.
        Err(_) => std::fs::rename(staging, path),
    }
}

/// Connects to the socket at `path`, blocking.
pub fn connect(path: &Path) -> io::Result<Box<dyn Transport>> {
    // The error goes back as the OS gave it (its errno intact); the caller
    // names the address.
    let s = UnixStream::connect(path)?;
    Ok(Box::new(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_file_appears_only_once_it_accepts_connections() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dime.sock");
        let listener = UnixTransportListener::bind(&path, 0o600).unwrap();
        assert!(UnixStream::connect(&path).is_ok());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // Only the public name is left: the staging name is gone.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("dime.sock")]);
        drop(listener);
        assert!(!path.exists());
    }

    #[test]
    fn a_client_that_sees_the_file_is_never_refused() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        const ROUNDS: usize = 2_000;
        let dir = tempfile::tempdir().unwrap();
        let path_of = |round: usize| dir.path().join(format!("{round}.sock"));
        let reached = std::sync::Arc::new(AtomicUsize::new(0));
        // Waits for each round's file to appear and connects at once, as
        // start-up scripts do; counts the times it is refused.
        let watcher = {
            let (paths, reached) = (
                (0..ROUNDS).map(path_of).collect::<Vec<_>>(),
                reached.clone(),
            );
            std::thread::spawn(move || {
                let mut refused = 0;
                for (round, path) in paths.iter().enumerate() {
                    loop {
                        match UnixStream::connect(path) {
                            Ok(_) => break,
                            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => refused += 1,
                            Err(_) => std::hint::spin_loop(),
                        }
                    }
                    reached.store(round + 1, Ordering::Release);
                }
                refused
            })
        };
        for round in 0..ROUNDS {
            let listener = UnixTransportListener::bind(&path_of(round), 0o600).unwrap();
            while reached.load(Ordering::Acquire) <= round {
                std::hint::spin_loop();
            }
            drop(listener);
        }
        let refused = watcher.join().unwrap();
        assert_eq!(refused, 0, "refused {refused} times in {ROUNDS} start-ups");
    }

    #[test]
    fn a_live_socket_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dime.sock");
        let _first = UnixTransportListener::bind(&path, 0o600).unwrap();
        let second = UnixTransportListener::bind(&path, 0o600).err().unwrap();
        assert_eq!(second.kind(), io::ErrorKind::AddrInUse);
        assert!(UnixStream::connect(&path).is_ok());
    }

    #[test]
    fn publishing_refuses_a_socket_published_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dime.sock");
        let _other = UnixListener::bind(&path).unwrap();
        let staging = dir.path().join("staging.sock");
        let _mine = UnixListener::bind(&staging).unwrap();
        let e = publish(&staging, &path).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
    }

    #[test]
    fn a_path_too_long_to_stage_is_bound_directly() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().to_string_lossy().len() + 1;
        // Fits in a socket address (107 bytes) only without a staging name.
        let name = "s".repeat(100usize.saturating_sub(base).max(1));
        let path = dir.path().join(name);
        assert!(staging_address(&path).is_none());
        let _l = UnixTransportListener::bind(&path, 0o600).unwrap();
        assert!(UnixStream::connect(&path).is_ok());
    }
}
