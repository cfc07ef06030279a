//! Downloading: list the selection on the server, plan each file (skip
//! it if complete, resume its verified pieces, else start it), then fetch
//! whole files and pieces in parallel, over a link per connection
//! ([`super::link`]). Every piece is written into the part file as it
//! arrives and checked against the server's hash before it counts; the
//! last piece of a file renames it into place.

use super::engine::{self, Counters, Feed};
use super::link::{Arrived, Link, Reply, Sink};
use super::pool::Pool;
use super::{ProgressFn, Summary, TransferOptions};
use crate::client::ConnectOptions;
use crate::files::hash::{
    MAX_PIECES, PieceHash, PieceHasher, file_hash, piece_for, piece_range, pieces,
};
use crate::files::manifest::{self, Identity, Manifest};
use crate::files::paths::{relative, to_wire};
use crate::files::select::{Selection, mtime_ns};
use crate::files::wire::{self, Entry, Fields};
use crate::files::{Error, Result, part};
use crate::value::Value;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A file being downloaded.
struct Incoming {
    entry: Entry,
    /// Its piece size: the transfer's, or an interrupted run's.
    piece: u64,
    /// Its directory and name at the destination.
    dir: PathBuf,
    name: OsString,
    /// For a file of several pieces: their hashes as they are verified.
    hashes: Mutex<Vec<Option<PieceHash>>>,
    /// Pieces still to arrive.
    left: AtomicU64,
    /// A piece failed: skip the rest, keep the part for a rerun.
    failed: AtomicBool,
    /// The part and its manifest, opened at the first piece.
    part: Mutex<Option<Arc<Part>>>,
    /// Held while writing into the part: one writer at a time sleeps the
    /// others, where the file system's own lock would have them spin.
    writing: Mutex<()>,
    /// For a file of several pieces: the part, claimed for this transfer
    /// ([`part::claim`]) until it ends; pieces are written through a clone
    /// of this handle.
    claim: Option<File>,
}

/// A file's part as its pieces arrive.
struct Part {
    file: File,
    manifest: Manifest,
}

impl Incoming {
    fn dest(&self) -> PathBuf {
        self.dir.join(&self.name)
    }

    fn id(&self) -> Identity {
        Identity {
            size: self.entry.size,
            mtime_ns: self.entry.mtime_ns,
            piece: self.piece,
        }
    }

    /// The part, opened (with its manifest) by the first piece.
    fn part(&self) -> Result<Arc<Part>> {
        let mut open = self.part.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = &*open {
            return Ok(p.clone());
        }
        let (p, m) = part::paths(&self.dir, &self.name);
        let io = |e: std::io::Error| Error::io(p.display(), &e);
        // The part this transfer claimed in `resume`: the same file, not
        // whatever the path names by now.
        let claimed = self
            .claim
            .as_ref()
            .ok_or_else(|| Error::Io(format!("'{}': no part claimed", p.display())))?;
        let file = claimed.try_clone().map_err(io)?;
        let manifest = Manifest::append(&m).map_err(io)?;
        let part = Arc::new(Part { file, manifest });
        *open = Some(part.clone());
        Ok(part)
    }

    /// Records this file's first failure (later ones add nothing).
    fn fail(&self, e: Error) -> Result<()> {
        if self.failed.swap(true, Ordering::SeqCst) {
            Ok(())
        } else {
            Err(e)
        }
    }
}

/// One call's worth of work.
#[derive(Clone, Copy)]
enum Task {
    Whole(usize),
    Piece(usize, u64),
}

impl Task {
    /// The file's index and the piece's.
    fn at(self) -> (usize, u64) {
        match self {
            Task::Whole(i) => (i, 0),
            Task::Piece(i, k) => (i, k),
        }
    }
}

