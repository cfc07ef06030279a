//! N-dimensional matrices: the copying and borrowing constructors, the
//! accessors that expose a matrix's own buffer (so MATLAB and numpy can use
//! it without another copy), and moving that buffer out to the caller.
//!
//! Shapes are `rank` + `const size_t dims[rank]`; elements are
//! column-major (first index fastest) in native byte order; complex
//! elements are interleaved (re, im); logical elements are one byte, 0 or 1.
//! A matrix may be *stored* row-major (made with
//! `dime_value_new_matrix_borrowed_row_major`, or received in the layout a
//! sender had it in): `dime_matrix_layout` says so, `dime_matrix_data`
//! still gives column-major elements (converting once), and the
//! `*_stored_*` functions give them as stored, without a conversion.

use super::args::{copy_arg, slice_arg, write_out};
use super::status::{Fail, check_arg, dime_status, ffi_status, ffi_value};
use super::value::{dime_value, into_raw};
use crate::layout::Layout;
use crate::value::{ElemKind, Keepalive, Matrix, StoredData, Value, matrix_byte_len};
use std::collections::BTreeMap;
use std::ffi::c_void;
use std::sync::Mutex;

/// The element class of a matrix: one of the `DIME_CLASS_*` constants.
///
/// A plain integer rather than a C enum so that any number a caller passes
/// is defined behaviour (unknown numbers give `DIME_STATUS_INVALID_ARGUMENT`).
#[allow(non_camel_case_types)]
pub type dime_class = u32;

/// int8 elements (`int8_t`).
pub const DIME_CLASS_INT8: dime_class = 3;
/// int16 elements (`int16_t`).
pub const DIME_CLASS_INT16: dime_class = 4;
/// int32 elements (`int32_t`).
pub const DIME_CLASS_INT32: dime_class = 5;
/// int64 elements (`int64_t`).
pub const DIME_CLASS_INT64: dime_class = 6;
/// uint8 elements (`uint8_t`).
pub const DIME_CLASS_UINT8: dime_class = 7;
/// uint16 elements (`uint16_t`).
pub const DIME_CLASS_UINT16: dime_class = 8;
/// uint32 elements (`uint32_t`).
pub const DIME_CLASS_UINT32: dime_class = 9;
/// uint64 elements (`uint64_t`).
pub const DIME_CLASS_UINT64: dime_class = 10;
/// single elements (`float`).
pub const DIME_CLASS_SINGLE: dime_class = 11;
/// double elements (`double`).
pub const DIME_CLASS_DOUBLE: dime_class = 12;
/// complex single elements (two `float`s: re, im).
pub const DIME_CLASS_COMPLEX_SINGLE: dime_class = 13;
/// complex double elements (two `double`s: re, im).
pub const DIME_CLASS_COMPLEX_DOUBLE: dime_class = 14;
/// logical elements (one byte each, 0 or 1; dimeb tag 0x1F, our extension).
pub const DIME_CLASS_LOGICAL: dime_class = 15;

/// How a matrix's elements are stored: one of the `DIME_LAYOUT_*` constants.
#[allow(non_camel_case_types)]
pub type dime_layout = u32;

/// First index fastest (MATLAB, Fortran, DiME2's wire order).
pub const DIME_LAYOUT_COLUMN_MAJOR: dime_layout = 0;
/// Last index fastest (C arrays, numpy's default order).
pub const DIME_LAYOUT_ROW_MAJOR: dime_layout = 1;

/// The element kind of a `DIME_CLASS_*` constant.
pub(crate) fn elem_kind(cls: dime_class) -> Result<ElemKind, Fail> {
    u8::try_from(cls)
        .ok()
        .and_then(ElemKind::from_tag)
        .ok_or_else(|| Fail::invalid(format!("unknown matrix class {cls}")))
}

/// Bytes per element of `cls` (complex counts both parts), or 0 if
/// `cls` is not a `DIME_CLASS_*` constant. Safe from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn dime_class_size(cls: dime_class) -> usize {
    ffi_value!(0, elem_kind(cls).map_or(0, ElemKind::size))
}

