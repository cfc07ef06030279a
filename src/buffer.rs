//! Large payload buffers, recycled per thread.
//!
//! A fresh multi-megabyte allocation is served by `mmap`, and the first
//! touch of each 4 KiB page costs a fault (about 1 s per GiB here). Keeping
//! a few freed large buffers around makes repeated big transfers run at
//! memory speed instead.
//!
//! A buffer filled on one thread and dropped on another (a connection's
//! reader thread and the callers it hands results to) would never return
//! to the filling thread's pool; buffers a thread's own pool has no room
//! for go to a small pool shared by all threads, which threads take from
//! when their own has nothing that fits.

use std::cell::{Cell, RefCell};
use std::collections::TryReserveError;
use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

/// Buffers below this size come from the allocator directly.
const POOL_MIN: usize = 1 << 20;
/// Most buffers kept per thread.
const POOL_SLOTS: usize = 4;
/// Most bytes kept per thread.
const POOL_BYTES: usize = 2 << 30;

/// Most buffers kept in the shared pool.
const SHARED_SLOTS: usize = 16;
/// Most bytes kept in the shared pool.
const SHARED_BYTES: usize = 64 << 20;

thread_local! {
    static POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    /// False once this thread's freed buffers go to the shared pool.
    static KEEPS_OWN: Cell<bool> = const { Cell::new(true) };
}

/// Buffers freed on this thread from now on go to the shared pool (or
/// are freed when it is full), never to this thread's own: for a thread
/// that frees buffers other threads filled, such as a file server's
/// worker freeing the uploaded pieces its broker read. In the thread's
/// own pool they would wait for allocations it never makes: eight
/// workers held 64 MB that way after one upload.
pub fn share_what_this_thread_frees() {
    KEEPS_OWN.set(false);
}

/// Buffers no thread's own pool had room for.
static SHARED: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// The smallest block of `pool` with room for `len` bytes and at most
/// `max`, taken out.
fn take_fitting(pool: &mut Vec<Vec<u8>>, len: usize, max: usize) -> Option<Vec<u8>> {
    let best = pool
        .iter()
        .enumerate()
        .filter(|(_, b)| b.capacity() >= len && b.capacity() <= max)
        .min_by_key(|(_, b)| b.capacity())
        .map(|(i, _)| i);
    best.map(|i| pool.swap_remove(i))
}

/// The smallest pooled block with room for `len` bytes, from this
/// thread's pool or else the shared one (None for small sizes, which the
/// pools never hold).
fn take_pooled(len: usize) -> Option<Vec<u8>> {
    take_pooled_within(len, usize::MAX)
}

/// As [`take_pooled`], among blocks of at most `max` bytes.
fn take_pooled_within(len: usize, max: usize) -> Option<Vec<u8>> {
    if len < POOL_MIN {
        return None;
    }
    POOL.try_with(|p| take_fitting(&mut p.borrow_mut(), len, max))
        .ok()
        .flatten()
        .or_else(|| {
            take_fitting(
                &mut SHARED.lock().unwrap_or_else(|p| p.into_inner()),
                len,
                max,
            )
        })
}

/// Keeps `v` in the shared pool if it has room, else frees it.
fn share(v: Vec<u8>) {
    let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
    let held: usize = shared.iter().map(Vec::capacity).sum();
    if shared.len() < SHARED_SLOTS && held + v.capacity() <= SHARED_BYTES {
        shared.push(v);
    }
}

/// A byte buffer that returns its memory to this thread's pool on drop.
#[derive(Default)]
pub struct PooledBuf(Vec<u8>);

impl PooledBuf {
    /// A buffer of exactly `len` bytes; contents are unspecified (zeroes or
    /// bytes of an earlier message), so callers must overwrite all of it.
    pub fn with_len(len: usize) -> PooledBuf {
        PooledBuf::try_with_len(len).unwrap_or_else(|| {
            std::alloc::handle_alloc_error(std::alloc::Layout::array::<u8>(len).expect("len fits"))
        })
    }

