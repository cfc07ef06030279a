//! Requests from a fuzzer, run the way the event loop runs them: three
//! connections (one with every permission, one that must authenticate
//! first, one with a user's limited roles), frames routed through the
//! dispatcher to every service and the admin commands, shared-memory
//! payloads passed as real sealed memory files, blocked clients resumed,
//! output flushed into a sink, deadlines expired and everyone disconnected
//! at the end. A panic anywhere is a bug (the loop would close that
//! client). See `crate::fuzzing::requests`; `shm_descriptor` drives the
//! checks of received shared-memory descriptors.

use super::admin;
use super::auth::{Access, AuthTable, Credential, Principal};
use super::config::Config;
use super::conn::{ConnId, Connection, FreedSegments};
use super::dispatch::Services;
use super::request::{self, CommandHeader};
use super::state::State;
use crate::buffer::PooledBuf;
use crate::shm::{Mapping, Segment};
use crate::transport::Transport;
use crate::wire::{Frame, FrameReader};
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Users and roles of the fuzzed server (tokens a seed may present).
const USERS: &str = "\
role all *
role some join:a* send:a* broadcast share.read:* share:s* space:s* call:f* provide:f*
root tok-root all
ann  tok-ann  some
";

/// A connection's socket that takes every byte written and has no input;
/// `.0`: it passes descriptors (a unix socket), dropping them.
struct Sink(bool);

