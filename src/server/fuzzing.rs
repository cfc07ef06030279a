//! Requests from a fuzzer, run the way the event loop runs them: three
//! connections (one with every permission, one that must authenticate
//! first, one with a user's limited roles), frames routed through the
//! dispatcher to every service, blocked clients resumed, output flushed
//! into a sink, deadlines expired and everyone disconnected at the end.
//! A panic anywhere is a bug (the loop would close that client). See
//! `crate::fuzzing::requests`.

use super::auth::{Access, AuthTable, Credential, Principal};
use super::config::Config;
use super::conn::{ConnId, Connection};
use super::dispatch::Services;
use super::request::{self, CommandHeader};
use super::state::State;
use crate::transport::Transport;
use crate::wire::{Frame, FrameReader};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Users and roles of the fuzzed server (tokens a seed may present).
const USERS: &str = "\
role all *
role some join:a* send:a* broadcast share.read:* share:s* space:s* call:f* provide:f*
root tok-root all
ann  tok-ann  some
";

/// A connection's socket that takes every byte written and has no input.
struct Sink;

impl Read for Sink {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsRawFd for Sink {
    fn as_raw_fd(&self) -> RawFd {
        -1
    }
}

impl Transport for Sink {
    fn set_nonblocking(&self, _: bool) -> io::Result<()> {
        Ok(())
    }
    fn peer(&self) -> String {
        "fuzzer".into()
    }
    fn shutdown(&self) -> io::Result<()> {
        Ok(())
    }
}

/// Runs the frames in `data`. A frame goes to connection 1, 2 or 3 by how
/// many spaces its JSON starts with (none, one, more), so the seeds, one
/// client's traffic each, run with every permission.
pub fn run(data: &[u8]) {
    let config = Config {
        max_name: 64,
        max_groups: 8,
        max_queue: 1 << 20,
        ..Config::default()
    };
    let table = Arc::new(AuthTable::parse(USERS).expect("the fuzzer's auth file parses"));
    let mut st = State::new(config, Services::extensions());
    let mut services = Services::default();
    let ann = table.by_token("tok-ann").expect("ann is listed");
    let accesses = [
        Access::Full,
        Access::Pending,
        Access::Granted(Arc::new(Principal::user(
            ann,
            Credential::Token("tok-ann".into()),
        ))),
    ];
    st.auth = Some(table.clone());
    for (i, access) in accesses.into_iter().enumerate() {
        let mut c = Connection::new(Box::new(Sink), 1 << 20);
        c.access = access;
        st.conns.insert(i + 1, c);
    }
    let mut reader = FrameReader::new(1 << 20);
    reader.feed(data);
    while let Ok(Some(frame)) = reader.next_frame() {
        let spaces = frame.json().iter().take_while(|&&b| b == b' ').count();
        let id = 1 + spaces.min(2);
        let Some(c) = st.conns.get_mut(&id) else {
            continue;
        };
        if c.blocked.is_some() || !c.deferred.is_empty() {
            c.deferred.push_back(frame);
        } else {
            handle(&mut services, &mut st, id, frame);
        }
        settle(&mut services, &mut st);
    }
    // Every deadline passes.
    services.expire(&mut st, Instant::now() + Duration::from_secs(1 << 20));
    settle(&mut services, &mut st);
    let ids: Vec<ConnId> = st.conns.keys().copied().collect();
    for id in ids {
        services.forget(&mut st, id);
    }
}

/// One request, as the loop's `handle_frame` runs it.
fn handle(services: &mut Services, st: &mut State, id: ConnId, frame: Frame) {
    let Ok(text) = std::str::from_utf8(frame.json()) else {
        return;
    };
    let text = text.to_owned();
    let Ok(header) = request::parse::<CommandHeader>(&text) else {
        return;
    };
    let Some(command) = header.name() else {
        return;
    };
    if let Some(Err(e)) = services.dispatch(st, id, &command, &text, frame) {
        st.reply(id, e.reply());
    }
}

/// What the loop does between events: resume unblocked clients, write
/// output, and close connections that were failed.
fn settle(services: &mut Services, st: &mut State) {
    while let Some(id) = st.resume.pop() {
        while let Some(c) = st.conns.get_mut(&id) {
            if c.blocked.is_some() || c.closing {
                break;
            }
            let Some(f) = c.deferred.pop_front() else {
                break;
            };
            handle(services, st, id, f);
        }
    }
    let ids: Vec<ConnId> = st.conns.keys().copied().collect();
    for id in ids {
        let Some(c) = st.conns.get_mut(&id) else {
            continue;
        };
        let _ = c.out.flush(&mut *c.stream);
        if c.closing {
            services.forget(st, id);
        }
    }
    st.dirty.clear();
}
