//! `dime files serve`, `dime get` and `dime put`: file transfer through a
//! broker (docs/files.md). Errors end the command with one line on
//! stderr and exit status 1.

use super::progress::{Bar, human_bytes};
use clap::{ArgAction, Args};
use dime::files::{
    Error, FileServer, Progress, Selection, ServeOptions, Summary, TransferOptions, download,
    upload,
};
use dime::transport::Address;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// `dime files serve`'s arguments.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The directory to serve.
    root: PathBuf,
    /// The file server's name on the broker (`dime get NAME:…`).
    #[arg(long, default_value = "files")]
    name: String,
    /// Accept uploads (`dime put`); read-only without it.
    #[arg(long)]
    writable: bool,
    /// The broker to serve through. Default: $DIME_ADDRESS, else
    /// unix:/tmp/dime.sock.
    #[arg(short = 'a', long, value_name = "ADDRESS", conflicts_with = "listen")]
    address: Option<String>,
    /// Run the broker in this process, listening here (repeat for
    /// several), so transfers are one hop.
    #[arg(short = 'l', long = "listen", value_name = "ADDRESS")]
    listen: Vec<Address>,
    /// Connections to the broker.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    connections: u16,
    /// Worker threads per connection.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    workers: u16,
    /// More logging on stderr (-v, -vv).
    #[arg(short = 'v', action = ArgAction::Count)]
    verbose: u8,
}

/// Options shared by `get` and `put`.
#[derive(Args, Debug)]
pub struct TransferArgs {
    /// Parallel connections.
    #[arg(short = 'j', long = "connections", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    connections: u16,
    /// The broker. Default: $DIME_ADDRESS, else unix:/tmp/dime.sock.
    #[arg(short = 'a', long, value_name = "ADDRESS")]
    address: Option<String>,
    /// Treat the pattern as a regular expression, searched for in each
    /// file's path (anchor it with ^…$).
    #[arg(short = 'E', long)]
    regex: bool,
    /// Piece size: a power of two from 1K to 64M (suffix K or M).
    #[arg(long, default_value = "2M", value_parser = parse_size)]
    piece: u64,
    /// Calls in flight per connection.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=64))]
    in_flight: u16,
    /// Seconds to wait for the file server to answer at all.
    #[arg(short = 't', long, default_value = "5", value_parser = parse_timeout)]
    timeout: Duration,
    /// No progress bar and no summary line.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// More logging on stderr (-v, -vv).
    #[arg(short = 'v', action = ArgAction::Count)]
    verbose: u8,
}

/// `dime get`'s arguments.
#[derive(Args, Debug)]
pub struct GetArgs {
    /// NAME:PATTERN… then DEST: files of file server NAME (paths, or one
    /// glob with * ? [..] **), and the directory to put them in.
    #[arg(required = true, num_args = 2.., value_name = "NAME:PATTERN… DEST")]
    args: Vec<String>,
    #[command(flatten)]
    transfer: TransferArgs,
}

/// `dime put`'s arguments.
#[derive(Args, Debug)]
pub struct PutArgs {
    /// SRC… then NAME:DESTDIR: local files or directories (or one glob),
    /// and the directory of file server NAME to put them in.
    #[arg(required = true, num_args = 2.., value_name = "SRC… NAME:DESTDIR")]
    args: Vec<String>,
    #[command(flatten)]
    transfer: TransferArgs,
}

/// Fails the command with one line on stderr.
fn fail(what: &str, e: impl std::fmt::Display) -> ExitCode {
    let text = e.to_string();
    eprintln!("dime {what}: {}", text.trim().replace('\n', "; "));
    ExitCode::FAILURE
}

fn default_address() -> String {
    std::env::var("DIME_ADDRESS")
        .ok()
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| format!("unix:{}", dime::server::DEFAULT_SOCKET))
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .filter(|x| *x > 0.0)
        .and_then(|x| Duration::try_from_secs_f64(x).ok())
        .ok_or_else(|| format!("'{s}' is not a positive number of seconds"))
}

/// `1M`, `64K`, `4096`.
fn parse_size(s: &str) -> Result<u64, String> {
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1 << 10),
        Some((i, 'm' | 'M')) => (&s[..i], 1 << 20),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|n| dime::files::hash::valid_piece_size(*n))
        .ok_or_else(|| format!("'{s}' is not a power of two from 1K to 64M"))
}

