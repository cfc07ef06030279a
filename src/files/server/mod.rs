//! The file server: provides `NAME.list`, `NAME.read` and the `NAME.put_*`
//! functions for one directory tree on a broker, through several
//! remote-call connections with a few worker threads each, so pieces are
//! read, hashed and sent in parallel.
//!
//! Each call stands alone (the server keeps no per-client state), so a
//! client that dies mid-transfer leaves nothing behind but a part file,
//! and everyone else is served on. A read-only server answers every
//! upload function with `PermissionError`.

mod broker;
mod hash_cache;
mod read;
mod receive;

use super::paths::Root;
use super::wire::{self, Fields};
use super::{Error, Result};
use crate::buffer::PooledBuf;
use crate::client::ConnectOptions;
use crate::client::rpc::{Rpc, RpcOptions};
use crate::server::local::{FileSpan, LocalProvider, LocalReply};
use crate::transport::Address;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How a file server runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The server's name on the broker: its functions are `NAME.list` …
    pub name: String,
    /// Accept uploads.
    pub writable: bool,
    /// Remote-call connections to the broker.
    pub connections: usize,
    /// Worker threads per connection (calls run at once on each).
    pub workers: usize,
    /// Keep retrying to reach the broker for this long.
    pub connect_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> ServeOptions {
        ServeOptions {
            name: "files".into(),
            writable: false,
            connections: 4,
            workers: 2,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// What every worker needs to answer calls.
struct Context {
    root: Root,
    name: String,
    /// `NAME.`, stripped from function names.
    prefix: String,
    writable: bool,
    /// Piece hashes computed so far, for files sent again.
    hashes: hash_cache::PieceHashes,
}

/// A running file server; [`FileServer::close`] (or drop) stops it.
pub struct FileServer {
    name: String,
    endpoints: Vec<Arc<Rpc>>,
    workers: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    /// The broker this process runs for it, if any.
    broker: Option<broker::Embedded>,
}

impl FileServer {
    /// Serves `root` through the broker at `address`, on
    /// `options.connections` connections with `options.workers` worker
    /// threads each.
    pub fn start(root: &Path, address: &str, options: ServeOptions) -> Result<FileServer> {
        let ctx = context(root, &options)?;
        let mut server = FileServer::new(&options, None);
        let workers = options.workers.max(1);
        for _ in 0..options.connections.max(1) {
            let ep = Arc::new(Rpc::connect(
                address,
                RpcOptions {
                    retry_until: Some(Instant::now() + options.connect_timeout),
                    // DIME_TOKEN and DIME_TLS_*, as every client takes them.
                    connect: ConnectOptions::from_env(),
                    ..RpcOptions::default()
                },
            )?);
            for op in wire::FUNCTIONS {
                ep.provide(&wire::function(&options.name, op), workers as u32)?;
            }
            for _ in 0..workers {
                server.spawn(Source::Broker(ep.clone()), &ctx)?;
            }
            server.endpoints.push(ep);
        }
        Ok(server)
    }

    /// Runs a broker in this process listening on `listen`, and serves
    /// `root` as its in-process provider (`connections × workers` worker
    /// threads): a transfer is then one hop, with no socket between the
    /// broker and the file server.
    pub fn start_embedded(
        root: &Path,
        listen: &[Address],
        options: ServeOptions,
    ) -> Result<FileServer> {
        let ctx = context(root, &options)?;
        let names: Vec<String> = wire::FUNCTIONS
            .iter()
            .map(|op| wire::function(&options.name, op))
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let threads = options.connections.max(1) * options.workers.max(1);
        let (embedded, provider) = broker::Embedded::start(listen, &names, threads as u32)?;
        let mut server = FileServer::new(&options, Some(embedded));
        for _ in 0..threads {
            server.spawn(Source::Local(provider.clone()), &ctx)?;
        }
        Ok(server)
    }

    fn new(options: &ServeOptions, broker: Option<broker::Embedded>) -> FileServer {
        FileServer {
            name: options.name.clone(),
            endpoints: Vec::new(),
            workers: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
            broker,
        }
    }

    /// Starts a worker thread answering calls from `source`.
    fn spawn(&mut self, source: Source, ctx: &Arc<Context>) -> Result<()> {
        let (ctx, stop) = (ctx.clone(), self.stop.clone());
        let t = std::thread::Builder::new()
            .name("dime-files".into())
            .spawn(move || {
                // The pieces of an upload are read by the broker's thread.
                crate::buffer::share_what_this_thread_frees();
                work(&source, &ctx, &stop)
            })
            .map_err(|e| Error::Io(format!("cannot start a worker thread: {e}")))?;
        self.workers.push(t);
        Ok(())
    }

    /// The server's name on the broker.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The addresses the embedded broker listens on, as bound (a
    /// `tcp:…:0` listener reads back with its port); empty without one.
    pub fn addresses(&self) -> Vec<String> {
        self.broker
            .as_ref()
            .map(|b| b.addresses())
            .unwrap_or_default()
    }

    /// True while every broker connection is up (an embedded server:
    /// while it runs).
    pub fn is_running(&self) -> bool {
        !self.workers.iter().any(|w| w.is_finished())
            && self.endpoints.iter().all(|e| !e.is_closed())
    }

    /// Stops offering the functions, lets calls already taken finish,
    /// closes the connections and stops the embedded broker.
    pub fn close(&mut self) {
        for ep in &self.endpoints {
            for op in wire::FUNCTIONS {
                let _ = ep.unprovide(&wire::function(&self.name, op));
            }
        }
        self.stop.store(true, Ordering::SeqCst);
        for t in self.workers.drain(..) {
            let _ = t.join();
        }
        for ep in self.endpoints.drain(..) {
            ep.close();
        }
        if let Some(mut b) = self.broker.take() {
            b.stop();
        }
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.close();
    }
}

/// What every worker of a server for `root` needs.
fn context(root: &Path, options: &ServeOptions) -> Result<Arc<Context>> {
    check_name(&options.name)?;
    Ok(Arc::new(Context {
        root: Root::confined(root)?,
        prefix: format!("{}.", options.name),
        name: options.name.clone(),
        writable: options.writable,
        hashes: hash_cache::PieceHashes::default(),
    }))
}

/// Where a worker takes calls from: a connection to a broker, or the
/// broker of this process directly.
enum Source {
    Broker(Arc<Rpc>),
    Local(LocalProvider),
}

/// A worker's answer to a call.
enum Reply {
    /// The encoded result.
    Encoded(PooledBuf),
    /// A piece read with `read` for this process's broker: the result is
    /// `head`, the span's bytes (still in the file), then `tail`.
    Piece {
        head: Vec<u8>,
        span: FileSpan,
        tail: Vec<u8>,
    },
}

/// A call a worker took.
struct Call {
    id: u64,
    function: String,
    args: PooledBuf,
    stream: bool,
}

impl Source {
    /// The next call; Ok(None) when none came within `timeout`, Err when
    /// no more will come.
    fn next(&self, timeout: Duration) -> std::result::Result<Option<Call>, ()> {
        match self {
            Source::Broker(ep) => match ep.next_call(Some(timeout)) {
                Ok(c) => Ok(c.map(|c| Call {
                    id: c.id,
                    function: c.function,
                    args: c.args,
                    stream: c.stream,
                })),
                Err(_) => Err(()),
            },
            Source::Local(p) => match p.next_call(Some(timeout)) {
                Some(c) => Ok(Some(Call {
                    id: c.id,
                    function: c.function.to_string(),
                    args: c.args,
                    stream: c.stream,
                })),
                None if p.is_closed() => Err(()),
                None => Ok(None),
            },
        }
    }

    /// True where pieces may stay in their files until sent (this
    /// process's broker sends them from there).
    fn sends_from_files(&self) -> bool {
        matches!(self, Source::Local(_))
    }

    fn reply(&self, id: u64, outcome: Result<Reply>) {
        let sent = match (self, outcome) {
            (Source::Broker(ep), Ok(Reply::Encoded(reply))) => ep.reply_encoded(id, &reply),
            (Source::Broker(ep), Ok(Reply::Piece { .. })) => ep.reply_error(
                id,
                "OSError",
                "internal error in the file server: a piece left in its file for another broker",
                "",
            ),
            (Source::Broker(ep), Err(e)) => ep.reply_error(id, e.type_name(), e.message(), ""),
            (Source::Local(p), outcome) => {
                let outcome = match outcome {
                    Ok(Reply::Encoded(b)) => Ok(LocalReply::Bytes(b)),
                    Ok(Reply::Piece { head, span, tail }) => {
                        Ok(LocalReply::WithFile { head, span, tail })
                    }
                    Err(e) => Err((e.type_name().to_owned(), e.message().to_owned())),
                };
                p.reply(id, outcome);
                Ok(())
            }
        };
        if let Err(e) = sent {
            log::warn!("cannot answer call {id}: {e}");
        }
    }
}

/// A server name must make plain function names.
fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains(['.', '/', ':']) || name.chars().any(char::is_whitespace) {
        return Err(Error::InvalidInput(format!(
            "'{name}' is not a file server name (no '.', '/', ':' or spaces)"
        )));
    }
    Ok(())
}

/// A worker: answers calls until the server stops or its source ends.
/// A failure goes back to the caller as its error, and a bug in a handler
/// is an error too, never a call left unanswered.
fn work(source: &Source, ctx: &Context, stop: &AtomicBool) {
    loop {
        match source.next(Duration::from_millis(50)) {
            Ok(Some(call)) => {
                let in_file = source.sends_from_files();
                let outcome = catch_unwind(AssertUnwindSafe(|| run(ctx, &call, in_file)))
                    .unwrap_or_else(|_| Err(Error::Io("internal error in the file server".into())));
                if let Err(e) = &outcome {
                    log::debug!("{}: {e}", call.function);
                }
                source.reply(call.id, outcome);
            }
            Ok(None) if stop.load(Ordering::SeqCst) => return,
            Ok(None) => {}
            Err(()) => return,
        }
    }
}

/// Answers `call`; `in_file`: a piece read may stay in its file.
fn run(ctx: &Context, call: &Call, in_file: bool) -> Result<Reply> {
    if call.stream {
        return Err(Error::InvalidInput(format!(
            "{} is not a stream",
            call.function
        )));
    }
    let op = call.function.strip_prefix(&ctx.prefix).unwrap_or_default();
    let f = Fields::parse(&call.args)?;
    let upload = [
        wire::PUT_BEGIN,
        wire::PUT_PIECE,
        wire::PUT_COMMIT,
        wire::PUT_WHOLE,
    ];
    if upload.contains(&op) && !ctx.writable {
        return Err(Error::PermissionDenied(format!(
            "the file server '{}' is read-only (serve it with --writable to accept uploads)",
            ctx.name
        )));
    }
    if op == wire::READ {
        return read::piece(&ctx.root, &ctx.hashes, &f, in_file);
    }
    let encoded = match op {
        wire::INFO => wire::encode_map(vec![
            ("name", crate::value::Value::from(ctx.name.as_str())),
            ("writable", crate::value::Value::Bool(ctx.writable)),
        ]),
        wire::LIST => read::list(&ctx.root, &f),
        wire::HAVE => read::have(&ctx.root, &f),
        wire::PUT_BEGIN => receive::begin(&ctx.root, &f),
        wire::PUT_PIECE => receive::piece(&ctx.root, &f),
        wire::PUT_COMMIT => receive::commit(&ctx.root, &f),
        wire::PUT_WHOLE => receive::whole(&ctx.root, &f),
        _ => Err(Error::InvalidInput(format!(
            "unknown function {}",
            call.function
        ))),
    };
    encoded.map(Reply::Encoded)
}
