//! Shared-memory payloads on one host: sealed memory files (`memfd`)
//! whose descriptors travel over unix sockets (`SCM_RIGHTS`), so a large
//! payload is written once by its sender and mapped by each recipient
//! instead of being copied through the broker (docs/protocol-extensions.md,
//! "Shared memory").
//!
//! - A sender writes into a [`Segment`]: a memory file it keeps mapped
//!   writable and recycles once every recipient has let go of it (the
//!   broker says when), so its pages are faulted in once, not per message.
//! - A segment is sealed before it is ever sent: it cannot shrink (a
//!   mapping would fault past its end), grow, or be written through any
//!   new mapping or `write` — only through the sender's own mapping, made
//!   before the seals.
//! - Whoever receives a descriptor checks it with [`check_received`] (a
//!   sealed memory file at least as long as the header says) before using
//!   it: the header is never trusted. A recipient maps it privately
//!   ([`Mapping`]): its writes are its own, copy-on-write, and never reach
//!   the segment or another recipient.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::Mutex;

/// Seals every segment carries before it is sent.
#[cfg(target_os = "linux")]
const SEALS: libc::c_int =
    libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_FUTURE_WRITE | libc::F_SEAL_SEAL;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Copies from this size up into a segment nobody has seen yet are written
/// with `pwrite(2)` instead of through the mapping: the kernel then puts
/// the bytes straight into newly allocated pages, where a write through
/// the mapping first faults in a zeroed page for every 4 KiB (800 MB on a
/// 2-core VM: 0.26 s of CPU against 0.46 s; docs/protocol-extensions.md,
/// "How our clients fill a new segment").
const PWRITE_MIN: usize = 64 << 10;

/// Bytes written with `pwrite` from which the sender's own mapping of them
/// is faulted in by a background thread once the segment is sealed (so
/// reusing the segment later writes at memory speed). Below it the few
/// faults are paid when the segment is reused.
const WARM_MIN: usize = 8 << 20;

/// Largest `pwrite` at once: a signal interrupts between calls, not
/// halfway through a gigabyte.
const PWRITE_CHUNK: usize = 64 << 20;

/// A memory file and the sender's writable mapping of all of it.
///
/// A new segment ([`Segment::create_unsealed`]) starts unsealed, so its
/// first payload can be written into the file itself ([`Segment::copy_in`]
/// uses `pwrite`), which costs far less than faulting in fresh pages
/// through the mapping; it must then be [sealed](Segment::seal) before its
/// descriptor goes anywhere. Once sealed only this mapping can write it.
pub struct Segment {
    fd: OwnedFd,
    ptr: *mut u8,
    size: usize,
    /// Inode number: how broker and recipients name this file.
    ino: u64,
    sealed: bool,
    /// Page-aligned ranges written with `pwrite` that our mapping has not
    /// faulted in yet.
    cold: Vec<std::ops::Range<usize>>,
    /// The thread faulting `cold` ranges into our mapping, if one runs:
    /// joined before the mapping is unmapped.
    warming: Option<std::thread::JoinHandle<()>>,
}

// SAFETY: the mapping is owned by the segment and only written through
// `&mut self`; the raw pointer is what keeps it from being Send by default.
unsafe impl Send for Segment {}
unsafe impl Sync for Segment {}

impl Segment {
    /// A new sealed segment of `size` bytes (> 0), to be written through
    /// [`Segment::bytes_mut`] (or [`Segment::copy_in`]).
    pub fn create(size: usize) -> io::Result<Segment> {
        let mut seg = Segment::create_unsealed(size)?;
        seg.seal()?;
        Ok(seg)
    }

