//! `dime_client`: connecting, closing, groups, sending and waiting.
//!
//! Threads: a `dime_client` is internally locked, so any of these functions
//! may be called on the same client from several threads at once; calls run
//! one at a time, in lock order. A thread blocked in `dime_wait` holds the
//! lock, so other calls on that client (including `dime_close`) wait until
//! it returns: use a timeout, or a second client, when another thread must
//! keep sending. `dime_client_free` must not overlap any other call on the
//! same client.

use super::args::{opt_str_arg, slice_arg, str_arg, str_array_arg, timeout_arg, write_out};
use super::sigpipe::SigpipeGuard;
use super::status::{Fail, check_arg, dime_status, ffi_status, ffi_value};
use super::value::{dime_value, into_raw};
use crate::client::rpc::{Rpc, RpcOptions};
use crate::client::{Client, ConnectOptions, Error, pipeline};
use crate::codec::dimeb;
use crate::transport::Address;
use crate::value::Value;
use std::ffi::{c_char, c_void};
use std::sync::Arc;
use std::sync::{Mutex, MutexGuard};

/// Pass as `timeout_ms` (to `dime_wait`, `share_wait_key`,
/// `share_lock`, `dime_in`, `dime_rd`) to wait with no time limit (any
/// negative number does the same).
pub const DIME_WAIT_FOREVER: i64 = -1;

/// A good window for `dime_set_pipeline`, and the one `DIME_PIPELINE=on`
/// gives: up to this many sends left unanswered.
pub const DIME_PIPELINE_WINDOW: usize = 1024;

const _: () = assert!(DIME_PIPELINE_WINDOW == pipeline::DEFAULT_WINDOW);

/// The environment variable `dime_connect` reads to turn pipelining on.
const PIPELINE_VAR: &str = "DIME_PIPELINE";

/// The window `DIME_PIPELINE` asks for: None when unset (pipelining stays
/// off); 0 for `off`, `DIME_PIPELINE_WINDOW` for `on`, or a number.
fn pipeline_from_env() -> Result<Option<usize>, Fail> {
    let Some(raw) = std::env::var_os(PIPELINE_VAR) else {
        return Ok(None);
    };
    let text = raw.to_string_lossy();
    match text.trim().to_ascii_lowercase().as_str() {
        "" | "off" | "false" | "no" => Ok(Some(0)),
        "on" | "true" | "yes" => Ok(Some(DIME_PIPELINE_WINDOW)),
        n => n.parse().map(Some).map_err(|_| {
            Fail::invalid(format!(
                "{PIPELINE_VAR}={text:?} is neither a number of sends nor on or off"
            ))
        }),
    }
}

/// An opaque connection to a DiME server, from `dime_connect`; release it
/// with `dime_client_free`. Internally locked: usable from several threads.
#[allow(non_camel_case_types)]
pub struct dime_client {
    conn: Mutex<Conn>,
    /// Where it connected: remote calls open their own connection there.
    address: Address,
    /// The remote-call endpoint, opened on first use (see `ffi::rpc`).
    pub(crate) rpc: Mutex<RpcSlot>,
}

/// A client's remote-call endpoint and the options it opens with.
#[derive(Default)]
pub(crate) struct RpcSlot {
    /// Settings for the endpoint; fixed once it is open.
    pub(crate) options: RpcOptions,
    /// The open endpoint.
    pub(crate) endpoint: Option<Arc<Rpc>>,
    /// Set by `dime_close`: no endpoint opens any more.
    pub(crate) closed: bool,
}

/// The remote-call endpoint of `client`, opened on first use.
pub(crate) fn rpc_endpoint(client: &dime_client) -> Result<Arc<Rpc>, Fail> {
    let mut slot = client.rpc.lock().unwrap_or_else(|p| p.into_inner());
    if slot.closed {
        return Err(Fail::new(dime_status::Closed, "the client is closed"));
    }
    if let Some(e) = &slot.endpoint {
        return Ok(e.clone());
    }
    let _sigpipe = SigpipeGuard::new();
    let e = Arc::new(Rpc::connect_to(&client.address, slot.options.clone())?);
    slot.endpoint = Some(e.clone());
    Ok(e)
}

impl Drop for dime_client {
    fn drop(&mut self) {
        // Callback workers hold the endpoint too: close it explicitly so
        // they stop and their userdata is dropped.
        close_rpc(self);
    }
}

