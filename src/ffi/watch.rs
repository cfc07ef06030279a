//! Change events from C: `dime_watch_share`, `dime_watch_space` and
//! `dime_watch_groups` open a watch on a connection of its own;
//! `dime_watch_next` takes the next event (see [`crate::client::watch`]).
//! A watch whose connection breaks reconnects on the next
//! `dime_watch_next` and resumes where it was; `dime_watch_get_position`
//! gives a position to resume from after a restart of the program.

use super::args::{name_arg, opt_str_arg, timeout_arg, write_out};
use super::client::{dime_client, with_client};
use super::status::{Fail, check_arg, dime_status, ffi_status, ffi_value};
use super::value::{as_raw, dime_value};
use crate::client::Error;
use crate::client::watch::{EventKind, Position, Target, Watch};
use crate::codec::dimeb;
use crate::value::Value;
use std::ffi::{CString, c_char};
use std::sync::Mutex;

/// A watch, from `dime_watch_share`, `dime_watch_space` or
/// `dime_watch_groups`; release it with `dime_watch_free`. Internally
/// locked; one thread at a time waits in `dime_watch_next`.
#[allow(non_camel_case_types)]
pub struct dime_watch {
    watch: Mutex<Watch>,
}

/// Where a watch is in its feed (`dime_watch_get_position`); pass it to a new
/// watch to resume after the last event seen.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug)]
pub struct dime_watch_position {
    /// Identifies the feed and the broker run the number belongs to.
    pub epoch: u64,
    /// The last event number seen.
    pub seq: u64,
}

/// What an event says happened (`dime_event_kind`).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum dime_change {
    /// Not an event (`dime_event_kind` of NULL).
    None = 0,
    /// A share key was set (set, set_many, incr, a swapping cas).
    Set = 1,
    /// A share key was removed (del, pop).
    Del = 2,
    /// Every key of a share was removed.
    Clear = 3,
    /// A tuple was put into a space.
    Out = 4,
    /// A tuple was taken from a space.
    In = 5,
    /// A client joined a group.
    Join = 6,
    /// A client left a group (or disconnected).
    Leave = 7,
    /// Events were missed and are no longer known: re-read the state.
    Lost = 8,
}

/// One event, from `dime_watch_next`; release it with `dime_event_free`.
#[allow(non_camel_case_types)]
pub struct dime_event {
    seq: u64,
    kind: dime_change,
    topic: Option<CString>,
    key: Option<CString>,
    value: Option<Value>,
    client: i64,
    message: Option<CString>,
}

fn c(s: String) -> CString {
    CString::new(s.replace('\0', "\\0")).unwrap_or_default()
}

fn resume_arg(p: *const dime_watch_position) -> Option<Position> {
    // SAFETY: the caller's contract: NULL or a valid position.
    unsafe { p.as_ref() }.map(|p| Position {
        epoch: p.epoch,
        seq: p.seq,
    })
}

/// Opens `target` on the connection's address and writes the handle.
fn open(
    client: *mut dime_client,
    target: Target,
    resume: *const dime_watch_position,
    out: *mut *mut dime_watch,
) -> Result<(), Fail> {
    check_arg!(out);
    let addr = with_client(client, |c| Ok(c.address().clone()))?;
    let watch = {
        let _sigpipe = super::sigpipe::SigpipeGuard::new();
        Watch::open(&addr, target, resume_arg(resume))?
    };
    write_out(
        out,
        Box::into_raw(Box::new(dime_watch {
            watch: Mutex::new(watch),
        })),
    );
    Ok(())
}

/// Watches share `share` (NULL or `""`: the default share): every key
/// starting with `prefix` (NULL or `""`: every key) that is set or
/// removed, and every clear, is pushed to the watch as it happens.
/// `resume`: NULL to start from now, or a position from
/// `dime_watch_get_position` to first receive what happened after it (or one
/// `DIME_CHANGE_LOST` event when that is no longer known). On success
/// writes a new watch to `*out`, owned by the caller (`dime_watch_free`).
/// The watch has its own connection; the client is only read.
#[unsafe(no_mangle)]
pub extern "C" fn dime_watch_share(
    client: *mut dime_client,
    share: *const c_char,
    prefix: *const c_char,
    resume: *const dime_watch_position,
    out: *mut *mut dime_watch,
) -> dime_status {
    ffi_status! {
        let name = name_arg(share, "share")?.to_owned();
        let prefix = opt_str_arg(prefix, "prefix")?.unwrap_or("").to_owned();
        open(client, Target::Share { name, prefix }, resume, out)
    }
}

