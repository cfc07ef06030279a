//! Large payload buffers, recycled per thread.
//!
//! A fresh multi-megabyte allocation is served by `mmap`, and the first
//! touch of each 4 KiB page costs a fault (about 1 s per GiB here). Keeping
//! a few freed large buffers around makes repeated big transfers run at
//! memory speed instead.

use std::cell::RefCell;
use std::collections::TryReserveError;
use std::ops::{Deref, DerefMut};

/// Buffers below this size come from the allocator directly.
const POOL_MIN: usize = 1 << 20;
/// Most buffers kept per thread.
const POOL_SLOTS: usize = 4;
/// Most bytes kept per thread.
const POOL_BYTES: usize = 2 << 30;

thread_local! {
    static POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// The smallest pooled block of this thread with room for `len` bytes,
/// taken out of the pool (None for small sizes, which the pool never holds).
fn take_pooled(len: usize) -> Option<Vec<u8>> {
    if len < POOL_MIN {
        return None;
    }
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        let best = p
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= len)
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i);
        best.map(|i| p.swap_remove(i))
    })
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
        if let Some(mut v) = take_pooled(cap) {
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
        // try_with: the pool may already be gone while the thread exits.
        let _ = POOL.try_with(|p| {
            let mut p = p.borrow_mut();
            let held: usize = p.iter().map(Vec::capacity).sum();
            if held + v.capacity() <= POOL_BYTES {
                if p.len() == POOL_SLOTS {
                    // Keep the larger buffers: they are the expensive ones.
                    if let Some((i, _)) = p.iter().enumerate().min_by_key(|(_, b)| b.capacity()) {
                        if p[i].capacity() < v.capacity() {
                            p[i] = v;
                        }
                    }
                } else {
                    p.push(v);
                }
            }
        });
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
}