/// Closes the remote-call endpoint, if open: its calls in flight fail.
fn close_rpc(client: &dime_client) {
    let endpoint = {
        let mut slot = client.rpc.lock().unwrap_or_else(|p| p.into_inner());
        slot.closed = true;
        slot.endpoint.take()
    };
    if let Some(e) = endpoint {
        e.close();
    }
}

/// Where a client handle stands.
enum Conn {
    /// Boxed: a client is much larger than the other states.
    Open(Box<Client>),
    /// Closed by `dime_close`.
    Closed,
    /// The connection failed: how, and the OS error number behind it (0:
    /// none), repeated by every later call.
    Broken { why: String, errno: i32 },
}

// The handle is shared between C threads, so its contents must be Send.
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<Client>();
};

fn lock(client: &dime_client) -> MutexGuard<'_, Conn> {
    match client.conn.lock() {
        Ok(g) => g,
        Err(poisoned) => {
            // A call panicked mid-request: the stream may hold half a
            // frame, so the connection cannot be trusted any more.
            client.conn.clear_poison();
            let mut g = poisoned.into_inner();
            *g = Conn::Broken {
                why: "an earlier call on this client failed internally".into(),
                errno: 0,
            };
            g
        }
    }
}

/// Runs `f` on the open connection of `client`, turning a lost or garbled
/// connection into a broken handle so later calls fail fast.
pub(crate) fn with_client<T>(
    client: *const dime_client,
    f: impl FnOnce(&mut Client) -> Result<T, Error>,
) -> Result<T, Fail> {
    let handle = check_arg!(ref client as dime_client);
    let mut conn = lock(handle);
    let c = match &mut *conn {
        Conn::Open(c) => c,
        Conn::Closed => return Err(Fail::new(dime_status::Closed, "the client is closed")),
        Conn::Broken { why, errno } => {
            return Err(Fail::new(
                dime_status::ConnectionLost,
                format!("connection lost earlier: {why}"),
            )
            .with_errno(*errno));
        }
    };
    // Socket writes cannot raise SIGPIPE; a WebSocket's can (in the host
    // program, which may not expect it): blocked around the call.
    let _sigpipe = c.writes_raise_sigpipe().then(SigpipeGuard::new);
    f(c).map_err(|e| {
        if matches!(e, Error::ConnectionLost(_) | Error::Protocol(_)) {
            // "connection lost earlier: Broken pipe", not "… earlier:
            // connection lost: Broken pipe".
            let why = match &e {
                Error::ConnectionLost(source) => source.to_string(),
                other => other.to_string(),
            };
            *conn = Conn::Broken {
                why,
                errno: e.os_error().unwrap_or(0),
            };
        }
        Fail::from(e)
    })
}

/// Features a client asks for at connect (`dime_connect_options_set_flags`),
/// OR-ed together; each applies only where the server announces it.
#[allow(non_camel_case_types)]
pub type dime_connect_flags = u32;

/// Ask for nothing beyond DiME2.
pub const DIME_CONNECT_DIME2: dime_connect_flags = 0;
/// Matrices travel in the layout and byte order they are stored in
/// (extension `dimeb_layout`): a row-major matrix is sent without being
/// transposed, and received matrices may be row-major (see
/// `dime_matrix_layout`; `dime_matrix_data` still gives column-major).
pub const DIME_CONNECT_LAYOUT: dime_connect_flags = 1;
/// Over a unix socket, large payloads (a megabyte and up) travel through
/// shared memory (extension `shm`): written once by the sender, mapped by
/// each recipient, never copied through the broker. A received matrix's
/// elements may then live in that mapping (private to this process: writes
/// to it are the receiver's own).
pub const DIME_CONNECT_SHM: dime_connect_flags = 2;
/// With `DIME_CONNECT_SHM`: take shared-memory payloads from the start.
/// Without it a client asks once a large payload has reached it through
/// the socket (that one is copied through the broker), and until then reads
/// relayed messages with a plain `recv`, slightly cheaper per read than the
/// `recvmsg` descriptors need (about 0.2 µs).
pub const DIME_CONNECT_SHM_NOW: dime_connect_flags = 4;
/// Large messages may arrive while their sender is still sending them
/// (extension `cut_through`): across hosts the broker forwards a payload
/// as it comes in instead of after it. A message whose sender goes away
/// or stalls (the broker's `--cut-through-stall-ms`) midway is dropped
/// before `dime_sync` and the like return.
pub const DIME_CONNECT_CUT_THROUGH: dime_connect_flags = 8;
/// What `dime_connect` asks for: everything but cut-through, as the
/// bindings (Python, MATLAB) move large arrays; cut-through too when the
/// environment has `DIME_CUT_THROUGH=1` (a `dime_sync` that meets a
/// message still arriving returns only after its last byte, so a slow
/// sender would hold up the other messages behind it).
pub const DIME_CONNECT_DEFAULT: dime_connect_flags =
    DIME_CONNECT_LAYOUT | DIME_CONNECT_SHM | DIME_CONNECT_SHM_NOW;

