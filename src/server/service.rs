//! The seam every service plugs into. A service owns its data, parses its
//! own small header, and declares its commands, how a blocked request of
//! its own is withdrawn, its timeout reply, and what a disconnect does.
//! Services are registered in one place, `dispatch::services!`.

use super::auth::Action;
use super::conn::{ConnId, Connection};
use super::persist::Encoder;
use super::request::{CommandError, Result};
use super::state::State;
use crate::wire::Frame;
use serde::Deserialize;
use std::any::Any;
use std::time::Instant;

/// What a permission check is handed: an action and the name it acts on;
/// it returns the refusal, if any.
pub type Need<'a> = dyn FnMut(Action, &str) -> Result + 'a;

/// A command handler: the service's data, the shared state, the client,
/// its parsed header, and the frame (kept whole so relayed messages go
/// out unchanged).
pub type Handler<S> =
    for<'h> fn(&mut S, &mut State, ConnId, &<S as Service>::Header<'h>, Frame) -> Result;

/// One family of commands with its own data (DiME2 messaging, shares,
/// tuple spaces, …).
pub trait Service: Default + 'static {
    /// The fields this service's commands read, parsed from a request's
    /// JSON header (borrowing its text; see `request`).
    type Header<'h>: Deserialize<'h>;

    /// What a blocked request of this service waits for. Each service's
    /// type must be its own: the dispatcher finds the service by it.
    type Blocked: Any + Send;

    /// The commands, by name.
    const COMMANDS: &'static [(&'static str, Handler<Self>)];

    /// The names this service adds to the handshake reply's `"extensions"`
    /// list (from [`crate::proto::extensions`]), so clients know what they
    /// may use beyond DiME2: a service of new commands lists its own name;
    /// DiME2 messaging lists the extra fields its commands accept. There is
    /// no default, so no service can be registered without declaring them.
    const EXTENSIONS: &'static [&'static str];

    /// What `command` does, for permissions and name limits: calls `need`
    /// with each action it takes and the name it takes it on (a `join` of
    /// three groups, three times), and returns the first refusal. A command
    /// that touches nothing guarded (replies, `sync`, `ping` …) calls
    /// nothing. There is no default, so no service can be registered
    /// without saying what its commands do.
    fn required(command: &str, header: &Self::Header<'_>, need: &mut Need<'_>) -> Result;

    /// Answers a command refused by `required` (`refusal` is the error).
    /// The default is an error reply; a command answered out of band (a
    /// remote call's result, routed by its id) answers there instead.
    fn refuse(
        _st: &mut State,
        _id: ConnId,
        _command: &str,
        _header: &Self::Header<'_>,
        refusal: CommandError,
    ) -> Result {
        Err(refusal)
    }

    /// Takes a blocked request of this service out of its queues; it timed
    /// out or its client is gone, and must never be answered now.
    fn withdraw(&mut self, st: &mut State, id: ConnId, on: Self::Blocked);

    /// The error a blocked request gets when its timeout passes.
    fn timeout_message(on: &Self::Blocked) -> String;

    /// Releases what client `id` held; its blocked request, if any, has
    /// already been withdrawn. `conn` is the connection, already removed
    /// from `st.conns`.
    fn disconnect(&mut self, st: &mut State, id: ConnId, conn: &Connection);

    /// Ends whatever of this service's own deadlines (deadlines not tied
    /// to a blocked connection, e.g. queued remote calls) have passed at
    /// `now`; returns the next one.
    fn expire(&mut self, _st: &mut State, _now: Instant) -> Option<Instant> {
        None
    }

    /// Client `id`, one of whose watches fell behind (see `watch`), has
    /// read its queued events down to where they may go on: let this
    /// service's watches of it catch up. True if one is still behind.
    fn drained(&mut self, _st: &mut State, _id: ConnId) -> bool {
        false
    }

    /// What this service holds, for `inspect` (`dime ls`): names, sizes,
    /// holders and waiters, never the values themselves.
    fn inspect(&self, _st: &State) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// The tag of this service's records and snapshot section in the data
    /// directory (see `persist`); None: it persists nothing.
    const PERSIST_TAG: Option<u8> = None;

    /// An image of the persisted state, taken now at the cost of a few
    /// pointer copies (maps that share structure) and encoded later, off
    /// the loop, into the snapshot section `restore` reads.
    fn image(&self) -> Option<Encoder> {
        None
    }

    /// Loads the snapshot section this service's `image` wrote.
    fn restore(&mut self, _section: &[u8]) -> std::result::Result<(), String> {
        Err("this service persists nothing".into())
    }

    /// Re-applies a change this service logged with `State::persist`;
    /// `st` is a scratch state with no connections.
    fn replay(&mut self, _st: &mut State, _record: &[u8]) -> std::result::Result<(), String> {
        Err("this service persists nothing".into())
    }
}