/// Downloads the files `what` names on file server `server` (through the
/// broker at `address`) into directory `dest`, created if needed.
pub fn download(
    address: &str,
    server: &str,
    what: &Selection,
    dest: &Path,
    options: &TransferOptions,
    progress: Option<ProgressFn<'_>>,
) -> Result<Summary> {
    options.check()?;
    let started = Instant::now();
    // One connection asks what there is; the pieces come over links of
    // their own, one per worker thread.
    let pool = Pool::connect(address, server, 1, options.wait_for_server)?;
    pool.probe(options.wait_for_server)?;
    let args = wire::encode_value(&what.to_value())?;
    let listing = pool.call(
        pool.endpoint(0),
        wire::LIST,
        &args,
        Some(options.wait_for_server),
    )?;
    let entries = match Fields::parse(&listing)?.value("files")? {
        Value::List(items) => items
            .iter()
            .map(Entry::from_value)
            .collect::<Result<Vec<_>>>()?,
        _ => return Err(Error::InvalidInput("the listing holds no file list".into())),
    };
    fs::create_dir_all(dest).map_err(|e| Error::io(dest.display(), &e))?;
    let counters = Counters::default();
    let (files, tasks, skipped, refused) = plan(entries, dest, options.piece, &counters)?;
    let connect = ConnectOptions::from_env();
    let worker = |_: usize, feed: &Feed<'_, Task>| {
        let link = Link::connect(address, server, &connect);
        match link {
            Ok(mut link) => fetch(&mut link, feed, &files, options.in_flight, &counters),
            Err(e) => feed.fail(e),
        }
    };
    engine::transfer(
        &pool,
        options.connections,
        tasks,
        (files.len() as u64, files.iter().map(|f| f.entry.size).sum()),
        skipped,
        refused,
        &counters,
        options,
        started,
        &worker,
        progress,
    )
}

/// A worker's loop: keeps up to `depth` calls out on `link`, and takes in
/// each reply as it comes, until the tasks run out or the transfer stops.
fn fetch(link: &mut Link, feed: &Feed<'_, Task>, files: &[Incoming], depth: usize, c: &Counters) {
    let mut out: Vec<(u64, Task)> = Vec::with_capacity(depth);
    loop {
        while out.len() < depth.max(1) {
            let Some(task) = feed.next() else { break };
            let (i, k) = task.at();
            let f = &files[i];
            if f.failed.load(Ordering::SeqCst) {
                continue;
            }
            match read_args(f, k).and_then(|args| link.request(&args)) {
                Ok(id) => out.push((id, task)),
                Err(e) => return feed.fail(e),
            }
        }
        if out.is_empty() {
            return;
        }
        if let Err(e) = take_reply(link, &mut out, files, c) {
            let fatal = e.is_fatal();
            feed.fail(e);
            if fatal {
                return;
            }
        }
    }
}

/// Takes in the next reply on `link`: the call of `out` it answers is
/// done. Errors are the file's first failure, or fatal.
fn take_reply(
    link: &mut Link,
    out: &mut Vec<(u64, Task)>,
    files: &[Incoming],
    c: &Counters,
) -> Result<()> {
    let (id, reply) = match link.next_reply()? {
        Reply::Ok { id, len } => (id, Ok(len)),
        Reply::Failed { id, error } => (id, Err(error)),
    };
    let Some(at) = out.iter().position(|(x, _)| *x == id) else {
        return Err(Error::Connection(format!(
            "the broker answered call {id}, which this link never made"
        )));
    };
    let (_, task) = out.swap_remove(at);
    let (i, k) = task.at();
    let f = &files[i];
    let stored = reply.and_then(|len| match task {
        Task::Whole(_) => take_whole(link, f, len, c),
        Task::Piece(..) => take_piece(link, f, k, len, c),
    });
    match stored {
        Err(e) if e.is_fatal() => Err(e),
        Err(e) => f.fail(e),
        Ok(()) if matches!(task, Task::Whole(_)) => Ok(()),
        Ok(()) if f.left.fetch_sub(1, Ordering::SeqCst) == 1 => finish(f, c).or_else(|e| f.fail(e)),
        Ok(()) => Ok(()),
    }
}

/// The arguments of a read of piece `index` of `f`.
fn read_args(f: &Incoming, index: u64) -> Result<Vec<u8>> {
    Ok(wire::encode_map(vec![
        ("path", Value::from(f.entry.path.as_str())),
        ("index", Value::U64(index)),
        ("piece", Value::U64(f.piece)),
        ("size", Value::U64(f.entry.size)),
        ("mtime_ns", Value::I64(f.entry.mtime_ns)),
    ])?
    .to_vec())
}

/// The hash of piece `index` of `f` as it arrived, if it is the one the
/// server sent and its bytes are in the file.
fn checked(arrived: Arrived, f: &Incoming, index: u64, path: &Path) -> Result<PieceHash> {
    let hash = arrived.stored.map_err(|e| Error::io(path.display(), &e))?;
    if hash != arrived.claimed {
        return Err(Error::Checksum(format!(
            "'{}': piece {index} arrived corrupted (BLAKE3 mismatch)",
            f.entry.path
        )));
    }
    Ok(hash)
}

