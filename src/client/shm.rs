//! The client's side of shared-memory payloads (`crate::shm`,
//! docs/protocol-extensions.md "Shared memory"): the sender's pool of
//! recycled segments, and the link a received mapping uses to tell the
//! broker it is done with its segment, from whatever thread drops it.

use crate::codec::dimeb::{self, CodecError, MatrixEncoding, Out};
use crate::shm::Segment;
use crate::value::Value;
use rustc_hash::FxHashMap;
use serde_json::json;
use std::collections::VecDeque;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// Payloads from this size up go through shared memory by default. Below
/// it, a socket write costs less than mapping and releasing a segment:
/// `cargo bench --bench shm` measured shared memory level with the socket
/// at 128 KiB and 1.5x faster at 256 KiB (2.9x at 1 MiB).
pub const DEFAULT_THRESHOLD: usize = 256 << 10;

/// Segments are made in multiples of this (so similar sizes share them)…
const GRANULE: usize = 64 << 10;
/// …or of this from this size up, where a little more makes no difference.
const LARGE_GRANULE: usize = 2 << 20;
/// Most segments a sender keeps free for reuse…
const KEEP_FREE: usize = 4;
/// …and most bytes in them.
const KEEP_FREE_BYTES: usize = 4 << 30;
/// Most bytes a sender has out in segments nobody has released yet, and
/// most segments (the broker's own limit is 4096); past either, large
/// payloads go through the socket.
const MAX_BUSY_BYTES: usize = 8 << 30;
const MAX_BUSY: usize = 1024;

/// A sender's segments: free ones to reuse, busy ones (sent, not yet
/// released by every recipient) by the number the broker names them by.
#[derive(Default)]
pub(crate) struct SegmentPool {
    free: Vec<Segment>,
    busy: FxHashMap<u64, Segment>,
    busy_bytes: usize,
    next: u64,
}

impl SegmentPool {
    /// A free segment of at least `len` bytes (the smallest that is not
    /// wastefully large), taken out of the pool.
    pub fn take_free(&mut self, len: usize) -> Option<Segment> {
        let fits =
            |s: &Segment| s.size() >= len && s.size() <= len.saturating_mul(4) + LARGE_GRANULE;
        let i = (0..self.free.len())
            .filter(|i| fits(&self.free[*i]))
            .min_by_key(|i| self.free[*i].size())?;
        Some(self.free.swap_remove(i))
    }

    /// True if a busy segment would fit `len` once freed.
    pub fn busy_fits(&self, len: usize) -> bool {
        self.busy.values().any(|s| s.size() >= len)
    }

    /// A new segment for `len` bytes, not sealed yet (see
    /// [`Segment::create_unsealed`]), or None when the busy ones already
    /// hold [`MAX_BUSY_BYTES`] (the socket then carries the payload).
    pub fn create(&mut self, len: usize) -> io::Result<Option<Segment>> {
        let granule = if len >= LARGE_GRANULE {
            LARGE_GRANULE
        } else {
            GRANULE
        };
        let size = len.div_ceil(granule).max(1) * granule;
        if self.busy_bytes + size > MAX_BUSY_BYTES || self.busy.len() >= MAX_BUSY {
            return Ok(None);
        }
        Segment::create_unsealed(size).map(Some)
    }

    /// Keeps `seg` until the broker says it is free; returns the number
    /// that names it.
    pub fn lend(&mut self, seg: Segment) -> u64 {
        self.next += 1;
        self.busy_bytes += seg.size();
        self.busy.insert(self.next, seg);
        self.next
    }

    /// The broker says nobody holds segment `n` any more.
    pub fn freed(&mut self, n: u64) {
        let Some(seg) = self.busy.remove(&n) else {
            return;
        };
        self.busy_bytes -= seg.size();
        self.free.push(seg);
        // Keep the largest few: they are the expensive ones to fault in.
        self.free.sort_by_key(|s| std::cmp::Reverse(s.size()));
        let mut bytes = 0;
        let mut keep = 0;
        for s in &self.free {
            if keep == KEEP_FREE || bytes + s.size() > KEEP_FREE_BYTES {
                break;
            }
            bytes += s.size();
            keep += 1;
        }
        self.free.truncate(keep);
    }

    /// The descriptor of busy segment `n`.
    pub fn fd_of(&self, n: u64) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        self.busy.get(&n).map(|s| s.fd().as_raw_fd())
    }

    /// Segments sent and not yet freed.
    pub fn busy_count(&self) -> usize {
        self.busy.len()
    }

    /// Segments kept for reuse.
    pub fn free_count(&self) -> usize {
        self.free.len()
    }
}

/// The way back to the broker for received mappings: a second descriptor
/// of the client's socket, and the lock every writer of that socket holds
/// for the whole of a frame (the client's own requests too), so a release
/// written from another thread never lands inside another frame.
pub(crate) struct ReleaseLink {
    writer: Mutex<UnixStream>,
}

impl ReleaseLink {
    /// A link writing to a duplicate of `socket`.
    pub fn new(socket: OwnedFd) -> Arc<ReleaseLink> {
        Arc::new(ReleaseLink {
            writer: Mutex::new(UnixStream::from(socket)),
        })
    }

