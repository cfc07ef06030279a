//! The broker: one single-threaded event loop on the `polling` crate
//! serving every listener and connection.

//!
//! Layers, each using only those below it (no module imports one above):
//! the event loop here → [`dispatch`] (the service registry) → `services/`
//! (one module per service, on the [`service`] seam) → the shared
//! machinery: `blocking`, `request`, `state`, `conn`, `outqueue`.
//! `docs/architecture.md` walks through it.

mod admission;
pub mod auth;
mod blocking;
pub mod busy_poll;
mod config;
mod conn;
mod dispatch;
mod exposure;
#[doc(hidden)]
pub mod fuzzing;
mod outqueue;
mod request;
mod service;
mod services;
mod state;

use crate::transport::{Listener, WsOptions, tls};
use crate::wire::Frame;
use admission::HandshakeDeadlines;
use auth::{AuthTable, Principal};
use conn::ConnId;
use conn::Connection;
use dispatch::Services;
use polling::{Event, Events, PollMode, Poller};
use state::State;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub use admission::parse_listen;
pub use config::{
    Config, DEFAULT_BUSY_POLL, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_CONNS_PER_PEER,
    DEFAULT_MAX_GROUPS, DEFAULT_MAX_NAME, DEFAULT_SOCKET,
};

/// Listener keys are their index; connection keys start above them.
const FIRST_CONN_KEY: usize = 1 << 16;
/// Key of the signal pipe.
const SIGNAL_KEY: usize = FIRST_CONN_KEY - 1;
/// Key of the reload (SIGHUP) pipe.
const RELOAD_KEY: usize = FIRST_CONN_KEY - 2;
/// Stop reading a client's requests while this much output awaits it.
const BACKLOG_HIGH: usize = 16 << 20;
/// Bytes read from one connection per event before serving others.
const READ_BUDGET: usize = 8 << 20;
/// Pause before retrying accept after an error such as EMFILE.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Stops a running server from another thread.
#[derive(Clone)]
pub struct ShutdownHandle {
    stop: Arc<AtomicBool>,
    poller: Arc<Poller>,
}

impl ShutdownHandle {
    /// Asks the loop to stop; `run` returns soon after.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.poller.notify();
    }
}

/// A bound server, ready to run.
pub struct Server {
    poller: Arc<Poller>,
    listeners: Vec<Listener>,
    accept_paused: Vec<Option<Instant>>,
    signals: Option<UnixStream>,
    /// Written on SIGHUP: reload certificates and the auth file.
    reload_signal: Option<UnixStream>,
    /// Each listener's anonymous clients, if it lets any in (`--auth`).
    anonymous: Vec<Option<Arc<Principal>>>,
    /// Connections that must finish their handshakes in time.
    deadlines: HandshakeDeadlines,
    state: State,
    /// Every service's data, and the routing of requests to them.
    services: Services,
    stop: Arc<AtomicBool>,
    next_key: usize,
    /// Connections whose transport already holds input that no readable
    /// event will announce (WebSocket); read again before sleeping.
    buffered_input: Vec<ConnId>,
    /// Reused per read and per flush round, so the hot path does not allocate.
    scratch_frames: Vec<Frame>,
    scratch_ids: Vec<ConnId>,
    /// The text of the header being handled, reused from request to request.
    header_text: String,
    busy: busy_poll::BusyPoll,
}

impl Server {
    /// Binds every listener in `config`, after checking that no network
    /// listener is left open without TLS and authentication (unless
    /// `insecure`) and loading the certificates and the auth file.
    pub fn bind(config: Config) -> io::Result<Server> {
        exposure::check(&config)?;
        let tls_config = config.tls.as_ref().map(tls::server_config).transpose()?;
        let table = load_auth(&config)?;
        let anonymous = admission::anonymous_principals(&config, table.as_deref())?;
        let poller = Arc::new(Poller::new()?);
        let mut listeners = Vec::new();
        let ws = WsOptions {
            max_message: config.max_message,
            origins: config.ws_origins.clone(),
        };
        for addr in &config.listen {
            let l = Listener::bind(addr, config.socket_mode, &ws, tls_config.as_ref())?;
            // SAFETY: the listener is deleted from the poller in Drop before it closes.
            unsafe { poller.add(l.as_raw_fd(), Event::readable(listeners.len()))? };
            listeners.push(l);
        }
        let busy = busy_poll::BusyPoll::new(config.busy_poll);
        let mut state = State::new(config, Services::extensions());
        state.auth = table;
        Ok(Server {
            accept_paused: vec![None; listeners.len()],
            poller,
            listeners,
            signals: None,
            reload_signal: None,
            anonymous,
            deadlines: HandshakeDeadlines::default(),
            state,
            services: Services::default(),
            stop: Arc::new(AtomicBool::new(false)),
            next_key: FIRST_CONN_KEY,
            buffered_input: Vec::new(),
            scratch_frames: Vec::new(),
            scratch_ids: Vec::new(),
            header_text: String::new(),
            busy,
        })
    }

