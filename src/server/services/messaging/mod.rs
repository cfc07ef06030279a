//! DiME2 messaging (docs/protocol.md §2): groups, `send`, `broadcast`,
//! `sync`, `wait`, `devices`, and the handshake's serialization
//! negotiation (§3).

mod groups;

use crate::proto::extensions;
use crate::server::auth::{self, Access, Action, Credential, Principal};
use crate::server::blocking::deadline;
use crate::server::conn::{ConnId, Connection, Held, json_item, wait_reply};
use crate::server::outqueue::OutItem;
use crate::server::request::{CommandError, Result, Text, flag, required, required_raw_str};
use crate::server::service::{Handler, Need, Service};
use crate::server::state::State;
use crate::wire::Frame;
use groups::Groups;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value as Json, json};
use std::sync::Arc;

/// The fields DiME2 commands read.
#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub struct MessagingHeader<'a> {
    /// `handshake`: a serialization name; `send`, `broadcast`: the
    /// payload's (optional there).
    #[serde(borrow)]
    pub serialization: Option<Text<'a>>,
    /// `send`, `broadcast`: the variable's name.
    #[serde(borrow)]
    pub varname: Option<Text<'a>>,
    /// `join`, `leave`: a group or a list of groups; `send`: a group.
    #[serde(borrow)]
    pub name: Option<&'a RawValue>,
    /// `sync`, `send` with `receive`: how many messages (absent: all).
    pub n: Option<f64>,
    /// Milliseconds to wait before giving up (our extension).
    pub timeout: Option<f64>,
    /// `send`: answer with the sender's own next messages (our extension).
    pub receive: Option<bool>,
    /// `sync`: block until a message is queued (our extension).
    pub wait: Option<bool>,
    /// Never in a request: present only so that `send`/`broadcast` can
    /// refuse a header that would pass for a reply at its recipients.
    #[serde(borrow)]
    pub status: Option<&'a RawValue>,
    /// Never in a request; refused in relayed headers like `status`.
    #[serde(borrow)]
    pub meta: Option<&'a RawValue>,
    /// `handshake`: the client's token (our extension, for `--auth`).
    #[serde(borrow)]
    pub token: Option<Text<'a>>,
}

type Header<'a> = MessagingHeader<'a>;

/// What a blocked messaging request waits for: a message, for a `sync`
/// with `"wait":true`; up to `n` are then sent.
pub struct InboxWait(i64);

/// DiME2 messaging's data: groups and the negotiated serialization.
#[derive(Default)]
pub struct Messaging {
    /// Group membership.
    groups: Groups,
    /// The server-wide serialization (§3); None until the first handshake.
    serialization: Option<String>,
}

impl Service for Messaging {
    type Header<'h> = MessagingHeader<'h>;
    type Blocked = InboxWait;

    const COMMANDS: &'static [(&'static str, Handler<Self>)] = &[
        ("handshake", handshake),
        ("join", join),
        ("leave", leave),
        ("send", send),
        ("broadcast", broadcast),
        ("sync", sync),
        ("wait", wait),
        ("devices", devices),
    ];

    const EXTENSIONS: &'static [&'static str] = &[
        extensions::WAIT_TIMEOUT,
        extensions::SYNC_WAIT,
        extensions::SEND_RECEIVE,
        extensions::AUTH,
    ];

    fn required(command: &str, h: &Header<'_>, need: &mut Need<'_>) -> Result {
        match command {
            "join" => names(h)?.iter().try_for_each(|g| need(Action::Join, g)),
            "send" => need(Action::Send, &required_raw_str(h.name, "name")?),
            "broadcast" => need(Action::Broadcast, ""),
            // The client's own session: its handshake, its groups, its
            // queue, and the list of group names.
            "handshake" | "leave" | "sync" | "wait" | "devices" => Ok(()),
            // A command added without a line here is for admins only.
            _ => need(Action::Admin, command),
        }
    }

    fn withdraw(&mut self, _: &mut State, _: ConnId, _: InboxWait) {
        // Nothing is queued anywhere for a waiting sync.
    }

    fn timeout_message(_: &InboxWait) -> String {
        "Timed out waiting for a message".to_owned()
    }

    fn disconnect(&mut self, st: &mut State, id: ConnId, conn: &Connection) {
        for g in &conn.groups {
            self.groups.leave(g, id);
        }
        if st.conns.is_empty() {
            // A fresh session negotiates afresh.
            self.serialization = None;
        }
    }
}

