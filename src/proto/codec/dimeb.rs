//! dimeb, DiME2's binary value format (docs/protocol.md §4): big-endian,
//! one tag byte per value. Decoding never trusts a length before checking it
//! against the bytes that are actually there.

use crate::value::{Complex, ElemKind, Matrix, Value, matrix_byte_len};
use crate::wire::MAX_FIELD_LEN;
use std::fmt;

const TAG_NULL: u8 = 0x00;
const TAG_TRUE: u8 = 0x01;
const TAG_FALSE: u8 = 0x02;
const TAG_MATRIX: u8 = 0x10;
const TAG_STRING: u8 = 0x20;
const TAG_LIST: u8 = 0x21;
const TAG_MAP: u8 = 0x22;

/// Deepest nesting of lists and maps accepted, so hostile input cannot
/// exhaust the stack.
pub const MAX_DEPTH: usize = 256;

/// Why bytes could not be decoded or a value encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecError(pub String);

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dimeb: {}", self.0)
    }
}

impl std::error::Error for CodecError {}

fn err<T>(msg: impl Into<String>) -> Result<T, CodecError> {
    Err(CodecError(msg.into()))
}

/// Encodes `value` into a fresh buffer.
///
/// Fails, before allocating, when the encoding would not fit one frame's
/// u32 payload length, and when the buffer cannot be allocated (the size
/// comes from a caller's value, so running out of memory is an error to
/// report, not a reason to abort the process).
pub fn encode(value: &Value) -> Result<Vec<u8>, CodecError> {
    let len = checked_encoded_len(value)?;
    let mut out = Vec::new();
    out.try_reserve_exact(len).map_err(|e| {
        CodecError(format!(
            "cannot allocate {len} bytes to encode a value: {e}"
        ))
    })?;
    encode_into(value, &mut out)?;
    Ok(out)
}

/// [`encoded_len`], or an error if that many bytes cannot be one frame's
/// payload (its length field is a u32).
pub fn checked_encoded_len(value: &Value) -> Result<usize, CodecError> {
    let len = encoded_len(value);
    if len > MAX_FIELD_LEN {
        return err(format!(
            "value encodes to {len} bytes, too large: a DiME frame payload carries at most \
             {MAX_FIELD_LEN}"
        ));
    }
    Ok(len)
}

/// Exact number of bytes `encode` produces (lets callers allocate once);
/// saturates at `usize::MAX` rather than wrapping.
pub fn encoded_len(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(_) => 1,
        Value::I8(_) | Value::U8(_) => 2,
        Value::I16(_) | Value::U16(_) => 3,
        Value::I32(_) | Value::U32(_) | Value::F32(_) => 5,
        Value::I64(_) | Value::U64(_) | Value::F64(_) | Value::C32(_) => 9,
        Value::C64(_) => 17,
        Value::Matrix(m) => (2 + 4 * m.dims().len()).saturating_add(m.bytes().len()),
        Value::String(s) => s.len().saturating_add(5),
        // Borrowed matrices take no memory of their own, so a list of many
        // views of one large buffer could add up past usize.
        Value::List(items) => items
            .iter()
            .fold(5usize, |acc, v| acc.saturating_add(encoded_len(v))),
        Value::Map(pairs) => pairs.iter().fold(5usize, |acc, (k, v)| {
            acc.saturating_add(encoded_len(k))
                .saturating_add(encoded_len(v))
        }),
    }
}

fn put_count(out: &mut Vec<u8>, n: usize, what: &str) -> Result<(), CodecError> {
    let n =
        u32::try_from(n).map_err(|_| CodecError(format!("{what} of {n} exceeds the u32 limit")))?;
    out.extend_from_slice(&n.to_be_bytes());
    Ok(())
}

