//! `dime_sync` and `dime_messages`, the list of received (name, value)
//! pairs it returns; `dime_sync_encoded`, the same list with each value
//! still in its dimeb bytes (`dime_messages_payload`), decoded on demand.
//!
//! Threads: a `dime_messages` is not locked; reading functions (const
//! first argument) may run concurrently, `dime_messages_take` and
//! `dime_messages_free` need exclusive access. It may move between threads.

use super::args::write_out;
use super::client::{dime_client, with_client};
use super::status::{Fail, check_arg, dime_status, ffi_status, ffi_value};
use super::value::{as_raw, dime_value, into_raw};
use crate::client::Message;
use crate::value::Value;
use std::ffi::{CString, c_char, c_void};
use std::sync::OnceLock;

/// Pass to `dime_sync` as `n` to receive every queued message (any negative
/// number does the same).
pub const DIME_SYNC_ALL: i64 = -1;

/// An opaque list of received messages, from `dime_sync` or
/// `dime_sync_encoded`, in arrival order; release it with
/// `dime_messages_free`.
#[allow(non_camel_case_types)]
pub struct dime_messages {
    items: Vec<Item>,
}

/// One message: its name, and its value decoded or (from
/// `dime_sync_encoded`) still encoded, decoded when first asked for.
struct Item {
    name: CString,
    /// The received message, its value checked to be one dimeb value
    /// (in the frame or in shared memory), until the value is taken.
    message: Option<Message>,
    /// The value, once decoded (set from the start by `dime_sync`).
    value: OnceLock<Value>,
}

impl Item {
    fn decoded(name: String, value: Value) -> Item {
        Item {
            name: c_name(name),
            message: None,
            value: OnceLock::from(value),
        }
    }

    /// The value, decoded from the payload on first use.
    fn value(&self) -> Result<&Value, Fail> {
        if let Some(v) = self.value.get() {
            return Ok(v);
        }
        // Only an item from dime_sync_encoded whose value was never set
        // decodes, and it holds its message until the value is taken
        // (which sets the value to null).
        let v = match &self.message {
            Some(m) => m.decode()?,
            None => Value::Null,
        };
        Ok(self.value.get_or_init(|| v))
    }

    /// Moves the value out, leaving null. A value not decoded yet is
    /// decoded here, its large matrices pointing into the received buffer
    /// or mapping instead of being copied.
    fn take(&mut self) -> Result<Value, Fail> {
        let v = match (self.value.take(), self.message.take()) {
            (Some(v), _) => v,
            (None, Some(m)) => m.into_value()?,
            (None, None) => Value::Null,
        };
        self.value = OnceLock::from(Value::Null);
        Ok(v)
    }

    /// The encoded value, if the item still holds its message.
    fn payload(&self) -> Option<Result<&[u8], Fail>> {
        let m = self.message.as_ref()?;
        Some(m.bytes().map_err(Fail::from))
    }
}

/// A variable name as a C string. A name with an embedded NUL (possible on
/// the wire, never produced by our clients) is cut at the NUL.
fn c_name(name: String) -> CString {
    CString::new(name).unwrap_or_else(|e| {
        let cut = e.nul_position();
        let mut bytes = e.into_vec();
        bytes.truncate(cut);
        CString::new(bytes).unwrap_or_default()
    })
}

/// Receives up to `n` queued messages (`DIME_SYNC_ALL` or any negative
/// number: all of them; 0: none) without waiting for more, and writes them
/// to `*out`, a new list owned by the caller (release with
/// `dime_messages_free`); it may be empty.
///
/// `DIME_STATUS_CODEC_ERROR` if a message cannot be decoded (say, a pickle
/// sent by an old client); the message names the variable, and the messages
/// after it stay queued for the next call. `DIME_STATUS_NULL_ARGUMENT` if a
/// pointer is NULL.
#[unsafe(no_mangle)]
pub extern "C" fn dime_sync(
    client: *mut dime_client,
    n: i64,
    out: *mut *mut dime_messages,
) -> dime_status {
    ffi_status! {
        check_arg!(out);
        let received = with_client(client, |c| c.sync(n))?;
        let items = received.into_iter().map(|(name, v)| Item::decoded(name, v)).collect();
        write_out(out, Box::into_raw(Box::new(dime_messages { items })));
        Ok(())
    }
}

/// As `dime_sync`, but the values are left in their dimeb encoding (see
/// `dime_value_encode`), each checked to be one well-formed dimeb value:
/// `dime_messages_payload` hands out the bytes, for a caller that decodes
/// small values itself, and `dime_messages_get` / `dime_messages_take`
/// decode a value when first asked for it. A message that is not dimeb (a
/// pickle from an old client) or not well formed fails the call with
/// `DIME_STATUS_CODEC_ERROR` naming it; the messages before and after it
/// stay queued for the next call. Otherwise as `dime_sync`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_sync_encoded(
    client: *mut dime_client,
    n: i64,
    out: *mut *mut dime_messages,
) -> dime_status {
    ffi_status! {
        check_arg!(out);
        let received = with_client(client, |c| c.sync_checked(n))?;
        let items = received
            .into_iter()
            .map(|m| Item {
                name: c_name(m.varname.clone()),
                message: Some(m),
                value: OnceLock::new(),
            })
            .collect();
        write_out(out, Box::into_raw(Box::new(dime_messages { items })));
        Ok(())
    }
}

