//! Relay benchmark: the broker against a byte-forwarding floor, in one run.
//!
//! `cargo bench --bench relay` prints one table:
//!
//! 1. Small-message round trip A → server → B → server → A with the Rust
//!    client (B: `wait` + `sync` + `send`; A: `send` + `wait` + `sync`),
//!    against floors built from unix socket pairs and relay threads that
//!    copy bytes without parsing them (see [`Floor`]). All setups are
//!    timed in interleaved blocks, because this VM's speed drifts.
//! 2. A 100 MB float64 matrix sent (`send_encoded`) and synced
//!    (`sync_messages`), against a raw unix-socket stream of the same bytes,
//!    plus the end-to-end figure with dimeb encode and decode.
//!
//! The server runs in this process, on its own thread, bound to a unix
//! socket in a temporary directory. Optional arguments pick sections
//! (`rtt`: the broker round trip only, `floor`: the byte floors only,
//! `bulk`); `RELAY_RTT_N` and `RELAY_BULK_REPS` override
//! the iteration counts (handy under valgrind).
//!
//! Each target prints a PASS or MISS line. With `--check`
//! (`cargo bench --bench relay -- --check`) the process exits with status 1
//! after the whole report if any line is MISS, so a perf job can gate on it.

use dime::codec::dimeb;
use dime::server::{Config, Server};
use dime::transport::Address;
use dime::wire::encode_head;
use dime::{Client, ElemKind, Matrix, Value};
use serde_json::json;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

/// Round trips timed, after [`RTT_WARMUP`] untimed ones.
const RTT_N: usize = 20_000;
const RTT_WARMUP: usize = 2_000;
/// Blocks the timed round trips are split into, alternating between setups.
const RTT_BLOCKS: usize = 20;
/// Bulk payload: 12.5 M doubles = 100,000,000 bytes of elements.
const BULK_DIMS: [usize; 2] = [3_125, 4_000];
/// Timed bulk repetitions, after one untimed warm-up.
const BULK_REPS: usize = 7;
/// Targets from the issue.
const RTT_TARGET: f64 = 1.3;
const BULK_TARGET: f64 = 0.4;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Latency summary in microseconds.
#[derive(Clone, Copy)]
struct Lat {
    median: f64,
    p99: f64,
}

fn lat(mut ns: Vec<u64>) -> Lat {
    ns.sort_unstable();
    let at = |q: f64| ns[((ns.len() as f64 * q) as usize).min(ns.len() - 1)] as f64 / 1e3;
    Lat {
        median: at(0.5),
        p99: at(0.99),
    }
}

/// Throughput summary in GB/s (1e9 bytes per second).
#[derive(Clone, Copy)]
struct Rate {
    best: f64,
    median: f64,
}

fn rate(bytes: usize, mut secs: Vec<f64>) -> Rate {
    secs.sort_by(f64::total_cmp);
    Rate {
        best: bytes as f64 / secs[0] / 1e9,
        median: bytes as f64 / secs[secs.len() / 2] / 1e9,
    }
}