impl Read for Sink {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsRawFd for Sink {
    fn as_raw_fd(&self) -> RawFd {
        -1
    }
}

impl Transport for Sink {
    fn set_nonblocking(&self, _: bool) -> io::Result<()> {
        Ok(())
    }
    fn peer(&self) -> String {
        "fuzzer".into()
    }
    fn shutdown(&self) -> io::Result<()> {
        Ok(())
    }
    fn passes_fds(&self) -> bool {
        self.0
    }
    fn send_with_fds(&mut self, bufs: &[IoSlice<'_>], _: &[BorrowedFd<'_>]) -> io::Result<usize> {
        if !self.0 {
            return Err(io::ErrorKind::Unsupported.into());
        }
        Ok(bufs.iter().map(|b| b.len()).sum())
    }
}

/// Runs the frames in `data`. A frame goes to connection 1, 2 or 3 by how
/// many spaces its JSON starts with (none, one, more), so the seeds, one
/// client's traffic each, run with every permission.
pub fn run(data: &[u8]) {
    let config = Config {
        max_name: 64,
        max_groups: 8,
        max_queue: 1 << 20,
        ..Config::default()
    };
    let table = Arc::new(AuthTable::parse(USERS).expect("the fuzzer's auth file parses"));
    let mut st = State::new(config, Services::extensions());
    let mut services = Services::default();
    let ann = table.by_token("tok-ann").expect("ann is listed");
    let accesses = [
        Access::Full,
        Access::Pending,
        Access::Granted(Arc::new(Principal::user(
            ann,
            Credential::Token("tok-ann".into()),
        ))),
    ];
    st.auth = Some(table.clone());
    for (i, access) in accesses.into_iter().enumerate() {
        // The first is a unix client that may pass descriptors, and an
        // admin; the others are network clients.
        let mut c = Connection::new(Box::new(Sink(i == 0)), 1 << 20);
        c.access = access;
        c.admin = i == 0;
        st.conns.insert(i + 1, c);
    }
    let mut reader = FrameReader::new(1 << 20);
    reader.feed(data);
    while let Ok(Some(frame)) = reader.next_frame() {
        let spaces = frame.json().iter().take_while(|&&b| b == b' ').count();
        let id = 1 + spaces.min(2);
        let Some(c) = st.conns.get_mut(&id) else {
            continue;
        };
        let mut frame = frame;
        pass_shm(c, &mut frame);
        let limits = (st.config.max_message, st.config.max_shm_in_flight);
        c.attach_shm(&mut frame, id, limits, &st.shm_freed);
        let c = st.conns.get_mut(&id).expect("looked up above");
        if c.blocked.is_some() || !c.deferred.is_empty() {
            c.deferred.push_back(frame);
        } else {
            handle(&mut services, &mut st, id, frame);
        }
        settle(&mut services, &mut st);
    }
    // Every deadline passes.
    services.expire(&mut st, Instant::now() + Duration::from_secs(1 << 20));
    settle(&mut services, &mut st);
    let ids: Vec<ConnId> = st.conns.keys().copied().collect();
    for id in ids {
        services.forget(&mut st, id);
    }
}

/// What a client that announced a shared-memory payload sends along: the
/// frame's payload moved into a sealed memory file, whose descriptor
/// arrives with it (read with `recvmsg`, as after `shm_send`).
fn pass_shm(c: &mut Connection, frame: &mut Frame) {
    if !frame.json().windows(5).any(|w| w == b"\"shm\"") {
        return;
    }
    let bytes: &[u8] = if frame.payload.is_empty() {
        &[0]
    } else {
        &frame.payload
    };
    let Ok(mut seg) = Segment::create(bytes.len()) else {
        return;
    };
    seg.bytes_mut().copy_from_slice(bytes);
    let Ok(fd) = seg.fd().try_clone_to_owned() else {
        return;
    };
    c.fds_in = true;
    c.fds.push_back(fd);
    let json = frame.json().to_vec();
    *frame = Frame::new(&json, PooledBuf::from_vec(Vec::new()));
}

/// One request, as the loop's `handle_frame` runs it.
fn handle(services: &mut Services, st: &mut State, id: ConnId, frame: Frame) {
    if let Some(Err(msg)) = &frame.shm {
        st.reply_error(id, msg);
        st.notify_freed();
        return;
    }
    let Ok(text) = std::str::from_utf8(frame.json()) else {
        return;
    };
    let text = text.to_owned();
    let Ok(header) = request::parse::<CommandHeader>(&text) else {
        return;
    };
    let Some(command) = header.name() else {
        return;
    };
    let outcome = services
        .dispatch(st, id, &command, &text, frame)
        .or_else(|| admin::dispatch(services, st, id, &command, &text));
    if let Some(Err(e)) = outcome {
        st.reply(id, e.reply());
    }
    st.notify_freed();
}

/// What the loop does between events: resume unblocked clients, write
/// output, and close connections that were failed.
fn settle(services: &mut Services, st: &mut State) {
    while let Some(id) = st.resume.pop() {
        while let Some(c) = st.conns.get_mut(&id) {
            if c.blocked.is_some() || c.closing {
                break;
            }
            let Some(f) = c.deferred.pop_front() else {
                break;
            };
            handle(services, st, id, f);
        }
    }
    let ids: Vec<ConnId> = st.conns.keys().copied().collect();
    for id in ids {
        let Some(c) = st.conns.get_mut(&id) else {
            continue;
        };
        let _ = c.out.flush(&mut *c.stream);
        if c.closing {
            services.forget(st, id);
        }
    }
    st.dirty.clear();
}

/// The seals a memory file may be given, by bit of the fuzzer's seal byte.
#[cfg(target_os = "linux")]
const SEALS: [libc::c_int; 5] = [
    libc::F_SEAL_SHRINK,
    libc::F_SEAL_GROW,
    libc::F_SEAL_WRITE,
    libc::F_SEAL_FUTURE_WRITE,
    libc::F_SEAL_SEAL,
];

/// Largest message the descriptor checks accept here.
const SHM_MAX_MESSAGE: u64 = 1 << 15;

/// A received shared-memory descriptor, checked as the broker checks it
/// (`Connection::attach_shm`) and as a recipient does (`Mapping::open`).
/// `data`: the kind of file (byte 0: a memory file that allows sealing,
/// one that does not, a pipe, a regular file, a socket), the seals tried
/// on it (byte 1, bits of `SEALS`, in that order), the length the message
/// declares (bytes 2..6, u32 little-endian), the file's size (bytes 6..8,
/// u16), its bytes (the rest, cut or zero-filled to the size). The checks
/// must accept exactly a memory file sealed against shrinking and writing,
/// at least as long as declared, declared non-empty (and, by the broker,
/// within its message limit); what they accept must read back as written,
/// and the sender must hear its segment is free once the payload is gone.
pub fn shm_descriptor(data: &[u8]) {
    #[cfg(target_os = "linux")]
    shm_descriptor_linux(data);
    #[cfg(not(target_os = "linux"))]
    let _ = data;
}

#[cfg(target_os = "linux")]
fn shm_descriptor_linux(data: &[u8]) {
    let (Some(&kind), Some(&seals), Some(declared), Some(size)) =
        (data.first(), data.get(1), data.get(2..6), data.get(6..8))
    else {
        return;
    };
    let declared = u32::from_le_bytes(declared.try_into().expect("4 bytes")) as usize;
    let size = usize::from(u16::from_le_bytes(size.try_into().expect("2 bytes")));
    let mut bytes = data[8..].to_vec();
    bytes.resize(size, 0);
    let Some((fd, applied)) = make_file(kind % 5, seals, &bytes) else {
        return;
    };
    let sealed = applied & libc::F_SEAL_SHRINK != 0
        && applied & (libc::F_SEAL_WRITE | libc::F_SEAL_FUTURE_WRITE) != 0;
    let acceptable = kind % 5 == 0 && sealed && declared > 0 && declared <= size;

    // A recipient maps it.
    let dup = fd.try_clone().expect("dup");
    match Mapping::open(dup, declared) {
        Ok(m) => {
            assert!(
                acceptable,
                "kind {kind} seals {applied:#x}: {declared} of {size} mapped"
            );
            assert_eq!(
                m.as_ref(),
                &bytes[..declared],
                "the mapping reads back wrong"
            );
        }
        Err(e) => assert!(!acceptable, "a good descriptor was refused: {e}"),
    }

    // The broker takes it with a message announcing it.
    let mut c = Connection::new(Box::new(Sink(true)), SHM_MAX_MESSAGE);
    c.fds_in = true;
    c.fds.push_back(fd);
    let head = format!(r#"{{"command":"send","name":"g","shm":{{"len":{declared},"segment":7}}}}"#);
    let mut frame = Frame::new(head.as_bytes(), PooledBuf::from_vec(Vec::new()));
    let freed = Arc::new(FreedSegments::default());
    c.attach_shm(&mut frame, 1, (SHM_MAX_MESSAGE, 4), &freed);
    assert!(c.fds.is_empty(), "the descriptor was not claimed");
    let within = declared as u64 <= SHM_MAX_MESSAGE;
    match &frame.shm {
        Some(Ok(p)) => {
            assert!(
                acceptable && within,
                "kind {kind} seals {applied:#x}: taken"
            );
            let m = p.map().expect("a checked payload maps");
            assert_eq!(
                m.as_ref(),
                &bytes[..declared],
                "the payload reads back wrong"
            );
        }
        Some(Err(e)) => assert!(!(acceptable && within), "a good payload was refused: {e}"),
        None => panic!("an announced payload was not looked at"),
    }
    let taken = frame.shared().is_some();
    drop(frame);
    let back = freed.drain();
    assert_eq!(back, if taken { vec![(1, 7)] } else { vec![] });
}

/// A file of `kind` (see `shm_descriptor`) holding `bytes`, and the seals
/// that could be put on it; None if the system would not make one.
#[cfg(target_os = "linux")]
fn make_file(kind: u8, seals: u8, bytes: &[u8]) -> Option<(OwnedFd, libc::c_int)> {
    let open = |raw: libc::c_int| (raw >= 0).then(|| unsafe { OwnedFd::from_raw_fd(raw) });
    let fd = match kind {
        // SAFETY (each arm): plain syscalls with valid arguments; a
        // returned descriptor is new and ours.
        0 => open(unsafe {
            libc::memfd_create(c"f".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
        })?,
        1 => open(unsafe { libc::memfd_create(c"f".as_ptr(), libc::MFD_CLOEXEC) })?,
        2 => {
            let mut p = [0; 2];
            if unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
                return None;
            }
            drop(open(p[1]));
            return Some((open(p[0])?, 0));
        }
        3 => open(unsafe {
            libc::open(
                c"/tmp".as_ptr(),
                libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC,
                0o600,
            )
        })?,
        _ => {
            let mut p = [0; 2];
            let r = unsafe {
                libc::socketpair(
                    libc::AF_UNIX,
                    libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                    0,
                    p.as_mut_ptr(),
                )
            };
            if r != 0 {
                return None;
            }
            drop(open(p[1]));
            return Some((open(p[0])?, 0));
        }
    };
    let len = libc::off_t::try_from(bytes.len()).ok()?;
    // SAFETY: a valid descriptor and a buffer of the length given.
    unsafe {
        if libc::ftruncate(fd.as_raw_fd(), len) != 0
            || libc::pwrite(fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), 0)
                != bytes.len() as isize
        {
            return None;
        }
    }
    let mut applied = 0;
    for (bit, seal) in SEALS.iter().enumerate() {
        // SAFETY: a valid descriptor and seal flag; refusals are expected.
        if seals & (1 << bit) != 0
            && unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), libc::F_ADD_SEALS, *seal) } == 0
        {
            applied |= seal;
        }
    }
    Some((fd, applied))
}
