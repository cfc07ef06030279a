//! The command table: one function per DiME2 command (PROTOCOL.md §2).
//! New command families add rows here; the event loop never changes.

use super::conn::{BlockedOn, Held, wait_reply};
use super::groups::ConnId;
use super::header::{Header, Text};
use super::outqueue::OutItem;
use super::state::State;
use crate::wire::Frame;
use serde_json::value::RawValue;
use serde_json::{Value as Json, json};
use std::borrow::Cow;

/// Why a command failed.
pub enum CommandError {
    /// The command failed; the connection stays usable.
    Failed(String),
    /// The request itself is malformed; the connection is closed after the reply.
    Malformed(String),
}

type Result<T = ()> = std::result::Result<T, CommandError>;

/// A command handler: the connection, its parsed JSON header, and the frame
/// (kept whole so relayed messages go out unchanged).
pub type Handler = fn(&mut State, ConnId, &Header, Frame) -> Result;

/// Every command the server knows.
pub const COMMANDS: &[(&str, Handler)] = &[
    ("handshake", handshake),
    ("join", join),
    ("leave", leave),
    ("send", send),
    ("broadcast", broadcast),
    ("sync", sync),
    ("wait", wait),
    ("devices", devices),
];

/// Finds the handler for `command`.
pub fn lookup(command: &str) -> Option<Handler> {
    COMMANDS
        .iter()
        .chain(super::share::COMMANDS)
        .chain(super::tuples::COMMANDS)
        .find(|(name, _)| *name == command)
        .map(|(_, h)| *h)
}

/// A string field that must be present.
pub fn required<'h>(field: &'h Option<Text<'_>>, name: &str) -> Result<&'h str> {
    field.as_deref().ok_or_else(|| {
        CommandError::Malformed(format!("JSON parsing error: missing field: {name}"))
    })
}

/// A raw JSON value that must be a string.
fn raw_str<'h>(raw: Option<&'h RawValue>, name: &str) -> Result<Cow<'h, str>> {
    let raw = raw.ok_or_else(|| {
        CommandError::Malformed(format!("JSON parsing error: missing field: {name}"))
    })?;
    super::header::raw_str(raw).ok_or_else(|| {
        CommandError::Malformed(format!("JSON parsing error: {name}: expected string"))
    })
}

/// Group names from `name`: a list of strings, or one string.
fn names(h: &Header) -> Result<Vec<String>> {
    if h.name.is_some_and(|r| r.get().starts_with('"')) {
        return Ok(vec![raw_str(h.name, "name")?.into_owned()]);
    }
    match h
        .name
        .and_then(|r| serde_json::from_str::<Json>(r.get()).ok())
    {
        Some(Json::Array(items)) => items
            .iter()
            .map(|v| match v {
                Json::String(s) => Ok(s.clone()),
                _ => Err(CommandError::Malformed(
                    "JSON parsing error: expected string".into(),
                )),
            })
            .collect(),
        Some(_) => Err(CommandError::Malformed(
            "JSON parsing error: expected string".into(),
        )),
        None => Err(CommandError::Malformed(
            "JSON parsing error: missing field: name".into(),
        )),
    }
}

const SERIALIZATIONS: [&str; 4] = ["matlab", "pickle", "dimeb", "json"];

fn handshake(st: &mut State, id: ConnId, h: &Header, _: Frame) -> Result {
    let wanted = required(&h.serialization, "serialization")?;
    if !SERIALIZATIONS.contains(&wanted) {
        return Err(CommandError::Failed(format!(
            "Unknown serialization: {wanted} (expected one of matlab, pickle, dimeb, json)"
        )));
    }
    let current = match st.serialization.as_deref() {
        None => wanted.to_owned(),
        Some(cur) if cur == wanted || cur == "dimeb" || cur == "json" => cur.to_owned(),
        Some(_) => {
            st.meta_to_others(
                id,
                &json!({"status": 1, "meta": true, "command": "reregister", "serialization": "dimeb"}),
            );
            "dimeb".to_owned()
        }
    };
    st.serialization = Some(current.clone());
    st.reply(
        id,
        json!({"status": 0, "serialization": current, "tls": false}),
    );
    Ok(())
}

fn join(st: &mut State, id: ConnId, h: &Header, _: Frame) -> Result {
    let groups = names(h)?;
    // Check all names first so a failed join changes nothing.
    for (i, g) in groups.iter().enumerate() {
        if st.groups.contains(g, id) || groups[..i].contains(g) {
            return Err(CommandError::Failed(format!(
                "Client is already in group: {g}"
            )));
        }
    }
    let conn = st.conns.get_mut(&id).expect("live connection");
    for g in groups {
        st.groups.join(&g, id);
        conn.groups.insert(g);
    }
    st.reply_ok(id);
    Ok(())
}

