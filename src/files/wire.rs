//! The file server's functions on the wire: their names, and arguments
//! and results as dimeb maps. Pieces travel as a `data` entry holding a
//! uint8 vector, written straight into the frame's buffer by the sender
//! and read in place by the receiver, so a piece is never copied between
//! the file and the socket beyond what the kernel does.

use super::{Error, Result};
use crate::buffer::PooledBuf;
use crate::codec::dimeb;
use crate::value::{ElemKind, Matrix, Value};
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// `NAME.info`: `{"name", "writable"}`; clients call it first to find the
/// server (and a read-only one before uploading).
pub const INFO: &str = "info";
/// `NAME.have`: which of some files are already in place (same size and
/// modification time), so an upload need not send them again.
pub const HAVE: &str = "have";
/// `NAME.list`: which files a selection names.
pub const LIST: &str = "list";
/// `NAME.read`: one piece of a file, with its hash.
pub const READ: &str = "read";
/// `NAME.put_begin`: start (or resume) receiving a file in pieces.
pub const PUT_BEGIN: &str = "put_begin";
/// `NAME.put_piece`: one piece of a file being received.
pub const PUT_PIECE: &str = "put_piece";
/// `NAME.put_commit`: check a received file's hash and give it its name.
pub const PUT_COMMIT: &str = "put_commit";
/// `NAME.put_whole`: a file of one piece, received and committed at once.
pub const PUT_WHOLE: &str = "put_whole";

/// Every function a file server provides.
pub const FUNCTIONS: [&str; 8] = [
    INFO, HAVE, LIST, READ, PUT_BEGIN, PUT_PIECE, PUT_COMMIT, PUT_WHOLE,
];

/// The broker name of file server `server`'s function `op`.
pub fn function(server: &str, op: &str) -> String {
    format!("{server}.{op}")
}

const TAG_STRING: u8 = 0x20;
/// The tag of an encoded map.
pub const TAG_MAP: u8 = 0x22;
const TAG_U8_MATRIX: u8 = 0x10 | ElemKind::U8 as u8;

/// A uint8 vector value.
pub fn bytes_value(b: &[u8]) -> Value {
    Value::Matrix(Matrix::new(ElemKind::U8, vec![b.len()], b.to_vec()).expect("shape fits"))
}

/// Encodes a map of `fields`.
pub fn encode_map(fields: Vec<(&str, Value)>) -> Result<PooledBuf> {
    encode_value(&Value::Map(
        fields
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect(),
    ))
}

/// Encodes a value.
pub fn encode_value(v: &Value) -> Result<PooledBuf> {
    let len = dimeb::checked_encoded_len(v).map_err(|e| Error::InvalidInput(e.to_string()))?;
    let mut out = PooledBuf::try_with_capacity(len)
        .map_err(|e| Error::Io(format!("cannot allocate a message: {e}")))?;
    dimeb::encode_into(v, &mut out).map_err(|e| Error::InvalidInput(e.to_string()))?;
    Ok(out)
}

/// Encodes a map whose first entry is `data`, a uint8 vector of
/// `data_len` bytes that `fill` appends to the buffer it is given (e.g.
/// with [`append_from_file`]); `fill` returns the remaining fields
/// (computed from the data, such as its hash).
pub fn encode_with_data<'k>(
    data_len: usize,
    fill: impl FnOnce(&mut Vec<u8>) -> Result<Vec<(&'k str, Value)>>,
) -> Result<PooledBuf> {
    let mut out = PooledBuf::try_with_capacity(data_len + 256)
        .map_err(|e| Error::Io(format!("cannot allocate {data_len} bytes: {e}")))?;
    put_data_start(&mut out, data_len)?;
    let at = out.len();
    let rest = fill(&mut out)?;
    if out.len() != at + data_len {
        return Err(Error::Io(format!(
            "a piece of {data_len} bytes came out as {}",
            out.len() - at
        )));
    }
    put_rest(&mut out, &rest)?;
    let count = 1 + rest.len() as u32;
    out[1..5].copy_from_slice(&count.to_be_bytes());
    Ok(out)
}

/// The bytes before and after the `data` entry's `data_len` elements in
/// the map [`encode_with_data`] makes, with the remaining fields `rest`:
/// for sending the data from elsewhere (a file) between them.
pub fn encode_around_data(data_len: usize, rest: &[(&str, Value)]) -> Result<(Vec<u8>, Vec<u8>)> {
    let mut before = Vec::with_capacity(32);
    put_data_start(&mut before, data_len)?;
    let count = 1 + rest.len() as u32;
    before[1..5].copy_from_slice(&count.to_be_bytes());
    let mut after = Vec::with_capacity(64);
    put_rest(&mut after, rest)?;
    Ok((before, after))
}