/// Every `DIME_CONNECT_*` bit; others are refused.
const KNOWN_CONNECT_FLAGS: dime_connect_flags =
    DIME_CONNECT_LAYOUT | DIME_CONNECT_SHM | DIME_CONNECT_SHM_NOW | DIME_CONNECT_CUT_THROUGH;

/// Connects to a DiME server and handshakes; on success writes a new client
/// to `*out`, owned by the caller (release with `dime_client_free`).
/// Asks for `DIME_CONNECT_DEFAULT` (`dime_connect_with` chooses).
///
/// `address` (NUL-terminated): `unix:/path/to.sock`, `ipc:/path/to.sock`
/// (the same), `tcp:host:port` or `tcp:port` (127.0.0.1), `tls:host:port`
/// (TLS), `ws:host:port`, `wss:host:port` (WebSocket, over TLS).
/// A token for a server started with `--auth` is taken from the
/// environment variable `DIME_TOKEN`; a TLS server is checked against the
/// system's CA certificates, or those in the PEM file `DIME_TLS_CA`, and a
/// client certificate is presented from `DIME_TLS_CERT`/`DIME_TLS_KEY`
/// (`dime_connect_with` takes these as options instead).
/// `DIME_STATUS_INVALID_ARGUMENT` if it does not parse;
/// `DIME_STATUS_CONNECTION_LOST` if nothing answers there, with the reason
/// in `dime_last_errno()` (`ENOENT`: no such unix socket, `ECONNREFUSED`:
/// nobody listening, `EACCES`: no permission, `ETIMEDOUT` …; 0 when a host
/// name did not resolve or the TLS handshake failed: the message then
/// names the server and the reason);
/// `DIME_STATUS_NOT_PERMITTED` if the server refuses the token or needs
/// one; `DIME_STATUS_NULL_ARGUMENT` if a pointer is NULL. Blocks until the
/// handshake completes.
///
/// Pipelined sends (`dime_set_pipeline`) start off, unless the environment
/// variable `DIME_PIPELINE` is set: `on` (a window of
/// `DIME_PIPELINE_WINDOW`), a number (that window; 0 is off) or `off`. So
/// an existing program (over C, Python or MATLAB) can be run pipelined
/// without changing it; any other value fails the connect with
/// `DIME_STATUS_INVALID_ARGUMENT`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_connect(address: *const c_char, out: *mut *mut dime_client) -> dime_status {
    ffi_status! {
        let address = str_arg(address, "address")?;
        check_arg!(out);
        connect(address, default_options(), out)
    }
}

/// Connects as `dime_connect` does, with `options` (from
/// `dime_connect_options_new`; only read during the call, and still the
/// caller's to free) instead of the defaults and the environment: the
/// features asked for (`DIME_CONNECT_*` flags), the token, and how a TLS
/// server is checked.
/// `DIME_STATUS_NULL_ARGUMENT` if a pointer is NULL; other failures as for
/// `dime_connect`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_connect_with(
    address: *const c_char,
    options: *const dime_connect_options,
    out: *mut *mut dime_client,
) -> dime_status {
    ffi_status! {
        let address = str_arg(address, "address")?;
        let options = check_arg!(ref options as dime_connect_options);
        check_arg!(out);
        connect(address, options.0.clone(), out)
    }
}

