//! Relay benchmark: the broker against a byte-forwarding floor, in one run.
//!
//! `cargo bench --bench relay` prints one table:
//!
//! 1. Small-message round trip A → server → B → server → A with the Rust
//!    client (B: `wait` + `sync` + `send`; A: `send` + `wait` + `sync`),
//!    against floors built from unix socket pairs and relay threads that
//!    copy bytes without parsing them (see [`floor_rtt`]).
//! 2. A 100 MB float64 matrix sent (`send_encoded`) and synced
//!    (`sync_messages`), against a raw unix-socket stream of the same bytes,
//!    plus the end-to-end figure with dimeb encode and decode.
//!
//! The server runs in this process, on its own thread, bound to a unix
//! socket in a temporary directory. Optional arguments pick sections
//! (`rtt`, `floor`, `bulk`); `RELAY_RTT_N` and `RELAY_BULK_REPS` override
//! the iteration counts (handy under valgrind).

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
/// Bulk payload: 12.5 M doubles = 100,000,000 bytes of elements.
const BULK_DIMS: [usize; 2] = [3_125, 4_000];
/// Timed bulk repetitions, after one untimed warm-up.
const BULK_REPS: usize = 5;
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

/// DiME round trips through the real broker and client.
fn dime_rtt(addr: &str, n: usize, warmup: usize) -> Lat {
    let (ready_tx, ready_rx) = mpsc::channel();
    let b_addr = addr.to_owned();
    let b = thread::spawn(move || {
        let mut b = Client::connect(&b_addr).expect("B connect");
        b.join(&["b"]).unwrap();
        ready_tx.send(()).unwrap();
        for _ in 0..warmup + n {
            b.wait(None).unwrap();
            let got = b.sync(-1).unwrap();
            assert_eq!(got.len(), 1);
            b.send("a", &got[0].0, &got[0].1).unwrap();
        }
    });
    let mut a = Client::connect(addr).expect("A connect");
    a.join(&["a"]).unwrap();
    ready_rx.recv().unwrap();
    let v = tiny();
    let mut ns = Vec::with_capacity(n);
    for i in 0..warmup + n {
        let t0 = Instant::now();
        a.send("b", "x", &v).unwrap();
        a.wait(None).unwrap();
        let got = a.sync(-1).unwrap();
        let dt = t0.elapsed();
        debug_assert_eq!(got.len(), 1);
        if i >= warmup {
            ns.push(dt.as_nanos() as u64);
        }
    }
    b.join().unwrap();
    lat(ns)
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

/// A relayed path: the endpoint's end of a socket pair whose other end is
/// read by a forwarding thread.
struct Relay {
    threads: Vec<thread::JoinHandle<()>>,
}

impl Relay {
    /// Two endpoints whose writes the relay forwards to each other.
    fn cross() -> (Relay, UnixStream, UnixStream) {
        let (a, ra) = UnixStream::pair().unwrap();
        let (b, rb) = UnixStream::pair().unwrap();
        let threads = vec![
            forward(ra.try_clone().unwrap(), rb.try_clone().unwrap()),
            forward(rb, ra),
        ];
        (Relay { threads }, a, b)
    }

    /// One endpoint whose writes the relay sends straight back to it.
    fn echo() -> (Relay, UnixStream) {
        let (x, rx) = UnixStream::pair().unwrap();
        let threads = vec![forward(rx.try_clone().unwrap(), rx)];
        (Relay { threads }, x)
    }

    fn join(self) {
        for t in self.threads {
            t.join().unwrap();
        }
    }
}

/// The floor: the round trip through relay threads that forward bytes
/// without parsing them.
///
/// * `matched == false` (the floor): A writes the bytes of its
///   `send` frame; the relay forwards them to B; B reads them and writes
///   the bytes of its own `send` frame; the relay forwards them to A.
///   Two relay traversals, the minimum any broker needs.
/// * `matched == true`: the same number of sequential relay traversals as
///   our client's critical path (4): after receiving, B and then A each also
///   do a request/reply through the relay (its `sync` request bytes,
///   echoed back), standing in for the sync exchange. The off-path
///   `send` status replies and `wait` requests are not modelled.
fn floor_rtt(n: usize, warmup: usize, matched: bool) -> Lat {
    let to_b = send_frame("b");
    let to_a = send_frame("a");
    let sync = sync_frame();
    let (cross, mut a, mut b) = Relay::cross();
    let (echo_a, echo_b) = if matched {
        let (ra, ea) = Relay::echo();
        let (rb, eb) = Relay::echo();
        (Some((ra, ea)), Some((rb, eb)))
    } else {
        (None, None)
    };
    let (to_a_len, to_b_len) = (to_a.len(), to_b.len());
    let b_sync = sync.clone();
    let bt = thread::spawn(move || {
        let mut buf = vec![0u8; to_b_len.max(b_sync.len())];
        let mut echo_b = echo_b;
        for _ in 0..warmup + n {
            b.read_exact(&mut buf[..to_b_len]).unwrap();
            if let Some((_, e)) = &mut echo_b {
                e.write_all(&b_sync).unwrap();
                e.read_exact(&mut buf[..b_sync.len()]).unwrap();
            }
            b.write_all(&to_a).unwrap();
        }
        drop(b);
        if let Some((r, e)) = echo_b {
            drop(e);
            r.join();
        }
    });
    let mut echo_a = echo_a;
    let mut buf = vec![0u8; to_a_len.max(sync.len())];
    let mut ns = Vec::with_capacity(n);
    for i in 0..warmup + n {
        let t0 = Instant::now();
        a.write_all(&to_b).unwrap();
        a.read_exact(&mut buf[..to_a_len]).unwrap();
        if let Some((_, e)) = &mut echo_a {
            e.write_all(&sync).unwrap();
            e.read_exact(&mut buf[..sync.len()]).unwrap();
        }
        let dt = t0.elapsed();
        if i >= warmup {
            ns.push(dt.as_nanos() as u64);
        }
    }
    bt.join().unwrap();
    drop(a);
    cross.join();
    if let Some((r, e)) = echo_a {
        drop(e);
        r.join();
    }
    lat(ns)
}

/// Reference: A and B on one socket pair, no relay at all.
fn direct_rtt(n: usize, warmup: usize) -> Lat {
    let to_b = send_frame("b");
    let to_a = send_frame("a");
    let (mut a, mut b) = UnixStream::pair().unwrap();
    let (la, lb) = (to_a.len(), to_b.len());
    let bt = thread::spawn(move || {
        let mut buf = vec![0u8; lb];
        for _ in 0..warmup + n {
            b.read_exact(&mut buf).unwrap();
            b.write_all(&to_a).unwrap();
        }
    });
    let mut buf = vec![0u8; la];
    let mut ns = Vec::with_capacity(n);
    for i in 0..warmup + n {
        let t0 = Instant::now();
        a.write_all(&to_b).unwrap();
        a.read_exact(&mut buf).unwrap();
        if i >= warmup {
            ns.push(t0.elapsed().as_nanos() as u64);
        }
    }
    bt.join().unwrap();
    lat(ns)
}

// ---------------------------------------------------------------------------
// 2. Bulk throughput
// ---------------------------------------------------------------------------

fn bulk_matrix() -> Matrix {
    let n: usize = BULK_DIMS.iter().product();
    let elems: Vec<f64> = (0..n).map(|i| i as f64 * 0.5).collect();
    Matrix::from_elems(BULK_DIMS.to_vec(), &elems).unwrap()
}

/// Seconds per transfer through the broker, one per repetition (after one
/// warm-up). `encoded`: A sends pre-encoded bytes and B syncs them
/// undecoded; otherwise A sends the `Value` (encode) and B decodes it.
fn dime_bulk(addr: &str, value: &Value, reps: usize, encoded: bool) -> Vec<f64> {
    let payload = if encoded {
        dimeb::encode(value).unwrap()
    } else {
        Vec::new()
    };
    let (ready_tx, ready_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<Instant>();
    let b_addr = addr.to_owned();
    let group = if encoded { "bulk_raw" } else { "bulk_val" };
    let b = thread::spawn(move || {
        let mut b = Client::connect(&b_addr).expect("B connect");
        b.join(&[group]).unwrap();
        ready_tx.send(()).unwrap();
        for _ in 0..=reps {
            b.wait(None).unwrap();
            if encoded {
                let msgs = b.sync_messages(-1).unwrap();
                let t = Instant::now();
                assert_eq!(msgs.len(), 1);
                // Dropped here, on B's thread, so its buffer pool recycles it.
                drop(msgs);
                done_tx.send(t).unwrap();
            } else {
                let vals = b.sync(-1).unwrap();
                let t = Instant::now();
                assert!(matches!(&vals[0].1, Value::Matrix(m) if m.kind() == ElemKind::F64));
                drop(vals);
                done_tx.send(t).unwrap();
            }
        }
    });
    let mut a = Client::connect(addr).expect("A connect");
    ready_rx.recv().unwrap();
    let mut secs = Vec::new();
    for i in 0..=reps {
        let t0 = Instant::now();
        if encoded {
            a.send_encoded(group, "m", &payload).unwrap();
        } else {
            a.send(group, "m", value).unwrap();
        }
        let t1 = done_rx.recv().unwrap();
        if i > 0 {
            secs.push((t1 - t0).as_secs_f64());
        }
    }
    b.join().unwrap();
    secs
}

/// Seconds per raw stream of `len` bytes between two threads over a unix
/// socket pair (default buffer sizes); the reader reads into one reused
/// buffer.
fn raw_bulk(len: usize, reps: usize) -> Vec<f64> {
    let (mut w, mut r) = UnixStream::pair().unwrap();
    let (done_tx, done_rx) = mpsc::channel::<Instant>();
    let reader = thread::spawn(move || {
        let mut buf = vec![0u8; len];
        for _ in 0..=reps {
            let mut filled = 0;
            while filled < len {
                match r.read(&mut buf[filled..]) {
                    Ok(0) => panic!("raw stream ended early"),
                    Ok(n) => filled += n,
                    Err(e) => panic!("raw read: {e}"),
                }
            }
            done_tx.send(Instant::now()).unwrap();
        }
    });
    let src: Vec<u8> = (0..len).map(|i| i as u8).collect();
    let mut secs = Vec::new();
    for i in 0..=reps {
        let t0 = Instant::now();
        w.write_all(&src).unwrap();
        let t1 = done_rx.recv().unwrap();
        if i > 0 {
            secs.push((t1 - t0).as_secs_f64());
        }
    }
    reader.join().unwrap();
    secs
}

// ---------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "MISS" }
}

fn main() {
    // `cargo bench` passes `--bench`; other arguments select sections.
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
        let d = want("rtt").then(|| dime_rtt(&server.addr, rtt_n, warm));
        let floors = want("floor").then(|| {
            (
                floor_rtt(rtt_n, warm, false),
                floor_rtt(rtt_n, warm, true),
                direct_rtt(rtt_n, warm),
            )
        });
        println!();
        println!("1. small-message round trip A -> B -> A ({rtt_n} timed, {warm} warm-up)");
        println!("   {:<58} {:>9} {:>9}", "", "median us", "p99 us");
        let row = |name: &str, l: Lat| {
            println!("   {name:<58} {:>9.1} {:>9.1}", l.median, l.p99);
        };
        if let Some(d) = d {
            row("dime: send | wait+sync+send | wait+sync (Rust client)", d);
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
                    verdict(r <= RTT_TARGET)
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
        let raw = rate(bytes, raw_bulk(bytes, reps));
        let enc = rate(bytes, dime_bulk(&server.addr, &value, reps, true));
        let e2e = rate(bytes, dime_bulk(&server.addr, &value, reps, false));
        println!();
        println!(
            "2. bulk: {:.0} MB float64 matrix ({} bytes dimeb), {reps} timed + 1 warm-up",
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
            verdict(r >= BULK_TARGET)
        );
        println!(
            "   ratio end-to-end/raw (median)     {:>6.2}x   (info)",
            e2e.median / raw.median
        );
    }
    drop(server);
    println!();
    println!("total {:.1} s", started.elapsed().as_secs_f64());
}
