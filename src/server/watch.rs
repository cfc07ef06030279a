//! Change events ("watches"): a service keeps one [`Feed`] of its changes
//! (each share write, each tuple in or out, each join or leave), numbered
//! in order, the last few kept in a bounded history. A client watches a
//! feed, filtered to one share, space or name prefix, and gets each
//! matching change pushed to it as it happens; a client that reconnects
//! resumes from the last number it saw and gets what it missed, or, when
//! that has left the history (or the broker restarted), one `lost` event
//! telling it to re-read. Events are pushed like remote-call results:
//! frames that are not replies, carrying `"event": <the watch's id>`.

use super::conn::ConnId;
use super::outqueue::OutItem;
use super::state::State;
use crate::buffer::PooledBuf;
use crate::wire::encode_head;
use serde_json::{Map, Value as Json, json};
use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

/// Most events a feed's history keeps.
pub const HISTORY_EVENTS: usize = 10_000;
/// Most bytes of values a feed's history keeps.
pub const HISTORY_BYTES: usize = 64 << 20;

/// One change.
pub struct Event {
    /// Its number in the feed, from 1.
    pub seq: u64,
    /// The share, space (or none, for groups) it happened in.
    pub topic: Option<Arc<str>>,
    /// The key (shares) or group name (groups) it touched, if one.
    pub key: Option<Arc<str>>,
    /// What happened: `set`, `del`, `clear`, `out`, `in`, `join`, `leave`.
    pub kind: &'static str,
    /// The new value, the tuple, or none.
    pub value: Option<Arc<PooledBuf>>,
    /// The client a membership change is about.
    pub client: Option<ConnId>,
}

/// One client's watch of a feed.
struct Watcher {
    conn: ConnId,
    id: u64,
    /// Only events in this share or space (None: all).
    topic: Option<Arc<str>>,
    /// Only events whose key starts with this (events without a key,
    /// such as `clear`, always match).
    prefix: String,
}

impl Watcher {
    fn wants(&self, ev: &Event) -> bool {
        self.topic
            .as_ref()
            .is_none_or(|t| ev.topic.as_deref() == Some(&**t))
            && ev.key.as_ref().is_none_or(|k| k.starts_with(&self.prefix))
    }
}

/// What a watch request asks for.
pub struct WatchSpec<'a> {
    /// The client's id for the watch, echoed in each event.
    pub id: u64,
    /// Only this share or space (None: every one).
    pub topic: Option<&'a str>,
    /// Only keys starting with this.
    pub prefix: &'a str,
    /// Resume after this event number of an earlier watch …
    pub since: Option<u64>,
    /// … of the feed with this epoch (from that watch's reply).
    pub epoch: Option<u64>,
}

/// A service's numbered changes and who watches them.
pub struct Feed {
    /// Names the field the topic is sent in (`share`, `space`).
    topic_field: &'static str,
    /// Names the field the key is sent in (`key`, `group`).
    key_field: &'static str,
    /// Random per feed and process: numbers of another feed or an earlier
    /// run of the broker are never mistaken for this one's.
    epoch: u64,
    seq: u64,
    history: VecDeque<Event>,
    history_bytes: usize,
    watchers: Vec<Watcher>,
}

impl Feed {
    /// An empty feed whose events name their topic and key in these fields.
    pub fn new(topic_field: &'static str, key_field: &'static str) -> Feed {
        // Below 2^53, so JavaScript's numbers hold it exactly.
        let epoch = std::hash::RandomState::new().build_hasher().finish() & ((1 << 53) - 1);
        Feed {
            topic_field,
            key_field,
            epoch,
            seq: 0,
            history: VecDeque::new(),
            history_bytes: 0,
            watchers: Vec::new(),
        }
    }

