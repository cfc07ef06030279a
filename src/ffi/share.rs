//! `share_*`: shared dictionaries ("shares", see
//! `docs/protocol-extensions.md`) on a `dime_client`, one function per
//! method of [`crate::share::Share`].
//!
//! Every function takes the share's name first after the client: NULL or
//! `""` is the default share. Keys are NUL-terminated UTF-8. Values passed
//! in are only read (the caller still owns and frees them); values handed
//! out are new and owned by the caller.
//!
//! Threads: as for every `dime_client` call, the handle is locked for the
//! whole call, so a blocked `share_wait_key` or `share_lock` (or a
//! write waiting behind another client's share lock) holds up other calls
//! on the same client until it returns. Use a timeout, or a second client.

use super::args::{
    name_arg, opt_str_arg, shown_name, str_arg, str_array_arg, timeout_arg, write_out, write_value,
};
use super::client::{dime_client, with_client};
use super::status::{Fail, check_arg, dime_status, ffi_status};
use super::value::dime_value;
use crate::client::share::LockOptions;
use crate::value::Value;
use std::ffi::c_char;
use std::time::Duration;

/// The failure for a key the share does not hold.
fn no_key(share: &str, key: &str) -> Fail {
    Fail::new(
        dime_status::NotFound,
        format!("share '{}' has no key '{key}'", shown_name(share)),
    )
}

/// Stores a copy of `value` under `key` in the share, replacing any old
/// value, and wakes every `share_wait_key` waiting for that key.
///
/// - `client`: from `dime_connect`.
/// - `share`: NULL or `""` for the default share, else a NUL-terminated
///   UTF-8 name. `key`: NUL-terminated UTF-8. Both are read only during the
///   call.
/// - `value`: any value; only read (a borrowing matrix's buffer is read
///   during this call). The caller still owns it and frees it as usual.
///
/// If another client holds the whole-share lock, this blocks until it is
/// released (holding this client's lock meanwhile). Errors:
/// `DIME_STATUS_NULL_ARGUMENT` if `client`, `key` or `value` is NULL;
/// `DIME_STATUS_INVALID_ARGUMENT` if a string is not UTF-8 or the value is
/// too large for the wire format; the client errors of `dime_send`.
#[unsafe(no_mangle)]
pub extern "C" fn share_set(
    client: *mut dime_client,
    share: *const c_char,
    key: *const c_char,
    value: *const dime_value,
) -> dime_status {
    ffi_status! {
        let share = name_arg(share, "share")?;
        let key = str_arg(key, "key")?;
        let value = check_arg!(ref value as Value);
        with_client(client, |c| c.share(share).set(key, value))
    }
}

/// Reads the value under `key` and writes a copy to `*out`, a new value
/// owned by the caller (free with `dime_value_free`). Never blocks (reads
/// do not wait for share locks).
///
/// `DIME_STATUS_NOT_FOUND` if the share has no such key (`*out` is left
/// untouched). Other arguments and errors as for `share_set`; `out`
/// must not be NULL.
#[unsafe(no_mangle)]
pub extern "C" fn share_get(
    client: *mut dime_client,
    share: *const c_char,
    key: *const c_char,
    out: *mut *mut dime_value,
) -> dime_status {
    ffi_status! {
        let share = name_arg(share, "share")?;
        let key = str_arg(key, "key")?;
        check_arg!(out);
        let v = with_client(client, |c| c.share(share).get(key))?
            .ok_or_else(|| no_key(share, key))?;
        write_value(out, v);
        Ok(())
    }
}

/// Removes `key` from the share and writes to `*out_found` whether it was
/// there (removing a missing key is not an error). Blocks behind another
/// client's share lock like `share_set`. Arguments and errors as for
/// `share_set`; `out_found` must not be NULL.
#[unsafe(no_mangle)]
pub extern "C" fn share_del(
    client: *mut dime_client,
    share: *const c_char,
    key: *const c_char,
    out_found: *mut bool,
) -> dime_status {
    ffi_status! {
        let share = name_arg(share, "share")?;
        let key = str_arg(key, "key")?;
        check_arg!(out_found);
        let found = with_client(client, |c| c.share(share).del(key))?;
        write_out(out_found, found);
        Ok(())
    }
}

