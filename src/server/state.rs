//! Everything the server knows between events: connections, groups, the
//! negotiated serialization, pending wait deadlines.

use super::Config;
use super::conn::{
    Blocked, BlockedOn, Connection, FOUND_JSON, json_item, not_found_item, ok_item, wait_reply,
};
use super::groups::{ConnId, Groups};
use super::outqueue::OutItem;
use super::share::{self, Shares};
use super::tuples::Spaces;
use crate::buffer::PooledBuf;
use crate::wire::Frame;
use crate::wire::encode_head;
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

/// Server state shared by command handlers.
pub struct State {
    /// Live connections by poller key.
    // Keys are our own small integers, so a fast non-keyed hash is safe.
    pub conns: FxHashMap<ConnId, Connection>,
    /// Group membership.
    pub groups: Groups,
    /// The server-wide serialization (PROTOCOL.md §3); None until the first handshake.
    pub serialization: Option<String>,
    /// Limits and listeners.
    pub config: Config,
    /// Connections with new output or state to re-arm after this round.
    pub dirty: FxHashSet<ConnId>,
    /// Pending `wait` and blocked-request deadlines.
    pub timers: BTreeSet<(Instant, ConnId)>,
    /// Shared dictionaries.
    pub shares: Shares,
    /// Tuple spaces.
    pub spaces: Spaces,
    /// Connections unblocked this round whose deferred requests must run.
    pub resume: Vec<ConnId>,
}

impl State {
    /// Empty state.
    pub fn new(config: Config) -> State {
        State {
            conns: FxHashMap::default(),
            groups: Groups::default(),
            serialization: None,
            config,
            dirty: FxHashSet::default(),
            timers: BTreeSet::new(),
            shares: Shares::default(),
            spaces: Spaces::default(),
            resume: Vec::new(),
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

    /// Checks that every recipient can take `bytes` more without passing
    /// `--max-queue`; the error names the limit.
    pub fn check_queue_room(&self, recipients: &[ConnId], bytes: u64) -> Result<(), String> {
        let limit = self.config.max_queue;
        for id in recipients {
            if let Some(c) = self.conns.get(id) {
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
    pub fn deliver(&mut self, recipients: &[ConnId], frame: Frame) {
        let frame = Arc::new(frame);
        let len = frame.wire_len() as u64;
        for id in recipients {
            let Some(c) = self.conns.get_mut(id) else {
                continue;
            };
            c.inbox.push_back(frame.clone());
            c.inbox_bytes += len;
            if let Some(Blocked {
                on: BlockedOn::Inbox(n),
                ..
            }) = c.blocked
            {
                self.unblock(*id);
                super::commands::drain_inbox(self, *id, n);
                continue;
            }
            if let Some(deadline) = c.waiting {
                if let Some(d) = deadline {
                    self.timers.remove(&(d, *id));
                }
                if let Some(Some(d)) = c.answer_wait(wait_reply(c.inbox.len(), false)) {
                    self.timers.insert((d, *id));
                }
                self.dirty.insert(*id);
            }
        }
    }

    /// Answers every wait or blocked request whose deadline has passed;
    /// returns the next deadline.
    pub fn expire_waits(&mut self, now: Instant) -> Option<Instant> {
        while let Some(&(deadline, id)) = self.timers.first() {
            if deadline > now {
                return Some(deadline);
            }
            self.timers.pop_first();
            let Some(c) = self.conns.get_mut(&id) else {
                continue;
            };
            if c.waiting == Some(Some(deadline)) {
                if let Some(Some(d)) = c.answer_wait(wait_reply(0, true)) {
                    self.timers.insert((d, id));
                }
                self.dirty.insert(id);
            }
            if c.blocked
                .as_ref()
                .is_some_and(|b| b.deadline == Some(deadline))
            {
                let blocked = c.blocked.take().expect("checked");
                share::withdraw(self, id, &blocked.on);
                let msg = share::timeout_message(&blocked.on);
                self.reply(
                    id,
                    serde_json::json!({"status": -1, "error": msg, "timeout": true}),
                );
                self.resume.push(id);
            }
        }
        None
    }

    /// Sends a meta message to every connection but `except`.
    pub fn meta_to_others(&mut self, except: ConnId, json: &serde_json::Value) {
        for (id, c) in self.conns.iter_mut() {
            if *id != except {
                c.meta(json_item(json));
                self.dirty.insert(*id);
            }
        }
    }

    /// Forgets a closed connection: groups, queue, timers.
    pub fn forget(&mut self, id: ConnId) -> Option<Connection> {
        let c = self.conns.remove(&id)?;
        for g in &c.groups {
            self.groups.leave(g, id);
        }
        if let Some(Some(d)) = c.waiting {
            self.timers.remove(&(d, id));
        }
        if let Some(b) = &c.blocked {
            if let Some(d) = b.deadline {
                self.timers.remove(&(d, id));
            }
            share::withdraw(self, id, &b.on);
        }
        share::release_all(self, id);
        self.dirty.remove(&id);
        if self.conns.is_empty() {
            // A fresh session negotiates afresh.
            self.serialization = None;
        }
        Some(c)
    }
}