    /// The addresses actually bound, in `-l` syntax.
    pub fn local_addrs(&self) -> Vec<String> {
        self.listeners.iter().map(Listener::local_addr).collect()
    }

    /// A handle that stops `run` from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            stop: self.stop.clone(),
            poller: self.poller.clone(),
        }
    }

    /// Makes SIGINT and SIGTERM stop the loop cleanly, and SIGHUP reload
    /// the certificates and the auth file ([`Server::reload`]).
    pub fn stop_on_signals(&mut self) -> io::Result<()> {
        let (rx, tx) = UnixStream::pair()?;
        rx.set_nonblocking(true)?;
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::low_level::pipe::register(sig, tx.try_clone()?)?;
        }
        // SAFETY: deleted from the poller in Drop before it closes.
        unsafe {
            self.poller
                .add(rx.as_raw_fd(), Event::readable(SIGNAL_KEY))?
        };
        self.signals = Some(rx);
        let (rx, tx) = UnixStream::pair()?;
        rx.set_nonblocking(true)?;
        signal_hook::low_level::pipe::register(signal_hook::consts::SIGHUP, tx)?;
        // SAFETY: deleted from the poller in Drop before it closes.
        unsafe {
            self.poller
                .add(rx.as_raw_fd(), Event::readable(RELOAD_KEY))?
        };
        self.reload_signal = Some(rx);
        Ok(())
    }

    /// Reads the certificates and the auth file again. New connections
    /// get the new certificate; open ones keep their sessions. Connected
    /// users get their new roles; those whose token or uid is gone from
    /// the file are disconnected. A file that fails to load changes
    /// nothing (the error is returned, and logged by the loop).
    pub fn reload(&mut self) -> io::Result<()> {
        let tls_config = self
            .state
            .config
            .tls
            .as_ref()
            .map(tls::server_config)
            .transpose()?;
        let table = load_auth(&self.state.config)?;
        let anonymous = admission::anonymous_principals(&self.state.config, table.as_deref())?;
        if let Some(c) = &tls_config {
            for l in &mut self.listeners {
                l.set_tls_config(c);
            }
            log::info!("certificates reloaded");
        }
        if let Some(table) = &table {
            self.anonymous = anonymous;
            for id in admission::recheck(&mut self.state, table, &self.anonymous) {
                log::info!("client {id}: its credentials were revoked; disconnecting");
                self.close(id);
            }
            self.state.auth = Some(table.clone());
            log::info!("auth file reloaded");
        }
        Ok(())
    }

    /// Serves until shut down by a signal or a [`ShutdownHandle`].
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::new();
        let mut idle_since = Instant::now();
        let mut had_clients = false;
        while !self.stop.load(Ordering::SeqCst) {
            let now = Instant::now();
            let mut deadline = self.services.expire(&mut self.state, now);
            if let Some(idle) = self.state.config.exit_when_idle {
                // The clock restarts when the last client leaves.
                let has_clients = !self.state.conns.is_empty();
                if has_clients || had_clients {
                    idle_since = now;
                }
                had_clients = has_clients;
                // An idle time past the clock's range never ends.
                if let (false, Some(t)) = (has_clients, idle_since.checked_add(idle)) {
                    if now >= t {
                        log::info!("no clients for {idle:?}; exiting");
                        break;
                    }
                    deadline = Some(deadline.map_or(t, |d| d.min(t)));
                }
            }
            let (late, next) = self.deadlines.expired(&self.state, now);
            for id in late {
                log::info!("client {id}: handshake not finished in time; disconnecting");
                self.close(id);
            }
            if let Some(t) = next {
                deadline = Some(deadline.map_or(t, |d| d.min(t)));
            }
            for (i, paused) in self.accept_paused.iter_mut().enumerate() {
                if let Some(t) = *paused {
                    if t <= now {
                        *paused = None;
                        self.poller
                            .modify(self.listeners[i].as_raw_fd_borrowed(), Event::readable(i))?;
                    } else {
                        deadline = Some(deadline.map_or(t, |d| d.min(t)));
                    }
                }
            }
            self.resume_deferred();
            self.flush_dirty();
            events.clear();
            let spin = self.busy.poll_without_blocking(Instant::now());
            let timeout = if self.buffered_input.is_empty() && !spin {
                deadline.map(|d| d.saturating_duration_since(Instant::now()))
            } else {
                Some(Duration::ZERO)
            };
            match self.poller.wait(&mut events, timeout) {
                Ok(0) if spin => std::thread::yield_now(),
                Ok(0) => {}
                Ok(_) => self.busy.on_events(Instant::now()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for ev in events.iter() {
                match ev.key {
                    SIGNAL_KEY => {
                        log::info!("signal received; shutting down");
                        self.stop.store(true, Ordering::SeqCst);
                    }
                    RELOAD_KEY => {
                        if let Some(s) = &self.reload_signal {
                            let mut drain = [0u8; 64];
                            while matches!(io::Read::read(&mut &*s, &mut drain), Ok(n) if n > 0) {}
                            // Sources other than connections are oneshot.
                            let _ = self
                                .poller
                                .modify(s.as_raw_fd_borrowed(), Event::readable(RELOAD_KEY));
                        }
                        match self.reload() {
                            Ok(()) => {}
                            Err(e) => log::error!("reload failed, keeping the old settings: {e}"),
                        }
                    }
                    k if k < self.listeners.len() => self.accept(k),
                    k => self.on_conn_event(k, ev.readable, ev.writable),
                }
            }
            for id in std::mem::take(&mut self.buffered_input) {
                self.on_conn_event(id, true, false);
            }
        }
        Ok(())
    }

    fn accept(&mut self, idx: usize) {
        loop {
            match self.listeners[idx].accept() {
                Ok(stream) => {
                    let id = self.next_key;
                    self.next_key += 1;
                    // Level-triggered, so no re-arming syscall after each event.
                    // SAFETY: every connection is deleted from the poller before it drops.
                    let added = unsafe {
                        self.poller.add_with_mode(
                            stream.as_raw_fd(),
                            Event::readable(id),
                            PollMode::Level,
                        )
                    };
                    if let Err(e) = added {
                        log::warn!("cannot watch new connection: {e}");
                        continue;
                    }
                    log::info!("client {id} connected ({})", stream.peer());
                    self.admit(idx, id, stream);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                Err(e) => {
                    log::warn!(
                        "accept on {} failed: {e}; retrying shortly",
                        self.listeners[idx].local_addr()
                    );
                    self.accept_paused[idx] = Some(Instant::now() + ACCEPT_RETRY);
                    return;
                }
            }
        }
        if let Err(e) = self.poller.modify(
            self.listeners[idx].as_raw_fd_borrowed(),
            Event::readable(idx),
        ) {
            log::error!("cannot re-arm listener: {e}");
        }
    }

    /// Registers a new connection with the access it starts with; one
    /// over its peer's connection limit is told so and closed.
    fn admit(&mut self, listener: usize, id: ConnId, stream: Box<dyn crate::transport::Transport>) {
        let access = admission::initial_access(
            self.state.auth.as_deref(),
            &*stream,
            self.anonymous.get(listener).and_then(Option::as_ref),
        );
        let peer = admission::peer_key(&*stream);
        let must_finish = !stream.handshake_done() || matches!(access, auth::Access::Pending);
        let mut conn = Connection::new(stream, self.state.config.max_message);
        conn.access = access;
        self.state.conns.insert(id, conn);
        if must_finish {
            let timeout = self.state.config.handshake_timeout;
            self.deadlines.watch(id, Instant::now() + timeout);
        }
        if let Some(p) = peer {
            match admission::count_peer(&mut self.state, p) {
                Ok(()) => {
                    if let Some(c) = self.state.conns.get_mut(&id) {
                        c.peer = Some(p);
                    }
                }
                Err(msg) => {
                    log::warn!("client {id}: {msg}");
                    self.state.fail_and_close(id, &msg, false);
                }
            }
        }
    }

    fn on_conn_event(&mut self, id: ConnId, readable: bool, writable: bool) {
        if readable {
            self.read_conn(id);
        }
        if writable || readable {
            // Write now rather than after every other ready client has been
            // served (it halves the median wait under load), and deliver to
            // woken recipients before the requester's own status reply:
            // the recipient is the one on a round trip's critical path.
            self.state.dirty.remove(&id);
            self.flush_dirty();
            self.flush_conn(id);
        }
    }

    /// Reads what is available, then handles each complete frame.
    fn read_conn(&mut self, id: ConnId) {
        let mut frames = std::mem::take(&mut self.scratch_frames);
        let mut fatal: Option<String> = None;
        let mut eof = false;
        {
            let Some(c) = self.state.conns.get_mut(&id) else {
                return;
            };
            if c.closing {
                return;
            }
            let mut budget = READ_BUDGET;
            loop {
                match c.reader.read_from(&mut *c.stream) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => {
                        budget = budget.saturating_sub(n);
                        // A short read drained the socket: skip the read that
                        // would only say EAGAIN (level-triggered polling
                        // reports anything that arrives later).
                        if !c.reader.last_read_was_full(n) {
                            budget = 0;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        log::info!("client {id}: read error: {e}");
                        eof = true;
                        break;
                    }
                }
                loop {
                    match c.reader.next_frame() {
                        Ok(Some(f)) => frames.push(f),
                        Ok(None) => break,
                        Err(e) => {
                            fatal = Some(e.to_string());
                            break;
                        }
                    }
                }
                if fatal.is_some() || budget == 0 {
                    break;
                }
            }
            if eof && c.reader.is_mid_frame() {
                log::info!("client {id} disconnected mid-frame");
            }
        }
        for f in frames.drain(..) {
            match self.state.conns.get_mut(&id) {
                None => break,
                Some(c) if c.closing => break,
                // Replies stay in request order: wait behind a blocked request.
                Some(c) if c.blocked.is_some() || !c.deferred.is_empty() => c.deferred.push_back(f),
                Some(_) => self.handle_frame(id, f),
            }
        }
        frames.clear();
        self.scratch_frames = frames;
        if let Some(msg) = fatal {
            self.fail_and_close(id, &msg);
        }
        if eof {
            self.close(id);
        }
    }

    /// Runs one request. Whatever is wrong with its header, the frame
    /// arrived whole and the next one starts right after it, so a bad
    /// header is an error reply and the connection carries on (as the
    /// original server does for bad fields); only a broken frame closes it.
    fn handle_frame(&mut self, id: ConnId, frame: Frame) {
        if let Some(dir) = &self.state.config.capture_dir {
            capture(dir, id, &frame);
        }
        // Parsed from a reused copy: the handler takes the frame itself.
        self.header_text.clear();
        match std::str::from_utf8(frame.json()) {
            Ok(text) => self.header_text.push_str(text),
            Err(e) => {
                self.state
                    .reply_error(id, &format!("JSON parsing error: {e}"));
                return;
            }
        }
        let header = match request::parse::<request::CommandHeader>(&self.header_text) {
            Ok(h) => h,
            Err(e) => {
                self.state
                    .reply_error(id, &format!("JSON parsing error: {e}"));
                return;
            }
        };
        let Some(command) = header.name() else {
            self.state.reply_error(id, "Unknown command");
            return;
        };
        log::debug!("client {id}: {command}");
        let test_panic = self.state.config.test_panic_command && command == "_test_panic";
        // Defence in depth: the loop is one thread, so a bug that panics
        // on one client's request must not take every client down with it.
        // The state a handler left half-changed belongs to that request;
        // its client is closed, everyone else carries on.
        let (services, state, text) = (&mut self.services, &mut self.state, &self.header_text);
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
            if test_panic {
                return Some(dispatch::test_panic());
            }
            services.dispatch(state, id, &command, text, frame)
        }));
        match outcome {
            Ok(Some(Ok(()))) => {}
            Ok(Some(Err(e))) => self.state.reply(id, e.reply()),
            Ok(None) => self
                .state
                .reply_error(id, &format!("Unknown command: {command}")),
            Err(payload) => {
                let why = panic_message(&*payload);
                log::error!("client {id}: internal error handling '{command}': {why}");
                self.fail_and_close(
                    id,
                    &format!(
                        "Internal server error while handling '{command}'; closing this connection"
                    ),
                );
            }
        }
    }

    /// Runs requests that arrived while their client was blocked, until it
    /// blocks again or none are left.
    fn resume_deferred(&mut self) {
        while let Some(id) = self.state.resume.pop() {
            while let Some(c) = self.state.conns.get_mut(&id) {
                if c.blocked.is_some() || c.closing {
                    break;
                }
                let Some(f) = c.deferred.pop_front() else {
                    break;
                };
                self.handle_frame(id, f);
            }
        }
    }

    /// Replies with an error, then closes once the reply is written: for a
    /// broken frame (the stream can no longer be parsed) or a handler panic.
    fn fail_and_close(&mut self, id: ConnId, msg: &str) {
        log::info!("client {id}: {msg}; closing");
        self.state.fail_and_close(id, msg, false);
    }

    fn close(&mut self, id: ConnId) {
        if let Some(c) = self.services.forget(&mut self.state, id) {
            let _ = self.poller.delete(c.stream.as_raw_fd_borrowed());
            log::info!("client {id} disconnected");
        }
    }

    /// Writes pending output and re-arms interest for touched connections.
    fn flush_dirty(&mut self) {
        if self.state.dirty.is_empty() {
            return;
        }
        let mut ids = std::mem::take(&mut self.scratch_ids);
        ids.extend(self.state.dirty.drain());
        for &id in &ids {
            self.flush_conn(id);
        }
        ids.clear();
        self.scratch_ids = ids;
    }

    /// Writes one connection's pending output and updates its interest.
    fn flush_conn(&mut self, id: ConnId) {
        let Some(c) = self.state.conns.get_mut(&id) else {
            return;
        };
        // A transport may keep back output it accepted (WebSocket);
        // the connection is only flushed once that is written too.
        let flushed = c.out.flush(&mut *c.stream).and_then(|done| {
            if done {
                c.stream.flush_buffered()
            } else {
                Ok(false)
            }
        });
        let done = match flushed {
            Ok(done) => done,
            Err(e) => {
                log::info!("client {id}: write error: {e}");
                self.close(id);
                return;
            }
        };
        if c.closing && done {
            self.close(id);
            return;
        }
        let read = !c.closing && c.backlog() < BACKLOG_HIGH;
        if read && c.stream.has_buffered_input() {
            self.buffered_input.push(id);
        }
        if c.armed == (read, !done) {
            return;
        }
        c.armed = (read, !done);
        let interest = match c.armed {
            (true, true) => Event::all(id),
            (true, false) => Event::readable(id),
            (false, true) => Event::writable(id),
            (false, false) => Event::none(id),
        };
        let fd = c.stream.as_raw_fd_borrowed();
        if let Err(e) = self.poller.modify_with_mode(fd, interest, PollMode::Level) {
            log::warn!("client {id}: cannot re-arm: {e}");
            self.close(id);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        for l in &self.listeners {
            let _ = self.poller.delete(l.as_raw_fd_borrowed());
        }
        for s in [&self.signals, &self.reload_signal].into_iter().flatten() {
            let _ = self.poller.delete(s.as_raw_fd_borrowed());
        }
        let ids: Vec<ConnId> = self.state.conns.keys().copied().collect();
        for id in ids {
            self.close(id);
        }
    }
}