/// Group names from `name`: a list of strings, or one string.
fn names(h: &Header) -> Result<Vec<String>> {
    if h.name.is_some_and(|r| r.get().starts_with('"')) {
        return Ok(vec![required_raw_str(h.name, "name")?.into_owned()]);
    }
    match h
        .name
        .and_then(|r| serde_json::from_str::<Json>(r.get()).ok())
    {
        Some(Json::Array(items)) => items
            .iter()
            .map(|v| match v {
                Json::String(s) => Ok(s.clone()),
                _ => Err(CommandError::Failed(
                    "JSON parsing error: expected string".into(),
                )),
            })
            .collect(),
        Some(_) => Err(CommandError::Failed(
            "JSON parsing error: expected string".into(),
        )),
        None => Err(CommandError::Failed(
            "JSON parsing error: missing field: name".into(),
        )),
    }
}

const SERIALIZATIONS: [&str; 4] = ["matlab", "pickle", "dimeb", "json"];

/// Under `--auth`, checks the handshake's token: a valid one makes the
/// client its user; a wrong one, or none from a client that has not
/// otherwise authenticated, is refused and the connection closed. False
/// when the client was refused.
fn authenticate(st: &mut State, id: ConnId, h: &Header) -> bool {
    let Some(table) = st.auth.clone() else {
        return true;
    };
    let Some(conn) = st.conns.get_mut(&id) else {
        return false;
    };
    match h.token.as_deref() {
        Some(token) => match table.by_token(token) {
            Some(user) => {
                let principal = Principal::user(user, Credential::Token(token.to_owned()));
                log::info!("client {id} authenticated as '{}'", user.name);
                conn.access = Access::Granted(std::sync::Arc::new(principal));
                true
            }
            None => {
                log::warn!("client {id} ({}): invalid token", conn.stream.peer());
                st.fail_and_close(id, auth::BAD_TOKEN, true);
                false
            }
        },
        None if matches!(conn.access, Access::Pending) => {
            log::info!("client {id} ({}): no token", conn.stream.peer());
            st.fail_and_close(id, auth::AUTH_REQUIRED, true);
            false
        }
        None => true,
    }
}

fn handshake(svc: &mut Messaging, st: &mut State, id: ConnId, h: &Header, _: Frame) -> Result {
    if !authenticate(st, id, h) {
        return Ok(());
    }
    let wanted = required(&h.serialization, "serialization")?;
    if !SERIALIZATIONS.contains(&wanted) {
        return Err(CommandError::Failed(format!(
            "Unknown serialization: {wanted} (expected one of matlab, pickle, dimeb, json)"
        )));
    }
    let current = match svc.serialization.as_deref() {
        None => wanted.to_owned(),
        Some(cur) if cur == wanted || cur == "dimeb" || cur == "json" => cur.to_owned(),
        Some(_) => {
            meta_to_others(
                st,
                id,
                &json!({"status": 1, "meta": true, "command": "reregister", "serialization": "dimeb"}),
            );
            "dimeb".to_owned()
        }
    };
    svc.serialization = Some(current.clone());
    // "extensions" is ours: what this server understands beyond DiME2, so
    // our clients fall back to DiME2's own commands where a server (an
    // original one) sends no such list. Old clients ignore the field.
    let mut reply =
        json!({"status": 0, "serialization": current, "tls": false, "extensions": st.extensions});
    if let Some(user) = st.conns.get(&id).and_then(|c| c.access.user()) {
        reply["user"] = json!(user);
    }
    st.reply(id, reply);
    Ok(())
}

fn join(svc: &mut Messaging, st: &mut State, id: ConnId, h: &Header, _: Frame) -> Result {
    let groups = names(h)?;
    // Check all names first so a failed join changes nothing.
    for (i, g) in groups.iter().enumerate() {
        if svc.groups.contains(g, id) || groups[..i].contains(g) {
            return Err(CommandError::Failed(format!(
                "Client is already in group: {g}"
            )));
        }
    }
    let conn = st.conns.get_mut(&id).expect("live connection");
    let limit = st.config.max_groups;
    if limit > 0 && conn.groups.len() + groups.len() > limit {
        return Err(CommandError::Failed(format!(
            "Too many groups: this client is in {} and may be in at most {limit} (--max-groups)",
            conn.groups.len()
        )));
    }
    for g in groups {
        svc.groups.join(&g, id);
        conn.groups.insert(g);
    }
    st.reply_ok(id);
    Ok(())
}

fn leave(svc: &mut Messaging, st: &mut State, id: ConnId, h: &Header, _: Frame) -> Result {
    let groups = names(h)?;
    for (i, g) in groups.iter().enumerate() {
        if !svc.groups.contains(g, id) || groups[..i].contains(g) {
            return Err(CommandError::Failed(format!("Client is not in group: {g}")));
        }
    }
    let conn = st.conns.get_mut(&id).expect("live connection");
    for g in groups {
        svc.groups.leave(&g, id);
        conn.groups.remove(&g);
    }
    st.reply_ok(id);
    Ok(())
}