/// Removes `key` from the share and moves its value to `*out`, a new value
/// owned by the caller (free with `dime_value_free`), in one atomic step:
/// of several clients popping the same key, exactly one gets the value.
///
/// `DIME_STATUS_NOT_FOUND` if the share has no such key. Blocks behind
/// another client's share lock like `share_set`. Other arguments and
/// errors as for `share_get`.
#[unsafe(no_mangle)]
pub extern "C" fn share_pop(
    client: *mut dime_client,
    share: *const c_char,
    key: *const c_char,
    out: *mut *mut dime_value,
) -> dime_status {
    ffi_status! {
        let share = name_arg(share, "share")?;
        let key = str_arg(key, "key")?;
        check_arg!(out);
        let v = with_client(client, |c| c.share(share).pop(key))?
            .ok_or_else(|| no_key(share, key))?;
        write_value(out, v);
        Ok(())
    }
}

/// Writes to `*out` whether the share holds `key`. Never blocks. Arguments
/// and errors as for `share_set`; `out` must not be NULL.
#[unsafe(no_mangle)]
pub extern "C" fn share_contains(
    client: *mut dime_client,
    share: *const c_char,
    key: *const c_char,
    out: *mut bool,
) -> dime_status {
    ffi_status! {
        let share = name_arg(share, "share")?;
        let key = str_arg(key, "key")?;
        check_arg!(out);
        let found = with_client(client, |c| c.share(share).contains(key))?;
        write_out(out, found);
        Ok(())
    }
}

/// Writes to `*out` a new list value (owned by the caller; free with
/// `dime_value_free`) of strings: every key of the share, sorted by bytes.
/// An empty or unknown share gives an empty list. Never blocks.
/// `DIME_STATUS_NULL_ARGUMENT` if `client` or `out` is NULL; `share` as for
/// `share_set`.
#[unsafe(no_mangle)]
pub extern "C" fn share_keys(
    client: *mut dime_client,
    share: *const c_char,
    out: *mut *mut dime_value,
) -> dime_status {
    ffi_status! {
        let share = name_arg(share, "share")?;
        check_arg!(out);
        let keys = with_client(client, |c| c.share(share).keys())?;
        let list = Value::List(keys.into_iter().map(Value::String).collect());
        write_value(out, list);
        Ok(())
    }
}

/// Writes the number of keys in the share to `*out`. Never blocks.
/// Arguments and errors as for `share_keys`.
#[unsafe(no_mangle)]
pub extern "C" fn share_len(
    client: *mut dime_client,
    share: *const c_char,
    out: *mut usize,
) -> dime_status {
    ffi_status! {
        let share = name_arg(share, "share")?;
        check_arg!(out);
        let n = with_client(client, |c| c.share(share).len())?;
        write_out(out, n);
        Ok(())
    }
}

/// Removes every key of the share (locks and waiters are unaffected).
/// Blocks behind another client's share lock like `share_set`.
/// `DIME_STATUS_NULL_ARGUMENT` if `client` is NULL; `share` as for
/// `share_set`.
#[unsafe(no_mangle)]
pub extern "C" fn share_clear(client: *mut dime_client, share: *const c_char) -> dime_status {
    ffi_status! {
        let share = name_arg(share, "share")?;
        with_client(client, |c| c.share(share).clear())
    }
}

/// Reads several keys in one request: writes to `*out` a new map value
/// (owned by the caller; free with `dime_value_free`) from each of the
/// `count` keys in `keys` that the share holds to its value; missing keys
/// are simply absent from the map (look entries up with
/// `dime_value_map_get`). Never blocks.
///
/// `keys` points to `count` NUL-terminated UTF-8 strings, read only during
/// the call; it may be NULL when `count` is 0. `DIME_STATUS_NULL_ARGUMENT`
/// if `client`, `out`, `keys` (with `count` > 0) or any key is NULL;
/// `share` as for `share_set`.
#[unsafe(no_mangle)]
pub extern "C" fn share_get_many(
    client: *mut dime_client,
    share: *const c_char,
    keys: *const *const c_char,
    count: usize,
    out: *mut *mut dime_value,
) -> dime_status {
    ffi_status! {
        let share = name_arg(share, "share")?;
        let keys = str_array_arg(keys, count, "keys")?;
        check_arg!(out);
        let found = with_client(client, |c| c.share(share).get_many(&keys))?;
        let map = Value::Map(found.into_iter().map(|(k, v)| (Value::String(k), v)).collect());
        write_value(out, map);
        Ok(())
    }
}

