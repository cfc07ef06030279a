//! dimeb, DiME2's binary value format (docs/protocol.md §4): big-endian,
//! one tag byte per value. Decoding never trusts a length before checking it
//! against the bytes that are actually there.
//!
//! Matrices have two encodings. DiME2's classic one (tags `0x13`–`0x1F`) is
//! column-major and big-endian, and every client reads it. The `dimeb_layout`
//! extension (tags `0x43`–`0x4F`, docs/protocol-extensions.md) carries a
//! matrix in the order and byte order it is stored in, elements aligned, so
//! neither side transposes or swaps; only peers that negotiated it are sent
//! it (the broker converts for the others: [`to_classic`]). Decoders here
//! read both.

use crate::buffer::PooledBuf;
use crate::layout::{self, Layout};
use crate::value::{Complex, ElemKind, Keepalive, Matrix, Value, matrix_byte_len};
use crate::wire::MAX_FIELD_LEN;
use std::fmt;
use std::sync::Arc;

const TAG_NULL: u8 = 0x00;
const TAG_TRUE: u8 = 0x01;
const TAG_FALSE: u8 = 0x02;
const TAG_MATRIX: u8 = 0x10;
/// A matrix in the `dimeb_layout` encoding: `0x40 | class`.
const TAG_LAYOUT_MATRIX: u8 = 0x40;
const TAG_STRING: u8 = 0x20;
const TAG_LIST: u8 = 0x21;
const TAG_MAP: u8 = 0x22;

/// Layout flags byte: elements are row-major (last index fastest).
const FLAG_ROW_MAJOR: u8 = 0x01;
/// Layout flags byte: elements are little-endian.
const FLAG_LITTLE_ENDIAN: u8 = 0x02;

/// True on little-endian hosts, where classic (big-endian) elements must
/// be swapped.
const NATIVE_LE: bool = cfg!(target_endian = "little");

/// Received matrices at least this large point into the payload they
/// arrived in instead of being copied; smaller ones get a buffer of their
/// own, so a small value does not keep a large payload alive.
pub const SHARE_MIN: usize = 64 << 10;

/// How an encoder writes matrices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatrixEncoding {
    /// DiME2's own: column-major, big-endian. Every client reads it.
    Classic,
    /// The `dimeb_layout` extension: each matrix in the order it is stored
    /// and in this machine's byte order, elements aligned. Only for peers
    /// that negotiated it.
    Native,
}

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

/// Encodes `value` into a fresh buffer, classic (DiME2) encoding.
///
/// Fails, before allocating, when the encoding would not fit one frame's
/// u32 payload length, and when the buffer cannot be allocated (the size
/// comes from a caller's value, so running out of memory is an error to
/// report, not a reason to abort the process).
pub fn encode(value: &Value) -> Result<Vec<u8>, CodecError> {
    encode_with(value, MatrixEncoding::Classic)
}

/// As [`encode`], writing matrices as `enc` says.
pub fn encode_with(value: &Value, enc: MatrixEncoding) -> Result<Vec<u8>, CodecError> {
    let len = checked_encoded_len_with(value, enc)?;
    let mut out = Vec::new();
    out.try_reserve_exact(len).map_err(|e| {
        CodecError(format!(
            "cannot allocate {len} bytes to encode a value: {e}"
        ))
    })?;
    encode_into_with(value, &mut out, enc)?;
    Ok(out)
}

/// [`encoded_len`], or an error if that many bytes cannot be one frame's
/// payload (its length field is a u32).
pub fn checked_encoded_len(value: &Value) -> Result<usize, CodecError> {
    checked_encoded_len_with(value, MatrixEncoding::Classic)
}

/// [`encoded_len_with`], or an error if that many bytes cannot be one
/// frame's payload.
pub fn checked_encoded_len_with(value: &Value, enc: MatrixEncoding) -> Result<usize, CodecError> {
    let len = encoded_len_with(value, enc);
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
    encoded_len_with(value, MatrixEncoding::Classic)
}

/// Exact number of bytes [`encode_into_with`] appends to an empty buffer.
/// (The native encoding pads matrices to an alignment counted from the
/// buffer's start, so its length depends on where a value begins.)
pub fn encoded_len_with(value: &Value, enc: MatrixEncoding) -> usize {
    end_of(value, enc, 0)
}

/// The offset just past `value` encoded at offset `at` (saturating).
fn end_of(value: &Value, enc: MatrixEncoding, at: usize) -> usize {
    let fixed = |n: usize| at.saturating_add(n);
    match value {
        Value::Null | Value::Bool(_) => fixed(1),
        Value::I8(_) | Value::U8(_) => fixed(2),
        Value::I16(_) | Value::U16(_) => fixed(3),
        Value::I32(_) | Value::U32(_) | Value::F32(_) => fixed(5),
        Value::I64(_) | Value::U64(_) | Value::F64(_) | Value::C32(_) => fixed(9),
        Value::C64(_) => fixed(17),
        Value::Matrix(m) => {
            let data = m.stored_bytes().len();
            match enc {
                MatrixEncoding::Classic => fixed(2 + 4 * m.dims().len()).saturating_add(data),
                MatrixEncoding::Native => {
                    // tag, flags, rank, dims, pad count: then the padding.
                    let head = fixed(4 + 4 * m.dims().len());
                    head.saturating_add(pad_for(head, data, m.kind()))
                        .saturating_add(data)
                }
            }
        }
        Value::String(s) => fixed(5).saturating_add(s.len()),
        // Borrowed matrices take no memory of their own, so a list of many
        // views of one large buffer could add up past usize.
        Value::List(items) => items.iter().fold(fixed(5), |acc, v| end_of(v, enc, acc)),
        Value::Map(pairs) => pairs
            .iter()
            .fold(fixed(5), |acc, (k, v)| end_of(v, enc, end_of(k, enc, acc))),
    }
}

