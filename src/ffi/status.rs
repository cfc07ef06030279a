//! Status codes, this thread's last error (message and errno), and the two
//! guards every export runs inside: one for calls that return a status, one
//! for calls that return a plain value. Both catch panics so none crosses
//! into C.

use std::cell::{Cell, RefCell};
use std::ffi::{CString, c_char, c_int};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// The result of every fallible call. `DIME_STATUS_OK` is 0; failures start
/// at 7001 so they cannot be mistaken for counts or booleans. Numbers are
/// never reused: a retired kind keeps its number.
///
/// On any status other than `DIME_STATUS_OK`, `dime_last_error()` describes
/// what went wrong, `dime_last_errno()` gives the operating system's error
/// number behind it (if any), and no output parameter was written.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum dime_status {
    /// Success.
    Ok = 0,
    /// A required pointer argument was NULL.
    NullArgument = 7001,
    /// An argument was malformed: an address that does not parse, a string
    /// that is not UTF-8, a shape that does not fit, an unknown class …
    InvalidArgument = 7002,
    /// The value is not of the kind the accessor reads (e.g. reading a
    /// string as a double).
    WrongType = 7003,
    /// An index past the end of a list, map or message list.
    OutOfRange = 7004,
    /// A map has no entry under the requested key.
    NotFound = 7005,
    /// Could not connect, or the connection broke. The client is unusable
    /// afterwards; free it and connect again. `dime_last_errno()` tells
    /// why: `ENOENT` (no such unix socket), `ECONNREFUSED`, `EACCES`,
    /// `ETIMEDOUT`, `EPIPE`, `ECONNRESET` (also when the server closed the
    /// connection) …
    ConnectionLost = 7101,
    /// The client was closed with `dime_close`.
    Closed = 7102,
    /// The server sent something that is not valid DiME. The client is
    /// unusable afterwards.
    ProtocolError = 7103,
    /// The server refused the request (e.g. sending to a group that does
    /// not exist); its message is in `dime_last_error()`. The client stays
    /// usable.
    ServerError = 7104,
    /// `dime_wait` ran past its timeout. The client stays usable.
    Timeout = 7105,
    /// A received payload could not be decoded (corrupt, or in another
    /// language's serialization such as pickle). The client stays usable.
    CodecError = 7106,
    /// The server does not support what was asked: it is an original DiME2
    /// server (its handshake announces no extensions) or does not announce
    /// the extension needed (shares, tuple spaces …); the message says
    /// which. Nothing was sent; the client stays usable.
    /// `dime_server_supports` asks beforehand.
    Unsupported = 7107,
    /// The server refused this client's credentials (at connect: no token,
    /// or a wrong one, for a server started with `--auth`), or a command
    /// its roles do not permit; the message says which. After a refused
    /// command nothing changed and the client stays usable.
    NotPermitted = 7108,
    /// A remote call's provider raised an error; `dime_future_error`
    /// gives its type, message and traceback.
    RemoteError = 7201,
    /// A remote call's provider went away while running it.
    ProviderLost = 7202,
    /// The remote call was cancelled with `dime_future_cancel`.
    Cancelled = 7203,
    /// No provider of the function took the call before its timeout (for
    /// file transfers: no file server of that name answered).
    NoProvider = 7204,
    /// `dime_stream_next`: the stream has ended; there are no more items.
    EndOfStream = 7205,
    /// A file or directory does not exist, or a pattern matched nothing.
    FileNotFound = 7301,
    /// Refused: a path outside the served directory, or an upload to a
    /// read-only file server.
    PermissionDenied = 7302,
    /// Received bytes did not match the sender's BLAKE3 hash.
    ChecksumMismatch = 7303,
    /// A file changed while it was being sent; run the transfer again.
    FileChanged = 7304,
    /// A file-system error (on either side); the message says which file.
    IoError = 7305,
    /// The library hit an internal bug and recovered. Please report it with
    /// the message from `dime_last_error()`.
    Panic = 7999,
}

/// A failure on its way to C: the status to return, the message for
/// `dime_last_error()` and the errno for `dime_last_errno()`.
#[derive(Debug)]
pub(crate) struct Fail {
    pub(crate) status: dime_status,
    pub(crate) message: String,
    /// The OS error number behind the failure; 0 if none.
    pub(crate) errno: i32,
}