/// Appends the encoding of `value` to `out`.
pub fn encode_into(value: &Value, out: &mut Vec<u8>) -> Result<(), CodecError> {
    match value {
        Value::Null => out.push(TAG_NULL),
        Value::Bool(true) => out.push(TAG_TRUE),
        Value::Bool(false) => out.push(TAG_FALSE),
        Value::I8(x) => scalar(out, ElemKind::I8, &x.to_be_bytes()),
        Value::I16(x) => scalar(out, ElemKind::I16, &x.to_be_bytes()),
        Value::I32(x) => scalar(out, ElemKind::I32, &x.to_be_bytes()),
        Value::I64(x) => scalar(out, ElemKind::I64, &x.to_be_bytes()),
        Value::U8(x) => scalar(out, ElemKind::U8, &x.to_be_bytes()),
        Value::U16(x) => scalar(out, ElemKind::U16, &x.to_be_bytes()),
        Value::U32(x) => scalar(out, ElemKind::U32, &x.to_be_bytes()),
        Value::U64(x) => scalar(out, ElemKind::U64, &x.to_be_bytes()),
        Value::F32(x) => scalar(out, ElemKind::F32, &x.to_be_bytes()),
        Value::F64(x) => scalar(out, ElemKind::F64, &x.to_be_bytes()),
        Value::C32(c) => {
            out.push(ElemKind::C32 as u8);
            out.extend_from_slice(&c.re.to_be_bytes());
            out.extend_from_slice(&c.im.to_be_bytes());
        }
        Value::C64(c) => {
            out.push(ElemKind::C64 as u8);
            out.extend_from_slice(&c.re.to_be_bytes());
            out.extend_from_slice(&c.im.to_be_bytes());
        }
        Value::Matrix(m) => encode_matrix(m, out)?,
        Value::String(s) => {
            out.push(TAG_STRING);
            put_count(out, s.len(), "string length")?;
            out.extend_from_slice(s.as_bytes());
        }
        Value::List(items) => {
            out.push(TAG_LIST);
            put_count(out, items.len(), "list length")?;
            for item in items {
                encode_into(item, out)?;
            }
        }
        Value::Map(pairs) => {
            out.push(TAG_MAP);
            put_count(out, pairs.len(), "map size")?;
            for (k, v) in pairs {
                encode_into(k, out)?;
                encode_into(v, out)?;
            }
        }
    }
    Ok(())
}

fn scalar(out: &mut Vec<u8>, kind: ElemKind, be: &[u8]) {
    out.push(kind as u8);
    out.extend_from_slice(be);
}

/// Appends a matrix: tag, rank, dims, then the elements byte-swapped to
/// big-endian in one pass.
pub fn encode_matrix(m: &Matrix, out: &mut Vec<u8>) -> Result<(), CodecError> {
    matrix_header(m, out)?;
    if m.is_row_major() {
        // Transpose and byte-swap in one pass over the caller's buffer.
        let start = out.len();
        out.resize(start + m.bytes().len(), 0);
        transpose_swapped(m, &mut out[start..]);
    } else {
        swap_extend(m.bytes(), m.kind().swap_unit(), out);
    }
    Ok(())
}

/// Appends a matrix's tag, rank and dims (what precedes its elements).
fn matrix_header(m: &Matrix, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let rank =
        u8::try_from(m.dims().len()).map_err(|_| CodecError("matrix rank exceeds 255".into()))?;
    out.push(TAG_MATRIX | m.kind() as u8);
    out.push(rank);
    for d in m.dims() {
        put_count(out, *d, "matrix dimension")?;
    }
    Ok(())
}

/// A piece of a value's encoding, for sending a value without building its
/// encoding whole (see [`encode_pieces`]).
pub enum Piece<'a> {
    /// Encoded bytes.
    Bytes(Vec<u8>),
    /// The elements of a large matrix, still to be encoded with
    /// [`stream_elements`] (its tag, rank and dims are in the bytes before).
    Elements(&'a Matrix),
}

/// The encoding of `value` as pieces: everything is encoded except the
/// elements of matrices larger than `large` bytes, which are left for
/// [`stream_elements`]. Every check of [`encode_into`] happens here, so a
/// value that passes can be streamed out without failing half way.
pub fn encode_pieces(value: &Value, large: usize) -> Result<Vec<Piece<'_>>, CodecError> {
    fn walk<'a>(
        v: &'a Value,
        large: usize,
        cur: &mut Vec<u8>,
        out: &mut Vec<Piece<'a>>,
    ) -> Result<(), CodecError> {
        match v {
            Value::Matrix(m) if m.bytes().len() > large => {
                matrix_header(m, cur)?;
                out.push(Piece::Bytes(std::mem::take(cur)));
                out.push(Piece::Elements(m));
            }
            Value::List(items) => {
                cur.push(TAG_LIST);
                put_count(cur, items.len(), "list length")?;
                for item in items {
                    walk(item, large, cur, out)?;
                }
            }
            Value::Map(pairs) => {
                cur.push(TAG_MAP);
                put_count(cur, pairs.len(), "map size")?;
                for (k, item) in pairs {
                    walk(k, large, cur, out)?;
                    walk(item, large, cur, out)?;
                }
            }
            other => encode_into(other, cur)?,
        }
        Ok(())
    }
    let mut cur = Vec::new();
    let mut out = Vec::new();
    walk(value, large, &mut cur, &mut out)?;
    if !cur.is_empty() {
        out.push(Piece::Bytes(cur));
    }
    Ok(out)
}