/// Zero bytes that put a native matrix's elements, starting at offset
/// `at`, on their alignment: 64 (a cache line) for large matrices, the
/// element size for small ones, so many small ones waste little.
fn pad_for(at: usize, data_len: usize, kind: ElemKind) -> usize {
    let align = if data_len >= 1024 { 64 } else { kind.size() };
    (align - at % align) % align
}

/// True if `value` is or contains a matrix: only those encode differently
/// with [`MatrixEncoding::Native`].
pub fn has_matrix(value: &Value) -> bool {
    match value {
        Value::Matrix(_) => true,
        Value::List(items) => items.iter().any(has_matrix),
        Value::Map(pairs) => pairs.iter().any(|(k, v)| has_matrix(k) || has_matrix(v)),
        _ => false,
    }
}

/// Where an encoder writes: a growable vector, or a slice of exactly the
/// right length (a shared-memory segment).
pub trait Out {
    /// Bytes written so far.
    fn pos(&self) -> usize;
    /// Appends `bytes`.
    fn put(&mut self, bytes: &[u8]);
    /// Appends one byte.
    fn put_byte(&mut self, b: u8) {
        self.put(&[b]);
    }
    /// Appends `n` zero bytes.
    fn zeros(&mut self, n: usize);
    /// Appends `n` bytes written by `fill` (which must write all of them)
    /// without zeroing them first: for large matrices the zeroing would
    /// be a whole extra pass over memory.
    fn append_with(&mut self, n: usize, fill: impl FnOnce(*mut u8)) -> Result<(), CodecError>;
    /// Appends a copy of `src` (a matrix's elements, as they are stored):
    /// an `Out` that can copy faster than byte by byte into memory it
    /// hands out (a new shared-memory segment) says so here.
    fn append_copy(&mut self, src: &[u8]) -> Result<(), CodecError> {
        self.append_with(src.len(), |dst| {
            // SAFETY: `dst` has room for `src.len()` bytes (append_with).
            unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) }
        })
    }
}

impl Out for Vec<u8> {
    fn pos(&self) -> usize {
        self.len()
    }
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
    fn put_byte(&mut self, b: u8) {
        self.push(b);
    }
    fn zeros(&mut self, n: usize) {
        self.resize(self.len() + n, 0);
    }
    fn append_with(&mut self, n: usize, fill: impl FnOnce(*mut u8)) -> Result<(), CodecError> {
        self.try_reserve(n).map_err(|e| {
            CodecError(format!("cannot allocate {n} bytes to encode a matrix: {e}"))
        })?;
        let start = self.len();
        // SAFETY: the reservation above makes room for `n` more bytes;
        // `fill` writes every one of them before the length covers them.
        unsafe {
            fill(self.as_mut_ptr().add(start));
            self.set_len(start + n);
        }
        Ok(())
    }
}

/// A fixed slice being filled; writing past its end only sets `overflow`
/// (the caller sized it with `encoded_len_with`, so that is a bug to report,
/// never memory to corrupt).
struct SliceOut<'a> {
    buf: &'a mut [u8],
    pos: usize,
    overflow: bool,
}

impl SliceOut<'_> {
    /// Room for `n` more bytes, or the overflow noted.
    fn room(&mut self, n: usize) -> Option<&mut [u8]> {
        match self.pos.checked_add(n).filter(|end| *end <= self.buf.len()) {
            Some(end) => {
                let r = &mut self.buf[self.pos..end];
                self.pos = end;
                Some(r)
            }
            None => {
                self.overflow = true;
                None
            }
        }
    }
}

impl Out for SliceOut<'_> {
    fn pos(&self) -> usize {
        self.pos
    }
    fn put(&mut self, bytes: &[u8]) {
        if let Some(r) = self.room(bytes.len()) {
            r.copy_from_slice(bytes);
        }
    }
    fn zeros(&mut self, n: usize) {
        if let Some(r) = self.room(n) {
            r.fill(0);
        }
    }
    fn append_with(&mut self, n: usize, fill: impl FnOnce(*mut u8)) -> Result<(), CodecError> {
        if let Some(r) = self.room(n) {
            fill(r.as_mut_ptr());
        }
        Ok(())
    }
}

fn put_count<O: Out>(out: &mut O, n: usize, what: &str) -> Result<(), CodecError> {
    let n =
        u32::try_from(n).map_err(|_| CodecError(format!("{what} of {n} exceeds the u32 limit")))?;
    out.put(&n.to_be_bytes());
    Ok(())
}

/// Appends the classic encoding of `value` to `out`.
pub fn encode_into(value: &Value, out: &mut Vec<u8>) -> Result<(), CodecError> {
    encode_into_with(value, out, MatrixEncoding::Classic)
}