fn relay(st: &mut State, id: ConnId, h: &Header, frame: Frame, recipients: Vec<ConnId>) -> Result {
    required(&h.varname, "varname")?;
    // "serialization" stays optional, as in the original server: the frame
    // is relayed as given and recipients fall back on the session's
    // negotiated serialization (docs/protocol.md §2).
    // Recipients tell a relayed message from the reply that ends a sync by
    // its "status" (and meta messages by "meta"); a message carrying either
    // would end their sync early and desynchronize every later reply.
    if h.status.is_some() || h.meta.is_some() {
        return Err(CommandError::Failed(
            "A message header may not carry \"status\" or \"meta\": recipients would take it for a reply".into(),
        ));
    }
    check_queue_room(st, &recipients, frame.wire_len() as u64).map_err(CommandError::Failed)?;
    deliver(st, &recipients, frame);
    // "receive": true (our extension) answers with the sender's own next
    // messages instead of a bare status: a request/reply in one exchange.
    if flag(h.receive) {
        return receive(st, id, h, sync_count(h)?);
    }
    st.reply_ok(id);
    Ok(())
}

fn send(svc: &mut Messaging, st: &mut State, id: ConnId, h: &Header, frame: Frame) -> Result {
    let group = required_raw_str(h.name, "name")?;
    let recipients: Vec<ConnId> = match svc.groups.members(&group) {
        Some(m) => m.iter().copied().collect(),
        None => {
            return Err(CommandError::Failed(format!(
                "No such group exists: {group}"
            )));
        }
    };
    relay(st, id, h, frame, recipients)
}

fn broadcast(_: &mut Messaging, st: &mut State, id: ConnId, h: &Header, frame: Frame) -> Result {
    let recipients: Vec<ConnId> = st.conns.keys().copied().filter(|c| *c != id).collect();
    relay(st, id, h, frame, recipients)
}

fn sync(_: &mut Messaging, st: &mut State, id: ConnId, h: &Header, _: Frame) -> Result {
    let n = sync_count(h)?;
    // "wait": true (our extension) blocks until a message is queued, saving
    // the separate wait exchange on the critical path of a round trip.
    if flag(h.wait) {
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
        let deadline = deadline(h.timeout)?;
        st.block(id, deadline, InboxWait(n));
    } else {
        drain_inbox(st, id, n);
    }
    Ok(())
}

/// Sends up to `n` queued messages (all if `n < 0`), then `{"status":0}`.
fn drain_inbox(st: &mut State, id: ConnId, n: i64) {
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

fn wait(_: &mut Messaging, st: &mut State, id: ConnId, h: &Header, _: Frame) -> Result {
    // "timeout" (milliseconds) is our extension; the original blocks forever.
    let deadline = deadline(h.timeout)?;
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

fn devices(svc: &mut Messaging, st: &mut State, id: ConnId, _: &Header, _: Frame) -> Result {
    let devices: Vec<&str> = svc.groups.names().collect();
    let reply = json!({"status": 0, "devices": devices});
    st.reply(id, reply);
    Ok(())
}

/// Checks that every recipient can take `bytes` more without passing
/// `--max-queue`; the error names the limit.
fn check_queue_room(
    st: &State,
    recipients: &[ConnId],
    bytes: u64,
) -> std::result::Result<(), String> {
    let limit = st.config.max_queue;
    for id in recipients {
        if let Some(c) = st.conns.get(id) {
            if c.inbox_bytes + bytes > limit {
                return Err(format!(
                    "Queue limit exceeded: a recipient already has {} bytes waiting and this message adds {bytes}; the limit (--max-queue) is {limit} bytes",
                    c.inbox_bytes
                ));
            }
        }
    }
    Ok(())
}

/// Queues one shared frame for every recipient and wakes their waits.
fn deliver(st: &mut State, recipients: &[ConnId], frame: Frame) {
    let frame = Arc::new(frame);
    let len = frame.wire_len() as u64;
    for id in recipients {
        let Some(c) = st.conns.get_mut(id) else {
            continue;
        };
        c.inbox.push_back(frame.clone());
        c.inbox_bytes += len;
        let sync_wait = c
            .blocked
            .as_ref()
            .and_then(|b| b.on.downcast_ref::<InboxWait>());
        if let Some(&InboxWait(n)) = sync_wait {
            st.unblock(*id);
            drain_inbox(st, *id, n);
            continue;
        }
        if let Some(deadline) = c.waiting {
            if let Some(d) = deadline {
                st.timers.remove(&(d, *id));
            }
            if let Some(Some(d)) = c.answer_wait(wait_reply(c.inbox.len(), false)) {
                st.timers.insert((d, *id));
            }
            st.dirty.insert(*id);
        }
    }
}

/// Sends a meta message to every connection but `except`.
fn meta_to_others(st: &mut State, except: ConnId, json: &Json) {
    for (id, c) in st.conns.iter_mut() {
        if *id != except {
            c.meta(json_item(json));
            st.dirty.insert(*id);
        }
    }
}