    /// Records a change and pushes it to every watcher that wants it.
    pub fn publish(
        &mut self,
        st: &mut State,
        topic: Option<&Arc<str>>,
        key: Option<&Arc<str>>,
        kind: &'static str,
        value: Option<&Arc<PooledBuf>>,
        client: Option<ConnId>,
    ) {
        self.seq += 1;
        let ev = Event {
            seq: self.seq,
            topic: topic.cloned(),
            key: key.cloned(),
            kind,
            value: value.cloned(),
            client,
        };
        for w in &self.watchers {
            if w.wants(&ev) {
                push(st, w.conn, self.item(w.id, &ev));
            }
        }
        self.history_bytes += ev.value.as_ref().map_or(0, |v| v.len());
        self.history.push_back(ev);
        while self.history.len() > HISTORY_EVENTS || self.history_bytes > HISTORY_BYTES {
            let old = self.history.pop_front().expect("not empty");
            self.history_bytes -= old.value.as_ref().map_or(0, |v| v.len());
        }
    }

    /// Starts a watch for `conn`: replies with the watch's id, the feed's
    /// epoch and its current number, then pushes what a resumed watch
    /// missed (or one `lost` event when that is no longer known).
    pub fn watch(&mut self, st: &mut State, conn: ConnId, spec: &WatchSpec) -> Result<(), String> {
        if self
            .watchers
            .iter()
            .any(|w| w.conn == conn && w.id == spec.id)
        {
            return Err(format!(
                "This connection already has a watch with id {}",
                spec.id
            ));
        }
        let w = Watcher {
            conn,
            id: spec.id,
            topic: spec.topic.map(Arc::from),
            prefix: spec.prefix.to_owned(),
        };
        st.reply(
            conn,
            json!({"status": 0, "watch": spec.id, "seq": self.seq, "epoch": self.epoch}),
        );
        if let Some(since) = spec.since {
            let oldest = self.history.front().map_or(self.seq + 1, |e| e.seq);
            let known = spec.epoch == Some(self.epoch) && since <= self.seq && since + 1 >= oldest;
            if known {
                for ev in self.history.iter().filter(|e| e.seq > since) {
                    if w.wants(ev) {
                        push(st, conn, self.item(w.id, ev));
                    }
                }
            } else {
                let why = if spec.epoch == Some(self.epoch) {
                    "the events since then are no longer kept"
                } else {
                    "the broker restarted since then"
                };
                let head = json!({"event": spec.id, "kind": "lost", "seq": self.seq,
                    "error": format!("History lost ({why}): re-read the current state")});
                push(
                    st,
                    conn,
                    OutItem::Bytes(encode_head(head.to_string().as_bytes(), 0)),
                );
            }
        }
        self.watchers.push(w);
        Ok(())
    }

    /// Ends watch `id` of `conn`; false if it has none.
    pub fn unwatch(&mut self, conn: ConnId, id: u64) -> bool {
        let before = self.watchers.len();
        self.watchers.retain(|w| !(w.conn == conn && w.id == id));
        self.watchers.len() != before
    }

    /// Ends every watch of a client that went away.
    pub fn forget(&mut self, conn: ConnId) {
        self.watchers.retain(|w| w.conn != conn);
    }

    /// The pushed frame of `ev` for watch `id`.
    fn item(&self, id: u64, ev: &Event) -> OutItem {
        let mut head = Map::new();
        head.insert("event".into(), json!(id));
        head.insert("seq".into(), json!(ev.seq));
        head.insert("kind".into(), json!(ev.kind));
        if let Some(t) = &ev.topic {
            head.insert(self.topic_field.into(), json!(&**t));
        }
        if let Some(k) = &ev.key {
            head.insert(self.key_field.into(), json!(&**k));
        }
        if let Some(c) = ev.client {
            head.insert("client".into(), json!(c));
        }
        let text = Json::Object(head).to_string();
        match &ev.value {
            Some(v) => OutItem::WithBody(encode_head(text.as_bytes(), v.len()), v.clone()),
            None => OutItem::Bytes(encode_head(text.as_bytes(), 0)),
        }
    }
}

/// Queues a pushed frame, ahead of replies held behind a DiME2 `wait`:
/// events are not replies.
fn push(st: &mut State, id: ConnId, item: OutItem) {
    if let Some(c) = st.conns.get_mut(&id) {
        c.meta(item);
        st.dirty.insert(id);
    }
}
