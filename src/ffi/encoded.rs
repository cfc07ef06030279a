//! Values as dimeb bytes (`docs/protocol.md` §4): `dime_value_encode` and
//! `dime_value_decode`, and sends of values already encoded. A binding
//! that encodes small values itself sends each with one library call
//! instead of one per element of the value (the Python binding does);
//! a C program can store or forward values as bytes. Receiving undecoded
//! values is `dime_sync_encoded` (`messages.rs`).

use super::args::{slice_arg, str_arg, str_array_arg, write_out};
use super::client::{dime_client, with_client};
use super::status::{Fail, check_arg, dime_status, ffi_status};
use super::value::{dime_value, into_raw};
use crate::codec::dimeb;
use crate::value::Value;
use std::ffi::{c_char, c_void};

/// Writes to `*data` and `*len` the dimeb encoding of `value` (only read):
/// a new buffer owned by the caller, released with
/// `dime_data_free(data, len)`. `DIME_STATUS_INVALID_ARGUMENT` if the value
/// is too large for the format (a count or dimension past 2^32 - 1, say);
/// `DIME_STATUS_NULL_ARGUMENT` if a pointer is NULL.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_encode(
    value: *const dime_value,
    data: *mut *mut c_void,
    len: *mut usize,
) -> dime_status {
    ffi_status! {
        let v = check_arg!(ref value as Value);
        check_arg!(data);
        check_arg!(len);
        let bytes = dimeb::encode(v).map_err(|e| Fail::invalid(e.0))?;
        // A boxed slice has capacity == length, so dime_data_free can
        // rebuild it from (pointer, length) alone.
        let block = bytes.into_boxed_slice();
        let n = block.len();
        write_out(data, Box::into_raw(block).cast());
        write_out(len, n);
        Ok(())
    }
}

/// Decodes `len` bytes at `data` (only read; NULL allowed when `len` is 0,
/// which then fails as empty), which must hold exactly one dimeb value,
/// and writes it to `*out`, a new value owned by the caller (free with
/// `dime_value_free`). `DIME_STATUS_CODEC_ERROR` if the bytes are not one
/// well-formed value (the message says where); `DIME_STATUS_NULL_ARGUMENT`
/// if a pointer is NULL.
#[unsafe(no_mangle)]
pub extern "C" fn dime_value_decode(
    data: *const c_void,
    len: usize,
    out: *mut *mut dime_value,
) -> dime_status {
    ffi_status! {
        let bytes = slice_arg(data.cast::<u8>(), len, "data")?;
        check_arg!(out);
        let v = dimeb::decode(bytes).map_err(|e| Fail::new(dime_status::CodecError, e.0))?;
        write_out(out, into_raw(v));
        Ok(())
    }
}

/// The payloads of an encoded send: `count` (name, bytes) pairs. The
/// client checks each to be exactly one well-formed dimeb value before
/// anything is sent (a wrong one would reach every recipient as a value
/// they cannot decode), in the same walk that finds layout matrices.
fn encoded_vars<'a>(
    names: *const *const c_char,
    data: *const *const c_void,
    lens: *const usize,
    count: usize,
) -> Result<Vec<(&'a str, &'a [u8])>, Fail> {
    let names = str_array_arg(names, count, "names")?;
    let data = slice_arg(data, count, "data")?;
    let lens = slice_arg(lens, count, "lens")?;
    names
        .into_iter()
        .zip(data.iter().zip(lens))
        .map(|(name, (&p, &len))| Ok((name, slice_arg(p.cast::<u8>(), len, "data")?)))
        .collect()
}

/// As `dime_send`, for a value already encoded: `len` bytes at `data`
/// (only read, during this call), which must be exactly one well-formed
/// dimeb value (as from `dime_value_encode`); they are sent as they are.
/// Matrices may be in the `dimeb_layout` encoding (tags 0x43-0x4F, see
/// `docs/protocol-extensions.md`) only on a connection that negotiated it
/// (`DIME_CONNECT_LAYOUT` and a server that announces `dimeb_layout`): the
/// request is then marked so that the server converts the value for
/// recipients that read only DiME2's encoding.
/// `DIME_STATUS_INVALID_ARGUMENT` (nothing sent) if the bytes are not one
/// value, or hold layout-encoded matrices on any other connection; other
/// errors, and pipelining, as for `dime_send`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_send_encoded(
    client: *mut dime_client,
    group: *const c_char,
    name: *const c_char,
    data: *const c_void,
    len: usize,
) -> dime_status {
    ffi_status! {
        let group = str_arg(group, "group")?;
        let name = str_arg(name, "name")?;
        let payload = slice_arg(data.cast::<u8>(), len, "data")?;
        with_client(client, |c| c.send_encoded(group, name, payload))
    }
}

/// As `dime_send_many`, for values already encoded: `names[i]` with the
/// `lens[i]` bytes at `data[i]` (all only read), each exactly one dimeb
/// value. All are checked before anything is sent. Errors as for
/// `dime_send_encoded` and `dime_send_many`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_send_encoded_many(
    client: *mut dime_client,
    group: *const c_char,
    names: *const *const c_char,
    data: *const *const c_void,
    lens: *const usize,
    count: usize,
) -> dime_status {
    ffi_status! {
        let group = str_arg(group, "group")?;
        let vars = encoded_vars(names, data, lens, count)?;
        with_client(client, |c| c.send_encoded_many(group, &vars))
    }
}

/// As `dime_broadcast`, for a value already encoded (see
/// `dime_send_encoded`).
#[unsafe(no_mangle)]
pub extern "C" fn dime_broadcast_encoded(
    client: *mut dime_client,
    name: *const c_char,
    data: *const c_void,
    len: usize,
) -> dime_status {
    ffi_status! {
        let name = str_arg(name, "name")?;
        let payload = slice_arg(data.cast::<u8>(), len, "data")?;
        with_client(client, |c| c.broadcast_encoded(name, payload))
    }
}

/// As `dime_broadcast_many`, for values already encoded (see
/// `dime_send_encoded_many`).
#[unsafe(no_mangle)]
pub extern "C" fn dime_broadcast_encoded_many(
    client: *mut dime_client,
    names: *const *const c_char,
    data: *const *const c_void,
    lens: *const usize,
    count: usize,
) -> dime_status {
    ffi_status! {
        let vars = encoded_vars(names, data, lens, count)?;
        with_client(client, |c| c.broadcast_encoded_many(&vars))
    }
}