/// The bytes a piece reply of `count` entries starts with, up to the first
/// of its `data_len` data bytes (as [`encode_with_data`] writes them).
pub fn piece_prefix(data_len: u64, count: u32) -> Result<Vec<u8>> {
    let len = usize::try_from(data_len)
        .map_err(|_| Error::InvalidInput(format!("a piece of {data_len} bytes is too large")))?;
    let mut out = Vec::with_capacity(32);
    put_data_start(&mut out, len)?;
    out[1..5].copy_from_slice(&count.to_be_bytes());
    Ok(out)
}

/// Starts a map (its count to be filled in at bytes 1..5) whose first
/// entry is `data`, up to that vector's first element.
fn put_data_start(out: &mut Vec<u8>, data_len: usize) -> Result<()> {
    let len32 = u32::try_from(data_len)
        .map_err(|_| Error::InvalidInput(format!("a piece of {data_len} bytes is too large")))?;
    out.push(TAG_MAP);
    out.extend_from_slice(&[0; 4]);
    put_key(out, "data");
    out.push(TAG_U8_MATRIX);
    out.push(1);
    out.extend_from_slice(&len32.to_be_bytes());
    Ok(())
}

/// Appends the map entries `rest`.
fn put_rest(out: &mut Vec<u8>, rest: &[(&str, Value)]) -> Result<()> {
    for (k, v) in rest {
        put_key(out, k);
        dimeb::encode_into(v, out).map_err(|e| Error::InvalidInput(e.to_string()))?;
    }
    Ok(())
}

/// Appends `len` bytes of `file` from offset `off` to `out`, read straight
/// into the buffer's spare room (a piece is not zeroed first only to be
/// overwritten).
pub fn append_from_file(out: &mut Vec<u8>, file: &File, off: u64, len: usize) -> io::Result<()> {
    out.try_reserve(len).map_err(io::Error::other)?;
    let start = out.len();
    let mut done = 0;
    while done < len {
        let at = off
            .checked_add(done as u64)
            .and_then(|o| libc::off_t::try_from(o).ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "offset out of range"))?;
        let spare = out.spare_capacity_mut();
        // SAFETY: `spare` has room for the `len - done` bytes still
        // missing (reserved above, nothing appended since), and pread
        // writes at most that many into it.
        let n = unsafe {
            libc::pread(
                file.as_raw_fd(),
                spare[done..].as_mut_ptr().cast(),
                len - done,
                at,
            )
        };
        match n {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n if n > 0 => done += n as usize,
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    // SAFETY: pread initialised the `len` bytes after `start`.
    unsafe { out.set_len(start + len) };
    Ok(())
}

fn put_key(out: &mut Vec<u8>, k: &str) {
    out.push(TAG_STRING);
    out.extend_from_slice(&(k.len() as u32).to_be_bytes());
    out.extend_from_slice(k.as_bytes());
}

/// A received map, its entries still encoded: fields are decoded when
/// asked for, and a uint8 vector is read in place.
pub struct Fields<'a> {
    entries: Vec<(&'a [u8], &'a [u8])>,
}

impl<'a> Fields<'a> {
    /// Splits an encoded map into its entries.
    pub fn parse(bytes: &'a [u8]) -> Result<Fields<'a>> {
        let entries = dimeb::split_map(bytes)
            .map_err(|e| Error::InvalidInput(format!("malformed file-transfer message: {e}")))?;
        Ok(Fields { entries })
    }

    fn raw(&self, key: &str) -> Result<&'a [u8]> {
        self.entries
            .iter()
            .find(|(k, _)| {
                k.len() == 5 + key.len() && k[0] == TAG_STRING && &k[5..] == key.as_bytes()
            })
            .map(|(_, v)| *v)
            .ok_or_else(|| Error::InvalidInput(format!("file-transfer message lacks '{key}'")))
    }

    /// True if the map has `key`.
    pub fn has(&self, key: &str) -> bool {
        self.raw(key).is_ok()
    }

    /// The value of `key`, decoded.
    pub fn value(&self, key: &str) -> Result<Value> {
        dimeb::decode(self.raw(key)?).map_err(|e| Error::InvalidInput(format!("'{key}': {e}")))
    }

