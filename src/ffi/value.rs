//! `dime_value`: the opaque handle for one value of the type table, with
//! its kind, scalar and string constructors and accessors, copy and free.
//! Matrices live in `matrix.rs`, lists and maps in `container.rs`.
//!
//! Threads: a `dime_value` is not locked. Functions taking
//! `const dime_value *` only read and may run on several threads at once;
//! functions taking `dime_value *` need exclusive access. A value may be
//! created on one thread and used or freed on another.

use super::args::{copy_arg, slice_arg, write_out};
use super::status::{Fail, FfiResult, check_arg, dime_status, ffi_status, ffi_value};
use crate::value::{Complex, Value};
use std::ffi::c_char;

/// An opaque value of the type table (null, bool, integer and float
/// scalars, complex, N-d matrix, string, list, map).
///
/// A `dime_value *` returned by a `dime_value_new_*` or `*_take` function
/// is owned by the caller and must be given to `dime_value_free` (or moved
/// into a list or map). A `const dime_value *` returned by a `*_get` /
/// `*_at` accessor is borrowed from its container and must not be freed.
#[allow(non_camel_case_types)]
pub struct dime_value {
    // Never instantiated: pointers to this type are really `*Value`, so
    // children of lists and maps can be handed out without wrapping.
    _private: [u8; 0],
}

/// What a value is, as returned by `dime_value_kind`. Scalar kinds are
/// numbered as their dimeb tag.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum dime_kind {
    /// The argument was NULL (not a kind of value).
    Invalid = -1,
    /// Null: MATLAB `[]`, Python `None`.
    Null = 0,
    /// Logical scalar.
    Bool = 1,
    /// int8 scalar.
    Int8 = 3,
    /// int16 scalar.
    Int16 = 4,
    /// int32 scalar.
    Int32 = 5,
    /// int64 scalar.
    Int64 = 6,
    /// uint8 scalar.
    Uint8 = 7,
    /// uint16 scalar.
    Uint16 = 8,
    /// uint32 scalar.
    Uint32 = 9,
    /// uint64 scalar.
    Uint64 = 10,
    /// single (float) scalar.
    Single = 11,
    /// double scalar.
    Double = 12,
    /// Complex single scalar.
    ComplexSingle = 13,
    /// Complex double scalar.
    ComplexDouble = 14,
    /// N-dimensional matrix of any class (see `dime_matrix_class`).
    Matrix = 16,
    /// UTF-8 string.
    String = 32,
    /// List (MATLAB cell array, Python list).
    List = 33,
    /// Map (MATLAB struct or containers.Map, Python dict).
    Map = 34,
}

/// Moves `v` to the heap and hands ownership to C.
pub(crate) fn into_raw(v: Value) -> *mut dime_value {
    Box::into_raw(Box::new(v)).cast()
}

/// A borrowed C view of a value owned elsewhere.
pub(crate) fn as_raw(v: &Value) -> *const dime_value {
    (v as *const Value).cast()
}

/// Takes back ownership of a value C handed in (pointer checked non-NULL).
pub(crate) fn from_raw(v: *mut dime_value) -> Value {
    // SAFETY: the caller's contract: `v` came from `into_raw` and is owned
    // by the caller, who gives it up here.
    *unsafe { Box::from_raw(v.cast::<Value>()) }
}

fn kind_of(v: &Value) -> dime_kind {
    match v {
        Value::Null => dime_kind::Null,
        Value::Bool(_) => dime_kind::Bool,
        Value::I8(_) => dime_kind::Int8,
        Value::I16(_) => dime_kind::Int16,
        Value::I32(_) => dime_kind::Int32,
        Value::I64(_) => dime_kind::Int64,
        Value::U8(_) => dime_kind::Uint8,
        Value::U16(_) => dime_kind::Uint16,
        Value::U32(_) => dime_kind::Uint32,
        Value::U64(_) => dime_kind::Uint64,
        Value::F32(_) => dime_kind::Single,
        Value::F64(_) => dime_kind::Double,
        Value::C32(_) => dime_kind::ComplexSingle,
        Value::C64(_) => dime_kind::ComplexDouble,
        Value::Matrix(_) => dime_kind::Matrix,
        Value::String(_) => dime_kind::String,
        Value::List(_) => dime_kind::List,
        Value::Map(_) => dime_kind::Map,
    }
}