/// What `dime_connect` uses: `DIME_CONNECT_DEFAULT` (with
/// `DIME_CONNECT_CUT_THROUGH` if `DIME_CUT_THROUGH` asks for it), and the
/// token and TLS settings of the environment.
fn default_options() -> ConnectOptions {
    let mut o = ConnectOptions::from_env();
    let cut_through = o.cut_through;
    set_flags(&mut o, DIME_CONNECT_DEFAULT);
    o.cut_through = cut_through;
    o
}

/// Sets the features `flags` asks for (bits already checked).
fn set_flags(o: &mut ConnectOptions, flags: dime_connect_flags) {
    o.layout = flags & DIME_CONNECT_LAYOUT != 0;
    o.shm = flags & DIME_CONNECT_SHM != 0;
    o.shm_receive_now = flags & DIME_CONNECT_SHM_NOW != 0;
    o.cut_through = flags & DIME_CONNECT_CUT_THROUGH != 0;
}

/// Connects and writes the new handle to `out`.
fn connect(address: &str, options: ConnectOptions, out: *mut *mut dime_client) -> Result<(), Fail> {
    let addr = Address::parse(address).map_err(Fail::invalid)?;
    let mut rpc = RpcSlot::default();
    // Remote calls open their own connection with the same credentials.
    rpc.options.connect = options.clone();
    let window = pipeline_from_env()?;
    let c = {
        let _sigpipe = SigpipeGuard::new();
        let mut c = Client::connect_to_with(&addr, options)?;
        if let Some(w) = window {
            c.set_pipeline(w)?;
        }
        c
    };
    let handle = Box::new(dime_client {
        conn: Mutex::new(Conn::Open(Box::new(c))),
        address: addr,
        rpc: Mutex::new(rpc),
    });
    write_out(out, Box::into_raw(handle));
    Ok(())
}

/// Options for `dime_connect_with`: the features asked for, a token, and
/// how a TLS server is checked. Made by `dime_connect_options_new`, freed
/// with `dime_connect_options_free`. Not internally locked: use it from
/// one thread at a time.
#[allow(non_camel_case_types)]
pub struct dime_connect_options(ConnectOptions);

/// Writes new options to `*out`, owned by the caller (release with
/// `dime_connect_options_free`), holding what `dime_connect` uses:
/// `DIME_CONNECT_DEFAULT`, and the environment's `DIME_TOKEN`,
/// `DIME_TLS_CA`, `DIME_TLS_CERT` and `DIME_TLS_KEY`; the setters below
/// replace what they set.
/// `DIME_STATUS_NULL_ARGUMENT` if `out` is NULL.
#[unsafe(no_mangle)]
pub extern "C" fn dime_connect_options_new(out: *mut *mut dime_connect_options) -> dime_status {
    ffi_status! {
        check_arg!(out);
        let options = Box::new(dime_connect_options(default_options()));
        write_out(out, Box::into_raw(options));
        Ok(())
    }
}

/// Asks for the features in `flags` (`DIME_CONNECT_*` OR-ed;
/// `DIME_CONNECT_DIME2` for none) instead of `DIME_CONNECT_DEFAULT`.
/// `DIME_STATUS_INVALID_ARGUMENT` for unknown bits (nothing changes);
/// `DIME_STATUS_NULL_ARGUMENT` if `options` is NULL.
#[unsafe(no_mangle)]
pub extern "C" fn dime_connect_options_set_flags(
    options: *mut dime_connect_options,
    flags: dime_connect_flags,
) -> dime_status {
    ffi_status! {
        let o = check_arg!(mut options as dime_connect_options);
        if flags & !KNOWN_CONNECT_FLAGS != 0 {
            return Err(Fail::invalid(format!("unknown connect flags 0x{flags:X}")));
        }
        set_flags(&mut o.0, flags);
        Ok(())
    }
}

/// Sets the token presented in the handshake (NUL-terminated UTF-8, copied);
/// NULL presents none. `DIME_STATUS_NULL_ARGUMENT` if `options` is NULL.
#[unsafe(no_mangle)]
pub extern "C" fn dime_connect_options_set_token(
    options: *mut dime_connect_options,
    token: *const c_char,
) -> dime_status {
    ffi_status! {
        let o = check_arg!(mut options as dime_connect_options);
        o.0.token = opt_str_arg(token, "token")?.map(str::to_owned);
        Ok(())
    }
}

