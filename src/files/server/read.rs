//! The read side of a file server: listing a selection, and reading one
//! piece of a file with its hash.
//!
//! A piece for a caller of this process's own broker is hashed through a
//! small buffer that stays in the CPU cache, and its bytes are left in
//! the file: the broker sends them from there (`sendfile`), so they are
//! read once here and copied once, by the kernel, to the caller. Through
//! a broker elsewhere the piece is read into the reply and hashed there.

use super::Reply;
use crate::buffer::PooledBuf;
use crate::files::hash::{PieceHasher, piece_hash, piece_range, pieces, valid_piece_size};
use crate::files::paths::Root;
use crate::files::select::{self, Selection, mtime_ns};
use crate::files::wire::{
    Fields, append_from_file, bytes_value, encode_around_data, encode_map, encode_with_data,
};
use crate::files::{Error, Result};
use crate::server::local::FileSpan;
use crate::value::Value;
use std::cell::RefCell;
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};

/// Bytes hashed per read when a piece stays in its file: small enough to
/// stay in a core's cache from the read to the hash.
const HASH_CHUNK: usize = 256 << 10;

thread_local! {
    /// Each worker's buffer for hashing pieces that stay in their file.
    static HASH_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// `NAME.list`: `{"paths": […]}`, `{"glob": G}` or `{"regex": R}` →
/// `{"files": [{path, rel, size, mode, mtime_ns}, …]}`.
pub fn list(root: &Root, f: &Fields<'_>) -> Result<PooledBuf> {
    let what = Selection::from_fields(f)?;
    let found = select::find(root, &what)?;
    let files = found.iter().map(|x| x.entry.to_value()).collect();
    encode_map(vec![("files", Value::List(files))])
}

/// `NAME.have`: `{"files": [{path, size, mtime_ns}, …]}` → `{"same":
/// [bool, …]}`: whether each file is already in place with that size and
/// modification time (a path that is missing, refused or not a regular
/// file is not).
pub fn have(root: &Root, f: &Fields<'_>) -> Result<PooledBuf> {
    let Value::List(items) = f.value("files")? else {
        return Err(Error::InvalidInput("'files' should be a list".into()));
    };
    let same = items
        .iter()
        .map(|v| {
            let (Some(Value::String(path)), Some(size), Some(mtime)) =
                (v.get("path"), v.get("size"), v.get("mtime_ns"))
            else {
                return Value::Bool(false);
            };
            let found = root
                .resolve(path)
                .ok()
                .and_then(|abs| std::fs::metadata(abs).ok())
                .is_some_and(|m| {
                    m.is_file()
                        && Value::U64(m.len()) == *size
                        && Value::I64(mtime_ns(&m)) == *mtime
                });
            Value::Bool(found)
        })
        .collect();
    encode_map(vec![("same", Value::List(same))])
}

/// `NAME.read`: `{path, index, piece, size, mtime_ns}` → `{data, hash}`:
/// piece `index` of the file, which must still have the size and time it
/// was listed with. `in_file`: leave the piece's bytes in the file for the
/// broker to send ([`Reply::Piece`]), else read them into the reply.
pub fn piece(root: &Root, f: &Fields<'_>, in_file: bool) -> Result<Reply> {
    let path = f.str("path")?;
    let (index, piece, size, mtime) = (
        f.u64("index")?,
        f.u64("piece")?,
        f.u64("size")?,
        f.i64("mtime_ns")?,
    );
    if !valid_piece_size(piece) {
        return Err(Error::InvalidInput(format!(
            "{piece} is not a valid piece size"
        )));
    }
    if index >= pieces(size, piece) {
        return Err(Error::InvalidInput(format!(
            "'{path}' has no piece {index}"
        )));
    }
    let abs = root.resolve(&path)?;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&abs)
        .map_err(|e| Error::io(format!("'{path}'"), &e))?;
    let unchanged = |file: &File| -> Result<()> {
        let m = file
            .metadata()
            .map_err(|e| Error::io(format!("'{path}'"), &e))?;
        if !m.is_file() {
            return Err(Error::InvalidInput(format!(
                "'{path}' is not a regular file"
            )));
        }
        check_version(&path, &m, size, mtime)
    };
    unchanged(&file)?;
    let (off, len) = piece_range(size, piece, index);
    let io = |e: io::Error| match e.kind() {
        io::ErrorKind::UnexpectedEof => Error::Changed(format!(
            "'{path}' shrank on the server during the transfer; run it again"
        )),
        _ => Error::io(format!("'{path}'"), &e),
    };
    if in_file {
        let hash = hash_in_file(
            &file,
            off,
            len as usize,
            PieceHasher::new(size, piece, index),
        )
        .map_err(io)?;
        // Written to while being read: the piece may mix two versions.
        unchanged(&file)?;
        let (head, tail) = encode_around_data(len as usize, &[("hash", bytes_value(&hash))])?;
        let span = FileSpan {
            file,
            offset: off,
            len: len as usize,
        };
        return Ok(Reply::Piece { head, span, tail });
    }
    let reply = encode_with_data(len as usize, |buf| {
        append_from_file(buf, &file, off, len as usize).map_err(io)?;
        let h = piece_hash(&buf[buf.len() - len as usize..], size, piece, index);
        Ok(vec![("hash", bytes_value(&h))])
    })?;
    unchanged(&file)?;
    Ok(Reply::Encoded(reply))
}

/// The hash of `len` bytes of `file` from `off`, read a cache-sized chunk
/// at a time into this thread's buffer.
fn hash_in_file(file: &File, off: u64, len: usize, mut h: PieceHasher) -> io::Result<[u8; 32]> {
    HASH_BUF.with_borrow_mut(|buf| {
        buf.resize(HASH_CHUNK.min(len.max(1)).max(buf.len()), 0);
        let mut done = 0;
        while done < len {
            let n = (len - done).min(buf.len());
            file.read_exact_at(&mut buf[..n], off + done as u64)?;
            h.update(&buf[..n]);
            done += n;
        }
        Ok(h.finish())
    })
}

/// Refuses a file that is no longer the version the client listed.
fn check_version(path: &str, m: &Metadata, size: u64, mtime: i64) -> Result<()> {
    if m.len() != size || mtime_ns(m) != mtime {
        return Err(Error::Changed(format!(
            "'{path}' changed on the server during the transfer; run it again"
        )));
    }
    Ok(())
}