/// Stores every entry of `map` (a map value whose keys are all strings) in
/// the share in one atomic step: other clients see all of them or none.
/// `map` is only read; the caller still owns it. Blocks behind another
/// client's share lock like `share_set`.
///
/// `DIME_STATUS_WRONG_TYPE` if `map` is not a map;
/// `DIME_STATUS_INVALID_ARGUMENT` if one of its keys is not a string
/// (nothing is stored); other errors as for `share_set`.
#[unsafe(no_mangle)]
pub extern "C" fn share_set_many(
    client: *mut dime_client,
    share: *const c_char,
    map: *const dime_value,
) -> dime_status {
    ffi_status! {
        let share = name_arg(share, "share")?;
        let pairs = match check_arg!(ref map as Value) {
            Value::Map(pairs) => pairs,
            v => return Err(Fail::wrong_type("map", v.type_name())),
        };
        let items = pairs
            .iter()
            .enumerate()
            .map(|(i, (k, v))| match k {
                Value::String(k) => Ok((k.as_str(), v)),
                k => Err(Fail::invalid(format!(
                    "share keys are strings, but map key {i} is a {}",
                    k.type_name()
                ))),
            })
            .collect::<Result<Vec<_>, Fail>>()?;
        with_client(client, |c| c.share(share).set_many(&items))
    }
}

/// Atomically adds `delta` to the number under `key` (a missing key starts
/// at 0) and writes the new value to `*out`, a new value owned by the
/// caller (free with `dime_value_free`). Several clients incrementing at
/// once never lose an update.
///
/// `delta` is a numeric scalar (integer, single or double), only read. Two
/// integers give an integer of the stored kind (an int64 when the key was
/// missing); a single or double on either side gives a double (single if
/// both are single). `DIME_STATUS_SERVER_ERROR` if the stored value or
/// `delta` is not a number, or an integer would overflow (nothing changes;
/// the client stays usable). Blocks behind another client's share lock like
/// `share_set`. Other arguments and errors as for `share_get`;
/// `delta` must not be NULL.
#[unsafe(no_mangle)]
pub extern "C" fn share_incr(
    client: *mut dime_client,
    share: *const c_char,
    key: *const c_char,
    delta: *const dime_value,
    out: *mut *mut dime_value,
) -> dime_status {
    ffi_status! {
        let share = name_arg(share, "share")?;
        let key = str_arg(key, "key")?;
        let delta = check_arg!(ref delta as Value);
        check_arg!(out);
        let v = with_client(client, |c| c.share(share).incr(key, delta))?;
        write_value(out, v);
        Ok(())
    }
}

/// Compare-and-swap: atomically sets `key` to `new_value` only if its
/// current value equals `expected`, and writes to `*out_swapped` whether it
/// did (a mismatch is not an error).
///
/// - `expected`: NULL means "only if the key is absent"; otherwise the
///   stored value must have the same type and the same bits (`int64 1` is
///   not `double 1.0`; a NaN equals the same NaN). Only read.
/// - `new_value`: only read; the caller still owns it.
///
/// Blocks behind another client's share lock like `share_set`.
/// `DIME_STATUS_NULL_ARGUMENT` if `client`, `key`, `new_value` or
/// `out_swapped` is NULL; other errors as for `share_set`.
#[unsafe(no_mangle)]
pub extern "C" fn share_cas(
    client: *mut dime_client,
    share: *const c_char,
    key: *const c_char,
    expected: *const dime_value,
    new_value: *const dime_value,
    out_swapped: *mut bool,
) -> dime_status {
    ffi_status! {
        let share = name_arg(share, "share")?;
        let key = str_arg(key, "key")?;
        // SAFETY: NULL is meaningful here ("absent"); validity otherwise is
        // the caller's contract.
        let expected = unsafe { expected.cast::<Value>().as_ref() };
        let new_value = check_arg!(ref new_value as Value);
        check_arg!(out_swapped);
        let swapped = with_client(client, |c| c.share(share).cas(key, expected, new_value))?;
        write_out(out_swapped, swapped);
        Ok(())
    }
}