/// Appends `frame` as it came on the wire to connection `id`'s capture file.
fn capture(dir: &std::path::Path, id: ConnId, frame: &Frame) {
    use std::io::Write;
    let path = dir.join(format!("{}-{id}.dime", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path);
    if let Ok(mut f) = file {
        let head = crate::wire::encode_head(frame.json(), frame.payload.len());
        let _ = f
            .write_all(&head)
            .and_then(|()| f.write_all(&frame.payload));
    }
}

/// The auth file of `config`, loaded; None without `--auth`.
fn load_auth(config: &Config) -> io::Result<Option<Arc<AuthTable>>> {
    config
        .auth_file
        .as_deref()
        .map(|p| {
            AuthTable::load(p)
                .map(Arc::new)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
        })
        .transpose()
}

/// The text a panic was raised with, if it has one.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(no message)"
    }
}

/// Borrows any raw-fd owner as a `BorrowedFd` for the poller.
trait AsFdBorrowed {
    fn as_raw_fd_borrowed(&self) -> BorrowedFd<'_>;
}

impl<T: AsRawFd + ?Sized> AsFdBorrowed for T {
    fn as_raw_fd_borrowed(&self) -> BorrowedFd<'_> {
        // SAFETY: the fd is owned by `self`, which outlives the borrow.
        unsafe { BorrowedFd::borrow_raw(self.as_raw_fd()) }
    }
}
