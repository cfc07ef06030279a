//! A part file mapped read-only, so bytes spliced into it are hashed
//! where they landed in the page cache instead of being read back.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// A whole file mapped read-only and shared. Only ranges this process
/// has finished writing are read, and the file keeps its length until
/// the mapping is gone (its part name is this transfer's; a file
/// truncated under a mapping would fault on the next read of it).
pub struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is read-only and only read; the pointer is valid
// until drop, from any thread.
unsafe impl Send for Mapping {}
// SAFETY: as above: shared reads only.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the first `len` bytes of `file` (opened for reading), `len` > 0.
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
                libc::PROT_READ,
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
        let off = usize::try_from(off).expect("inside the mapping");
        assert!(off.checked_add(n).is_some_and(|end| end <= self.len));
        // SAFETY: inside the mapping, which lives as long as `self`; the
        // range is one this process wrote and nobody writes again.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>().add(off), n) }
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
}
