//! Turning C arguments (NUL-terminated strings, pointer + length arrays)
//! into Rust values, with NULL and UTF-8 checks, in one place.

use super::status::Fail;
use super::value::{dime_value, into_raw};
use crate::value::Value;
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

/// Reads an optional string argument: NULL means "none" (for a share
/// lock, the whole-share lock rather than a named one), so it is not a
/// NULL-argument error.
pub(crate) fn opt_str_arg<'a>(p: *const c_char, what: &str) -> Result<Option<&'a str>, Fail> {
    if p.is_null() {
        Ok(None)
    } else {
        str_arg(p, what).map(Some)
    }
}

/// How a share or space name reads in a message: the default one is `""`,
/// which would print as nothing.
pub(crate) fn shown_name(name: &str) -> &str {
    if name.is_empty() { "(default)" } else { name }
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
    // No buffer can be that large, and `from_raw_parts` would be undefined
    // behaviour: refuse it instead of trusting the caller's count.
    if len
        .checked_mul(std::mem::size_of::<T>())
        .is_none_or(|n| n > isize::MAX as usize)
    {
        return Err(Fail::invalid(format!(
            "argument '{what}' is too large: {len} elements cannot fit in memory"
        )));
    }
    // SAFETY: non-NULL, len > 0 and within isize::MAX bytes; validity is
    // the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// Copies a caller's buffer into a new `Vec`, turning an allocation
/// failure into an error: the size is the caller's, and `to_vec` would
/// abort the whole process (no `catch_unwind` stops an abort).
pub(crate) fn copy_arg<T: Copy>(src: &[T]) -> Result<Vec<T>, Fail> {
    let mut v = Vec::new();
    v.try_reserve_exact(src.len()).map_err(|e| {
        Fail::invalid(format!(
            "cannot allocate {} bytes for a copy: {e}",
            std::mem::size_of_val(src)
        ))
    })?;
    v.extend_from_slice(src);
    Ok(v)
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

/// Hands `value` to C through `out` (already checked non-NULL) as a new
/// value the caller owns and frees with `dime_value_free`.
pub(crate) fn write_value(out: *mut *mut dime_value, value: Value) {
    write_out(out, into_raw(value));
}

/// Writes `value` to the output pointer `out` (already checked non-NULL).
pub(crate) fn write_out<T>(out: *mut T, value: T) {
    // SAFETY: callers check `out` with check_arg! before doing any work;
    // writability is the caller's contract. `write` does not drop the old
    // (possibly uninitialised) contents.
    unsafe { out.write(value) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A count whose bytes cannot exist is refused before `from_raw_parts`
    /// (undefined behaviour there), whatever the pointer.
    #[test]
    fn impossible_lengths_are_refused() {
        let p = std::ptr::dangling::<u64>();
        for len in [usize::MAX, usize::MAX / 8 + 1, isize::MAX as usize / 8 + 1] {
            let e = slice_arg(p, len, "values").unwrap_err();
            assert_eq!(e.status, super::super::status::dime_status::InvalidArgument);
            assert!(e.message.contains("'values' is too large"), "{}", e.message);
        }
        assert_eq!(slice_arg(p, 0, "values").unwrap(), &[] as &[u64]);
        assert_eq!(copy_arg(&[1u8, 2, 3]).unwrap(), vec![1, 2, 3]);
    }

    /// NULL means "none" for an optional string and "the default" for a
    /// name, and the default name is shown readably in messages.
    #[test]
    fn null_strings_mean_none_or_the_default() {
        assert_eq!(opt_str_arg(std::ptr::null(), "key").unwrap(), None);
        assert_eq!(opt_str_arg(c"k".as_ptr(), "key").unwrap(), Some("k"));
        let bad = opt_str_arg(c"\xff".as_ptr(), "key").unwrap_err();
        assert!(
            bad.message.contains("'key' is not UTF-8"),
            "{}",
            bad.message
        );
        assert_eq!(name_arg(std::ptr::null(), "share").unwrap(), "");
        assert_eq!(shown_name(""), "(default)");
        assert_eq!(shown_name("jobs"), "jobs");
    }
}