/// A file of one piece, its reply's payload of `len` bytes next on
/// `link`: written under a fresh part name, checked and renamed. A fatal
/// error is the link's; any other, the file's (the payload was read).
fn take_whole(link: &mut Link, f: &Incoming, len: usize, c: &Counters) -> Result<()> {
    let p = part::unique_part(&f.dir, &f.name);
    let file = match part::create_new(&p) {
        Ok(file) => file,
        Err(e) => {
            link.skip(len)?;
            return Err(Error::io(f.dest().display(), &e));
        }
    };
    let mut sink = Sink {
        file: &file,
        off: 0,
        writing: &f.writing,
        hasher: PieceHasher::new(f.entry.size, f.piece, 0),
    };
    let stored = link.read_piece(len, f.entry.size, &mut sink).and_then(|a| {
        checked(a, f, 0, &f.dest())?;
        part::commit(&file, &p, &f.dest(), None, f.entry.mode, f.entry.mtime_ns)
            .map_err(|e| Error::io(f.dest().display(), &e))
    });
    if stored.is_err() {
        let _ = fs::remove_file(&p);
        return stored;
    }
    c.moved(f.entry.size);
    c.file_done(true);
    Ok(())
}

/// Piece `index` of a larger file, its reply's payload of `len` bytes
/// next on `link`: written into the part, checked and recorded in the
/// manifest. A fatal error is the link's; any other, the file's (the
/// payload was read).
fn take_piece(link: &mut Link, f: &Incoming, index: u64, len: usize, c: &Counters) -> Result<()> {
    let part = match f.part() {
        Ok(part) => part,
        Err(e) => {
            link.skip(len)?;
            return Err(e);
        }
    };
    let (off, want) = piece_range(f.entry.size, f.piece, index);
    let mut sink = Sink {
        file: &part.file,
        off,
        writing: &f.writing,
        hasher: PieceHasher::new(f.entry.size, f.piece, index),
    };
    let (p, _) = part::paths(&f.dir, &f.name);
    let hash = checked(link.read_piece(len, want, &mut sink)?, f, index, &p)?;
    part.manifest
        .record(index, &hash)
        .map_err(|e| Error::io(p.display(), &e))?;
    f.hashes.lock().unwrap_or_else(|p| p.into_inner())[index as usize] = Some(hash);
    c.moved(want);
    Ok(())
}

/// Decides what each listed file needs: nothing (already complete: same
/// size and time), the verified pieces of an earlier run kept, or all of
/// it. Returns the files, the tasks, (files, bytes) skipped, and the
/// errors of files refused on this side (a directory in the way, a part
/// another transfer is receiving into): the others move all the same.
#[allow(clippy::type_complexity)]
fn plan(
    entries: Vec<Entry>,
    dest: &Path,
    piece: u64,
    counters: &Counters,
) -> Result<(Vec<Incoming>, Vec<Task>, (u64, u64), Vec<Error>)> {
    let mut files = Vec::with_capacity(entries.len());
    let mut tasks = Vec::with_capacity(entries.len());
    let mut skipped = (0, 0);
    let mut refused = Vec::new();
    let mut made_dirs: Option<PathBuf> = None;
    for entry in entries {
        // The server says where each file goes; it may not say outside.
        let rel = relative(&entry.rel)?;
        let (Some(name), Some(parent)) = (rel.file_name(), rel.parent()) else {
            return Err(Error::InvalidInput(format!(
                "the server sent a bad name '{}'",
                entry.rel
            )));
        };
        let dir = dest.join(parent);
        let target = dir.join(name);
        if let Ok(m) = fs::symlink_metadata(&target) {
            if m.is_file() && m.len() == entry.size && mtime_ns(&m) == entry.mtime_ns {
                skipped.0 += 1;
                skipped.1 += entry.size;
                continue;
            }
            if m.is_dir() {
                refused.push(Error::Io(format!("'{}' is a directory", target.display())));
                continue;
            }
        }
        if made_dirs.as_deref() != Some(dir.as_path()) {
            fs::create_dir_all(&dir).map_err(|e| Error::io(dir.display(), &e))?;
            made_dirs = Some(dir.clone());
        }
        // An interrupted run of this version may have used another size.
        let (_, m) = part::paths(&dir, name);
        let piece = manifest::identity_of(&m)
            .filter(|id| id.size == entry.size && id.mtime_ns == entry.mtime_ns)
            .map_or_else(|| piece_for(entry.size, piece), |id| id.piece);
        let n = pieces(entry.size, piece);
        if n > MAX_PIECES {
            refused.push(Error::InvalidInput(format!(
                "'{}' is listed at {} bytes: more than {MAX_PIECES} pieces of {piece}",
                entry.rel, entry.size
            )));
            continue;
        }
        let mut f = Incoming {
            piece,
            dir,
            name: name.to_owned(),
            hashes: Mutex::new(Vec::new()),
            left: AtomicU64::new(n),
            failed: AtomicBool::new(false),
            part: Mutex::new(None),
            writing: Mutex::new(()),
            claim: None,
            entry,
        };
        let i = files.len();
        if n == 1 {
            tasks.push(Task::Whole(i));
        } else {
            let (have, claim) = match resume(&f) {
                Ok(resumed) => resumed,
                Err(e) => {
                    refused.push(e);
                    continue;
                }
            };
            f.claim = Some(claim);
            let mut left = 0;
            for (k, h) in have.iter().enumerate() {
                match h {
                    Some(_) => counters.resumed(piece_range(f.entry.size, piece, k as u64).1),
                    None => {
                        tasks.push(Task::Piece(i, k as u64));
                        left += 1;
                    }
                }
            }
            *f.hashes.lock().unwrap_or_else(|p| p.into_inner()) = have;
            f.left.store(left, Ordering::SeqCst);
            if left == 0 {
                if let Err(e) = finish(&f, counters) {
                    refused.push(e);
                    continue;
                }
            }
        }
        files.push(f);
    }
    Ok((files, tasks, skipped, refused))
}