/// The kind of `value`, or `DIME_KIND_INVALID` if `value` is NULL.
///
/// `value` is only read; safe to call from several threads at once.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_kind(value: *const dime_value) -> dime_kind {
    ffi_value!(dime_kind::Invalid, {
        // SAFETY: NULL is handled; validity is the caller's contract.
        match unsafe { value.cast::<Value>().as_ref() } {
            Some(v) => kind_of(v),
            None => dime_kind::Invalid,
        }
    })
}

/// Frees a value the caller owns. NULL is accepted and does nothing.
///
/// Must not be given a borrowed pointer (from `*_get`/`*_at` accessors or
/// `dime_messages_get`), a value already moved into a list or map, or a
/// value that another thread is using. A borrowed matrix's buffer may be
/// released by the caller once this returns.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_free(value: *mut dime_value) {
    ffi_value!((), {
        if !value.is_null() {
            drop(from_raw(value));
        }
    })
}

/// Deep-copies `value` into `*out`, a new value owned by the caller (free
/// it with `dime_value_free`). Matrices are copied too, including borrowed
/// ones (the copy owns its elements and does not refer to the caller's
/// buffer).
///
/// Fails with `DIME_STATUS_NULL_ARGUMENT` if either pointer is NULL.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_clone(
    value: *const dime_value,
    out: *mut *mut dime_value,
) -> dime_status {
    ffi_status! {
        let v = check_arg!(ref value as Value);
        check_arg!(out);
        write_out(out, into_raw(v.clone()));
        Ok(())
    }
}

// ----------------------------------------------------------------- scalars
//
// cbindgen reads the source without expanding macros, so every exported
// function is written out; the shared work is in `get_scalar`.

/// Reads a scalar of one kind out of `value` into `out`.
fn get_scalar<T>(
    value: *const dime_value,
    out: *mut T,
    want: &str,
    read: impl FnOnce(&Value) -> Option<T>,
) -> FfiResult {
    let v = check_arg!(ref value as Value);
    check_arg!(out);
    let x = read(v).ok_or_else(|| Fail::wrong_type(want, v.type_name()))?;
    write_out(out, x);
    Ok(())
}

/// A new null value (MATLAB `[]`, Python `None`), owned by the caller.
/// Never NULL; free with `dime_value_free`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_new_null() -> *mut dime_value {
    ffi_value!(std::ptr::null_mut(), into_raw(Value::Null))
}

/// A new logical scalar, owned by the caller. Never NULL; free with
/// `dime_value_free`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_new_bool(x: bool) -> *mut dime_value {
    ffi_value!(std::ptr::null_mut(), into_raw(Value::Bool(x)))
}

/// A new int8 scalar, owned by the caller. Never NULL; free with
/// `dime_value_free`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_new_int8(x: i8) -> *mut dime_value {
    ffi_value!(std::ptr::null_mut(), into_raw(Value::I8(x)))
}

/// A new int16 scalar, owned by the caller. Never NULL; free with
/// `dime_value_free`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_new_int16(x: i16) -> *mut dime_value {
    ffi_value!(std::ptr::null_mut(), into_raw(Value::I16(x)))
}

/// A new int32 scalar, owned by the caller. Never NULL; free with
/// `dime_value_free`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_new_int32(x: i32) -> *mut dime_value {
    ffi_value!(std::ptr::null_mut(), into_raw(Value::I32(x)))
}