    /// A new segment of `size` bytes (> 0), not sealed yet: write its
    /// payload, then [`Segment::seal`] it before sending its descriptor.
    /// Its pages are allocated as they are first written: bytes never
    /// written (past a payload) never take memory.
    #[cfg(target_os = "linux")]
    pub fn create_unsealed(size: usize) -> io::Result<Segment> {
        if size == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty segment"));
        }
        // SAFETY: a NUL-terminated name and valid flags.
        let raw = cvt(unsafe {
            libc::memfd_create(
                c"dime".as_ptr(),
                libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
            )
        })?;
        // SAFETY: memfd_create returned a new descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let len = libc::off_t::try_from(size)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "segment too large"))?;
        // SAFETY: a valid descriptor.
        cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), len) })?;
        // SAFETY: mapping a descriptor we own, of `size` bytes.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // Best effort: where the kernel allows huge pages for shared memory
        // on request (`shmem_enabled` = advise), faults through our mapping
        // then take 2 MiB at a time.
        // SAFETY: our own mapping.
        unsafe { libc::madvise(ptr, size, libc::MADV_HUGEPAGE) };
        Ok(Segment {
            ino: inode(fd.as_fd())?,
            fd,
            ptr: ptr.cast(),
            size,
            sealed: false,
            cold: Vec::new(),
            warming: None,
        })
    }

    /// Shared memory needs Linux's memory files.
    #[cfg(not(target_os = "linux"))]
    pub fn create_unsealed(_size: usize) -> io::Result<Segment> {
        Err(io::ErrorKind::Unsupported.into())
    }

    /// Seals the segment (once; later calls do nothing): from now on it
    /// cannot shrink, grow, or be written but through our own mapping,
    /// made before the seals. Bytes written with `pwrite` are then faulted
    /// into that mapping by a background thread, so the next payload
    /// written into this segment does not pay a fault per page.
    #[cfg(target_os = "linux")]
    pub fn seal(&mut self) -> io::Result<()> {
        if self.sealed {
            return Ok(());
        }
        // SAFETY: a valid descriptor and seal flags.
        cvt(unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_ADD_SEALS, SEALS) })?;
        self.sealed = true;
        self.start_warming();
        Ok(())
    }

    /// Shared memory needs Linux's memory files.
    #[cfg(not(target_os = "linux"))]
    pub fn seal(&mut self) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }

    /// True once [`Segment::seal`] has run.
    pub fn is_sealed(&self) -> bool {
        self.sealed
    }

    /// Bytes the segment holds.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Its inode number, as [`check_received`] reports it to recipients.
    pub fn ino(&self) -> u64 {
        self.ino
    }

    /// The descriptor to send.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The whole segment, writable (only the sender can). A warming
    /// thread may still be faulting pages into the mapping meanwhile:
    /// that changes no byte, so writes need not wait for it.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: our own mapping of `size` bytes, alive while `self` is.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.size) }
    }

    /// Copies `src` to `offset` the cheapest way there is: with `pwrite`
    /// into a segment not sealed yet (no zeroed page faulted in first, see
    /// [`PWRITE_MIN`]), else through our mapping.
    pub fn copy_in(&mut self, offset: usize, src: &[u8]) -> io::Result<()> {
        let end = offset
            .checked_add(src.len())
            .filter(|end| *end <= self.size)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{} bytes at {offset} do not fit a segment of {}",
                        src.len(),
                        self.size
                    ),
                )
            })?;
        if !self.sealed && src.len() >= PWRITE_MIN {
            self.pwrite_all(offset, src)?;
            self.note_cold(offset, end);
        } else {
            self.bytes_mut()[offset..end].copy_from_slice(src);
        }
        Ok(())
    }

    /// `pwrite(2)`s all of `src` at `offset` (within the segment).
    fn pwrite_all(&self, offset: usize, src: &[u8]) -> io::Result<()> {
        let mut done = 0;
        while done < src.len() {
            let part = &src[done..src.len().min(done + PWRITE_CHUNK)];
            let at = libc::off_t::try_from(offset + done)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
            // SAFETY: a valid descriptor and a readable buffer of that length.
            let n =
                unsafe { libc::pwrite(self.fd.as_raw_fd(), part.as_ptr().cast(), part.len(), at) };
            match n {
                n if n > 0 => done += n as usize,
                0 => return Err(io::ErrorKind::WriteZero.into()),
                _ => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }

    /// Remembers that `start..end` was written past our mapping: the whole
    /// pages inside it are the ones worth faulting in at once later (the
    /// partial pages at its ends are shared with bytes written through the
    /// mapping, or are faulted by the next write anyway).
    fn note_cold(&mut self, start: usize, end: usize) {
        let page = page_size();
        let (start, end) = (start.next_multiple_of(page), end / page * page);
        if start < end {
            self.cold.push(start..end);
        }
    }

    /// Faults the cold ranges into our mapping on a thread of its own,
    /// when they are large enough to be worth one.
    fn start_warming(&mut self) {
        let ranges = std::mem::take(&mut self.cold);
        if ranges.iter().map(|r| r.len()).sum::<usize>() < WARM_MIN {
            return;
        }
        // An address, not a pointer, so the closure is Send; the segment
        // joins this thread before it unmaps (see Drop).
        let base = self.ptr as usize;
        let spawned = std::thread::Builder::new()
            .name("dime-shm-warm".into())
            .spawn(move || {
                for r in ranges {
                    // Best effort: a failure leaves the pages to be faulted
                    // in by the next write, as without it.
                    // SAFETY: page-aligned ranges inside our own writable
                    // mapping, which outlives this thread (see above);
                    // populating changes no byte, so it may run while
                    // the owner writes.
                    unsafe {
                        libc::madvise(
                            (base + r.start) as *mut libc::c_void,
                            r.len(),
                            libc::MADV_POPULATE_WRITE,
                        )
                    };
                }
            });
        // Without a thread the next write faults the pages in instead.
        self.warming = spawned.ok();
    }

    /// Waits for the warming thread, if one runs.
    fn finish_warming(&mut self) {
        if let Some(t) = self.warming.take() {
            // The thread only makes syscalls: it cannot panic.
            let _ = t.join();
        }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        self.finish_warming();
        // SAFETY: our own mapping, unmapped once.
        unsafe { libc::munmap(self.ptr.cast(), self.size) };
    }
}

/// The size of a memory page.
fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => 4096,
    }
}