/// Trusts the CA certificates in the PEM file at `path` (copied) instead of
/// the system's; NULL goes back to the system's. The file is read when
/// connecting. `DIME_STATUS_NULL_ARGUMENT` if `options` is NULL.
#[unsafe(no_mangle)]
pub extern "C" fn dime_connect_options_set_tls_ca(
    options: *mut dime_connect_options,
    path: *const c_char,
) -> dime_status {
    ffi_status! {
        let o = check_arg!(mut options as dime_connect_options);
        o.0.tls.ca = opt_str_arg(path, "path")?.map(Into::into);
        Ok(())
    }
}

/// Presents the client certificate chain in the PEM file `cert`, with its
/// private key in the PEM file `key` (paths copied; read when connecting),
/// to a server started with `--tls-client-ca`. Both NULL present none;
/// `DIME_STATUS_INVALID_ARGUMENT` if only one is NULL,
/// `DIME_STATUS_NULL_ARGUMENT` if `options` is NULL.
#[unsafe(no_mangle)]
pub extern "C" fn dime_connect_options_set_tls_client_cert(
    options: *mut dime_connect_options,
    cert: *const c_char,
    key: *const c_char,
) -> dime_status {
    ffi_status! {
        let o = check_arg!(mut options as dime_connect_options);
        let cert = opt_str_arg(cert, "cert")?;
        let key = opt_str_arg(key, "key")?;
        if cert.is_some() != key.is_some() {
            return Err(Fail::invalid(
                "a client certificate needs both its certificate and its key file",
            ));
        }
        o.0.tls.cert = cert.map(Into::into);
        o.0.tls.key = key.map(Into::into);
        Ok(())
    }
}

/// Frees options from `dime_connect_options_new`. NULL is accepted and
/// does nothing.
#[unsafe(no_mangle)]
pub extern "C" fn dime_connect_options_free(options: *mut dime_connect_options) {
    ffi_value!((), {
        if !options.is_null() {
            // SAFETY: the caller's contract: `options` came from
            // dime_connect_options_new and is not used again.
            drop(unsafe { Box::from_raw(options) });
        }
    })
}

/// Closes the connection but keeps the handle: later calls on it fail with
/// `DIME_STATUS_CLOSED`, and it must still be released with
/// `dime_client_free`. With pipelining on, it first waits for the answers
/// to the sends still outstanding and returns the oldest failure not yet
/// reported, if any (`DIME_STATUS_SERVER_ERROR`; the connection is closed
/// either way). Closing a closed (or broken) client does nothing and
/// returns `DIME_STATUS_OK`, so double close is harmless.
/// `DIME_STATUS_NULL_ARGUMENT` if `client` is NULL.
#[unsafe(no_mangle)]
pub extern "C" fn dime_close(client: *mut dime_client) -> dime_status {
    ffi_status! {
        let handle = check_arg!(ref client as dime_client);
        close_rpc(handle);
        let _sigpipe = SigpipeGuard::new();
        let mut conn = lock(handle);
        if !matches!(*conn, Conn::Open(_)) {
            return Ok(());
        }
        // Closing the Client (dropping it) closes its socket.
        match std::mem::replace(&mut *conn, Conn::Closed) {
            Conn::Open(c) => c.close().map_err(Fail::from),
            _ => Ok(()),
        }
    }
}

/// Closes the connection if open and frees the handle, without waiting
/// for the answers to pipelined sends (the server still runs every request
/// written, but a failure among them goes unreported: `dime_close` or
/// `dime_flush` first to see it). NULL is accepted and does nothing. No
/// other call on this client may be running or follow.
#[unsafe(no_mangle)]
pub extern "C" fn dime_client_free(client: *mut dime_client) {
    ffi_value!((), {
        if !client.is_null() {
            // SAFETY: the caller's contract: `client` came from dime_connect
            // and is not used again.
            drop(unsafe { Box::from_raw(client) });
        }
    })
}

/// Joins the `count` groups named in `groups` (NUL-terminated UTF-8
/// strings; read only during the call). Groups are created on first join.
/// `DIME_STATUS_SERVER_ERROR` if the client is already in one of them;
/// `DIME_STATUS_NULL_ARGUMENT` if `client`, `groups` (with `count` > 0) or
/// any name is NULL.
#[unsafe(no_mangle)]
pub extern "C" fn dime_join(
    client: *mut dime_client,
    groups: *const *const c_char,
    count: usize,
) -> dime_status {
    ffi_status! {
        let names = str_array_arg(groups, count, "groups")?;
        with_client(client, |c| c.join(&names))
    }
}

