//! Change events from the client side: a [`Watch`] has its own connection
//! to the broker, on which the broker pushes every change to a share (or
//! the keys under a prefix), a tuple space, or group membership. It
//! remembers the last event number it saw, so when its connection breaks
//! it reconnects and resumes from there, receiving what it missed; when
//! that is no longer known (the broker's bounded history moved past it,
//! or the broker restarted), it gets one [`EventKind::Lost`] event: re-read
//! the current state. A [`Position`] kept across a process restart resumes
//! the same way. A watch not read for a while is held to the broker's
//! `--watch-queue-events`/`--watch-queue-bytes`: once read again it gets
//! every event up to where it fell behind, then the rest from the history,
//! or a `Lost` event if that has moved on.

use crate::buffer::PooledBuf;
use crate::client::{Client, Error, Result};
use crate::codec::dimeb;
use crate::transport::Address;
use crate::value::Value;
use serde_json::{Map, Value as Json, json};
use std::time::{Duration, Instant};

/// What to watch.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// Share `name`, keys starting with `prefix` ("" for all).
    Share {
        /// The share ("" is the default share).
        name: String,
        /// Only keys starting with this.
        prefix: String,
    },
    /// Tuple space `name`: every tuple put in or taken out.
    Space {
        /// The space ("" is the default space).
        name: String,
    },
    /// Joins and leaves of groups whose names start with `prefix`.
    Groups {
        /// Only groups whose names start with this.
        prefix: String,
    },
}

/// What an event says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A share key was set (set, set_many, incr, a swapping cas).
    Set,
    /// A share key was removed (del, pop).
    Del,
    /// Every key of a share was removed.
    Clear,
    /// A tuple was put into a space.
    Out,
    /// A tuple was taken from a space.
    In,
    /// A client joined a group.
    Join,
    /// A client left a group (or disconnected).
    Leave,
    /// Events were missed and are no longer known: re-read the state.
    Lost,
}

impl EventKind {
    /// The kind's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Set => "set",
            EventKind::Del => "del",
            EventKind::Clear => "clear",
            EventKind::Out => "out",
            EventKind::In => "in",
            EventKind::Join => "join",
            EventKind::Leave => "leave",
            EventKind::Lost => "lost",
        }
    }

    fn parse(s: &str) -> Option<EventKind> {
        Some(match s {
            "set" => EventKind::Set,
            "del" => EventKind::Del,
            "clear" => EventKind::Clear,
            "out" => EventKind::Out,
            "in" => EventKind::In,
            "join" => EventKind::Join,
            "leave" => EventKind::Leave,
            "lost" => EventKind::Lost,
            _ => return None,
        })
    }
}

/// One change.
#[derive(Debug)]
pub struct Event {
    /// Its number: events of one feed are numbered in order.
    pub seq: u64,
    /// What happened.
    pub kind: EventKind,
    /// The share or space it happened in (None for groups and `Lost`).
    pub topic: Option<String>,
    /// The share key, or the group name, it touched (None for `clear`,
    /// tuple events and `Lost`).
    pub key: Option<String>,
    /// The new value (`Set`) or the tuple (`Out`, `In`), encoded.
    pub value: Option<PooledBuf>,
    /// The broker's id of the client that joined or left.
    pub client: Option<u64>,
    /// For `Lost`: why.
    pub message: Option<String>,
}

impl Event {
    /// The value or tuple, decoded.
    pub fn decode(&self) -> Result<Option<Value>> {
        self.value
            .as_ref()
            .map(|v| dimeb::decode(v).map_err(Error::from))
            .transpose()
    }
}

/// Where a watch is in its feed: resume a new watch from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Identifies the feed (and the broker run) the number belongs to.
    pub epoch: u64,
    /// The last event number seen.
    pub seq: u64,
}

/// A watch on its own connection.
pub struct Watch {
    address: Address,
    target: Target,
    client: Option<Client>,
    position: Option<Position>,
    /// The epoch of the feed the current connection watches.
    feed_epoch: Option<u64>,
}

