//! Cut-through relaying (`docs/protocol-extensions.md`, "Cut-through"):
//! a large `send` or `broadcast` is routed as soon as its header is in,
//! and recipients that negotiated `cut_through` are written its payload as
//! it arrives, so the broker's two hops overlap instead of taking turns.
//!
//! Only the simple case goes this way: a group send or a broadcast without
//! `"receive"` or shared memory, no monitor connected, every recipient
//! reading the sender's own encoding, and the request valid and within
//! `--max-queue` when its header arrives. Anything else completes first
//! and is relayed as usual. Recipients that did not negotiate get the
//! message once it is complete, with its bytes reserved in their queues
//! meanwhile. The sender's reply still follows its last byte. A sender
//! that goes away before then aborts the message: it leaves the queues it
//! is still waiting in, the rest of its bytes go out as zeros to keep
//! each stream in step, and the sync reply's closing status names it in
//! `"aborted"` (see `drain_inbox`), so clients drop it.

use super::{Header, Messaging, check_queue_room, deliver};
use crate::server::conn::ConnId;
use crate::server::request::{flag, parse, required_raw_str};
use crate::server::state::State;
use crate::wire::Frame;
use std::sync::Arc;
use std::time::Instant;

/// Where a message relayed while it arrives goes (see
/// [`Messaging::route_live`]).
pub struct LiveRoute {
    command: &'static str,
    now: Vec<ConnId>,
    later: Vec<ConnId>,
    started: Instant,
}

/// A message being relayed while its payload arrives.
pub struct LiveRelay {
    /// The frame every recipient shares; its payload is live.
    frame: Arc<Frame>,
    /// Recipients it was queued for at once, written as it arrives.
    now: Vec<ConnId>,
    /// Recipients that get it once complete; its size is reserved in
    /// their queues' `inbox_bytes` until then.
    later: Vec<ConnId>,
}

impl Messaging {
    /// Routes a `send`/`broadcast` whose header (`text`) has arrived and
    /// whose payload of `payload_len` bytes has not, if it is one
    /// cut-through handles (None: the frame completes and is handled as any
    /// other). [`Messaging::begin_live`] then relays it.
    pub fn route_live(
        &self,
        st: &State,
        id: ConnId,
        text: &str,
        payload_len: usize,
    ) -> Option<LiveRoute> {
        let started = Instant::now();
        // A monitor is shown each message's value when it is relayed.
        if !st.monitors.is_empty() || self.live.contains_key(&id) {
            return None;
        }
        #[derive(serde::Deserialize)]
        struct Command<'a> {
            #[serde(borrow)]
            command: Option<&'a serde_json::value::RawValue>,
        }
        let command: Command = parse(text).ok()?;
        let command = match command.command?.get() {
            r#""send""# => "send",
            r#""broadcast""# => "broadcast",
            _ => return None,
        };
        let h: Header = parse(text).ok()?;
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
            super::broadcast_recipients(st, id)
        };
        let layout = flag(h.dimeb_layout);
        let mut now = Vec::new();
        let mut later = Vec::new();
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

    /// Relays `frame`, whose payload is live, as `route` says: queued at
    /// once for those that take it as it arrives, its size reserved in the
    /// others' queues until it is whole.
    pub fn begin_live(&mut self, st: &mut State, id: ConnId, route: LiveRoute, frame: Frame) {
        let frame = Arc::new(frame);
        let size = frame.queued_len() as u64;
        st.stats.messages += 1;
        deliver(st, &route.now, |_| frame.clone());
        for r in &route.later {
            if let Some(c) = st.conns.get_mut(r) {
                c.inbox_bytes += size;
            }
        }
        let relay = LiveRelay {
            frame,
            now: route.now,
            later: route.later,
        };
        self.live.insert(id, relay);
        st.stats
            .request(Some(route.command), route.started.elapsed(), false);
    }

    /// Lets the recipients of `id`'s live message write what has arrived.
    pub fn wake_live(&self, st: &mut State, id: ConnId) {
        if let Some(relay) = self.live.get(&id) {
            for r in &relay.now {
                if st.conns.contains_key(r) {
                    st.dirty.insert(*r);
                }
            }
        }
    }

    /// The last byte of `id`'s live message has arrived: recipients that
    /// waited for the whole message get it, and the sender its reply.
    pub fn finish_live(&mut self, st: &mut State, id: ConnId) {
        let Some(relay) = self.live.remove(&id) else {
            return;
        };
        let size = relay.frame.queued_len() as u64;
        let mut later = relay.later;
        later.retain(|r| match st.conns.get_mut(r) {
            Some(c) => {
                c.inbox_bytes -= size;
                true
            }
            None => false,
        });
        let frame = relay.frame;
        deliver(st, &later, |_| frame.clone());
        for r in &relay.now {
            if st.conns.contains_key(r) {
                st.dirty.insert(*r);
            }
        }
        st.reply_ok(id);
    }

    /// `id`'s live message will never be complete (its sender is going
    /// away): recipients that have not taken it yet lose it; those being
    /// written it get zeros for the rest and are told in their sync reply.
    pub fn abort_live(&mut self, st: &mut State, id: ConnId) {
        let Some(relay) = self.live.remove(&id) else {
            return;
        };
        let live = relay.frame.live.as_ref().expect("a live relay's payload");
        live.abort();
        let size = relay.frame.queued_len() as u64;
        for r in &relay.now {
            let Some(c) = st.conns.get_mut(r) else {
                continue;
            };
            if let Some(at) = c.inbox.iter().position(|f| Arc::ptr_eq(f, &relay.frame)) {
                c.inbox.remove(at);
                c.inbox_bytes -= size;
            }
            st.dirty.insert(*r);
        }
        for r in &relay.later {
            if let Some(c) = st.conns.get_mut(r) {
                c.inbox_bytes -= size;
            }
        }
        log::info!("client {id} went away in the middle of a message; its recipients drop it");
    }
}