/// Leaves the `count` groups named in `groups`. `DIME_STATUS_SERVER_ERROR`
/// if the client is not in one of them; other errors as for `dime_join`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_leave(
    client: *mut dime_client,
    groups: *const *const c_char,
    count: usize,
) -> dime_status {
    ffi_status! {
        let names = str_array_arg(groups, count, "groups")?;
        with_client(client, |c| c.leave(&names))
    }
}

/// Reads `count` (name, value) pairs from parallel arrays.
fn named_values<'a>(
    names: *const *const c_char,
    values: *const *const dime_value,
    count: usize,
) -> Result<Vec<(&'a str, &'a Value)>, Fail> {
    let names = str_array_arg(names, count, "names")?;
    let values = slice_arg(values, count, "values")?;
    names
        .into_iter()
        .zip(values)
        .enumerate()
        .map(|(i, (n, v))| {
            // SAFETY: NULL is handled; validity is the caller's contract.
            match unsafe { v.cast::<Value>().as_ref() } {
                Some(v) => Ok((n, v)),
                None => Err(Fail::null(&format!("values[{i}]"))),
            }
        })
        .collect()
}

/// Sends `value` as variable `name` to every member of `group` (including
/// this client if it is a member). `value` is only read (not consumed: free
/// it afterwards as usual); a borrowing matrix's buffer is read during this
/// call. Blocks until the server has accepted it, or, with pipelining on
/// (`dime_set_pipeline`), returns once the request is written.
/// `DIME_STATUS_SERVER_ERROR` if the group does not exist (with pipelining,
/// reported by a later call);
/// `DIME_STATUS_INVALID_ARGUMENT` if the value is too large for the wire
/// format; `DIME_STATUS_NULL_ARGUMENT` if a pointer is NULL.
#[unsafe(no_mangle)]
pub extern "C" fn dime_send(
    client: *mut dime_client,
    group: *const c_char,
    name: *const c_char,
    value: *const dime_value,
) -> dime_status {
    ffi_status! {
        let group = str_arg(group, "group")?;
        let name = str_arg(name, "name")?;
        let value = check_arg!(ref value as Value);
        with_client(client, |c| c.send(group, name, value))
    }
}

/// Sends `count` variables to `group` in one pipelined batch: `names[i]`
/// with `values[i]` (both only read). Every value is encoded before anything
/// is sent, so an unencodable value sends nothing; if the server refuses
/// some, the rest are still sent and the first refusal is reported
/// (`DIME_STATUS_SERVER_ERROR`). Other errors as for `dime_send`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_send_many(
    client: *mut dime_client,
    group: *const c_char,
    names: *const *const c_char,
    values: *const *const dime_value,
    count: usize,
) -> dime_status {
    ffi_status! {
        let group = str_arg(group, "group")?;
        let vars = named_values(names, values, count)?;
        with_client(client, |c| c.send_many(group, &vars))
    }
}

/// Sends `value` as variable `name` to every other connected client (never
/// to this one), whether or not they joined a group. Errors and ownership
/// as for `dime_send`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_broadcast(
    client: *mut dime_client,
    name: *const c_char,
    value: *const dime_value,
) -> dime_status {
    ffi_status! {
        let name = str_arg(name, "name")?;
        let value = check_arg!(ref value as Value);
        with_client(client, |c| c.broadcast(name, value))
    }
}

/// Broadcasts `count` variables (`names[i]`, `values[i]`) in one pipelined
/// batch. Errors and ownership as for `dime_send_many`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_broadcast_many(
    client: *mut dime_client,
    names: *const *const c_char,
    values: *const *const dime_value,
    count: usize,
) -> dime_status {
    ffi_status! {
        let vars = named_values(names, values, count)?;
        with_client(client, |c| c.broadcast_many(&vars))
    }
}

