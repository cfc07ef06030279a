//! Uploading: find the selection on this machine, begin each larger file
//! on the server (which reports the pieces an interrupted upload left
//! there, verified), then send whole files and the pieces the server
//! lacks, in parallel; the last piece of a file commits it.

use super::engine::{self, Counters};
use super::pool::Pool;
use super::{ProgressFn, Summary, TransferOptions};
use crate::client::rpc::Rpc;
use crate::files::hash::{
    MAX_PIECES, PieceHash, file_hash, piece_for, piece_hash, piece_range, pieces,
};
use crate::files::paths::{Root, relative, to_wire};
use crate::files::select::{self, Selection, mtime_ns};
use crate::files::wire::{self, Entry, Fields, append_from_file, bytes_value, encode_with_data};
use crate::files::{Error, Result};
use crate::value::Value;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

/// A file being uploaded.
struct Outgoing {
    /// Where it is here.
    local: PathBuf,
    /// Its piece size (the server may ask for an interrupted upload's).
    piece: u64,
    /// Its entry, `path` being where it goes on the server.
    entry: Entry,
    /// Pieces the server already holds from an earlier run.
    have: Vec<Option<PieceHash>>,
    /// Every piece's hash, as read here.
    hashes: Mutex<Vec<Option<PieceHash>>>,
    left: AtomicU64,
    failed: AtomicBool,
}

impl Outgoing {
    fn fail(&self, e: Error) -> Result<()> {
        if self.failed.swap(true, Ordering::SeqCst) {
            Ok(())
        } else {
            Err(e)
        }
    }

    fn open(&self) -> Result<File> {
        File::open(&self.local).map_err(|e| Error::io(self.local.display(), &e))
    }

    /// Refuses a local file that changed since it was listed.
    fn unchanged(&self, file: &File) -> Result<()> {
        let m = file
            .metadata()
            .map_err(|e| Error::io(self.local.display(), &e))?;
        if m.len() != self.entry.size || mtime_ns(&m) != self.entry.mtime_ns {
            return Err(Error::Changed(format!(
                "{} changed during the upload; run it again",
                self.local.display()
            )));
        }
        Ok(())
    }

    fn fields(&self, piece: u64) -> Vec<(&'static str, Value)> {
        vec![
            ("path", Value::from(self.entry.path.as_str())),
            ("size", Value::U64(self.entry.size)),
            ("mtime_ns", Value::I64(self.entry.mtime_ns)),
            ("piece", Value::U64(piece)),
            ("mode", Value::U32(self.entry.mode)),
        ]
    }
}

enum Task {
    Whole(usize),
    Piece(usize, u64),
}

/// Uploads the files `what` names (paths relative to `base`, or
/// absolute) to directory `dest_dir` of file server `server` through the
/// broker at `address`.
pub fn upload(
    address: &str,
    server: &str,
    what: &Selection,
    base: &Path,
    dest_dir: &str,
    options: &TransferOptions,
    progress: Option<ProgressFn<'_>>,
) -> Result<Summary> {
    options.check()?;
    let started = Instant::now();
    let found = select::find(&Root::local(base)?, what)?;
    let dest_dir = relative(dest_dir)?;
    let pool = Pool::connect(
        address,
        server,
        options.connections,
        options.wait_for_server,
    )?;
    if !pool.probe(options.wait_for_server)? {
        return Err(Error::PermissionDenied(format!(
            "the file server '{server}' is read-only (serve it with --writable to accept uploads)"
        )));
    }
    let piece = options.piece;
    let counters = Counters::default();
    let mut found = found;
    for x in &mut found {
        x.entry.path = to_wire(&dest_dir.join(&x.entry.rel));
    }
    let same = in_place(&pool, &found)?;
    let mut skipped = (0, 0);
    let mut files = Vec::with_capacity(found.len());
    let mut tasks = Vec::with_capacity(found.len());
    for (x, same) in found.into_iter().zip(same) {
        if same {
            skipped.0 += 1;
            skipped.1 += x.entry.size;
            continue;
        }
        let entry = x.entry;
        let i = files.len();
        let piece = piece_for(entry.size, piece);
        let (piece, have) = if pieces(entry.size, piece) == 1 {
            tasks.push(Task::Whole(i));
            (piece, Vec::new())
        } else {
            let (piece, have) = begin(&pool, &entry, piece)?;
            tasks.extend((0..have.len() as u64).map(|k| Task::Piece(i, k)));
            (piece, have)
        };
        let n = pieces(entry.size, piece);
        files.push(Outgoing {
            local: x.abs,
            piece,
            hashes: Mutex::new(vec![None; n as usize]),
            left: AtomicU64::new(n),
            failed: AtomicBool::new(false),
            have,
            entry,
        });
    }
    let work = |ep: &Rpc, t: Task| match t {
        Task::Whole(i) => send_whole(&pool, ep, &files[i], files[i].piece, &counters),
        Task::Piece(i, k) => send_piece(&pool, ep, &files[i], files[i].piece, k, &counters),
    };
    engine::transfer(
        &pool,
        pool.len() * options.in_flight,
        tasks,
        (files.len() as u64, files.iter().map(|f| f.entry.size).sum()),
        skipped,
        Vec::new(),
        &counters,
        options,
        started,
        &engine::each_task(&pool, &work),
        progress,
    )
}

