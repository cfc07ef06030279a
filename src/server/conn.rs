//! One client connection's state.

use super::auth::Access;
use super::outqueue::{OutItem, OutQueue};
use super::watch_queue::WatchQueue;
use crate::shm::SharedPayload;
use crate::transport::Transport;
use crate::wire::{Frame, FrameReader};
use rustc_hash::FxHashMap;
use std::any::Any;
use std::collections::{BTreeSet, VecDeque};
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Shared-memory segments nobody holds any more, as (sender, the sender's
/// segment number), filled from wherever the last reference is dropped.
#[derive(Default)]
pub struct FreedSegments {
    /// Set when something was added since the last drain.
    pending: std::sync::atomic::AtomicBool,
    list: Mutex<Vec<(ConnId, u64)>>,
}

impl FreedSegments {
    /// Notes that segment `segment` of client `sender` is free.
    pub fn push(&self, sender: ConnId, segment: u64) {
        self.list
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((sender, segment));
        self.pending
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Takes every segment noted since the last call. Checked on every
    /// round of the loop: a flag, not a lock, when nothing was freed
    /// (almost always).
    pub fn drain(&self) -> Vec<(ConnId, u64)> {
        if !self
            .pending
            .swap(false, std::sync::atomic::Ordering::Acquire)
        {
            return Vec::new();
        }
        std::mem::take(&mut *self.list.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

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
    /// The watch events among them (bounded: see `watch`).
    pub watch_queue: WatchQueue,
    /// Set when one of its watches fell behind: once it has read enough,
    /// the services let them catch up (`Services::drained`).
    pub watches_behind: bool,
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
    /// When it connected.
    pub since: std::time::SystemTime,
    /// Where from (the transport's description of its peer).
    pub peer: String,
    /// May use the admin commands (`inspect`, `stats`, `monitor`) when
    /// the server has no `--auth` (with it, the `admin` permission
    /// decides).
    pub admin: bool,
    /// Receives broadcasts (false for side connections that never sync).
    pub broadcasts: bool,
    /// What this client asked for in its handshake (and the server
    /// granted): how payloads may be sent to it.
    pub accepts: Accepts,
    /// Reads keep the descriptors that come with the bytes (`recvmsg`):
    /// only once the client said it will send some (`shm_send`), so that
    /// every other connection reads with plain, cheaper `recv`.
    pub fds_in: bool,
    /// Shared-memory payloads go to this client as descriptors: only once
    /// it asked (`shm_receive`), since a client that may be sent them must
    /// read with `recvmsg`; until then it gets the bytes in the frame.
    pub fds_out: bool,
    /// Descriptors received and not yet claimed by a frame announcing one.
    pub fds: VecDeque<OwnedFd>,
    /// Shared-memory payloads sent to this client and not yet released
    /// (`shm_release`), by inode: the broker keeps each alive until then.
    pub shm_held: FxHashMap<u64, Vec<Arc<SharedPayload>>>,
    /// Shared-memory payloads this client sent that the broker still holds
    /// (each is a descriptor), limited by `Config::max_shm_in_flight`.
    pub shm_live: Arc<std::sync::atomic::AtomicUsize>,
    /// What it may do (see `auth`).
    pub access: Access,
    /// Where it comes from, when counted against the per-peer connection
    /// limit (`peer` is the description shown to admins).
    pub peer_key: Option<PeerKey>,
}

/// Encodings a client negotiated in its handshake. An old DiME2 client
/// asks for none and is sent DiME2's own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Accepts {
    /// It reads matrices in the `dimeb_layout` encoding.
    pub layout: bool,
    /// It takes shared-memory payloads (a unix connection that asked).
    pub shm: bool,
    /// It takes large messages while they arrive, and drops those its
    /// sync reply says were aborted (`cut_through`, on a plain stream).
    pub cut_through: bool,
}

impl Connection {
    /// A fresh connection.
    pub fn new(stream: Box<dyn Transport>, max_message: u64) -> Connection {
        Connection {
            stream,
            reader: FrameReader::new(max_message),
            out: OutQueue::default(),
            watch_queue: WatchQueue::default(),
            watches_behind: false,
            groups: BTreeSet::new(),
            inbox: VecDeque::new(),
            inbox_bytes: 0,
            waiting: None,
            held: VecDeque::new(),
            closing: false,
            blocked: None,
            deferred: VecDeque::new(),
            armed: (true, false),
            accepts: Accepts::default(),
            fds_in: false,
            fds_out: false,
            fds: VecDeque::new(),
            shm_held: FxHashMap::default(),
            shm_live: Arc::default(),
            since: std::time::SystemTime::now(),
            peer: String::new(),
            admin: false,
            broadcasts: true,
            access: Access::Full,
            peer_key: None,
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

    /// Gives `frame` the descriptor its header announces (`"shm":
    /// {"len":N,"segment":K}`), checked: a sealed memory file holding the
    /// payload, which must then be absent from the frame itself; N within
    /// `max_message`, and fewer than `max_live` of this client's payloads
    /// still held by the broker. Whatever
    /// is wrong is kept with the frame and becomes its error reply, in
    /// request order. When the payload is finally dropped, (`id`, K) goes
    /// to `freed`, so the sender hears its segment is free again.
    pub fn attach_shm(
        &mut self,
        frame: &mut Frame,
        id: ConnId,
        (max_message, max_live): (u64, usize),
        freed: &Arc<FreedSegments>,
    ) {
        #[derive(serde::Deserialize)]
        struct Announce {
            shm: Option<serde_json::Value>,
        }
        #[derive(serde::Deserialize)]
        struct Field {
            len: u64,
            segment: u64,
        }
        // Only a client that announced it sends descriptors (shm_send) is
        // read with recvmsg; any other "shm" is refused where it is relayed.
        if !self.fds_in || !frame.json().windows(5).any(|w| w == b"\"shm\"") {
            return;
        }
        // A header that does not parse fails in its service, as any other.
        let Ok(Announce { shm: Some(field) }) = serde_json::from_slice(frame.json()) else {
            return;
        };
        let fd = self.fds.pop_front();
        let in_frame = frame.payload.len();
        let live = &self.shm_live;
        let take = || -> Result<Arc<SharedPayload>, String> {
            let f: Field = serde_json::from_value(field)
                .map_err(|e| format!("JSON parsing error: shm: {e}"))?;
            let fd = fd.ok_or(
                "The message announces a shared-memory payload, but no descriptor came with it \
                 (descriptors are taken only after shm_send)",
            )?;
            if in_frame != 0 {
                return Err(
                    "A shared-memory message must not carry a payload in the frame too".into(),
                );
            }
            if f.len > max_message {
                return Err(format!(
                    "Message too large: {} bytes of shared memory declared, the limit (--max-message) is {max_message}",
                    f.len
                ));
            }
            let len = usize::try_from(f.len).map_err(|_| "shm.len is too large".to_owned())?;
            if live.load(Ordering::Relaxed) >= max_live {
                return Err(format!(
                    "Too many shared-memory messages in flight: {max_live} sent by this \
                     client are still queued or held by their recipients"
                ));
            }
            let p = SharedPayload::new(fd, len).map_err(|e| e.to_string())?;
            let (freed, segment) = (freed.clone(), f.segment);
            live.fetch_add(1, Ordering::Relaxed);
            let live = live.clone();
            p.on_drop(move || {
                live.fetch_sub(1, Ordering::Relaxed);
                freed.push(id, segment);
            });
            Ok(Arc::new(p))
        };
        frame.shm = Some(take());
    }

    /// Moves the payloads whose descriptors were just written into
    /// `shm_held`, where they stay until this client releases them.
    pub fn hold_delivered(&mut self) {
        for p in self.out.take_delivered() {
            self.shm_held.entry(p.ino()).or_default().push(p);
        }
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