/// Points `*name` at the variable name (NUL-terminated UTF-8) of message
/// `index` of a list from `dime_sync_encoded`, and `*data` / `*len` at its
/// value's dimeb bytes (one well-formed value). All **borrowed** from the
/// list: valid until it is freed or that message's value is taken.
/// `DIME_STATUS_WRONG_TYPE` if the list came from `dime_sync` (its values
/// are decoded) or the value was taken; `DIME_STATUS_OUT_OF_RANGE` past the
/// end; `DIME_STATUS_NULL_ARGUMENT` if a pointer is NULL.
#[unsafe(no_mangle)]
pub extern "C" fn dime_messages_payload(
    messages: *const dime_messages,
    index: usize,
    name: *mut *const c_char,
    data: *mut *const c_void,
    len: *mut usize,
) -> dime_status {
    ffi_status! {
        let m = check_arg!(ref messages as dime_messages);
        check_arg!(name);
        check_arg!(data);
        check_arg!(len);
        index_check(m, index)?;
        let item = &m.items[index];
        let Some(payload) = item.payload().transpose()? else {
            return Err(Fail::new(
                dime_status::WrongType,
                format!(
                    "message {index} has no payload: its list came from dime_sync \
                     (values decoded), or its value was taken"
                ),
            ));
        };
        write_out(name, item.name.as_ptr());
        write_out(data, payload.as_ptr().cast());
        write_out(len, payload.len());
        Ok(())
    }
}

/// The number of messages in the list; 0 if `messages` is NULL.
#[unsafe(no_mangle)]
pub extern "C" fn dime_messages_len(messages: *const dime_messages) -> usize {
    ffi_value!(0, {
        // SAFETY: NULL is handled; validity is the caller's contract.
        unsafe { messages.as_ref() }.map_or(0, |m| m.items.len())
    })
}

fn index_check(messages: &dime_messages, index: usize) -> Result<(), Fail> {
    if index < messages.items.len() {
        Ok(())
    } else {
        Err(Fail::new(
            dime_status::OutOfRange,
            format!(
                "message index {index} is out of range for a list of {}",
                messages.items.len()
            ),
        ))
    }
}

/// Points `*name` at the variable name (NUL-terminated UTF-8) and `*value`
/// at the value of message `index` (from 0). Both are **borrowed** from the
/// list: do not free them; they stay valid until the list is freed (and
/// `*value` until that message is taken). In a list from
/// `dime_sync_encoded` the value is decoded on the first call
/// (`DIME_STATUS_CODEC_ERROR` if that fails). `DIME_STATUS_OUT_OF_RANGE`
/// past the end; `DIME_STATUS_NULL_ARGUMENT` if a pointer is NULL.
#[unsafe(no_mangle)]
pub extern "C" fn dime_messages_get(
    messages: *const dime_messages,
    index: usize,
    name: *mut *const c_char,
    value: *mut *const dime_value,
) -> dime_status {
    ffi_status! {
        let m = check_arg!(ref messages as dime_messages);
        check_arg!(name);
        check_arg!(value);
        index_check(m, index)?;
        let item = &m.items[index];
        let v = item.value()?;
        write_out(name, item.name.as_ptr());
        write_out(value, as_raw(v));
        Ok(())
    }
}

/// Moves the value of message `index` out of the list into `*out`, owned by
/// the caller (free with `dime_value_free`); the message keeps its name and
/// a null value. Use this to keep a value beyond the list, or to take a
/// matrix's buffer with `dime_matrix_take_data`. In a list from
/// `dime_sync_encoded` the value is decoded here if it was not yet, and
/// its payload released. Errors as for `dime_messages_get`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_messages_take(
    messages: *mut dime_messages,
    index: usize,
    out: *mut *mut dime_value,
) -> dime_status {
    ffi_status! {
        let m = check_arg!(mut messages as dime_messages);
        check_arg!(out);
        index_check(m, index)?;
        write_out(out, into_raw(m.items[index].take()?));
        Ok(())
    }
}

/// Frees a message list and every value still in it. NULL is accepted and
/// does nothing. Pointers from `dime_messages_get` die with it; values moved
/// out with `dime_messages_take` do not.
#[unsafe(no_mangle)]
pub extern "C" fn dime_messages_free(messages: *mut dime_messages) {
    ffi_value!((), {
        if !messages.is_null() {
            // SAFETY: the caller's contract: `messages` came from dime_sync
            // and is not used again.
            drop(unsafe { Box::from_raw(messages) });
        }
    })
}