/// Turns pipelined sends on (`window` ≥ 1: `DIME_PIPELINE_WINDOW` is a good
/// size) or off (0, the default unless `DIME_PIPELINE` says otherwise, see
/// `dime_connect`).
///
/// With pipelining on, `dime_send`, `dime_broadcast` and their `_many` and
/// `_encoded` forms return once the request is written, without waiting for
/// the server's answer; at most `window` sends stay unanswered (a send that
/// finds the window full first reads answers until it is half empty, so
/// that they are read in batches). The
/// server still runs this client's requests in order, so its own later
/// `dime_sync`, `dime_wait` and `dime_devices` see every earlier send.
/// What changes from DiME2:
/// - a refused send (`DIME_STATUS_SERVER_ERROR`: no such group, a full
///   queue) is reported by a later call, with a message naming it
///   ("pipelined send #N of 'x' to group 'g' failed: ..."): by the next
///   call that reads answers (`dime_flush`, `dime_sync`, `dime_wait`,
///   `dime_devices`, `dime_join`, `dime_leave`, share and tuple-space
///   calls, `dime_close`, or a send that finds the window full), or, when
///   that call already reported one, by the call after it. The call that
///   reports it does nothing else (`dime_sync` keeps the messages it
///   fetched for the next call). One failure is reported per call.
/// - when a send returns, the server may not have taken it yet: another
///   connection that looks at once may not see the message. `dime_flush`
///   waits until it has.
/// - a `dime_sync` right after a `dime_wait` returns the messages the wait
///   fetched without asking the server again (one exchange less); a
///   message that reached the server in between comes with the next sync.
///   A `dime_wait` written behind unanswered sends reports a failure among
///   them within 0.1 s even when nothing arrives.
///
/// The window is clamped to 65536, and to 16 against an original DiME2
/// server (what its own Python client writes ahead); read the size in
/// force with `dime_pipeline_window`. Shrinking the window reads answers
/// down to the new size; turning pipelining off first waits for every
/// answer and returns the first failure among them, if any (it is off
/// either way). `DIME_STATUS_NULL_ARGUMENT` if `client` is NULL.
#[unsafe(no_mangle)]
pub extern "C" fn dime_set_pipeline(client: *mut dime_client, window: usize) -> dime_status {
    ffi_status! {
        with_client(client, |c| c.set_pipeline(window)).map(drop)
    }
}

/// Writes to `*out` the pipelining window in force: 0 when sends wait for
/// their answer (see `dime_set_pipeline`). Sends nothing.
/// `DIME_STATUS_NULL_ARGUMENT` if a pointer is NULL.
#[unsafe(no_mangle)]
pub extern "C" fn dime_pipeline_window(client: *const dime_client, out: *mut usize) -> dime_status {
    ffi_status! {
        check_arg!(out);
        let window = with_client(client, |c| Ok(c.pipeline_window()))?;
        write_out(out, window);
        Ok(())
    }
}

/// Writes to `*out` how many pipelined sends are written and not yet
/// answered (never more than the window; always 0 without pipelining).
/// Sends nothing. `DIME_STATUS_NULL_ARGUMENT` if a pointer is NULL.
#[unsafe(no_mangle)]
pub extern "C" fn dime_unacknowledged(client: *const dime_client, out: *mut usize) -> dime_status {
    ffi_status! {
        check_arg!(out);
        let n = with_client(client, |c| Ok(c.unacknowledged()))?;
        write_out(out, n);
        Ok(())
    }
}

/// Blocks until the server has answered every pipelined send of this
/// client, so every message sent is queued for its recipients. Returns the
/// oldest failure not yet reported (`DIME_STATUS_SERVER_ERROR`, message
/// naming the send), if any: call it again for the next one. Without
/// pipelining there is nothing to wait for and it returns at once.
/// `DIME_STATUS_NULL_ARGUMENT` if `client` is NULL.
#[unsafe(no_mangle)]
pub extern "C" fn dime_flush(client: *mut dime_client) -> dime_status {
    ffi_status! {
        with_client(client, |c| c.flush())
    }
}