fn inode(fd: BorrowedFd<'_>) -> io::Result<u64> {
    Ok(stat(fd)?.st_ino)
}

fn stat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: a valid descriptor and room for the result.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: fstat succeeded and filled it.
    Ok(unsafe { st.assume_init() })
}

/// Why a received descriptor cannot carry a payload.
fn refuse(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Checks that `fd`, received from a peer, is a sealed memory file of at
/// least `len` bytes (> 0): it can neither shrink (a mapping of it would
/// then fault) nor be written by anyone but its creator's own mapping.
/// Returns its inode number.
#[cfg(target_os = "linux")]
pub fn check_received(fd: BorrowedFd<'_>, len: usize) -> io::Result<u64> {
    let st = stat(fd)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(refuse(
            "the shared-memory descriptor is not a memory file".into(),
        ));
    }
    // SAFETY: a valid descriptor; F_GET_SEALS fails on anything but a
    // memory file that allows sealing.
    let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    if seals < 0 {
        return Err(refuse(
            "the shared-memory descriptor is not a sealable memory file".into(),
        ));
    }
    let write = libc::F_SEAL_WRITE | libc::F_SEAL_FUTURE_WRITE;
    if seals & libc::F_SEAL_SHRINK == 0 || seals & write == 0 {
        return Err(refuse(format!(
            "the shared-memory file is not sealed against shrinking and writing (seals 0x{seals:X})"
        )));
    }
    if len == 0 || (st.st_size as u64) < len as u64 {
        return Err(refuse(format!(
            "the shared-memory file holds {} bytes, the message says {len}",
            st.st_size
        )));
    }
    Ok(st.st_ino)
}

/// Shared memory needs Linux's memory files.
#[cfg(not(target_os = "linux"))]
pub fn check_received(_fd: BorrowedFd<'_>, _len: usize) -> io::Result<u64> {
    Err(io::ErrorKind::Unsupported.into())
}

/// What a mapping runs once it is gone, given its inode number.
type OnRelease = Box<dyn FnOnce(u64) + Send>;

/// A received payload: the first `len` bytes of a checked memory file,
/// mapped privately (readable and writable, copy-on-write), so a received
/// array can be used and modified without a copy while nothing written
/// reaches the file. Unmapped on drop, after which `on_release` runs
/// (telling the broker this recipient is done with the segment).
pub struct Mapping {
    ptr: *mut u8,
    len: usize,
    ino: u64,
    _fd: OwnedFd,
    on_release: Mutex<Option<OnRelease>>,
}

// SAFETY: the mapping is private to this value; bytes are handed out as
// shared slices (and, through the C ABI, to one owner per range).
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Checks `fd` ([`check_received`]) and maps its first `len` bytes.
    pub fn open(fd: OwnedFd, len: usize) -> io::Result<Mapping> {
        let ino = check_received(fd.as_fd(), len)?;
        // SAFETY: mapping a checked descriptor; the file cannot shrink
        // below `len`, so every mapped byte stays backed.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            ptr: ptr.cast(),
            len,
            ino,
            _fd: fd,
            on_release: Mutex::new(None),
        })
    }

    /// The segment's inode number.
    pub fn ino(&self) -> u64 {
        self.ino
    }

    /// Runs `f(ino)` once this mapping is gone.
    pub fn on_release(&self, f: impl FnOnce(u64) + Send + 'static) {
        *self.on_release.lock().unwrap_or_else(|p| p.into_inner()) = Some(Box::new(f));
    }
}

impl std::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mapping({} bytes, inode {})", self.len, self.ino)
    }
}