/// Checks the class and shape and returns the kind, dims and byte length.
///
/// Everything is decided from `rank` and `dims` alone, before the caller's
/// `data` is read: a shape the wire cannot carry (rank over 255, a
/// dimension over u32, a byte count that overflows or exceeds a frame's
/// u32 payload) must fail without touching a buffer that was never that
/// large.
fn shape(
    cls: dime_class,
    rank: usize,
    dims: *const usize,
) -> Result<(ElemKind, Vec<usize>, usize), Fail> {
    let kind = elem_kind(cls)?;
    // Checked before `dims` is read, so a garbage rank cannot make us read
    // far past the caller's array.
    if rank > u8::MAX as usize {
        return Err(Fail::invalid(format!("rank {rank} exceeds 255")));
    }
    let dims = slice_arg(dims, rank, "dims")?.to_vec();
    let len = matrix_byte_len(kind, &dims).map_err(|e| Fail::invalid(e.0))?;
    Ok((kind, dims, len))
}

/// Creates a matrix by **copying** the caller's elements and writes it to
/// `*out`, owned by the caller (free with `dime_value_free`).
///
/// - `cls`: a `DIME_CLASS_*` constant.
/// - `rank`, `dims`: the shape; `dims` points to `rank` sizes and may be
///   NULL when `rank` is 0. Rank and each dimension must fit the wire
///   format (rank ≤ 255, dimension ≤ 4294967295), and the byte count
///   below must fit one frame's payload (≤ 4294967295); a zero dimension
///   makes an empty matrix whatever the others are. All of this is checked
///   before `data` is read.
/// - `data`: the elements, column-major, `dime_class_size(cls)` × the
///   product of `dims` bytes; may be NULL when that is 0. Only read during
///   the call. For `DIME_CLASS_LOGICAL`, any non-zero byte is stored as 1.
///
/// `DIME_STATUS_INVALID_ARGUMENT` for an unknown class, a shape that does
/// not fit, or a copy that cannot be allocated; `DIME_STATUS_NULL_ARGUMENT` for a NULL `out`, or a NULL `dims`
/// / `data` that should hold something.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_new_matrix(
    cls: dime_class,
    rank: usize,
    dims: *const usize,
    data: *const c_void,
    out: *mut *mut dime_value,
) -> dime_status {
    ffi_status! {
        check_arg!(out);
        let (kind, dims, len) = shape(cls, rank, dims)?;
        let mut bytes = copy_arg(slice_arg(data.cast::<u8>(), len, "data")?)?;
        if kind == ElemKind::Bool {
            // Receivers expect 0 or 1 (the decoder rejects anything else).
            bytes.iter_mut().for_each(|b| *b = (*b != 0) as u8);
        }
        let m = Matrix::new(kind, dims, bytes).map_err(|e| Fail::invalid(e.0))?;
        write_out(out, into_raw(Value::Matrix(m)));
        Ok(())
    }
}

/// Creates a matrix that **borrows** the caller's elements (no copy) and
/// writes it to `*out`, owned by the caller (free with `dime_value_free`).
///
/// Arguments as for `dime_value_new_matrix`, but `data` is not copied: the
/// caller must keep those bytes alive and unchanged until this value, and
/// any list or map it is moved into, has been freed (sending the value
/// reads the buffer during the send call only, but the value keeps pointing
/// at it). For `DIME_CLASS_LOGICAL` every byte must already be 0 or 1.
/// `dime_value_clone` of a borrowing matrix makes an owning copy.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_new_matrix_borrowed(
    cls: dime_class,
    rank: usize,
    dims: *const usize,
    data: *const c_void,
    out: *mut *mut dime_value,
) -> dime_status {
    ffi_status! {
        check_arg!(out);
        let (kind, dims, len) = shape(cls, rank, dims)?;
        let bytes = slice_arg(data.cast::<u8>(), len, "data")?;
        // SAFETY: `bytes` is `len` readable bytes (or empty and dangling);
        // the caller promises to keep them alive and unchanged while the
        // value exists, as documented above.
        let m = unsafe { Matrix::borrowed(kind, dims, bytes.as_ptr(), len) }
            .map_err(|e| Fail::invalid(e.0))?;
        write_out(out, into_raw(Value::Matrix(m)));
        Ok(())
    }
}