/// Appends the encoding of `value` to `out`, matrices as `enc` says. With
/// [`MatrixEncoding::Native`], alignment is counted from the start of
/// `out`, which should therefore be the start of the payload.
pub fn encode_into_with(
    value: &Value,
    out: &mut Vec<u8>,
    enc: MatrixEncoding,
) -> Result<(), CodecError> {
    write_value(value, out, enc)
}

/// Appends the encoding of `value` to any [`Out`], matrices as `enc` says
/// (alignment counted from `out.pos()`, as with [`encode_into_with`]).
pub fn encode_to_out<O: Out>(
    value: &Value,
    out: &mut O,
    enc: MatrixEncoding,
) -> Result<(), CodecError> {
    write_value(value, out, enc)
}

/// Encodes `value` into `dst`, which must be exactly
/// [`encoded_len_with`]`(value, enc)` bytes long (a shared-memory segment,
/// say: alignment is counted from its start). Returns the bytes written.
pub fn encode_to_slice(
    value: &Value,
    dst: &mut [u8],
    enc: MatrixEncoding,
) -> Result<usize, CodecError> {
    let mut out = SliceOut {
        buf: dst,
        pos: 0,
        overflow: false,
    };
    write_value(value, &mut out, enc)?;
    if out.overflow || out.pos != out.buf.len() {
        return err(format!(
            "the value does not encode to the {} bytes given",
            out.buf.len()
        ));
    }
    Ok(out.pos)
}

fn write_value<O: Out>(value: &Value, out: &mut O, enc: MatrixEncoding) -> Result<(), CodecError> {
    match value {
        Value::Null => out.put_byte(TAG_NULL),
        Value::Bool(true) => out.put_byte(TAG_TRUE),
        Value::Bool(false) => out.put_byte(TAG_FALSE),
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
            out.put_byte(ElemKind::C32 as u8);
            out.put(&c.re.to_be_bytes());
            out.put(&c.im.to_be_bytes());
        }
        Value::C64(c) => {
            out.put_byte(ElemKind::C64 as u8);
            out.put(&c.re.to_be_bytes());
            out.put(&c.im.to_be_bytes());
        }
        Value::Matrix(m) => match enc {
            MatrixEncoding::Classic => encode_matrix(m, out)?,
            MatrixEncoding::Native => encode_matrix_native(m, out)?,
        },
        Value::String(s) => {
            out.put_byte(TAG_STRING);
            put_count(out, s.len(), "string length")?;
            out.put(s.as_bytes());
        }
        Value::List(items) => {
            out.put_byte(TAG_LIST);
            put_count(out, items.len(), "list length")?;
            for item in items {
                write_value(item, out, enc)?;
            }
        }
        Value::Map(pairs) => {
            out.put_byte(TAG_MAP);
            put_count(out, pairs.len(), "map size")?;
            for (k, v) in pairs {
                write_value(k, out, enc)?;
                write_value(v, out, enc)?;
            }
        }
    }
    Ok(())
}

fn scalar<O: Out>(out: &mut O, kind: ElemKind, be: &[u8]) {
    out.put_byte(kind as u8);
    out.put(be);
}

fn put_dims<O: Out>(m: &Matrix, out: &mut O) -> Result<(), CodecError> {
    let rank =
        u8::try_from(m.dims().len()).map_err(|_| CodecError("matrix rank exceeds 255".into()))?;
    out.put_byte(rank);
    for d in m.dims() {
        put_count(out, *d, "matrix dimension")?;
    }
    Ok(())
}

/// Appends a matrix in the classic encoding: tag, rank, dims, then the
/// elements column-major and big-endian, in one pass over the caller's
/// buffer (transposing a row-major one while it byte-swaps).
pub fn encode_matrix<O: Out>(m: &Matrix, out: &mut O) -> Result<(), CodecError> {
    out.put_byte(TAG_MATRIX | m.kind() as u8);
    put_dims(m, out)?;
    let src = m.stored_bytes();
    let (kind, dims) = (m.kind(), m.dims());
    out.append_with(src.len(), |dst| match m.layout() {
        // SAFETY: `dst` has room for `src.len()` bytes (append_with).
        Layout::ColumnMajor => unsafe { layout::copy_raw(src, kind, NATIVE_LE, dst) },
        // SAFETY: as above; `src` is the byte length of `dims`.
        Layout::RowMajor => unsafe { layout::to_column_major_raw(src, dims, kind, NATIVE_LE, dst) },
    })
}

/// A piece of a value's encoding, for sending a value without building its
/// encoding whole (see [`encode_pieces`]).
pub enum Piece<'a> {
    /// Encoded bytes.
    Bytes(Vec<u8>),
    /// The elements of a large matrix, still to be encoded with
    /// [`stream_elements`] (its tag, rank and dims are in the bytes before).
    Elements(&'a Matrix),
    /// The elements of a large matrix in the `dimeb_layout` encoding:
    /// written as they are stored, straight from the caller's memory.
    Stored(&'a [u8]),
}

/// The classic encoding of `value` as pieces: everything is encoded except
/// the elements of matrices larger than `large` bytes, which are left for
/// [`stream_elements`]. Every check of [`encode_into`] happens here, so a
/// value that passes can be streamed out without failing half way.
pub fn encode_pieces(value: &Value, large: usize) -> Result<Vec<Piece<'_>>, CodecError> {
    encode_pieces_with(value, large, MatrixEncoding::Classic)
}

