//! The type table shared by every language: one Rust enum for every value
//! that can travel between MATLAB, Python, C and JavaScript.

use crate::layout::Layout;
use std::fmt;

/// The element class of a matrix, numbered as its dimeb scalar tag
/// (`matrix tag = 0x10 | kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ElemKind {
    /// Signed 8-bit integers.
    I8 = 0x03,
    /// Signed 16-bit integers.
    I16 = 0x04,
    /// Signed 32-bit integers.
    I32 = 0x05,
    /// Signed 64-bit integers.
    I64 = 0x06,
    /// Unsigned 8-bit integers.
    U8 = 0x07,
    /// Unsigned 16-bit integers.
    U16 = 0x08,
    /// Unsigned 32-bit integers.
    U32 = 0x09,
    /// Unsigned 64-bit integers.
    U64 = 0x0A,
    /// IEEE single precision.
    F32 = 0x0B,
    /// IEEE double precision.
    F64 = 0x0C,
    /// Complex single precision (re, im interleaved).
    C32 = 0x0D,
    /// Complex double precision (re, im interleaved).
    C64 = 0x0E,
    /// Logical (our extension, tag 0x1F): one byte per element, 0 or 1.
    Bool = 0x0F,
}

impl ElemKind {
    /// Every kind, in tag order.
    pub const ALL: [ElemKind; 13] = [
        ElemKind::I8,
        ElemKind::I16,
        ElemKind::I32,
        ElemKind::I64,
        ElemKind::U8,
        ElemKind::U16,
        ElemKind::U32,
        ElemKind::U64,
        ElemKind::F32,
        ElemKind::F64,
        ElemKind::C32,
        ElemKind::C64,
        ElemKind::Bool,
    ];

    /// The kind whose scalar tag is `tag` (`0x03..=0x0F`).
    pub fn from_tag(tag: u8) -> Option<ElemKind> {
        ElemKind::ALL.into_iter().find(|k| *k as u8 == tag)
    }

    /// Bytes one element occupies (complex counts both parts).
    pub fn size(self) -> usize {
        match self {
            ElemKind::I8 | ElemKind::U8 | ElemKind::Bool => 1,
            ElemKind::I16 | ElemKind::U16 => 2,
            ElemKind::I32 | ElemKind::U32 | ElemKind::F32 => 4,
            ElemKind::I64 | ElemKind::U64 | ElemKind::F64 | ElemKind::C32 => 8,
            ElemKind::C64 => 16,
        }
    }

    /// Width of the byte-swapped unit: complex elements swap each part.
    pub fn swap_unit(self) -> usize {
        match self {
            ElemKind::C32 => 4,
            ElemKind::C64 => 8,
            k => k.size(),
        }
    }

    /// The MATLAB class name of this kind (`"double"`, `"int8"`, `"logical"` …).
    pub fn name(self) -> &'static str {
        match self {
            ElemKind::I8 => "int8",
            ElemKind::I16 => "int16",
            ElemKind::I32 => "int32",
            ElemKind::I64 => "int64",
            ElemKind::U8 => "uint8",
            ElemKind::U16 => "uint16",
            ElemKind::U32 => "uint32",
            ElemKind::U64 => "uint64",
            ElemKind::F32 => "single",
            ElemKind::F64 => "double",
            ElemKind::C32 => "complex single",
            ElemKind::C64 => "complex double",
            ElemKind::Bool => "logical",
        }
    }
}

/// Something that keeps the memory behind a shared matrix alive (a
/// received payload buffer, a shared-memory mapping): matrices decoded
/// from it point into it instead of copying.
pub type Keepalive = std::sync::Arc<dyn Send + Sync>;

/// Where a matrix's elements live.
pub enum MatrixData {
    /// Elements owned by the value, native byte order.
    Owned(Vec<u8>),
    /// Elements borrowed from a caller (C, numpy, MATLAB) without a copy.
    Borrowed {
        /// First byte of the elements.
        ptr: *const u8,
        /// Length in bytes.
        len: usize,
    },
    /// Elements inside a buffer shared with other values (a received
    /// payload or a shared-memory mapping), kept alive by `owner`.
    Shared {
        /// Keeps the bytes alive and unchanged while any matrix uses them.
        owner: Keepalive,
        /// First byte of the elements.
        ptr: *const u8,
        /// Length in bytes.
        len: usize,
    },
}