/// An in-process server on a temporary unix socket, stopped on drop.
struct TestServer {
    addr: String,
    stop: dime::server::ShutdownHandle,
    thread: Option<thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    fn start() -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Config {
            listen: vec![Address::Unix(dir.path().join("dime.sock"))],
            ..Config::default()
        };
        let mut server = Server::bind(config).expect("bind");
        let addr = server.local_addrs().remove(0);
        let stop = server.shutdown_handle();
        let thread = thread::Builder::new()
            .name("dime-server".into())
            .spawn(move || server.run().expect("server run"))
            .expect("spawn server");
        TestServer {
            addr,
            stop,
            thread: Some(thread),
            _dir: dir,
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------
// 1. Small-message round trip
// ---------------------------------------------------------------------------

/// The tiny value bounced between A and B.
fn tiny() -> Value {
    Value::F64(1.5)
}

/// Bytes our client writes for `send(group, "x", tiny())` (serde_json sorts
/// the keys, exactly as `Client` serializes its header).
fn send_frame(group: &str) -> Vec<u8> {
    let payload = dimeb::encode(&tiny()).unwrap();
    let header =
        json!({"command": "send", "name": group, "varname": "x", "serialization": "dimeb"});
    let mut f = encode_head(header.to_string().as_bytes(), payload.len());
    f.extend_from_slice(&payload);
    f
}

/// Bytes our client writes for `sync(-1)`.
fn sync_frame() -> Vec<u8> {
    encode_head(
        json!({"command": "sync", "n": -1}).to_string().as_bytes(),
        0,
    )
}

/// A round-trip setup kept alive, so that all setups can be timed in
/// interleaved blocks: this VM's speed drifts by up to 2x within seconds,
/// and interleaving exposes every setup to the same drift.
trait RoundTrip {
    /// One round trip, in nanoseconds.
    fn round(&mut self) -> u64;
    /// Stops B and any relay threads.
    fn finish(self: Box<Self>);
}

/// The real broker and client. With `classic`, A does `send`, `wait`,
/// `sync` and B loops on `wait`, `sync`, `send` (DiME2's calls); otherwise
/// both use `send_receive` (send, then wait for the reply, in one exchange).
struct DimePath {
    a: Client,
    value: Value,
    b: thread::JoinHandle<()>,
    classic: bool,
}

fn take(c: &mut Client, classic: bool) -> Vec<(String, Value)> {
    if classic {
        c.wait(None).unwrap();
        c.sync(-1).unwrap()
    } else {
        c.receive(-1, None).unwrap()
    }
}

/// Group names, distinct per path so both paths can run side by side.
fn group(classic: bool, side: &str) -> &'static str {
    match (classic, side) {
        (false, "a") => "a",
        (false, _) => "b",
        (true, "a") => "classic-a",
        (true, _) => "classic-b",
    }
}

impl DimePath {
    fn new(addr: &str, classic: bool) -> DimePath {
        let (ready_tx, ready_rx) = mpsc::channel();
        let b_addr = addr.to_owned();
        let b = thread::spawn(move || {
            let mut b = Client::connect(&b_addr).expect("B connect");
            b.join(&[group(classic, "b")]).unwrap();
            ready_tx.send(()).unwrap();
            let mut got = take(&mut b, classic);
            loop {
                let (name, v) = got.pop().expect("one message per round");
                if v == Value::Null {
                    return;
                }
                got = if classic {
                    b.send(group(classic, "a"), &name, &v).unwrap();
                    take(&mut b, classic)
                } else {
                    b.send_receive(group(classic, "a"), &name, &v, -1, None)
                        .unwrap()
                };
            }
        });
        let mut a = Client::connect(addr).expect("A connect");
        a.join(&[group(classic, "a")]).unwrap();
        ready_rx.recv().unwrap();
        DimePath {
            a,
            value: tiny(),
            b,
            classic,
        }
    }
}

impl RoundTrip for DimePath {
    fn round(&mut self) -> u64 {
        let t0 = Instant::now();
        let got = if self.classic {
            self.a.send(group(true, "b"), "x", &self.value).unwrap();
            take(&mut self.a, true)
        } else {
            self.a
                .send_receive(group(false, "b"), "x", &self.value, -1, None)
                .unwrap()
        };
        let dt = t0.elapsed().as_nanos() as u64;
        assert_eq!(got.len(), 1);
        dt
    }

    fn finish(mut self: Box<Self>) {
        self.a
            .send(group(self.classic, "b"), "x", &Value::Null)
            .unwrap();
        self.b.join().unwrap();
    }
}

/// Copies bytes from `from` to `to` until EOF: one relay direction.
fn forward(mut from: UnixStream, mut to: UnixStream) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Write);
    })
}

/// An endpoint whose writes a relay thread sends straight back to it.
fn echo_relay(threads: &mut Vec<thread::JoinHandle<()>>) -> UnixStream {
    let (x, rx) = UnixStream::pair().unwrap();
    threads.push(forward(rx.try_clone().unwrap(), rx));
    x
}

/// Which byte-level path to time.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Floor {
    /// A and B on one socket pair: no relay at all (reference only).
    Direct,
    /// The floor: A writes the bytes of its `send` frame, a relay thread
    /// forwards them to B, B reads them and writes the bytes of its own
    /// `send` frame, a second relay thread forwards them to A. Two relay
    /// traversals: the minimum any broker needs.
    Relay,
    /// As `Relay`, plus the same number of sequential relay traversals as
    /// our client's critical path (4): after receiving, B and then A each
    /// write their `sync` request bytes to a relay that echoes them back,
    /// standing in for the sync exchange. The off-path `send` status
    /// replies and `wait` requests are not modelled.
    Matched,
}

