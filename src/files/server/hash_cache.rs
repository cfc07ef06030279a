//! Piece hashes a file server has computed, kept so that a file sent
//! again (a dataset fetched by every node of a run, a result downloaded
//! twice) is not read and hashed again: its pieces go straight from the
//! page cache to the socket.
//!
//! A hash is found by the file's identity and version as the kernel
//! reports them: device, inode, size, modification time and change time.
//! Any write, truncation, `touch` or rename over the file gives it a new
//! change time, which nobody can set back, so a changed file misses.
//! The one gap is a change within the timestamp clock's granularity of
//! the hashing (a few milliseconds): as git does for its index, a hash is
//! kept only if the file was last changed well before the hashing began,
//! so a file still being written is hashed on every read.

use crate::files::hash::PieceHash;
use std::collections::{HashMap, VecDeque};
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Hashes kept at most: with the default 2 MiB pieces, 128 GiB of files,
/// in about 10 MB.
pub const MAX_ENTRIES: usize = 65_536;

/// How long a file must have been left alone before its hashes are kept.
pub const QUIET_PERIOD: Duration = Duration::from_secs(2);

/// One piece of one version of one file.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct PieceKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    piece: u64,
    index: u64,
}

impl PieceKey {
    /// The key of piece `index` (of `piece` bytes) of the file `meta`
    /// describes.
    pub fn new(meta: &Metadata, piece: u64, index: u64) -> PieceKey {
        PieceKey {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            mtime_ns: nanos(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: nanos(meta.ctime(), meta.ctime_nsec()),
            piece,
            index,
        }
    }

    /// The later of the file's modification and change times, in ns
    /// since the epoch.
    fn last_change_ns(&self) -> i64 {
        self.mtime_ns.max(self.ctime_ns)
    }
}

fn nanos(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

/// The piece hashes of one file server, shared by its workers.
pub struct PieceHashes {
    inner: Mutex<Entries>,
    capacity: usize,
    quiet: Duration,
    hits: AtomicU64,
}

/// The hashes, and their keys oldest first (the first to go when full).
#[derive(Default)]
struct Entries {
    map: HashMap<PieceKey, PieceHash>,
    order: VecDeque<PieceKey>,
}

impl Default for PieceHashes {
    fn default() -> PieceHashes {
        PieceHashes::new(MAX_ENTRIES, QUIET_PERIOD)
    }
}

impl PieceHashes {
    /// A cache of at most `capacity` hashes, keeping those of files left
    /// alone for `quiet` before the hashing began.
    pub fn new(capacity: usize, quiet: Duration) -> PieceHashes {
        PieceHashes {
            inner: Mutex::new(Entries::default()),
            capacity,
            quiet,
            hits: AtomicU64::new(0),
        }
    }

    /// The hash kept for `key`, if any.
    pub fn get(&self, key: &PieceKey) -> Option<PieceHash> {
        let found = self.lock().map.get(key).copied();
        if found.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    /// Keeps `hash` for `key`, computed from a read that began at
    /// `started`, unless the file changed too shortly before it.
    pub fn put(&self, key: PieceKey, hash: PieceHash, started: SystemTime) {
        if !self.settled(&key, started) || self.capacity == 0 {
            return;
        }
        let mut e = self.lock();
        if e.map.insert(key, hash).is_none() {
            e.order.push_back(key);
        }
        while e.map.len() > self.capacity {
            let Some(old) = e.order.pop_front() else {
                break;
            };
            e.map.remove(&old);
        }
    }

    /// Hashes found so far.
    #[cfg(test)]
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Hashes kept now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// True when no hash is kept.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True if the file's last change was at least the quiet period
    /// before `started`: a write after the hashing began then shows in
    /// its change time.
    fn settled(&self, key: &PieceKey, started: SystemTime) -> bool {
        let Ok(since) = started.duration_since(UNIX_EPOCH) else {
            return false;
        };
        let started_ns = i64::try_from(since.as_nanos()).unwrap_or(i64::MAX);
        let quiet_ns = i64::try_from(self.quiet.as_nanos()).unwrap_or(i64::MAX);
        key.last_change_ns() <= started_ns.saturating_sub(quiet_ns)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // A worker that panicked holding the lock left whole entries.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::{self, File, FileTimes};
    use std::io::Write;

    fn file_with(dir: &std::path::Path, bytes: &[u8]) -> std::path::PathBuf {
        let p = dir.join("f.bin");
        File::create(&p).unwrap().write_all(bytes).unwrap();
        p
    }

    #[test]
    fn a_kept_hash_is_found_for_the_same_version_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = file_with(dir.path(), b"hello");
        let cache = PieceHashes::new(16, Duration::ZERO);
        let m = fs::metadata(&p).unwrap();
        cache.put(PieceKey::new(&m, 1024, 0), [7; 32], SystemTime::now());
        assert_eq!(cache.get(&PieceKey::new(&m, 1024, 0)), Some([7; 32]));
        assert_eq!(cache.get(&PieceKey::new(&m, 1024, 1)), None);
        assert_eq!(cache.get(&PieceKey::new(&m, 2048, 0)), None);
        assert_eq!(cache.hits(), 1);

        // Same size, modification time set back: the change time moved.
        let mtime = m.modified().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        fs::write(&p, b"jello").unwrap();
        File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_times(FileTimes::new().set_modified(mtime))
            .unwrap();
        let m2 = fs::metadata(&p).unwrap();
        assert_eq!((m2.len(), m2.modified().unwrap()), (m.len(), mtime));
        assert_eq!(cache.get(&PieceKey::new(&m2, 1024, 0)), None);
    }

    #[test]
    fn a_file_changed_just_before_the_read_is_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = file_with(dir.path(), b"hello");
        let cache = PieceHashes::new(16, Duration::from_secs(60));
        let key = PieceKey::new(&fs::metadata(&p).unwrap(), 1024, 0);
        cache.put(key, [1; 32], SystemTime::now());
        assert!(cache.is_empty());
        // Read long after its last change: kept.
        cache.put(key, [1; 32], SystemTime::now() + Duration::from_secs(61));
        assert_eq!(cache.get(&key), Some([1; 32]));
    }

    #[test]
    fn the_oldest_hashes_go_first_when_full() {
        let dir = tempfile::tempdir().unwrap();
        let p = file_with(dir.path(), b"x");
        let m = fs::metadata(&p).unwrap();
        let cache = PieceHashes::new(3, Duration::ZERO);
        for i in 0..5u8 {
            cache.put(
                PieceKey::new(&m, 1024, i.into()),
                [i; 32],
                SystemTime::now(),
            );
        }
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get(&PieceKey::new(&m, 1024, 1)), None);
        assert_eq!(cache.get(&PieceKey::new(&m, 1024, 4)), Some([4; 32]));
        // Keeping a hash again does not count it twice.
        cache.put(PieceKey::new(&m, 1024, 4), [4; 32], SystemTime::now());
        assert_eq!(cache.len(), 3);
    }
}
