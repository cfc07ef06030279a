//! File transfer from C (docs/files.md): `dime_files_serve` (or
//! `dime_files_serve_embedded`, which also runs the broker) exposes a
//! directory tree; `dime_files_download` and `dime_files_upload` move the
//! files a selection names over parallel connections, calling a progress
//! callback on the calling thread.

use super::args::{opt_str_arg, str_arg, str_array_arg, write_out};
use super::status::{Fail, check_arg, dime_status, ffi_status, ffi_value};
use crate::files::{self, Error, FileServer, Selection, ServeOptions, TransferOptions};
use crate::transport::Address;
use std::ffi::{CString, c_char, c_void};
use std::path::Path;

/// The selection is a list of paths (files or directories).
pub const DIME_FILES_PATHS: i32 = 0;
/// The selection is one glob (`*`, `?`, `[…]`, `**`).
pub const DIME_FILES_GLOB: i32 = 1;
/// The selection is one regular expression, searched for in each file's
/// path from the root.
pub const DIME_FILES_REGEX: i32 = 2;

/// A running file server, from `dime_files_serve` or
/// `dime_files_serve_embedded`; stop and release it with
/// `dime_files_server_stop`.
#[allow(non_camel_case_types)]
pub struct dime_files_server {
    server: FileServer,
    /// The embedded broker's addresses, for `dime_files_server_address`.
    addresses: Vec<CString>,
}

/// How far a transfer has come, as the progress callback sees it.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy)]
pub struct dime_files_progress {
    /// Files complete (including those already at the destination).
    pub files_done: u64,
    /// Files in the transfer.
    pub files_total: u64,
    /// Bytes complete (including verified pieces of earlier runs).
    pub bytes_done: u64,
    /// Bytes in the transfer.
    pub bytes_total: u64,
    /// Seconds since the transfer started.
    pub elapsed: f64,
    /// Bytes sent per second in this run.
    pub rate: f64,
    /// Estimated seconds left; negative while unknown.
    pub eta: f64,
}

/// How a transfer runs; pass NULL for the defaults (all of them), or set
/// a field to 0 for its default.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, Default)]
pub struct dime_files_options {
    /// Parallel connections to the broker (default 4).
    pub connections: usize,
    /// Calls in flight per connection (default 3).
    pub in_flight: usize,
    /// Piece size in bytes: a power of two from 1 KiB to 64 MiB (default
    /// 2 MiB). Files up to this size travel in one call.
    pub piece: u64,
    /// Milliseconds between progress callbacks (default 100).
    pub progress_interval_ms: u64,
    /// Milliseconds to wait for the broker and the file server to answer
    /// at all before failing (default 5000).
    pub server_timeout_ms: u64,
}

/// What a finished transfer did.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, Default)]
pub struct dime_files_summary {
    /// Files that arrived in this run.
    pub files: u64,
    /// Files already complete at the destination, not sent again.
    pub skipped: u64,
    /// Bytes sent in this run.
    pub bytes: u64,
    /// Bytes of an interrupted transfer's verified pieces, not sent again.
    pub resumed: u64,
    /// Seconds the transfer took.
    pub elapsed: f64,
}

/// A progress callback, called on the thread that started the transfer
/// (every 100 ms and once at the end) with `progress` borrowed for the
/// call. Return true to go on, false to cancel: the transfer then fails
/// with `DIME_STATUS_CANCELLED`, leaving part files a rerun resumes.
#[allow(non_camel_case_types)]
pub type dime_files_progress_fn =
    Option<extern "C" fn(userdata: *mut c_void, progress: *const dime_files_progress) -> bool>;

impl From<Error> for Fail {
    fn from(e: Error) -> Fail {
        let status = match &e {
            Error::NotFound(_) => dime_status::FileNotFound,
            Error::PermissionDenied(_) => dime_status::PermissionDenied,
            Error::InvalidInput(_) => dime_status::InvalidArgument,
            Error::Checksum(_) => dime_status::ChecksumMismatch,
            Error::Changed(_) => dime_status::FileChanged,
            Error::Io(_) => dime_status::IoError,
            Error::NoServer(_) => dime_status::NoProvider,
            Error::Connection(_) => dime_status::ConnectionLost,
            Error::Cancelled => dime_status::Cancelled,
        };
        Fail::new(status, e.to_string())
    }
}

fn serve_options(name: *const c_char, writable: bool) -> Result<ServeOptions, Fail> {
    Ok(ServeOptions {
        name: opt_str_arg(name, "name")?.unwrap_or("files").to_owned(),
        writable,
        ..ServeOptions::default()
    })
}