/// A new int64 scalar (Python `int`), owned by the caller. Never NULL; free
/// with `dime_value_free`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_new_int64(x: i64) -> *mut dime_value {
    ffi_value!(std::ptr::null_mut(), into_raw(Value::I64(x)))
}

/// A new uint8 scalar, owned by the caller. Never NULL; free with
/// `dime_value_free`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_new_uint8(x: u8) -> *mut dime_value {
    ffi_value!(std::ptr::null_mut(), into_raw(Value::U8(x)))
}

/// A new uint16 scalar, owned by the caller. Never NULL; free with
/// `dime_value_free`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_new_uint16(x: u16) -> *mut dime_value {
    ffi_value!(std::ptr::null_mut(), into_raw(Value::U16(x)))
}

/// A new uint32 scalar, owned by the caller. Never NULL; free with
/// `dime_value_free`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_new_uint32(x: u32) -> *mut dime_value {
    ffi_value!(std::ptr::null_mut(), into_raw(Value::U32(x)))
}

/// A new uint64 scalar, owned by the caller. Never NULL; free with
/// `dime_value_free`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_new_uint64(x: u64) -> *mut dime_value {
    ffi_value!(std::ptr::null_mut(), into_raw(Value::U64(x)))
}

/// A new single-precision scalar, owned by the caller. Never NULL; free
/// with `dime_value_free`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_new_single(x: f32) -> *mut dime_value {
    ffi_value!(std::ptr::null_mut(), into_raw(Value::F32(x)))
}

/// A new double scalar (Python `float`), owned by the caller. Never NULL;
/// free with `dime_value_free`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_new_double(x: f64) -> *mut dime_value {
    ffi_value!(std::ptr::null_mut(), into_raw(Value::F64(x)))
}

/// A new complex single scalar `re + im·i`, owned by the caller. Never
/// NULL; free with `dime_value_free`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_new_complex_single(re: f32, im: f32) -> *mut dime_value {
    ffi_value!(
        std::ptr::null_mut(),
        into_raw(Value::C32(Complex { re, im }))
    )
}

/// A new complex double scalar `re + im·i` (Python `complex`), owned by the
/// caller. Never NULL; free with `dime_value_free`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_new_complex_double(re: f64, im: f64) -> *mut dime_value {
    ffi_value!(
        std::ptr::null_mut(),
        into_raw(Value::C64(Complex { re, im }))
    )
}

/// Reads a logical scalar into `*out`. `DIME_STATUS_WRONG_TYPE` if `value`
/// is not `DIME_KIND_BOOL`; `DIME_STATUS_NULL_ARGUMENT` if a pointer is NULL.
/// `value` is only read.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_get_bool(value: *const dime_value, out: *mut bool) -> dime_status {
    ffi_status! { get_scalar(value, out, "bool", |v| match v { Value::Bool(x) => Some(*x), _ => None }) }
}

/// Reads an int8 scalar into `*out`. `DIME_STATUS_WRONG_TYPE` unless `value`
/// is exactly `DIME_KIND_INT8` (no conversions between classes);
/// `DIME_STATUS_NULL_ARGUMENT` if a pointer is NULL. `value` is only read.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_get_int8(value: *const dime_value, out: *mut i8) -> dime_status {
    ffi_status! { get_scalar(value, out, "int8", |v| match v { Value::I8(x) => Some(*x), _ => None }) }
}

/// Reads an int16 scalar into `*out`. `DIME_STATUS_WRONG_TYPE` unless
/// `value` is exactly `DIME_KIND_INT16`; `DIME_STATUS_NULL_ARGUMENT` if a
/// pointer is NULL. `value` is only read.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_get_int16(value: *const dime_value, out: *mut i16) -> dime_status {
    ffi_status! { get_scalar(value, out, "int16", |v| match v { Value::I16(x) => Some(*x), _ => None }) }
}

