//! Downloading: list the selection on the server, plan each file (skip
//! it if complete, resume its verified pieces, else start it), then fetch
//! whole files and pieces in parallel. Every piece is checked against the
//! server's hash as it arrives and written into the part file; the last
//! piece of a file renames it into place.

use super::engine::{self, Counters};
use super::pool::Pool;
use super::{ProgressFn, Summary, TransferOptions};
use crate::client::rpc::Rpc;
use crate::files::hash::{PieceHash, file_hash, piece_hash, piece_range, pieces};
use crate::files::manifest::{self, Identity, Manifest};
use crate::files::paths::{relative, to_wire};
use crate::files::select::{Selection, mtime_ns};
use crate::files::wire::{self, Entry, Fields};
use crate::files::{Error, Result, part};
use crate::value::Value;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    /// The part and its manifest, opened at the first piece and held
    /// while writing: one writer at a time sleeps the others, where the
    /// file system's own lock would have them spin.
    writing: Mutex<Option<(File, Manifest)>>,
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
enum Task {
    Whole(usize),
    Piece(usize, u64),
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
    let pool = Pool::connect(
        address,
        server,
        options.connections,
        options.wait_for_server,
    )?;
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
    let (files, tasks, skipped) = plan(entries, dest, options.piece, &counters)?;
    let work = |ep: &Rpc, t: Task| match t {
        Task::Whole(i) => fetch_whole(&pool, ep, &files[i], &counters),
        Task::Piece(i, k) => fetch_piece(&pool, ep, &files[i], k, &counters),
    };
    engine::transfer(
        &pool,
        tasks,
        (files.len() as u64, files.iter().map(|f| f.entry.size).sum()),
        skipped,
        &counters,
        options,
        started,
        &work,
        progress,
    )
}

/// Decides what each listed file needs: nothing (already complete: same
/// size and time), the verified pieces of an earlier run kept, or all of
/// it. Returns the files, the tasks, and (files, bytes) skipped.
#[allow(clippy::type_complexity)]
fn plan(
    entries: Vec<Entry>,
    dest: &Path,
    piece: u64,
    counters: &Counters,
) -> Result<(Vec<Incoming>, Vec<Task>, (u64, u64))> {
    let mut files = Vec::with_capacity(entries.len());
    let mut tasks = Vec::with_capacity(entries.len());
    let mut skipped = (0, 0);
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
                return Err(Error::Io(format!("'{}' is a directory", target.display())));
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
            .map_or(piece, |id| id.piece);
        let n = pieces(entry.size, piece);
        let f = Incoming {
            piece,
            dir,
            name: name.to_owned(),
            hashes: Mutex::new(Vec::new()),
            left: AtomicU64::new(n),
            failed: AtomicBool::new(false),
            writing: Mutex::new(None),
            entry,
        };
        let i = files.len();
        if n == 1 {
            tasks.push(Task::Whole(i));
        } else {
            let have = resume(&f)?;
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
                finish(&f, counters)?;
            }
        }
        files.push(f);
    }
    Ok((files, tasks, skipped))
}

/// The verified pieces of an earlier run's part of `f`, or a fresh part
/// and manifest if there is none for this version.
fn resume(f: &Incoming) -> Result<Vec<Option<PieceHash>>> {
    let (p, m) = part::paths(&f.dir, &f.name);
    let id = f.id();
    let io = |e: std::io::Error| Error::io(p.display(), &e);
    let file = part::open(&p, false).map_err(io)?;
    if let Some(have) = manifest::verified_pieces(&m, &file, &id) {
        return Ok(have);
    }
    file.set_len(0).map_err(io)?;
    part::reserve(&file, f.entry.size).map_err(io)?;
    Manifest::create(&m, &id).map_err(io)?;
    Ok(vec![None; id.pieces() as usize])
}

/// Reads piece `index` of `f` from the server and checks its hash.
fn read(pool: &Pool, ep: &Rpc, f: &Incoming, index: u64) -> Result<crate::buffer::PooledBuf> {
    let args = wire::encode_map(vec![
        ("path", Value::from(f.entry.path.as_str())),
        ("index", Value::U64(index)),
        ("piece", Value::U64(f.piece)),
        ("size", Value::U64(f.entry.size)),
        ("mtime_ns", Value::I64(f.entry.mtime_ns)),
    ])?;
    pool.call(ep, wire::READ, &args, None)
}

