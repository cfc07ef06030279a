//! DiME2 messaging (docs/protocol.md §2): groups, `send`, `broadcast`,
//! `sync`, `wait`, `devices`, and the handshake's serialization
//! negotiation (§3); and, our extensions, watches of group membership and
//! cut-through relaying of large messages ([`cut`]).

mod cut;
mod groups;

use crate::proto::extensions;
use crate::server::auth::{self, Access, Action, Credential, Principal};
use crate::server::blocking::deadline;
use crate::server::conn::{Accepts, ConnId, Connection, Held, json_item, wait_reply};
use crate::server::convert;
use crate::server::outqueue::OutItem;
use crate::server::request::{
    CommandError, CommandHeader, Result, Text, flag, parse, required, required_raw_str,
};
use crate::server::service::{Handler, Need, Service};
use crate::server::state::State;
use crate::server::watch::{Feed, WatchSpec};
use crate::wire::Frame;
use groups::Groups;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value as Json, json};
use std::sync::Arc;
use std::time::Instant;

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
    /// `handshake` with `false`: this connection is not a recipient of
    /// broadcasts (our clients' side connections for remote calls,
    /// watches and monitors, which never sync).
    pub broadcasts: Option<bool>,
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
    /// `handshake`: the extensions the client asks to be sent (ours; for
    /// now `dimeb_layout`).
    #[serde(borrow)]
    pub extensions: Option<Vec<Text<'a>>>,
    /// `send`, `broadcast`: the payload may hold `dimeb_layout` matrices,
    /// which the broker converts for recipients that did not ask for them.
    pub dimeb_layout: Option<bool>,
    /// `shm_release`: the inode of a shared-memory payload this client is
    /// done with.
    pub ino: Option<u64>,
    /// `send`, `broadcast`: announces a shared-memory payload; only
    /// relayed when the broker took a checked descriptor with it.
    #[serde(borrow)]
    pub shm: Option<&'a RawValue>,
    /// `group_watch`, `group_unwatch`: the client's id for the watch.
    pub watch: Option<u64>,
    /// `group_watch`: only groups whose name starts with this.
    #[serde(borrow)]
    pub prefix: Option<Text<'a>>,
    /// `group_watch`: resume after this event number …
    pub since: Option<u64>,
    /// … of the feed with this epoch.
    pub epoch: Option<u64>,
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
    /// Joins and leaves, for watchers.
    feed: MembershipFeed,
    /// Messages relayed while their payload arrives, by sender.
    live: cut::LiveRelays,
}

/// The feed of joins and leaves: events name the group and the client.
struct MembershipFeed(Feed);

impl Default for MembershipFeed {
    fn default() -> MembershipFeed {
        MembershipFeed(Feed::new("topic", "group"))
    }
}

impl MembershipFeed {
    fn publish(&mut self, st: &mut State, group: &str, kind: &'static str, client: ConnId) {
        let group: Arc<str> = group.into();
        self.0
            .publish(st, None, Some(&group), kind, None, Some(client));
    }
}

impl Service for Messaging {
    type Header<'h> = MessagingHeader<'h>;
    type Blocked = InboxWait;

    fn inspect(&self, _: &State) -> Json {
        self.describe()
    }

