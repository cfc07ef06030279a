//! The soak run (issue 20), shared by `benches/soak.rs` (minutes, 200
//! clients) and `tests/soak.rs` (seconds, fewer): well-behaved clients
//! exchange numbered messages and use shares while others connect and
//! disconnect, are SIGKILLed in the middle of a send, stop reading, or
//! send garbage. At the end every message a well-behaved client had
//! accepted must have reached its recipient exactly once and in order,
//! and the server's memory must have stayed within what its limits allow.
#![allow(dead_code)]

use dime::Client;
use dime::Value;
use dime::wire::encode_head;
use serde_json::json;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How big and how long.
pub struct SoakConfig {
    pub well_behaved: usize,
    pub churners: usize,
    pub killed: usize,
    pub slow_readers: usize,
    pub garbage: usize,
    pub duration: Duration,
    /// The server's `--max-queue`.
    pub max_queue: u64,
}

/// What happened.
#[derive(Debug, Default)]
pub struct SoakReport {
    pub sent: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicated_or_reordered: u64,
    pub refused_sends: u64,
    /// Send to delivery, including the time until the recipient next
    /// asked (its own backlog: the clients here share two cores).
    pub latency_p99_ms: f64,
    pub latency_max_ms: f64,
    /// How long a `sync` took to be answered: the delay the server adds.
    pub sync_p99_ms: f64,
    pub sync_max_ms: f64,
    /// Messages accepted before their recipient's previous `sync` began
    /// but not delivered by it: delayed beyond the recipient's backlog.
    pub late: u64,
    pub churned: u64,
    pub killed: u64,
    pub garbage_conns: u64,
    pub rss_start_kib: f64,
    pub rss_max_kib: f64,
    pub rss_end_kib: f64,
    pub rss_bound_kib: f64,
    pub errors: Vec<String>,
}

impl SoakReport {
    /// True when nothing was lost, duplicated or reordered, memory stayed
    /// within bounds and no well-behaved client hit an error.
    pub fn ok(&self) -> bool {
        self.lost == 0
            && self.duplicated_or_reordered == 0
            && self.late == 0
            && self.rss_max_kib <= self.rss_bound_kib
            && self.errors.is_empty()
            && self.delivered > 0
    }
}

fn rss_kib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0.0)
}

fn frame(json: &serde_json::Value, payload: &[u8]) -> Vec<u8> {
    let mut f = encode_head(json.to_string().as_bytes(), payload.len());
    f.extend_from_slice(payload);
    f
}