/// The verified pieces of an earlier run's part of `f`, or a fresh part
/// and manifest if there is none for this version; and the part, claimed
/// for this transfer.
fn resume(f: &Incoming) -> Result<(Vec<Option<PieceHash>>, File)> {
    let (p, m) = part::paths(&f.dir, &f.name);
    let id = f.id();
    let io = |e: std::io::Error| Error::io(p.display(), &e);
    let file = part::open(&p, false).map_err(io)?;
    part::claim(&file, &p).map_err(|e| Error::Io(e.to_string()))?;
    if let Some(have) = manifest::verified_pieces(&m, &file, &id) {
        return Ok((have, file));
    }
    file.set_len(0).map_err(io)?;
    part::reserve(&file, f.entry.size).map_err(io)?;
    Manifest::create(&m, &id).map_err(io)?;
    Ok((vec![None; id.pieces() as usize], file))
}

/// Every piece is in: the part gets its mode, time and final name.
fn finish(f: &Incoming, c: &Counters) -> Result<()> {
    let hashes: Vec<PieceHash> = f
        .hashes
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|h| h.ok_or_else(|| Error::Io(format!("'{}': a piece is missing", f.entry.path))))
        .collect::<Result<_>>()?;
    let hash = file_hash(&hashes);
    let (p, m) = part::paths(&f.dir, &f.name);
    let io = |e: std::io::Error| Error::io(f.dest().display(), &e);
    // Every piece is written: the handles are no longer needed.
    f.part.lock().unwrap_or_else(|p| p.into_inner()).take();
    let file = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&p)
        .map_err(io)?;
    part::commit(
        &file,
        &p,
        &f.dest(),
        Some(&m),
        f.entry.mode,
        f.entry.mtime_ns,
    )
    .map_err(io)?;
    log::debug!(
        "{} arrived, BLAKE3 {}",
        to_wire(Path::new(&f.entry.rel)),
        hash.to_hex()
    );
    c.file_done(true);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::hash::DEFAULT_PIECE;

    /// A hostile or broken server listing a file of more pieces than any
    /// size fits would have the client allocate a slot per piece: that
    /// file is refused, and the others go on.
    #[test]
    fn a_file_listed_larger_than_any_piece_size_fits_is_refused_alone() {
        let dest = tempfile::tempdir().unwrap();
        let entry = |rel: &str, size| Entry {
            path: rel.into(),
            rel: rel.into(),
            size,
            mode: 0o644,
            mtime_ns: 1,
        };
        let (files, tasks, _, refused) = plan(
            vec![entry("huge", u64::MAX), entry("small", 10)],
            dest.path(),
            DEFAULT_PIECE,
            &Counters::default(),
        )
        .unwrap();
        assert_eq!(refused.len(), 1, "{refused:?}");
        let e = refused[0].to_string();
        assert!(e.contains("'huge'") && e.contains("pieces"), "{e}");
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].entry.rel, "small");
        assert_eq!(tasks.len(), 1);
        // Nothing was begun for it.
        let left: Vec<_> = fs::read_dir(dest.path()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
