//! Bookkeeping for pipelined sends: which `send`/`broadcast` requests are
//! written but not yet answered, how many may be, and the failures read
//! but not yet reported. The reading and writing is `Client`'s; this only
//! keeps count and names the request a late failure belongs to.

use super::Error;
use std::collections::VecDeque;

/// The window a client gets when pipelining is turned on without a size:
/// at most this many sends wait for their `{"status":0}`. Their replies
/// (about 24 bytes each) fit a socket's buffers many times over, so the
/// server is never held up writing them.
pub const DEFAULT_WINDOW: usize = 1024;

/// The largest window a client accepts; larger requests are clamped.
pub const MAX_WINDOW: usize = 65_536;

/// The window against an original DiME2 server: its own Python client
/// writes up to 16 sends before reading their replies, so the server is
/// known to take that many; more is not promised by anything it ships.
pub const ORIGINAL_SERVER_WINDOW: usize = 16;

/// A relay request written and not yet answered.
#[derive(Debug)]
struct Unacked {
    /// Its number among this connection's sends and broadcasts, from 1.
    number: u64,
    /// The group of a send; None for a broadcast.
    group: Option<String>,
    varname: String,
}

/// The pipeline state of one connection.
#[derive(Debug, Default)]
pub(crate) struct Pipeline {
    /// Most sends left unanswered; 0 when pipelining is off.
    window: usize,
    unacked: VecDeque<Unacked>,
    /// Failures read but not yet reported, oldest first.
    failures: VecDeque<Error>,
    /// Sends and broadcasts written on this connection.
    written: u64,
}

impl Pipeline {
    /// The window in force (0: off).
    pub(crate) fn window(&self) -> usize {
        self.window
    }

    /// Sets the window, clamped to `limit` (0 turns pipelining off).
    pub(crate) fn set_window(&mut self, window: usize, limit: usize) -> usize {
        self.window = window.min(limit);
        self.window
    }

    /// Requests written and not yet answered.
    pub(crate) fn unacked(&self) -> usize {
        self.unacked.len()
    }

    /// Notes that a relay was written (pipelined or not) and returns its
    /// number; a pipelined one is also queued for its reply.
    pub(crate) fn written(&mut self, group: Option<&str>, varname: &str, pipelined: bool) -> u64 {
        self.written += 1;
        if pipelined {
            self.unacked.push_back(Unacked {
                number: self.written,
                group: group.map(str::to_owned),
                varname: varname.to_owned(),
            });
        }
        self.written
    }

    /// Takes the reply `outcome` of the oldest unacknowledged send: a
    /// failure is kept, named after its send, for [`Pipeline::take_failure`].
    /// `Err` only for a failure that is not the send's own (a connection
    /// or protocol error), which the caller returns at once.
    pub(crate) fn acknowledge(&mut self, outcome: Result<(), Error>) -> Result<(), Error> {
        let Some(sent) = self.unacked.pop_front() else {
            return Err(Error::Protocol(
                "a reply came with no request outstanding".into(),
            ));
        };
        match outcome {
            Ok(()) => Ok(()),
            Err(Error::Server(msg)) => {
                self.failures
                    .push_back(Error::Server(describe(&sent, &msg)));
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Whether a failure is waiting to be reported.
    pub(crate) fn has_failure(&self) -> bool {
        !self.failures.is_empty()
    }

    /// `Err` with the oldest failure not yet reported, if any.
    pub(crate) fn take_failure(&mut self) -> Result<(), Error> {
        self.failures.pop_front().map_or(Ok(()), Err)
    }
}

/// The message of a late failure: which send it was, and the server's
/// words, e.g. `pipelined send #12 of 'x' to group 'g' failed: No such
/// group exists: g`.
fn describe(sent: &Unacked, server_msg: &str) -> String {
    let Unacked {
        number,
        group,
        varname,
    } = sent;
    match group {
        Some(g) => {
            format!("pipelined send #{number} of '{varname}' to group '{g}' failed: {server_msg}")
        }
        None => format!("pipelined broadcast #{number} of '{varname}' failed: {server_msg}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_named_and_reported_once_in_order() {
        let mut p = Pipeline::default();
        p.set_window(4, MAX_WINDOW);
        p.written(Some("g"), "a", true);
        p.written(None, "b", true);
        p.written(Some("h"), "c", true);
        p.acknowledge(Err(Error::Server("No such group exists: g".into())))
            .unwrap();
        p.acknowledge(Ok(())).unwrap();
        p.acknowledge(Err(Error::Server("full".into()))).unwrap();
        assert_eq!(p.unacked(), 0);
        let first = p.take_failure().unwrap_err().to_string();
        assert_eq!(
            first,
            "server error: pipelined send #1 of 'a' to group 'g' failed: No such group exists: g"
        );
        let second = p.take_failure().unwrap_err().to_string();
        assert!(second.contains("send #3 of 'c' to group 'h'"), "{second}");
        assert!(p.take_failure().is_ok());
    }

    #[test]
    fn broadcasts_are_named_as_such_and_unpipelined_sends_are_counted() {
        let mut p = Pipeline::default();
        p.set_window(2, MAX_WINDOW);
        assert_eq!(p.written(Some("g"), "x", false), 1);
        assert_eq!(p.unacked(), 0);
        p.written(None, "y", true);
        p.acknowledge(Err(Error::Server("no".into()))).unwrap();
        let e = p.take_failure().unwrap_err().to_string();
        assert!(
            e.contains("pipelined broadcast #2 of 'y' failed: no"),
            "{e}"
        );
    }

    #[test]
    fn a_connection_error_is_not_kept_and_a_stray_reply_is_a_protocol_error() {
        let mut p = Pipeline::default();
        p.set_window(2, MAX_WINDOW);
        p.written(Some("g"), "x", true);
        let e = p.acknowledge(Err(Error::lost("gone")));
        assert!(matches!(e, Err(Error::ConnectionLost(_))));
        assert!(!p.has_failure());
        assert!(matches!(p.acknowledge(Ok(())), Err(Error::Protocol(_))));
    }

    #[test]
    fn the_window_is_clamped() {
        let mut p = Pipeline::default();
        assert_eq!(p.set_window(100, ORIGINAL_SERVER_WINDOW), 16);
        assert_eq!(p.set_window(0, MAX_WINDOW), 0);
        assert_eq!(p.window(), 0);
    }
}