/// Which files are already on the server with the same size and
/// modification time (asked in batches, so no message grows too large).
fn in_place(pool: &Pool, found: &[crate::files::select::Found]) -> Result<Vec<bool>> {
    let mut same = Vec::with_capacity(found.len());
    for batch in found.chunks(4096) {
        let files = batch
            .iter()
            .map(|x| {
                Value::Map(vec![
                    ("path".into(), Value::from(x.entry.path.as_str())),
                    ("size".into(), Value::U64(x.entry.size)),
                    ("mtime_ns".into(), Value::I64(x.entry.mtime_ns)),
                ])
            })
            .collect();
        let args = wire::encode_map(vec![("files", Value::List(files))])?;
        let reply = pool.call(pool.endpoint(0), wire::HAVE, &args, None)?;
        match Fields::parse(&reply)?.value("same")? {
            Value::List(v) if v.len() == batch.len() => {
                same.extend(v.iter().map(|b| matches!(b, Value::Bool(true))))
            }
            _ => {
                return Err(Error::InvalidInput(
                    "the server's 'have' reply does not match".into(),
                ));
            }
        }
    }
    Ok(same)
}

/// Begins a file of several pieces on the server: the piece size to use
/// and the pieces it holds.
fn begin(pool: &Pool, entry: &Entry, piece: u64) -> Result<(u64, Vec<Option<PieceHash>>)> {
    let args = wire::encode_map(vec![
        ("path", Value::from(entry.path.as_str())),
        ("size", Value::U64(entry.size)),
        ("mtime_ns", Value::I64(entry.mtime_ns)),
        ("piece", Value::U64(piece)),
    ])?;
    let reply = pool.call(pool.endpoint(0), wire::PUT_BEGIN, &args, None)?;
    let r = Fields::parse(&reply)?;
    let piece = r.u64("piece")?;
    if !crate::files::hash::valid_piece_size(piece) || pieces(entry.size, piece) > MAX_PIECES {
        return Err(Error::InvalidInput(format!(
            "the server asked for pieces of {piece} bytes for '{}' ({} bytes)",
            entry.path, entry.size
        )));
    }
    let mut have = vec![None; pieces(entry.size, piece) as usize];
    if let Value::List(items) = r.value("have")? {
        for item in items {
            if let Value::List(pair) = item {
                if let [Value::U64(k), Value::Matrix(h)] = pair.as_slice() {
                    if let (Some(slot), Ok(h)) = (have.get_mut(*k as usize), h.bytes().try_into()) {
                        *slot = Some(h);
                    }
                }
            }
        }
    }
    Ok((piece, have))
}

/// A file of one piece, sent and committed in one call.
fn send_whole(pool: &Pool, ep: &Rpc, f: &Outgoing, piece: u64, c: &Counters) -> Result<()> {
    let sent = f.open().and_then(|file| {
        let n = f.entry.size as usize;
        let args = encode_with_data(n, |buf| {
            append_from_file(buf, &file, 0, n).map_err(|e| Error::io(f.local.display(), &e))?;
            let mut fields = f.fields(piece);
            fields.push((
                "hash",
                bytes_value(blake3::hash(&buf[buf.len() - n..]).as_bytes()),
            ));
            Ok(fields)
        })?;
        f.unchanged(&file)?;
        pool.call(ep, wire::PUT_WHOLE, &args, None)
    });
    sent?;
    c.moved(f.entry.size);
    c.file_done(true);
    Ok(())
}

/// One piece of a larger file, unless the server holds it already; the
/// last one commits the file.
fn send_piece(
    pool: &Pool,
    ep: &Rpc,
    f: &Outgoing,
    piece: u64,
    index: u64,
    c: &Counters,
) -> Result<()> {
    if f.failed.load(Ordering::SeqCst) {
        return Ok(());
    }
    let (off, len) = piece_range(f.entry.size, piece, index);
    let sent = f.open().and_then(|file| {
        let mut hash = [0u8; 32];
        let args = encode_with_data(len as usize, |buf| {
            append_from_file(buf, &file, off, len as usize)
                .map_err(|e| Error::io(f.local.display(), &e))?;
            hash = piece_hash(&buf[buf.len() - len as usize..], f.entry.size, piece, index);
            let mut fields = f.fields(piece);
            fields.push(("index", Value::U64(index)));
            fields.push(("hash", bytes_value(&hash)));
            Ok(fields)
        })?;
        f.hashes.lock().unwrap_or_else(|p| p.into_inner())[index as usize] = Some(hash);
        if f.have[index as usize] == Some(hash) {
            c.resumed(len);
            return Ok(());
        }
        pool.call(ep, wire::PUT_PIECE, &args, None)?;
        c.moved(len);
        Ok(())
    });
    match sent {
        Err(e) if e.is_fatal() => Err(e),
        Err(e) => f.fail(e),
        Ok(()) if f.left.fetch_sub(1, Ordering::SeqCst) == 1 => {
            commit(pool, ep, f, piece, c).or_else(|e| if e.is_fatal() { Err(e) } else { f.fail(e) })
        }
        Ok(()) => Ok(()),
    }
}

/// Every piece is on the server: check the source did not change, and
/// have the server verify the whole and give it its name.
fn commit(pool: &Pool, ep: &Rpc, f: &Outgoing, piece: u64, c: &Counters) -> Result<()> {
    f.unchanged(&f.open()?)?;
    let hashes: Vec<PieceHash> = f
        .hashes
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .flatten()
        .copied()
        .collect();
    let mut fields = f.fields(piece);
    fields.push(("hash", bytes_value(file_hash(&hashes).as_bytes())));
    pool.call(ep, wire::PUT_COMMIT, &wire::encode_map(fields)?, None)?;
    c.file_done(true);
    Ok(())
}