/// As `dime_value_new_matrix_borrowed`, but `data` is laid out
/// **row-major** (C order: the last index varies fastest, as a C array
/// `double m[rows][cols]` or a C-ordered numpy array) while `dims` keep
/// their usual meaning. Nothing is copied now; sending writes it in
/// the layout it is stored in to clients that negotiated layouts (see
/// `dime_connect`), and is transposed to DiME2's column-major order in the
/// same pass as the byte swap for the others, so a C-ordered buffer costs
/// no extra copy either way. Same lifetime rules as
/// `dime_value_new_matrix_borrowed`. `dime_matrix_stored_data` on this
/// value returns `data` itself; `dime_matrix_data` a column-major copy
/// (made once); `dime_value_clone` gives an owning column-major copy.
/// Shapes with at most one dimension above 1 are the same in both orders
/// and count as column-major.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_new_matrix_borrowed_row_major(
    cls: dime_class,
    rank: usize,
    dims: *const usize,
    data: *const c_void,
    out: *mut *mut dime_value,
) -> dime_status {
    ffi_status! {
        check_arg!(out);
        let (kind, dims, len) = shape(cls, rank, dims)?;
        let bytes = slice_arg(data.cast::<u8>(), len, "data")?;
        // SAFETY: as in `dime_value_new_matrix_borrowed`.
        let m = unsafe { Matrix::borrowed_row_major(kind, dims, bytes.as_ptr(), len) }
            .map_err(|e| Fail::invalid(e.0))?;
        write_out(out, into_raw(Value::Matrix(m)));
        Ok(())
    }
}

/// The matrix inside `value`, or `DIME_STATUS_WRONG_TYPE`.
fn matrix<'a>(value: *const dime_value) -> Result<&'a Matrix, Fail> {
    match check_arg!(ref value as Value) {
        Value::Matrix(m) => Ok(m),
        v => Err(Fail::wrong_type("matrix", v.type_name())),
    }
}

/// Writes the element class of a matrix (a `DIME_CLASS_*` constant) to
/// `*out`. `DIME_STATUS_WRONG_TYPE` unless `value` is `DIME_KIND_MATRIX`;
/// `DIME_STATUS_NULL_ARGUMENT` if a pointer is NULL. `value` is only read.
#[unsafe(no_mangle)]
pub extern "C" fn dime_matrix_class(value: *const dime_value, out: *mut dime_class) -> dime_status {
    ffi_status! {
        let m = matrix(value)?;
        check_arg!(out);
        write_out(out, m.kind() as dime_class);
        Ok(())
    }
}

/// Writes the rank (number of dimensions, possibly 0) of a matrix to
/// `*out`. Errors as for `dime_matrix_class`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_matrix_rank(value: *const dime_value, out: *mut usize) -> dime_status {
    ffi_status! {
        let m = matrix(value)?;
        check_arg!(out);
        write_out(out, m.dims().len());
        Ok(())
    }
}

/// Points `*out` at the matrix's `rank` dimensions. The array belongs to
/// `value` and stays valid until it is freed or modified; with rank 0 it
/// must not be read. Errors as for `dime_matrix_class`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_matrix_dims(
    value: *const dime_value,
    out: *mut *const usize,
) -> dime_status {
    ffi_status! {
        let m = matrix(value)?;
        check_arg!(out);
        write_out(out, m.dims().as_ptr());
        Ok(())
    }
}

/// Writes the number of elements (product of the dimensions; 1 for rank 0)
/// to `*out`. Errors as for `dime_matrix_class`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_matrix_numel(value: *const dime_value, out: *mut usize) -> dime_status {
    ffi_status! {
        let m = matrix(value)?;
        check_arg!(out);
        write_out(out, m.len());
        Ok(())
    }
}

/// Points `*data` at the matrix's elements (column-major, native byte
/// order) and writes their size in bytes to `*nbytes`, without copying a
/// column-major matrix.
///
/// A matrix stored row-major (`dime_matrix_layout`) is transposed once,
/// on the first call, into a column-major copy the value keeps; use
/// `dime_matrix_stored_data` to read it as stored instead.
///
/// The buffer belongs to `value`: it stays valid until `value` is freed,
/// modified, or its data taken with `dime_matrix_take_data`; read it only.
/// For a received matrix it is aligned for its element class; for a
/// borrowing column-major matrix it is the caller's own pointer. With 0
/// bytes, `*data` is non-NULL but must not be read. Errors as for
/// `dime_matrix_class`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_matrix_data(
    value: *const dime_value,
    data: *mut *const c_void,
    nbytes: *mut usize,
) -> dime_status {
    ffi_status! { write_elements(value, data, nbytes, Matrix::bytes) }
}