fn wrap(server: FileServer, out: *mut *mut dime_files_server) {
    let addresses = server
        .addresses()
        .into_iter()
        .map(|a| CString::new(a).unwrap_or_default())
        .collect();
    write_out(
        out,
        Box::into_raw(Box::new(dime_files_server { server, addresses })),
    );
}

/// Serves the directory `root` as file server `name` (NULL: `"files"`)
/// through the broker at `address`, read-only unless `writable`. Returns
/// once its functions are registered; worker threads serve until
/// `dime_files_server_stop`. On success writes the new server to `*out`,
/// owned by the caller. `DIME_STATUS_FILE_NOT_FOUND` if `root` is not a
/// directory, `DIME_STATUS_CONNECTION_LOST` if the broker cannot be
/// reached (within 5 s).
#[unsafe(no_mangle)]
pub extern "C" fn dime_files_serve(
    address: *const c_char,
    root: *const c_char,
    name: *const c_char,
    writable: bool,
    out: *mut *mut dime_files_server,
) -> dime_status {
    ffi_status! {
        let address = str_arg(address, "address")?;
        let root = str_arg(root, "root")?;
        check_arg!(out);
        let server = FileServer::start(Path::new(root), address, serve_options(name, writable)?)?;
        wrap(server, out);
        Ok(())
    }
}

/// Like `dime_files_serve`, but runs a broker in this process listening on
/// the `n` addresses in `listen` (port 0 picks a free port; see
/// `dime_files_server_address`), so transfers are one hop.
#[unsafe(no_mangle)]
pub extern "C" fn dime_files_serve_embedded(
    listen: *const *const c_char,
    n: usize,
    root: *const c_char,
    name: *const c_char,
    writable: bool,
    out: *mut *mut dime_files_server,
) -> dime_status {
    ffi_status! {
        let listen = str_array_arg(listen, n, "listen")?
            .into_iter()
            .map(|a| Address::parse(a).map_err(Fail::invalid))
            .collect::<Result<Vec<_>, _>>()?;
        let root = str_arg(root, "root")?;
        check_arg!(out);
        let server = FileServer::start_embedded(Path::new(root), &listen, serve_options(name, writable)?)?;
        wrap(server, out);
        Ok(())
    }
}

/// The `i`-th address the embedded broker listens on, as bound, borrowed
/// until `dime_files_server_stop`; NULL if `server` is NULL, has no
/// embedded broker, or `i` is out of range.
#[unsafe(no_mangle)]
pub extern "C" fn dime_files_server_address(
    server: *const dime_files_server,
    i: usize,
) -> *const c_char {
    ffi_value!(std::ptr::null(), {
        if server.is_null() {
            return std::ptr::null();
        }
        // SAFETY: non-NULL; validity is the caller's contract.
        let s = unsafe { &*server };
        s.addresses.get(i).map_or(std::ptr::null(), |a| a.as_ptr())
    })
}

/// Stops the file server (calls it has taken finish first), stops its
/// embedded broker if any, and frees the handle. NULL does nothing.
#[unsafe(no_mangle)]
pub extern "C" fn dime_files_server_stop(server: *mut dime_files_server) -> dime_status {
    ffi_status! {
        if server.is_null() {
            return Ok(());
        }
        // SAFETY: the caller's contract: from dime_files_serve*, not used again.
        let mut s = unsafe { Box::from_raw(server) };
        s.server.close();
        Ok(())
    }
}

/// The selection `kind` and its `n` strings describe.
fn selection(kind: i32, what: *const *const c_char, n: usize) -> Result<Selection, Fail> {
    let items = str_array_arg(what, n, "what")?;
    let one = |what: &str| match items.as_slice() {
        [one] => Ok((*one).to_owned()),
        _ => Err(Fail::invalid(format!(
            "a {what} selection takes exactly one pattern"
        ))),
    };
    match kind {
        DIME_FILES_PATHS if !items.is_empty() => Ok(Selection::Paths(
            items.iter().map(|s| (*s).to_owned()).collect(),
        )),
        DIME_FILES_PATHS => Err(Fail::invalid("give at least one path")),
        DIME_FILES_GLOB => Ok(Selection::Glob(one("glob")?)),
        DIME_FILES_REGEX => Ok(Selection::Regex(one("regex")?)),
        other => Err(Fail::invalid(format!(
            "{other} is not a selection kind (DIME_FILES_PATHS, _GLOB or _REGEX)"
        ))),
    }
}

