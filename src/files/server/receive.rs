//! The upload side of a file server. A file of one piece arrives whole
//! (`put_whole`); a larger one is begun (`put_begin`, which reports the
//! pieces an earlier interrupted upload left verified), sent piece by
//! piece on any connections (`put_piece`, each checked against its hash
//! and recorded in the manifest), and committed (`put_commit`: every
//! piece re-read and checked, the whole file's hash compared with the
//! sender's, then mode, time and final name given).

use crate::buffer::PooledBuf;
use crate::files::hash::{MAX_PIECES, file_hash, hex, piece_hash, piece_range, valid_piece_size};
use crate::files::manifest::{self, Identity, Manifest};
use crate::files::part;
use crate::files::paths::Root;
use crate::files::wire::{Fields, bytes_value, encode_map};
use crate::files::{Error, Result};
use crate::value::Value;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The identity fields every upload call carries.
fn identity(f: &Fields<'_>) -> Result<Identity> {
    let id = Identity {
        size: f.u64("size")?,
        mtime_ns: f.i64("mtime_ns")?,
        piece: f.u64("piece")?,
    };
    if !valid_piece_size(id.piece) {
        return Err(Error::InvalidInput(format!(
            "{} is not a valid piece size",
            id.piece
        )));
    }
    if id.pieces() > MAX_PIECES {
        return Err(Error::InvalidInput(format!(
            "{} bytes in pieces of {} is more than {MAX_PIECES} pieces; use larger pieces",
            id.size, id.piece
        )));
    }
    Ok(id)
}

/// Where the upload of `path` goes: (final path, part, manifest).
fn places(root: &Root, path: &str) -> Result<(PathBuf, PathBuf, PathBuf)> {
    let (dir, name) = root.dir_for_write(path)?;
    let (p, m) = part::paths(&dir, &name);
    Ok((dir.join(&name), p, m))
}

fn open_existing(p: &Path, path: &str) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(p)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::InvalidInput(format!(
                "no upload of '{path}' is in progress (put_begin first)"
            )),
            _ => Error::io(format!("'{path}'"), &e),
        })
}

/// `NAME.put_begin`: `{path, size, mtime_ns, piece}` → `{"piece", "have":
/// [[index, hash], …]}`: the pieces already received intact for this
/// version, and the piece size to go on with (an interrupted upload's,
/// if it used another).
pub fn begin(root: &Root, f: &Fields<'_>) -> Result<PooledBuf> {
    let path = f.str("path")?;
    let asked = identity(f)?;
    let (_, p, m) = places(root, &path)?;
    let id = manifest::identity_of(&m)
        .filter(|e| e.size == asked.size && e.mtime_ns == asked.mtime_ns)
        .unwrap_or(asked);
    let io = |e: std::io::Error| Error::io(format!("'{path}'"), &e);
    let resumed = open_existing(&p, &path)
        .ok()
        .and_then(|file| manifest::verified_pieces(&m, &file, &id));
    let have = match resumed {
        Some(have) => have,
        None => {
            let file = part::open(&p, true).map_err(io)?;
            file.set_len(id.size).map_err(io)?;
            Manifest::create(&m, &id).map_err(io)?;
            Vec::new()
        }
    };
    let have = have
        .iter()
        .enumerate()
        .filter_map(|(i, h)| h.map(|h| Value::List(vec![Value::U64(i as u64), bytes_value(&h)])))
        .collect();
    encode_map(vec![
        ("piece", Value::U64(id.piece)),
        ("have", Value::List(have)),
    ])
}

