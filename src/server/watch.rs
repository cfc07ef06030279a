//! Change events ("watches"): a service keeps one [`Feed`] of its changes
//! (each share write, each tuple in or out, each join or leave), numbered
//! in order, the last few kept in a bounded history. A client watches a
//! feed, filtered to one share, space or name prefix, and gets each
//! matching change pushed to it as it happens; a client that reconnects
//! resumes from the last number it saw and gets what it missed, or, when
//! that has left the history (or the broker restarted), one `lost` event
//! telling it to re-read. Events are pushed like remote-call results:
//! frames that are not replies, carrying `"event": <the watch's id>`.
//!
//! What is queued for a client that does not read is bounded
//! (`--watch-queue-events`, `--watch-queue-bytes`): a watch whose next
//! event would pass its client's limit falls behind, and gets no more
//! events until the client has read its queue down to half; it then
//! catches up from the history, or, if the history has moved past it,
//! gets one `lost` event (see [`Feed::catch_up`]). A client that never
//! reads again costs at most the limit; writers never wait for it, and
//! its replies and messages are never dropped.

use super::config::Config;
use super::conn::{ConnId, Connection};
use super::outqueue::OutItem;
use super::state::State;
use super::watch_queue::Limit;
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
    /// While it is behind (its client's queue was full, or it resumed):
    /// the number of the first event it has not been sent, to be sent
    /// from the history. None: it is sent each event as it happens.
    behind: Option<u64>,
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

/// The fields a feed's events name their topic and key in.
#[derive(Clone, Copy)]
struct Fields {
    /// `share`, `space`.
    topic: &'static str,
    /// `key`, `group`.
    key: &'static str,
}