/// Encodes the elements of `m` (big-endian, column-major, as
/// [`encode_matrix`] does) a piece of about `chunk` bytes at a time into
/// `buf`, handing each piece to `emit`: one pass over the elements, and the
/// pieces stay in cache on their way to a socket.
pub fn stream_elements<E>(
    m: &Matrix,
    chunk: usize,
    buf: &mut Vec<u8>,
    mut emit: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), E> {
    let (src, size, unit) = (m.bytes(), m.kind().size(), m.kind().swap_unit());
    let chunk = chunk.max(size);
    if !m.is_row_major() {
        let step = chunk - chunk % size;
        for piece in src.chunks(step) {
            buf.clear();
            buf.resize(piece.len(), 0);
            swap_copy(piece, unit, buf);
            emit(buf)?;
        }
        return Ok(());
    }
    let dims = m.dims();
    if dims.len() == 2 && size == unit && dims[0] > 0 {
        // A C-ordered 2-D array: a block of whole columns per piece, read
        // row by row from the caller's buffer.
        let (rows, cols) = (dims[0], dims[1]);
        let per = (chunk / (rows * size)).max(1);
        for jb in (0..cols).step_by(per) {
            let je = (jb + per).min(cols);
            buf.clear();
            buf.resize(rows * (je - jb) * size, 0);
            match size {
                1 => transpose_block_be::<u8>(src, rows, cols, jb, je, buf),
                2 => transpose_block_be::<u16>(src, rows, cols, jb, je, buf),
                4 => transpose_block_be::<u32>(src, rows, cols, jb, je, buf),
                _ => transpose_block_be::<u64>(src, rows, cols, jb, je, buf),
            }
            emit(buf)?;
        }
        return Ok(());
    }
    // Rarer layouts (N-d C order, complex C order): transposed whole.
    buf.clear();
    buf.resize(src.len(), 0);
    transpose_swapped(m, buf);
    for piece in buf.chunks(chunk) {
        emit(piece)?;
    }
    Ok(())
}

/// Columns `jb..je` of a row-major `rows` x `cols` matrix, column-major and
/// big-endian, into `out` (exactly `rows * (je - jb)` words).
fn transpose_block_be<T: Word>(
    src: &[u8],
    rows: usize,
    cols: usize,
    jb: usize,
    je: usize,
    out: &mut [u8],
) {
    let w = std::mem::size_of::<T>();
    assert!(src.len() == rows * cols * w && out.len() == rows * (je - jb) * w && je <= cols);
    let (s, d) = (src.as_ptr(), out.as_mut_ptr());
    for i in 0..rows {
        for j in jb..je {
            // SAFETY: i < rows, j < je <= cols: within the lengths asserted above.
            unsafe {
                let v = (s.add((i * cols + j) * w) as *const T).read_unaligned();
                (d.add(((j - jb) * rows + i) * w) as *mut T).write_unaligned(v.to_be());
            }
        }
    }
}

/// Writes a row-major matrix's elements column-major and big-endian.
fn transpose_swapped(m: &Matrix, out: &mut [u8]) {
    let (src, dims, size) = (m.bytes(), m.dims(), m.kind().size());
    if dims.len() == 2 && size == m.kind().swap_unit() {
        match size {
            1 => return transpose_2d_be::<u8>(src, dims[0], dims[1], out),
            2 => return transpose_2d_be::<u16>(src, dims[0], dims[1], out),
            4 => return transpose_2d_be::<u32>(src, dims[0], dims[1], out),
            _ => return transpose_2d_be::<u64>(src, dims[0], dims[1], out),
        }
    }
    // One closure per word width, so each loop compiles to plain loads,
    // byte swaps and stores.
    macro_rules! go {
        ($t:ty) => {
            crate::value::transpose_into(src, dims, size, out, |s, d| {
                const W: usize = std::mem::size_of::<$t>();
                for (sc, dc) in s.chunks_exact(W).zip(d.chunks_exact_mut(W)) {
                    let w = <$t>::from_ne_bytes(sc.try_into().unwrap());
                    dc.copy_from_slice(&w.to_be_bytes());
                }
            })
        };
    }
    match m.kind().swap_unit() {
        1 => go!(u8),
        2 => go!(u16),
        4 => go!(u32),
        _ => go!(u64),
    }
}

/// A machine word that can be written big-endian.
trait Word: Copy {
    fn to_be(self) -> Self;
}

macro_rules! word {
    ($($t:ty),*) => {$(
        impl Word for $t {
            fn to_be(self) -> Self {
                <$t>::to_be(self)
            }
        }
    )*};
}
word!(u8, u16, u32, u64);

/// The hot case of sending a C-ordered 2-D array: tile by tile, read rows,
/// write columns, byte-swapped, with the bounds checked once up front.
fn transpose_2d_be<T: Word>(src: &[u8], rows: usize, cols: usize, out: &mut [u8]) {
    const TILE: usize = 64;
    let w = std::mem::size_of::<T>();
    assert!(src.len() == rows * cols * w && out.len() == src.len());
    let (s, d) = (src.as_ptr(), out.as_mut_ptr());
    for ib in (0..rows).step_by(TILE) {
        for jb in (0..cols).step_by(TILE) {
            for i in ib..(ib + TILE).min(rows) {
                for j in jb..(jb + TILE).min(cols) {
                    // SAFETY: i < rows and j < cols, so both offsets are
                    // within the `rows * cols * w` bytes asserted above.
                    unsafe {
                        let v = (s.add((i * cols + j) * w) as *const T).read_unaligned();
                        (d.add((j * rows + i) * w) as *mut T).write_unaligned(v.to_be());
                    }
                }
            }
        }
    }
}

