//! What every service shares between events: the connections, the
//! settings, and the bookkeeping of the round (which connections to flush,
//! which deadlines are pending, which blocked clients to resume). Each
//! service keeps its own data in its own type (see `services`); nothing
//! here knows one.

use super::auth::{Action, AuthTable};
use super::config::Config;
use super::conn::{
    ConnId, Connection, FOUND_JSON, FreedSegments, Held, PeerKey, json_item, not_found_item,
    ok_item,
};
use super::outqueue::OutItem;
use super::persist::Journal;
use super::request::{CommandError, Result};
use super::stats::Stats;
use crate::buffer::PooledBuf;
use crate::wire::encode_head;
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

/// Server state shared by every service's command handlers.
pub struct State {
    /// Live connections by poller key.
    // Keys are our own small integers, so a fast non-keyed hash is safe.
    pub conns: FxHashMap<ConnId, Connection>,
    /// Limits and listeners.
    pub config: Config,
    /// Connections with new output or state to re-arm after this round.
    pub dirty: FxHashSet<ConnId>,
    /// Pending `wait` and blocked-request deadlines (see `blocking`).
    pub timers: BTreeSet<(Instant, ConnId)>,
    /// Connections unblocked this round whose deferred requests must run.
    pub resume: Vec<ConnId>,
    /// What the handshake announces in `"extensions"`: every registered
    /// service's `Service::EXTENSIONS`, given by the registry.
    pub extensions: Vec<&'static str>,
    /// Shared-memory segments nobody holds any more, as (sender, the
    /// sender's segment number): filled from wherever the last reference
    /// is dropped, drained by [`State::notify_freed`].
    pub shm_freed: Arc<FreedSegments>,
    /// Counters for `stats`.
    pub stats: Stats,
    /// Connections watching traffic (`monitor`), and what they watch.
    pub monitors: FxHashMap<ConnId, Monitor>,
    /// The data directory's log, with `--data-dir`.
    pub journal: Option<Journal>,
    /// The `--auth` file's users and roles; None: no authentication.
    pub auth: Option<Arc<AuthTable>>,
    /// Open connections per peer (see `Config::max_conns_per_peer`).
    pub peers: FxHashMap<PeerKey, usize>,
}

/// What a `monitor` connection asked to see.
pub struct Monitor {
    /// Only messages sent to these groups (broadcasts always); None: all.
    pub groups: Option<Vec<String>>,
    /// Also the messages themselves, each frame as it was sent, right
    /// after its summary (for recording and replay).
    pub payloads: bool,
}

impl State {
    /// Empty state; `extensions` is what the handshake announces.
    pub fn new(config: Config, extensions: Vec<&'static str>) -> State {
        State {
            extensions,
            shm_freed: Arc::default(),
            stats: Stats::default(),
            monitors: FxHashMap::default(),
            conns: FxHashMap::default(),
            config,
            dirty: FxHashSet::default(),
            timers: BTreeSet::new(),
            resume: Vec::new(),
            journal: None,
            auth: None,
            peers: FxHashMap::default(),
        }
    }

    /// Ok if client `id` may do `action` to `name` and the name is within
    /// `--max-name`; else the refusal. Every command's guarded names pass
    /// here (see `dispatch`).
    pub fn permit(&self, id: ConnId, action: Action, name: &str) -> Result {
        let limit = self.config.max_name;
        if limit > 0 && name.len() > limit {
            return Err(CommandError::Failed(format!(
                "Name too long: a {}-byte name; the limit (--max-name) is {limit} bytes",
                name.len()
            )));
        }
        match self.conns.get(&id) {
            Some(c) => c.access.check(action, name).map_err(CommandError::Denied),
            None => Ok(()),
        }
    }

    /// Replies `msg` (a refusal when `denied`), then closes the connection
    /// once the reply is written, even past an unanswered `wait`.
    pub fn fail_and_close(&mut self, id: ConnId, msg: &str, denied: bool) {
        let reply = if denied {
            CommandError::Denied(msg.to_owned())
        } else {
            CommandError::Failed(msg.to_owned())
        };
        self.reply(id, reply.reply());
        if let Some(c) = self.conns.get_mut(&id) {
            // The error must reach the client even if a wait holds replies.
            if c.waiting.is_some() {
                c.waiting = None;
                while let Some(Held::Item(item)) = c.held.pop_front() {
                    c.out.push(item);
                }
                c.held.clear();
            }
            c.closing = true;
        }
    }

    /// Logs a change a service made to its persisted state (a no-op
    /// without a data directory); `tag` is the service's
    /// `Service::PERSIST_TAG`.
    pub fn persist<R: serde::Serialize + ?Sized>(&mut self, tag: u8, record: &R) {
        if let Some(j) = &mut self.journal {
            j.append(tag, record);
        }
    }

