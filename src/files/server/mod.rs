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
mod read;
mod receive;

use super::paths::Root;
use super::wire::{self, Fields};
use super::{Error, Result};
use crate::client::rpc::{IncomingCall, Rpc, RpcOptions};
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
    /// Serves `root` through the broker at `address`.
    pub fn start(root: &Path, address: &str, options: ServeOptions) -> Result<FileServer> {
        FileServer::start_on(root, address, options, None)
    }

    /// Runs a broker in this process listening on `listen`, and serves
    /// `root` through it: a transfer is then one hop.
    pub fn start_embedded(
        root: &Path,
        listen: &[Address],
        options: ServeOptions,
    ) -> Result<FileServer> {
        let (embedded, address) = broker::Embedded::start(listen)?;
        FileServer::start_on(root, &address, options, Some(embedded))
    }

    fn start_on(
        root: &Path,
        address: &str,
        options: ServeOptions,
        broker: Option<broker::Embedded>,
    ) -> Result<FileServer> {
        check_name(&options.name)?;
        let root = Root::confined(root)?;
        let ctx = Arc::new(Context {
            root,
            prefix: format!("{}.", options.name),
            name: options.name.clone(),
            writable: options.writable,
        });
        let mut server = FileServer {
            name: options.name.clone(),
            endpoints: Vec::new(),
            workers: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
            broker,
        };
        let workers = options.workers.max(1);
        for _ in 0..options.connections.max(1) {
            let ep = Arc::new(Rpc::connect(
                address,
                RpcOptions {
                    retry_until: Some(Instant::now() + options.connect_timeout),
                    ..RpcOptions::default()
                },
            )?);
            for op in wire::FUNCTIONS {
                ep.provide(&wire::function(&options.name, op), workers as u32)?;
            }
            for _ in 0..workers {
                let (ep, ctx, stop) = (ep.clone(), ctx.clone(), server.stop.clone());
                let t = std::thread::Builder::new()
                    .name("dime-files".into())
                    .spawn(move || work(&ep, &ctx, &stop))
                    .map_err(|e| Error::Io(format!("cannot start a worker thread: {e}")))?;
                server.workers.push(t);
            }
            server.endpoints.push(ep);
        }
        Ok(server)
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

    /// True while the broker connection of every worker is up.
    pub fn is_running(&self) -> bool {
        self.endpoints.iter().all(|e| !e.is_closed())
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

/// A server name must make plain function names.
fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains(['.', '/', ':']) || name.chars().any(char::is_whitespace) {
        return Err(Error::InvalidInput(format!(
            "'{name}' is not a file server name (no '.', '/', ':' or spaces)"
        )));
    }
    Ok(())
}

/// A worker: answers calls until the server stops or the connection ends.
fn work(ep: &Rpc, ctx: &Context, stop: &AtomicBool) {
    loop {
        match ep.next_call(Some(Duration::from_millis(50))) {
            Ok(Some(call)) => answer(ep, ctx, call),
            Ok(None) if stop.load(Ordering::SeqCst) => return,
            Ok(None) => {}
            Err(_) => return,
        }
    }
}

/// Runs one call and replies; a failure goes back to the caller as its
/// error, and a bug in a handler is an error too, never a silent call.
fn answer(ep: &Rpc, ctx: &Context, call: IncomingCall) {
    let outcome = catch_unwind(AssertUnwindSafe(|| run(ctx, &call)))
        .unwrap_or_else(|_| Err(Error::Io("internal error in the file server".into())));
    let sent = match outcome {
        Ok(reply) => ep.reply_encoded(call.id, &reply),
        Err(e) => {
            log::debug!("{}: {e}", call.function);
            ep.reply_error(call.id, e.type_name(), e.message(), "")
        }
    };
    if let Err(e) = sent {
        log::warn!("cannot answer {}: {e}", call.function);
    }
}

fn run(ctx: &Context, call: &IncomingCall) -> Result<crate::buffer::PooledBuf> {
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
    match op {
        wire::INFO => wire::encode_map(vec![
            ("name", crate::value::Value::from(ctx.name.as_str())),
            ("writable", crate::value::Value::Bool(ctx.writable)),
        ]),
        wire::LIST => read::list(&ctx.root, &f),
        wire::READ => read::piece(&ctx.root, &f),
        wire::PUT_BEGIN => receive::begin(&ctx.root, &f),
        wire::PUT_PIECE => receive::piece(&ctx.root, &f),
        wire::PUT_COMMIT => receive::commit(&ctx.root, &f),
        wire::PUT_WHOLE => receive::whole(&ctx.root, &f),
        _ => Err(Error::InvalidInput(format!(
            "unknown function {}",
            call.function
        ))),
    }
}
