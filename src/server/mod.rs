//! The broker: one single-threaded event loop on the `polling` crate
//! serving every listener and connection.

//!
//! Layers, each using only those below it (no module imports one above):
//! the event loop here → [`dispatch`] (the service registry) → `services/`
//! (one module per service, on the [`service`] seam) → the shared
//! machinery: `blocking`, `request`, `state`, `conn`, `outqueue`.
//! `docs/architecture.md` walks through it.

mod admin;
mod admission;
pub mod auth;
mod blocking;
pub mod busy_poll;
mod config;
mod conn;
mod convert;
mod dispatch;
mod exposure;
#[doc(hidden)]
pub mod fuzzing;
pub mod local;
mod outqueue;
pub mod persist;
mod quick_poll;
mod request;
mod service;
mod services;
mod state;
mod stats;
mod watch;
mod watch_queue;

use crate::transport::{Listener, ReadWithFds, WsOptions, tls};
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
    Config, DEFAULT_BUSY_POLL, DEFAULT_CUT_THROUGH_STALL, DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_MAX_CONNS_PER_PEER, DEFAULT_MAX_GROUPS, DEFAULT_MAX_NAME, DEFAULT_SOCKET,
    DEFAULT_WATCH_QUEUE_BYTES, DEFAULT_WATCH_QUEUE_EVENTS,
};
pub use persist::{Durability, FsyncPolicy};
pub use watch::HISTORY_EVENTS as WATCH_HISTORY_EVENTS;

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
/// Descriptors a connection may have sent ahead of the frames announcing
/// them; more means the two streams no longer match.
const MAX_UNCLAIMED_FDS: usize = 64;
/// The smallest payload a `send` or `broadcast` may be relayed while it
/// arrives (cut-through, `services::messaging::cut`): below it, waiting
/// for the whole frame costs less than the bookkeeping.
const CUT_THROUGH_MIN: usize = 1 << 20;
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
    /// The busy-poll window's one-system-call polls, and the sources
    /// ready in this turn of the loop (from either kind of poll).
    quick: quick_poll::QuickPoll,
    ready: Vec<quick_poll::Ready>,
    /// Why the loop must stop: the log could not be written with fsync
    /// `always`, so nothing more may be acknowledged.
    fatal: Option<io::Error>,
    /// Replies of in-process providers ([`Server::local_provider`]).
    replies: Arc<local::Replies>,
    /// Ids handed to in-process providers, counting down from the top so
    /// they never meet a connection's.
    next_local: usize,
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
        let mut services = Services::default();
        let journal = match &config.durability {
            Some(d) => Some(recover(d, &mut services)?),
            None => None,
        };
        let mut state = State::new(config, Services::extensions());
        state.journal = journal;
        state.auth = table;
        let replies = Arc::new(local::Replies::new(poller.clone()));
        Ok(Server {
            replies,
            next_local: usize::MAX,
            accept_paused: vec![None; listeners.len()],
            poller,
            listeners,
            signals: None,
            reload_signal: None,
            anonymous,
            deadlines: HandshakeDeadlines::default(),
            state,
            services,
            stop: Arc::new(AtomicBool::new(false)),
            next_key: FIRST_CONN_KEY,
            buffered_input: Vec::new(),
            scratch_frames: Vec::new(),
            scratch_ids: Vec::new(),
            header_text: String::new(),
            busy,
            quick: quick_poll::QuickPoll::default(),
            ready: Vec::new(),
            fatal: None,
        })
    }

    /// The addresses actually bound, in `-l` syntax.
    pub fn local_addrs(&self) -> Vec<String> {
        self.listeners.iter().map(Listener::local_addr).collect()
    }

    /// Provides `functions` from threads of this process: calls for them
    /// go to the returned handle's queue (up to `capacity` of each at
    /// once) instead of through a socket, and replies come back the same
    /// way. For a service that lives in the broker's process (an embedded
    /// file server). Its queue closes when `run` returns.
    pub fn local_provider(&mut self, functions: &[&str], capacity: u32) -> local::LocalProvider {
        let id = self.next_local;
        self.next_local -= 1;
        let queue = Arc::new(local::CallQueue::default());
        self.services
            .rpc
            .add_local(&mut self.state, id, queue.clone(), functions, capacity);
        local::LocalProvider {
            id,
            queue,
            replies: self.replies.clone(),
        }
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
            self.state.notify_freed();
            self.flush_dirty();
            self.maintain_journal();
            events.clear();
            let mut ready = std::mem::take(&mut self.ready);
            ready.clear();
            let spin = self.busy.poll_without_blocking(Instant::now());
            let polled = if self.buffered_input.is_empty() && !spin {
                let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                self.poller.wait(&mut events, timeout).map(|_| {
                    ready.extend(events.iter().map(|e| quick_poll::Ready {
                        key: e.key,
                        readable: e.readable,
                        writable: e.writable,
                    }))
                })
            } else {
                // Not blocking: one system call instead of `wait`'s five.
                self.quick.poll(&self.poller, &mut events, &mut ready)
            };
            match polled {
                Ok(()) if ready.is_empty() && spin => std::thread::yield_now(),
                Ok(()) if ready.is_empty() => {}
                Ok(()) => self.busy.on_events(Instant::now()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    self.ready = ready;
                    continue;
                }
                Err(e) => {
                    self.services.rpc.close_locals();
                    return Err(e);
                }
            }
            let replies = self.replies.take();
            if !replies.is_empty() {
                self.services.rpc.local_replies(&mut self.state, replies);
            }
            for ev in ready.drain(..) {
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
            self.ready = ready;
            for id in std::mem::take(&mut self.buffered_input) {
                self.on_conn_event(id, true, false);
            }
        }
        self.services.rpc.close_locals();
        if let Some(j) = &mut self.state.journal {
            if let Err(e) = j.close() {
                log::error!("cannot write the log on shutdown: {e}");
            }
        }
        match self.fatal.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Ends a finished log rewrite and starts one when the log has grown.
    fn maintain_journal(&mut self) {
        let Some(j) = &mut self.state.journal else {
            return;
        };
        j.poll_rewrite();
        if j.wants_rewrite() {
            let started = Instant::now();
            let images = self.services.images();
            if let Err(e) = j.start_rewrite(images) {
                log::error!("cannot start rewriting the log: {e}");
            }
            log::debug!("log rewrite started in {:?}", started.elapsed());
        }
    }

    /// Writes the changes logged so far before any reply (which may
    /// acknowledge them) leaves. False when replies must not go out: the
    /// log cannot be written under fsync `always`, and the server stops.
    fn sync_journal(&mut self) -> bool {
        let Some(j) = &mut self.state.journal else {
            return true;
        };
        if !j.has_pending() {
            return true;
        }
        match j.barrier() {
            Ok(()) => true,
            Err(e) => {
                log::error!("{e}; stopping");
                self.fatal = Some(e);
                self.stop.store(true, Ordering::SeqCst);
                false
            }
        }
    }

    /// True while replies should wait for the end of the round: with fsync
    /// `always`, one fsync then covers every client served in it.
    fn group_commit(&self) -> bool {
        self.state
            .journal
            .as_ref()
            .is_some_and(|j| j.has_pending() && j.fsync_policy() == FsyncPolicy::Always)
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
        conn.reader.set_cut_through(CUT_THROUGH_MIN);
        conn.peer = conn.stream.peer();
        conn.admin = self.state.config.admin || admin::same_user(&*conn.stream);
        conn.access = access;
        self.state.conns.insert(id, conn);
        self.state.stats.accepted += 1;
        let n = self.state.conns.len();
        self.state.stats.peak_clients = self.state.stats.peak_clients.max(n);
        if must_finish {
            let timeout = self.state.config.handshake_timeout;
            self.deadlines.watch(id, Instant::now() + timeout);
        }
        if let Some(p) = peer {
            match admission::count_peer(&mut self.state, p) {
                Ok(()) => {
                    if let Some(c) = self.state.conns.get_mut(&id) {
                        c.peer_key = Some(p);
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
        if (writable || readable) && self.group_commit() {
            self.state.dirty.insert(id);
        } else if writable || readable {
            // Write now rather than after every other ready client has been
            // served (it halves the median wait under load), and deliver to
            // woken recipients before the requester's own status reply:
            // the recipient is the one on a round trip's critical path.
            self.state.dirty.remove(&id);
            self.flush_dirty();
            self.flush_conn(id);
        }
    }

    /// Reads what is available, then handles each complete frame. True
    /// if it read anything and the connection is still open.
    fn read_conn(&mut self, id: ConnId) -> bool {
        let mut frames = std::mem::take(&mut self.scratch_frames);
        let mut fatal: Option<String> = None;
        let mut eof = false;
        let mut read_any = false;
        {
            let Some(c) = self.state.conns.get_mut(&id) else {
                return false;
            };
            if c.closing {
                return false;
            }
            let mut budget = READ_BUDGET;
            loop {
                let read = if c.fds_in {
                    let mut src = ReadWithFds {
                        transport: &mut *c.stream,
                        fds: &mut c.fds,
                        dontwait: false,
                    };
                    c.reader.read_from(&mut src)
                } else {
                    c.reader.read_from(&mut *c.stream)
                };
                match read {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => {
                        read_any = true;
                        self.state.stats.bytes_in += n as u64;
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
                        Ok(Some(mut f)) => {
                            let cfg = &self.state.config;
                            let limits = (cfg.max_message, cfg.max_shm_in_flight);
                            c.attach_shm(&mut f, id, limits, &self.state.shm_freed);
                            frames.push(f);
                        }
                        Ok(None) => break,
                        Err(e) => {
                            fatal = Some(e.to_string());
                            break;
                        }
                    }
                }
                if c.fds.len() > MAX_UNCLAIMED_FDS {
                    // Descriptors no frame announced: the stream of frames
                    // and the stream of descriptors no longer match.
                    fatal = Some(format!(
                        "More than {MAX_UNCLAIMED_FDS} file descriptors arrived without \
                         shared-memory messages to carry"
                    ));
                    c.fds.clear();
                }
                // A large message's head is routed before its payload is
                // read on (cut-through).
                if fatal.is_some() || budget == 0 || c.reader.has_head_to_offer() {
                    break;
                }
            }
            if eof && c.reader.is_mid_frame() {
                log::info!("client {id} disconnected mid-frame");
            }
        }
        if read_any {
            self.services.messaging.wake_live(&mut self.state, id);
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
        let open = fatal.is_none() && !eof;
        if open {
            self.offer_head(id);
        }
        if let Some(msg) = fatal {
            self.fail_and_close(id, &msg);
        }
        if eof {
            self.close(id);
        }
        read_any && open
    }

    /// Runs what a client that has gone wrote before it went. A write to
    /// it failing says it closed its socket, but the requests it wrote
    /// first may still be there to read (a client that pipelines its sends
    /// may close right after writing them): they run as if it had stayed,
    /// their replies going nowhere, up to the end of its input.
    fn run_leftovers(&mut self, id: ConnId) {
        loop {
            let Some(c) = self.state.conns.get_mut(&id) else {
                return;
            };
            if c.closing {
                return;
            }
            c.out = outqueue::OutQueue::default();
            if !self.read_conn(id) {
                return;
            }
        }
    }

    /// Offers the head of a large frame still arriving for cut-through:
    /// a `send`/`broadcast` that qualifies is relayed now, while its
    /// payload arrives. Only when every earlier request has run, so
    /// requests still take effect in order.
    fn offer_head(&mut self, id: ConnId) {
        let Some(c) = self.state.conns.get_mut(&id) else {
            return;
        };
        let in_order = !c.closing && c.blocked.is_none() && c.deferred.is_empty();
        let Some(json) = c.reader.offer_head() else {
            return;
        };
        let Some(text) = std::str::from_utf8(json).ok().filter(|_| in_order) else {
            return;
        };
        self.header_text.clear();
        self.header_text.push_str(text);
        let payload_len = c.reader.pending_payload_len();
        let (services, state, text) = (&mut self.services, &mut self.state, &self.header_text);
        // Under `catch_unwind` as every request is (see `handle_frame`).
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
            let Some(route) = services.messaging.route_live(state, id, text, payload_len) else {
                return;
            };
            let frame = state.conns.get_mut(&id).and_then(|c| c.reader.go_live());
            if let Some(frame) = frame {
                services.messaging.begin_live(state, id, route, frame);
            }
        }));
        self.closed_on_panic(id, "relaying a message as it arrives", outcome);
    }

    /// Closes `id` if relaying its message panicked (`outcome`): the state
    /// that message left half-changed is its own; everyone else carries on.
    fn closed_on_panic(&mut self, id: ConnId, doing: &str, outcome: std::thread::Result<()>) {
        if let Err(payload) = outcome {
            let why = panic_message(&*payload);
            log::error!("client {id}: internal error {doing}: {why}");
            self.fail_and_close(
                id,
                &format!("Internal server error while {doing}; closing this connection"),
            );
        }
    }

    /// Runs one request. Whatever is wrong with its header, the frame
    /// arrived whole and the next one starts right after it, so a bad
    /// header is an error reply and the connection carries on (as the
    /// original server does for bad fields); only a broken frame closes it.
    fn handle_frame(&mut self, id: ConnId, frame: Frame) {
        // The end of a message already relayed while it arrived.
        if frame.live.is_some() {
            let (services, state) = (&mut self.services, &mut self.state);
            let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
                services.messaging.finish_live(state, id);
            }));
            self.closed_on_panic(id, "relaying a message as it arrives", outcome);
            return;
        }
        if let Some(dir) = &self.state.config.capture_dir {
            capture(dir, id, &frame);
        }
        if let Some(Err(msg)) = &frame.shm {
            self.state.reply_error(id, msg);
            return;
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
        let started = Instant::now();
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
            if test_panic {
                return Some(dispatch::test_panic());
            }
            // Services first: a client yet to authenticate is refused
            // there, admin commands included (no service has them).
            services
                .dispatch(state, id, &command, text, frame)
                .or_else(|| admin::dispatch(services, state, id, &command, text))
        }));
        // A segment this request freed (a release, a failed send) is
        // announced before anything the request itself sends on: a sender
        // waiting for a recipient's acknowledgement hears first that it
        // may reuse its segment.
        self.state.notify_freed();
        let name = Services::known(&command)
            .or_else(|| admin::COMMANDS.iter().copied().find(|c| *c == command));
        let failed = !matches!(outcome, Ok(Some(Ok(()))));
        self.state.stats.request(name, started.elapsed(), failed);
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
        // Nothing more is read from it: a message it was in the middle of
        // will never be whole.
        self.services.messaging.abort_live(&mut self.state, id);
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
        if !self.sync_journal() {
            return;
        }
        let Some(c) = self.state.conns.get_mut(&id) else {
            return;
        };
        // A transport may keep back output it accepted (WebSocket);
        // the connection is only flushed once that is written too.
        let before = c.out.pending();
        let flushed = c.out.flush(&mut *c.stream).and_then(|done| {
            if done {
                c.stream.flush_buffered()
            } else {
                Ok(false)
            }
        });
        c.hold_delivered();
        self.state.stats.bytes_out += (before - c.out.pending()) as u64;
        let done = match flushed {
            Ok(done) => done,
            Err(e) => {
                log::info!("client {id}: write error: {e}");
                if matches!(
                    e.kind(),
                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                ) {
                    self.run_leftovers(id);
                }
                self.close(id);
                return;
            }
        };
        if c.closing && done {
            self.close(id);
            return;
        }
        let mut done = done;
        if c.watches_behind && !c.closing {
            // Watches that fell behind go on once their client has read
            // enough (see `watch`); what they queue now is written when the
            // socket next has room.
            c.watch_queue.settle(c.out.written());
            if c.watch_queue
                .has_room(watch::queue_limit(&self.state.config))
            {
                let behind = self.services.drained(&mut self.state, id);
                let Some(again) = self.state.conns.get_mut(&id) else {
                    return;
                };
                again.watches_behind = behind;
                done &= again.out.pending() == 0;
            }
        }
        let Some(c) = self.state.conns.get_mut(&id) else {
            return;
        };
        let read = !c.closing && c.backlog() < BACKLOG_HIGH;
        if read && c.stream.has_buffered_input() {
            self.buffered_input.push(id);
        }
        // Output waiting for a payload to arrive is written when its
        // sender's bytes are read (`wake_live`), not when the socket is.
        let write = !done && !c.out.stalled();
        if c.armed == (read, write) {
            return;
        }
        c.armed = (read, write);
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
        // A server dropped without running still releases its providers' workers.
        self.services.rpc.close_locals();
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

/// Opens the data directory and loads what it holds into the services.
fn recover(d: &Durability, services: &mut Services) -> io::Result<persist::Journal> {
    let started = Instant::now();
    let mut scratch = State::new(Config::default(), Vec::new());
    let mut records = 0u64;
    let journal = persist::Journal::open(d, &mut |item| {
        records += u64::from(matches!(item, persist::Loaded::Record(..)));
        services.load(&mut scratch, item)
    })?;
    log::info!(
        "loaded {} ({records} log records) in {:?}",
        d.dir.display(),
        started.elapsed()
    );
    Ok(journal)
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
