//! The read side of a file server: listing a selection, and reading one
//! piece of a file with its hash.

use crate::buffer::PooledBuf;
use crate::files::hash::{piece_hash, piece_range, pieces, valid_piece_size};
use crate::files::paths::Root;
use crate::files::select::{self, Selection, mtime_ns};
use crate::files::wire::{Fields, append_from_file, bytes_value, encode_map, encode_with_data};
use crate::files::{Error, Result};
use crate::value::Value;
use std::fs::{File, Metadata, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;

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
/// was listed with.
pub fn piece(root: &Root, f: &Fields<'_>) -> Result<PooledBuf> {
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
    let reply = encode_with_data(len as usize, |buf| {
        append_from_file(buf, &file, off, len as usize)
            .map_err(|e| Error::io(format!("'{path}'"), &e))?;
        let h = piece_hash(&buf[buf.len() - len as usize..], size, piece, index);
        Ok(vec![("hash", bytes_value(&h))])
    })?;
    // Written to while being read: the piece may mix two versions.
    unchanged(&file)?;
    Ok(reply)
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