/// xorshift, per thread.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The `dime` server under soak, with its unix address.
struct Server {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

fn start_server(bin: &str, max_queue: u64) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("soak.sock");
    let mut child = Command::new(bin)
        .arg("-l")
        .arg(format!("unix:{}", sock.display()))
        .args(["--max-conns-per-peer", "0", "--max-queue"])
        .arg(max_queue.to_string())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("dime exited").unwrap();
        if let Some(a) = line.strip_prefix("dime: listening on ") {
            break a.to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Server {
        child,
        addr,
        _dir: dir,
    }
}

/// A message's identity: sender, sequence number, send time (µs since start).
fn encode_msg(sender: usize, seq: u64, at_us: u64, pad: usize) -> Value {
    Value::List(vec![
        Value::I64(sender as i64),
        Value::I64(seq as i64),
        Value::I64(at_us as i64),
        Value::String("p".repeat(pad)),
    ])
}

fn decode_msg(v: &Value) -> Option<(usize, u64, u64)> {
    let Value::List(items) = v else { return None };
    match (items.first(), items.get(1), items.get(2)) {
        (Some(Value::I64(s)), Some(Value::I64(q)), Some(Value::I64(t))) => {
            Some((*s as usize, *q as u64, *t as u64))
        }
        _ => None,
    }
}

/// (sender, recipient) among the well-behaved clients.
type Pair = (usize, usize);
/// (sender, recipient, sequence number).
type MsgId = (usize, usize, u64);
/// A message delivered: sender, recipient, sequence number, and when the
/// recipient's sync before the delivering one began (µs).
type Delivery = (usize, usize, u64, u64);

/// Runs the soak against the `dime` binary at `bin`.
pub fn run(bin: &str, cfg: &SoakConfig) -> SoakReport {
    let server = start_server(bin, cfg.max_queue);
    let pid = server.child.id();
    let addr = server.addr.clone();
    let path = addr.strip_prefix("unix:").unwrap().to_owned();
    let mut report = SoakReport {
        rss_start_kib: rss_kib(pid),
        ..Default::default()
    };
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let n = cfg.well_behaved;

    // Well-behaved clients: connect all first, each in its own group.
    let mut clients: Vec<Client> = (0..n)
        .map(|i| {
            let mut c = Client::connect(&addr).unwrap();
            c.join(&[&format!("w{i}")]).unwrap();
            c
        })
        .collect();
    // What each sender had accepted, per recipient, and what arrived.
    let sent: Arc<Mutex<HashMap<Pair, u64>>> = Arc::default();
    let received: Arc<Mutex<HashMap<Pair, Vec<u64>>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<u64>>> = Arc::default();
    let sync_times: Arc<Mutex<Vec<u64>>> = Arc::default();
    // When each message's send returned, and, per delivery, when the
    // recipient's sync before the delivering one began.
    let accepted: Arc<Mutex<HashMap<MsgId, u64>>> = Arc::default();
    let deliveries: Arc<Mutex<Vec<Delivery>>> = Arc::default();
    let refused = Arc::new(AtomicU64::new(0));

    let mut threads = Vec::new();
    for (i, mut c) in clients.drain(..).enumerate() {
        let (stop, sent, received, latencies, refused, errors) = (
            stop.clone(),
            sent.clone(),
            received.clone(),
            latencies.clone(),
            refused.clone(),
            errors.clone(),
        );
        let (sync_times, accepted, deliveries) =
            (sync_times.clone(), accepted.clone(), deliveries.clone());
        threads.push(std::thread::spawn(move || {
            let mut rng = Rng(0x9E37_79B9 + i as u64 * 7919);
            let mut seqs: HashMap<usize, u64> = HashMap::new();
            let mut prev_sync = 0u64;
            let mut take = |c: &mut Client| -> Result<usize, dime::Error> {
                let asked = start.elapsed().as_micros() as u64;
                let msgs = c.sync(-1)?;
                let now = start.elapsed().as_micros() as u64;
                sync_times.lock().unwrap().push(now - asked);
                let mut r = received.lock().unwrap();
                let mut l = latencies.lock().unwrap();
                let mut d = deliveries.lock().unwrap();
                for (_, v) in &msgs {
                    if let Some((from, seq, at)) = decode_msg(v) {
                        r.entry((from, i)).or_default().push(seq);
                        l.push(now.saturating_sub(at));
                        d.push((from, i, seq, prev_sync));
                    }
                }
                prev_sync = asked;
                Ok(msgs.len())
            };
            while !stop.load(Ordering::Relaxed) {
                let step = match rng.below(10) {
                    0..=5 => {
                        let to = rng.below(n as u64) as usize;
                        let seq = *seqs.entry(to).or_default();
                        let at = start.elapsed().as_micros() as u64;
                        let pad = rng.below(4096) as usize;
                        match c.send(&format!("w{to}"), "m", &encode_msg(i, seq, at, pad)) {
                            Ok(()) => {
                                let done = start.elapsed().as_micros() as u64;
                                accepted.lock().unwrap().insert((i, to, seq), done);
                                seqs.insert(to, seq + 1);
                                sent.lock().unwrap().insert((i, to), seq + 1);
                                Ok(())
                            }
                            // A full queue refuses the message; it was not sent.
                            Err(dime::Error::Server(m)) if m.contains("Queue limit") => {
                                refused.fetch_add(1, Ordering::Relaxed);
                                Ok(())
                            }
                            Err(e) => Err(e),
                        }
                    }
                    6..=7 => take(&mut c).map(drop),
                    8 => c
                        .share("soak")
                        .set(&format!("k{}", i % 16), &Value::I64(i as i64)),
                    _ => c.devices().map(drop),
                };
                if let Err(e) = step {
                    errors.lock().unwrap().push(format!("client {i}: {e}"));
                    return;
                }
            }
            // Drain: everything sent to this client arrives eventually.
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut quiet = 0;
            while quiet < 3 && Instant::now() < deadline {
                match take(&mut c) {
                    Ok(0) => {
                        quiet += 1;
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    Ok(_) => quiet = 0,
                    Err(e) => {
                        errors
                            .lock()
                            .unwrap()
                            .push(format!("client {i} draining: {e}"));
                        return;
                    }
                }
            }
        }));
    }

    // Churners: connect, handshake, join, send a little, leave.
    let churned = Arc::new(AtomicU64::new(0));
    for k in 0..cfg.churners {
        let (stop, addr, churned, n) = (stop.clone(), addr.clone(), churned.clone(), n);
        threads.push(std::thread::spawn(move || {
            let mut rng = Rng(0xC0FFEE + k as u64);
            while !stop.load(Ordering::Relaxed) {
                if let Ok(mut c) = Client::connect(&addr) {
                    let _ = c.join(&[&format!("churn{k}")]);
                    // To a churn group only: well-behaved inboxes carry
                    // numbered messages alone.
                    let _ = c.send(&format!("churn{k}"), "x", &Value::I64(1));
                    let _ = c.devices();
                    if rng.below(2) == 0 {
                        let _ = c.sync(-1);
                    }
                    churned.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(rng.below(20)));
            }
            let _ = n;
        }));
    }

    // Slow readers: in groups that flooders fill up to --max-queue, and
    // sending requests whose replies they never read.
    for k in 0..cfg.slow_readers {
        let (stop, path, addr) = (stop.clone(), path.clone(), addr.clone());
        threads.push(std::thread::spawn(move || {
            let Ok(mut s) = UnixStream::connect(&path) else {
                return;
            };
            let _ = s.write_all(&frame(
                &json!({"command": "handshake", "serialization": "dimeb"}),
                &[],
            ));
            let _ = s.write_all(&frame(
                &json!({"command": "join", "name": [format!("slow{k}")]}),
                &[],
            ));
            let _ = s.set_nonblocking(true);
            let mut flooder = Client::connect(&addr).ok();
            let big = Value::String("f".repeat(256 << 10));
            let devices = frame(&json!({"command": "devices"}), &[]);
            while !stop.load(Ordering::Relaxed) {
                // Replies pile up unread until the socket is full.
                let _ = s.write(&devices);
                if let Some(f) = flooder.as_mut() {
                    // Refused once the slow reader's queue is full.
                    let _ = f.send(&format!("slow{k}"), "flood", &big);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }));
    }

    // Garbage: connections that send bytes that are not DiME, or frames
    // whose JSON is broken, or a frame cut short.
    let garbage = Arc::new(AtomicU64::new(0));
    for k in 0..cfg.garbage {
        let (stop, path, garbage) = (stop.clone(), path.clone(), garbage.clone());
        threads.push(std::thread::spawn(move || {
            let mut rng = Rng(0xBAD + k as u64);
            while !stop.load(Ordering::Relaxed) {
                if let Ok(mut s) = UnixStream::connect(&path) {
                    let bytes: Vec<u8> = match rng.below(4) {
                        0 => (0..rng.below(2000)).map(|_| rng.next() as u8).collect(),
                        1 => frame(&json!({"command": "send", "name": 5}), b"junk"),
                        2 => {
                            let mut f = b"DiME".to_vec();
                            f.extend_from_slice(&[0, 0, 0, 200, 0, 0, 0, 9]);
                            f.extend_from_slice(b"{\"command\":");
                            f
                        }
                        _ => {
                            let mut f = frame(&json!({"command": "handshake"}), &[]);
                            f.extend_from_slice(b"DiME\xff\xff\xff\xff\x00\x00\x00\x00");
                            f
                        }
                    };
                    let _ = s.write_all(&bytes);
                    let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
                    let mut sink = [0u8; 4096];
                    let _ = s.read(&mut sink);
                    garbage.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(rng.below(10)));
            }
        }));
    }

    // Killed mid-send: a forked child writes a large message slowly and is
    // SIGKILLed partway through.
    let killed = Arc::new(AtomicU64::new(0));
    for k in 0..cfg.killed {
        let (stop, path, killed) = (stop.clone(), path.clone(), killed.clone());
        threads.push(std::thread::spawn(move || {
            let mut rng = Rng(0xDEAD + k as u64);
            while !stop.load(Ordering::Relaxed) {
                let Ok(s) = UnixStream::connect(&path) else {
                    continue;
                };
                let mut bytes = frame(
                    &json!({"command": "handshake", "serialization": "dimeb"}),
                    &[],
                );
                let payload =
                    dime::codec::dimeb::encode(&Value::String("k".repeat(1 << 20))).unwrap();
                bytes.extend(frame(
                    &json!({"command": "broadcast", "varname": "half", "serialization": "dimeb"}),
                    &payload,
                ));
                let fd = s.as_raw_fd();
                // SAFETY: the child only calls write and nanosleep (both
                // async-signal-safe) on memory prepared before the fork.
                let child = unsafe { libc::fork() };
                if child == 0 {
                    let mut off = 0usize;
                    let ts = libc::timespec {
                        tv_sec: 0,
                        tv_nsec: 200_000,
                    };
                    loop {
                        let end = (off + 4096).min(bytes.len() - 1);
                        let w =
                            unsafe { libc::write(fd, bytes[off..end].as_ptr().cast(), end - off) };
                        if w > 0 {
                            off += w as usize;
                        }
                        unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
                    }
                }
                drop(s);
                std::thread::sleep(Duration::from_millis(5 + rng.below(50)));
                if child > 0 {
                    unsafe {
                        libc::kill(child, libc::SIGKILL);
                        libc::waitpid(child, std::ptr::null_mut(), 0);
                    }
                    killed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }

    // Watch the server's memory while it runs.
    let mut rss_max: f64 = 0.0;
    while start.elapsed() < cfg.duration {
        std::thread::sleep(Duration::from_millis(250));
        rss_max = rss_max.max(rss_kib(pid));
    }
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        let _ = t.join();
    }
    rss_max = rss_max.max(rss_kib(pid));

    // Accounting.
    let sent = sent.lock().unwrap();
    let received = received.lock().unwrap();
    for (&(from, to), &count) in sent.iter() {
        report.sent += count;
        let got = received.get(&(from, to)).cloned().unwrap_or_default();
        report.delivered += got.len() as u64;
        let want: Vec<u64> = (0..count).collect();
        if got != want {
            let have: std::collections::HashSet<u64> = got.iter().copied().collect();
            report.lost += want.iter().filter(|s| !have.contains(s)).count() as u64;
            if got.len() != have.len() || !got.windows(2).all(|w| w[0] < w[1]) {
                report.duplicated_or_reordered += 1;
            }
        }
    }
    let p99_max = |v: &Mutex<Vec<u64>>| {
        let mut v = v.lock().unwrap().clone();
        v.sort_unstable();
        match v.last() {
            Some(&max) => (v[v.len() * 99 / 100] as f64 / 1e3, max as f64 / 1e3),
            None => (0.0, 0.0),
        }
    };
    (report.latency_p99_ms, report.latency_max_ms) = p99_max(&latencies);
    (report.sync_p99_ms, report.sync_max_ms) = p99_max(&sync_times);
    let accepted = accepted.lock().unwrap();
    report.late = deliveries
        .lock()
        .unwrap()
        .iter()
        .filter(|(from, to, seq, prev_sync)| {
            accepted
                .get(&(*from, *to, *seq))
                .is_some_and(|at| at < prev_sync)
        })
        .count() as u64;
    report.refused_sends = refused.load(Ordering::Relaxed);
    report.churned = churned.load(Ordering::Relaxed);
    report.killed = killed.load(Ordering::Relaxed);
    report.garbage_conns = garbage.load(Ordering::Relaxed);
    report.rss_max_kib = rss_max;
    report.rss_end_kib = rss_kib(pid);
    // What the limits allow: each slow reader's queue and unread output
    // (--max-queue, plus the 16 MiB output backlog past which the server
    // stops reading it), each killed sender's half message (1 MiB), and
    // 64 MiB for everything else (well-behaved queues, shares, buffers).
    let mib = 1024.0;
    report.rss_bound_kib = report.rss_start_kib
        + cfg.slow_readers as f64 * (cfg.max_queue as f64 / 1024.0 + 16.0 * mib)
        + cfg.killed as f64 * mib
        + 64.0 * mib;
    report.errors = errors.lock().unwrap().clone();
    let mut child = server.child;
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = child.wait();
    report
}

/// The report as a few lines.
pub fn describe(cfg: &SoakConfig, r: &SoakReport) -> String {
    format!(
        "soak: {} s, {} well-behaved clients, {} churners ({} connections), {} killed mid-send ({} kills), \
         {} slow readers, {} garbage senders ({} connections)\n  \
         messages: {} accepted, {} delivered, {} lost, {} out of order or twice; {} refused (full queues)\n  \
         delivered after the recipient's previous sync although accepted before it: {}\n  \
         sync answered in: p99 {:.1} ms, max {:.1} ms (send to delivery, with the recipient's \
         own polling: p99 {:.1} ms, max {:.1} ms)\n  \
         server RSS: {:.0} KiB at start, {:.0} max, {:.0} at end; bound from limits {:.0}\n  \
         errors: {}",
        cfg.duration.as_secs(),
        cfg.well_behaved,
        cfg.churners,
        r.churned,
        cfg.killed,
        r.killed,
        cfg.slow_readers,
        cfg.garbage,
        r.garbage_conns,
        r.sent,
        r.delivered,
        r.lost,
        r.duplicated_or_reordered,
        r.refused_sends,
        r.late,
        r.sync_p99_ms,
        r.sync_max_ms,
        r.latency_p99_ms,
        r.latency_max_ms,
        r.rss_start_kib,
        r.rss_max_kib,
        r.rss_end_kib,
        r.rss_bound_kib,
        if r.errors.is_empty() {
            "none".to_owned()
        } else {
            r.errors.join("; ")
        }
    )
}