/// The data and hash of a read's reply, the data checked against the hash.
fn verified<'a>(reply: &'a [u8], f: &Incoming, index: u64) -> Result<(&'a [u8], PieceHash)> {
    let piece = f.piece;
    let r = Fields::parse(reply)?;
    let (data, hash) = (r.bytes("data")?, r.hash("hash")?);
    let want = piece_range(f.entry.size, piece, index).1;
    if data.len() as u64 != want {
        return Err(Error::Io(format!(
            "'{}': piece {index} came with {} bytes instead of {want}",
            f.entry.path,
            data.len()
        )));
    }
    if piece_hash(data, f.entry.size, piece, index) != hash {
        return Err(Error::Checksum(format!(
            "'{}': piece {index} arrived corrupted (BLAKE3 mismatch)",
            f.entry.path
        )));
    }
    Ok((data, hash))
}

/// A file of one piece: fetched, checked, written under a fresh part
/// name and renamed.
fn fetch_whole(pool: &Pool, ep: &Rpc, f: &Incoming, c: &Counters) -> Result<()> {
    let reply = read(pool, ep, f, 0)?;
    let (data, _) = verified(&reply, f, 0)?;
    let p = part::unique_part(&f.dir, &f.name);
    let written = part::create_new(&p).and_then(|mut file| {
        std::io::Write::write_all(&mut file, data)?;
        part::commit(&file, &p, &f.dest(), None, f.entry.mode, f.entry.mtime_ns)
    });
    if let Err(e) = written {
        let _ = fs::remove_file(&p);
        return Err(Error::io(f.dest().display(), &e));
    }
    c.moved(f.entry.size);
    c.file_done(true);
    Ok(())
}

/// One piece of a larger file: fetched, checked, written into the part
/// and recorded in the manifest; the last one finishes the file.
fn fetch_piece(pool: &Pool, ep: &Rpc, f: &Incoming, index: u64, c: &Counters) -> Result<()> {
    let piece = f.piece;
    if f.failed.load(Ordering::SeqCst) {
        return Ok(());
    }
    let stored = read(pool, ep, f, index).and_then(|reply| {
        let (data, hash) = verified(&reply, f, index)?;
        let (p, m) = part::paths(&f.dir, &f.name);
        let io = |e: std::io::Error| Error::io(p.display(), &e);
        let mut open = f.writing.lock().unwrap_or_else(|p| p.into_inner());
        if open.is_none() {
            let file = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&p)
                .map_err(io)?;
            *open = Some((file, Manifest::append(&m).map_err(io)?));
        }
        let (file, man) = open.as_ref().expect("opened above");
        write_in_chunks(file, data, piece_range(f.entry.size, piece, index).0).map_err(io)?;
        man.record(index, &hash).map_err(io)?;
        drop(open);
        f.hashes.lock().unwrap_or_else(|p| p.into_inner())[index as usize] = Some(hash);
        c.moved(data.len() as u64);
        Ok(())
    });
    match stored {
        Err(e) if e.is_fatal() => Err(e),
        Err(e) => f.fail(e),
        Ok(()) if f.left.fetch_sub(1, Ordering::SeqCst) == 1 => finish(f, c).or_else(|e| f.fail(e)),
        Ok(()) => Ok(()),
    }
}

/// Bytes per `write` of a piece into its part. The page cache gives a
/// write folios as large as the write: a whole-piece write gets 1 MiB
/// folios, carved from memory that has lain free longest (on a VM whose
/// host has taken it back, every page then faults on the host: copying
/// into them measured 0.7 s per GB, against 0.05–0.35 s with writes of
/// 4–64 KiB, whose small folios mostly reuse pages just freed).
const WRITE_CHUNK: usize = 32 << 10;

/// Writes `data` to `file` at `off`, [`WRITE_CHUNK`] bytes per write.
fn write_in_chunks(file: &File, data: &[u8], off: u64) -> std::io::Result<()> {
    for (i, part) in data.chunks(WRITE_CHUNK).enumerate() {
        file.write_all_at(part, off + (i * WRITE_CHUNK) as u64)?;
    }
    Ok(())
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
    f.writing.lock().unwrap_or_else(|p| p.into_inner()).take();
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
