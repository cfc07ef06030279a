//! The read side of a file server: listing a selection, and reading one
//! piece of a file with its hash.
//!
//! A piece for a caller of this process's own broker is hashed through a
//! small buffer that stays in the CPU cache, and its bytes are left in
//! the file: the broker sends them from there (`sendfile`), so they are
//! read once here and copied once, by the kernel, to the caller. Through
//! a broker elsewhere the piece is read into the reply and hashed there.

use super::Reply;
use super::hash_cache::{PieceHashes, PieceKey};
use crate::buffer::PooledBuf;
use crate::files::hash::{
    HASH_CHUNK, PieceHash, piece_hash, piece_hash_in_file, piece_range, pieces, valid_piece_size,
};
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
use std::os::unix::fs::OpenOptionsExt;
use std::time::SystemTime;

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
/// broker to send ([`Reply::Piece`]), else read them into the reply. A
/// hash in `hashes` for this version of the file is used instead of
/// hashing the piece again; one computed here is kept there.
pub fn piece(root: &Root, hashes: &PieceHashes, f: &Fields<'_>, in_file: bool) -> Result<Reply> {
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
    let unchanged = |file: &File| -> Result<Metadata> {
        let m = file
            .metadata()
            .map_err(|e| Error::io(format!("'{path}'"), &e))?;
        if !m.is_file() {
            return Err(Error::InvalidInput(format!(
                "'{path}' is not a regular file"
            )));
        }
        check_version(&path, &m, size, mtime)?;
        Ok(m)
    };
    let key = PieceKey::new(&unchanged(&file)?, piece, index);
    let known = hashes.get(&key);
    // Kept only if nothing about the file moved while it was read.
    let keep = |hash: PieceHash, started: SystemTime, after: &Metadata| {
        if PieceKey::new(after, piece, index) == key {
            hashes.put(key, hash, started);
        }
    };
    let (off, len) = piece_range(size, piece, index);
    let io = |e: io::Error| match e.kind() {
        io::ErrorKind::UnexpectedEof => Error::Changed(format!(
            "'{path}' shrank on the server during the transfer; run it again"
        )),
        _ => Error::io(format!("'{path}'"), &e),
    };
    if in_file {
        let hash = match known {
            Some(hash) => hash,
            None => {
                let started = SystemTime::now();
                let hash = HASH_BUF
                    .with_borrow_mut(|buf| {
                        buf.resize(HASH_CHUNK.min(len as usize).max(1).max(buf.len()), 0);
                        piece_hash_in_file(&file, size, piece, index, buf)
                    })
                    .map_err(io)?;
                // Written to while being read: the piece may mix two versions.
                keep(hash, started, &unchanged(&file)?);
                hash
            }
        };
        let (head, tail) = encode_around_data(len as usize, &[("hash", bytes_value(&hash))])?;
        let span = FileSpan {
            file,
            offset: off,
            len: len as usize,
        };
        return Ok(Reply::Piece { head, span, tail });
    }
    let started = SystemTime::now();
    let mut computed = None;
    let reply = encode_with_data(len as usize, |buf| {
        append_from_file(buf, &file, off, len as usize).map_err(io)?;
        let h = known.unwrap_or_else(|| {
            let h = piece_hash(&buf[buf.len() - len as usize..], size, piece, index);
            computed = Some(h);
            h
        });
        Ok(vec![("hash", bytes_value(&h))])
    })?;
    let after = unchanged(&file)?;
    if let Some(h) = computed {
        keep(h, started, &after);
    }
    Ok(Reply::Encoded(reply))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::hash::piece_hash;
    use std::fs::FileTimes;
    use std::time::Duration;

    /// Piece 1 of 2 KiB pieces of `name`, read into the reply: its hash
    /// and its bytes.
    fn read_piece(root: &Root, hashes: &PieceHashes, name: &str) -> ([u8; 32], Vec<u8>) {
        let m = std::fs::metadata(root.resolve(name).unwrap()).unwrap();
        let args = encode_map(vec![
            ("path", Value::from(name)),
            ("index", Value::U64(1)),
            ("piece", Value::U64(2048)),
            ("size", Value::U64(m.len())),
            ("mtime_ns", Value::I64(mtime_ns(&m))),
        ])
        .unwrap();
        let Reply::Encoded(reply) =
            piece(root, hashes, &Fields::parse(&args).unwrap(), false).unwrap()
        else {
            panic!("a piece left in its file")
        };
        let f = Fields::parse(&reply).unwrap();
        (f.hash("hash").unwrap(), f.bytes("data").unwrap().to_vec())
    }

    #[test]
    fn a_piece_read_again_reuses_its_hash_unless_the_file_changed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        std::fs::write(&path, vec![1u8; 4096]).unwrap();
        let root = Root::confined(dir.path()).unwrap();
        let hashes = PieceHashes::new(64, Duration::ZERO);

        let (h1, data) = read_piece(&root, &hashes, "f.bin");
        assert_eq!(h1, piece_hash(&data, 4096, 2048, 1));
        assert_eq!(hashes.hits(), 0);
        assert_eq!(read_piece(&root, &hashes, "f.bin").0, h1);
        assert_eq!(hashes.hits(), 1);

        // Rewritten in place with the same size and modification time:
        // the new bytes get their own hash, not the kept one.
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&path, vec![2u8; 4096]).unwrap();
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_times(FileTimes::new().set_modified(mtime))
            .unwrap();
        let (h2, data) = read_piece(&root, &hashes, "f.bin");
        assert_eq!(data, vec![2u8; 2048]);
        assert_eq!(h2, piece_hash(&data, 4096, 2048, 1));
        assert_ne!(h2, h1);
        assert_eq!(hashes.hits(), 1);
    }
}