/// Writes how the matrix's elements are stored to `*out`:
/// `DIME_LAYOUT_COLUMN_MAJOR` or `DIME_LAYOUT_ROW_MAJOR`. A matrix with at
/// most one dimension above 1 is always column-major (both orders are the
/// same bytes). Errors as for `dime_matrix_class`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_matrix_layout(
    value: *const dime_value,
    out: *mut dime_layout,
) -> dime_status {
    ffi_status! {
        let m = matrix(value)?;
        check_arg!(out);
        write_out(out, layout_code(m.layout()));
        Ok(())
    }
}

fn layout_code(l: Layout) -> dime_layout {
    match l {
        Layout::ColumnMajor => DIME_LAYOUT_COLUMN_MAJOR,
        Layout::RowMajor => DIME_LAYOUT_ROW_MAJOR,
    }
}

/// As `dime_matrix_data`, but the elements as stored, in the order
/// `dime_matrix_layout` reports: never converted or copied. Same lifetime
/// and alignment rules. Errors as for `dime_matrix_class`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_matrix_stored_data(
    value: *const dime_value,
    data: *mut *const c_void,
    nbytes: *mut usize,
) -> dime_status {
    ffi_status! { write_elements(value, data, nbytes, Matrix::stored_bytes) }
}

/// Writes a borrowed view of `value`'s elements, as `view` gives them, to
/// `*data` and its length to `*nbytes` (`dime_matrix_data`,
/// `dime_matrix_stored_data`).
fn write_elements(
    value: *const dime_value,
    data: *mut *const c_void,
    nbytes: *mut usize,
    view: fn(&Matrix) -> &[u8],
) -> Result<(), Fail> {
    let m = matrix(value)?;
    check_arg!(data);
    check_arg!(nbytes);
    let bytes = view(m);
    write_out(data, bytes.as_ptr().cast());
    write_out(nbytes, bytes.len());
    Ok(())
}

/// Writes the matrix's elements column-major into the caller's buffer
/// `dst` of `nbytes` bytes, which must be exactly the matrix's size
/// (`dime_class_size` × `dime_matrix_numel`): a copy, or one cache-blocked
/// transpose of a row-major matrix. For a receiver that needs its own
/// column-major array anyway (MATLAB's `mxArray`): one pass, where
/// `dime_matrix_data` plus a copy would make two. `dst` may be NULL when
/// `nbytes` is 0. `DIME_STATUS_INVALID_ARGUMENT` if `nbytes` is not the
/// matrix's size; other errors as for `dime_matrix_class`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_matrix_copy_column_major(
    value: *const dime_value,
    dst: *mut c_void,
    nbytes: usize,
) -> dime_status {
    ffi_status! {
        let m = matrix(value)?;
        let want = m.stored_bytes().len();
        if nbytes != want {
            return Err(Fail::invalid(format!(
                "the matrix has {want} bytes, the buffer {nbytes}"
            )));
        }
        if want == 0 {
            return Ok(());
        }
        check_arg!(dst);
        // SAFETY: the caller's contract: `dst` is `nbytes` writable bytes,
        // not overlapping the matrix (which the caller cannot write).
        let out = unsafe { std::slice::from_raw_parts_mut(dst.cast::<u8>(), nbytes) };
        m.copy_column_major(out);
        Ok(())
    }
}

/// Buffers handed to C that live inside a larger shared buffer (a
/// received payload, a shared-memory mapping), by address: what keeps each
/// alive until `dime_data_free` gives it back. Every other buffer handed
/// out is a `Box<[u8]>` of its own.
static LENT: Mutex<BTreeMap<usize, Vec<Keepalive>>> = Mutex::new(BTreeMap::new());

/// A matrix's elements as a (pointer, length) the caller owns and gives
/// back with `dime_data_free`: a boxed slice, or a range of a shared
/// buffer registered in [`LENT`] (no copy).
fn hand_out(data: StoredData) -> (*mut c_void, usize) {
    match data {
        StoredData::Shared { owner, ptr, len } if len > 0 => {
            LENT.lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(ptr as usize)
                .or_default()
                .push(owner);
            (ptr.cast_mut().cast(), len)
        }
        StoredData::Shared { .. } => (Box::into_raw(Box::<[u8]>::default()).cast(), 0),
        StoredData::Owned(v) => {
            // A boxed slice has capacity == length, so dime_data_free can
            // rebuild it from (pointer, length) alone.
            let block = v.into_boxed_slice();
            let len = block.len();
            (Box::into_raw(block).cast(), len)
        }
    }
}