/// Watches tuple space `space` (NULL or `""`: the default space): every
/// tuple put in (`DIME_CHANGE_OUT`) or taken out (`DIME_CHANGE_IN`).
/// `resume` and `out` as for `dime_watch_share`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_watch_space(
    client: *mut dime_client,
    space: *const c_char,
    resume: *const dime_watch_position,
    out: *mut *mut dime_watch,
) -> dime_status {
    ffi_status! {
        let name = name_arg(space, "space")?.to_owned();
        open(client, Target::Space { name }, resume, out)
    }
}

/// Watches group membership: every join and leave (a disconnect leaves
/// every group) of groups whose names start with `prefix` (NULL or `""`:
/// every group). `resume` and `out` as for `dime_watch_share`.
#[unsafe(no_mangle)]
pub extern "C" fn dime_watch_groups(
    client: *mut dime_client,
    prefix: *const c_char,
    resume: *const dime_watch_position,
    out: *mut *mut dime_watch,
) -> dime_status {
    ffi_status! {
        let prefix = opt_str_arg(prefix, "prefix")?.unwrap_or("").to_owned();
        open(client, Target::Groups { prefix }, resume, out)
    }
}

/// Waits up to `timeout_ms` (`DIME_WAIT_FOREVER`: no limit; 0: only check)
/// for the next event and writes it to `*out`, a new event owned by the
/// caller (`dime_event_free`). `DIME_STATUS_TIMEOUT` if none came. If the
/// connection broke, it is reopened once and the watch resumes where it
/// was; `DIME_STATUS_CONNECTION_LOST` if that failed too (the watch stays
/// usable: the next call tries again).
#[unsafe(no_mangle)]
pub extern "C" fn dime_watch_next(
    watch: *mut dime_watch,
    timeout_ms: i64,
    out: *mut *mut dime_event,
) -> dime_status {
    ffi_status! {
        let w = check_arg!(ref watch as dime_watch);
        check_arg!(out);
        let mut w = w.watch.lock().unwrap_or_else(|p| p.into_inner());
        let ev = {
            let _sigpipe = super::sigpipe::SigpipeGuard::new();
            w.next(timeout_arg(timeout_ms))?
        };
        let Some(ev) = ev else {
            return Err(Fail::new(dime_status::Timeout, "no event came before the timeout"));
        };
        let value = ev
            .value
            .as_ref()
            .map(|v| dimeb::decode(v))
            .transpose()
            .map_err(|e| Fail::from(Error::Codec(e)))?;
        let kind = match ev.kind {
            EventKind::Set => dime_change::Set,
            EventKind::Del => dime_change::Del,
            EventKind::Clear => dime_change::Clear,
            EventKind::Out => dime_change::Out,
            EventKind::In => dime_change::In,
            EventKind::Join => dime_change::Join,
            EventKind::Leave => dime_change::Leave,
            EventKind::Lost => dime_change::Lost,
        };
        let event = dime_event {
            seq: ev.seq,
            kind,
            topic: ev.topic.map(c),
            key: ev.key.map(c),
            value,
            client: ev.client.and_then(|c| i64::try_from(c).ok()).unwrap_or(-1),
            message: ev.message.map(c),
        };
        write_out(out, Box::into_raw(Box::new(event)));
        Ok(())
    }
}

/// Writes the watch's position (the last event seen, or where the feed
/// was when the watch began) to `*out`, for resuming a later watch.
#[unsafe(no_mangle)]
pub extern "C" fn dime_watch_get_position(
    watch: *const dime_watch,
    out: *mut dime_watch_position,
) -> dime_status {
    ffi_status! {
        let w = check_arg!(ref watch as dime_watch);
        check_arg!(out);
        let p = w.watch.lock().unwrap_or_else(|p| p.into_inner()).position();
        let p = p.ok_or_else(|| Fail::new(dime_status::NotFound, "the watch has no position yet"))?;
        write_out(out, dime_watch_position { epoch: p.epoch, seq: p.seq });
        Ok(())
    }
}