    /// Queues `json` as a reply to `id`.
    pub fn reply(&mut self, id: ConnId, json: serde_json::Value) {
        self.reply_item(id, json_item(&json));
    }

    /// Queues an encoded reply to `id`.
    pub fn reply_item(&mut self, id: ConnId, item: OutItem) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.reply(item);
            self.dirty.insert(id);
        }
    }

    /// Queues `json` followed by a value as the reply's payload, or `json`
    /// alone when there is no value.
    pub fn reply_with(
        &mut self,
        id: ConnId,
        json: &serde_json::Value,
        body: Option<Arc<PooledBuf>>,
    ) {
        let item = match body {
            Some(b) => OutItem::WithBody(encode_head(json.to_string().as_bytes(), b.len()), b),
            None => json_item(json),
        };
        self.reply_item(id, item);
    }

    /// Queues `{"status":0,"found":…}`, followed by the value when there is one.
    pub fn reply_found(&mut self, id: ConnId, value: Option<Arc<PooledBuf>>) {
        let item = match value {
            Some(v) => OutItem::WithBody(encode_head(FOUND_JSON, v.len()), v),
            None => not_found_item(),
        };
        self.reply_item(id, item);
    }

    /// Queues `{"status":0}` for `id`.
    pub fn reply_ok(&mut self, id: ConnId) {
        self.reply_item(id, ok_item());
    }

    /// Queues `{"status":-1,"error":msg}` for `id`.
    pub fn reply_error(&mut self, id: ConnId, msg: &str) {
        self.reply(id, serde_json::json!({"status": -1, "error": msg}));
    }

    /// Tells each sender whose segments nobody holds any more that it may
    /// reuse them: `{"status":1,"meta":true,"command":"shm_free",
    /// "segment":N}`, a meta message (it is not a reply). Senders that
    /// have gone are skipped.
    pub fn notify_freed(&mut self) {
        let freed = self.shm_freed.drain();
        for (id, segment) in freed {
            if let Some(c) = self.conns.get_mut(&id) {
                c.meta(json_item(&serde_json::json!({"status": 1, "meta": true,
                    "command": "shm_free", "segment": segment})));
                self.dirty.insert(id);
            }
        }
    }

    /// Removes a closed connection and its pending deadlines. Services have
    /// already withdrawn its blocked request and released what it held.
    pub fn forget(&mut self, id: ConnId) -> Option<Connection> {
        let c = self.conns.remove(&id)?;
        if let Some(Some(d)) = c.waiting {
            self.timers.remove(&(d, id));
        }
        if let Some(d) = c.blocked.as_ref().and_then(|b| b.deadline) {
            self.timers.remove(&(d, id));
        }
        self.dirty.remove(&id);
        self.monitors.remove(&id);
        if let Some(p) = c.peer_key {
            if let Some(n) = self.peers.get_mut(&p) {
                *n -= 1;
                if *n == 0 {
                    self.peers.remove(&p);
                }
            }
        }
        Some(c)
    }

    /// Shows a relayed message to every monitor watching: a summary frame
    /// `{"monitor":{…}}`, then (for monitors that record) the frame itself,
    /// the copy `copy_for` gives that monitor's connection (the payload in
    /// the frame and in the encoding it negotiated). `group` is None for a
    /// broadcast.
    pub fn show_monitors(
        &mut self,
        sender: ConnId,
        group: Option<&str>,
        varname: &str,
        recipients: usize,
        frame: &Arc<crate::wire::Frame>,
        copy_for: impl Fn(&Connection) -> Arc<crate::wire::Frame>,
    ) {
        if self.monitors.is_empty() {
            return;
        }
        // A shared-memory payload is read for its summary (its head only).
        let mapped = frame.shared().and_then(|p| p.map().ok());
        let payload: &[u8] = match &mapped {
            Some(m) => m.as_ref(),
            None => &frame.payload,
        };
        let summary = serde_json::json!({"monitor": {
            "sender": sender,
            "command": if group.is_some() { "send" } else { "broadcast" },
            "group": group,
            "varname": varname,
            "recipients": recipients,
            "value": crate::codec::dimeb::summary(payload),
            "bytes": payload.len(),
        }});
        let mut recorded = summary.clone();
        recorded["monitor"]["frame"] = serde_json::json!(true);
        for (id, m) in &self.monitors {
            if *id == sender
                || m.groups
                    .as_ref()
                    .is_some_and(|g| group.is_some_and(|name| !g.iter().any(|x| x == name)))
            {
                continue;
            }
            let Some(c) = self.conns.get_mut(id) else {
                continue;
            };
            if m.payloads {
                c.meta(super::conn::json_item(&recorded));
                let copy = copy_for(c);
                c.meta(OutItem::Shared(copy));
            } else {
                c.meta(super::conn::json_item(&summary));
            }
            self.dirty.insert(*id);
        }
    }
}