impl Fail {
    /// A failure of `status` with `message`, not caused by the OS.
    pub(crate) fn new(status: dime_status, message: impl Into<String>) -> Fail {
        Fail {
            status,
            message: message.into(),
            errno: 0,
        }
    }

    /// The same failure, caused by OS error `errno` (0: none).
    pub(crate) fn with_errno(self, errno: i32) -> Fail {
        Fail { errno, ..self }
    }

    /// The failure for a NULL argument named `what`.
    pub(crate) fn null(what: &str) -> Fail {
        Fail::new(
            dime_status::NullArgument,
            format!("argument '{what}' is NULL"),
        )
    }

    /// An invalid argument.
    pub(crate) fn invalid(message: impl Into<String>) -> Fail {
        Fail::new(dime_status::InvalidArgument, message)
    }

    /// A value of the wrong kind: `want` was asked of a `got`.
    pub(crate) fn wrong_type(want: &str, got: &str) -> Fail {
        Fail::new(
            dime_status::WrongType,
            format!("expected a {want} value, found {got}"),
        )
    }
}

impl From<crate::client::Error> for Fail {
    fn from(e: crate::client::Error) -> Fail {
        use crate::client::Error;
        let status = match &e {
            Error::InvalidArgument(_) => dime_status::InvalidArgument,
            Error::Connect { .. } | Error::ConnectionLost(_) => dime_status::ConnectionLost,
            Error::Protocol(_) => dime_status::ProtocolError,
            Error::Server(_) => dime_status::ServerError,
            Error::Timeout => dime_status::Timeout,
            Error::Codec(_) => dime_status::CodecError,
            Error::Unsupported(_) => dime_status::Unsupported,
            Error::NotPermitted(_) => dime_status::NotPermitted,
        };
        Fail::new(status, e.to_string()).with_errno(e.os_error().unwrap_or(0))
    }
}

/// What the guarded body of a status-returning export produces.
pub(crate) type FfiResult = Result<(), Fail>;

thread_local! {
    // One message per thread, replaced on each failure: the pointer handed
    // out by dime_last_error stays valid until this thread's next failure.
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
    // The errno of the same failure (0: none), replaced along with it.
    static LAST_ERRNO: Cell<c_int> = const { Cell::new(0) };
}

/// Records `message` as this thread's last error, with OS error number
/// `errno` (0: the failure did not come from the OS).
pub(crate) fn set_last_error(message: &str, errno: i32) {
    // Interior NULs would cut the C string short; show them instead.
    let c = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    // try_with: nothing to record into while the thread is exiting.
    let _ = LAST_ERROR.try_with(|l| *l.borrow_mut() = c);
    let _ = LAST_ERRNO.try_with(|l| l.set(errno));
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    format!("internal error (panic): {what}")
}

/// Runs a status-returning export: catches panics, records failures.
pub(crate) fn guard_status(body: impl FnOnce() -> FfiResult) -> dime_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => dime_status::Ok,
        Ok(Err(fail)) => {
            set_last_error(&fail.message, fail.errno);
            fail.status
        }
        Err(payload) => {
            set_last_error(&panic_message(&*payload), 0);
            dime_status::Panic
        }
    }
}

/// Runs an export that returns a plain value: `default` on panic.
pub(crate) fn guard_value<T>(default: T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(v) => v,
        Err(payload) => {
            set_last_error(&panic_message(&*payload), 0);
            default
        }
    }
}

/// Wraps the body of a status-returning export (`Ok(())` at the end) in
/// `guard_status`.
macro_rules! ffi_status {
    ($($body:tt)*) => {
        $crate::ffi::status::guard_status(
            move || -> $crate::ffi::status::FfiResult { $($body)* },
        )
    };
}

/// Wraps the body of an export returning a plain value; `$default` is
/// returned if it panics.
macro_rules! ffi_value {
    ($default:expr, $($body:tt)*) => {
        $crate::ffi::status::guard_value($default, move || { $($body)* })
    };
}

/// Checks that a pointer argument is not NULL, returning
/// `DIME_STATUS_NULL_ARGUMENT` naming it otherwise. With `ref`/`mut`, also
/// turns it into a reference (of the pointee type given after `as`).
macro_rules! check_arg {
    ($p:ident) => {
        if $p.is_null() {
            return Err($crate::ffi::status::Fail::null(stringify!($p)));
        }
    };
    (ref $p:ident as $t:ty) => {{
        $crate::ffi::status::check_arg!($p);
        // SAFETY: non-NULL checked above; validity is the caller's contract.
        unsafe { &*($p as *const $t) }
    }};
    (mut $p:ident as $t:ty) => {{
        $crate::ffi::status::check_arg!($p);
        // SAFETY: non-NULL checked above; validity and exclusive access are
        // the caller's contract.
        unsafe { &mut *($p as *mut $t) }
    }};
}

