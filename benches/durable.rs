//! What durability costs: share SET with `--data-dir` (fsync `everysec`)
//! against the same broker in memory and against Redis with
//! `appendonly yes, appendfsync everysec`, in one run. `cargo bench
//! --bench durable` starts the three servers on unix sockets (the data
//! directories in one temporary directory on the same disk) and drives
//! them with the share bench's driver (one request in flight per client):
//! SET of a 64-byte value with 1, 8 and 50 clients, median of interleaved
//! runs.
//!
//! Targets per cell: durable ops/s ≥ 0.8 × in-memory, and ≥ 1.0 × Redis.
//! Each cell prints PASS or MISS; with `--check` the process exits 1 after
//! the report if any missed. Needs Debian's `redis-server`.

mod common;

use common::kv::{Cell, REPEATS, dime_reply, drive, request, resp_reply, resp_request};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A server process, killed on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn dime(sock: &str, extra: &[&str]) -> Server {
    Server(
        Command::new(env!("CARGO_BIN_EXE_dime"))
            .args(["-l", &format!("unix:{sock}")])
            .args(extra)
            .spawn()
            .expect("start dime"),
    )
}

fn wait_for(socks: &[&str]) {
    let t = Instant::now();
    while !socks.iter().all(|s| Path::new(s).exists()) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "a server did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let path = |n: &str| dir.path().join(n).display().to_string();
    let (mem_sock, disk_sock, redis_sock) =
        (path("mem.sock"), path("disk.sock"), path("redis.sock"));
    let (data, redis_dir) = (path("data"), path("redis"));
    std::fs::create_dir_all(&redis_dir).unwrap();
    let redis = match Command::new("redis-server")
        .args(["--port", "0", "--unixsocket", &redis_sock, "--save", ""])
        .args(["--appendonly", "yes", "--appendfsync", "everysec"])
        .args(["--dir", &redis_dir])
        .stdout(Stdio::null())
        .spawn()
    {
        Ok(c) => Server(c),
        Err(e) => {
            eprintln!("redis-server not available ({e}); install Debian's redis-server package");
            std::process::exit(1);
        }
    };
    let mem = dime(&mem_sock, &[]);
    let disk = dime(&disk_sock, &["--data-dir", &data, "--fsync", "everysec"]);
    wait_for(&[&mem_sock, &disk_sock, &redis_sock]);

    println!(
        "share SET, 64 B: --data-dir (fsync everysec) vs in memory vs Redis {} with \
         appendonly/everysec (unix sockets, one request in flight per client; median of \
         {REPEATS} interleaved runs)\n",
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
        "{:<12} {:>12} {:>12} {:>12} {:>9} {:>9}",
        "clients", "durable/s", "memory/s", "redis/s", "÷memory", "÷redis"
    );
    let scale: usize = std::env::var("DIME_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let size = 64;
    let mut misses = 0;
    for clients in [1usize, 8, 50] {
        let total = scale * 50_000;
        let (set, rset) = (request("set", size), resp_request("set", size));
        // Warm up: creates the key (and the log's first pages).
        for addr in [&mem_sock, &disk_sock] {
            drive(addr, clients, clients * 4, &set, dime_reply);
        }
        drive(&redis_sock, clients, clients * 4, &rset, resp_reply);
        let (mut d, mut m, mut r) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..REPEATS {
            d.push(drive(&disk_sock, clients, total, &set, dime_reply));
            m.push(drive(&mem_sock, clients, total, &set, dime_reply));
            r.push(drive(&redis_sock, clients, total, &rset, resp_reply));
        }
        let (d, m, r) = (Cell::median(d), Cell::median(m), Cell::median(r));
        let (vs_mem, vs_redis) = (d.ops / m.ops, d.ops / r.ops);
        let ok = vs_mem >= 0.8 && vs_redis >= 1.0;
        misses += usize::from(!ok);
        println!(
            "{:<12} {:>12.0} {:>12.0} {:>12.0} {:>8.2}× {:>8.2}×   {}",
            clients,
            d.ops,
            m.ops,
            r.ops,
            vs_mem,
            vs_redis,
            if ok { "PASS" } else { "MISS" }
        );
    }
    println!(
        "\ntarget: durable ≥ 0.8 × in memory and ≥ 1.0 × Redis (AOF everysec) in every row; \
         {misses} row(s) missed"
    );
    drop((mem, disk, redis));
    if std::env::args().any(|a| a == "--check") && misses > 0 {
        eprintln!("durable bench --check: {misses} row(s) missed");
        std::process::exit(1);
    }
}
