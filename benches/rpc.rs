//! Remote-call benchmark, in one run:
//!
//! 1. C → C small call through the C ABI: a caller on `dime_call` +
//!    `dime_future_wait` + `dime_future_result`, a provider thread on
//!    `dime_next_call` + `dime_reply`, both through the broker, against
//!    the broker's own messaging round trip A → B → A (`send_receive` on
//!    both sides, Rust client, as `benches/relay.rs`). Interleaved blocks,
//!    because this VM's speed drifts; medians. Target: ≤ 1.5×.
//! 2. Python against teleport 0.9.0: runs `benches/rpc.py` (small call,
//!    pipelined calls, 800 MB argument) with the interpreter it finds
//!    (`$TELEPORT_PYTHON`, else `.venv/teleport/bin/python`; see
//!    benches/README.md). `cargo bench --bench rpc -- c` runs only part 1.
//!
//! The broker runs in this process on its own thread, on a unix socket in
//! a temporary directory; the C functions are called straight from Rust
//! (they are the library's `extern "C"` functions). Each target prints a
//! PASS or MISS line; with `--check` the process exits 1 after the whole
//! report if any line is MISS. `RPC_RTT_N` overrides the iteration count.

use dime::Client;
use dime::ffi::client::{dime_client, dime_client_free, dime_connect};
use dime::ffi::rpc::{
    dime_call, dime_future, dime_future_free, dime_future_result, dime_future_wait, dime_next_call,
    dime_provide, dime_reply, dime_request, dime_request_args, dime_request_free,
};
use dime::ffi::status::dime_status;
use dime::ffi::value::{dime_value, dime_value_free, dime_value_new_double};
use dime::server::{Config, Server};
use dime::transport::Address;
use dime::value::Value;
use std::ffi::CString;
use std::process::Command;
use std::ptr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Instant;

/// Round trips timed per setup, after a warm-up of a tenth of that.
const RTT_N: usize = 20_000;
/// Blocks the timed round trips are split into, alternating setups.
const BLOCKS: usize = 20;
/// C → C call round trip over the messaging round trip, at most.
const TARGET: f64 = 1.5;

/// An in-process broker on a temporary unix socket.
struct Broker {
    addr: String,
    stop: dime::server::ShutdownHandle,
    thread: Option<thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Broker {
    fn start() -> Broker {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Config {
            listen: vec![Address::Unix(dir.path().join("dime.sock"))],
            ..Config::default()
        };
        let mut server = Server::bind(config).expect("bind");
        let addr = server.local_addrs().remove(0);
        let stop = server.shutdown_handle();
        let thread = thread::spawn(move || server.run().expect("server run"));
        Broker {
            addr,
            stop,
            thread: Some(thread),
            _dir: dir,
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn ok(st: dime_status, what: &str) {
    assert!(
        st == dime_status::Ok,
        "{what} failed: {st:?} ({})",
        // SAFETY: dime_last_error returns a NUL-terminated string.
        unsafe { std::ffi::CStr::from_ptr(dime::ffi::status::dime_last_error()) }.to_string_lossy()
    );
}

/// A connected C client handle.
struct CClient(*mut dime_client);

// SAFETY: a dime_client is internally locked and usable from any thread.
unsafe impl Send for CClient {}
// SAFETY: as above.
unsafe impl Sync for CClient {}

impl CClient {
    fn connect(addr: &str) -> CClient {
        let a = CString::new(addr).unwrap();
        let mut c = ptr::null_mut();
        ok(dime_connect(a.as_ptr(), &mut c), "dime_connect");
        CClient(c)
    }
}

impl Drop for CClient {
    fn drop(&mut self) {
        dime_client_free(self.0);
    }
}

/// One round-trip setup, timed in blocks alternating with the others.
trait RoundTrip {
    fn round(&mut self) -> u64;
}

/// C → C: `dime_call` to a provider thread on `dime_next_call`.
struct CCall {
    caller: CClient,
    function: CString,
    args: *mut dime_value,
    stop: Arc<AtomicBool>,
    provider: Option<thread::JoinHandle<()>>,
}

impl CCall {
    fn new(addr: &str) -> CCall {
        let provider = Arc::new(CClient::connect(addr));
        let function = CString::new("echo").unwrap();
        ok(
            dime_provide(provider.0, function.as_ptr(), 1),
            "dime_provide",
        );
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (provider.clone(), stop.clone());
        let provider = thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let mut req: *mut dime_request = ptr::null_mut();
                if dime_next_call(p.0, 100, &mut req) != dime_status::Ok {
                    continue;
                }
                ok(dime_reply(req, dime_request_args(req)), "dime_reply");
                dime_request_free(req);
            }
        });
        CCall {
            caller: CClient::connect(addr),
            function,
            args: dime_value_new_double(1.5),
            stop,
            provider: Some(provider),
        }
    }
}

impl RoundTrip for CCall {
    fn round(&mut self) -> u64 {
        let t0 = Instant::now();
        let mut f: *mut dime_future = ptr::null_mut();
        ok(
            dime_call(self.caller.0, self.function.as_ptr(), self.args, -1, &mut f),
            "dime_call",
        );
        ok(dime_future_wait(f, -1), "dime_future_wait");
        let mut v: *mut dime_value = ptr::null_mut();
        ok(dime_future_result(f, &mut v), "dime_future_result");
        let dt = t0.elapsed().as_nanos() as u64;
        dime_value_free(v);
        dime_future_free(f);
        dt
    }
}

impl Drop for CCall {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.provider.take() {
            let _ = t.join();
        }
        dime_value_free(self.args);
    }
}