/// As [`encode_pieces`], matrices as `enc` says: in the native encoding a
/// large matrix's elements are a [`Piece::Stored`] slice of its own memory
/// (nothing to convert, nothing copied), aligned as [`encode_with`] aligns
/// them, so the pieces together are exactly its bytes.
pub fn encode_pieces_with(
    value: &Value,
    large: usize,
    enc: MatrixEncoding,
) -> Result<Vec<Piece<'_>>, CodecError> {
    /// The bytes being gathered, positioned after the pieces already made.
    struct Cur {
        base: usize,
        bytes: Vec<u8>,
    }
    impl Out for Cur {
        fn pos(&self) -> usize {
            self.base + self.bytes.len()
        }
        fn put(&mut self, b: &[u8]) {
            self.bytes.extend_from_slice(b);
        }
        fn zeros(&mut self, n: usize) {
            self.bytes.resize(self.bytes.len() + n, 0);
        }
        fn append_with(&mut self, n: usize, fill: impl FnOnce(*mut u8)) -> Result<(), CodecError> {
            self.bytes.append_with(n, fill)
        }
    }
    fn walk<'a>(
        v: &'a Value,
        large: usize,
        enc: MatrixEncoding,
        cur: &mut Cur,
        out: &mut Vec<Piece<'a>>,
    ) -> Result<(), CodecError> {
        match v {
            Value::Matrix(m) if m.stored_bytes().len() > large => {
                let elems = m.stored_bytes();
                let piece = match enc {
                    MatrixEncoding::Classic => {
                        cur.put_byte(TAG_MATRIX | m.kind() as u8);
                        put_dims(m, cur)?;
                        Piece::Elements(m)
                    }
                    MatrixEncoding::Native => {
                        native_matrix_head(m, cur)?;
                        Piece::Stored(elems)
                    }
                };
                cur.base += cur.bytes.len() + elems.len();
                out.push(Piece::Bytes(std::mem::take(&mut cur.bytes)));
                out.push(piece);
            }
            Value::List(items) => {
                cur.put_byte(TAG_LIST);
                put_count(cur, items.len(), "list length")?;
                for item in items {
                    walk(item, large, enc, cur, out)?;
                }
            }
            Value::Map(pairs) => {
                cur.put_byte(TAG_MAP);
                put_count(cur, pairs.len(), "map size")?;
                for (k, item) in pairs {
                    walk(k, large, enc, cur, out)?;
                    walk(item, large, enc, cur, out)?;
                }
            }
            other => write_value(other, cur, enc)?,
        }
        Ok(())
    }
    let mut cur = Cur {
        base: 0,
        bytes: Vec::new(),
    };
    let mut out = Vec::new();
    walk(value, large, enc, &mut cur, &mut out)?;
    if !cur.bytes.is_empty() {
        out.push(Piece::Bytes(cur.bytes));
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
    let (src, size, unit) = (m.stored_bytes(), m.kind().size(), m.kind().swap_unit());
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
    layout::to_column_major(src, dims, m.kind(), NATIVE_LE, buf);
    for piece in buf.chunks(chunk) {
        emit(piece)?;
    }
    Ok(())
}

/// Columns `jb..je` of a row-major `rows` x `cols` matrix, column-major and
/// big-endian, into `out` (exactly `rows * (je - jb)` words).
fn transpose_block_be<T: BeWord>(
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
                (d.add(((j - jb) * rows + i) * w) as *mut T).write_unaligned(v.big_endian());
            }
        }
    }
}

/// A machine word that can be written big-endian.
trait BeWord: Copy {
    fn big_endian(self) -> Self;
}

macro_rules! be_word {
    ($($t:ty),*) => {$(
        impl BeWord for $t {
            fn big_endian(self) -> Self {
                <$t>::to_be(self)
            }
        }
    )*};
}
be_word!(u8, u16, u32, u64);

/// Appends a matrix in the `dimeb_layout` encoding: tag `0x40 | class`,
/// flags (row-major, little-endian), rank, dims, a pad count and that
/// many zero bytes, then the elements exactly as stored (one copy).
fn encode_matrix_native<O: Out>(m: &Matrix, out: &mut O) -> Result<(), CodecError> {
    native_matrix_head(m, out)?;
    out.append_copy(m.stored_bytes())
}