/// Appends `src` to `out` with every `unit`-byte word reversed (big-endian
/// ↔ native on little-endian hosts; a plain copy on big-endian ones).
pub fn swap_extend(src: &[u8], unit: usize, out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + src.len(), 0);
    swap_copy(src, unit, &mut out[start..]);
}

/// Copies `src` into `dst` (same length) reversing each `unit`-byte word on
/// little-endian hosts.
pub fn swap_copy(src: &[u8], unit: usize, dst: &mut [u8]) {
    debug_assert_eq!(src.len(), dst.len());
    if cfg!(target_endian = "big") || unit == 1 {
        dst.copy_from_slice(src);
        return;
    }
    // Fixed-width chunks let the compiler vectorise the swap.
    macro_rules! swap {
        ($t:ty, $n:expr) => {
            for (d, s) in dst.chunks_exact_mut($n).zip(src.chunks_exact($n)) {
                let w = <$t>::from_ne_bytes(s.try_into().unwrap()).swap_bytes();
                d.copy_from_slice(&w.to_ne_bytes());
            }
        };
    }
    match unit {
        2 => swap!(u16, 2),
        4 => swap!(u32, 4),
        8 => swap!(u64, 8),
        _ => unreachable!("element unit {unit}"),
    }
}

/// Decodes one value that must fill `bytes` exactly.
pub fn decode(bytes: &[u8]) -> Result<Value, CodecError> {
    let mut r = Reader { buf: bytes, pos: 0 };
    let v = r.value(0)?;
    if r.pos != bytes.len() {
        return err(format!(
            "{} trailing bytes after the value",
            bytes.len() - r.pos
        ));
    }
    Ok(v)
}

/// Length of the one encoded value at the start of `bytes`, checked but
/// not decoded (the server uses it to split maps without copying values).
pub fn value_len(bytes: &[u8]) -> Result<usize, CodecError> {
    let mut r = Reader { buf: bytes, pos: 0 };
    r.skip(0)?;
    Ok(r.pos)
}

/// One encoded (key, value) pair of a map.
pub type MapEntry<'a> = (&'a [u8], &'a [u8]);

/// Splits an encoded map into (key, value) byte slices, in order.
pub fn split_map(bytes: &[u8]) -> Result<Vec<MapEntry<'_>>, CodecError> {
    let mut r = Reader { buf: bytes, pos: 0 };
    if r.array::<1>("tag")?[0] != TAG_MAP {
        return err("expected a map");
    }
    let n = r.u32("map size")?;
    let mut out = Vec::with_capacity(n.min(bytes.len() / 2));
    for _ in 0..n {
        let k0 = r.pos;
        r.skip(1)?;
        let v0 = r.pos;
        r.skip(1)?;
        out.push((&bytes[k0..v0], &bytes[v0..r.pos]));
    }
    if r.pos != bytes.len() {
        return err(format!(
            "{} trailing bytes after the map",
            bytes.len() - r.pos
        ));
    }
    Ok(out)
}