/// Endpoints A and B exchanging fixed frames over unix sockets, through
/// relay threads that copy bytes without parsing them.
struct BytePath {
    a: UnixStream,
    echo: Option<UnixStream>,
    to_b: Vec<u8>,
    sync: Vec<u8>,
    reply_len: usize,
    buf: Vec<u8>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl BytePath {
    fn new(kind: Floor) -> BytePath {
        let to_b = send_frame("b");
        let to_a = send_frame("a");
        let sync = sync_frame();
        let mut threads = Vec::new();
        let (a, mut b) = if kind == Floor::Direct {
            UnixStream::pair().unwrap()
        } else {
            let (a, ra) = UnixStream::pair().unwrap();
            let (b, rb) = UnixStream::pair().unwrap();
            threads.push(forward(ra.try_clone().unwrap(), rb.try_clone().unwrap()));
            threads.push(forward(rb, ra));
            (a, b)
        };
        let (echo_a, mut echo_b) = if kind == Floor::Matched {
            (
                Some(echo_relay(&mut threads)),
                Some(echo_relay(&mut threads)),
            )
        } else {
            (None, None)
        };
        let (to_b_len, b_sync) = (to_b.len(), sync.clone());
        let reply_len = to_a.len();
        threads.push(thread::spawn(move || {
            let mut buf = vec![0u8; to_b_len.max(b_sync.len())];
            // Ends when A hangs up.
            while b.read_exact(&mut buf[..to_b_len]).is_ok() {
                if let Some(e) = &mut echo_b {
                    e.write_all(&b_sync).unwrap();
                    e.read_exact(&mut buf[..b_sync.len()]).unwrap();
                }
                if b.write_all(&to_a).is_err() {
                    break;
                }
            }
        }));
        BytePath {
            a,
            echo: echo_a,
            buf: vec![0; reply_len.max(sync.len())],
            to_b,
            sync,
            reply_len,
            threads,
        }
    }
}

impl RoundTrip for BytePath {
    fn round(&mut self) -> u64 {
        let t0 = Instant::now();
        self.a.write_all(&self.to_b).unwrap();
        self.a.read_exact(&mut self.buf[..self.reply_len]).unwrap();
        if let Some(e) = &mut self.echo {
            e.write_all(&self.sync).unwrap();
            e.read_exact(&mut self.buf[..self.sync.len()]).unwrap();
        }
        t0.elapsed().as_nanos() as u64
    }

    fn finish(self: Box<Self>) {
        let BytePath {
            a, echo, threads, ..
        } = *self;
        drop(a);
        drop(echo);
        for t in threads {
            t.join().unwrap();
        }
    }
}

/// Times `n` round trips of every path (after `warmup` each), interleaved
/// in [`RTT_BLOCKS`] blocks.
fn time_rtt(mut paths: Vec<Box<dyn RoundTrip>>, n: usize, warmup: usize) -> Vec<Lat> {
    for p in &mut paths {
        for _ in 0..warmup {
            p.round();
        }
    }
    let mut ns = vec![Vec::with_capacity(n); paths.len()];
    for blk in 0..RTT_BLOCKS {
        let k = n / RTT_BLOCKS + usize::from(blk < n % RTT_BLOCKS);
        for (p, out) in paths.iter_mut().zip(&mut ns) {
            for _ in 0..k {
                out.push(p.round());
            }
        }
    }
    for p in paths {
        p.finish();
    }
    ns.into_iter().map(lat).collect()
}

// ---------------------------------------------------------------------------
// 2. Bulk throughput
// ---------------------------------------------------------------------------

fn bulk_matrix() -> Matrix {
    let n: usize = BULK_DIMS.iter().product();
    let elems: Vec<f64> = (0..n).map(|i| i as f64 * 0.5).collect();
    Matrix::from_elems(BULK_DIMS.to_vec(), &elems).unwrap()
}

/// A bulk-transfer setup kept alive so that setups can be timed in turn.
trait Transfer {
    /// Seconds for one transfer of the payload, until the receiver has it.
    fn rep(&mut self) -> f64;
    /// Stops the receiver.
    fn finish(self: Box<Self>);
}

/// Through the broker. `encoded`: A sends pre-encoded bytes
/// (`send_encoded`) and B takes them undecoded (`sync_messages`);
/// otherwise A sends the `Value` (encode) and B decodes it (`sync`).
struct DimeTransfer {
    a: Client,
    group: &'static str,
    value: Value,
    payload: Vec<u8>,
    encoded: bool,
    done: mpsc::Receiver<Instant>,
    b: thread::JoinHandle<()>,
}

impl DimeTransfer {
    fn new(addr: &str, value: &Value, encoded: bool) -> DimeTransfer {
        let group = if encoded { "bulk_raw" } else { "bulk_val" };
        let (ready_tx, ready_rx) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let b_addr = addr.to_owned();
        let b = thread::spawn(move || {
            let mut b = Client::connect(&b_addr).expect("B connect");
            b.join(&[group]).unwrap();
            ready_tx.send(()).unwrap();
            loop {
                b.wait(None).unwrap();
                let t = if encoded {
                    let msgs = b.sync_messages(-1).unwrap();
                    let t = Instant::now();
                    if msgs[0].payload.is_empty() {
                        return;
                    }
                    // Dropped here, on B's thread, so its buffer pool recycles it.
                    drop(msgs);
                    t
                } else {
                    let vals = b.sync(-1).unwrap();
                    let t = Instant::now();
                    match &vals[0].1 {
                        Value::Matrix(m) if m.kind() == ElemKind::F64 => {}
                        _ => return,
                    }
                    t
                };
                done_tx.send(t).unwrap();
            }
        });
        let a = Client::connect(addr).expect("A connect");
        ready_rx.recv().unwrap();
        DimeTransfer {
            a,
            group,
            value: value.clone(),
            payload: if encoded {
                dimeb::encode(value).unwrap()
            } else {
                Vec::new()
            },
            encoded,
            done,
            b,
        }
    }
}

impl Transfer for DimeTransfer {
    fn rep(&mut self) -> f64 {
        let t0 = Instant::now();
        if self.encoded {
            self.a.send_encoded(self.group, "m", &self.payload).unwrap();
        } else {
            self.a.send(self.group, "m", &self.value).unwrap();
        }
        (self.done.recv().unwrap() - t0).as_secs_f64()
    }

