//! One client connection's state.

use super::auth::Access;
use super::outqueue::{OutItem, OutQueue};
use crate::transport::Transport;
use crate::wire::{Frame, FrameReader};
use std::any::Any;
use std::collections::{BTreeSet, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

/// A reply held back while an earlier `wait` is unanswered, so replies
/// leave in request order.
pub enum Held {
    /// An ordinary reply.
    Item(OutItem),
    /// A later `wait`, evaluated when it reaches the front.
    Wait(Option<Instant>),
}

/// Connection identifier (the poller key).
pub type ConnId = usize;

/// Where a connection comes from, for the per-peer connection limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeerKey {
    /// A network peer's address.
    Ip(IpAddr),
    /// A unix socket peer's user id.
    Uid(u32),
}

/// A request that cannot be answered yet; later requests from the same
/// client wait behind it so replies stay in order.
pub struct Blocked {
    /// When to give up, if ever.
    pub deadline: Option<Instant>,
    /// What it waits for: a value of the blocking service's own
    /// `Service::Blocked` type, which the dispatcher hands back to that
    /// service to withdraw it (see `dispatch`). Type-erased so that this
    /// layer knows no service.
    pub on: Box<dyn Any + Send>,
}

/// A connected client.
pub struct Connection {
    /// The socket.
    pub stream: Box<dyn Transport>,
    /// Incremental parser of its requests.
    pub reader: FrameReader,
    /// Replies not yet written.
    pub out: OutQueue,
    /// Groups it has joined.
    pub groups: BTreeSet<String>,
    /// Messages sent to it and not yet synced, oldest first.
    pub inbox: VecDeque<Arc<Frame>>,
    /// Wire bytes in `inbox`.
    pub inbox_bytes: u64,
    /// Set while a `wait` is unanswered: its deadline, if any.
    pub waiting: Option<Option<Instant>>,
    /// Replies queued behind the unanswered `wait`.
    pub held: VecDeque<Held>,
    /// Close once `out` is flushed (after a fatal error reply).
    pub closing: bool,
    /// The request this client is blocked on, if any.
    pub blocked: Option<Blocked>,
    /// Requests received while blocked, run once it is unblocked.
    pub deferred: VecDeque<Frame>,
    /// Interest registered with the poller (readable, writable); connections
    /// are level-triggered, so it only changes when this does.
    pub armed: (bool, bool),
    /// What it may do (see `auth`).
    pub access: Access,
    /// Where it comes from, when counted against the per-peer limit.
    pub peer: Option<PeerKey>,
}

impl Connection {
    /// A fresh connection.
    pub fn new(stream: Box<dyn Transport>, max_message: u64) -> Connection {
        Connection {
            stream,
            reader: FrameReader::new(max_message),
            out: OutQueue::default(),
            groups: BTreeSet::new(),
            inbox: VecDeque::new(),
            inbox_bytes: 0,
            waiting: None,
            held: VecDeque::new(),
            closing: false,
            blocked: None,
            deferred: VecDeque::new(),
            armed: (true, false),
            access: Access::Full,
            peer: None,
        }
    }

    /// Queues a reply in request order (behind an unanswered `wait`).
    pub fn reply(&mut self, item: OutItem) {
        if self.waiting.is_some() {
            self.held.push_back(Held::Item(item));
        } else {
            self.out.push(item);
        }
    }

    /// Queues a meta message, which may overtake held replies.
    pub fn meta(&mut self, item: OutItem) {
        self.out.push(item);
    }

    /// Answers the pending `wait` (if any) with `n` and releases the replies
    /// held behind it, stopping at a later `wait` that must itself block.
    /// Returns the deadline of the new pending wait, if one is left pending.
    pub fn answer_wait(&mut self, reply: OutItem) -> Option<Option<Instant>> {
        self.waiting = None;
        self.out.push(reply);
        while let Some(h) = self.held.pop_front() {
            match h {
                Held::Item(item) => self.out.push(item),
                Held::Wait(deadline) => {
                    if self.inbox.is_empty() {
                        self.waiting = Some(deadline);
                        return Some(deadline);
                    }
                    self.out.push(wait_reply(self.inbox.len(), false));
                }
            }
        }
        None
    }

    /// Bytes of output this connection has not read yet (for backpressure).
    pub fn backlog(&self) -> usize {
        self.out.pending()
            + self
                .held
                .iter()
                .map(|h| match h {
                    Held::Item(i) => i.wire_len(),
                    Held::Wait(_) => 0,
                })
                .sum::<usize>()
            + self.deferred.iter().map(Frame::wire_len).sum::<usize>()
    }
}

/// The reply to `wait`: `{"status":0,"n":K}` (plus `"timeout":true` when a
/// deadline passed, an extension only our clients ask for).
pub fn wait_reply(n: usize, timed_out: bool) -> OutItem {
    let json = if timed_out {
        serde_json::json!({"status": 0, "n": n, "timeout": true})
    } else {
        serde_json::json!({"status": 0, "n": n})
    };
    json_item(&json)
}

/// Declares constant payload-less reply frames, encoded on first use.
macro_rules! constant_replies {
    ($($(#[$doc:meta])* $name:ident = $json:literal;)*) => {$(
        $(#[$doc])*
        pub fn $name() -> OutItem {
            static FRAME: std::sync::LazyLock<Vec<u8>> =
                std::sync::LazyLock::new(|| crate::wire::encode_head($json.as_bytes(), 0));
            OutItem::Static(&FRAME)
        }
    )*};
}

constant_replies! {
    /// `{"status":0}`: the reply to most successful commands.
    ok_item = r#"{"status":0}"#;
    /// `{"status":0,"found":false}`.
    not_found_item = r#"{"status":0,"found":false}"#;
}

/// JSON of `{"status":0,"found":true}`, the head of a reply carrying a value.
pub const FOUND_JSON: &[u8] = br#"{"status":0,"found":true}"#;

/// A payload-less frame carrying `json`.
pub fn json_item(json: &serde_json::Value) -> OutItem {
    OutItem::Bytes(crate::wire::encode_head(json.to_string().as_bytes(), 0))
}