/// Blocks until the share holds `key`, then writes a copy of its value to
/// `*out`, a new value owned by the caller (free with `dime_value_free`).
/// Returns at once if the key already exists; otherwise the server wakes
/// this call when another client writes the key (no polling). The key is
/// not removed.
///
/// `timeout_ms`: `DIME_WAIT_FOREVER` (or any negative number) for no
/// limit; 0 to only check. `DIME_STATUS_TIMEOUT` if the time ran out (the
/// client stays usable and the wait is withdrawn). Holds the client's lock
/// while waiting. Other arguments and errors as for `share_get`.
#[unsafe(no_mangle)]
pub extern "C" fn share_wait_key(
    client: *mut dime_client,
    share: *const c_char,
    key: *const c_char,
    timeout_ms: i64,
    out: *mut *mut dime_value,
) -> dime_status {
    ffi_status! {
        let share = name_arg(share, "share")?;
        let key = str_arg(key, "key")?;
        check_arg!(out);
        let v = with_client(client, |c| c.share(share).wait_key(key, timeout_arg(timeout_ms)))?;
        write_value(out, v);
        Ok(())
    }
}

/// Takes a lock, waiting in FIFO order behind earlier requests.
fn lock(
    client: *mut dime_client,
    share: *const c_char,
    key: *const c_char,
    timeout: Option<Duration>,
) -> Result<(), Fail> {
    let share = name_arg(share, "share")?;
    // NULL is meaningful here: the whole-share lock.
    let key = opt_str_arg(key, "key")?;
    with_client(client, |c| match key {
        None => c.share(share).lock(timeout),
        Some(k) => c.share(share).lock_key(k, timeout),
    })
    .map(drop)
}

/// Takes a lock owned by this client's connection, waiting in FIFO order
/// behind earlier requests for it.
///
/// - `key` NULL: the **whole-share lock**. While this client holds it,
///   other clients' writes to the share (set, del, pop, clear, set_many,
///   incr, cas) wait until it is released; reads do not wait; this client
///   writes freely.
/// - `key` a NUL-terminated UTF-8 name: the **named lock** `key` of the
///   share, an advisory mutex independent of writes (and of the key of the
///   same name).
/// - `timeout_ms`: `DIME_WAIT_FOREVER` (or any negative number) for no
///   limit; 0 to only take it if free (see `share_try_lock`).
///
/// Locks are not re-entrant: asking for a lock this client already holds
/// fails with `DIME_STATUS_SERVER_ERROR`. A lock is released by
/// `share_unlock`, and automatically when this client closes,
/// disconnects or its process dies (the next waiter gets it at once).
/// `DIME_STATUS_TIMEOUT` if the time ran out (the request is withdrawn and
/// the client stays usable). Holds the client's lock while waiting.
/// `DIME_STATUS_NULL_ARGUMENT` if `client` is NULL; strings as for
/// `share_set`.
#[unsafe(no_mangle)]
pub extern "C" fn share_lock(
    client: *mut dime_client,
    share: *const c_char,
    key: *const c_char,
    timeout_ms: i64,
) -> dime_status {
    ffi_status! { lock(client, share, key, timeout_arg(timeout_ms)) }
}

/// Takes the lock only if it is free right now: the same as
/// `share_lock` with `timeout_ms` 0. `key` NULL is the
/// whole-share lock, as there.
///
/// `DIME_STATUS_OK` if this client now holds it; `DIME_STATUS_TIMEOUT` if
/// another client holds it (nothing changes); `DIME_STATUS_SERVER_ERROR` if
/// this client already holds it. Other errors as for `share_lock`.
#[unsafe(no_mangle)]
pub extern "C" fn share_try_lock(
    client: *mut dime_client,
    share: *const c_char,
    key: *const c_char,
) -> dime_status {
    // A zero timeout rather than the protocol's `nowait` flag: a busy lock
    // then comes back as a timeout, a status C can test, instead of a
    // server error only its message tells apart from "already held".
    ffi_status! { lock(client, share, key, Some(Duration::ZERO)) }
}

/// Releases a lock this client holds: `key` NULL for the whole-share lock,
/// else the named lock `key`. The longest-waiting request for it (a lock,
/// or writes held back by a share lock) proceeds at once.
/// `DIME_STATUS_SERVER_ERROR` if this client does not hold that lock.
/// Other errors as for `share_lock`.
#[unsafe(no_mangle)]
pub extern "C" fn share_unlock(
    client: *mut dime_client,
    share: *const c_char,
    key: *const c_char,
) -> dime_status {
    ffi_status! {
        let share = name_arg(share, "share")?;
        // NULL is meaningful here: the whole-share lock.
        let key = opt_str_arg(key, "key")?;
        with_client(client, |c| match key {
            None => c.share(share).unlock(),
            Some(k) => c.share(share).unlock_key(k),
        })
    }
}

