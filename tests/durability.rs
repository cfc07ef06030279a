//! `--data-dir`: shares and tuple spaces survive restarts and crashes; a
//! damaged log tail is cut with a warning; a snapshot of another format
//! version is refused; the log is rewritten into snapshots without
//! holding clients up.

mod common;

use common::TestServer;
use dime::pattern::Field;
use dime::server::{Durability, FsyncPolicy};
use dime::{Client, Error, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The `dime` binary on a data directory, its stderr collected.
struct Broker {
    child: Child,
    addr: String,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Broker {
    /// Starts the broker and waits until it listens; Err(stderr) if it
    /// exits first.
    fn try_start(sock: &Path, data: &Path, extra: &[&str]) -> Result<Broker, String> {
        let child = Command::new(env!("CARGO_BIN_EXE_dime"))
            .arg("-l")
            .arg(format!("unix:{}", sock.display()))
            .arg("--data-dir")
            .arg(data)
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut b = Broker {
            child,
            addr: String::new(),
            stderr: lines.clone(),
        };
        let mut stderr = BufReader::new(b.child.stderr.take().unwrap());
        loop {
            let mut line = String::new();
            if stderr.read_line(&mut line).unwrap_or(0) == 0 {
                let _ = b.child.wait();
                return Err(lines.lock().unwrap().join(""));
            }
            lines.lock().unwrap().push(line.clone());
            if let Some(a) = line.trim().strip_prefix("dime: listening on ") {
                b.addr = a.to_owned();
                std::thread::spawn(move || {
                    for line in stderr.lines() {
                        let Ok(line) = line else { break };
                        lines.lock().unwrap().push(line);
                    }
                });
                return Ok(b);
            }
        }
    }

    fn start(sock: &Path, data: &Path, extra: &[&str]) -> Broker {
        Broker::try_start(sock, data, extra).unwrap_or_else(|e| panic!("broker failed: {e}"))
    }

    fn client(&self) -> Client {
        Client::connect(&self.addr).unwrap()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// SIGKILL: no chance to write or sync anything more.
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit.
    fn stop(mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        assert!(self.child.wait().unwrap().success());
    }
}

fn server_with(dir: &Path, fsync: FsyncPolicy, rewrite_after: u64) -> TestServer {
    let dir = dir.to_owned();
    TestServer::start_with(move |c| {
        c.durability = Some(Durability {
            dir,
            fsync,
            rewrite_after,
        })
    })
}

fn logs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("log."))
        .collect();
    v.sort();
    v
}

fn fill(c: &mut Client) {
    let mut s = c.share("jobs");
    s.set("a", &Value::from("alpha")).unwrap();
    s.set("b", &Value::I64(2)).unwrap();
    s.set("gone", &Value::Null).unwrap();
    assert!(s.del("gone").unwrap());
    s.incr("n", &Value::I64(5)).unwrap();
    s.incr("n", &Value::I64(2)).unwrap();
    assert!(s.cas("b", Some(&Value::I64(2)), &Value::I64(3)).unwrap());
    s.set_many(&[("x", &Value::F64(1.5)), ("y", &Value::Bool(true))])
        .unwrap();
    assert_eq!(s.pop("y").unwrap(), Some(Value::Bool(true)));
    c.share("cleared").set("k", &Value::I64(1)).unwrap();
    c.share("cleared").clear().unwrap();
    let mut t = c.space("work");
    for i in 0..4 {
        t.out(&[Value::from("task"), Value::I64(i)]).unwrap();
    }
    let took = t
        .try_take(&[Field::Value(Value::from("task")), Field::Any])
        .unwrap();
    assert_eq!(took.unwrap()[1], Value::I64(0));
}

fn check(c: &mut Client) {
    let mut s = c.share("jobs");
    assert_eq!(s.keys().unwrap(), ["a", "b", "n", "x"]);
    assert_eq!(s.get("a").unwrap(), Some(Value::from("alpha")));
    assert_eq!(s.get("b").unwrap(), Some(Value::I64(3)));
    assert_eq!(s.get("n").unwrap(), Some(Value::I64(7)));
    assert_eq!(s.get("x").unwrap(), Some(Value::F64(1.5)));
    assert_eq!(c.share("cleared").len().unwrap(), 0);
    let mut t = c.space("work");
    let pat = [Field::Value(Value::from("task")), Field::Any];
    assert_eq!(t.count(&pat).unwrap(), 3);
    // Oldest first, as before the restart.
    for i in 1..4 {
        assert_eq!(t.try_take(&pat).unwrap().unwrap()[1], Value::I64(i));
    }
}

#[test]
fn shares_and_spaces_survive_a_restart_under_every_policy() {
    for policy in [FsyncPolicy::Always, FsyncPolicy::EverySec, FsyncPolicy::No] {
        let data = tempfile::tempdir().unwrap();
        {
            let srv = server_with(data.path(), policy, 64 << 20);
            fill(&mut srv.client());
        }
        let srv = server_with(data.path(), policy, 64 << 20);
        check(&mut srv.client());
    }
}

#[test]
fn without_a_data_dir_nothing_is_written() {
    let srv = TestServer::start();
    fill(&mut srv.client());
    let names: Vec<_> = std::fs::read_dir(srv.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["dime.sock"]);
}

#[test]
fn the_log_is_rewritten_into_a_snapshot_and_old_logs_go() {
    let data = tempfile::tempdir().unwrap();
    {
        let srv = server_with(data.path(), FsyncPolicy::EverySec, 16 << 10);
        let mut c = srv.client();
        fill(&mut c);
        // Overwrite a few keys many times: the log grows, the state does not.
        for i in 0..3000 {
            c.share("churn")
                .set(&format!("k{}", i % 10), &Value::I64(i))
                .unwrap();
        }
        let t = Instant::now();
        while !data.path().join("snapshot.bin").exists() {
            assert!(t.elapsed() < Duration::from_secs(10), "no snapshot");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    assert!(
        logs(data.path()).len() <= 2,
        "covered logs are deleted: {:?}",
        logs(data.path())
    );
    let total: u64 = logs(data.path())
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(
        total < 3000 * 30,
        "the logs were not rewritten: {total} bytes"
    );
    let srv = server_with(data.path(), FsyncPolicy::EverySec, 16 << 10);
    let mut c = srv.client();
    check(&mut c);
    for k in 0..10 {
        assert_eq!(
            c.share("churn").get(&format!("k{k}")).unwrap(),
            Some(Value::I64(2990 + k))
        );
    }
}

#[test]
fn a_rewrite_of_a_large_state_does_not_hold_clients_up() {
    let data = tempfile::tempdir().unwrap();
    let srv = server_with(data.path(), FsyncPolicy::EverySec, 4 << 20);
    let mut c = srv.client();
    // 200k keys in one share (about 6 MB of log): the rewrite's image is
    // taken while clients wait, and must cost a pointer copy, not a copy
    // of the share.
    let value = Value::from("v".repeat(8).as_str());
    let mut n = 0;
    let mut worst = Duration::ZERO;
    let mut worst_during = Duration::ZERO;
    while !data.path().join("snapshot.bin").exists() || n < 200_000 {
        let items: Vec<(String, Value)> = (n..n + 500)
            .map(|i| (format!("key{i:07}"), value.clone()))
            .collect();
        let refs: Vec<(&str, &Value)> = items.iter().map(|(k, v)| (k.as_str(), v)).collect();
        c.share("big").set_many(&refs).unwrap();
        n += 500;
        let t = Instant::now();
        c.share("big").get("key0000001").unwrap();
        let took = t.elapsed();
        worst = worst.max(took);
        if logs(data.path()).len() > 1 {
            worst_during = worst_during.max(took);
        }
        assert!(n < 2_000_000, "no rewrite happened");
    }
    assert_eq!(c.share("big").len().unwrap(), n as usize);
    // Generous for a loaded debug build; a copy of 200k keys takes far more.
    assert!(
        worst < Duration::from_millis(100),
        "a request waited {worst:?} (during the rewrite: {worst_during:?})"
    );
    drop(c);
    drop(srv);
    let srv = server_with(data.path(), FsyncPolicy::EverySec, 4 << 20);
    let mut c = srv.client();
    assert_eq!(c.share("big").len().unwrap(), n as usize);
    assert_eq!(
        c.share("big").get(&format!("key{:07}", n - 1)).unwrap(),
        Some(value)
    );
}

/// One storm client: sets its own key to 1, 2, 3 … and puts a tuple per
/// step, until the broker dies; returns when each step was acknowledged.
fn storm_client(addr: &str, who: i64, stop: &AtomicBool) -> Vec<Instant> {
    let mut c = Client::connect(addr).unwrap();
    let mut acked = Vec::new();
    for step in 1.. {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let key = format!("c{who}");
        if c.share("storm").set(&key, &Value::I64(step)).is_err() {
            break;
        }
        if c.space("storm")
            .out(&[Value::I64(who), Value::I64(step)])
            .is_err()
        {
            break;
        }
        acked.push(Instant::now());
    }
    acked
}

#[test]
fn a_killed_broker_loses_nothing_acknowledged_beyond_its_policy() {
    for policy in ["always", "everysec", "no"] {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("d.sock");
        let data = dir.path().join("data");
        // A small rewrite size, so a rewrite may be running when it dies.
        let b = Broker::start(
            &sock,
            &data,
            &["--fsync", policy, "--log-rewrite-size", "65536"],
        );
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..8)
            .map(|who| {
                let (addr, stop) = (b.addr.clone(), stop.clone());
                std::thread::spawn(move || storm_client(&addr, who, &stop))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(1500));
        let killed = Instant::now();
        b.kill();
        stop.store(true, Ordering::SeqCst);
        let acked: Vec<Vec<Instant>> = clients.into_iter().map(|t| t.join().unwrap()).collect();

        let b = Broker::start(&sock, &data, &["--fsync", policy]);
        let mut c = b.client();
        for (who, times) in acked.iter().enumerate() {
            let n = times.len() as i64;
            assert!(n > 0, "{policy}: c{who} did nothing");
            // `always` keeps every acknowledged step; the others a process
            // kill may cost what the log writer had not written yet (about
            // a millisecond), and never more than the last second.
            let must = if policy == "always" {
                n
            } else {
                times
                    .iter()
                    .filter(|t| **t + Duration::from_secs(1) <= killed)
                    .count() as i64
            };
            let got = c.share("storm").get(&format!("c{who}")).unwrap();
            let v = match got {
                Some(Value::I64(v)) => v,
                None => 0,
                other => panic!("{policy}: c{who} is {other:?}"),
            };
            assert!(
                v >= must && v <= n + 1,
                "{policy}: c{who}: {v}, acked {n}, must {must}"
            );
            // The log is replayed as a prefix: each step's set comes before
            // its tuple, so there are v or v - 1 tuples, one of each step.
            let mut steps = Vec::new();
            let pat = [Field::Value(Value::I64(who as i64)), Field::Any];
            while let Some(t) = c.space("storm").try_take(&pat).unwrap() {
                steps.push(t[1].clone());
            }
            let t = steps.len() as i64;
            assert!(
                t == v || t == v - 1,
                "{policy}: c{who}: value {v}, {t} tuples"
            );
            let want: Vec<Value> = (1..=t).map(Value::I64).collect();
            assert_eq!(
                steps, want,
                "{policy}: c{who}: tuples out of order or repeated"
            );
        }
        b.stop();
    }
}

/// Writes a few records through a broker, stops it, and returns the log.
fn one_log(data: &Path, sock: &Path) -> PathBuf {
    let b = Broker::start(sock, data, &[]);
    let mut c = b.client();
    c.share("s").set("first", &Value::I64(1)).unwrap();
    c.share("s").set("second", &Value::I64(2)).unwrap();
    c.share("s")
        .set("third", &Value::from("x".repeat(100).as_str()))
        .unwrap();
    drop(c);
    b.stop();
    let l = logs(data);
    assert_eq!(l.len(), 1);
    l[0].clone()
}

#[test]
fn a_cut_or_damaged_log_tail_is_dropped_with_a_warning() {
    for damage in ["cut", "flip", "garbage"] {
        let dir = tempfile::tempdir().unwrap();
        let (sock, data) = (dir.path().join("d.sock"), dir.path().join("data"));
        let log = one_log(&data, &sock);
        let mut bytes = std::fs::read(&log).unwrap();
        let len = bytes.len();
        match damage {
            "cut" => bytes.truncate(len - 30),
            "flip" => bytes[len - 10] ^= 0x40,
            _ => bytes.extend_from_slice(&[0xab; 77]),
        }
        std::fs::write(&log, &bytes).unwrap();
        let b = Broker::start(&sock, &data, &[]);
        let err = b.stderr();
        let mut c = b.client();
        let mut s = c.share("s");
        assert_eq!(s.get("first").unwrap(), Some(Value::I64(1)), "{damage}");
        assert_eq!(s.get("second").unwrap(), Some(Value::I64(2)), "{damage}");
        if damage == "garbage" {
            // Only the garbage goes: the three records are whole.
            assert!(s.get("third").unwrap().is_some());
            assert!(err.contains("dropped its last 77 bytes"), "{err}");
        } else {
            assert_eq!(s.get("third").unwrap(), None, "{damage}");
        }
        assert!(
            err.contains("dropped its last") && err.contains("bytes from offset"),
            "{damage}: {err}"
        );
        // Appending goes on after the cut, and survives the next restart.
        s.set("fourth", &Value::I64(4)).unwrap();
        drop(c);
        b.stop();
        let b = Broker::start(&sock, &data, &[]);
        assert!(!b.stderr().contains("dropped"), "{}", b.stderr());
        let mut c = b.client();
        assert_eq!(c.share("s").get("fourth").unwrap(), Some(Value::I64(4)));
        assert_eq!(c.share("s").get("first").unwrap(), Some(Value::I64(1)));
    }
}

#[test]
fn the_exact_number_of_dropped_bytes_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (sock, data) = (dir.path().join("d.sock"), dir.path().join("data"));
    let log = one_log(&data, &sock);
    let bytes = std::fs::read(&log).unwrap();
    // The third record: 12-byte head, then tag and body; cut 5 bytes off it.
    std::fs::write(&log, &bytes[..bytes.len() - 5]).unwrap();
    let b = Broker::start(&sock, &data, &[]);
    let err = b.stderr();
    let third_len = {
        // Walk the records to find where the third starts.
        let mut at = 8 + 4 + 8 + 8 + 4;
        for _ in 0..2 {
            let n = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
            at += 12 + n;
        }
        bytes.len() - at
    };
    assert!(
        err.contains(&format!("dropped its last {} bytes", third_len - 5)),
        "{err}"
    );
}

#[test]
fn a_damaged_log_followed_by_another_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (sock, data) = (dir.path().join("d.sock"), dir.path().join("data"));
    let log = one_log(&data, &sock);
    // A later generation exists, so the damage is not a torn last write.
    let mut later = log.clone();
    later.set_file_name("log.00000000000000000005");
    let header = std::fs::read(&log).unwrap()[..32].to_vec();
    let mut h = header.clone();
    h[12..20].copy_from_slice(&5u64.to_le_bytes());
    let crc = crc32(&h[..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&later, &h).unwrap();
    let mut bytes = std::fs::read(&log).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 1;
    std::fs::write(&log, &bytes).unwrap();
    let err = Broker::try_start(&sock, &data, &[]).err().expect("refused");
    assert!(err.contains("later logs follow it"), "{err}");
}

/// CRC-32 (IEEE), as the log's checksums.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn a_snapshot_of_another_format_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (sock, data) = (dir.path().join("d.sock"), dir.path().join("data"));
    let b = Broker::start(&sock, &data, &["--log-rewrite-size", "1000"]);
    let mut c = b.client();
    for i in 0..200 {
        c.share("s").set("k", &Value::I64(i)).unwrap();
    }
    let snap = data.join("snapshot.bin");
    let t = Instant::now();
    while !snap.exists() {
        assert!(t.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(c);
    b.stop();
    let mut bytes = std::fs::read(&snap).unwrap();
    assert_eq!(&bytes[..8], b"DIMESNAP");
    bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
    std::fs::write(&snap, &bytes).unwrap();
    let err = Broker::try_start(&sock, &data, &[]).err().expect("refused");
    assert!(
        err.contains("format version 2") && err.contains("snapshot.bin"),
        "{err}"
    );
    // A damaged one is refused too, never half-read.
    bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
    let n = bytes.len();
    bytes[n - 1] ^= 0xff;
    std::fs::write(&snap, &bytes).unwrap();
    let err = Broker::try_start(&sock, &data, &[]).err().expect("refused");
    assert!(err.contains("checksum"), "{err}");
}

#[test]
fn two_brokers_cannot_share_a_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _a = Broker::start(&dir.path().join("a.sock"), &data, &[]);
    let err = Broker::try_start(&dir.path().join("b.sock"), &data, &[])
        .err()
        .expect("refused");
    assert!(err.contains("in use by another dime"), "{err}");
}

#[test]
fn group_messages_are_not_persisted() {
    let data = tempfile::tempdir().unwrap();
    {
        let srv = server_with(data.path(), FsyncPolicy::Always, 64 << 20);
        let mut a = srv.client();
        let mut b = srv.client();
        b.join(&["g"]).unwrap();
        a.send("g", "x", &Value::I64(1)).unwrap();
    }
    let srv = server_with(data.path(), FsyncPolicy::Always, 64 << 20);
    let mut b = srv.client();
    assert!(b.devices().unwrap().is_empty());
    assert!(matches!(
        b.receive(-1, Some(Duration::from_millis(50))),
        Err(Error::Timeout)
    ));
}
