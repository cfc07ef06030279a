//! A payload that is still arriving while it is already being sent on
//! (cut-through relaying, `docs/protocol-extensions.md`, "Cut-through").
//!
//! The broker reads a large payload into one buffer of its declared
//! length. Once the message has been routed, recipients that negotiated
//! `cut_through` write out the part read so far while the rest arrives.
//! Exactly one [`LiveWriter`] fills the buffer from the front; any number
//! of readers see the filled prefix through the shared [`LivePayload`].
//! The two never touch the same bytes: the writer only writes past the
//! filled length, and readers only read before it.

use crate::buffer::PooledBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

const ARRIVING: u8 = 0;
const COMPLETE: u8 = 1;
const ABORTED: u8 = 2;

/// The shared side of a payload being filled: its filled prefix and
/// whether it completed or was abandoned.
pub struct LivePayload {
    /// Owns the memory; never touched after creation except to drop it
    /// (every access goes through `ptr`, so it is never reallocated).
    _buf: PooledBuf,
    ptr: *mut u8,
    len: usize,
    filled: AtomicUsize,
    state: AtomicU8,
}

// SAFETY: the bytes behind `ptr` are owned by `_buf`, which lives as long
// as the struct. Readers only ever read `[..filled]`, which the single
// `LiveWriter` never writes again once it has published it (Release store,
// Acquire load); the writer only writes `[filled..]`.
unsafe impl Send for LivePayload {}
unsafe impl Sync for LivePayload {}

impl LivePayload {
    /// A payload of `buf.len()` bytes of which the first `filled` are
    /// already in place, and its one writer.
    pub fn start(mut buf: PooledBuf, filled: usize) -> LiveWriter {
        assert!(filled <= buf.len(), "filled past the payload");
        let (ptr, len) = (buf.as_mut_ptr(), buf.len());
        LiveWriter(Arc::new(LivePayload {
            _buf: buf,
            ptr,
            len,
            filled: AtomicUsize::new(filled),
            state: AtomicU8::new(if filled == len { COMPLETE } else { ARRIVING }),
        }))
    }

    /// The declared length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a zero-length payload.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes that have arrived so far.
    pub fn filled(&self) -> &[u8] {
        let n = self.filled.load(Ordering::Acquire);
        // SAFETY: `[..n]` is initialised (the buffer came zeroed or
        // reused, and was written up to `n`) and no longer written (see
        // the `Send`/`Sync` note).
        unsafe { std::slice::from_raw_parts(self.ptr, n) }
    }

    /// True once every byte has arrived.
    pub fn is_complete(&self) -> bool {
        self.state.load(Ordering::Acquire) == COMPLETE
    }

    /// True when the payload will never be complete: its sender went away
    /// (or broke its stream) before the last byte.
    pub fn is_aborted(&self) -> bool {
        self.state.load(Ordering::Acquire) == ABORTED
    }

    /// Marks a payload that is still arriving as abandoned; true if it
    /// was (a complete one stays complete).
    pub fn abort(&self) -> bool {
        self.state
            .compare_exchange(ARRIVING, ABORTED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

impl std::fmt::Debug for LivePayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "LivePayload({} of {} bytes)",
            self.filled.load(Ordering::Relaxed),
            self.len
        )
    }
}

/// The one writer of a [`LivePayload`]: the reader of the sender's
/// connection. Dropping it before the payload is complete aborts it.
#[derive(Debug)]
pub struct LiveWriter(Arc<LivePayload>);

impl LiveWriter {
    /// The shared side, for recipients.
    pub fn shared(&self) -> &Arc<LivePayload> {
        &self.0
    }

    /// Bytes filled so far.
    pub fn filled_len(&self) -> usize {
        self.0.filled.load(Ordering::Relaxed)
    }

    /// The part not yet filled, to read into.
    pub fn spare(&mut self) -> &mut [u8] {
        let p = &*self.0;
        let n = p.filled.load(Ordering::Relaxed);
        // SAFETY: `[n..len]` is inside the buffer, and only this writer
        // (there is one, and `&mut self` keeps the borrow unique) writes
        // there; readers never look past `filled`.
        unsafe { std::slice::from_raw_parts_mut(p.ptr.add(n), p.len - n) }
    }

    /// Publishes `n` more bytes written into [`LiveWriter::spare`]; the
    /// last one completes the payload.
    pub fn advance(&mut self, n: usize) {
        let p = &*self.0;
        let filled = p.filled.load(Ordering::Relaxed) + n;
        assert!(filled <= p.len, "advanced past the payload");
        p.filled.store(filled, Ordering::Release);
        if filled == p.len {
            let _ =
                p.state
                    .compare_exchange(ARRIVING, COMPLETE, Ordering::AcqRel, Ordering::Acquire);
        }
    }
}

impl Drop for LiveWriter {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_see_the_filled_prefix_and_the_end() {
        let mut w = LivePayload::start(PooledBuf::from_vec(vec![0; 10]), 2);
        let shared = w.shared().clone();
        assert_eq!(shared.filled().len(), 2);
        w.spare()[..5].copy_from_slice(b"abcde");
        w.advance(5);
        assert_eq!(&shared.filled()[2..], b"abcde");
        assert!(!shared.is_complete() && !shared.is_aborted());
        w.spare().copy_from_slice(b"xyz");
        w.advance(3);
        assert!(shared.is_complete());
        drop(w);
        assert!(shared.is_complete(), "a complete payload stays complete");
        assert!(!shared.abort());
    }

    #[test]
    fn dropping_the_writer_early_aborts() {
        let w = LivePayload::start(PooledBuf::from_vec(vec![0; 10]), 4);
        let shared = w.shared().clone();
        drop(w);
        assert!(shared.is_aborted());
        assert_eq!(shared.filled().len(), 4);
    }
}