// SAFETY: a borrowed buffer is only read, and `Matrix::borrowed`'s contract
// makes the lender keep it alive and unchanged while the value exists; a
// shared one is kept alive by its owner (which is Send + Sync) and no two
// matrices share a byte range.
unsafe impl Send for MatrixData {}
unsafe impl Sync for MatrixData {}

/// An N-dimensional array, elements in native byte order, stored
/// column-major (first index fastest) or row-major (last index fastest):
/// see [`Matrix::layout`]. [`Matrix::bytes`] always gives column-major
/// order (converting a row-major matrix once, on first use);
/// [`Matrix::stored_bytes`] gives the elements as they are.
pub struct Matrix {
    kind: ElemKind,
    dims: Vec<usize>,
    data: MatrixData,
    layout: Layout,
    /// The column-major copy of a row-major matrix, made on first use.
    column_major: std::sync::OnceLock<Vec<u8>>,
}

/// Why a matrix could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeError(pub String);

impl fmt::Display for ShapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ShapeError {}

/// Largest element buffer a matrix may have: a DiME frame declares its
/// payload length in a u32, so anything larger could never be sent, and
/// slices must stay within `isize::MAX` bytes (which matters on 32-bit).
pub const MAX_MATRIX_BYTES: usize = if (u32::MAX as u64) < (isize::MAX as u64) {
    u32::MAX as usize
} else {
    isize::MAX as usize
};

/// The byte length of a `kind` matrix of shape `dims`, or why no such
/// matrix can exist. Needs only the shape, so callers check it before they
/// read (or allocate) a single element byte.
pub fn matrix_byte_len(kind: ElemKind, dims: &[usize]) -> Result<usize, ShapeError> {
    if dims.len() > u8::MAX as usize {
        return Err(ShapeError(format!("rank {} exceeds 255", dims.len())));
    }
    if let Some((i, d)) = dims
        .iter()
        .enumerate()
        .find(|(_, d)| **d > u32::MAX as usize)
    {
        return Err(ShapeError(format!(
            "dimension {i} ({d}) is too large: the wire carries at most {} per dimension",
            u32::MAX
        )));
    }
    // A zero dimension means no elements however large the others are;
    // checking it first keeps an early overflow from refusing a valid shape.
    if dims.contains(&0) {
        return Ok(0);
    }
    let len = dims
        .iter()
        .try_fold(kind.size(), |acc, d| acc.checked_mul(*d))
        .ok_or_else(|| {
            ShapeError(format!(
                "{} matrix of shape {dims:?} is too large: its byte count overflows",
                kind.name()
            ))
        })?;
    if len > MAX_MATRIX_BYTES {
        return Err(ShapeError(format!(
            "{} matrix of shape {dims:?} is too large: {len} bytes, but a DiME frame \
             carries at most {MAX_MATRIX_BYTES}",
            kind.name()
        )));
    }
    Ok(len)
}

fn check_len(kind: ElemKind, dims: &[usize], len: usize) -> Result<(), ShapeError> {
    let want = matrix_byte_len(kind, dims)?;
    if len != want {
        return Err(ShapeError(format!(
            "{} matrix of shape {:?} needs {want} bytes, got {len}",
            kind.name(),
            dims
        )));
    }
    Ok(())
}

impl Matrix {
    fn make(kind: ElemKind, dims: Vec<usize>, data: MatrixData, layout: Layout) -> Matrix {
        Matrix {
            layout: layout.normalized(&dims),
            kind,
            dims,
            data,
            column_major: std::sync::OnceLock::new(),
        }
    }

    /// A matrix owning `data` (native byte order, column-major); fails when
    /// `data.len()` does not equal the product of `dims` times the element size.
    pub fn new(kind: ElemKind, dims: Vec<usize>, data: Vec<u8>) -> Result<Matrix, ShapeError> {
        Matrix::with_layout(kind, dims, data, Layout::ColumnMajor)
    }