impl AsRef<[u8]> for Mapping {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: our own mapping of `len` bytes, alive while `self` is.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: our own mapping, unmapped once.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
        let f = self
            .on_release
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(f) = f {
            f(self.ino);
        }
    }
}

/// A payload the broker passes on without reading it: the descriptor of
/// a checked memory file and the payload's length. When the last holder
/// (an inbox, a recipient that has not released it) drops it,
/// `on_drop` runs, so the broker can tell the sender its segment is free.
pub struct SharedPayload {
    fd: OwnedFd,
    len: usize,
    ino: u64,
    on_drop: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl SharedPayload {
    /// Checks a received descriptor ([`check_received`]) for a payload of
    /// `len` bytes.
    pub fn new(fd: OwnedFd, len: usize) -> io::Result<SharedPayload> {
        let ino = check_received(fd.as_fd(), len)?;
        Ok(SharedPayload {
            fd,
            len,
            ino,
            on_drop: Mutex::new(None),
        })
    }

    /// Payload bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true: a shared payload holds at least one byte.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The memory file's inode number.
    pub fn ino(&self) -> u64 {
        self.ino
    }

    /// The descriptor, to pass on.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Runs `f` when the last reference is dropped.
    pub fn on_drop(&self, f: impl FnOnce() + Send + 'static) {
        *self.on_drop.lock().unwrap_or_else(|p| p.into_inner()) = Some(Box::new(f));
    }

    /// Maps the payload privately, to read it (for a recipient that cannot
    /// take descriptors).
    pub fn map(&self) -> io::Result<Mapping> {
        Mapping::open(self.fd.try_clone()?, self.len)
    }
}

impl Drop for SharedPayload {
    fn drop(&mut self) {
        let f = self
            .on_drop
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(f) = f {
            f();
        }
    }
}

impl std::fmt::Debug for SharedPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedPayload({} bytes, inode {})", self.len, self.ino)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn a_segment_is_sealed_and_its_recipients_map_it_privately() {
        let mut seg = Segment::create(1 << 16).unwrap();
        seg.bytes_mut()[..5].copy_from_slice(b"hello");
        let fd = seg.fd().try_clone_to_owned().unwrap();
        assert_eq!(check_received(fd.as_fd(), 1 << 16).unwrap(), seg.ino());
        // Nobody can shrink it, write it, or map it writable and shared.
        // SAFETY: plain syscalls on a valid descriptor.
        unsafe {
            assert!(libc::ftruncate(fd.as_raw_fd(), 10) < 0);
            assert!(libc::write(fd.as_raw_fd(), b"x".as_ptr().cast(), 1) < 0);
            let p = libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            );
            assert_eq!(p, libc::MAP_FAILED);
        }
        let released = Arc::new(AtomicU64::new(0));
        let m = Mapping::open(fd, 5).unwrap();
        let r = released.clone();
        m.on_release(move |ino| r.store(ino, Ordering::SeqCst));
        assert_eq!(m.as_ref(), b"hello");
        // A recipient's write is its own.
        // SAFETY: the mapping is private and writable; nobody else reads it.
        unsafe { *(m.as_ref().as_ptr() as *mut u8) = b'j' };
        assert_eq!(m.as_ref(), b"jello");
        assert_eq!(&seg.bytes_mut()[..5], b"hello");
        drop(m);
        assert_eq!(released.load(Ordering::SeqCst), seg.ino());
    }

    /// `n` bytes, different for every `seed`, with no period a page or a
    /// split would hide.
    fn pattern(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i.wrapping_mul(31) ^ (i >> 9) ^ seed as usize) as u8)
            .collect()
    }

    /// Writes `parts` one after another from offset 0 — headers through
    /// the mapping, the rest with `copy_in`, as the encoder does — and
    /// returns what was written.
    fn fill(seg: &mut Segment, parts: &[(usize, bool)], seed: u8) -> Vec<u8> {
        let mut all = Vec::new();
        for (k, (n, through_map)) in parts.iter().enumerate() {
            let bytes = pattern(*n, seed.wrapping_add(k as u8));
            let at = all.len();
            if *through_map {
                seg.bytes_mut()[at..at + n].copy_from_slice(&bytes);
            } else {
                seg.copy_in(at, &bytes).unwrap();
            }
            all.extend_from_slice(&bytes);
        }
        all
    }

    #[test]
    fn a_new_segment_and_a_reused_one_hold_exactly_what_was_copied_in() {
        // Sizes around the pwrite threshold and the warming threshold, none
        // a multiple of the page, with small writes through the mapping
        // between them sharing their first and last pages.
        let parts = [
            (13, true),
            (PWRITE_MIN - 1, false),
            (5, true),
            (PWRITE_MIN, false),
            (1, true),
            (PWRITE_MIN + 4097, false),
            (3, true),
            (WARM_MIN + 12345, false),
            (7, true),
            (1001, false),
        ];
        let total: usize = parts.iter().map(|p| p.0).sum();
        let mut seg = Segment::create_unsealed(total + 4096 * 3 + 11).unwrap();
        assert!(!seg.is_sealed());
        let first = fill(&mut seg, &parts, 1);
        seg.seal().unwrap();
        assert!(seg.is_sealed());
        let fd = |seg: &Segment| seg.fd().try_clone_to_owned().unwrap();
        let m = Mapping::open(fd(&seg), total).unwrap();
        assert!(m.as_ref() == first, "a new segment's bytes differ");
        drop(m);
        // Reused, sealed: everything through the mapping now (while the
        // warming thread may still be running), other bytes at the same
        // and at shifted offsets.
        let second = fill(&mut seg, &parts, 2);
        let m = Mapping::open(fd(&seg), total).unwrap();
        assert!(m.as_ref() == second, "a reused segment's bytes differ");
        drop(m);
        let shifted: Vec<(usize, bool)> = parts.iter().rev().copied().collect();
        let third = fill(&mut seg, &shifted, 3);
        let m = Mapping::open(fd(&seg), total).unwrap();
        assert!(m.as_ref() == third, "a reused segment's bytes differ");
        // And a sealed segment refuses pwrite: the copies above went
        // through the mapping, as they must.
        // SAFETY: a plain syscall on a valid descriptor.
        let n = unsafe { libc::pwrite(seg.fd().as_raw_fd(), b"x".as_ptr().cast(), 1, 0) };
        assert!(n < 0);
    }

    #[test]
    fn copies_outside_a_segment_are_refused() {
        let mut seg = Segment::create_unsealed(PWRITE_MIN * 2).unwrap();
        let big = vec![7u8; PWRITE_MIN + 1];
        let e = seg.copy_in(PWRITE_MIN, &big).unwrap_err();
        assert!(e.to_string().contains("do not fit"), "{e}");
        assert!(seg.copy_in(usize::MAX, &[1]).is_err());
        // Nothing was written: the file is still all zeros.
        seg.seal().unwrap();
        let m = Mapping::open(seg.fd().try_clone_to_owned().unwrap(), PWRITE_MIN * 2).unwrap();
        assert!(m.as_ref().iter().all(|b| *b == 0));
    }

    #[test]
    fn received_descriptors_are_checked_not_trusted() {
        let seg = Segment::create(4096).unwrap();
        let fd = seg.fd().try_clone_to_owned().unwrap();
        let e = check_received(fd.as_fd(), 4097).unwrap_err();
        assert!(e.to_string().contains("holds 4096 bytes"), "{e}");
        assert!(check_received(fd.as_fd(), 0).is_err());
        // An unsealed memory file.
        // SAFETY: plain syscalls.
        let raw = unsafe { libc::memfd_create(c"x".as_ptr(), libc::MFD_ALLOW_SEALING) };
        let open = unsafe { OwnedFd::from_raw_fd(raw) };
        unsafe { libc::ftruncate(open.as_raw_fd(), 4096) };
        let e = check_received(open.as_fd(), 10).unwrap_err();
        assert!(e.to_string().contains("not sealed"), "{e}");
        // Not a memory file at all.
        let file = tempfile::tempfile().unwrap();
        file.set_len(4096).unwrap();
        let e = check_received(file.as_fd(), 10).unwrap_err();
        assert!(e.to_string().contains("sealable"), "{e}");
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(check_received(a.as_fd(), 10).is_err());
    }

    #[test]
    fn a_shared_payload_reports_its_last_drop() {
        let seg = Segment::create(4096).unwrap();
        let p = SharedPayload::new(seg.fd().try_clone_to_owned().unwrap(), 100).unwrap();
        let dropped = Arc::new(AtomicU64::new(0));
        let d = dropped.clone();
        p.on_drop(move || d.store(1, Ordering::SeqCst));
        let p = Arc::new(p);
        let q = p.clone();
        drop(p);
        assert_eq!(dropped.load(Ordering::SeqCst), 0);
        assert_eq!(q.map().unwrap().as_ref().len(), 100);
        drop(q);
        assert_eq!(dropped.load(Ordering::SeqCst), 1);
    }
}