    fn finish(mut self: Box<Self>) {
        // An empty payload / a null value tells B to stop.
        if self.encoded {
            self.a.send_encoded(self.group, "m", &[]).unwrap();
        } else {
            self.a.send(self.group, "m", &Value::Null).unwrap();
        }
        self.b.join().unwrap();
    }
}

/// A raw stream of the same bytes between two threads over a unix socket
/// pair (default buffer sizes); the reader reads into one reused buffer.
struct RawTransfer {
    w: UnixStream,
    src: Vec<u8>,
    done: mpsc::Receiver<Instant>,
    reader: thread::JoinHandle<()>,
}

impl RawTransfer {
    fn new(len: usize) -> RawTransfer {
        let (w, mut r) = UnixStream::pair().unwrap();
        let (done_tx, done) = mpsc::channel();
        let reader = thread::spawn(move || {
            let mut buf = vec![0u8; len];
            loop {
                let mut filled = 0;
                while filled < len {
                    match r.read(&mut buf[filled..]) {
                        Ok(0) => return,
                        Ok(n) => filled += n,
                        Err(e) => panic!("raw read: {e}"),
                    }
                }
                done_tx.send(Instant::now()).unwrap();
            }
        });
        RawTransfer {
            w,
            src: (0..len).map(|i| i as u8).collect(),
            done,
            reader,
        }
    }
}

impl Transfer for RawTransfer {
    fn rep(&mut self) -> f64 {
        let t0 = Instant::now();
        self.w.write_all(&self.src).unwrap();
        (self.done.recv().unwrap() - t0).as_secs_f64()
    }

