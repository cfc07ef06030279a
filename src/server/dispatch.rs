//! The service registry and the one route from a request to its handler.
//! To add a service, write `services/NAME.rs` implementing
//! [`Service`](super::service::Service) and add one line to the
//! `services!` list below.

use super::auth::{self, Access};
use super::conn::{Blocked, ConnId};
use super::persist::{Encoder, Loaded};
use super::request::{Result, parse_header};
use super::service::{Handler, Service};
use super::services::{messaging::Messaging, rpc::Rpc, share::Shares, space::Spaces};
use super::state::State;
use crate::wire::Frame;
use std::time::Instant;

/// Declares every service: a field of [`Services`] each, and the routing
/// of commands, timeouts and disconnects to them.
macro_rules! services {
    ($($field:ident: $ty:ty,)*) => {
        /// Every service's data, one field per service.
        #[derive(Default)]
        pub struct Services {
            $(
                #[doc = concat!("The `", stringify!($ty), "` service.")]
                pub $field: $ty,
            )*
        }

        impl Services {
            /// Every service's extension names, in registration order:
            /// the handshake's `"extensions"` list.
            pub fn extensions() -> Vec<&'static str> {
                let mut all = Vec::new();
                $( all.extend_from_slice(<$ty as Service>::EXTENSIONS); )*
                all
            }

            /// Runs `command` if a service has it and the client may:
            /// None if nobody has it. A client that has yet to authenticate
            /// may only handshake; anything else closes it.
            pub fn dispatch(
                &mut self,
                st: &mut State,
                id: ConnId,
                command: &str,
                text: &str,
                frame: Frame,
            ) -> Option<Result> {
                let pending = st.conns.get(&id).is_some_and(|c| matches!(c.access, Access::Pending));
                if pending && command != "handshake" {
                    st.fail_and_close(id, auth::AUTH_REQUIRED, true);
                    return Some(Ok(()));
                }
                $(
                    if let Some(h) = find::<$ty>(command) {
                        return Some(run::<$ty>(&mut self.$field, st, id, command, h, text, frame));
                    }
                )*
                None
            }

            /// Hands a blocked request back to the service that blocked it;
            /// `timed_out` also sends that service's timeout error.
            fn withdraw(&mut self, st: &mut State, id: ConnId, blocked: Blocked, timed_out: bool) {
                let on = blocked.on;
                $(
                    let on = match on.downcast::<<$ty as Service>::Blocked>() {
                        Ok(on) => {
                            let msg = timed_out.then(|| <$ty as Service>::timeout_message(&on));
                            self.$field.withdraw(st, id, *on);
                            if let Some(msg) = msg {
                                st.reply(id, serde_json::json!({"status": -1, "error": msg, "timeout": true}));
                            }
                            return;
                        }
                        Err(other) => other,
                    };
                )*
                let _ = on;
                unreachable!("a request was blocked by an unregistered service");
            }

            /// Lets the watches of client `id` that fell behind catch up,
            /// now it has read enough; true if one is still behind.
            pub fn drained(&mut self, st: &mut State, id: ConnId) -> bool {
                let mut behind = false;
                $( behind |= self.$field.drained(st, id); )*
                behind
            }

            /// Every service's `inspect`, by field name.
            pub fn inspect(&self, st: &State) -> serde_json::Value {
                let mut out = serde_json::Map::new();
                $( out.insert(stringify!($field).to_owned(), self.$field.inspect(st)); )*
                serde_json::Value::Object(out)
            }

            /// The static name of `command`, if a service has it.
            pub fn known(command: &str) -> Option<&'static str> {
                $(
                    if let Some((name, _)) = <$ty as Service>::COMMANDS.iter().find(|(n, _)| *n == command) {
                        return Some(name);
                    }
                )*
                None
            }

            /// Forgets a closed connection: its blocked request is
            /// withdrawn, then every service releases what it held.
            pub fn forget(&mut self, st: &mut State, id: ConnId) -> Option<crate::server::conn::Connection> {
                let mut conn = st.forget(id)?;
                if let Some(blocked) = conn.blocked.take() {
                    self.withdraw(st, id, blocked, false);
                }
                $( self.$field.disconnect(st, id, &conn); )*
                Some(conn)
            }

            /// Answers every wait and blocked request whose deadline has
            /// passed, and lets each service end its own expired work;
            /// returns the next deadline.
            pub fn expire(&mut self, st: &mut State, now: Instant) -> Option<Instant> {
                let mut expired = Vec::new();
                let mut next = st.expire(now, &mut expired);
                for (id, blocked) in expired {
                    self.withdraw(st, id, blocked, true);
                }
                $(
                    if let Some(d) = self.$field.expire(st, now) {
                        next = Some(next.map_or(d, |n: Instant| n.min(d)));
                    }
                )*
                next
            }

            /// Hands a snapshot section or log record to the service that
            /// wrote it (`scratch`: a state with no connections).
            pub fn load(&mut self, scratch: &mut State, item: Loaded) -> std::result::Result<(), String> {
                let (tag, bytes, section) = match item {
                    Loaded::Section(t, b) => (t, b, true),
                    Loaded::Record(t, b) => (t, b, false),
                };
                $(
                    if <$ty as Service>::PERSIST_TAG == Some(tag) {
                        return if section {
                            self.$field.restore(bytes)
                        } else {
                            self.$field.replay(scratch, bytes)
                        };
                    }
                )*
                Err(format!("no service of this dime persists data tagged {tag}"))
            }

            /// Every persisted service's image, for a snapshot.
            pub fn images(&self) -> Vec<(u8, Encoder)> {
                let mut out = Vec::new();
                $(
                    if let (Some(tag), Some(e)) = (<$ty as Service>::PERSIST_TAG, self.$field.image()) {
                        out.push((tag, e));
                    }
                )*
                out
            }
        }
    };
}

services! {
    messaging: Messaging,
    shares: Shares,
    spaces: Spaces,
    rpc: Rpc,
}

/// The handler of `command` in service `S`, if it has one.
fn find<S: Service>(command: &str) -> Option<Handler<S>> {
    S::COMMANDS
        .iter()
        .find(|(name, _)| *name == command)
        .map(|(_, h)| *h)
}

/// Parses the service's own header from `text`, checks what the command
/// does against the client's permissions and the name limit (the one
/// place every command passes), and runs the handler.
fn run<S: Service>(
    svc: &mut S,
    st: &mut State,
    id: ConnId,
    command: &str,
    handler: Handler<S>,
    text: &str,
    frame: Frame,
) -> Result {
    let header: S::Header<'_> = parse_header(text)?;
    let permitted = S::required(command, &header, &mut |action, name| {
        st.permit(id, action, name)
    });
    if let Err(refusal) = permitted {
        return S::refuse(st, id, command, &header, refusal);
    }
    handler(svc, st, id, &header, frame)
}

/// `_test_panic`: panics, so tests can check the loop survives a handler
/// bug (routed only with `Config::test_panic_command`).
pub fn test_panic() -> Result {
    panic!("_test_panic was asked to panic");
}

#[cfg(test)]
mod tests {
    use super::Services;

    #[test]
    fn every_extension_is_announced_once_by_name() {
        let all = Services::extensions();
        for (i, name) in all.iter().enumerate() {
            assert!(
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{name:?} is not a lowercase name"
            );
            assert!(!all[..i].contains(name), "{name} is announced twice");
        }
        assert!(all.contains(&"share") && all.contains(&"space"));
    }
}
