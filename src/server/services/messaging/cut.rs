//! The bookkeeping of cut-through relaying (`docs/protocol-extensions.md`,
//! "Large messages relayed while they arrive"): messages queued for some
//! recipients while their payload still arrives, until it is whole or its
//! sender goes away. Which messages qualify, and who gets them at once, is
//! decided by the messaging service (`Messaging::route_live`).
//!
//! Recipients that negotiated `cut_through` have the message queued at
//! once and are written it as it arrives; the others get it once it is
//! whole, with its size reserved in their queues meanwhile. A sender that
//! goes away first aborts the message: it leaves the queues it still waits
//! in, the rest of its bytes go out as zeros to keep each stream in step,
//! and the sync reply's closing status names it in `"aborted"`, so clients
//! drop it. So does a sender that stays connected but sends no byte of the
//! payload for `--cut-through-stall-ms` ([`LiveRelays::stalled`]): a
//! recipient's sync reply that holds the message waits no longer than that
//! for it.

use crate::server::conn::ConnId;
use crate::server::state::State;
use crate::wire::Frame;
use rustc_hash::FxHashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Queues `frame` for each of the recipients and wakes those waiting.
pub type Deliver = fn(&mut State, &[ConnId], &Arc<Frame>);

/// A message being relayed while its payload arrives.
struct LiveRelay {
    /// The frame every recipient shares; its payload is live.
    frame: Arc<Frame>,
    /// Recipients it was queued for at once, written as it arrives.
    now: Vec<ConnId>,
    /// Recipients that get it once complete; its size is reserved in
    /// their queues' `inbox_bytes` until then.
    later: Vec<ConnId>,
    /// Payload bytes in at `progressed`.
    arrived: usize,
    /// When the last payload byte so far arrived (or the relay began).
    progressed: Instant,
}

/// The messages being relayed while they arrive, by sender (one at most
/// each: a sender's frames arrive one after the other).
#[derive(Default)]
pub struct LiveRelays(FxHashMap<ConnId, LiveRelay>);

impl LiveRelays {
    /// True while `sender` has a message being relayed as it arrives.
    pub fn contains(&self, sender: ConnId) -> bool {
        self.0.contains_key(&sender)
    }

    /// Relays `frame`, whose payload is live: queued now for `now`, its
    /// size reserved in the queues of `later` until it is whole.
    pub fn begin(
        &mut self,
        st: &mut State,
        sender: ConnId,
        frame: Frame,
        now: Vec<ConnId>,
        later: Vec<ConnId>,
        deliver: Deliver,
    ) {
        let frame = Arc::new(frame);
        let size = frame.queued_len() as u64;
        deliver(st, &now, &frame);
        for r in &later {
            if let Some(c) = st.conns.get_mut(r) {
                c.inbox_bytes += size;
            }
        }
        let arrived = frame.live.as_ref().map_or(0, |l| l.filled().len());
        let relay = LiveRelay {
            frame,
            now,
            later,
            arrived,
            progressed: Instant::now(),
        };
        self.0.insert(sender, relay);
    }

    /// Lets the recipients of `sender`'s live message write what has
    /// arrived, and notes whether anything did.
    pub fn wake(&mut self, st: &mut State, sender: ConnId) {
        if let Some(relay) = self.0.get_mut(&sender) {
            let arrived = relay.frame.live.as_ref().map_or(0, |l| l.filled().len());
            if arrived != relay.arrived {
                relay.arrived = arrived;
                relay.progressed = Instant::now();
            }
            for r in &relay.now {
                if st.conns.contains_key(r) {
                    st.dirty.insert(*r);
                }
            }
        }
    }

    /// The last byte of `sender`'s live message has arrived: the
    /// recipients that waited for the whole message get it. False if
    /// `sender` had none.
    pub fn finish(&mut self, st: &mut State, sender: ConnId, deliver: Deliver) -> bool {
        let Some(relay) = self.0.remove(&sender) else {
            return false;
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
        deliver(st, &later, &relay.frame);
        for r in &relay.now {
            if st.conns.contains_key(r) {
                st.dirty.insert(*r);
            }
        }
        true
    }

    /// The senders whose live message has had no byte arrive for `limit`
    /// by `now`, and when the next one will have if none arrives (None:
    /// no live message).
    pub fn stalled(&self, now: Instant, limit: Duration) -> (Vec<ConnId>, Option<Instant>) {
        let mut late = Vec::new();
        let mut next: Option<Instant> = None;
        for (&sender, relay) in &self.0 {
            let due = relay.progressed + limit;
            if due <= now {
                late.push(sender);
            } else {
                next = Some(next.map_or(due, |n| n.min(due)));
            }
        }
        (late, next)
    }

    /// `sender`'s live message will never be complete (`why`: its sender
    /// is going away, or stalled): recipients that have not taken it yet
    /// lose it; those being written it get zeros for the rest and are told
    /// in their sync reply.
    pub fn abort(&mut self, st: &mut State, sender: ConnId, why: &str) {
        let Some(relay) = self.0.remove(&sender) else {
            return;
        };
        if let Some(live) = &relay.frame.live {
            live.abort();
        }
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
        log::info!("client {sender} {why} in the middle of a message; its recipients drop it");
    }
}
