//! A part file mapped for writing: piece bytes are read from the socket
//! straight into its pages (the kernel's copy is the only one) and
//! hashed there, while they are still in the CPU cache.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether this kernel has refused `MADV_POPULATE_WRITE` once: then
/// pages are faulted in one at a time by the copy itself.
static NO_POPULATE: AtomicBool = AtomicBool::new(false);

/// A whole file mapped shared, for reading and writing. Each range is
/// written by one thread at a time and read only once written, and the
/// file keeps its length until the mapping is gone (its part name is
/// this transfer's, claimed with a lock; a file truncated under a mapping
/// would fault on the next access to it).
pub struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the pointer is valid until drop, from any thread; threads use
// disjoint ranges (see `range_mut`).
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the first `len` bytes of `file` (opened for reading and
    /// writing), `len` > 0.
    pub fn of(file: &File, len: u64) -> io::Result<Mapping> {
        let len = usize::try_from(len).map_err(io::Error::other)?;
        if len == 0 {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        // SAFETY: a fresh mapping of an open descriptor; checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping { ptr, len })
    }

    /// The `n` bytes at offset `off` of the file.
    ///
    /// # Panics
    /// If the range is not inside the mapping.
    pub fn range(&self, off: u64, n: usize) -> &[u8] {
        let start = self.start(off, n);
        // SAFETY: inside the mapping, which lives as long as `self`; the
        // range is one this process wrote and nobody writes again.
        unsafe { std::slice::from_raw_parts(start, n) }
    }

    /// The `n` bytes at offset `off` of the file, to write into.
    ///
    /// # Safety
    /// No other reference to any of these bytes may live while the one
    /// returned does: each thread writes only the ranges of the pieces
    /// it is receiving, and reads them (`range`) only afterwards.
    ///
    /// # Panics
    /// If the range is not inside the mapping.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn range_mut(&self, off: u64, n: usize) -> &mut [u8] {
        let start = self.start(off, n);
        // SAFETY: inside the mapping; unaliased by the caller's promise.
        unsafe { std::slice::from_raw_parts_mut(start, n) }
    }

    /// Makes the pages of the `n` bytes at `off` present and writable
    /// with one call (`MADV_POPULATE_WRITE`, Linux 5.14), instead of one
    /// fault per page during the copy into them. An error is the file's
    /// (an I/O error reading its blocks, a full disk): the kernel reports
    /// it here rather than by a signal. A kernel without the call is
    /// left to fault them in.
    pub fn prepare_write(&self, off: u64, n: usize) -> io::Result<()> {
        if n == 0 || NO_POPULATE.load(Ordering::Relaxed) {
            return Ok(());
        }
        let start = self.start(off, n);
        // madvise wants a page-aligned start.
        let lead = start as usize % crate::shm::page_size();
        // SAFETY: a range inside the mapping, widened down to its page.
        let r =
            unsafe { libc::madvise(start.sub(lead).cast(), n + lead, libc::MADV_POPULATE_WRITE) };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINVAL) => {
                NO_POPULATE.store(true, Ordering::Relaxed);
                Ok(())
            }
            Some(libc::EINTR | libc::EAGAIN) => Ok(()),
            _ => Err(e),
        }
    }

    /// The address of byte `off`, checking that `n` bytes from there are
    /// inside the mapping.
    fn start(&self, off: u64, n: usize) -> *mut u8 {
        let off = usize::try_from(off).expect("inside the mapping");
        assert!(off.checked_add(n).is_some_and(|end| end <= self.len));
        // SAFETY: inside the mapping, checked just above.
        unsafe { self.ptr.cast::<u8>().add(off) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `of`, unmapped once.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    /// A new file of `len` zero bytes, open for reading and writing.
    fn file_of(dir: &std::path::Path, len: u64) -> File {
        let f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.join("p"))
            .unwrap();
        f.set_len(len).unwrap();
        f
    }

    #[test]
    fn a_mapping_shows_what_was_written_after_it_was_made() {
        let dir = tempfile::tempdir().unwrap();
        let f = file_of(dir.path(), 8192);
        let m = Mapping::of(&f, 8192).unwrap();
        f.write_all_at(b"hello", 5000).unwrap();
        assert_eq!(m.range(5000, 5), b"hello");
        assert_eq!(m.range(0, 3), &[0, 0, 0]);
    }

    #[test]
    #[should_panic]
    fn a_range_past_the_end_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = file_of(dir.path(), 4096);
        let _ = Mapping::of(&f, 4096).unwrap().range(4000, 200);
    }

    #[test]
    fn bytes_written_through_the_mapping_are_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = file_of(dir.path(), 3 * 4096);
        let m = Mapping::of(&f, 3 * 4096).unwrap();
        // Unaligned, across a page boundary: populated from its page down.
        m.prepare_write(4000, 300).unwrap();
        // SAFETY: nothing else refers to these bytes.
        unsafe { m.range_mut(4000, 300) }.fill(7);
        assert_eq!(m.range(4000, 300), &[7; 300][..]);
        let mut back = vec![0u8; 302];
        f.read_exact_at(&mut back, 3999).unwrap();
        assert_eq!(back[0], 0);
        assert_eq!(&back[1..301], &[7; 300][..]);
        assert_eq!(back[301], 0);
    }

    #[test]
    fn a_file_open_for_reading_only_is_not_mapped() {
        let dir = tempfile::tempdir().unwrap();
        drop(file_of(dir.path(), 4096));
        let read_only = File::open(dir.path().join("p")).unwrap();
        assert!(Mapping::of(&read_only, 4096).is_err());
    }
}