/// Appends what precedes a native matrix's elements: tag, flags, rank,
/// dims, pad count and padding.
fn native_matrix_head<O: Out>(m: &Matrix, out: &mut O) -> Result<(), CodecError> {
    out.put_byte(TAG_LAYOUT_MATRIX | m.kind() as u8);
    let mut flags = 0;
    if m.layout() == Layout::RowMajor {
        flags |= FLAG_ROW_MAJOR;
    }
    if NATIVE_LE {
        flags |= FLAG_LITTLE_ENDIAN;
    }
    out.put_byte(flags);
    put_dims(m, out)?;
    let pad = pad_for(out.pos() + 1, m.stored_bytes().len(), m.kind());
    out.put_byte(pad as u8);
    out.zeros(pad);
    Ok(())
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

/// Rewrites a payload so that every matrix is in the classic encoding
/// (column-major, big-endian), for a recipient that did not negotiate
/// `dimeb_layout`: one transposition per row-major matrix, everything else
/// copied as it is. The payload is checked as it is walked (a malformed
/// one is an error, never a panic).
pub fn to_classic(bytes: &[u8]) -> Result<PooledBuf, CodecError> {
    // The classic form is never longer: it drops each matrix's flags,
    // pad count and padding.
    let mut out = PooledBuf::try_with_capacity(bytes.len()).map_err(|e| {
        CodecError(format!(
            "cannot allocate {} bytes to convert a value: {e}",
            bytes.len()
        ))
    })?;
    let mut r = Reader::new(bytes);
    r.convert(0, &mut out)?;
    r.finish("value")?;
    Ok(out)
}

/// True if `bytes` (one encoded value, already checked) holds a matrix in
/// the `dimeb_layout` encoding, which only peers that negotiated it read.
pub fn uses_layout(bytes: &[u8]) -> Result<bool, CodecError> {
    let mut r = Reader::new(bytes);
    r.skip(0)?;
    r.finish("value")?;
    Ok(r.saw_layout)
}

/// Decodes one value that must fill `bytes` exactly. Matrices get
/// buffers of their own.
pub fn decode(bytes: &[u8]) -> Result<Value, CodecError> {
    let mut r = Reader::new(bytes);
    let v = r.value(0)?;
    r.finish("value")?;
    Ok(v)
}

/// Decodes one value filling the buffer `owner` holds; large matrices that
/// need no conversion (the `dimeb_layout` encoding, from a machine of the
/// same byte order) point into that buffer instead of being copied, and
/// keep it alive. A received payload or a shared-memory mapping.
pub fn decode_in<O: AsRef<[u8]> + Send + Sync + 'static>(
    owner: Arc<O>,
) -> Result<Value, CodecError> {
    let keep: Keepalive = owner.clone();
    let bytes: &[u8] = (*owner).as_ref();
    let mut r = Reader::new(bytes);
    r.share = Some(&keep);
    let v = r.value(0)?;
    r.finish("value")?;
    Ok(v)
}

/// Length of the one encoded value at the start of `bytes`, checked but
/// not decoded (the server uses it to split maps without copying values).
pub fn value_len(bytes: &[u8]) -> Result<usize, CodecError> {
    let mut r = Reader::new(bytes);
    r.skip(0)?;
    Ok(r.pos)
}

/// One encoded (key, value) pair of a map.
pub type MapEntry<'a> = (&'a [u8], &'a [u8]);

/// Splits an encoded map into (key, value) byte slices, in order.
pub fn split_map(bytes: &[u8]) -> Result<Vec<MapEntry<'_>>, CodecError> {
    let mut r = Reader::new(bytes);
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
    /// The owner of `buf` when large matrices may point into it.
    share: Option<&'a Keepalive>,
    /// Set by `skip` when it passes a `dimeb_layout` matrix.
    saw_layout: bool,
}