    /// A matrix owning `data` (native byte order) stored in `layout`.
    pub fn with_layout(
        kind: ElemKind,
        dims: Vec<usize>,
        data: Vec<u8>,
        layout: Layout,
    ) -> Result<Matrix, ShapeError> {
        check_len(kind, &dims, data.len())?;
        Ok(Matrix::make(kind, dims, MatrixData::Owned(data), layout))
    }

    /// A matrix over bytes that `owner` keeps alive (part of a received
    /// payload or a mapping), without copying them.
    ///
    /// # Safety
    /// `ptr` must point to `len` bytes (or be dangling with `len == 0`) that
    /// stay alive and unchanged while `owner` does, aligned for `kind`'s
    /// unit, and no other matrix may be given an overlapping range.
    pub unsafe fn shared(
        kind: ElemKind,
        dims: Vec<usize>,
        owner: Keepalive,
        ptr: *const u8,
        len: usize,
        layout: Layout,
    ) -> Result<Matrix, ShapeError> {
        check_len(kind, &dims, len)?;
        Ok(Matrix::make(
            kind,
            dims,
            MatrixData::Shared { owner, ptr, len },
            layout,
        ))
    }

    /// A matrix over a caller's buffer laid out row-major (C order, last
    /// index fastest), without copying it: it travels in that order to
    /// clients that negotiated layouts, and an encoder that must write
    /// column-major transposes while it writes.
    ///
    /// # Safety
    /// As [`Matrix::borrowed`].
    pub unsafe fn borrowed_row_major(
        kind: ElemKind,
        dims: Vec<usize>,
        ptr: *const u8,
        len: usize,
    ) -> Result<Matrix, ShapeError> {
        // SAFETY: forwarded contract.
        let mut m = unsafe { Matrix::borrowed(kind, dims, ptr, len)? };
        m.layout = Layout::RowMajor.normalized(&m.dims);
        Ok(m)
    }

    /// The order [`Matrix::stored_bytes`] is in. Matrices with at most one
    /// dimension above 1 always say column-major (both orders agree).
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// True while the elements are stored row-major.
    pub fn is_row_major(&self) -> bool {
        self.layout == Layout::RowMajor
    }

    /// The elements in column-major order (copied only for a row-major matrix).
    pub fn column_major_bytes(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(self.bytes())
    }

    /// A matrix over a caller's buffer, without copying it.
    ///
    /// # Safety
    /// `ptr` must point to `len` readable bytes (or be dangling with `len == 0`)
    /// that stay alive and unchanged for as long as the returned matrix exists.
    pub unsafe fn borrowed(
        kind: ElemKind,
        dims: Vec<usize>,
        ptr: *const u8,
        len: usize,
    ) -> Result<Matrix, ShapeError> {
        check_len(kind, &dims, len)?;
        Ok(Matrix::make(
            kind,
            dims,
            MatrixData::Borrowed { ptr, len },
            Layout::ColumnMajor,
        ))
    }

    /// A matrix built from typed elements.
    pub fn from_elems<T: Element>(dims: Vec<usize>, elems: &[T]) -> Result<Matrix, ShapeError> {
        let mut bytes = Vec::with_capacity(std::mem::size_of_val(elems));
        for e in elems {
            e.push_ne(&mut bytes);
        }
        Matrix::new(T::KIND, dims, bytes)
    }

    /// The element class.
    pub fn kind(&self) -> ElemKind {
        self.kind
    }

    /// The shape (rank = `dims().len()`).
    pub fn dims(&self) -> &[usize] {
        &self.dims
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        // Constructors bound the product unless a dimension is zero, when
        // the other dimensions' partial product can still overflow.
        if self.dims.contains(&0) {
            0
        } else {
            self.dims.iter().product()
        }
    }