pub(crate) use {check_arg, ffi_status, ffi_value};

/// This thread's message for the most recent failed call, as a
/// NUL-terminated UTF-8 string; `""` if no call has failed on this thread.
///
/// Never NULL. The string is owned by the library and stays valid until the
/// next call on this thread that fails (to be safe: until the next `dime_*`
/// call on this thread). Calls that succeed leave it unchanged, so read it
/// only right after a call returned a failure. Each thread has its own.
#[unsafe(no_mangle)]
pub extern "C" fn dime_last_error() -> *const c_char {
    static EMPTY: &[u8] = b"\0";
    ffi_value!(
        EMPTY.as_ptr().cast(),
        LAST_ERROR
            .try_with(|l| l.borrow().as_ptr())
            .unwrap_or(EMPTY.as_ptr().cast())
    )
}

/// The operating system's error number (`errno`: `ENOENT`, `ECONNREFUSED`,
/// `EACCES`, `ETIMEDOUT`, `EPIPE`, `ECONNRESET` … from `<errno.h>`) behind
/// this thread's most recent failed call, or 0 if that failure did not come
/// from the operating system (a bad argument, a server refusal, a timeout
/// of `dime_wait`, a closed client, a host name that did not resolve …).
///
/// Set and kept exactly like `dime_last_error()`: read it right after a
/// call returned a failure. Failures with `DIME_STATUS_CONNECTION_LOST`
/// carry one whenever the OS reported one; a connection the server closed
/// reports `ECONNRESET`, and later calls on a client whose connection
/// broke repeat the errno of the original failure. Each thread has its own.
#[unsafe(no_mangle)]
pub extern "C" fn dime_last_errno() -> c_int {
    ffi_value!(0, LAST_ERRNO.try_with(Cell::get).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_become_a_status_and_a_message() {
        let st = guard_status(|| panic!("boom"));
        assert_eq!(st, dime_status::Panic);
        let msg = unsafe { std::ffi::CStr::from_ptr(dime_last_error()) };
        assert!(msg.to_str().unwrap().contains("boom"));
    }

    #[test]
    fn failures_set_the_message_and_success_keeps_it() {
        let st = guard_status(|| Err(Fail::invalid("bad thing")));
        assert_eq!(st, dime_status::InvalidArgument);
        assert_eq!(guard_status(|| Ok(())), dime_status::Ok);
        let msg = unsafe { std::ffi::CStr::from_ptr(dime_last_error()) };
        assert_eq!(msg.to_str().unwrap(), "bad thing");
        assert_eq!(dime_last_errno(), 0);
    }

    #[test]
    fn the_errno_goes_with_its_failure_and_is_replaced_by_the_next() {
        let lost =
            || Fail::new(dime_status::ConnectionLost, "connection lost").with_errno(libc::EPIPE);
        assert_eq!(guard_status(|| Err(lost())), dime_status::ConnectionLost);
        assert_eq!(guard_status(|| Ok(())), dime_status::Ok);
        assert_eq!(dime_last_errno(), libc::EPIPE);
        guard_status(|| Err(Fail::invalid("not the OS")));
        assert_eq!(dime_last_errno(), 0);
    }

    #[test]
    fn os_errors_of_the_client_keep_their_errno() {
        use crate::client::Error;
        use std::io;
        let refused = Error::Connect {
            address: "tcp:127.0.0.1:1".into(),
            source: io::Error::from_raw_os_error(libc::ECONNREFUSED),
        };
        let fail = Fail::from(refused);
        assert_eq!(fail.status, dime_status::ConnectionLost);
        assert_eq!(fail.errno, libc::ECONNREFUSED);
        assert!(
            fail.message
                .starts_with("cannot connect to tcp:127.0.0.1:1: "),
            "{}",
            fail.message
        );
        let closed = Fail::from(Error::ConnectionLost(io::ErrorKind::UnexpectedEof.into()));
        assert_eq!(closed.errno, libc::ECONNRESET);
        assert_eq!(Fail::from(Error::Timeout).errno, 0);
    }
}