    /// The uint8 vector under `key`, in place.
    pub fn bytes(&self, key: &str) -> Result<&'a [u8]> {
        let v = self.raw(key)?;
        let bad = || Error::InvalidInput(format!("'{key}' is not a uint8 vector"));
        if v.len() < 2 || v[0] != TAG_U8_MATRIX {
            return Err(bad());
        }
        let rank = v[1] as usize;
        let start = 2 + 4 * rank;
        // split_map checked the lengths: the elements are the rest.
        v.get(start..).ok_or_else(bad)
    }

    /// The string under `key`.
    pub fn str(&self, key: &str) -> Result<String> {
        match self.value(key)? {
            Value::String(s) => Ok(s),
            other => Err(Error::InvalidInput(format!(
                "'{key}' should be a string, not a {}",
                other.type_name()
            ))),
        }
    }

    /// The non-negative integer under `key`.
    pub fn u64(&self, key: &str) -> Result<u64> {
        let v = self.value(key)?;
        as_i128(&v)
            .and_then(|i| u64::try_from(i).ok())
            .ok_or_else(|| Error::InvalidInput(format!("'{key}' should be a non-negative integer")))
    }

    /// The integer under `key`.
    pub fn i64(&self, key: &str) -> Result<i64> {
        let v = self.value(key)?;
        as_i128(&v)
            .and_then(|i| i64::try_from(i).ok())
            .ok_or_else(|| Error::InvalidInput(format!("'{key}' should be an integer")))
    }

    /// The 32-byte hash under `key`.
    pub fn hash(&self, key: &str) -> Result<[u8; 32]> {
        self.bytes(key)?
            .try_into()
            .map_err(|_| Error::InvalidInput(format!("'{key}' should be 32 bytes")))
    }
}

fn as_i128(v: &Value) -> Option<i128> {
    Some(match *v {
        Value::I8(x) => x.into(),
        Value::I16(x) => x.into(),
        Value::I32(x) => x.into(),
        Value::I64(x) => x.into(),
        Value::U8(x) => x.into(),
        Value::U16(x) => x.into(),
        Value::U32(x) => x.into(),
        Value::U64(x) => x.into(),
        _ => return None,
    })
}

/// One file a listing names.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Its path under the tree's root, `/`-separated.
    pub path: String,
    /// Where it goes under the destination, `/`-separated.
    pub rel: String,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits (`0o644`).
    pub mode: u32,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
}

impl Entry {
    /// The entry as a map value.
    pub fn to_value(&self) -> Value {
        Value::Map(vec![
            ("path".into(), Value::from(self.path.as_str())),
            ("rel".into(), Value::from(self.rel.as_str())),
            ("size".into(), Value::U64(self.size)),
            ("mode".into(), Value::U32(self.mode)),
            ("mtime_ns".into(), Value::I64(self.mtime_ns)),
        ])
    }

    /// Reads an entry from a decoded map.
    pub fn from_value(v: &Value) -> Result<Entry> {
        let bad = |k: &str| Error::InvalidInput(format!("listing entry lacks a valid '{k}'"));
        let s = |k: &str| match v.get(k) {
            Some(Value::String(s)) => Ok(s.clone()),
            _ => Err(bad(k)),
        };
        let n = |k: &str| v.get(k).and_then(as_i128).ok_or_else(|| bad(k));
        Ok(Entry {
            path: s("path")?,
            rel: s("rel")?,
            size: u64::try_from(n("size")?).map_err(|_| bad("size"))?,
            mode: u32::try_from(n("mode")?).map_err(|_| bad("mode"))?,
            mtime_ns: i64::try_from(n("mtime_ns")?).map_err(|_| bad("mtime_ns"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_maps_round_trip_in_place() {
        let buf = encode_with_data(5, |d| {
            d.extend_from_slice(b"hello");
            Ok(vec![("n", Value::U64(7)), ("name", Value::from("x"))])
        })
        .unwrap();
        // It is an ordinary dimeb map too.
        let v = dimeb::decode(&buf).unwrap();
        assert_eq!(v.get("n"), Some(&Value::U64(7)));
        let f = Fields::parse(&buf).unwrap();
        assert_eq!(f.bytes("data").unwrap(), b"hello");
        assert_eq!(f.u64("n").unwrap(), 7);
        assert_eq!(f.str("name").unwrap(), "x");
        assert!(f.u64("name").is_err() && f.bytes("n").is_err() && f.value("zz").is_err());
        let e = Entry {
            path: "a/b".into(),
            rel: "b".into(),
            size: 3,
            mode: 0o640,
            mtime_ns: -5,
        };
        assert_eq!(Entry::from_value(&e.to_value()).unwrap(), e);
        // Framed around data from elsewhere, it is the same map.
        let rest = [("n", Value::U64(7)), ("name", Value::from("x"))];
        let (before, after) = encode_around_data(5, &rest).unwrap();
        assert_eq!([&before[..], b"hello", &after[..]].concat(), buf.to_vec());
        // A fill that comes out short is an error, not a bad frame.
        assert!(
            encode_with_data(5, |d| {
                d.push(1);
                Ok(vec![])
            })
            .is_err()
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"0123456789").unwrap();
        let f = File::open(dir.path().join("f")).unwrap();
        let mut out = b"ab".to_vec();
        append_from_file(&mut out, &f, 3, 4).unwrap();
        assert_eq!(out, b"ab3456");
        assert!(append_from_file(&mut out, &f, 8, 4).is_err());
    }
}