fn leave(st: &mut State, id: ConnId, h: &Header, _: Frame) -> Result {
    let groups = names(h)?;
    for (i, g) in groups.iter().enumerate() {
        if !st.groups.contains(g, id) || groups[..i].contains(g) {
            return Err(CommandError::Failed(format!("Client is not in group: {g}")));
        }
    }
    let conn = st.conns.get_mut(&id).expect("live connection");
    for g in groups {
        st.groups.leave(&g, id);
        conn.groups.remove(&g);
    }
    st.reply_ok(id);
    Ok(())
}

fn relay(st: &mut State, id: ConnId, h: &Header, frame: Frame, recipients: Vec<ConnId>) -> Result {
    required(&h.varname, "varname")?;
    required(&h.serialization, "serialization")?;
    // Recipients tell a relayed message from the reply that ends a sync by
    // its "status" (and meta messages by "meta"); a message carrying either
    // would end their sync early and desynchronize every later reply.
    if h.status.is_some() || h.meta.is_some() {
        return Err(CommandError::Failed(
            "A message header may not carry \"status\" or \"meta\": recipients would take it for a reply".into(),
        ));
    }
    st.check_queue_room(&recipients, frame.wire_len() as u64)
        .map_err(CommandError::Failed)?;
    st.deliver(&recipients, frame);
    // "receive": true (our extension) answers with the sender's own next
    // messages instead of a bare status: a request/reply in one exchange.
    if Header::flag(h.receive) {
        return receive(st, id, h, sync_count(h)?);
    }
    st.reply_ok(id);
    Ok(())
}

fn send(st: &mut State, id: ConnId, h: &Header, frame: Frame) -> Result {
    let group = raw_str(h.name, "name")?;
    let recipients: Vec<ConnId> = match st.groups.members(&group) {
        Some(m) => m.iter().copied().collect(),
        None => {
            return Err(CommandError::Failed(format!(
                "No such group exists: {group}"
            )));
        }
    };
    relay(st, id, h, frame, recipients)
}

fn broadcast(st: &mut State, id: ConnId, h: &Header, frame: Frame) -> Result {
    let recipients: Vec<ConnId> = st.conns.keys().copied().filter(|c| *c != id).collect();
    relay(st, id, h, frame, recipients)
}

fn sync(st: &mut State, id: ConnId, h: &Header, _: Frame) -> Result {
    let n = sync_count(h)?;
    // "wait": true (our extension) blocks until a message is queued, saving
    // the separate wait exchange on the critical path of a round trip.
    if Header::flag(h.wait) {
        return receive(st, id, h, n);
    }
    drain_inbox(st, id, n);
    Ok(())
}

fn sync_count(h: &Header) -> Result<i64> {
    Ok(h.n.map_or(-1, |n| n as i64))
}

/// Sends queued messages now, or blocks until one arrives (or `timeout`).
fn receive(st: &mut State, id: ConnId, h: &Header, n: i64) -> Result {
    if st.conns[&id].inbox.is_empty() {
        let deadline = super::share::deadline(h)?;
        st.block(id, deadline, BlockedOn::Inbox(n));
    } else {
        drain_inbox(st, id, n);
    }
    Ok(())
}

/// Sends up to `n` queued messages (all if `n < 0`), then `{"status":0}`.
pub fn drain_inbox(st: &mut State, id: ConnId, n: i64) {
    let conn = st.conns.get_mut(&id).expect("live connection");
    let count = if n < 0 {
        conn.inbox.len()
    } else {
        (n as usize).min(conn.inbox.len())
    };
    for _ in 0..count {
        let frame = conn.inbox.pop_front().expect("counted");
        conn.inbox_bytes -= frame.wire_len() as u64;
        conn.reply(OutItem::Shared(frame));
    }
    st.reply_ok(id);
}

fn wait(st: &mut State, id: ConnId, h: &Header, _: Frame) -> Result {
    // "timeout" (milliseconds) is our extension; the original blocks forever.
    let deadline = super::share::deadline(h)?;
    let conn = st.conns.get_mut(&id).expect("live connection");
    if conn.waiting.is_some() {
        conn.held.push_back(Held::Wait(deadline));
    } else if !conn.inbox.is_empty() {
        conn.reply(wait_reply(conn.inbox.len(), false));
    } else {
        conn.waiting = Some(deadline);
        if let Some(d) = deadline {
            st.timers.insert((d, id));
        }
    }
    st.dirty.insert(id);
    Ok(())
}

fn devices(st: &mut State, id: ConnId, _: &Header, _: Frame) -> Result {
    let devices: Vec<&str> = st.groups.names().collect();
    let reply = json!({"status": 0, "devices": devices});
    st.reply(id, reply);
    Ok(())
}

/// `_test_panic`: panics, so tests can check the loop survives a handler
/// bug (registered only with `Config::test_panic_command`).
pub fn test_panic(_: &mut State, _: ConnId, _: &Header, _: Frame) -> Result {
    panic!("_test_panic was asked to panic");
}