/// Encodes a map header for `n` pairs; the caller appends the pairs.
pub fn map_header(n: usize, out: &mut Vec<u8>) -> Result<(), CodecError> {
    out.push(TAG_MAP);
    put_count(out, n, "map size")
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], CodecError> {
        let left = self.buf.len() - self.pos;
        if n > left {
            return err(format!(
                "truncated {what} at byte {}: needs {n} bytes, {left} left",
                self.pos
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], CodecError> {
        Ok(self.take(N, what)?.try_into().unwrap())
    }

    fn u32(&mut self, what: &str) -> Result<usize, CodecError> {
        Ok(u32::from_be_bytes(self.array(what)?) as usize)
    }

    fn value(&mut self, depth: usize) -> Result<Value, CodecError> {
        if depth > MAX_DEPTH {
            return err(format!("nesting deeper than {MAX_DEPTH}"));
        }
        let at = self.pos;
        let tag = self.array::<1>("tag")?[0];
        Ok(match tag {
            TAG_NULL => Value::Null,
            TAG_TRUE => Value::Bool(true),
            TAG_FALSE => Value::Bool(false),
            0x03 => Value::I8(i8::from_be_bytes(self.array("int8")?)),
            0x04 => Value::I16(i16::from_be_bytes(self.array("int16")?)),
            0x05 => Value::I32(i32::from_be_bytes(self.array("int32")?)),
            0x06 => Value::I64(i64::from_be_bytes(self.array("int64")?)),
            0x07 => Value::U8(u8::from_be_bytes(self.array("uint8")?)),
            0x08 => Value::U16(u16::from_be_bytes(self.array("uint16")?)),
            0x09 => Value::U32(u32::from_be_bytes(self.array("uint32")?)),
            0x0A => Value::U64(u64::from_be_bytes(self.array("uint64")?)),
            0x0B => Value::F32(f32::from_be_bytes(self.array("single")?)),
            0x0C => Value::F64(f64::from_be_bytes(self.array("double")?)),
            0x0D => Value::C32(Complex {
                re: f32::from_be_bytes(self.array("complex single")?),
                im: f32::from_be_bytes(self.array("complex single")?),
            }),
            0x0E => Value::C64(Complex {
                re: f64::from_be_bytes(self.array("complex double")?),
                im: f64::from_be_bytes(self.array("complex double")?),
            }),
            0x13..=0x1F => Value::Matrix(self.matrix(ElemKind::from_tag(tag & 0x0F).unwrap())?),
            TAG_STRING => {
                let n = self.u32("string length")?;
                let bytes = self.take(n, "string")?;
                match std::str::from_utf8(bytes) {
                    Ok(s) => Value::String(s.to_owned()),
                    Err(e) => return err(format!("string at byte {at} is not UTF-8: {e}")),
                }
            }
            TAG_LIST => {
                let n = self.u32("list length")?;
                // Each item takes at least one byte: cap the reservation by what is left.
                let mut items = Vec::with_capacity(n.min(self.buf.len() - self.pos));
                for _ in 0..n {
                    items.push(self.value(depth + 1)?);
                }
                Value::List(items)
            }
            TAG_MAP => {
                let n = self.u32("map size")?;
                let mut pairs = Vec::with_capacity(n.min((self.buf.len() - self.pos) / 2));
                for _ in 0..n {
                    let k = self.value(depth + 1)?;
                    let v = self.value(depth + 1)?;
                    pairs.push((k, v));
                }
                Value::Map(pairs)
            }
            other => return err(format!("unknown tag 0x{other:02X} at byte {at}")),
        })
    }

    fn skip(&mut self, depth: usize) -> Result<(), CodecError> {
        if depth > MAX_DEPTH {
            return err(format!("nesting deeper than {MAX_DEPTH}"));
        }
        let at = self.pos;
        let tag = self.array::<1>("tag")?[0];
        match tag {
            TAG_NULL | TAG_TRUE | TAG_FALSE => {}
            0x03..=0x0E => {
                self.take(ElemKind::from_tag(tag).unwrap().size(), "scalar")?;
            }
            0x13..=0x1F => {
                // Validate the shape and length without copying the elements.
                let kind = ElemKind::from_tag(tag & 0x0F).unwrap();
                let rank = self.array::<1>("matrix rank")?[0] as usize;
                let mut len = kind.size();
                for _ in 0..rank {
                    len = len.saturating_mul(self.u32("matrix dimension")?);
                }
                let elems = self.take(len, "matrix elements")?;
                if kind == ElemKind::Bool && elems.iter().any(|b| *b > 1) {
                    return err("logical matrix element is neither 0 nor 1");
                }
            }
            TAG_STRING => {
                let n = self.u32("string length")?;
                let bytes = self.take(n, "string")?;
                if let Err(e) = std::str::from_utf8(bytes) {
                    return err(format!("string at byte {at} is not UTF-8: {e}"));
                }
            }
            TAG_LIST => {
                for _ in 0..self.u32("list length")? {
                    self.skip(depth + 1)?;
                }
            }
            TAG_MAP => {
                for _ in 0..self.u32("map size")? {
                    self.skip(depth + 1)?;
                    self.skip(depth + 1)?;
                }
            }
            other => return err(format!("unknown tag 0x{other:02X} at byte {at}")),
        }
        Ok(())
    }

    fn matrix(&mut self, kind: ElemKind) -> Result<Matrix, CodecError> {
        let rank = self.array::<1>("matrix rank")?[0] as usize;
        let mut dims = Vec::with_capacity(rank);
        for _ in 0..rank {
            dims.push(self.u32("matrix dimension")?);
        }
        // The same rule as every constructor, so any shape a sender could
        // build (an empty one with huge other dimensions, say) decodes.
        let len = matrix_byte_len(kind, &dims).map_err(|e| CodecError(e.0))?;
        let len = Some(len)
            .filter(|n| *n <= self.buf.len() - self.pos)
            .ok_or_else(|| {
                CodecError(format!(
                    "truncated {} matrix of shape {dims:?}: {} bytes left",
                    kind.name(),
                    self.buf.len() - self.pos
                ))
            })?;
        let src = self.take(len, "matrix elements")?;
        // A recycled block when this thread has one (see `buffer`): large
        // matrices that arrive again and again land in warm memory.
        let mut data = crate::buffer::PooledBuf::with_len(len).into_vec();
        swap_copy(src, kind.swap_unit(), &mut data);
        if kind == ElemKind::Bool && data.iter().any(|b| *b > 1) {
            return err("logical matrix element is neither 0 nor 1");
        }
        Matrix::new(kind, dims, data).map_err(|e| CodecError(e.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt(v: Value) {
        let bytes = encode(&v).unwrap();
        assert_eq!(bytes.len(), encoded_len(&v));
        assert_eq!(decode(&bytes).unwrap(), v);
    }

    #[test]
    fn scalars_match_the_protocol_bytes() {
        assert_eq!(encode(&Value::Null).unwrap(), [0x00]);
        assert_eq!(encode(&Value::Bool(true)).unwrap(), [0x01]);
        assert_eq!(encode(&Value::Bool(false)).unwrap(), [0x02]);
        assert_eq!(encode(&Value::I16(-2)).unwrap(), [0x04, 0xFF, 0xFE]);
        assert_eq!(encode(&Value::U32(1)).unwrap(), [0x09, 0, 0, 0, 1]);
        assert_eq!(
            encode(&Value::F64(1.0)).unwrap(),
            [0x0C, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            encode(&Value::from("hé")).unwrap(),
            [0x20, 0, 0, 0, 3, b'h', 0xC3, 0xA9]
        );
    }

    #[test]
    fn every_scalar_round_trips() {
        for v in [
            Value::Null,
            Value::Bool(true),
            Value::Bool(false),
            Value::I8(i8::MIN),
            Value::I16(i16::MAX),
            Value::I32(-7),
            Value::I64(i64::MIN),
            Value::I64(i64::MAX),
            Value::U8(255),
            Value::U16(65535),
            Value::U32(u32::MAX),
            Value::U64(u64::MAX),
            Value::F32(1.5),
            Value::F64(-0.0),
            Value::F64(f64::INFINITY),
            Value::C32(Complex { re: 1.0, im: -2.0 }),
            Value::C64(Complex { re: 0.5, im: 0.0 }),
            Value::from(""),
            Value::from("😀 ünïcode"),
        ] {
            rt(v);
        }
        let nan = encode(&Value::F64(f64::from_bits(0x7FF8_0000_0000_0001))).unwrap();
        match decode(&nan).unwrap() {
            Value::F64(x) => assert_eq!(x.to_bits(), 0x7FF8_0000_0000_0001),
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn matrices_of_every_kind_and_rank_round_trip() {
        for kind in ElemKind::ALL {
            for dims in [
                vec![],
                vec![3],
                vec![2, 3],
                vec![2, 3, 4],
                vec![2, 1, 3, 2],
                vec![0, 3],
                vec![3, 0],
            ] {
                let n: usize = dims.iter().product();
                let data: Vec<u8> = (0..n * kind.size())
                    .map(|i| {
                        if kind == ElemKind::Bool {
                            (i % 2) as u8
                        } else {
                            i as u8
                        }
                    })
                    .collect();
                rt(Value::Matrix(Matrix::new(kind, dims, data).unwrap()));
            }
        }
    }

    /// The pieces, with the elements streamed, concatenated.
    fn streamed(v: &Value, large: usize, chunk: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = Vec::new();
        for p in encode_pieces(v, large).unwrap() {
            match p {
                Piece::Bytes(b) => out.extend_from_slice(&b),
                Piece::Elements(m) => stream_elements(m, chunk, &mut buf, |b| {
                    out.extend_from_slice(b);
                    Ok::<(), ()>(())
                })
                .unwrap(),
            }
        }
        out
    }

    #[test]
    fn streamed_encoding_is_the_encoding() {
        let col =
            Matrix::from_elems(vec![3, 5], &(0..15).map(f64::from).collect::<Vec<_>>()).unwrap();
        let row_data: Vec<i16> = (0..35).collect();
        // SAFETY: row_data outlives the matrices borrowing it.
        let row = unsafe {
            Matrix::borrowed_row_major(ElemKind::I16, vec![5, 7], row_data.as_ptr().cast(), 70)
        }
        .unwrap();
        let c_data: Vec<f32> = (0..24).map(|x| x as f32).collect();
        // SAFETY: as above.
        let row3 = unsafe {
            Matrix::borrowed_row_major(ElemKind::F32, vec![2, 3, 4], c_data.as_ptr().cast(), 96)
        }
        .unwrap();
        let v = Value::Map(vec![
            (Value::String("a".into()), Value::Matrix(col)),
            (
                Value::String("b".into()),
                Value::List(vec![
                    Value::Matrix(row),
                    Value::F64(2.5),
                    Value::Matrix(row3),
                ]),
            ),
        ]);
        let whole = encode(&v).unwrap();
        for (large, chunk) in [
            (0, 1),
            (0, 7),
            (0, 16),
            (0, 1 << 20),
            (40, 24),
            (1 << 20, 8),
        ] {
            assert_eq!(
                streamed(&v, large, chunk),
                whole,
                "large {large} chunk {chunk}"
            );
        }
    }

    #[test]
    fn matrix_elements_are_big_endian_column_major() {
        // 2x2 double [[1,2],[3,4]] column-major is 1,3,2,4.
        let m = Matrix::from_elems(vec![2, 2], &[1.0f64, 3.0, 2.0, 4.0]).unwrap();
        let b = encode(&Value::Matrix(m)).unwrap();
        assert_eq!(&b[..10], &[0x1C, 2, 0, 0, 0, 2, 0, 0, 0, 2]);
        assert_eq!(&b[10..18], &1.0f64.to_be_bytes());
        assert_eq!(&b[18..26], &3.0f64.to_be_bytes());
        let c = Matrix::from_elems(
            vec![1],
            &[Complex {
                re: 1.0f32,
                im: 2.0,
            }],
        )
        .unwrap();
        let b = encode(&Value::Matrix(c)).unwrap();
        assert_eq!(&b[6..], &[0x3F, 0x80, 0, 0, 0x40, 0, 0, 0]);
    }

    #[test]
    fn value_len_and_split_map_walk_without_decoding() {
        let m = Value::Map(vec![
            (
                Value::from("a"),
                Value::List(vec![Value::I64(1), Value::from("x")]),
            ),
            (Value::from("b"), Value::Null),
        ]);
        let bytes = encode(&m).unwrap();
        assert_eq!(value_len(&bytes).unwrap(), bytes.len());
        let pairs = split_map(&bytes).unwrap();
        assert_eq!(decode(pairs[0].0).unwrap(), Value::from("a"));
        assert_eq!(
            decode(pairs[0].1).unwrap(),
            Value::List(vec![Value::I64(1), Value::from("x")])
        );
        assert_eq!(decode(pairs[1].1).unwrap(), Value::Null);
        assert!(split_map(&bytes[..bytes.len() - 1]).is_err());
        assert!(split_map(&encode(&Value::I64(1)).unwrap()).is_err());
    }

    #[test]
    fn row_major_borrowed_matrices_encode_as_their_column_major_twin() {
        for kind in ElemKind::ALL {
            for dims in [
                vec![3usize, 4],
                vec![2, 3, 4],
                vec![1, 5],
                vec![130, 70],
                vec![0, 3],
            ] {
                let n: usize = dims.iter().product();
                let row_major: Vec<u8> = (0..n * kind.size())
                    .map(|i| {
                        if kind == ElemKind::Bool {
                            (i % 2) as u8
                        } else {
                            (i * 7) as u8
                        }
                    })
                    .collect();
                // The column-major twin, built element by element.
                let elem = kind.size();
                let mut col = vec![0u8; row_major.len()];
                let rank = dims.len();
                let mut idx = vec![0usize; rank];
                for s in 0..n {
                    let mut d = 0;
                    let mut stride = 1;
                    for k in 0..rank {
                        d += idx[k] * stride;
                        stride *= dims[k];
                    }
                    col[d * elem..(d + 1) * elem]
                        .copy_from_slice(&row_major[s * elem..(s + 1) * elem]);
                    for k in (0..rank).rev() {
                        idx[k] += 1;
                        if idx[k] < dims[k] {
                            break;
                        }
                        idx[k] = 0;
                    }
                }
                let twin = Matrix::new(kind, dims.clone(), col).unwrap();
                let borrowed = unsafe {
                    Matrix::borrowed_row_major(
                        kind,
                        dims.clone(),
                        row_major.as_ptr(),
                        row_major.len(),
                    )
                }
                .unwrap();
                let a = encode(&Value::Matrix(borrowed.clone())).unwrap();
                let b = encode(&Value::Matrix(twin.clone())).unwrap();
                assert_eq!(a, b, "{kind:?} {dims:?}");
                assert_eq!(
                    encode(&Value::Matrix(
                        unsafe {
                            Matrix::borrowed_row_major(
                                kind,
                                dims.clone(),
                                row_major.as_ptr(),
                                row_major.len(),
                            )
                        }
                        .unwrap()
                    ))
                    .unwrap(),
                    b
                );
                assert!(borrowed == twin);
            }
        }
    }

    #[test]
    fn nested_lists_and_maps_round_trip() {
        rt(Value::List(vec![
            Value::I64(1),
            Value::List(vec![Value::Null, Value::from("x")]),
            Value::Map(vec![
                (Value::from("a"), Value::F64(2.0)),
                (Value::from("b"), Value::Map(vec![])),
                (Value::I64(3), Value::List(vec![])),
            ]),
        ]));
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        for bad in [
            &[][..],
            &[0x06, 1, 2],
            &[0x20, 0, 0, 0, 9, b'a'],
            &[0x20, 0, 0, 0, 2, 0xFF, 0xFE],
            &[0x21, 0xFF, 0xFF, 0xFF, 0xFF],
            &[0x1C, 2, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
            &[0x1F, 1, 0, 0, 0, 1, 7],
            &[0x99],
            &[0x00, 0x00],
        ] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
        let deep: Vec<u8> = std::iter::repeat_n([0x21u8, 0, 0, 0, 1], 10_000)
            .flatten()
            .collect();
        assert!(decode(&deep).unwrap_err().0.contains("nesting"));
    }

    use proptest::prelude::*;

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i8>().prop_map(Value::I8),
            any::<i64>().prop_map(Value::I64),
            any::<u64>().prop_map(Value::U64),
            any::<u16>().prop_map(Value::U16),
            any::<f32>()
                .prop_filter("nan", |x| !x.is_nan())
                .prop_map(Value::F32),
            any::<f64>()
                .prop_filter("nan", |x| !x.is_nan())
                .prop_map(Value::F64),
            ".*".prop_map(Value::String),
            (prop::collection::vec(0usize..4, 0..4), any::<u8>()).prop_map(|(dims, seed)| {
                let n: usize = dims.iter().product();
                let vals: Vec<i32> = (0..n).map(|i| i as i32 * seed as i32).collect();
                Value::Matrix(Matrix::from_elems(dims, &vals).unwrap())
            }),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::List),
                prop::collection::vec((".*".prop_map(Value::String), inner), 0..8)
                    .prop_map(Value::Map),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_value_round_trips(v in arb_value()) {
            let bytes = encode(&v).unwrap();
            prop_assert_eq!(decode(&bytes).unwrap(), v);
        }

        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn mutated_encodings_never_panic(v in arb_value(), flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
            let mut bytes = encode(&v).unwrap();
            for (at, byte) in flips {
                let n = bytes.len();
                bytes[at % n] = byte;
            }
            let _ = decode(&bytes);
        }

        #[test]
        fn every_truncation_is_an_error(v in arb_value()) {
            let bytes = encode(&v).unwrap();
            for cut in 0..bytes.len() {
                prop_assert!(decode(&bytes[..cut]).is_err());
            }
        }
    }
}

/// A one-line description of the encoded value at the start of `bytes`
/// (`double 3×4`, `string(5)`, `map(2)` …) for monitors and logs; reads
/// only the head of the value and never fails (`?` for what it cannot
/// read).
pub fn summary(bytes: &[u8]) -> String {
    let count = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")))
    };
    let Some(&tag) = bytes.first() else {
        return "empty".into();
    };
    match tag {
        TAG_NULL => "null".into(),
        TAG_TRUE | TAG_FALSE => "logical".into(),
        TAG_STRING => count(1).map_or("?".into(), |n| format!("string({n})")),
        TAG_LIST => count(1).map_or("?".into(), |n| format!("list({n})")),
        TAG_MAP => count(1).map_or("?".into(), |n| format!("map({n})")),
        t if t & 0xF0 == TAG_MATRIX => {
            let (Some(kind), Some(&rank)) = (ElemKind::from_tag(t & 0x0F), bytes.get(1)) else {
                return "?".into();
            };
            let dims: Option<Vec<String>> = (0..usize::from(rank))
                .map(|i| count(2 + 4 * i).map(|d| d.to_string()))
                .collect();
            dims.map_or("?".into(), |d| format!("{} {}", kind.name(), d.join("×")))
        }
        t => ElemKind::from_tag(t).map_or("?".into(), |k| k.name().to_owned()),
    }
}

#[cfg(test)]
mod summary_tests {
    use super::*;

    #[test]
    fn summaries_name_the_type_and_shape() {
        let m = Matrix::from_elems(vec![3, 4], &[0.0f64; 12]).unwrap();
        let cases = [
            (Value::Null, "null"),
            (Value::Bool(true), "logical"),
            (Value::I64(1), "int64"),
            (Value::F64(1.0), "double"),
            (Value::from("hello"), "string(5)"),
            (Value::List(vec![Value::Null; 3]), "list(3)"),
            (Value::Map(vec![(Value::from("a"), Value::Null)]), "map(1)"),
            (Value::Matrix(m), "double 3×4"),
        ];
        for (v, want) in cases {
            assert_eq!(summary(&encode(&v).unwrap()), want);
        }
        assert_eq!(summary(&[]), "empty");
        assert_eq!(summary(&[TAG_STRING, 0]), "?");
        assert_eq!(summary(&[TAG_MATRIX | 12, 2, 0, 0, 0, 3]), "?");
    }
}
