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