/// Reads an int32 scalar into `*out`. `DIME_STATUS_WRONG_TYPE` unless
/// `value` is exactly `DIME_KIND_INT32`; `DIME_STATUS_NULL_ARGUMENT` if a
/// pointer is NULL. `value` is only read.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_get_int32(value: *const dime_value, out: *mut i32) -> dime_status {
    ffi_status! { get_scalar(value, out, "int32", |v| match v { Value::I32(x) => Some(*x), _ => None }) }
}

/// Reads an int64 scalar into `*out`. `DIME_STATUS_WRONG_TYPE` unless
/// `value` is exactly `DIME_KIND_INT64`; `DIME_STATUS_NULL_ARGUMENT` if a
/// pointer is NULL. `value` is only read.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_get_int64(value: *const dime_value, out: *mut i64) -> dime_status {
    ffi_status! { get_scalar(value, out, "int64", |v| match v { Value::I64(x) => Some(*x), _ => None }) }
}

/// Reads a uint8 scalar into `*out`. `DIME_STATUS_WRONG_TYPE` unless
/// `value` is exactly `DIME_KIND_UINT8`; `DIME_STATUS_NULL_ARGUMENT` if a
/// pointer is NULL. `value` is only read.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_get_uint8(value: *const dime_value, out: *mut u8) -> dime_status {
    ffi_status! { get_scalar(value, out, "uint8", |v| match v { Value::U8(x) => Some(*x), _ => None }) }
}

/// Reads a uint16 scalar into `*out`. `DIME_STATUS_WRONG_TYPE` unless
/// `value` is exactly `DIME_KIND_UINT16`; `DIME_STATUS_NULL_ARGUMENT` if a
/// pointer is NULL. `value` is only read.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_get_uint16(value: *const dime_value, out: *mut u16) -> dime_status {
    ffi_status! { get_scalar(value, out, "uint16", |v| match v { Value::U16(x) => Some(*x), _ => None }) }
}

/// Reads a uint32 scalar into `*out`. `DIME_STATUS_WRONG_TYPE` unless
/// `value` is exactly `DIME_KIND_UINT32`; `DIME_STATUS_NULL_ARGUMENT` if a
/// pointer is NULL. `value` is only read.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_get_uint32(value: *const dime_value, out: *mut u32) -> dime_status {
    ffi_status! { get_scalar(value, out, "uint32", |v| match v { Value::U32(x) => Some(*x), _ => None }) }
}

/// Reads a uint64 scalar into `*out`. `DIME_STATUS_WRONG_TYPE` unless
/// `value` is exactly `DIME_KIND_UINT64`; `DIME_STATUS_NULL_ARGUMENT` if a
/// pointer is NULL. `value` is only read.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_get_uint64(value: *const dime_value, out: *mut u64) -> dime_status {
    ffi_status! { get_scalar(value, out, "uint64", |v| match v { Value::U64(x) => Some(*x), _ => None }) }
}

/// Reads a single scalar into `*out`. `DIME_STATUS_WRONG_TYPE` unless
/// `value` is exactly `DIME_KIND_SINGLE`; `DIME_STATUS_NULL_ARGUMENT` if a
/// pointer is NULL. `value` is only read.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_get_single(value: *const dime_value, out: *mut f32) -> dime_status {
    ffi_status! { get_scalar(value, out, "single", |v| match v { Value::F32(x) => Some(*x), _ => None }) }
}

/// Reads a double scalar into `*out`. `DIME_STATUS_WRONG_TYPE` unless
/// `value` is exactly `DIME_KIND_DOUBLE`; `DIME_STATUS_NULL_ARGUMENT` if a
/// pointer is NULL. `value` is only read.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_get_double(value: *const dime_value, out: *mut f64) -> dime_status {
    ffi_status! { get_scalar(value, out, "double", |v| match v { Value::F64(x) => Some(*x), _ => None }) }
}