    /// As [`PooledBuf::with_len`], or None when the memory cannot be had:
    /// for sizes a peer declares, where running out of memory must be
    /// reported to that peer rather than abort the process.
    pub fn try_with_len(len: usize) -> Option<PooledBuf> {
        if let Some(mut v) = take_pooled(len) {
            // Only bytes past the old length get written (and faulted in).
            v.resize(len, 0);
            return Some(PooledBuf(v));
        }
        if len == 0 {
            return Some(PooledBuf(Vec::new()));
        }
        // Zeroed allocation, as `vec![0; len]` does: a fresh multi-megabyte
        // block arrives as untouched zero pages, where `resize` would write
        // every byte once before the payload overwrites it.
        let layout = std::alloc::Layout::array::<u8>(len).ok()?;
        // SAFETY: the layout's size is non-zero.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            return None;
        }
        // SAFETY: `ptr` holds `len` initialised (zero) bytes, allocated by
        // the global allocator with the layout of `[u8; len]`, as `Vec`
        // requires of its buffer.
        Some(PooledBuf(unsafe { Vec::from_raw_parts(ptr, len, len) }))
    }

    /// An empty buffer with room for `cap` bytes, or the allocation error:
    /// for sizes that come from a caller's value, where running out of
    /// memory must be reported rather than abort the process.
    pub fn try_with_capacity(cap: usize) -> Result<PooledBuf, TryReserveError> {
        PooledBuf::try_within(cap, usize::MAX)
    }

    /// As [`PooledBuf::try_with_capacity`], for data that may live long
    /// (a decoded matrix): a pooled block only if it is at most an eighth
    /// larger than `cap`, so a small value never pins a large block.
    pub fn try_with_capacity_near(cap: usize) -> Result<PooledBuf, TryReserveError> {
        PooledBuf::try_within(cap, cap.saturating_add(cap / 8))
    }

    /// An empty buffer with room for `cap` bytes: a pooled block of at
    /// most `max` bytes if there is one, else a new allocation.
    fn try_within(cap: usize, max: usize) -> Result<PooledBuf, TryReserveError> {
        if let Some(mut v) = take_pooled_within(cap, max) {
            v.clear();
            return Ok(PooledBuf(v));
        }
        let mut v = Vec::new();
        v.try_reserve_exact(cap)?;
        Ok(PooledBuf(v))
    }

    /// Wraps an existing vector.
    pub fn from_vec(v: Vec<u8>) -> PooledBuf {
        PooledBuf(v)
    }

    /// Takes the vector out; it will not return to the pool.
    pub fn into_vec(mut self) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        if self.0.capacity() < POOL_MIN {
            return;
        }
        let v = std::mem::take(&mut self.0);
        if !KEEPS_OWN.try_with(Cell::get).unwrap_or(true) {
            return share(v);
        }
        // try_with: the pool may already be gone while the thread exits.
        let left = POOL
            .try_with(|p| {
                let mut p = p.borrow_mut();
                let held: usize = p.iter().map(Vec::capacity).sum();
                if held + v.capacity() > POOL_BYTES {
                    return Some(v);
                }
                if p.len() < POOL_SLOTS {
                    p.push(v);
                    return None;
                }
                // Keep the larger buffers here: they are the expensive ones.
                match p.iter().enumerate().min_by_key(|(_, b)| b.capacity()) {
                    Some((i, b)) if b.capacity() < v.capacity() => {
                        Some(std::mem::replace(&mut p[i], v))
                    }
                    _ => Some(v),
                }
            })
            .unwrap_or(None);
        if let Some(v) = left {
            share(v);
        }
    }
}

impl Deref for PooledBuf {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl DerefMut for PooledBuf {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

impl AsRef<[u8]> for PooledBuf {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for PooledBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PooledBuf({} bytes)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_buffers_are_reused() {
        let a = PooledBuf::with_len(3 << 20);
        let ptr = a.as_ptr();
        drop(a);
        let b = PooledBuf::with_len(2 << 20);
        assert_eq!(b.as_ptr(), ptr);
        assert_eq!(b.len(), 2 << 20);
        let small = PooledBuf::with_len(10);
        assert_eq!(small.len(), 10);
    }

    /// A buffer dropped on another thread, whose own pool is full, comes
    /// back through the shared pool.
    #[test]
    fn buffers_dropped_on_another_thread_are_reused() {
        let size = 5 << 20;
        // Tests running at the same time share the pool: one may take our
        // buffer first, or fill the pool so ours finds no room. Without
        // the shared pool no attempt could ever find it; with it, one of
        // a few does.
        let reused = (0..20).any(|_| {
            let bufs: Vec<PooledBuf> = (0..POOL_SLOTS + 1)
                .map(|_| PooledBuf::with_len(size))
                .collect();
            let last = bufs.last().unwrap().as_ptr() as usize;
            std::thread::spawn(move || drop(bufs)).join().unwrap();
            let taken: Vec<PooledBuf> = (0..SHARED_SLOTS)
                .map(|_| PooledBuf::with_len(size))
                .collect();
            taken.iter().any(|b| b.as_ptr() as usize == last)
        });
        assert!(
            reused,
            "a buffer dropped on another thread was never taken again"
        );
    }

    /// A thread that shares what it frees keeps none of it: its buffer
    /// is taken again while the thread still runs.
    #[test]
    fn a_sharing_thread_keeps_nothing_it_frees() {
        let size = 6 << 20;
        let reused = (0..20).any(|_| {
            let (freed_tx, freed_rx) = std::sync::mpsc::channel();
            let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
            let t = std::thread::spawn(move || {
                share_what_this_thread_frees();
                let b = PooledBuf::with_len(size);
                let ptr = b.as_ptr() as usize;
                drop(b);
                freed_tx.send(ptr).unwrap();
                // Alive until the check is over: a buffer kept in this
                // thread's pool cannot be freed and handed out again.
                let _ = done_rx.recv();
            });
            let ptr = freed_rx.recv().unwrap();
            let taken: Vec<PooledBuf> = (0..SHARED_SLOTS)
                .map(|_| PooledBuf::with_len(size))
                .collect();
            let found = taken.iter().any(|b| b.as_ptr() as usize == ptr);
            done_tx.send(()).unwrap();
            t.join().unwrap();
            found
        });
        assert!(
            reused,
            "a buffer freed on a sharing thread was never taken again"
        );
    }

    #[test]
    fn long_lived_buffers_only_take_blocks_of_about_their_size() {
        let a = PooledBuf::with_len(8 << 20);
        let ptr = a.as_ptr();
        drop(a);
        // Would pin 8 MB: a fresh block.
        let small = PooledBuf::try_with_capacity_near(2 << 20).unwrap();
        assert_ne!(small.as_ptr(), ptr);
        // Within an eighth: reused.
        let near = PooledBuf::try_with_capacity_near((8 << 20) - 100).unwrap();
        assert_eq!(near.as_ptr(), ptr);
    }
}