/// A matrix's header, read but not its elements.
struct MatrixHead {
    kind: ElemKind,
    dims: Vec<usize>,
    layout: Layout,
    /// Elements in the other byte order than this machine's.
    swap: bool,
    /// Byte length of the elements.
    len: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader {
            buf,
            pos: 0,
            share: None,
            saw_layout: false,
        }
    }

    /// Fails if bytes are left after the `what` just read.
    fn finish(&self, what: &str) -> Result<(), CodecError> {
        if self.pos != self.buf.len() {
            return err(format!(
                "{} trailing bytes after the {what}",
                self.buf.len() - self.pos
            ));
        }
        Ok(())
    }

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
            0x13..=0x1F | 0x43..=0x4F => Value::Matrix(self.matrix(tag)?),
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
            0x13..=0x1F | 0x43..=0x4F => {
                // Validate the shape and length without copying the elements.
                let head = self.matrix_head(tag)?;
                let elems = self.take(head.len, "matrix elements")?;
                check_logical(head.kind, elems)?;
                self.saw_layout |= tag & 0xF0 == TAG_LAYOUT_MATRIX;
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

    /// Reads a matrix header (tag already read): classic or layout, shape
    /// checked, and the elements' byte length checked against what is left.
    fn matrix_head(&mut self, tag: u8) -> Result<MatrixHead, CodecError> {
        let kind = ElemKind::from_tag(tag & 0x0F)
            .filter(|_| tag & 0x0F >= 0x03)
            .ok_or_else(|| CodecError(format!("unknown tag 0x{tag:02X}")))?;
        let (layout, swap) = if tag & 0xF0 == TAG_LAYOUT_MATRIX {
            let flags = self.array::<1>("matrix flags")?[0];
            if flags & !(FLAG_ROW_MAJOR | FLAG_LITTLE_ENDIAN) != 0 {
                return err(format!("unknown matrix flags 0x{flags:02X}"));
            }
            let layout = if flags & FLAG_ROW_MAJOR != 0 {
                Layout::RowMajor
            } else {
                Layout::ColumnMajor
            };
            (layout, (flags & FLAG_LITTLE_ENDIAN != 0) != NATIVE_LE)
        } else {
            (Layout::ColumnMajor, NATIVE_LE)
        };
        let rank = self.array::<1>("matrix rank")?[0] as usize;
        let mut dims = Vec::with_capacity(rank);
        for _ in 0..rank {
            dims.push(self.u32("matrix dimension")?);
        }
        if tag & 0xF0 == TAG_LAYOUT_MATRIX {
            let pad = self.array::<1>("matrix padding")?[0] as usize;
            self.take(pad, "matrix padding")?;
        }
        // The same rule as every constructor, so any shape a sender could
        // build (an empty one with huge other dimensions, say) decodes.
        let len = matrix_byte_len(kind, &dims).map_err(|e| CodecError(e.0))?;
        if len > self.buf.len() - self.pos {
            return err(format!(
                "truncated {} matrix of shape {dims:?}: {} bytes left",
                kind.name(),
                self.buf.len() - self.pos
            ));
        }
        Ok(MatrixHead {
            kind,
            dims,
            layout,
            swap,
            len,
        })
    }

    fn matrix(&mut self, tag: u8) -> Result<Matrix, CodecError> {
        let h = self.matrix_head(tag)?;
        let src = self.take(h.len, "matrix elements")?;
        check_logical(h.kind, src)?;
        let fail = |e: crate::value::ShapeError| CodecError(e.0);
        // A view into the payload when nothing needs converting and the
        // elements sit on their alignment (our encoder pads them there).
        if let Some(owner) = self.share.filter(|_| {
            !h.swap && h.len >= SHARE_MIN && (src.as_ptr() as usize) % h.kind.swap_unit() == 0
        }) {
            // SAFETY: `src` lies inside the buffer `owner` keeps alive and
            // unchanged (decode_in), and each matrix is a distinct range.
            return unsafe {
                Matrix::shared(h.kind, h.dims, owner.clone(), src.as_ptr(), h.len, h.layout)
            }
            .map_err(fail);
        }
        if h.len >= SHARE_MIN {
            // A copy into a recycled buffer: its pages are already mapped.
            // The matrix may live long: only a block of about its size, so
            // a small matrix never pins a large one.
            let mut buf = PooledBuf::try_with_capacity_near(h.len).map_err(|e| {
                CodecError(format!("cannot allocate {} bytes for a matrix: {e}", h.len))
            })?;
            // SAFETY: the buffer has room for `h.len` bytes, all written
            // before the length is set.
            unsafe {
                layout::copy_raw(src, h.kind, h.swap, buf.as_mut_ptr());
                buf.set_len(h.len);
            }
            let buf = Arc::new(buf);
            let ptr = buf.as_ptr();
            // SAFETY: the matrix is the only user of its own buffer.
            return unsafe { Matrix::shared(h.kind, h.dims, buf, ptr, h.len, h.layout) }
                .map_err(fail);
        }
        let mut data = Vec::with_capacity(h.len);
        // SAFETY: as above, for a plain vector.
        unsafe {
            layout::copy_raw(src, h.kind, h.swap, data.as_mut_ptr());
            data.set_len(h.len);
        }
        Matrix::with_layout(h.kind, h.dims, data, h.layout).map_err(fail)
    }

    /// Copies one value to `out`, rewriting every `dimeb_layout` matrix in
    /// the classic encoding (see [`to_classic`]).
    fn convert(&mut self, depth: usize, out: &mut Vec<u8>) -> Result<(), CodecError> {
        if depth > MAX_DEPTH {
            return err(format!("nesting deeper than {MAX_DEPTH}"));
        }
        let at = self.pos;
        let tag = self.array::<1>("tag")?[0];
        match tag {
            0x43..=0x4F => {
                let h = self.matrix_head(tag)?;
                let src = self.take(h.len, "matrix elements")?;
                check_logical(h.kind, src)?;
                out.push(TAG_MATRIX | h.kind as u8);
                out.push(h.dims.len() as u8);
                for d in &h.dims {
                    out.extend_from_slice(&(*d as u32).to_be_bytes());
                }
                // Classic elements are big-endian: swap unless the sender's
                // already are.
                let swap = h.swap != NATIVE_LE;
                out.append_with(h.len, |dst| match h.layout {
                    // SAFETY: room for `h.len` bytes (append_with).
                    Layout::ColumnMajor => unsafe { layout::copy_raw(src, h.kind, swap, dst) },
                    // SAFETY: as above; `src` is the byte length of `dims`.
                    Layout::RowMajor => unsafe {
                        layout::to_column_major_raw(src, &h.dims, h.kind, swap, dst)
                    },
                })?;
            }
            TAG_LIST | TAG_MAP => {
                let n = self.u32("count")?;
                out.extend_from_slice(&self.buf[at..self.pos]);
                let per = if tag == TAG_MAP { 2 } else { 1 };
                for _ in 0..n {
                    for _ in 0..per {
                        self.convert(depth + 1, out)?;
                    }
                }
            }
            _ => {
                self.pos = at;
                self.skip(depth)?;
                out.extend_from_slice(&self.buf[at..self.pos]);
            }
        }
        Ok(())
    }
}

