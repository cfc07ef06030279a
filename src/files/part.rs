//! Part files: a file being received is written as `.NAME.dime-part` in
//! its destination directory, and only a complete, verified part is
//! given its mode, modification time and final name, in one `rename`. So
//! no reader ever sees a half-written file under the final name.

use super::paths::{manifest_name, part_name};
use std::ffi::OsStr;
use std::fs::{self, File, FileTimes, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Paths of the part file and manifest for `name` in `dir`.
pub fn paths(dir: &Path, name: &OsStr) -> (PathBuf, PathBuf) {
    (dir.join(part_name(name)), dir.join(manifest_name(name)))
}

/// Opens the part file at `path` for writing, creating it; `truncate`
/// empties an existing one. A symbolic link there is refused
/// (`O_NOFOLLOW`), so a planted link cannot redirect the write.
pub fn open(path: &Path, truncate: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(truncate)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Most bytes per write into a part file.
const WRITE_MAX: usize = 1 << 20;

/// Writes all of `data` into `file` at `off`, in writes of up to 1 MiB,
/// or of 32 KiB where the VM hands free memory back to its host: there a
/// large write into the page cache is many times slower
/// ([`crate::vm::page_cache_write`]). Downloads and uploads both write
/// through here.
pub fn write_at(file: &File, data: &[u8], off: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let chunk = crate::vm::page_cache_write(WRITE_MAX);
    for (i, part) in data.chunks(chunk).enumerate() {
        file.write_all_at(part, off + (i * chunk) as u64)?;
    }
    Ok(())
}

/// Claims the part `file` (at `path`) for this transfer alone, for as
/// long as `file` stays open: an exclusive `flock`. A second transfer
/// into the same destination is refused here instead of truncating the
/// part under the first one, which would lose its pieces. A lock
/// dies with its process, so a killed transfer leaves none behind.
pub fn claim(file: &File, path: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain call on an open descriptor.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EWOULDBLOCK) => Err(io::Error::new(
            io::ErrorKind::ResourceBusy,
            format!(
                "another transfer is receiving into '{}'; wait for it to end or stop it",
                path.display()
            ),
        )),
        // A file system without locks: nothing to claim with.
        Some(libc::ENOLCK | libc::EOPNOTSUPP | libc::EINVAL) => Ok(()),
        _ => Err(e),
    }
}

/// Makes the empty part `file` `len` bytes long with its blocks allocated
/// up front (`fallocate`): a full disk shows now rather than midway, and
/// pieces written later fill blocks that exist instead of allocating
/// them one page at a time. A file system without `fallocate` gets a
/// sparse file of that length instead.
pub fn reserve(file: &File, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    if len == 0 {
        return Ok(());
    }
    let Ok(n) = libc::off_t::try_from(len) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "file too large",
        ));
    };
    // SAFETY: a plain call on an open descriptor.
    if unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, n) } == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL) => file.set_len(len),
        _ => Err(e),
    }
}

/// Gives the complete part `file` (at `part`) its `mode` and modification
/// time, renames it to `dest` and removes its manifest, if any.
pub fn commit(
    file: &File,
    part: &Path,
    dest: &Path,
    manifest: Option<&Path>,
    mode: u32,
    mtime_ns: i64,
) -> io::Result<()> {
    file.set_permissions(Permissions::from_mode(mode & 0o7777))?;
    file.set_times(FileTimes::new().set_modified(time_of(mtime_ns)))?;
    fs::rename(part, dest)?;
    if let Some(m) = manifest {
        match fs::remove_file(m) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Removes a part and its manifest (a version that will not be resumed).
pub fn discard(part: &Path, manifest: &Path) {
    let _ = fs::remove_file(part);
    let _ = fs::remove_file(manifest);
}

/// The time `ns` nanoseconds from the epoch (before it if negative).
pub fn time_of(ns: i64) -> SystemTime {
    let d = Duration::from_nanos(ns.unsigned_abs());
    if ns >= 0 {
        SystemTime::UNIX_EPOCH + d
    } else {
        SystemTime::UNIX_EPOCH - d
    }
}

/// A fresh part path for a file received in one piece: unique to this
/// process and call, so two clients sending the same file at once never
/// write into each other's part. (Still hidden: `.NAME.…dime-part`.)
pub fn unique_part(dir: &Path, name: &OsStr) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut s = std::ffi::OsString::from(".");
    s.push(name);
    s.push(format!(".{}-{n}", std::process::id()));
    s.push(super::paths::PART_SUFFIX);
    dir.join(s)
}

/// Creates a part file that must not exist yet (see [`unique_part`]).
pub fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_longer_than_one_chunk_lands_whole_at_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p");
        let file = open(&p, true).unwrap();
        // Longer than the largest write, and not a whole number of them.
        let data: Vec<u8> = (0..(3 * WRITE_MAX + 5)).map(|i| (i % 251) as u8).collect();
        write_at(&file, &data, 7).unwrap();
        let back = fs::read(&p).unwrap();
        assert_eq!(back.len(), 7 + data.len());
        assert_eq!(&back[..7], &[0; 7]);
        assert!(back[7..] == data[..], "the bytes differ from those written");
    }

    #[test]
    fn a_claimed_part_is_refused_to_a_second_claim_until_closed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p");
        let first = open(&p, true).unwrap();
        claim(&first, &p).unwrap();
        let second = open(&p, false).unwrap();
        let e = claim(&second, &p).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ResourceBusy);
        assert!(e.to_string().contains("another transfer"), "{e}");
        drop(first);
        claim(&second, &p).unwrap();
    }

    #[test]
    fn a_reserved_part_has_its_length_and_its_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p");
        let f = open(&p, true).unwrap();
        reserve(&f, 1 << 20).unwrap();
        let m = f.metadata().unwrap();
        assert_eq!(m.len(), 1 << 20);
        // Allocated where the file system can (tmpfs and ext4 both do).
        use std::os::unix::fs::MetadataExt;
        assert!(m.blocks() * 512 >= 1 << 20, "{} blocks", m.blocks());
        reserve(&f, 0).unwrap();
        assert_eq!(f.metadata().unwrap().len(), 1 << 20);
    }
}