    fn finish(self: Box<Self>) {
        drop(self.w);
        self.reader.join().unwrap();
    }
}

/// Times `reps` transfers of every setup (after one warm-up each), taking
/// turns so that all of them see the same machine.
fn time_bulk(mut setups: Vec<Box<dyn Transfer>>, reps: usize) -> Vec<Vec<f64>> {
    for s in &mut setups {
        s.rep();
    }
    let mut secs = vec![Vec::new(); setups.len()];
    for _ in 0..reps {
        for (s, out) in setups.iter_mut().zip(&mut secs) {
            out.push(s.rep());
        }
    }
    for s in setups {
        s.finish();
    }
    secs
}

// ---------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------

/// PASS or MISS, counting the misses for `--check`.
fn verdict(ok: bool, misses: &mut usize) -> &'static str {
    if ok {
        "PASS"
    } else {
        *misses += 1;
        "MISS"
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `--check` exits 1 on a MISS; other
    // arguments select sections.
    let check = std::env::args().any(|a| a == "--check");
    let mut misses = 0;
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let want = |s: &str| args.is_empty() || args.iter().any(|a| a == s);
    let rtt_n = env_usize("RELAY_RTT_N", RTT_N);
    let warm = RTT_WARMUP.min(rtt_n / 5);
    let reps = env_usize("RELAY_BULK_REPS", BULK_REPS).max(1);
    let started = Instant::now();
    let server = TestServer::start();
    println!(
        "dime relay bench: in-process server thread on {}, {} cpus",
        server.addr,
        thread::available_parallelism().map_or(0, |n| n.get())
    );

    if want("rtt") || want("floor") {
        let mut paths: Vec<Box<dyn RoundTrip>> = Vec::new();
        if want("rtt") {
            paths.push(Box::new(DimePath::new(&server.addr, false)));
            paths.push(Box::new(DimePath::new(&server.addr, true)));
        }
        if want("floor") {
            for kind in [Floor::Relay, Floor::Matched, Floor::Direct] {
                paths.push(Box::new(BytePath::new(kind)));
            }
        }
        let mut lats = time_rtt(paths, rtt_n, warm).into_iter();
        let d = want("rtt").then(|| lats.next().unwrap());
        let classic = want("rtt").then(|| lats.next().unwrap());
        let floors = want("floor").then(|| {
            (
                lats.next().unwrap(),
                lats.next().unwrap(),
                lats.next().unwrap(),
            )
        });
        println!();
        println!(
            "1. small-message round trip A -> B -> A ({rtt_n} timed per row, interleaved in {RTT_BLOCKS} blocks, {warm} warm-up)"
        );
        println!("   {:<58} {:>9} {:>9}", "", "median us", "p99 us");
        let row = |name: &str, l: Lat| {
            println!("   {name:<58} {:>9.1} {:>9.1}", l.median, l.p99);
        };
        if let Some(d) = d {
            row("dime: send_receive | send_receive (Rust client)", d);
        }
        if let Some(c) = classic {
            row("dime, DiME2 calls: send | wait+sync+send | wait+sync", c);
        }
        if let Some((f_min, f_match, direct)) = floors {
            row("floor: byte relay, 2 traversals (A->B, B->A)", f_min);
            row(
                "floor, matched: byte relay, 4 traversals (+sync echo)",
                f_match,
            );
            row("reference: direct socket pair A<->B, no relay", direct);
            if let Some(d) = d {
                let r = d.median / f_min.median;
                println!(
                    "   ratio dime/floor (median)         {r:>6.2}x   target <= {RTT_TARGET}x   {}",
                    verdict(r <= RTT_TARGET, &mut misses)
                );
                let rm = d.median / f_match.median;
                println!(
                    "   ratio dime/matched floor (median) {rm:>6.2}x   (same exchange count; info)"
                );
            }
        }
    }

    if want("bulk") {
        let value = Value::Matrix(bulk_matrix());
        let bytes = dimeb::encoded_len(&value);
        let setups: Vec<Box<dyn Transfer>> = vec![
            Box::new(RawTransfer::new(bytes)),
            Box::new(DimeTransfer::new(&server.addr, &value, true)),
            Box::new(DimeTransfer::new(&server.addr, &value, false)),
        ];
        let mut secs = time_bulk(setups, reps).into_iter();
        let mut next = || rate(bytes, secs.next().unwrap());
        let (raw, enc, e2e) = (next(), next(), next());
        println!();
        println!(
            "2. bulk: {:.0} MB float64 matrix ({} bytes dimeb), {reps} timed + 1 warm-up, rows taking turns",
            bytes as f64 / 1e6,
            bytes
        );
        println!("   {:<58} {:>9} {:>9}", "", "best GB/s", "med GB/s");
        let row = |name: &str, r: Rate| {
            println!("   {name:<58} {:>9.2} {:>9.2}", r.best, r.median);
        };
        row("raw unix stream, thread -> thread (reused buffer)", raw);
        row("dime: send_encoded -> server -> sync_messages", enc);
        row("dime end-to-end: Value -> encode/send -> sync/decode", e2e);
        let r = enc.median / raw.median;
        println!(
            "   ratio dime/raw (median)           {r:>6.2}x   target >= {BULK_TARGET}x   {}",
            verdict(r >= BULK_TARGET, &mut misses)
        );
        println!(
            "   ratio end-to-end/raw (median)     {:>6.2}x   (info)",
            e2e.median / raw.median
        );
    }
    drop(server);
    println!();
    println!("total {:.1} s", started.elapsed().as_secs_f64());
    if check && misses > 0 {
        eprintln!("relay bench --check: {misses} target(s) missed");
        std::process::exit(1);
    }
}
