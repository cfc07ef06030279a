//! The broker inside this process: `dime_server_start` binds and runs a
//! server on a background thread, `dime_server_stop` ends it. The library
//! already contains the whole broker, so a program that provides functions
//! can also be the broker its callers connect to.

use super::args::{slice_arg, str_arg, write_out};
use super::status::{Fail, check_arg, dime_status, ffi_status, ffi_value};
use crate::server::{Config, Server, ShutdownHandle};
use crate::transport::Address;
use std::ffi::{CString, c_char};
use std::thread::JoinHandle;

/// A broker running in this process, from `dime_server_start`; stop and
/// release it with `dime_server_stop`.
#[allow(non_camel_case_types)]
pub struct dime_server {
    stop: ShutdownHandle,
    thread: Option<JoinHandle<std::io::Result<()>>>,
    /// The bound addresses, NUL-terminated, for `dime_server_address`.
    addresses: Vec<CString>,
}

/// Starts a broker in this process listening on the `n` addresses in
/// `addresses` (`unix:/path`, `tcp:HOST:PORT`, `ws:HOST:PORT`; port 0
/// picks a free port, see `dime_server_address`), with the `dime`
/// command's default limits. On success writes a new server to `*out`,
/// owned by the caller (`dime_server_stop`). Binding happens before this
/// returns: `DIME_STATUS_INVALID_ARGUMENT` for an address that does not
/// parse, `DIME_STATUS_CONNECTION_LOST` if one cannot be bound (in use,
/// no permission), with the reason in `dime_last_error()`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_server_start(
    addresses: *const *const c_char,
    n: usize,
    out: *mut *mut dime_server,
) -> dime_status {
    ffi_status! {
        check_arg!(out);
        let ptrs = slice_arg(addresses, n, "addresses")?;
        if ptrs.is_empty() {
            return Err(Fail::invalid("give the server at least one address"));
        }
        let listen = ptrs
            .iter()
            .map(|&p| str_arg(p, "addresses[i]").and_then(|s| Address::parse(s).map_err(Fail::invalid)))
            .collect::<Result<Vec<_>, _>>()?;
        let config = Config { listen, busy_poll: std::time::Duration::ZERO, ..Config::default() };
        let mut server = Server::bind(config).map_err(|e| {
            Fail::new(dime_status::ConnectionLost, format!("cannot start the server: {e}"))
        })?;
        let addresses = server
            .local_addrs()
            .into_iter()
            .map(|a| CString::new(a).unwrap_or_default())
            .collect();
        let stop = server.shutdown_handle();
        let thread = std::thread::Builder::new()
            .name("dime-server".into())
            .spawn(move || server.run())
            .map_err(|e| Fail::new(dime_status::ConnectionLost, format!("cannot start the server thread: {e}")))?;
        let handle = dime_server { stop, thread: Some(thread), addresses };
        write_out(out, Box::into_raw(Box::new(handle)));
        Ok(())
    }
}

/// The `i`-th address the server listens on, as bound (`tcp:127.0.0.1:0`
/// reads back with its real port), borrowed until `dime_server_stop`; NULL
/// if `server` is NULL or `i` is out of range.
#[unsafe(no_mangle)]
pub extern "C" fn dime_server_address(server: *const dime_server, i: usize) -> *const c_char {
    ffi_value!(std::ptr::null(), {
        if server.is_null() {
            return std::ptr::null();
        }
        // SAFETY: non-NULL; validity is the caller's contract.
        let s = unsafe { &*server };
        s.addresses.get(i).map_or(std::ptr::null(), |a| a.as_ptr())
    })
}

/// Stops the server (its clients are disconnected, unix socket files
/// removed), waits for its thread, and frees the handle. NULL is accepted
/// and does nothing. Returns `DIME_STATUS_CONNECTION_LOST` if the server
/// had failed while running (the handle is freed all the same).
#[unsafe(no_mangle)]
pub extern "C" fn dime_server_stop(server: *mut dime_server) -> dime_status {
    ffi_status! {
        if server.is_null() {
            return Ok(());
        }
        // SAFETY: the caller's contract: from dime_server_start, not used again.
        let mut s = unsafe { Box::from_raw(server) };
        s.stop.shutdown();
        match s.thread.take().map(JoinHandle::join) {
            Some(Ok(Err(e))) => Err(Fail::new(dime_status::ConnectionLost, format!("the server failed: {e}"))),
            Some(Err(_)) => Err(Fail::new(dime_status::Panic, "the server thread panicked")),
            _ => Ok(()),
        }
    }
}
