//! 10,000 clients on one server (issue 20): every client connected and
//! handshaken, each in a group of its own; then `devices()` timed (it lists
//! 10,000 groups), one message sent from the first client to the last
//! one's group and timed until the last has it, and the server's resident
//! memory per idle client measured.
//!
//! `cargo bench --bench scale` prints the figures against their targets
//! (devices < 50 ms, memory per idle client ≤ 16 KB). The server is the
//! `dime` binary in its own process (so its memory is its own), on a unix
//! socket in a temporary directory, started with `--max-conns-per-peer 0`.
//! `SCALE_CLIENTS` changes the count. With `--check`
//! (`cargo bench --bench scale -- --check`) the process exits with status 1
//! if a target is missed.

use dime::Client;
use dime::Value;
use dime::wire::encode_head;
use serde_json::{Value as Json, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DEVICES_TARGET_MS: f64 = 50.0;
const MEMORY_TARGET_KB: f64 = 16.0;

fn frame(json: &Json, payload: &[u8]) -> Vec<u8> {
    let mut f = encode_head(json.to_string().as_bytes(), payload.len());
    f.extend_from_slice(payload);
    f
}

/// Reads one frame's JSON.
fn recv(s: &mut UnixStream) -> Json {
    let mut prefix = [0u8; 12];
    s.read_exact(&mut prefix)
        .expect("server closed a connection");
    let jl = u32::from_be_bytes(prefix[4..8].try_into().unwrap()) as usize;
    let pl = u32::from_be_bytes(prefix[8..12].try_into().unwrap()) as usize;
    let mut body = vec![0u8; jl + pl];
    s.read_exact(&mut body).unwrap();
    serde_json::from_slice(&body[..jl]).unwrap()
}

/// The resident set size of process `pid`, in KiB.
fn rss_kib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a stack struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "MISS" }
}

fn main() {
    let check = std::env::args().any(|a| a == "--check");
    let n: usize = std::env::var("SCALE_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let limit = raise_fd_limit();
    if limit < n as u64 + 100 {
        eprintln!("scale: the open-file limit {limit} is too low for {n} clients");
        std::process::exit(2);
    }
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("dime.sock");
    let mut server = Command::new(env!("CARGO_BIN_EXE_dime"))
        .arg("-l")
        .arg(format!("unix:{}", sock.display()))
        .args(["--max-conns-per-peer", "0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("dime exited").unwrap();
        if let Some(a) = line.strip_prefix("dime: listening on ") {
            break a.to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let pid = server.id();
    std::thread::sleep(Duration::from_millis(200));
    let rss_before = rss_kib(pid);

    let started = Instant::now();
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        let mut s = UnixStream::connect(&sock).unwrap();
        let mut bytes = frame(
            &json!({"command": "handshake", "serialization": "dimeb"}),
            &[],
        );
        bytes.extend(frame(
            &json!({"command": "join", "name": [format!("g{i}")]}),
            &[],
        ));
        s.write_all(&bytes).unwrap();
        clients.push(s);
    }
    for s in &mut clients {
        assert_eq!(recv(s)["status"], 0);
        assert_eq!(recv(s)["status"], 0);
    }
    let connect_s = started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(1));
    let rss_after = rss_kib(pid);
    let per_client_kib = (rss_after - rss_before) / n as f64;

    let mut probe = Client::connect(&addr).unwrap();
    let mut times = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        let d = probe.devices().unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(d.len(), n);
    }
    times.sort_by(f64::total_cmp);
    let devices_ms = times[times.len() / 2];

    let payload = dime::codec::dimeb::encode(&Value::I64(42)).unwrap();
    let t = Instant::now();
    let send = json!({"command": "send", "name": format!("g{}", n - 1), "varname": "x",
                      "serialization": "dimeb"});
    clients[0].write_all(&frame(&send, &payload)).unwrap();
    assert_eq!(recv(&mut clients[0])["status"], 0);
    let last = clients.last_mut().unwrap();
    last.write_all(&frame(&json!({"command": "sync", "n": 1}), &[]))
        .unwrap();
    let got = recv(last);
    let delivered_us = t.elapsed().as_secs_f64() * 1e6;
    assert_eq!(
        got["varname"], "x",
        "the last client did not get the message"
    );
    assert_eq!(recv(last)["status"], 0);

    let devices_ok = devices_ms < DEVICES_TARGET_MS;
    let memory_ok = per_client_kib <= MEMORY_TARGET_KB;
    println!("scale: {n} clients on one server (unix socket), each in its own group");
    println!("  connect + handshake + join, all    {connect_s:>9.2} s");
    println!(
        "  devices() ({n} groups), median of 7 {devices_ms:>9.2} ms   target < {DEVICES_TARGET_MS} ms   {}",
        verdict(devices_ok)
    );
    println!("  one message first -> last, sync'd {delivered_us:>9.0} µs   delivered");
    println!(
        "  server memory per idle client      {per_client_kib:>9.2} KiB  target ≤ {MEMORY_TARGET_KB} KiB  {} (RSS {rss_before:.0} -> {rss_after:.0} KiB)",
        verdict(memory_ok)
    );
    drop(clients);
    drop(probe);
    // SAFETY: signals our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = server.wait();
    if check && !(devices_ok && memory_ok) {
        std::process::exit(1);
    }
}
