//! Turning C arguments (NUL-terminated strings, pointer + length arrays)
//! into Rust values, with NULL and UTF-8 checks, in one place.

use super::status::Fail;
use std::ffi::{CStr, c_char};
use std::time::Duration;

/// Reads a NUL-terminated UTF-8 string argument named `what`.
///
/// The caller guarantees `p` is NULL or a valid NUL-terminated string that
/// outlives the returned borrow.
pub(crate) fn str_arg<'a>(p: *const c_char, what: &str) -> Result<&'a str, Fail> {
    if p.is_null() {
        return Err(Fail::null(what));
    }
    // SAFETY: non-NULL; NUL termination and lifetime are the caller's contract.
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str()
        .map_err(|e| Fail::invalid(format!("argument '{what}' is not UTF-8: {e}")))
}

/// Reads the name of a share or tuple space: NULL and `""` both mean the
/// default one, so C callers need not spell out an empty string.
pub(crate) fn name_arg<'a>(p: *const c_char, what: &str) -> Result<&'a str, Fail> {
    if p.is_null() {
        Ok("")
    } else {
        str_arg(p, what)
    }
}

/// A C timeout in milliseconds: any negative number (`DIME_WAIT_FOREVER`)
/// means no limit, 0 means "only if it can be done at once".
pub(crate) fn timeout_arg(ms: i64) -> Option<Duration> {
    u64::try_from(ms).ok().map(Duration::from_millis)
}

/// Borrows `len` elements at `p` as a slice; `p` may be NULL only when
/// `len == 0`.
///
/// The caller guarantees `p` points to `len` valid elements otherwise.
pub(crate) fn slice_arg<'a, T>(p: *const T, len: usize, what: &str) -> Result<&'a [T], Fail> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(Fail::null(what));
    }
    // SAFETY: non-NULL and len > 0; validity is the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// Reads `count` NUL-terminated UTF-8 strings from an array of pointers.
pub(crate) fn str_array_arg<'a>(
    p: *const *const c_char,
    count: usize,
    what: &str,
) -> Result<Vec<&'a str>, Fail> {
    slice_arg(p, count, what)?
        .iter()
        .enumerate()
        .map(|(i, s)| str_arg(*s, &format!("{what}[{i}]")))
        .collect()
}

/// Writes `value` to the output pointer `out` (already checked non-NULL).
pub(crate) fn write_out<T>(out: *mut T, value: T) {
    // SAFETY: callers check `out` with check_arg! before doing any work;
    // writability is the caller's contract. `write` does not drop the old
    // (possibly uninitialised) contents.
    unsafe { out.write(value) }
}