/// The id this connection gives its one watch.
const WATCH_ID: u64 = 1;

impl Watch {
    /// Connects to `address` and starts watching `target`, resuming after
    /// `resume` if given (events since then are delivered first, or a
    /// `Lost` event if they are no longer known).
    pub fn open(address: &Address, target: Target, resume: Option<Position>) -> Result<Watch> {
        let mut w = Watch {
            address: address.clone(),
            target,
            client: None,
            position: resume,
            feed_epoch: None,
        };
        w.connect()?;
        Ok(w)
    }

    /// The last event seen (or the feed's position when the watch began).
    pub fn position(&self) -> Option<Position> {
        self.position
    }

    /// What this watch watches.
    pub fn target(&self) -> &Target {
        &self.target
    }

    fn connect(&mut self) -> Result<()> {
        let mut c = Client::connect_side(&self.address)?;
        let mut req = match &self.target {
            Target::Share { name, prefix } => {
                json!({"command": "share_watch", "share": name, "prefix": prefix})
            }
            Target::Space { name } => json!({"command": "ts_watch", "space": name}),
            Target::Groups { prefix } => json!({"command": "group_watch", "prefix": prefix}),
        };
        req["watch"] = json!(WATCH_ID);
        if let Some(p) = self.position {
            req["since"] = json!(p.seq);
            req["epoch"] = json!(p.epoch);
        }
        let reply = c.request(req)?;
        let num = |k: &str| {
            reply
                .get(k)
                .and_then(Json::as_u64)
                .ok_or_else(|| Error::Protocol(format!("the watch reply has no \"{k}\"")))
        };
        let (epoch, seq) = (num("epoch")?, num("seq")?);
        if self.position.is_none() {
            self.position = Some(Position { epoch, seq });
        }
        self.feed_epoch = Some(epoch);
        self.client = Some(c);
        Ok(())
    }

    /// The next event, waiting up to `timeout` (None: forever); None when
    /// the time passed without one. A broken connection is reopened once,
    /// resuming where this watch was; if that fails the error is returned
    /// and the next call tries again.
    pub fn next(&mut self, timeout: Option<Duration>) -> Result<Option<Event>> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut reconnected = false;
        loop {
            if self.client.is_none() {
                self.connect()?;
                reconnected = true;
            }
            let c = self.client.as_mut().expect("connected above");
            match c.read_frame_until(deadline) {
                Ok(None) => return Ok(None),
                Ok(Some((obj, payload))) => return self.event(obj, payload).map(Some),
                Err(Error::ConnectionLost(m)) => {
                    self.client = None;
                    if reconnected {
                        return Err(Error::ConnectionLost(m));
                    }
                }
                Err(e) => {
                    self.client = None;
                    return Err(e);
                }
            }
        }
    }

    fn event(&mut self, obj: Map<String, Json>, payload: PooledBuf) -> Result<Event> {
        if obj.get("event").and_then(Json::as_u64) != Some(WATCH_ID) {
            let what = obj
                .get("error")
                .and_then(Json::as_str)
                .unwrap_or("a frame that is not an event");
            return Err(Error::Protocol(format!(
                "the watch connection received {what}"
            )));
        }
        let text = |k: &str| obj.get(k).and_then(Json::as_str).map(str::to_owned);
        let seq = obj.get("seq").and_then(Json::as_u64).unwrap_or(0);
        let kind = text("kind")
            .as_deref()
            .and_then(EventKind::parse)
            .ok_or_else(|| Error::Protocol(format!("an event of unknown kind: {obj:?}")))?;
        // Events after a `Lost` one (which carries the feed's current
        // number) continue this connection's feed.
        if let Some(epoch) = self.feed_epoch {
            self.position = Some(Position { epoch, seq });
        }
        Ok(Event {
            seq,
            kind,
            topic: text("share").or_else(|| text("space")),
            key: text("key").or_else(|| text("group")),
            value: (!payload.is_empty()).then_some(payload),
            client: obj.get("client").and_then(Json::as_u64),
            message: text("error"),
        })
    }
}