/// Blocks until at least one message is queued for this client, or
/// `timeout_ms` milliseconds pass (`DIME_WAIT_FOREVER` or any negative
/// number: no limit; 0: just check). On success writes the number of queued
/// messages (≥ 1) to `*out_count`; then `dime_sync` fetches them.
/// `DIME_STATUS_TIMEOUT` if the time ran out (the client stays usable);
/// `DIME_STATUS_NULL_ARGUMENT` if a pointer is NULL. Holds the client's
/// lock while waiting (see the thread note above). With an original DiME2
/// server (see `dime_server_supports`) a wait without a limit is DiME2's
/// own `wait`, which blocks in the server; one with a limit polls it with
/// `sync`, 1 ms apart at first and at most 50 ms, since that server
/// cannot time a wait out.
#[unsafe(no_mangle)]
pub extern "C" fn dime_wait(
    client: *mut dime_client,
    timeout_ms: i64,
    out_count: *mut usize,
) -> dime_status {
    ffi_status! {
        check_arg!(out_count);
        let n = with_client(client, |c| c.wait(timeout_arg(timeout_ms)))?;
        write_out(out_count, n);
        Ok(())
    }
}

/// Writes to `*out` a new list value (owned by the caller; free with
/// `dime_value_free`) of strings: the names of every group that has at least
/// one member. `DIME_STATUS_NULL_ARGUMENT` if a pointer is NULL.
#[unsafe(no_mangle)]
pub extern "C" fn dime_devices(client: *mut dime_client, out: *mut *mut dime_value) -> dime_status {
    ffi_status! {
        check_arg!(out);
        let names = with_client(client, |c| c.devices())?;
        let list = Value::List(names.into_iter().map(Value::String).collect());
        write_out(out, into_raw(list));
        Ok(())
    }
}

/// As `dime_devices`, the list given as its dimeb bytes (`docs/protocol.md`
/// §4: a list of strings, what `dime_value_encode` writes for the list
/// `dime_devices` gives): `*data` a new buffer of `*len` bytes owned by the
/// caller, released with `dime_data_free(data, len)`. For a binding that
/// decodes values itself: one call instead of building the list and
/// encoding it. `DIME_STATUS_NULL_ARGUMENT` if a pointer is NULL.
#[unsafe(no_mangle)]
pub extern "C" fn dime_devices_encoded(
    client: *mut dime_client,
    data: *mut *mut c_void,
    len: *mut usize,
) -> dime_status {
    ffi_status! {
        check_arg!(data);
        check_arg!(len);
        let names = with_client(client, |c| c.devices())?;
        let list = Value::List(names.into_iter().map(Value::String).collect());
        let bytes = dimeb::encode(&list).map_err(|e| Fail::invalid(e.0))?;
        // A boxed slice has capacity == length, so dime_data_free can
        // rebuild it from (pointer, length) alone.
        let block = bytes.into_boxed_slice();
        let n = block.len();
        write_out(data, Box::into_raw(block).cast());
        write_out(len, n);
        Ok(())
    }
}

/// Writes to `*out` whether the server announced extension `extension`
/// (NUL-terminated: `"share"`, `"space"`, `"sync_wait"` …, listed in
/// `docs/protocol-extensions.md`) in its handshake. An original DiME2
/// server announces none, so every name gives false; DiME2's own calls
/// (`dime_join`, `dime_send`, `dime_sync`, `dime_wait` …) work with it
/// anyway, while the calls of an unsupported extension (`share_*`,
/// `dime_out` …) fail with `DIME_STATUS_UNSUPPORTED`. Sends nothing.
/// `DIME_STATUS_NULL_ARGUMENT` if a pointer is NULL.
#[unsafe(no_mangle)]
pub extern "C" fn dime_server_supports(
    client: *const dime_client,
    extension: *const c_char,
    out: *mut bool,
) -> dime_status {
    ffi_status! {
        let extension = str_arg(extension, "extension")?;
        check_arg!(out);
        let yes = with_client(client, |c| Ok(c.supports(extension)))?;
        write_out(out, yes);
        Ok(())
    }
}

/// Writes to `*out` a new list value (owned by the caller; free with
/// `dime_value_free`) of strings: the extensions the server announced in
/// its handshake, empty for an original DiME2 server. Sends nothing.
/// `DIME_STATUS_NULL_ARGUMENT` if a pointer is NULL.
#[unsafe(no_mangle)]
pub extern "C" fn dime_server_extensions(
    client: *const dime_client,
    out: *mut *mut dime_value,
) -> dime_status {
    ffi_status! {
        check_arg!(out);
        let names = with_client(client, |c| {
            Ok(c.server_extensions().unwrap_or_default().to_vec())
        })?;
        let list = Value::List(names.into_iter().map(Value::String).collect());
        write_out(out, into_raw(list));
        Ok(())
    }
}