fn transfer_options(options: *const dime_files_options) -> TransferOptions {
    let mut t = TransferOptions::default();
    if options.is_null() {
        return t;
    }
    // SAFETY: non-NULL; validity is the caller's contract.
    let o = unsafe { *options };
    let pick = |v: u64, default: u64| if v == 0 { default } else { v };
    t.connections = pick(o.connections as u64, t.connections as u64) as usize;
    t.in_flight = pick(o.in_flight as u64, t.in_flight as u64) as usize;
    t.piece = pick(o.piece, t.piece);
    let ms = |v: u64, d: std::time::Duration| {
        std::time::Duration::from_millis(pick(v, d.as_millis() as u64))
    };
    t.progress_interval = ms(o.progress_interval_ms, t.progress_interval);
    t.wait_for_server = ms(o.server_timeout_ms, t.wait_for_server);
    t
}

/// Runs `transfer` with the C callback as its progress callback.
fn with_progress(
    progress: dime_files_progress_fn,
    userdata: *mut c_void,
    summary: *mut dime_files_summary,
    transfer: impl FnOnce(Option<files::client::ProgressFn<'_>>) -> files::Result<files::Summary>,
) -> Result<(), Fail> {
    let mut call = |p: &files::Progress| -> bool {
        let c = dime_files_progress {
            files_done: p.files_done,
            files_total: p.files_total,
            bytes_done: p.bytes_done,
            bytes_total: p.bytes_total,
            elapsed: p.elapsed.as_secs_f64(),
            rate: p.rate,
            eta: p.eta.map_or(-1.0, |d| d.as_secs_f64()),
        };
        progress.is_none_or(|f| f(userdata, &c))
    };
    let s = transfer(Some(&mut call))?;
    if !summary.is_null() {
        write_out(
            summary,
            dime_files_summary {
                files: s.files,
                skipped: s.skipped,
                bytes: s.bytes,
                resumed: s.resumed,
                elapsed: s.elapsed.as_secs_f64(),
            },
        );
    }
    Ok(())
}

/// Downloads from file server `name` (through the broker at `address`)
/// the files a selection names into directory `dest` (created if
/// needed): `kind` is `DIME_FILES_PATHS` (the `n` strings in `what` are
/// paths of files or directories), `DIME_FILES_GLOB` or `DIME_FILES_REGEX`
/// (one string). `options` may be NULL (defaults: 4 connections, 2 MiB
/// pieces). `progress` (may be NULL) is called on this thread with
/// `userdata`.
/// Files already complete at `dest` (same size and modification time)
/// are skipped; an interrupted download resumes. On success, if `summary`
/// is not NULL, writes what was done there. Statuses:
/// `DIME_STATUS_FILE_NOT_FOUND` (a path or nothing matched),
/// `DIME_STATUS_PERMISSION_DENIED` (a path outside the served tree),
/// `DIME_STATUS_NO_PROVIDER` (no file server of that name),
/// `DIME_STATUS_CHECKSUM_MISMATCH`, `DIME_STATUS_FILE_CHANGED`,
/// `DIME_STATUS_IO_ERROR`, `DIME_STATUS_CANCELLED`,
/// `DIME_STATUS_CONNECTION_LOST`, `DIME_STATUS_INVALID_ARGUMENT` (a bad
/// pattern or option).
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn dime_files_download(
    address: *const c_char,
    name: *const c_char,
    kind: i32,
    what: *const *const c_char,
    n: usize,
    dest: *const c_char,
    options: *const dime_files_options,
    progress: dime_files_progress_fn,
    userdata: *mut c_void,
    summary: *mut dime_files_summary,
) -> dime_status {
    ffi_status! {
        let address = str_arg(address, "address")?;
        let name = str_arg(name, "name")?;
        let what = selection(kind, what, n)?;
        let dest = str_arg(dest, "dest")?;
        let opts = transfer_options(options);
        with_progress(progress, userdata, summary, |cb| {
            files::download(address, name, &what, Path::new(dest), &opts, cb)
        })
    }
}

/// Uploads the files a selection names on this machine (relative paths
/// and patterns are taken from directory `base`; NULL: the current
/// directory) into directory `dest_dir` of file server `name` (`""`: its
/// root), which must be writable. Otherwise as `dime_files_download`.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn dime_files_upload(
    address: *const c_char,
    name: *const c_char,
    kind: i32,
    what: *const *const c_char,
    n: usize,
    base: *const c_char,
    dest_dir: *const c_char,
    options: *const dime_files_options,
    progress: dime_files_progress_fn,
    userdata: *mut c_void,
    summary: *mut dime_files_summary,
) -> dime_status {
    ffi_status! {
        let address = str_arg(address, "address")?;
        let name = str_arg(name, "name")?;
        let what = selection(kind, what, n)?;
        let base = opt_str_arg(base, "base")?.unwrap_or(".");
        let dest_dir = str_arg(dest_dir, "dest_dir")?;
        let opts = transfer_options(options);
        with_progress(progress, userdata, summary, |cb| {
            files::upload(address, name, &what, Path::new(base), dest_dir, &opts, cb)
        })
    }
}