/// A service's numbered changes and who watches them.
pub struct Feed {
    fields: Fields,
    /// Random per feed and process: numbers of another feed or an earlier
    /// run of the broker are never mistaken for this one's.
    epoch: u64,
    seq: u64,
    /// The last events, numbered without gaps.
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
            fields: Fields {
                topic: topic_field,
                key: key_field,
            },
            epoch,
            seq: 0,
            history: VecDeque::new(),
            history_bytes: 0,
            watchers: Vec::new(),
        }
    }

    /// Records a change and pushes it to every watcher that wants it and
    /// is not behind (those get it from the history when they catch up).
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
        let limit = queue_limit(&st.config);
        for w in &mut self.watchers {
            if w.behind.is_none() && w.wants(&ev) {
                send(st, self.fields, limit, w, &ev);
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
        let mut w = Watcher {
            conn,
            id: spec.id,
            topic: spec.topic.map(Arc::from),
            prefix: spec.prefix.to_owned(),
            behind: None,
        };
        st.reply(
            conn,
            json!({"status": 0, "watch": spec.id, "seq": self.seq, "epoch": self.epoch}),
        );
        if let Some(since) = spec.since {
            let oldest = self.history.front().map_or(self.seq + 1, |e| e.seq);
            let known = spec.epoch == Some(self.epoch) && since <= self.seq && since + 1 >= oldest;
            if known {
                // Sent from the history like a watch that fell behind, so
                // a long replay is held to the client's limit too.
                w.behind = Some(since + 1);
                self.catch_up(st, &mut w);
            } else {
                let why = if spec.epoch == Some(self.epoch) {
                    "the events since then are no longer kept"
                } else {
                    "the broker restarted since then"
                };
                if let Some(c) = st.conns.get_mut(&conn) {
                    queue_event(c, lost_item(spec.id, self.seq, why));
                    st.dirty.insert(conn);
                }
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

    /// `conn` has read its queued events down to where watches that fell
    /// behind may go on: each of its watches catches up as far as the
    /// limit lets it. True if one is still behind.
    pub fn drained(&mut self, st: &mut State, conn: ConnId) -> bool {
        let mut watchers = std::mem::take(&mut self.watchers);
        let mut behind = false;
        for w in watchers.iter_mut().filter(|w| w.conn == conn) {
            self.catch_up(st, w);
            behind |= w.behind.is_some();
        }
        self.watchers = watchers;
        behind
    }

    /// Sends watcher `w`, which is behind, what it missed from the history,
    /// until its client's queue is full (it stays behind, and goes on when
    /// the client has read more) or it is up to date (it gets each event
    /// as it happens again). When what it missed is no longer all in the
    /// history, it gets one `lost` event instead, numbered with the feed's
    /// current number, and is up to date from there: the client re-reads
    /// the state, which holds everything it missed.
    fn catch_up(&self, st: &mut State, w: &mut Watcher) {
        let Some(next) = w.behind else {
            return;
        };
        let limit = queue_limit(&st.config);
        let oldest = self.history.front().map_or(self.seq + 1, |e| e.seq);
        if next < oldest {
            let Some(c) = st.conns.get_mut(&w.conn) else {
                return;
            };
            let why = format!(
                "this watch fell behind: more events were queued for this client, unread, than \
                 the broker keeps (--watch-queue-events {}, --watch-queue-bytes {}), and the \
                 events from number {next} on are no longer in its history",
                limit.events, limit.bytes
            );
            queue_event(c, lost_item(w.id, self.seq, &why));
            st.stats.watch_lost += 1;
            st.dirty.insert(w.conn);
            w.behind = None;
            return;
        }
        // The history is numbered without gaps, so `next` is found by
        // position.
        let from = usize::try_from(next - oldest).unwrap_or(usize::MAX);
        for ev in self.history.range(from.min(self.history.len())..) {
            if w.wants(ev) && !send(st, self.fields, limit, w, ev) {
                return;
            }
        }
        w.behind = None;
    }
}

/// The limit of watch events queued per client that `config` sets.
pub fn queue_limit(config: &Config) -> Limit {
    Limit {
        events: config.watch_queue_events,
        bytes: config.watch_queue_bytes,
    }
}

/// Queues `ev` for watcher `w` if its client's queue of events not yet
/// written has room under `limit`; if not, `w` falls behind at `ev` (and
/// catches up from the history once the client reads: see
/// [`Feed::drained`]). False if it fell behind.
fn send(st: &mut State, fields: Fields, limit: Limit, w: &mut Watcher, ev: &Event) -> bool {
    let Some(c) = st.conns.get_mut(&w.conn) else {
        return true;
    };
    c.watch_queue.settle(c.out.written());
    let item = event_item(fields, w.id, ev);
    if !c.watch_queue.fits(item.wire_len(), limit) {
        if w.behind.is_none() {
            st.stats.watch_fell_behind += 1;
        }
        w.behind = Some(ev.seq);
        c.watches_behind = true;
        // Its flush checks when the client has read enough.
        st.dirty.insert(w.conn);
        return false;
    }
    queue_event(c, item);
    st.dirty.insert(w.conn);
    true
}

/// Queues a pushed frame, ahead of replies held behind a DiME2 `wait`
/// (events are not replies), and counts it among the client's queued
/// events.
fn queue_event(c: &mut Connection, item: OutItem) {
    let len = item.wire_len();
    c.meta(item);
    // Where the item just queued ends in the connection's output stream.
    let end = c.out.written() + c.out.pending() as u64;
    c.watch_queue.add(end, len);
}

/// The pushed frame of `ev` for watch `id`.
fn event_item(fields: Fields, id: u64, ev: &Event) -> OutItem {
    let mut head = Map::new();
    head.insert("event".into(), json!(id));
    head.insert("seq".into(), json!(ev.seq));
    head.insert("kind".into(), json!(ev.kind));
    if let Some(t) = &ev.topic {
        head.insert(fields.topic.into(), json!(&**t));
    }
    if let Some(k) = &ev.key {
        head.insert(fields.key.into(), json!(&**k));
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

/// The `lost` event for watch `id`: events were missed (`why`), re-read;
/// `seq` is the feed's current number (the events after it follow).
fn lost_item(id: u64, seq: u64, why: &str) -> OutItem {
    let head = json!({"event": id, "kind": "lost", "seq": seq,
        "error": format!("History lost ({why}): re-read the current state")});
    OutItem::Bytes(encode_head(head.to_string().as_bytes(), 0))
}