    /// True when some dimension is zero.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements as stored: native byte order, in [`Matrix::layout`] order.
    pub fn stored_bytes(&self) -> &[u8] {
        match &self.data {
            MatrixData::Owned(v) => v,
            MatrixData::Borrowed { len: 0, .. } | MatrixData::Shared { len: 0, .. } => &[],
            // SAFETY: upheld by the contracts of `Matrix::borrowed` and
            // `Matrix::shared` (the owner lives as long as `self`).
            MatrixData::Borrowed { ptr, len } | MatrixData::Shared { ptr, len, .. } => unsafe {
                std::slice::from_raw_parts(*ptr, *len)
            },
        }
    }

    /// The elements as native-order bytes, column-major. A row-major
    /// matrix is transposed once, on the first call, and the copy kept.
    pub fn bytes(&self) -> &[u8] {
        if self.layout == Layout::ColumnMajor {
            return self.stored_bytes();
        }
        self.column_major.get_or_init(|| {
            let src = self.stored_bytes();
            let mut out = Vec::with_capacity(src.len());
            // SAFETY: `out` has room for `src.len()` bytes, all written
            // before the length is set.
            unsafe {
                crate::layout::to_column_major_raw(
                    src,
                    &self.dims,
                    self.kind,
                    false,
                    out.as_mut_ptr(),
                );
                out.set_len(src.len());
            }
            out
        })
    }

    /// Writes the elements column-major into `dst` (exactly
    /// `stored_bytes().len()` long) in one pass: a copy, or a cache-blocked
    /// transpose of a row-major matrix. For receivers that must own a
    /// column-major copy anyway (MATLAB's arrays).
    pub fn copy_column_major(&self, dst: &mut [u8]) {
        let src = self.stored_bytes();
        match self.layout {
            Layout::ColumnMajor => dst.copy_from_slice(src),
            Layout::RowMajor => {
                crate::layout::to_column_major(src, &self.dims, self.kind, false, dst)
            }
        }
    }

    /// The elements decoded as `T` (fails if `T` is not this matrix's class).
    pub fn to_vec<T: Element>(&self) -> Option<Vec<T>> {
        if T::KIND != self.kind {
            return None;
        }
        Some(
            self.bytes()
                .chunks_exact(self.kind.size())
                .map(T::from_ne)
                .collect(),
        )
    }

    /// Takes the owned element buffer out, column-major (copying a
    /// borrowed or shared one, transposing a row-major one).
    pub fn into_bytes(mut self) -> Vec<u8> {
        if let Some(v) = self.column_major.take() {
            return v;
        }
        match (self.layout, self.data) {
            (Layout::ColumnMajor, MatrixData::Owned(v)) => v,
            (_, data) => {
                self.data = data;
                self.bytes().to_vec()
            }
        }
    }

    /// Takes the elements out as stored, without copying: an owned vector,
    /// or the keepalive of a shared buffer with the range inside it. A
    /// borrowed matrix's elements are copied.
    pub fn into_stored(self) -> StoredData {
        match self.data {
            MatrixData::Owned(v) => StoredData::Owned(v),
            MatrixData::Shared { owner, ptr, len } => StoredData::Shared { owner, ptr, len },
            MatrixData::Borrowed { .. } => StoredData::Owned(self.stored_bytes().to_vec()),
        }
    }
}

/// A matrix's elements moved out by [`Matrix::into_stored`].
pub enum StoredData {
    /// A buffer of their own.
    Owned(Vec<u8>),
    /// A range inside a buffer that `owner` keeps alive.
    Shared {
        /// Keeps the bytes alive.
        owner: Keepalive,
        /// First byte.
        ptr: *const u8,
        /// Length in bytes.
        len: usize,
    },
}

impl Clone for Matrix {
    /// An owned copy: column-major for a borrowed matrix (as the C API
    /// documents), in the same layout otherwise. A shared matrix is copied
    /// too, so that a binding handing one out as writable memory (numpy)
    /// never writes into its clone.
    fn clone(&self) -> Matrix {
        match &self.data {
            MatrixData::Borrowed { .. } => Matrix::make(
                self.kind,
                self.dims.clone(),
                MatrixData::Owned(self.bytes().to_vec()),
                Layout::ColumnMajor,
            ),
            _ => Matrix::make(
                self.kind,
                self.dims.clone(),
                MatrixData::Owned(self.stored_bytes().to_vec()),
                self.layout,
            ),
        }
    }
}