    const COMMANDS: &'static [(&'static str, Handler<Self>)] = &[
        ("handshake", handshake),
        ("join", join),
        ("leave", leave),
        ("send", send),
        ("broadcast", broadcast),
        ("sync", sync),
        ("wait", wait),
        ("devices", devices),
        ("shm_send", shm_send),
        ("shm_receive", shm_receive),
        ("shm_release", shm_release),
        ("group_watch", group_watch),
        ("group_unwatch", group_unwatch),
    ];

    const EXTENSIONS: &'static [&'static str] = &[
        extensions::WAIT_TIMEOUT,
        extensions::SYNC_WAIT,
        extensions::SEND_RECEIVE,
        extensions::DIMEB_LAYOUT,
        extensions::SHM,
        extensions::CUT_THROUGH,
        extensions::AUTH,
    ];

    fn required(command: &str, h: &Header<'_>, need: &mut Need<'_>) -> Result {
        match command {
            "join" => names(h)?.iter().try_for_each(|g| need(Action::Join, g)),
            "send" => need(Action::Send, &required_raw_str(h.name, "name")?),
            "broadcast" => need(Action::Broadcast, ""),
            // Who joins and leaves the groups a client may join or send
            // to: the watched groups are all those starting with the
            // prefix, `PREFIX*` as a name (a grant's pattern covering it
            // covers them all).
            "group_watch" => {
                let groups = format!("{}*", h.prefix.as_deref().unwrap_or(""));
                need(Action::Join, &groups).or_else(|_| need(Action::Send, &groups))
            }
            // The client's own session: its handshake, its groups, its
            // queue, the list of group names, its own watches, and how
            // its payloads travel (shared memory is checked per `send`).
            "handshake" | "leave" | "sync" | "wait" | "devices" | "group_unwatch" | "shm_send"
            | "shm_receive" | "shm_release" => Ok(()),
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

    fn drained(&mut self, st: &mut State, id: ConnId) -> bool {
        self.feed.0.drained(st, id)
    }

    fn expire(&mut self, st: &mut State, now: Instant) -> Option<Instant> {
        self.abort_stalled_live(st, now)
    }

    fn disconnect(&mut self, st: &mut State, id: ConnId, conn: &Connection) {
        self.abort_live(st, id);
        self.feed.0.forget(id);
        for g in &conn.groups {
            self.groups.leave(g, id);
            self.feed.publish(st, g, "leave", id);
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
    // The encodings the client asks to be sent (ours; old clients ask for
    // none and keep getting DiME2's). A repeated handshake starts afresh.
    let asked = |name: &str| {
        h.extensions
            .as_ref()
            .is_some_and(|e| e.iter().any(|x| &**x == name))
    };
    let conn = st.conns.get_mut(&id).expect("live connection");
    conn.accepts = Accepts {
        layout: asked(extensions::DIMEB_LAYOUT),
        // Descriptors only travel over unix sockets.
        shm: asked(extensions::SHM) && conn.stream.passes_fds(),
        // A frame written in parts needs a plain byte stream (WebSocket
        // sends each frame as one message).
        cut_through: asked(extensions::CUT_THROUGH) && conn.stream.is_plain_stream(),
    };
    conn.fds_in &= conn.accepts.shm;
    conn.fds_out &= conn.accepts.shm;
    if h.broadcasts == Some(false) {
        if let Some(c) = st.conns.get_mut(&id) {
            c.broadcasts = false;
        }
    }
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
    let new = groups.iter().filter(|g| !conn.groups.contains(*g)).count();
    if limit > 0 && conn.groups.len() + new > limit {
        return Err(CommandError::Failed(format!(
            "Too many groups: this client is in {} and may be in at most {limit} (--max-groups)",
            conn.groups.len()
        )));
    }
    for g in &groups {
        svc.groups.join(g, id);
        conn.groups.insert(g.clone());
    }
    st.reply_ok(id);
    for g in &groups {
        svc.feed.publish(st, g, "join", id);
    }
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
    for g in &groups {
        svc.groups.leave(g, id);
        conn.groups.remove(g);
    }
    st.reply_ok(id);
    for g in &groups {
        svc.feed.publish(st, g, "leave", id);
    }
    Ok(())
}

/// `group_watch`: pushes every join and leave (of groups under `prefix`).
fn group_watch(svc: &mut Messaging, st: &mut State, id: ConnId, h: &Header, _: Frame) -> Result {
    let spec = WatchSpec {
        id: watch_id(h)?,
        topic: None,
        prefix: h.prefix.as_deref().unwrap_or(""),
        since: h.since,
        epoch: h.epoch,
    };
    svc.feed
        .0
        .watch(st, id, &spec)
        .map_err(CommandError::Failed)
}

/// `group_unwatch`: ends a watch.
fn group_unwatch(svc: &mut Messaging, st: &mut State, id: ConnId, h: &Header, _: Frame) -> Result {
    let w = watch_id(h)?;
    if !svc.feed.0.unwatch(id, w) {
        return Err(CommandError::Failed(format!(
            "This connection has no group watch with id {w}"
        )));
    }
    st.reply_ok(id);
    Ok(())
}

fn watch_id(h: &Header) -> Result<u64> {
    h.watch
        .ok_or_else(|| CommandError::Failed("JSON parsing error: missing field: watch".into()))
}

fn relay(
    st: &mut State,
    id: ConnId,
    h: &Header,
    frame: Frame,
    group: Option<&str>,
    recipients: Vec<ConnId>,
) -> Result {
    let varname = required(&h.varname, "varname")?;
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
    // Recipients take a descriptor for every "shm" they are sent: one
    // without a descriptor behind it would hand them the next message's.
    if h.shm.is_some() && frame.shared().is_none() {
        return Err(CommandError::Failed(
            "A message header may not carry \"shm\" unless its payload came in shared memory \
             (negotiated in the handshake, over a unix socket, and announced with shm_send)"
                .into(),
        ));
    }
    // Monitors that record get a copy of their own too.
    let recorders: Vec<ConnId> = st
        .monitors
        .iter()
        .filter(|(_, m)| m.payloads)
        .map(|(id, _)| *id)
        .collect();
    let copies = if recorders.is_empty() {
        Copies::of(st, &recipients, frame, flag(h.dimeb_layout))?
    } else {
        let all: Vec<ConnId> = recipients.iter().chain(&recorders).copied().collect();
        Copies::of(st, &all, frame, flag(h.dimeb_layout))?
    };
    check_queue_room(st, &recipients, |c| copies.pick(c).queued_len() as u64)
        .map_err(CommandError::Failed)?;
    st.stats.messages += 1;
    let original = copies.original.clone();
    st.show_monitors(id, group, varname, recipients.len(), &original, |c| {
        copies.pick(c)
    });
    deliver(st, &recipients, |c| copies.pick(c));
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
    relay(st, id, h, frame, Some(&group), recipients)
}

fn broadcast(_: &mut Messaging, st: &mut State, id: ConnId, h: &Header, frame: Frame) -> Result {
    let recipients = broadcast_recipients(st, id);
    relay(st, id, h, frame, None, recipients)
}

/// Who a broadcast from `id` goes to: every other client that syncs. Side
/// connections (remote calls, watches) and monitors never sync: they are
/// not recipients.
fn broadcast_recipients(st: &State, id: ConnId) -> Vec<ConnId> {
    st.conns
        .iter()
        .filter(|(c, conn)| **c != id && conn.broadcasts && !st.monitors.contains_key(c))
        .map(|(c, _)| *c)
        .collect()
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
/// When some of them are still arriving (cut-through), the closing status
/// is decided once they have been written: it names the ones whose sender
/// went away before the end in `"aborted"` (positions in this reply).
fn drain_inbox(st: &mut State, id: ConnId, n: i64) {
    let conn = st.conns.get_mut(&id).expect("live connection");
    let count = if n < 0 {
        conn.inbox.len()
    } else {
        (n as usize).min(conn.inbox.len())
    };
    let mut arriving = Vec::new();
    for k in 0..count {
        let frame = conn.inbox.pop_front().expect("counted");
        conn.inbox_bytes -= frame.queued_len() as u64;
        if let Some(live) = frame.live.as_ref().filter(|l| !l.is_complete()) {
            arriving.push((k, live.clone()));
        }
        conn.reply(OutItem::Shared(frame));
    }
    if arriving.is_empty() {
        st.reply_ok(id);
    } else {
        st.reply_item(id, OutItem::SyncEnd(arriving));
    }
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

/// The copies of one message its recipients get: the sender's own frame
/// for those that negotiated everything it uses; the payload copied into
/// the frame for those that do not take shared-memory descriptors (yet); DiME2's
/// classic encoding for those that did not negotiate `dimeb_layout`. Each
/// is made once, and only if some recipient needs it.
struct Copies {
    original: Arc<Frame>,
    inline: Option<Arc<Frame>>,
    classic: Option<Arc<Frame>>,
    /// The payload holds `dimeb_layout` matrices.
    layout: bool,
}

impl Copies {
    fn of(st: &State, recipients: &[ConnId], frame: Frame, layout: bool) -> Result<Copies> {
        let shared = frame.shared().is_some();
        let mut copies = Copies {
            original: Arc::new(frame),
            inline: None,
            classic: None,
            layout,
        };
        for c in recipients.iter().filter_map(|r| st.conns.get(r)) {
            if layout && !c.accepts.layout && copies.classic.is_none() {
                let twin = convert::classic_frame(&copies.original).map_err(|e| {
                    CommandError::Failed(format!(
                        "Cannot convert the message for recipients that read only DiME2's \
                         matrix encoding: {e}"
                    ))
                })?;
                copies.classic = Some(Arc::new(twin));
            } else if shared
                && !c.fds_out
                && (c.accepts.layout || !layout)
                && copies.inline.is_none()
            {
                let twin = convert::inline_frame(&copies.original).map_err(|e| {
                    CommandError::Failed(format!(
                        "Cannot copy the shared-memory message for recipients without shared \
                         memory: {e}"
                    ))
                })?;
                copies.inline = Some(Arc::new(twin));
            }
        }
        Ok(copies)
    }

    /// The copy for connection `c`.
    fn pick(&self, c: &Connection) -> Arc<Frame> {
        let copy = if self.layout && !c.accepts.layout {
            &self.classic
        } else if self.original.shared().is_some() && !c.fds_out {
            &self.inline
        } else {
            &None
        };
        copy.as_ref().unwrap_or(&self.original).clone()
    }
}

/// `shm_send` (ours): the client will send shared-memory payloads; from
/// the next read on, descriptors that come with its bytes are kept. Asked
/// once, before the first such payload, and answered, so nothing it sends
/// with a descriptor can have been read before.
fn shm_send(_: &mut Messaging, st: &mut State, id: ConnId, _: &Header, _: Frame) -> Result {
    shm_switch(st, id, |c| c.fds_in = true)
}

/// `shm_receive` (ours): the client takes shared-memory payloads as
/// descriptors from now on (it reads relayed messages with `recvmsg`);
/// until it asks, it gets their bytes in the frame. Our clients ask once a
/// large payload has reached them through the socket, so a client that
/// only ever gets small messages never pays for `recvmsg`.
fn shm_receive(_: &mut Messaging, st: &mut State, id: ConnId, _: &Header, _: Frame) -> Result {
    shm_switch(st, id, |c| c.fds_out = true)
}

/// Turns a shared-memory direction on for a client that negotiated `shm`.
fn shm_switch(st: &mut State, id: ConnId, on: impl FnOnce(&mut Connection)) -> Result {
    let c = st.conns.get_mut(&id).expect("live connection");
    if !c.accepts.shm {
        return Err(CommandError::Failed(
            "Shared memory must be asked for in the handshake (\"extensions\":[\"shm\"]), \
             over a unix socket"
                .into(),
        ));
    }
    on(c);
    st.reply_ok(id);
    Ok(())
}

/// `shm_release` (ours, no reply): the client is done with the
/// shared-memory payload of inode `ino` that it was sent; the broker drops
/// its hold on it (the sender hears once nobody holds it). An inode it does
/// not hold is ignored: there is nothing to answer.
fn shm_release(_: &mut Messaging, st: &mut State, id: ConnId, h: &Header, _: Frame) -> Result {
    let (Some(ino), Some(c)) = (h.ino, st.conns.get_mut(&id)) else {
        return Ok(());
    };
    if let Some(held) = c.shm_held.get_mut(&ino) {
        held.pop();
        if held.is_empty() {
            c.shm_held.remove(&ino);
        }
    }
    Ok(())
}

/// Checks that every recipient can take the bytes `size` says its copy of
/// the message has without passing `--max-queue`; the error names the limit.
fn check_queue_room(
    st: &State,
    recipients: &[ConnId],
    size: impl Fn(&Connection) -> u64,
) -> std::result::Result<(), String> {
    let limit = st.config.max_queue;
    for id in recipients {
        if let Some(c) = st.conns.get(id) {
            let bytes = size(c);
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

/// Where a message relayed while it arrives goes (see
/// [`Messaging::route_live`]).
pub struct LiveRoute {
    command: &'static str,
    /// Recipients that take it as it arrives.
    now: Vec<ConnId>,
    /// Recipients that get it once whole.
    later: Vec<ConnId>,
    started: std::time::Instant,
}

impl Messaging {
    /// Routes a `send`/`broadcast` whose header (`text`) has arrived and
    /// whose payload of `payload_len` bytes has not, if cut-through handles
    /// it (`cut`): a group send or a broadcast without `"receive"` or
    /// shared memory, no monitor connected (each is shown the value),
    /// every recipient reading the sender's own encoding, at least one of
    /// them negotiated `cut_through`, the sender authenticated and
    /// permitted to send there (`--auth`), and the request valid and
    /// within `--max-queue` now. None otherwise: the frame then completes and is
    /// handled as any other, errors included. [`Messaging::begin_live`]
    /// then relays it.
    pub fn route_live(
        &self,
        st: &State,
        id: ConnId,
        text: &str,
        payload_len: usize,
    ) -> Option<LiveRoute> {
        let started = std::time::Instant::now();
        if !st.monitors.is_empty() || self.live.contains(id) {
            return None;
        }
        let command = match parse::<CommandHeader>(text).ok()?.name()?.as_ref() {
            "send" => "send",
            "broadcast" => "broadcast",
            _ => return None,
        };
        let h: Header = parse(text).ok()?;
        // A client yet to authenticate, or one that may not send there, is
        // answered once the frame is whole, as for any request.
        let admitted = st
            .conns
            .get(&id)
            .is_some_and(|c| !matches!(c.access, Access::Pending));
        if !admitted || Self::required(command, &h, &mut |a, n| st.permit(id, a, n)).is_err() {
            return None;
        }
        // What `relay` would refuse, it refuses once the frame is whole.
        if h.varname.is_none()
            || h.status.is_some()
            || h.meta.is_some()
            || h.shm.is_some()
            || flag(h.receive)
        {
            return None;
        }
        let recipients: Vec<ConnId> = if command == "send" {
            let group = required_raw_str(h.name, "name").ok()?;
            self.groups.members(&group)?.iter().copied().collect()
        } else {
            broadcast_recipients(st, id)
        };
        let layout = flag(h.dimeb_layout);
        let (mut now, mut later) = (Vec::new(), Vec::new());
        for r in recipients {
            let c = st.conns.get(&r)?;
            // Recipients of a converted copy need the whole payload first.
            if layout && !c.accepts.layout {
                return None;
            }
            if c.accepts.cut_through {
                now.push(r);
            } else {
                later.push(r);
            }
        }
        if now.is_empty() {
            return None;
        }
        let size = (crate::wire::PREFIX_LEN + text.len() + payload_len) as u64;
        let all: Vec<ConnId> = now.iter().chain(&later).copied().collect();
        check_queue_room(st, &all, |_| size).ok()?;
        Some(LiveRoute {
            command,
            now,
            later,
            started,
        })
    }

    /// Relays `frame`, whose payload is live, as `route` says.
    pub fn begin_live(&mut self, st: &mut State, id: ConnId, route: LiveRoute, frame: Frame) {
        st.stats.messages += 1;
        self.live
            .begin(st, id, frame, route.now, route.later, deliver_live);
        st.stats
            .request(Some(route.command), route.started.elapsed(), false);
    }

    /// Lets the recipients of `id`'s live message write what has arrived.
    pub fn wake_live(&mut self, st: &mut State, id: ConnId) {
        self.live.wake(st, id);
    }

    /// The last byte of `id`'s live message has arrived: the other
    /// recipients get it, and the sender its reply.
    pub fn finish_live(&mut self, st: &mut State, id: ConnId) {
        if self.live.finish(st, id, deliver_live) {
            st.reply_ok(id);
        }
    }

    /// `id` is going away in the middle of a live message: it is aborted.
    pub fn abort_live(&mut self, st: &mut State, id: ConnId) {
        self.live.abort(st, id, "went away");
    }

    /// Aborts the live messages whose payload has had no byte arrive for
    /// `--cut-through-stall-ms` by `now`, so no recipient waits on them
    /// longer: their recipients drop them, their senders get an error
    /// reply at once and keep their connection (the rest of the payload
    /// is read and discarded; their next request is served as usual).
    /// Returns when the next stall would be due.
    fn abort_stalled_live(&mut self, st: &mut State, now: Instant) -> Option<Instant> {
        let limit = st.config.cut_through_stall;
        let (late, next) = self.live.stalled(now, limit);
        for id in late {
            self.live.abort(st, id, "stalled");
            if let Some(c) = st.conns.get_mut(&id) {
                c.reader.discard_live();
            }
            let ms = limit.as_millis();
            st.reply_error(
                id,
                &format!(
                    "Message stalled: no byte of its payload arrived for {ms} ms \
                     (--cut-through-stall-ms); it was dropped for every recipient, and the \
                     rest of its bytes are discarded"
                ),
            );
        }
        next
    }
}

/// [`deliver`] of one frame to every recipient, for [`cut`].
fn deliver_live(st: &mut State, recipients: &[ConnId], frame: &Arc<Frame>) {
    deliver(st, recipients, |_| frame.clone());
}

/// Queues for every recipient its copy of the message (`pick`: the one
/// shared frame, or its classic twin) and wakes their waits.
fn deliver(st: &mut State, recipients: &[ConnId], pick: impl Fn(&Connection) -> Arc<Frame>) {
    for id in recipients {
        let Some(c) = st.conns.get_mut(id) else {
            continue;
        };
        let frame = pick(c);
        c.inbox_bytes += frame.queued_len() as u64;
        c.inbox.push_back(frame);
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

impl Messaging {
    /// Groups and their members, for `inspect`.
    fn describe(&self) -> Json {
        let groups: serde_json::Map<String, Json> = self
            .groups
            .names()
            .map(|g| {
                let members: Vec<ConnId> = self
                    .groups
                    .members(g)
                    .map(|m| m.iter().copied().collect())
                    .unwrap_or_default();
                (g.to_owned(), json!(members))
            })
            .collect();
        json!({"groups": groups, "serialization": self.serialization})
    }
}
