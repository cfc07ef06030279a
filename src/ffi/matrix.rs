//! N-dimensional matrices: the copying and borrowing constructors, the
//! accessors that expose a matrix's own buffer (so MATLAB and numpy can use
//! it without another copy), and moving that buffer out to the caller.
//!
//! Shapes are `rank` + `const size_t dims[rank]`; elements are
//! column-major (first index fastest) in native byte order; complex
//! elements are interleaved (re, im); logical elements are one byte, 0 or 1.

use super::args::{copy_arg, slice_arg, write_out};
use super::status::{Fail, check_arg, dime_status, ffi_status, ffi_value};
use super::value::{dime_value, into_raw};
use crate::value::{ElemKind, Matrix, Value, matrix_byte_len};
use std::ffi::c_void;

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
/// their usual meaning. Nothing is copied now; sending transposes to the
/// wire's column-major order while it byte-swaps, in one pass, so a
/// C-ordered buffer costs no extra copy. Same lifetime rules as
/// `dime_value_new_matrix_borrowed`. `dime_matrix_data` on this value
/// returns `data` itself (row-major); `dime_value_clone` gives an owning
/// column-major copy. Rank 0 and 1 are the same in both orders.
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
/// order) and writes their size in bytes to `*nbytes`, without copying.
///
/// The buffer belongs to `value`: it stays valid until `value` is freed,
/// modified, or its data taken with `dime_matrix_take_data`; read it only.
/// For a received matrix it is a heap block aligned for any element class
/// (malloc alignment); for a borrowing matrix it is the caller's own
/// pointer. With 0 bytes, `*data` is non-NULL but must not be read.
/// Errors as for `dime_matrix_class`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_matrix_data(
    value: *const dime_value,
    data: *mut *const c_void,
    nbytes: *mut usize,
) -> dime_status {
    ffi_status! {
        let m = matrix(value)?;
        check_arg!(data);
        check_arg!(nbytes);
        let bytes = m.bytes();
        write_out(data, bytes.as_ptr().cast());
        write_out(nbytes, bytes.len());
        Ok(())
    }
}

/// Moves a matrix's element buffer out to the caller: `*data` receives the
/// buffer (column-major, native byte order, malloc-aligned) and `*nbytes`
/// its size. The caller owns it and must release it with
/// `dime_data_free(data, nbytes)` (not `free()`); with 0 bytes `*data` is a
/// non-NULL placeholder that must not be read. `value` itself becomes a
/// null value (`DIME_KIND_NULL`), still to be freed with `dime_value_free`,
/// so read the class and dims first.
///
/// For a matrix received from the server no element is copied (the block
/// may be shrunk in place); a borrowing matrix's elements are copied into a
/// new block. This is how a binding can wrap received data (a numpy array,
/// say) with no copy at all. `value` must be owned by the caller (take a
/// child out of a list or map first with `dime_value_list_take` /
/// `dime_value_map_take_at`, or out of a message list with
/// `dime_messages_take`). Errors as for `dime_matrix_class`; on failure
/// `value` is unchanged.
#[unsafe(no_mangle)]
pub extern "C" fn dime_matrix_take_data(
    value: *mut dime_value,
    data: *mut *mut c_void,
    nbytes: *mut usize,
) -> dime_status {
    ffi_status! {
        let v = check_arg!(mut value as Value);
        check_arg!(data);
        check_arg!(nbytes);
        if !matches!(v, Value::Matrix(_)) {
            return Err(Fail::wrong_type("matrix", v.type_name()));
        }
        let Value::Matrix(m) = std::mem::replace(v, Value::Null) else {
            unreachable!("checked to be a matrix above");
        };
        // A boxed slice has capacity == length, so dime_data_free can
        // rebuild it from (pointer, length) alone.
        let block = m.into_bytes().into_boxed_slice();
        let len = block.len();
        write_out(data, Box::into_raw(block).cast());
        write_out(nbytes, len);
        Ok(())
    }
}

/// Releases a buffer obtained from `dime_matrix_take_data`; `nbytes` must be
/// the size that call reported. NULL is accepted and does nothing. Safe from
/// any thread (not the same buffer twice).
#[unsafe(no_mangle)]
pub extern "C" fn dime_data_free(data: *mut c_void, nbytes: usize) {
    ffi_value!((), {
        if !data.is_null() {
            let slice = std::ptr::slice_from_raw_parts_mut(data.cast::<u8>(), nbytes);
            // SAFETY: the caller's contract: (data, nbytes) came from
            // dime_matrix_take_data, i.e. from Box::<[u8]>::into_raw.
            let block = unsafe { Box::from_raw(slice) };
            // Large blocks go back to this thread's pool, for the next
            // large matrix it receives (see `buffer`).
            drop(crate::buffer::PooledBuf::from_vec(block.into_vec()));
        }
    })
}