/// Fails unless every element of a logical matrix is 0 or 1.
fn check_logical(kind: ElemKind, elems: &[u8]) -> Result<(), CodecError> {
    if kind == ElemKind::Bool && elems.iter().any(|b| *b > 1) {
        return err("logical matrix element is neither 0 nor 1");
    }
    Ok(())
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
        streamed_with(v, large, chunk, MatrixEncoding::Classic)
    }

    fn streamed_with(v: &Value, large: usize, chunk: usize, enc: MatrixEncoding) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = Vec::new();
        for p in encode_pieces_with(v, large, enc).unwrap() {
            match p {
                Piece::Bytes(b) => out.extend_from_slice(&b),
                Piece::Elements(m) => stream_elements(m, chunk, &mut buf, |b| {
                    out.extend_from_slice(b);
                    Ok::<(), ()>(())
                })
                .unwrap(),
                Piece::Stored(s) => out.extend_from_slice(s),
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
            // In the native encoding too, padding included.
            assert_eq!(
                streamed_with(&v, large, chunk, MatrixEncoding::Native),
                encode_with(&v, MatrixEncoding::Native).unwrap(),
                "native, large {large}"
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

    /// Row-major test data for `kind` and `dims`, valid for logicals.
    fn sample(kind: ElemKind, dims: &[usize], seed: usize) -> Vec<u8> {
        let n: usize = dims.iter().product::<usize>() * kind.size();
        (0..n)
            .map(|i| {
                if kind == ElemKind::Bool {
                    ((i + seed) % 2) as u8
                } else {
                    (i * 13 + seed) as u8
                }
            })
            .collect()
    }

    const SHAPES: [&[usize]; 8] = [
        &[],
        &[5],
        &[3, 4],
        &[1, 6],
        &[2, 3, 4],
        &[130, 70],
        &[0, 3],
        &[300, 260],
    ];

    #[test]
    fn native_matrices_round_trip_in_their_own_layout() {
        for kind in ElemKind::ALL {
            for dims in SHAPES {
                for layout in [Layout::ColumnMajor, Layout::RowMajor] {
                    let m = Matrix::with_layout(kind, dims.to_vec(), sample(kind, dims, 1), layout)
                        .unwrap();
                    let v = Value::List(vec![Value::from("x"), Value::Matrix(m)]);
                    let bytes = encode_with(&v, MatrixEncoding::Native).unwrap();
                    assert_eq!(bytes.len(), encoded_len_with(&v, MatrixEncoding::Native));
                    let back = decode(&bytes).unwrap();
                    assert_eq!(back, v, "{kind:?} {dims:?} {layout:?}");
                    let Value::List(items) = &back else { panic!() };
                    let Value::Matrix(got) = &items[1] else {
                        panic!()
                    };
                    // Sent as stored: nobody transposed it.
                    assert_eq!(got.layout(), layout.normalized(dims));
                    let Value::List(orig) = &v else { panic!() };
                    let Value::Matrix(sent) = &orig[1] else {
                        panic!()
                    };
                    assert_eq!(got.stored_bytes(), sent.stored_bytes());
                    // The broker's conversion gives exactly the classic encoding.
                    assert_eq!(
                        to_classic(&bytes).unwrap().to_vec(),
                        encode(&v).unwrap(),
                        "{kind:?} {dims:?} {layout:?}"
                    );
                    assert!(uses_layout(&bytes).unwrap());
                    assert!(!uses_layout(&encode(&v).unwrap()).unwrap());
                }
            }
        }
    }

    #[test]
    fn native_matrix_bytes_follow_the_extension() {
        // 2x3 int16 row-major [[1,2,3],[4,5,6]], little-endian, at offset 0.
        let m = Matrix::with_layout(
            ElemKind::I16,
            vec![2, 3],
            [1i16, 2, 3, 4, 5, 6]
                .iter()
                .flat_map(|x| x.to_ne_bytes())
                .collect(),
            Layout::RowMajor,
        )
        .unwrap();
        let b = encode_with(&Value::Matrix(m), MatrixEncoding::Native).unwrap();
        let le = if NATIVE_LE { FLAG_LITTLE_ENDIAN } else { 0 };
        // tag, flags, rank, dims (11 bytes), pad count: the elements start
        // at 12, already on the 2-byte element size, so no padding.
        assert_eq!(
            &b[..12],
            &[0x44, FLAG_ROW_MAJOR | le, 2, 0, 0, 0, 2, 0, 0, 0, 3, 0]
        );
        assert_eq!(b.len(), 12 + 12);
        assert_eq!(&b[12..14], &1i16.to_ne_bytes());
        assert_eq!(&b[14..16], &2i16.to_ne_bytes());
        // An 8-byte class there needs 4 pad bytes (elements at 16).
        let m = Matrix::new(ElemKind::F64, vec![2, 2], vec![0; 32]).unwrap();
        let b = encode_with(&Value::Matrix(m), MatrixEncoding::Native).unwrap();
        assert_eq!((b[11], b.len()), (4, 16 + 32));
        // Large matrices start on a 64-byte boundary of the payload.
        let big = Matrix::new(ElemKind::F64, vec![200], vec![0; 1600]).unwrap();
        let v = Value::List(vec![Value::from("abc"), Value::Matrix(big)]);
        let b = encode_with(&v, MatrixEncoding::Native).unwrap();
        let start = b.len() - 1600;
        assert_eq!(start % 64, 0);
        assert_eq!(b.len(), encoded_len_with(&v, MatrixEncoding::Native));
    }

    #[test]
    fn decode_in_points_large_native_matrices_into_the_payload() {
        let dims = [300usize, 260];
        let m = Matrix::with_layout(
            ElemKind::F64,
            dims.to_vec(),
            sample(ElemKind::F64, &dims, 3),
            Layout::RowMajor,
        )
        .unwrap();
        let small = Matrix::new(ElemKind::U8, vec![3], vec![1, 2, 3]).unwrap();
        let v = Value::List(vec![Value::Matrix(m), Value::Matrix(small)]);
        let mut buf = PooledBuf::try_with_capacity(0).unwrap();
        encode_into_with(&v, &mut buf, MatrixEncoding::Native).unwrap();
        let owner = Arc::new(buf);
        let range = owner.as_ptr_range();
        let back = decode_in(owner.clone()).unwrap();
        assert_eq!(back, v);
        let Value::List(items) = &back else { panic!() };
        let (Value::Matrix(big), Value::Matrix(small)) = (&items[0], &items[1]) else {
            panic!()
        };
        assert!(range.contains(&big.stored_bytes().as_ptr()), "a view");
        assert!(!range.contains(&small.stored_bytes().as_ptr()), "a copy");
        assert_eq!(Arc::strong_count(&owner), 2, "the view keeps the payload");
        drop(back);
        assert_eq!(Arc::strong_count(&owner), 1);
        // Classic payloads need swapping: always a copy, same values.
        let classic = Arc::new(PooledBuf::from_vec(encode(&v).unwrap()));
        assert_eq!(decode_in(classic).unwrap(), v);
    }

    #[test]
    fn malformed_native_matrices_are_errors() {
        let m = Matrix::new(ElemKind::I32, vec![2, 2], vec![0; 16]).unwrap();
        let good = encode_with(&Value::Matrix(m), MatrixEncoding::Native).unwrap();
        assert!(decode(&good).is_ok());
        let mut flags = good.clone();
        flags[1] |= 0x80;
        assert!(decode(&flags).unwrap_err().0.contains("flags"));
        assert!(to_classic(&flags).is_err());
        for cut in 0..good.len() {
            assert!(decode(&good[..cut]).is_err(), "cut {cut}");
            assert!(to_classic(&good[..cut]).is_err(), "cut {cut}");
            assert!(value_len(&good[..cut]).is_err(), "cut {cut}");
        }
        // A pad count running past the end, unknown tags 0x40-0x42.
        assert!(decode(&[0x4C, 0x02, 1, 0, 0, 0, 1, 200]).is_err());
        for tag in [0x40u8, 0x41, 0x42] {
            assert!(decode(&[tag, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        }
        // Logical elements other than 0/1.
        assert!(decode(&[0x4F, 0x02, 1, 0, 0, 0, 1, 0, 7]).is_err());
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
            (prop::collection::vec(0usize..5, 2..4), any::<u8>()).prop_map(|(dims, seed)| {
                let n: usize = dims.iter().product();
                let bytes: Vec<u8> = (0..n * 8).map(|i| (i as u8).wrapping_mul(seed)).collect();
                Value::Matrix(
                    Matrix::with_layout(ElemKind::F64, dims, bytes, Layout::RowMajor).unwrap(),
                )
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
        fn any_value_round_trips_natively(v in arb_value()) {
            let bytes = encode_with(&v, MatrixEncoding::Native).unwrap();
            prop_assert_eq!(bytes.len(), encoded_len_with(&v, MatrixEncoding::Native));
            // Into a slice of exactly that size: the same bytes; any other
            // size is an error, not a short or overrun write.
            let mut slice = vec![0xAAu8; bytes.len()];
            prop_assert_eq!(encode_to_slice(&v, &mut slice, MatrixEncoding::Native).unwrap(), bytes.len());
            prop_assert_eq!(&slice, &bytes);
            prop_assert!(encode_to_slice(&v, &mut vec![0; bytes.len() + 1], MatrixEncoding::Native).is_err());
            prop_assert!(encode_to_slice(&v, &mut vec![0; bytes.len() - 1], MatrixEncoding::Native).is_err());
            prop_assert_eq!(&decode(&bytes).unwrap(), &v);
            prop_assert_eq!(to_classic(&bytes).unwrap().to_vec(), encode(&v).unwrap());
        }

        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&bytes);
            let _ = to_classic(&bytes);
        }

        #[test]
        fn mutated_encodings_never_panic(v in arb_value(), flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
            for enc in [MatrixEncoding::Classic, MatrixEncoding::Native] {
                let mut bytes = encode_with(&v, enc).unwrap();
                for (at, byte) in &flips {
                    let n = bytes.len();
                    bytes[at % n] = *byte;
                }
                let _ = decode(&bytes);
                let _ = to_classic(&bytes);
                let _ = decode_in(Arc::new(PooledBuf::from_vec(bytes)));
            }
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
        t if t & 0xF0 == TAG_MATRIX || t & 0xF0 == TAG_LAYOUT_MATRIX => {
            // A layout matrix has its flags byte before the rank.
            let at = if t & 0xF0 == TAG_LAYOUT_MATRIX { 2 } else { 1 };
            let (Some(kind), Some(&rank)) = (ElemKind::from_tag(t & 0x0F), bytes.get(at)) else {
                return "?".into();
            };
            let dims: Option<Vec<String>> = (0..usize::from(rank))
                .map(|i| count(at + 1 + 4 * i).map(|d| d.to_string()))
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
            let native = encode_with(&v, MatrixEncoding::Native).unwrap();
            assert_eq!(summary(&native), want, "native");
        }
        assert_eq!(summary(&[]), "empty");
        assert_eq!(summary(&[TAG_STRING, 0]), "?");
        assert_eq!(summary(&[TAG_MATRIX | 12, 2, 0, 0, 0, 3]), "?");
    }
}