/// `dime files serve`: serves until SIGINT or SIGTERM (or until the
/// broker goes away).
pub fn serve(a: ServeArgs) -> ExitCode {
    super::init_logging(a.verbose);
    super::raise_fd_limit();
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            return fail(
                "files serve",
                format!("cannot install signal handlers: {e}"),
            );
        }
    }
    let options = ServeOptions {
        name: a.name.clone(),
        writable: a.writable,
        connections: a.connections.into(),
        workers: a.workers.into(),
        ..ServeOptions::default()
    };
    let address = a.address.unwrap_or_else(default_address);
    let started = if a.listen.is_empty() {
        FileServer::start(&a.root, &address, options)
    } else {
        FileServer::start_embedded(&a.root, &a.listen, options)
    };
    let mut server = match started {
        Ok(s) => s,
        Err(e) => return fail("files serve", e),
    };
    for addr in server.addresses() {
        eprintln!("dime: listening on {addr}");
    }
    let access = if a.writable {
        "read-write"
    } else {
        "read-only"
    };
    let through = if a.listen.is_empty() {
        address.as_str()
    } else {
        "this process's broker"
    };
    eprintln!(
        "dime: serving {} as '{}' ({access}) through {through}",
        a.root.display(),
        a.name
    );
    while !stop.load(Ordering::SeqCst) {
        if !server.is_running() {
            server.close();
            return fail("files serve", "the connection to the broker was lost");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    server.close();
    ExitCode::SUCCESS
}

/// Splits `NAME:REST`.
fn named(s: &str) -> Result<(&str, &str), String> {
    match s.split_once(':') {
        Some((n, rest)) if !n.is_empty() && !n.contains('/') => Ok((n, rest)),
        _ => Err(format!(
            "'{s}' should be NAME:PATH, naming a file server (e.g. files:logs/*.txt)"
        )),
    }
}

/// The selection several patterns make: paths, or one glob or regex.
fn selection(patterns: &[&str], regex: bool) -> Result<Selection, String> {
    if regex {
        return match patterns {
            [one] => Ok(Selection::Regex((*one).to_owned())),
            _ => Err("give one regular expression at a time".into()),
        };
    }
    match patterns {
        [one] => Ok(Selection::pattern(one)),
        many if many.iter().any(|p| dime::files::select::has_wildcards(p)) => {
            Err("give either paths or one glob, not several patterns".into())
        }
        many => Ok(Selection::Paths(
            many.iter().map(|p| (*p).to_owned()).collect(),
        )),
    }
}

fn options(t: &TransferArgs) -> TransferOptions {
    TransferOptions {
        connections: t.connections.into(),
        in_flight: t.in_flight.into(),
        piece: t.piece,
        wait_for_server: t.timeout,
        ..TransferOptions::default()
    }
}

/// Runs a transfer with the progress bar, then prints its summary.
fn transfer(
    what: &str,
    t: &TransferArgs,
    run: impl FnOnce(&mut dyn FnMut(&Progress) -> bool) -> Result<Summary, Error>,
) -> ExitCode {
    super::init_logging(t.verbose);
    let bar = Bar::new(t.quiet);
    let outcome = run(&mut |p: &Progress| {
        bar.update(p);
        true
    });
    bar.finish();
    match outcome {
        Ok(s) => {
            if !t.quiet {
                eprintln!("dime {what}: {}", summary(&s));
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(what, e),
    }
}

fn summary(s: &Summary) -> String {
    let secs = s.elapsed.as_secs_f64();
    let mut out = format!(
        "{} files, {} in {secs:.2} s ({}/s)",
        s.files,
        human_bytes(s.bytes as f64),
        human_bytes(s.bytes as f64 / secs.max(1e-9))
    );
    if s.skipped > 0 {
        out += &format!("; {} already there", s.skipped);
    }
    if s.resumed > 0 {
        out += &format!("; {} resumed", human_bytes(s.resumed as f64));
    }
    out
}

/// `dime get NAME:PATTERN… DEST`.
pub fn get(a: GetArgs) -> ExitCode {
    let (dest, sources) = a.args.split_last().expect("clap requires two");
    let mut name = None;
    let mut patterns = Vec::new();
    for s in sources {
        let (n, p) = match named(s) {
            Ok(x) => x,
            Err(e) => return fail("get", e),
        };
        if name.is_some_and(|m| m != n) {
            return fail("get", "all sources must be on one file server");
        }
        name = Some(n);
        patterns.push(p);
    }
    let what = match selection(&patterns, a.transfer.regex) {
        Ok(w) => w,
        Err(e) => return fail("get", e),
    };
    let address = a.transfer.address.clone().unwrap_or_else(default_address);
    let opts = options(&a.transfer);
    let name = name.unwrap_or_default();
    transfer("get", &a.transfer, |cb| {
        download(&address, name, &what, Path::new(dest), &opts, Some(cb))
    })
}

/// `dime put SRC… NAME:DESTDIR`.
pub fn put(a: PutArgs) -> ExitCode {
    let (target, sources) = a.args.split_last().expect("clap requires two");
    let (name, dest_dir) = match named(target) {
        Ok(x) => x,
        Err(e) => return fail("put", e),
    };
    let patterns: Vec<&str> = sources.iter().map(String::as_str).collect();
    let what = match selection(&patterns, a.transfer.regex) {
        Ok(w) => w,
        Err(e) => return fail("put", e),
    };
    let address = a.transfer.address.clone().unwrap_or_else(default_address);
    let opts = options(&a.transfer);
    transfer("put", &a.transfer, |cb| {
        upload(
            &address,
            name,
            &what,
            Path::new("."),
            dest_dir,
            &opts,
            Some(cb),
        )
    })
}