/// The broker's messaging round trip: A `send_receive`s to B, B answers.
struct Messaging {
    a: Client,
    b: Option<thread::JoinHandle<()>>,
}

impl Messaging {
    fn new(addr: &str) -> Messaging {
        let mut b = Client::connect(addr).expect("B connect");
        b.join(&["rpc-b"]).unwrap();
        let mut a = Client::connect(addr).expect("A connect");
        a.join(&["rpc-a"]).unwrap();
        let b = thread::spawn(move || {
            let mut got = b.receive(-1, None).unwrap();
            loop {
                let (_, v) = got.pop().expect("one message");
                if v == Value::Null {
                    break;
                }
                got = b.send_receive("rpc-a", "x", &v, -1, None).unwrap();
            }
        });
        Messaging { a, b: Some(b) }
    }
}

impl RoundTrip for Messaging {
    fn round(&mut self) -> u64 {
        let t0 = Instant::now();
        let got = self
            .a
            .send_receive("rpc-b", "x", &Value::F64(1.5), -1, None)
            .unwrap();
        let dt = t0.elapsed().as_nanos() as u64;
        assert_eq!(got.len(), 1);
        dt
    }
}

impl Drop for Messaging {
    fn drop(&mut self) {
        self.a.send("rpc-b", "x", &Value::Null).unwrap();
        if let Some(b) = self.b.take() {
            let _ = b.join();
        }
    }
}

fn median_us(mut ns: Vec<u64>) -> f64 {
    ns.sort_unstable();
    ns[ns.len() / 2] as f64 / 1e3
}

/// Times every setup over `n` round trips in interleaved blocks; the
/// median of each, in microseconds.
fn time_rtt(setups: &mut [Box<dyn RoundTrip>], n: usize) -> Vec<f64> {
    for s in setups.iter_mut() {
        for _ in 0..(n / 10).max(1) {
            s.round();
        }
    }
    let mut samples: Vec<Vec<u64>> = setups.iter().map(|_| Vec::with_capacity(n)).collect();
    let per_block = (n / BLOCKS).max(1);
    for _ in 0..BLOCKS {
        for (s, out) in setups.iter_mut().zip(samples.iter_mut()) {
            for _ in 0..per_block {
                out.push(s.round());
            }
        }
    }
    samples.into_iter().map(median_us).collect()
}

/// Runs benches/rpc.py with a Python that has teleport; false on a MISS.
fn python_part(check: bool) -> bool {
    let root = env!("CARGO_MANIFEST_DIR");
    let python = std::env::var("TELEPORT_PYTHON")
        .unwrap_or_else(|_| format!("{root}/.venv/teleport/bin/python"));
    if !std::path::Path::new(&python).exists() {
        println!(
            "\n2. Python vs teleport: SKIPPED, no {python} (set TELEPORT_PYTHON; see benches/README.md)"
        );
        return !check;
    }
    println!("\n2. Python vs teleport (benches/rpc.py, needs cargo build --release)");
    let status = Command::new(&python)
        .arg(format!("{root}/benches/rpc.py"))
        .args(check.then_some("--check"))
        .status()
        .expect("run benches/rpc.py");
    status.success()
}

fn main() {
    let check = std::env::args().any(|a| a == "--check");
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let want = |s: &str| args.is_empty() || args.iter().any(|a| a == s);
    let n = std::env::var("RPC_RTT_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(RTT_N);
    let mut misses = 0;
    if want("c") {
        let broker = Broker::start();
        println!(
            "dime rpc bench: in-process broker on {}, {} cpus",
            broker.addr,
            thread::available_parallelism().map_or(0, |n| n.get())
        );
        let mut setups: Vec<Box<dyn RoundTrip>> = vec![
            Box::new(CCall::new(&broker.addr)),
            Box::new(Messaging::new(&broker.addr)),
        ];
        let m = time_rtt(&mut setups, n);
        drop(setups);
        println!(
            "\n1. small round trip ({n} timed per row, interleaved in {BLOCKS} blocks), median"
        );
        println!(
            "   C -> C remote call (dime_call / dime_next_call + dime_reply): {:>7.1} us",
            m[0]
        );
        println!(
            "   messaging A -> B -> A (send_receive both sides, Rust):        {:>7.1} us",
            m[1]
        );
        let ratio = m[0] / m[1];
        let pass = ratio <= TARGET;
        misses += usize::from(!pass);
        println!(
            "{}  C -> C call / messaging round trip: {ratio:.2}x (target <= {TARGET}x)",
            if pass { "PASS" } else { "MISS" }
        );
    }
    if want("python") && !python_part(check) {
        misses += 1;
    }
    if check && misses > 0 {
        std::process::exit(1);
    }
}
