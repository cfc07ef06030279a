//! The server's settings.

use super::persist::policy::Durability;
use crate::transport::{Address, TlsFiles};
use std::path::PathBuf;
use std::time::Duration;

/// Server settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Addresses to listen on.
    pub listen: Vec<Address>,
    /// File mode of unix socket files.
    pub socket_mode: u32,
    /// Largest frame (JSON + payload) accepted, in bytes.
    pub max_message: u64,
    /// Largest total of queued, unsynced bytes per client.
    pub max_queue: u64,
    /// Most watch events queued for one client that has not read them
    /// (`--watch-queue-events`); past it (or `watch_queue_bytes`) its
    /// watches stop receiving events and get a `lost` one (see `watch`).
    pub watch_queue_events: u64,
    /// Most bytes of watch events queued for one client that has not read
    /// them (`--watch-queue-bytes`).
    pub watch_queue_bytes: u64,
    /// Browser origins allowed on `ws:` listeners; empty allows all.
    pub ws_origins: Vec<String>,
    /// Stop once no client has been connected for this long.
    pub exit_when_idle: Option<Duration>,
    /// How long to poll without blocking after serving traffic (see
    /// [`super::busy_poll`]); zero always sleeps.
    pub busy_poll: Duration,
    /// Most shared-memory messages one client may have in the broker at
    /// once, queued or delivered and not yet released: each holds a file
    /// descriptor, which is what the broker would run out of first.
    pub max_shm_in_flight: usize,
    /// Lets every client use the admin commands (`inspect`, `stats`,
    /// `monitor`); without it only clients of the same user on a unix
    /// socket may.
    pub admin: bool,
    /// Persist shares and tuple spaces here (`--data-dir`); None keeps
    /// them in memory only.
    pub durability: Option<Durability>,
    /// Registers `_test_panic`, a command whose handler panics, so tests can
    /// check that a panic while handling one request closes only that
    /// client. The `dime` binary never sets it.
    #[doc(hidden)]
    pub test_panic_command: bool,
    /// Certificate and key of `tls:`/`wss:` listeners (reloaded on SIGHUP).
    pub tls: Option<TlsFiles>,
    /// The `--auth` file: tokens, users and roles (reloaded on SIGHUP).
    /// None: every client may do everything.
    pub auth_file: Option<PathBuf>,
    /// Listeners where clients without credentials get in, with these
    /// roles (from the auth file).
    pub anonymous: Vec<(Address, Vec<String>)>,
    /// Allow a listener on a non-loopback address without TLS or without
    /// `--auth` (see `exposure`).
    pub insecure: bool,
    /// Most connections from one IP address or unix user; 0: no limit.
    pub max_conns_per_peer: usize,
    /// Most groups one client may be in; 0: no limit.
    pub max_groups: usize,
    /// Longest name (group, share, tuple space, function) in bytes; 0: no limit.
    pub max_name: usize,
    /// How long a connection may take to finish its TLS or WebSocket
    /// handshake, and, under `--auth`, to authenticate.
    pub handshake_timeout: Duration,
    /// How long the payload of a message relayed while it arrives
    /// (cut-through) may go without a byte arriving before the broker
    /// gives up on it (`--cut-through-stall-ms`): its recipients drop it
    /// and its sender is told. Bounds how long such a message can hold up
    /// a recipient's sync reply.
    pub cut_through_stall: Duration,
    /// When set, every request frame is appended, as received, to a file
    /// per connection in this directory: real traffic to seed the fuzzers
    /// (`fuzz/make-corpus`). Defaults to `$DIME_CAPTURE_DIR`.
    #[doc(hidden)]
    pub capture_dir: Option<PathBuf>,
}

/// Default of [`Config::max_conns_per_peer`].
pub const DEFAULT_MAX_CONNS_PER_PEER: usize = 4096;
/// Default of [`Config::max_groups`].
pub const DEFAULT_MAX_GROUPS: usize = 4096;
/// Default of [`Config::max_name`].
pub const DEFAULT_MAX_NAME: usize = 4096;
/// Default of [`Config::handshake_timeout`]: a handshake takes a round
/// trip or two; a peer silent this long is gone or hostile.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Default of [`Config::cut_through_stall`]: a sender that is writing
/// pauses for milliseconds (a full socket, a busy core), not seconds.
pub const DEFAULT_CUT_THROUGH_STALL: Duration = Duration::from_secs(5);

/// Default busy-poll window: longer than a typical client's turnaround
/// between a reply and its next request (about 20 µs measured), shorter
/// than a wake-up saves.
pub const DEFAULT_BUSY_POLL: Duration = Duration::from_micros(50);

/// Default `watch_queue_events`: ten times a feed's history, so a watcher
/// that reads, even slowly, is not cut by a burst of writes.
pub const DEFAULT_WATCH_QUEUE_EVENTS: u64 = 100_000;

/// Default `watch_queue_bytes`: as much as a feed's history keeps of values.
pub const DEFAULT_WATCH_QUEUE_BYTES: u64 = 64 << 20;

/// Default unix socket path.
pub const DEFAULT_SOCKET: &str = "/tmp/dime.sock";

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: vec![Address::Unix(DEFAULT_SOCKET.into())],
            socket_mode: 0o600,
            max_message: 4 << 30,
            max_queue: 8 << 30,
            watch_queue_events: DEFAULT_WATCH_QUEUE_EVENTS,
            watch_queue_bytes: DEFAULT_WATCH_QUEUE_BYTES,
            ws_origins: Vec::new(),
            exit_when_idle: None,
            busy_poll: DEFAULT_BUSY_POLL,
            max_shm_in_flight: 4096,
            admin: false,
            durability: None,
            test_panic_command: false,
            tls: None,
            auth_file: None,
            anonymous: Vec::new(),
            insecure: false,
            max_conns_per_peer: DEFAULT_MAX_CONNS_PER_PEER,
            max_groups: DEFAULT_MAX_GROUPS,
            max_name: DEFAULT_MAX_NAME,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            cut_through_stall: DEFAULT_CUT_THROUGH_STALL,
            capture_dir: std::env::var_os("DIME_CAPTURE_DIR").map(PathBuf::from),
        }
    }
}