impl PartialEq for Matrix {
    /// Equal when class, shape and bytes agree (so NaN equals the same NaN).
    fn eq(&self, other: &Matrix) -> bool {
        self.kind == other.kind
            && self.dims == other.dims
            && (if self.layout == other.layout {
                self.stored_bytes() == other.stored_bytes()
            } else {
                self.bytes() == other.bytes()
            })
    }
}

impl fmt::Debug for Matrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Matrix<{}>{:?}", self.kind.name(), self.dims)
    }
}

/// A Rust element type that maps onto an [`ElemKind`].
pub trait Element: Copy {
    /// The matching element class.
    const KIND: ElemKind;
    /// Appends the native-order bytes of `self`.
    fn push_ne(&self, out: &mut Vec<u8>);
    /// Reads one element from native-order bytes.
    fn from_ne(b: &[u8]) -> Self;
}

macro_rules! element {
    ($t:ty, $k:ident) => {
        impl Element for $t {
            const KIND: ElemKind = ElemKind::$k;
            fn push_ne(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_ne_bytes());
            }
            fn from_ne(b: &[u8]) -> Self {
                <$t>::from_ne_bytes(b.try_into().expect("element width"))
            }
        }
    };
}
element!(i8, I8);
element!(i16, I16);
element!(i32, I32);
element!(i64, I64);
element!(u8, U8);
element!(u16, U16);
element!(u32, U32);
element!(u64, U64);
element!(f32, F32);
element!(f64, F64);

impl Element for bool {
    const KIND: ElemKind = ElemKind::Bool;
    fn push_ne(&self, out: &mut Vec<u8>) {
        out.push(*self as u8);
    }
    fn from_ne(b: &[u8]) -> Self {
        b[0] != 0
    }
}

impl Element for Complex<f32> {
    const KIND: ElemKind = ElemKind::C32;
    fn push_ne(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.re.to_ne_bytes());
        out.extend_from_slice(&self.im.to_ne_bytes());
    }
    fn from_ne(b: &[u8]) -> Self {
        Complex {
            re: f32::from_ne(&b[..4]),
            im: f32::from_ne(&b[4..]),
        }
    }
}

impl Element for Complex<f64> {
    const KIND: ElemKind = ElemKind::C64;
    fn push_ne(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.re.to_ne_bytes());
        out.extend_from_slice(&self.im.to_ne_bytes());
    }
    fn from_ne(b: &[u8]) -> Self {
        Complex {
            re: f64::from_ne(&b[..8]),
            im: f64::from_ne(&b[8..]),
        }
    }
}

/// A complex number.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Complex<T> {
    /// Real part.
    pub re: T,
    /// Imaginary part.
    pub im: T,
}

/// One value of the type table.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// MATLAB `[]`, Python `None`, JS `null`.
    Null,
    /// Logical scalar.
    Bool(bool),
    /// int8 scalar.
    I8(i8),
    /// int16 scalar.
    I16(i16),
    /// int32 scalar.
    I32(i32),
    /// int64 scalar (Python `int`).
    I64(i64),
    /// uint8 scalar.
    U8(u8),
    /// uint16 scalar.
    U16(u16),
    /// uint32 scalar.
    U32(u32),
    /// uint64 scalar.
    U64(u64),
    /// single scalar.
    F32(f32),
    /// double scalar (Python `float`).
    F64(f64),
    /// complex single scalar.
    C32(Complex<f32>),
    /// complex double scalar (Python `complex`).
    C64(Complex<f64>),
    /// N-dimensional matrix.
    Matrix(Matrix),
    /// UTF-8 string.
    String(String),
    /// Ordered list (cell array, Python list).
    List(Vec<Value>),
    /// Ordered map (struct, dict); keys are values, strings in practice.
    Map(Vec<(Value, Value)>),
}