/// Takes a lock as `share_lock` does (`key` NULL: the whole-share lock),
/// with a **lease**: unless renewed with `share_lock_renew`, the broker
/// releases it `ttl_ms` milliseconds after the grant, even if this client
/// is alive but stuck (paused, swapped out, in a debugger), and the next
/// waiter gets it. `ttl_ms` <= 0 takes it with no lease (held until
/// released, as `share_lock`).
///
/// On success writes the grant's **fencing token** to `*out_token`: a
/// number that grows with every grant (and survives broker restarts with
/// `--data-dir`). Pass it to `share_set_fenced` / `share_del_fenced`: the
/// broker refuses a write whose token is older than the lock's newest
/// grant, so a holder whose lease ran out cannot overwrite the next
/// holder's work. `timeout_ms` as for `share_lock` (0: only if free now,
/// else `DIME_STATUS_TIMEOUT`). Other errors as for `share_lock`;
/// `out_token` must not be NULL.
#[unsafe(no_mangle)]
pub extern "C" fn share_lock_lease(
    client: *mut dime_client,
    share: *const c_char,
    key: *const c_char,
    timeout_ms: i64,
    ttl_ms: i64,
    out_token: *mut u64,
) -> dime_status {
    ffi_status! {
        let share = name_arg(share, "share")?;
        let key = opt_str_arg(key, "key")?;
        check_arg!(out_token);
        let options = LockOptions {
            timeout: timeout_arg(timeout_ms),
            nowait: false,
            ttl: u64::try_from(ttl_ms).ok().filter(|t| *t > 0).map(Duration::from_millis),
        };
        let token = with_client(client, |c| c.share(share).lock_with(key, options))?;
        write_out(out_token, token);
        Ok(())
    }
}

/// Extends the lease of a lock this client holds (`key` NULL: the
/// whole-share lock) to `ttl_ms` milliseconds from now (<= 0: the length
/// it was taken or last renewed with), and writes its fencing token to
/// `*out_token`. `DIME_STATUS_SERVER_ERROR` if this client does not hold
/// the lock, for instance because the lease already ran out: it must not
/// go on as if it did. Other errors as for `share_lock`.
#[unsafe(no_mangle)]
pub extern "C" fn share_lock_renew(
    client: *mut dime_client,
    share: *const c_char,
    key: *const c_char,
    ttl_ms: i64,
    out_token: *mut u64,
) -> dime_status {
    ffi_status! {
        let share = name_arg(share, "share")?;
        let key = opt_str_arg(key, "key")?;
        check_arg!(out_token);
        let ttl = u64::try_from(ttl_ms).ok().filter(|t| *t > 0).map(Duration::from_millis);
        let token = with_client(client, |c| c.share(share).renew(key, ttl))?;
        write_out(out_token, token);
        Ok(())
    }
}

/// As `share_set`, carrying fencing token `fence` (from `share_lock_lease`):
/// refused with `DIME_STATUS_SERVER_ERROR` (and nothing written) if a newer
/// grant of the share's lock or of the named lock `key` exists.
#[unsafe(no_mangle)]
pub extern "C" fn share_set_fenced(
    client: *mut dime_client,
    share: *const c_char,
    key: *const c_char,
    value: *const dime_value,
    fence: u64,
) -> dime_status {
    ffi_status! {
        let share = name_arg(share, "share")?;
        let key = str_arg(key, "key")?;
        let value = check_arg!(ref value as Value);
        with_client(client, |c| c.share(share).fenced(fence).set(key, value))
    }
}

/// As `share_del`, carrying fencing token `fence`: refused like
/// `share_set_fenced`.
#[unsafe(no_mangle)]
pub extern "C" fn share_del_fenced(
    client: *mut dime_client,
    share: *const c_char,
    key: *const c_char,
    fence: u64,
    out_found: *mut bool,
) -> dime_status {
    ffi_status! {
        let share = name_arg(share, "share")?;
        let key = str_arg(key, "key")?;
        check_arg!(out_found);
        let found = with_client(client, |c| c.share(share).fenced(fence).del(key))?;
        write_out(out_found, found);
        Ok(())
    }
}
