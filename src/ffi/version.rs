//! The library's version, for comparing against the header's
//! `DIME_VERSION_*` macros at run time.

use std::ffi::c_char;

/// The library's version as a NUL-terminated string, e.g. `"0.1.0"`; equal
/// to `DIME_VERSION_STRING` of the header it was built with.
///
/// Never NULL; the string is static (never freed, valid forever). Safe to
/// call from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn dime_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}