/// Closes the watch's connection and frees it. NULL is accepted.
#[unsafe(no_mangle)]
pub extern "C" fn dime_watch_free(watch: *mut dime_watch) {
    ffi_value!((), {
        if !watch.is_null() {
            // SAFETY: the caller's contract: from dime_watch_*, not used again.
            drop(unsafe { Box::from_raw(watch) });
        }
    })
}

/// The event's kind; `DIME_CHANGE_NONE` for NULL.
#[unsafe(no_mangle)]
pub extern "C" fn dime_event_kind(event: *const dime_event) -> dime_change {
    ffi_value!(dime_change::None, {
        // SAFETY: the caller's contract: NULL or from dime_watch_next.
        unsafe { event.as_ref() }.map_or(dime_change::None, |e| e.kind)
    })
}

/// The event's number (events of one feed are numbered in order); 0 for NULL.
#[unsafe(no_mangle)]
pub extern "C" fn dime_event_seq(event: *const dime_event) -> u64 {
    ffi_value!(0, {
        // SAFETY: as for dime_event_kind.
        unsafe { event.as_ref() }.map_or(0, |e| e.seq)
    })
}

/// The share or space the event happened in, borrowed from the event
/// (valid until `dime_event_free`); NULL for group events, `LOST` and NULL.
#[unsafe(no_mangle)]
pub extern "C" fn dime_event_topic(event: *const dime_event) -> *const c_char {
    ffi_value!(std::ptr::null(), {
        // SAFETY: as for dime_event_kind.
        unsafe { event.as_ref() }
            .and_then(|e| e.topic.as_ref())
            .map_or(std::ptr::null(), |s| s.as_ptr())
    })
}

/// The share key, or the group name, the event is about, borrowed like
/// `dime_event_topic`; NULL for clears, tuple events, `LOST` and NULL.
#[unsafe(no_mangle)]
pub extern "C" fn dime_event_key(event: *const dime_event) -> *const c_char {
    ffi_value!(std::ptr::null(), {
        // SAFETY: as for dime_event_kind.
        unsafe { event.as_ref() }
            .and_then(|e| e.key.as_ref())
            .map_or(std::ptr::null(), |s| s.as_ptr())
    })
}

/// The new value (`SET`) or the tuple (`OUT`, `IN`), borrowed from the
/// event (valid until `dime_event_free`; `dime_value_clone` to keep it);
/// NULL when the event has none, and for NULL.
#[unsafe(no_mangle)]
pub extern "C" fn dime_event_value(event: *const dime_event) -> *const dime_value {
    ffi_value!(std::ptr::null(), {
        // SAFETY: as for dime_event_kind.
        unsafe { event.as_ref() }
            .and_then(|e| e.value.as_ref())
            .map_or(std::ptr::null(), as_raw)
    })
}

/// The broker's id of the client that joined or left; -1 for other
/// events and NULL.
#[unsafe(no_mangle)]
pub extern "C" fn dime_event_client(event: *const dime_event) -> i64 {
    ffi_value!(-1, {
        // SAFETY: as for dime_event_kind.
        unsafe { event.as_ref() }.map_or(-1, |e| e.client)
    })
}

/// For `LOST`: why the history is lost, borrowed like `dime_event_topic`;
/// NULL otherwise.
#[unsafe(no_mangle)]
pub extern "C" fn dime_event_message(event: *const dime_event) -> *const c_char {
    ffi_value!(std::ptr::null(), {
        // SAFETY: as for dime_event_kind.
        unsafe { event.as_ref() }
            .and_then(|e| e.message.as_ref())
            .map_or(std::ptr::null(), |s| s.as_ptr())
    })
}

/// Frees an event. NULL is accepted.
#[unsafe(no_mangle)]
pub extern "C" fn dime_event_free(event: *mut dime_event) {
    ffi_value!((), {
        if !event.is_null() {
            // SAFETY: the caller's contract: from dime_watch_next, not used again.
            drop(unsafe { Box::from_raw(event) });
        }
    })
}
