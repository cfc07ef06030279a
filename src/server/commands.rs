//! The command table: one function per DiME2 command (PROTOCOL.md §2).
//! New command families add rows here; the event loop never changes.

use super::conn::{BlockedOn, Held, wait_reply};
use super::groups::ConnId;
use super::outqueue::OutItem;
use super::state::State;
use crate::wire::Frame;
use serde_json::{Map, Value as Json, json};
use std::time::{Duration, Instant};

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
pub type Handler = fn(&mut State, ConnId, &Map<String, Json>, Frame) -> Result;

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

fn str_field<'a>(obj: &'a Map<String, Json>, key: &str) -> Result<&'a str> {
    match obj.get(key) {
        Some(Json::String(s)) => Ok(s),
        Some(_) => Err(CommandError::Malformed(format!(
            "JSON parsing error: {key}: expected string"
        ))),
        None => Err(CommandError::Malformed(format!(
            "JSON parsing error: missing field: {key}"
        ))),
    }
}

/// Group names from `name`: a list of strings, or one string.
fn names(obj: &Map<String, Json>) -> Result<Vec<String>> {
    match obj.get("name") {
        Some(Json::String(s)) => Ok(vec![s.clone()]),
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

fn handshake(st: &mut State, id: ConnId, obj: &Map<String, Json>, _: Frame) -> Result {
    let wanted = str_field(obj, "serialization")?;
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

fn join(st: &mut State, id: ConnId, obj: &Map<String, Json>, _: Frame) -> Result {
    let groups = names(obj)?;
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
    st.reply(id, json!({"status": 0}));
    Ok(())
}

fn leave(st: &mut State, id: ConnId, obj: &Map<String, Json>, _: Frame) -> Result {
    let groups = names(obj)?;
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
    st.reply(id, json!({"status": 0}));
    Ok(())
}

fn relay(
    st: &mut State,
    id: ConnId,
    obj: &Map<String, Json>,
    frame: Frame,
    recipients: Vec<ConnId>,
) -> Result {
    str_field(obj, "varname")?;
    str_field(obj, "serialization")?;
    st.check_queue_room(&recipients, frame.wire_len() as u64)
        .map_err(CommandError::Failed)?;
    st.deliver(&recipients, frame);
    // "receive": true (our extension) answers with the sender's own next
    // messages instead of a bare status: a request/reply in one exchange.
    if obj.get("receive").and_then(Json::as_bool) == Some(true) {
        return receive(st, id, obj, sync_count(obj)?);
    }
    st.reply(id, json!({"status": 0}));
    Ok(())
}

fn send(st: &mut State, id: ConnId, obj: &Map<String, Json>, frame: Frame) -> Result {
    let group = str_field(obj, "name")?;
    let recipients: Vec<ConnId> = match st.groups.members(group) {
        Some(m) => m.iter().copied().collect(),
        None => {
            return Err(CommandError::Failed(format!(
                "No such group exists: {group}"
            )));
        }
    };
    relay(st, id, obj, frame, recipients)
}

fn broadcast(st: &mut State, id: ConnId, obj: &Map<String, Json>, frame: Frame) -> Result {
    let recipients: Vec<ConnId> = st.conns.keys().copied().filter(|c| *c != id).collect();
    relay(st, id, obj, frame, recipients)
}

fn sync(st: &mut State, id: ConnId, obj: &Map<String, Json>, _: Frame) -> Result {
    let n = sync_count(obj)?;
    // "wait": true (our extension) blocks until a message is queued, saving
    // the separate wait exchange on the critical path of a round trip.
    if obj.get("wait").and_then(Json::as_bool) == Some(true) {
        return receive(st, id, obj, n);
    }
    drain_inbox(st, id, n);
    Ok(())
}

fn sync_count(obj: &Map<String, Json>) -> Result<i64> {
    match obj.get("n") {
        None | Some(Json::Null) => Ok(-1),
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_f64().map(|f| f as i64))
            .ok_or_else(|| {
                CommandError::Malformed("JSON parsing error: n: expected integer".into())
            }),
    }
}

/// Sends queued messages now, or blocks until one arrives (or `timeout`).
fn receive(st: &mut State, id: ConnId, obj: &Map<String, Json>, n: i64) -> Result {
    if st.conns[&id].inbox.is_empty() {
        let deadline = super::share::deadline(obj)?;
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
    st.reply(id, json!({"status": 0}));
}

fn wait(st: &mut State, id: ConnId, obj: &Map<String, Json>, _: Frame) -> Result {
    // "timeout" (milliseconds) is our extension; the original blocks forever.
    let deadline = match obj.get("timeout") {
        None | Some(Json::Null) => None,
        Some(v) => {
            let ms = v.as_f64().filter(|ms| *ms >= 0.0).ok_or_else(|| {
                CommandError::Malformed(
                    "JSON parsing error: timeout: expected a number of milliseconds".into(),
                )
            })?;
            Some(Instant::now() + Duration::from_secs_f64(ms / 1000.0))
        }
    };
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

fn devices(st: &mut State, id: ConnId, _: &Map<String, Json>, _: Frame) -> Result {
    let devices: Vec<&str> = st.groups.names().collect();
    let reply = json!({"status": 0, "devices": devices});
    st.reply(id, reply);
    Ok(())
}