/// Reads a complex single scalar into `*re` and `*im`.
/// `DIME_STATUS_WRONG_TYPE` unless `value` is `DIME_KIND_COMPLEX_SINGLE`;
/// `DIME_STATUS_NULL_ARGUMENT` if a pointer is NULL. `value` is only read.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_get_complex_single(
    value: *const dime_value,
    re: *mut f32,
    im: *mut f32,
) -> dime_status {
    ffi_status! {
        check_arg!(im);
        let c = match (check_arg!(ref value as Value), re.is_null()) {
            (Value::C32(c), false) => *c,
            (_, true) => return Err(Fail::null("re")),
            (v, _) => return Err(Fail::wrong_type("complex single", v.type_name())),
        };
        write_out(re, c.re);
        write_out(im, c.im);
        Ok(())
    }
}

/// Reads a complex double scalar into `*re` and `*im`.
/// `DIME_STATUS_WRONG_TYPE` unless `value` is `DIME_KIND_COMPLEX_DOUBLE`;
/// `DIME_STATUS_NULL_ARGUMENT` if a pointer is NULL. `value` is only read.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_get_complex_double(
    value: *const dime_value,
    re: *mut f64,
    im: *mut f64,
) -> dime_status {
    ffi_status! {
        check_arg!(im);
        let c = match (check_arg!(ref value as Value), re.is_null()) {
            (Value::C64(c), false) => *c,
            (_, true) => return Err(Fail::null("re")),
            (v, _) => return Err(Fail::wrong_type("complex double", v.type_name())),
        };
        write_out(re, c.re);
        write_out(im, c.im);
        Ok(())
    }
}

// ----------------------------------------------------------------- strings

/// Creates a string value from `len` bytes of UTF-8 at `utf8` (copied; no
/// NUL terminator needed, embedded NULs are kept) and writes it to `*out`,
/// owned by the caller (free with `dime_value_free`).
///
/// `utf8` may be NULL only when `len` is 0. `DIME_STATUS_INVALID_ARGUMENT`
/// if the bytes are not valid UTF-8, or if `len` exceeds 4294967295 (the
/// wire's u32 string length; refused before any byte is read) or cannot be
/// allocated; nothing is created then.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_new_string(
    utf8: *const c_char,
    len: usize,
    out: *mut *mut dime_value,
) -> dime_status {
    ffi_status! {
        check_arg!(out);
        // Checked before the bytes are read (validating UTF-8 reads them
        // all): a length the wire cannot carry is a caller's mistake, and
        // the buffer behind it is almost certainly not that long.
        if len > u32::MAX as usize {
            return Err(Fail::invalid(format!(
                "string of {len} bytes is too large: the wire carries at most {}",
                u32::MAX
            )));
        }
        let bytes = copy_arg(slice_arg(utf8.cast::<u8>(), len, "utf8")?)?;
        let s = String::from_utf8(bytes).map_err(|e| {
            Fail::invalid(format!("string is not valid UTF-8: {}", e.utf8_error()))
        })?;
        write_out(out, into_raw(Value::String(s)));
        Ok(())
    }
}

/// Points `*data` at the UTF-8 bytes of a string value and writes their
/// count to `*len`. The bytes are **not** NUL-terminated and may contain
/// NULs; they belong to `value` and stay valid until it is freed or
/// modified. `DIME_STATUS_WRONG_TYPE` unless `value` is `DIME_KIND_STRING`;
/// `DIME_STATUS_NULL_ARGUMENT` if a pointer is NULL. `value` is only read.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_get_string(
    value: *const dime_value,
    data: *mut *const c_char,
    len: *mut usize,
) -> dime_status {
    ffi_status! {
        let v = check_arg!(ref value as Value);
        check_arg!(data);
        check_arg!(len);
        let Value::String(s) = v else {
            return Err(Fail::wrong_type("string", v.type_name()));
        };
        write_out(data, s.as_ptr().cast());
        write_out(len, s.len());
        Ok(())
    }
}