/// `NAME.put_piece`: `{path, size, mtime_ns, piece, index, hash, data}`.
pub fn piece(root: &Root, f: &Fields<'_>) -> Result<PooledBuf> {
    let path = f.str("path")?;
    let id = identity(f)?;
    let (index, hash, data) = (f.u64("index")?, f.hash("hash")?, f.bytes("data")?);
    if index >= id.pieces() {
        return Err(Error::InvalidInput(format!(
            "'{path}' has no piece {index}"
        )));
    }
    let (off, len) = piece_range(id.size, id.piece, index);
    if data.len() as u64 != len {
        return Err(Error::InvalidInput(format!(
            "piece {index} of '{path}' should be {len} bytes, not {}",
            data.len()
        )));
    }
    if piece_hash(data, id.size, id.piece, index) != hash {
        return Err(Error::Checksum(format!(
            "piece {index} of '{path}' arrived corrupted (BLAKE3 mismatch)"
        )));
    }
    let (_, p, m) = places(root, &path)?;
    if !manifest::is_for(&m, &id) {
        return Err(Error::Changed(format!(
            "another upload of '{path}' replaced this one; run it again"
        )));
    }
    let file = open_existing(&p, &path)?;
    let io = |e: std::io::Error| Error::io(format!("'{path}'"), &e);
    part::write_at(&file, data, off).map_err(io)?;
    Manifest::append(&m)
        .and_then(|man| man.record(index, &hash))
        .map_err(io)?;
    encode_map(vec![])
}

/// `NAME.put_commit`: `{path, size, mtime_ns, piece, mode, hash}`: every
/// piece is read back and checked, the file's hash must be `hash`; then
/// the file gets its mode, time and name.
pub fn commit(root: &Root, f: &Fields<'_>) -> Result<PooledBuf> {
    let path = f.str("path")?;
    let id = identity(f)?;
    let (mode, want) = (mode(f)?, f.hash("hash")?);
    let (dest, p, m) = places(root, &path)?;
    let file = open_existing(&p, &path)?;
    let pieces = manifest::verified_pieces(&m, &file, &id).ok_or_else(|| {
        Error::Changed(format!(
            "another upload of '{path}' replaced this one; run it again"
        ))
    })?;
    let missing = pieces.iter().filter(|h| h.is_none()).count();
    if missing > 0 {
        return Err(Error::InvalidInput(format!(
            "'{path}' is missing {missing} of its {} pieces",
            pieces.len()
        )));
    }
    let hashes: Vec<_> = pieces.into_iter().flatten().collect();
    let got = file_hash(&hashes);
    if *got.as_bytes() != want {
        part::discard(&p, &m);
        return Err(Error::Checksum(format!(
            "'{path}' arrived with BLAKE3 {} but was sent as {}",
            got.to_hex(),
            hex(&want)
        )));
    }
    part::commit(&file, &p, &dest, Some(&m), mode, id.mtime_ns)
        .map_err(|e| Error::io(format!("'{path}'"), &e))?;
    encode_map(vec![])
}

/// `NAME.put_whole`: `{path, size, mtime_ns, mode, hash, data}`, a file
/// of one piece.
pub fn whole(root: &Root, f: &Fields<'_>) -> Result<PooledBuf> {
    let path = f.str("path")?;
    let (size, mtime, mode, want, data) = (
        f.u64("size")?,
        f.i64("mtime_ns")?,
        mode(f)?,
        f.hash("hash")?,
        f.bytes("data")?,
    );
    if data.len() as u64 != size {
        return Err(Error::InvalidInput(format!(
            "'{path}' should be {size} bytes, not {}",
            data.len()
        )));
    }
    if *blake3::hash(data).as_bytes() != want {
        return Err(Error::Checksum(format!(
            "'{path}' arrived corrupted (BLAKE3 mismatch)"
        )));
    }
    let (dir, name) = root.dir_for_write(&path)?;
    let p = part::unique_part(&dir, &name);
    let io = |e: std::io::Error| Error::io(format!("'{path}'"), &e);
    let written = part::create_new(&p).and_then(|file| {
        part::write_at(&file, data, 0)?;
        part::commit(&file, &p, &dir.join(&name), None, mode, mtime)
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&p);
        return Err(io(e));
    }
    encode_map(vec![])
}

fn mode(f: &Fields<'_>) -> Result<u32> {
    u32::try_from(f.u64("mode")?)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| Error::InvalidInput("'mode' should be permission bits".into()))
}
