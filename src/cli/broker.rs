//! `dime` / `dime serve`: the broker.

use clap::{ArgAction, Args};
use dime::server::{
    Config, DEFAULT_CUT_THROUGH_STALL, DEFAULT_MAX_CONNS_PER_PEER, DEFAULT_MAX_GROUPS,
    DEFAULT_MAX_NAME, Durability, FsyncPolicy, Server, parse_listen,
};
use dime::transport::{Address, TlsFiles};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// The broker's options.
#[derive(Args, Debug)]
pub struct BrokerArgs {
    /// Listen on an address: unix:PATH, ipc:PATH, tcp:PORT (binds 127.0.0.1),
    /// tcp:HOST:PORT, ws:PORT (WebSocket, binds 127.0.0.1), ws:HOST:PORT,
    /// and with TLS (--tls-cert, --tls-key) tls:[HOST:]PORT and
    /// wss:[HOST:]PORT. Repeat for several. Under --auth, append
    /// ",anonymous=ROLE[+ROLE…]" to let clients without credentials in
    /// there with those roles. Default: unix:/tmp/dime.sock
    #[arg(short = 'l', long = "listen", value_name = "ADDRESS", value_parser = parse_listen)]
    listen: Vec<(Address, Option<Vec<String>>)>,

    /// The server's certificate chain (PEM) for tls: and wss: listeners;
    /// re-read on SIGHUP.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --tls-cert; re-read on SIGHUP.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// Only clients with a certificate signed by this CA (PEM) complete a
    /// TLS handshake.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,

    /// Authenticate clients: a file of "NAME TOKEN ROLE…" lines (TOKEN
    /// uid:N: the local user N on unix sockets) and "role NAME
    /// PERMISSION…" lines; see the README. Re-read on SIGHUP.
    #[arg(long, value_name = "FILE")]
    auth: Option<PathBuf>,

    /// Listen on addresses other than loopback without TLS or without
    /// --auth (otherwise the server refuses to start).
    #[arg(long)]
    insecure: bool,

    /// Most connections from one IP address (or local user on unix
    /// sockets); 0: no limit.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CONNS_PER_PEER)]
    max_conns_per_peer: usize,

    /// Most groups one client may be in; 0: no limit.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_GROUPS)]
    max_groups: usize,

    /// Longest group, share, tuple-space or function name, in bytes; 0: no limit.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_NAME)]
    max_name: usize,

    /// Drop a connection that has not finished its TLS or WebSocket
    /// handshake (or, under --auth, authenticated) after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_seconds)]
    handshake_timeout: Duration,

    /// Give up on a large message relayed while it arrives (cut-through)
    /// when no byte of it has arrived for this many milliseconds: its
    /// recipients drop it, its sender gets an error reply, and the rest of
    /// its bytes are discarded. Bounds how long a stalled sender can hold
    /// up a recipient's sync.
    #[arg(long, value_name = "MS", default_value_t = DEFAULT_CUT_THROUGH_STALL.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    cut_through_stall_ms: u64,

    /// More logging on stderr (-v, -vv, -vvv).
    #[arg(short = 'v', action = ArgAction::Count)]
    verbose: u8,

    /// File mode of unix socket files, in octal.
    #[arg(long, value_name = "OCTAL", default_value = "600", value_parser = parse_octal)]
    socket_mode: u32,

    /// Largest message (JSON header + payload) accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 4 << 30)]
    max_message: u64,

    /// Largest total of unsynced bytes queued for one client.
    #[arg(long, value_name = "BYTES", default_value_t = 8 << 30)]
    max_queue: u64,

