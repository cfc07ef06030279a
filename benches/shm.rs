//! Shared memory against the socket, by payload size: where the
//! threshold that decides between them (`DEFAULT_SHM_THRESHOLD`) should be.
//!
//! `cargo bench --bench shm` runs, for payloads from 16 KiB to 16 MiB, a
//! round trip A → broker → B (a uint8 matrix, decoded by B, which then
//! drops it and acknowledges with a small message) once with every payload
//! through the unix socket and once with every payload through shared
//! memory, alternating in blocks because this VM's speed drifts. It prints
//! the medians, the smallest size from which shared memory wins, and the
//! threshold in force.
//!
//! With `--check` the process exits with status 1 if shared memory loses
//! to the socket (by more than 10%) at the threshold or above. The server
//! runs in this process, on its own thread.

use dime::client::{ConnectOptions, DEFAULT_SHM_THRESHOLD};
use dime::server::{Config, Server};
use dime::transport::Address;
use dime::{Client, ElemKind, Matrix, Value};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Payload sizes tried, bytes.
const SIZES: [usize; 11] = [
    16 << 10,
    32 << 10,
    64 << 10,
    128 << 10,
    256 << 10,
    512 << 10,
    1 << 20,
    2 << 20,
    4 << 20,
    8 << 20,
    16 << 20,
];
/// Blocks per setup, alternated.
const BLOCKS: usize = 6;

/// One sender/receiver pair with the given options.
struct Pair {
    a: Client,
    b: thread::JoinHandle<()>,
}

impl Pair {
    fn new(addr: &str, opts: ConnectOptions, group: &'static str) -> Pair {
        let (ready_tx, ready_rx) = mpsc::channel();
        let b_addr = addr.to_owned();
        let b_opts = opts.clone();
        let b = thread::spawn(move || {
            let mut b = Client::connect_with(&b_addr, b_opts).expect("B connect");
            b.join(&[group]).unwrap();
            ready_tx.send(()).unwrap();
            loop {
                let got = b.receive(-1, None).unwrap();
                if got.iter().any(|(n, _)| n == "stop") {
                    return;
                }
                // Decoded, then dropped: a shared segment is released.
                drop(got);
                b.send(&format!("{group}_ack"), "ack", &Value::Null)
                    .unwrap();
            }
        });
        ready_rx.recv().unwrap();
        let mut a = Client::connect_with(addr, opts).expect("A connect");
        a.join(&[&format!("{group}_ack")]).unwrap();
        Pair { a, b }
    }

    /// Seconds for one round trip with `v`.
    fn round(&mut self, group: &str, v: &Value) -> f64 {
        let t = Instant::now();
        self.a.send(group, "x", v).unwrap();
        let acks = self.a.receive(-1, None).unwrap();
        assert_eq!(acks.len(), 1);
        t.elapsed().as_secs_f64()
    }

    fn finish(mut self, group: &str) {
        self.a.send(group, "stop", &Value::Null).unwrap();
        self.b.join().unwrap();
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let check = std::env::args().any(|a| a == "--check");
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        listen: vec![Address::Unix(dir.path().join("dime.sock"))],
        ..Config::default()
    };
    let mut server = Server::bind(config).expect("bind");
    let addr = server.local_addrs()[0].clone();
    let handle = server.shutdown_handle();
    let srv = thread::spawn(move || server.run().expect("server"));

    let socket = ConnectOptions {
        shm: false,
        ..ConnectOptions::default()
    };
    let shm = ConnectOptions {
        shm_threshold: 1,
        ..ConnectOptions::default()
    };
    let mut pairs = [
        Pair::new(&addr, socket, "via_socket"),
        Pair::new(&addr, shm, "via_shm"),
    ];
    let groups = ["via_socket", "via_shm"];
    assert!(!pairs[0].a.uses_shm() && pairs[1].a.uses_shm());

    println!("round trip A -> broker -> B (decode, drop) -> ack, median of alternating blocks");
    println!(
        "{:>10} {:>12} {:>12} {:>8}",
        "payload", "socket us", "shm us", "shm/sock"
    );
    let mut crossover = None;
    let mut misses = 0;
    for size in SIZES {
        let v = Value::Matrix(Matrix::new(ElemKind::U8, vec![size], vec![7; size]).unwrap());
        // Enough rounds for a stable median, fewer for big payloads.
        let reps = ((64usize << 20) / size).clamp(8, 200);
        for (p, g) in pairs.iter_mut().zip(groups) {
            for _ in 0..4 {
                p.round(g, &v); // warm-up: segments and buffers exist
            }
        }
        let mut times = [Vec::new(), Vec::new()];
        for _ in 0..BLOCKS {
            for (i, (p, g)) in pairs.iter_mut().zip(groups).enumerate() {
                for _ in 0..reps / BLOCKS + 1 {
                    times[i].push(p.round(g, &v));
                }
            }
        }
        let [sock, mem] = times.map(median);
        let ratio = mem / sock;
        println!(
            "{:>9}K {:>12.1} {:>12.1} {:>8.2}",
            size >> 10,
            sock * 1e6,
            mem * 1e6,
            ratio
        );
        if ratio < 1.0 && crossover.is_none() {
            crossover = Some(size);
        } else if ratio >= 1.0 {
            crossover = None;
        }
        if size >= DEFAULT_SHM_THRESHOLD && ratio > 1.1 {
            misses += 1;
            println!("  MISS shared memory is slower than the socket at {size} bytes");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    match crossover {
        Some(c) => println!("shared memory wins from {} KiB on", c >> 10),
        None => println!("shared memory did not win at the largest size"),
    }
    println!(
        "threshold in force (DEFAULT_SHM_THRESHOLD): {} KiB",
        DEFAULT_SHM_THRESHOLD >> 10
    );
    if misses == 0 {
        println!("  PASS shared memory is not slower than the socket from the threshold up");
    }
    for (p, g) in pairs.into_iter().zip(groups) {
        p.finish(g);
    }
    handle.shutdown();
    srv.join().unwrap();
    if check && misses > 0 {
        eprintln!("shm bench --check: {misses} size(s) missed");
        std::process::exit(1);
    }
}