/// Takes the matrix out of `value` (which becomes null), or fails.
fn take_matrix(value: *mut dime_value) -> Result<Matrix, Fail> {
    let v = check_arg!(mut value as Value);
    if !matches!(v, Value::Matrix(_)) {
        return Err(Fail::wrong_type("matrix", v.type_name()));
    }
    let Value::Matrix(m) = std::mem::replace(v, Value::Null) else {
        unreachable!("checked to be a matrix above");
    };
    Ok(m)
}

/// Moves a matrix's element buffer out to the caller: `*data` receives the
/// buffer (column-major, native byte order, aligned for its class) and
/// `*nbytes` its size. The caller owns it and must release it with
/// `dime_data_free(data, nbytes)` (not `free()`); with 0 bytes `*data` is a
/// non-NULL placeholder that must not be read. `value` itself becomes a
/// null value (`DIME_KIND_NULL`), still to be freed with `dime_value_free`,
/// so read the class and dims first. The buffer may be written.
///
/// For a column-major matrix received from the server no element is
/// copied (the buffer may be part of the received message, kept alive
/// until `dime_data_free`); a row-major one is transposed into a new
/// block, and a borrowing matrix's elements are copied. This is how a
/// binding can wrap received data (a numpy array, say) with no copy at
/// all; `dime_matrix_take_stored_data` does the same without transposing.
/// `value` must be owned by the caller (take a child out of a list or map
/// first with `dime_value_list_take` / `dime_value_map_take_at`, or out of
/// a message list with `dime_messages_take`). Errors as for
/// `dime_matrix_class`; on failure `value` is unchanged.
#[unsafe(no_mangle)]
pub extern "C" fn dime_matrix_take_data(
    value: *mut dime_value,
    data: *mut *mut c_void,
    nbytes: *mut usize,
) -> dime_status {
    ffi_status! {
        check_arg!(data);
        check_arg!(nbytes);
        let m = take_matrix(value)?;
        let stored = match m.layout() {
            Layout::ColumnMajor => m.into_stored(),
            Layout::RowMajor => StoredData::Owned(m.into_bytes()),
        };
        let (ptr, len) = hand_out(stored);
        write_out(data, ptr);
        write_out(nbytes, len);
        Ok(())
    }
}

/// As `dime_matrix_take_data`, but the elements as stored, in the order
/// `dime_matrix_layout` reported before the call (read it first): never
/// transposed, and not copied unless the matrix was borrowing. Release
/// with `dime_data_free`. Errors as for `dime_matrix_take_data`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_matrix_take_stored_data(
    value: *mut dime_value,
    data: *mut *mut c_void,
    nbytes: *mut usize,
) -> dime_status {
    ffi_status! {
        check_arg!(data);
        check_arg!(nbytes);
        let (ptr, len) = hand_out(take_matrix(value)?.into_stored());
        write_out(data, ptr);
        write_out(nbytes, len);
        Ok(())
    }
}

/// Releases a buffer obtained from `dime_matrix_take_data` or
/// `dime_matrix_take_stored_data`; `nbytes` must be the size that call
/// reported. NULL is accepted and does nothing. Safe from any thread (not
/// the same buffer twice).
#[unsafe(no_mangle)]
pub extern "C" fn dime_data_free(data: *mut c_void, nbytes: usize) {
    ffi_value!((), {
        if data.is_null() {
            return;
        }
        let lent = {
            let mut map = LENT.lock().unwrap_or_else(|p| p.into_inner());
            match map.get_mut(&(data as usize)) {
                Some(owners) => {
                    let owner = owners.pop();
                    if owners.is_empty() {
                        map.remove(&(data as usize));
                    }
                    owner
                }
                None => None,
            }
        };
        match lent {
            // Dropped outside the lock: the last reference may unmap memory
            // or return a buffer to its pool.
            Some(owner) => drop(owner),
            None => {
                let slice = std::ptr::slice_from_raw_parts_mut(data.cast::<u8>(), nbytes);
                // SAFETY: the caller's contract: (data, nbytes) came from
                // a take function, and was not lent (above), so it is a
                // Box::<[u8]>::into_raw.
                let block = unsafe { Box::from_raw(slice) };
                // Large blocks go back to this thread's pool, for the next
                // large matrix it receives (see `buffer`).
                drop(crate::buffer::PooledBuf::from_vec(block.into_vec()));
            }
        }
    })
}
