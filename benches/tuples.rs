//! Tuple-space benchmark: `cargo bench --bench tuples` prints
//!
//! 1. out+in pairs per second with 1 and with 8 client processes (each
//!    process puts a tuple and takes it back, in a loop);
//! 2. the latency of an `in` with 100,000 non-matching tuples stored
//!    (different first field, same arity) against an empty space, and the
//!    ratio (target ≤ 2×); for transparency also the worst case, where the
//!    stored tuples share arity and first field and only a later field
//!    differs, which no first-field index can skip.
//!
//! The server runs in this process on a thread; client processes are this
//! same binary re-run with `--worker ADDR N`.
//!
//! The ratio prints PASS or MISS. With `--check`
//! (`cargo bench --bench tuples -- --check`) the process exits with status 1
//! after the whole report if it is MISS, so a perf job can gate on it.

use dime::pattern::Field;
use dime::server::{Config, Server};
use dime::transport::Address;
use dime::{Client, Value};
use std::process::Command;
use std::time::Instant;

const PAIRS_PER_PROCESS: usize = 10_000;
const STORED: i64 = 100_000;
const LAT_N: usize = 2_000;
/// Target for the `in` latency with [`STORED`] non-matching tuples against
/// an empty space.
const RATIO_TARGET: f64 = 2.0;

fn worker(addr: &str, n: usize, tag: i64) {
    let mut c = Client::connect(addr).unwrap();
    let pattern = [Field::Value(Value::I64(tag)), Field::Type("int".into())];
    for i in 0..n {
        c.space("bench")
            .out(&[Value::I64(tag), Value::I64(i as i64)])
            .unwrap();
        c.space("bench").take(&pattern, None).unwrap();
    }
}

fn pairs_per_second(exe: &str, addr: &str, procs: usize) -> f64 {
    let t = Instant::now();
    let children: Vec<_> = (0..procs)
        .map(|p| {
            Command::new(exe)
                .args([
                    "--worker",
                    addr,
                    &PAIRS_PER_PROCESS.to_string(),
                    &p.to_string(),
                ])
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    (procs * PAIRS_PER_PROCESS) as f64 / t.elapsed().as_secs_f64()
}

fn median_in_latency_us(c: &mut Client, space: &str, pattern: &[Field], tuple: &[Value]) -> f64 {
    let mut ns = Vec::with_capacity(LAT_N);
    for _ in 0..LAT_N {
        c.space(space).out(tuple).unwrap();
        let t = Instant::now();
        c.space(space).take(pattern, None).unwrap();
        ns.push(t.elapsed().as_nanos() as u64);
    }
    ns.sort_unstable();
    ns[ns.len() / 2] as f64 / 1e3
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--worker") {
        worker(&args[2], args[3].parse().unwrap(), args[4].parse().unwrap());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::bind(Config {
        listen: vec![Address::Unix(dir.path().join("bench.sock"))],
        ..Config::default()
    })
    .unwrap();
    let addr = server.local_addrs()[0].clone();
    let stop = server.shutdown_handle();
    let thread = std::thread::spawn(move || server.run().unwrap());
    let exe = std::env::current_exe().unwrap().display().to_string();

    println!(
        "dime tuple-space benchmark (server in-process, unix socket, {} pairs per process)\n",
        PAIRS_PER_PROCESS
    );
    let one = pairs_per_second(&exe, &addr, 1);
    let eight = pairs_per_second(&exe, &addr, 8);
    println!(
        "{:<52} {:>12}",
        "out+in pairs per second, 1 process",
        format!("{one:.0}")
    );
    println!(
        "{:<52} {:>12}",
        "out+in pairs per second, 8 processes",
        format!("{eight:.0}")
    );

    let mut c = Client::connect(&addr).unwrap();
    let tuple = [Value::from("job"), Value::I64(1)];
    let pattern = [Field::Value(Value::from("job")), Field::Type("int".into())];
    let empty = median_in_latency_us(&mut c, "lat-empty", &pattern, &tuple);
    for i in 0..STORED {
        c.space("lat-full")
            .out(&[Value::from("noise"), Value::I64(i)])
            .unwrap();
    }
    let full = median_in_latency_us(&mut c, "lat-full", &pattern, &tuple);
    // Worst case: same arity and first field; only the second field differs.
    for i in 0..STORED {
        c.space("lat-worst")
            .out(&[Value::from("job"), Value::from(format!("n{i}").as_str())])
            .unwrap();
    }
    let worst = median_in_latency_us(&mut c, "lat-worst", &pattern, &tuple);
    let ratio = full / empty;
    println!(
        "{:<52} {:>12}",
        "in latency, empty space (median µs)",
        format!("{empty:.1}")
    );
    println!(
        "{:<52} {:>12}",
        "in latency, 100,000 non-matching stored (median µs)",
        format!("{full:.1}")
    );
    println!(
        "{:<52} {:>12}   target ≤ 2.00×  {}",
        "ratio",
        format!("{ratio:.2}×"),
        if ratio <= RATIO_TARGET {
            "PASS"
        } else {
            "MISS"
        }
    );
    println!(
        "{:<52} {:>12}   (no index can skip these; shown for transparency)",
        "in latency, 100,000 same-first-field stored (µs)",
        format!("{worst:.1}")
    );
    stop.shutdown();
    thread.join().unwrap();
    if args.iter().any(|a| a == "--check") && ratio > RATIO_TARGET {
        eprintln!("tuples bench --check: the in-latency ratio target was missed");
        std::process::exit(1);
    }
}