impl Value {
    /// A short name of the value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::I8(_) => "int8",
            Value::I16(_) => "int16",
            Value::I32(_) => "int32",
            Value::I64(_) => "int64",
            Value::U8(_) => "uint8",
            Value::U16(_) => "uint16",
            Value::U32(_) => "uint32",
            Value::U64(_) => "uint64",
            Value::F32(_) => "single",
            Value::F64(_) => "double",
            Value::C32(_) => "complex single",
            Value::C64(_) => "complex double",
            Value::Matrix(_) => "matrix",
            Value::String(_) => "string",
            Value::List(_) => "list",
            Value::Map(_) => "map",
        }
    }

    /// Looks a string key up in a map value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(pairs) => pairs
                .iter()
                .find(|(k, _)| matches!(k, Value::String(s) if s == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.to_owned())
    }
}

impl From<f64> for Value {
    fn from(x: f64) -> Value {
        Value::F64(x)
    }
}

impl From<i64> for Value {
    fn from(x: i64) -> Value {
        Value::I64(x)
    }
}

impl From<bool> for Value {
    fn from(x: bool) -> Value {
        Value::Bool(x)
    }
}

impl From<Matrix> for Value {
    fn from(m: Matrix) -> Value {
        Value::Matrix(m)
    }
}

#[cfg(test)]
mod shape_tests {
    use super::*;

    /// Shapes the wire cannot carry fail on their dims alone, so no buffer
    /// of that size is ever needed (or read): the pointer here is dangling.
    #[test]
    fn impossible_shapes_fail_before_any_byte_is_read() {
        let max = u32::MAX as usize;
        let cases: [(&[usize], &str); 5] = [
            (&[1 << 33], "dimension 0"),
            (&[3, 1 << 40], "dimension 1"),
            (&[max, max], "bytes"),
            (&[max, max, max], "overflows"),
            (&[max, 2], "bytes"),
        ];
        for (dims, text) in cases {
            let e = matrix_byte_len(ElemKind::U8, dims).unwrap_err();
            assert!(
                e.0.contains("too large") && e.0.contains(text),
                "{dims:?}: {e}"
            );
            // SAFETY: the shape is refused before the pointer is used.
            let b =
                unsafe { Matrix::borrowed(ElemKind::U8, dims.to_vec(), std::ptr::dangling(), 16) };
            assert_eq!(b.err(), Some(e));
        }
        assert!(
            matrix_byte_len(ElemKind::U8, &[0; 256])
                .unwrap_err()
                .0
                .contains("rank")
        );
    }

    #[test]
    fn zero_dims_make_empty_matrices_and_the_limit_is_inclusive() {
        let max = u32::MAX as usize;
        assert_eq!(matrix_byte_len(ElemKind::C64, &[max, max, max, 0]), Ok(0));
        assert!(matrix_byte_len(ElemKind::C64, &[0, max + 1]).is_err());
        assert_eq!(matrix_byte_len(ElemKind::U8, &[max]), Ok(MAX_MATRIX_BYTES));
        assert!(matrix_byte_len(ElemKind::U16, &[max]).is_err());
        assert_eq!(matrix_byte_len(ElemKind::F64, &[]), Ok(8));
        // Such an empty matrix reports 0 elements and survives encoding
        // (row-major too: its transpose is skipped) and decoding.
        let dims = vec![max, max, max, 0];
        // SAFETY: 0 bytes are never read.
        let m = unsafe {
            Matrix::borrowed_row_major(ElemKind::C64, dims.clone(), std::ptr::dangling(), 0)
        }
        .unwrap();
        assert_eq!(m.len(), 0);
        let bytes = crate::codec::dimeb::encode(&Value::Matrix(m)).unwrap();
        match crate::codec::dimeb::decode(&bytes).unwrap() {
            Value::Matrix(back) => assert_eq!(
                (back.kind(), back.dims(), back.len()),
                (ElemKind::C64, &dims[..], 0)
            ),
            v => panic!("decoded a {}", v.type_name()),
        }
    }
}
