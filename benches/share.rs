//! Shared-dictionary benchmark against Redis, in one run:
//! `cargo bench --bench share` starts `redis-server` (Debian package) on a
//! unix socket and our `dime` binary on another, then measures SET and
//! GET of a 64-byte and a 1 MB value with 1 and 50 clients: ops/s and p50
//! latency. Both servers are driven by the same single-threaded driver here
//! (one non-blocking connection per client, one request in flight per
//! connection, as `redis-benchmark -P 1`), speaking DiME to ours and RESP
//! to Redis; `redis-benchmark`'s own figures are printed for reference.
//!
//! Each cell prints PASS or MISS. With `--check`
//! (`cargo bench --bench share -- --check`) the process exits with status 1
//! after the whole report if any cell is MISS, so a perf job can gate on it.

mod common;

use common::kv::{Cell, REPEATS, dime_reply, drive, request, resp_reply, resp_request};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn redis_cells(sock: &str, clients: usize, total: usize, size: usize) -> (Cell, Cell) {
    let out = Command::new("redis-benchmark")
        .args([
            "-s",
            sock,
            "-t",
            "set,get",
            "-c",
            &clients.to_string(),
            "-n",
            &total.to_string(),
        ])
        .args(["-d", &size.to_string(), "-r", "1", "--csv", "-q"])
        .output()
        .expect("redis-benchmark");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut cells = Vec::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("\"SET\"") || l.starts_with("\"GET\""))
    {
        let cols: Vec<f64> = line
            .split(',')
            .skip(1)
            .map(|c| c.trim_matches('"').parse().unwrap_or(0.0))
            .collect();
        // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",...
        cells.push(Cell {
            ops: cols[0],
            p50_us: cols[3] * 1e3,
        });
    }
    assert_eq!(cells.len(), 2, "unexpected redis-benchmark output: {text}");
    let get = cells.pop().unwrap();
    let set = cells.pop().unwrap();
    (set, get)
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let redis_sock = dir.path().join("redis.sock").display().to_string();
    let mut redis = match Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--unixsocket",
            &redis_sock,
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("redis-server not available ({e}); install Debian's redis-server package");
            std::process::exit(1);
        }
    };
    // Our server runs as its own process with default flags, like Redis.
    // DIME_BENCH_ADDR=/path/to.sock measures one started by hand instead
    // (to profile it alone).
    let (addr, mut server) = match std::env::var("DIME_BENCH_ADDR") {
        Ok(a) => (a, None),
        Err(_) => {
            let addr = dir.path().join("dime.sock").display().to_string();
            let child = Command::new(env!("CARGO_BIN_EXE_dime"))
                .args(["-l", &format!("unix:{addr}")])
                .spawn()
                .expect("start dime");
            (addr, Some(child))
        }
    };
    // `cargo bench --bench share -- "SET 64 B"` runs only the matching cells.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let t = Instant::now();
    while !std::path::Path::new(&redis_sock).exists() || !std::path::Path::new(&addr).exists() {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "a server did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    println!(
        "shared dictionary vs Redis {} (both on unix sockets, one request in flight per client; median of {REPEATS} interleaved runs)\n",
        String::from_utf8_lossy(
            &Command::new("redis-server")
                .arg("--version")
                .output()
                .unwrap()
                .stdout
        )
        .split_whitespace()
        .nth(2)
        .unwrap_or("?")
    );
    println!(
        "{:<22} {:>12} {:>12} {:>7}   {:>9} {:>9} {:>7}   {:>16}",
        "cell",
        "dime ops/s",
        "redis ops/s",
        "ratio",
        "dime p50",
        "redis p50",
        "ratio",
        "redis-benchmark"
    );
    let mut misses = 0;
    for (size, label) in [(64usize, "64 B"), (1 << 20, "1 MB")] {
        for clients in [1usize, 50] {
            let label_of = |op: &str| format!("{} {label}, {clients} cl", op.to_uppercase());
            if let Some(f) = &filter {
                if !label_of("set").contains(f.as_str()) && !label_of("get").contains(f.as_str()) {
                    continue;
                }
            }
            // DIME_BENCH_SCALE=10 runs longer, for profiling.
            let scale: usize = std::env::var("DIME_BENCH_SCALE")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(1);
            let total = scale * if size > 1000 { 5_000 } else { 50_000 };
            let (bset, bget) = redis_cells(&redis_sock, clients, total, size);
            // Warm up (creates the keys), then measure both with the same driver.
            drive(
                &addr,
                clients,
                clients * 4,
                &request("set", size),
                dime_reply,
            );
            drive(
                &redis_sock,
                clients,
                clients * 4,
                &resp_request("set", size),
                resp_reply,
            );
            for (op, b) in [("set", bset), ("get", bget)] {
                if filter
                    .as_ref()
                    .is_some_and(|f| !label_of(op).contains(f.as_str()))
                {
                    continue;
                }
                // Interleaved repeats, median of each figure: one stall on
                // this shared VM must not decide a cell.
                let (mut ds, mut rs) = (Vec::new(), Vec::new());
                for _ in 0..REPEATS {
                    ds.push(drive(&addr, clients, total, &request(op, size), dime_reply));
                    rs.push(drive(
                        &redis_sock,
                        clients,
                        total,
                        &resp_request(op, size),
                        resp_reply,
                    ));
                }
                let (d, r) = (Cell::median(ds), Cell::median(rs));
                let ops_ratio = d.ops / r.ops;
                let p50_ratio = d.p50_us / r.p50_us;
                let ok = ops_ratio >= 1.0 && p50_ratio <= 1.0;
                misses += usize::from(!ok);
                println!(
                    "{:<22} {:>12.0} {:>12.0} {:>6.2}×   {:>7.1}µs {:>7.1}µs {:>6.2}×   {:>7.0} {:>6.0}µs  {}",
                    label_of(op),
                    d.ops,
                    r.ops,
                    ops_ratio,
                    d.p50_us,
                    r.p50_us,
                    p50_ratio,
                    b.ops,
                    b.p50_us,
                    if ok { "PASS" } else { "MISS" }
                );
            }
        }
    }
    println!("\ntarget: dime ops/s ≥ Redis and p50 ≤ Redis in every cell; {misses} cell(s) missed");
    println!(
        "(one driver measures both servers; the last columns are redis-benchmark's own ops/s and p50, for reference)"
    );
    let _ = redis.kill();
    let _ = redis.wait();
    if let Some(child) = server.as_mut() {
        let _ = child.kill();
        let _ = child.wait();
    }
    if std::env::args().any(|a| a == "--check") && misses > 0 {
        eprintln!("share bench --check: {misses} cell(s) missed");
        std::process::exit(1);
    }
}