    /// Most change events (watches) queued for one client that is not
    /// reading them. Past this or --watch-queue-bytes, its watch falls
    /// behind: no more events are queued for it until the client has read
    /// its queue down to half; then it catches up from the broker's
    /// history, or, if the history has moved past it, gets one "lost"
    /// event (re-read the state). Writers are never slowed, and the
    /// client's replies and messages are never dropped.
    #[arg(long, value_name = "N", default_value_t = dime::server::DEFAULT_WATCH_QUEUE_EVENTS,
          value_parser = clap::value_parser!(u64).range(1..))]
    watch_queue_events: u64,

    /// Most bytes of change events queued for one client that is not
    /// reading them (see --watch-queue-events). An event is always queued
    /// when nothing else is, however large.
    #[arg(long, value_name = "BYTES", default_value_t = dime::server::DEFAULT_WATCH_QUEUE_BYTES)]
    watch_queue_bytes: u64,

    /// Allow browser pages from this origin (e.g. http://localhost:8000) on
    /// ws: listeners; repeat for several. Without it every origin may
    /// connect. Clients that send no Origin header (non-browsers) are
    /// always allowed.
    #[arg(long = "ws-origin", value_name = "ORIGIN")]
    ws_origins: Vec<String>,

    /// Exit cleanly once no client has been connected for this many seconds
    /// (remoteD's AutoKill; used by servers that clients start on demand).
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    exit_when_idle: Option<Duration>,

    /// After serving a request, keep polling for this many microseconds
    /// before sleeping, while clients are in a tight request/reply exchange
    /// (it saves the kernel's wake-up, most of a small round trip); 0 never
    /// polls. Costs CPU only while traffic is dense.
    #[arg(long, value_name = "MICROS", default_value_t = 50)]
    busy_poll: u64,

    /// Let every client use the admin commands behind `dime ls`, `dime
    /// stats` and `dime monitor`. Without it only clients of the same user
    /// on a unix socket may. Under --auth, roles decide instead (the
    /// admin permission).
    #[arg(long)]
    admin: bool,

    /// Keep shares and tuple spaces in DIR (a snapshot and a log of every
    /// change since), so they survive a restart. Group messages are never
    /// persisted.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<std::path::PathBuf>,

    /// With --data-dir: when the log is forced to disk: always (before
    /// each reply), everysec (about once a second), or no (when the OS
    /// chooses).
    #[arg(
        long,
        value_name = "POLICY",
        default_value = "everysec",
        requires = "data_dir"
    )]
    fsync: FsyncPolicy,

    /// With --data-dir: rewrite the log into a snapshot once it is this
    /// large (and larger than the last snapshot).
    #[arg(long, value_name = "BYTES", default_value_t = dime::server::persist::DEFAULT_REWRITE_AFTER)]
    log_rewrite_size: u64,
}

fn parse_octal(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("'{s}' is not an octal file mode"))
}

/// A non-negative number of seconds that a `Duration` can hold.
fn parse_seconds(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(|x| Duration::try_from_secs_f64(x).ok())
        .ok_or_else(|| format!("'{s}' is not a non-negative number of seconds"))
}

/// Runs the broker until SIGINT or SIGTERM; SIGHUP reloads the
/// certificates and the auth file.
pub fn run(args: BrokerArgs) -> ExitCode {
    super::init_logging(args.verbose);
    super::raise_fd_limit();
    let mut config = Config {
        socket_mode: args.socket_mode,
        max_message: args.max_message,
        max_queue: args.max_queue,
        watch_queue_events: args.watch_queue_events,
        watch_queue_bytes: args.watch_queue_bytes,
        ws_origins: args.ws_origins,
        exit_when_idle: args.exit_when_idle,
        busy_poll: Duration::from_micros(args.busy_poll),
        admin: args.admin,
        durability: args.data_dir.map(|dir| Durability {
            dir,
            fsync: args.fsync,
            rewrite_after: args.log_rewrite_size,
        }),
        tls: args.tls_cert.zip(args.tls_key).map(|(cert, key)| TlsFiles {
            cert,
            key,
            client_ca: args.tls_client_ca,
        }),
        auth_file: args.auth,
        insecure: args.insecure,
        max_conns_per_peer: args.max_conns_per_peer,
        max_groups: args.max_groups,
        max_name: args.max_name,
        handshake_timeout: args.handshake_timeout,
        cut_through_stall: Duration::from_millis(args.cut_through_stall_ms),
        ..Config::default()
    };
    if !args.listen.is_empty() {
        config.anonymous = args
            .listen
            .iter()
            .filter_map(|(a, roles)| roles.clone().map(|r| (a.clone(), r)))
            .collect();
        config.listen = args.listen.into_iter().map(|(a, _)| a).collect();
    }
    let mut server = match Server::bind(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = server.stop_on_signals() {
        eprintln!("dime: cannot install signal handlers: {e}");
        return ExitCode::FAILURE;
    }
    for addr in server.local_addrs() {
        eprintln!("dime: listening on {addr}");
    }
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dime: {e}");
            ExitCode::FAILURE
        }
    }
}