    /// Held by the client while it writes a frame.
    pub fn lock(&self) -> MutexGuard<'_, UnixStream> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The function a mapping runs when it is dropped: tells the broker
    /// (`shm_release`, which has no reply) unless the client is gone, in
    /// which case the broker has already let go of everything it sent.
    pub fn releaser(link: &Arc<ReleaseLink>) -> impl FnOnce(u64) + Send + 'static {
        let link: Weak<ReleaseLink> = Arc::downgrade(link);
        move |ino| {
            if let Some(link) = link.upgrade() {
                let json = json!({"command": "shm_release", "ino": ino}).to_string();
                if let Ok(frame) = crate::wire::try_encode_head(json.as_bytes(), 0) {
                    // A broken connection has nothing left to release.
                    let _ = link.lock().write_all(&frame);
                }
            }
        }
    }
}

/// What a client that negotiated shared memory keeps.
pub(crate) struct ShmSide {
    /// Segments this client sends from.
    pub pool: SegmentPool,
    /// Descriptors received and not yet claimed by a message.
    pub fds: VecDeque<OwnedFd>,
    /// For releases from mappings, and the write lock.
    pub link: Arc<ReleaseLink>,
    /// Payloads from this size up go through shared memory.
    pub threshold: usize,
    /// The broker was told (`shm_send`) that this client sends segments:
    /// None until the first, Some(false) if it refused.
    pub sending: Option<bool>,
    /// The broker sends this client descriptors (`shm_receive`): asked
    /// once a payload of at least `threshold` bytes has come through the
    /// socket, so reads of relayed messages pay for `recvmsg` only in
    /// clients that receive large payloads.
    pub receiving: bool,
    /// A large payload came through the socket: ask for descriptors.
    pub want_receiving: bool,
}

/// Why a payload could not be encoded into a segment.
pub(crate) enum FillError {
    /// The value itself cannot be encoded: the send fails.
    Codec(CodecError),
    /// The segment could not take the bytes (the kernel refused memory):
    /// the payload can still go through the socket.
    Segment(io::Error),
}

/// Encodes `v`, whose encoding is `len` bytes, into the start of `seg`
/// (which holds at least `len`). Long copies go through
/// [`Segment::copy_in`], which writes a new segment's pages without
/// faulting each one in zeroed first.
pub(crate) fn encode_to_segment(
    v: &Value,
    seg: &mut Segment,
    len: usize,
    enc: MatrixEncoding,
) -> Result<(), FillError> {
    let mut out = SegmentOut {
        seg,
        pos: 0,
        len,
        overflow: false,
        failed: None,
    };
    let encoded = dimeb::encode_to_out(v, &mut out, enc);
    if let Some(e) = out.failed.take() {
        return Err(FillError::Segment(e));
    }
    encoded.map_err(FillError::Codec)?;
    if out.overflow || out.pos != len {
        return Err(FillError::Codec(CodecError(format!(
            "the value does not encode to the {len} bytes given"
        ))));
    }
    Ok(())
}

/// A segment being filled from its start, up to `len` bytes; writing past
/// `len` only sets `overflow` (a bug in the length, reported, never memory
/// corrupted).
struct SegmentOut<'a> {
    seg: &'a mut Segment,
    pos: usize,
    len: usize,
    overflow: bool,
    /// The first write the segment refused.
    failed: Option<io::Error>,
}

impl SegmentOut<'_> {
    /// Where the next `n` bytes go, or None (overflow noted).
    fn claim(&mut self, n: usize) -> Option<usize> {
        let at = self.pos;
        match at.checked_add(n).filter(|end| *end <= self.len) {
            Some(end) => {
                self.pos = end;
                Some(at)
            }
            None => {
                self.overflow = true;
                None
            }
        }
    }
}

impl Out for SegmentOut<'_> {
    fn pos(&self) -> usize {
        self.pos
    }
    fn put(&mut self, bytes: &[u8]) {
        if let Some(at) = self.claim(bytes.len()) {
            if let Err(e) = self.seg.copy_in(at, bytes) {
                self.failed.get_or_insert(e);
            }
        }
    }
    fn zeros(&mut self, n: usize) {
        if let Some(at) = self.claim(n) {
            // A reused segment holds the last payload's bytes.
            self.seg.bytes_mut()[at..at + n].fill(0);
        }
    }
    fn append_with(&mut self, n: usize, fill: impl FnOnce(*mut u8)) -> Result<(), CodecError> {
        if let Some(at) = self.claim(n) {
            // SAFETY: `at + n` is within `len`, within the segment.
            fill(unsafe { self.seg.bytes_mut().as_mut_ptr().add(at) });
        }
        Ok(())
    }
    fn append_copy(&mut self, src: &[u8]) -> Result<(), CodecError> {
        self.put(src);
        match &self.failed {
            Some(e) => Err(CodecError(format!(
                "the shared-memory segment refused the bytes: {e}"
            ))),
            None => Ok(()),
        }
    }
}
