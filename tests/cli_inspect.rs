//! `dime ls`, `dime stats`, `dime monitor` (with `--record`), `dime
//! replay`, `dime send` and `dime recv` against a real broker: output for
//! a known state, a record/replay round trip that reproduces the same
//! messages, and one-line errors with a non-zero exit status.

mod common;

use common::{KillOnDrop, TestServer};
use dime::Value;
use serde_json::Value as Json;
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const DIME: &str = env!("CARGO_BIN_EXE_dime");

fn dime(args: &[&str]) -> Output {
    Command::new(DIME).args(args).output().expect("run dime")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts the command failed with exactly one line on stderr containing `what`.
fn fails_with(o: &Output, what: &str) {
    assert!(!o.status.success(), "succeeded: {}", stdout(o));
    let err = stderr(o);
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err:?}");
    assert!(err.contains(what), "{err:?} lacks {what:?}");
}

#[test]
fn ls_json_matches_the_broker_state() {
    let srv = TestServer::start();
    let mut a = srv.client();
    a.join(&["sim"]).unwrap();
    let mut b = srv.client();
    b.send("sim", "x", &Value::I64(1)).unwrap();
    b.share("jobs").set("k", &Value::I64(1)).unwrap();
    let o = dime(&["ls", &srv.unix(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j: Json = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(j["clients"].as_array().unwrap().len(), 3, "{j}");
    assert_eq!(
        j["services"]["messaging"]["groups"]["sim"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(j["services"]["shares"]["jobs"]["keys"], 1);
    let queued: u64 = j["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["queued"].as_u64().unwrap())
        .sum();
    assert_eq!(queued, 1);
    // The table names the same things.
    let o = dime(&["ls", &srv.unix()]);
    let text = stdout(&o);
    assert!(
        text.contains("CLIENTS (3)") && text.contains("sim: 1 member(s)"),
        "{text}"
    );
    assert!(text.contains("jobs: 1 key(s)"), "{text}");
}

#[test]
fn stats_report_counters() {
    let srv = TestServer::start();
    let mut a = srv.client();
    a.join(&["g"]).unwrap();
    a.send("g", "x", &Value::I64(1)).unwrap();
    let o = dime(&["stats", &srv.unix(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j: Json = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(j["messages"], 1);
    assert_eq!(j["commands"]["send"]["requests"], 1);
    let text = stdout(&dime(&["stats", &srv.unix()]));
    assert!(text.contains("messages relayed 1"), "{text}");
}

#[test]
fn send_and_recv_from_the_shell() {
    let srv = TestServer::start();
    let recv = Command::new(DIME)
        .args(["recv", "shell", "-a", &srv.unix(), "--json", "-t", "10"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the receiver has joined.
    let mut c = srv.client();
    let t0 = Instant::now();
    while !c.devices().unwrap().contains(&"shell".to_owned()) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "dime recv never joined"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = dime(&[
        "send",
        "shell",
        "--as",
        "A",
        "--value",
        "[[1, 2], [3, 4]]",
        "-a",
        &srv.unix(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = recv.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["varname"], "A");
    assert_eq!(j["value"]["class"], "double");
    assert_eq!(j["value"]["size"], serde_json::json!([2, 2]));
    assert_eq!(j["value"]["data"], serde_json::json!([1.0, 3.0, 2.0, 4.0]));
}

#[test]
fn monitor_records_and_replay_reproduces_the_messages() {
    let srv = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("run.dimerec");
    let mut mon = KillOnDrop(
        Command::new(DIME)
            .args(["monitor", "-a", &srv.unix(), "--record"])
            .arg(&file)
            .args(["-n", "3"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(mon.0.stdout.take().unwrap()).lines();
    let mut a = srv.client();
    a.join(&["sim"]).unwrap();
    let mut b = srv.client();
    // Wait until the monitor is registered: it shows up in `inspect`.
    let t0 = Instant::now();
    loop {
        let o = dime(&["ls", &srv.unix(), "--json"]);
        let j: Json = serde_json::from_str(&stdout(&o)).unwrap();
        if j["clients"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["monitor"] == true)
        {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the monitor never registered"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let m = dime::Matrix::from_elems(vec![2, 2], &[1.0f64, 2.0, 3.0, 4.0]).unwrap();
    let sent = [
        ("A", Value::Matrix(m)),
        ("s", Value::from("text")),
        ("n", Value::I64(7)),
    ];
    for (name, v) in &sent {
        b.send("sim", name, v).unwrap();
    }
    let shown: Vec<String> = (0..3).map(|_| lines.next().unwrap().unwrap()).collect();
    assert!(
        shown[0].contains("→ sim") && shown[0].contains("A: double 2×2"),
        "{shown:?}"
    );
    assert!(shown[1].contains("s: string(4)"), "{shown:?}");
    assert!(mon.0.wait().unwrap().success());
    let got: Vec<(String, Value)> = a.sync(-1).unwrap();
    assert_eq!(got.len(), 3);

    // Replayed into another broker, the same messages arrive.
    let other = TestServer::start();
    let mut c = other.client();
    c.join(&["sim"]).unwrap();
    assert!(!dime(&["replay"]).status.success(), "replay needs a file");
    let o = Command::new(DIME)
        .arg("replay")
        .arg(&file)
        .args(["-a", &other.unix()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("replayed 3 message(s)"));
    let replayed = c.sync(-1).unwrap();
    let want: Vec<(String, Value)> = sent
        .iter()
        .map(|(n, v)| ((*n).to_owned(), v.clone()))
        .collect();
    assert_eq!(replayed, want);
}

#[test]
fn errors_are_one_line_and_a_failure_status() {
    fails_with(
        &dime(&["ls", "unix:/nonexistent/dime.sock"]),
        "cannot connect",
    );
    fails_with(&dime(&["stats", "nonsense:"]), "address");
    let srv = TestServer::start();
    fails_with(
        &dime(&["send", "g", "--value", "{oops", "-a", &srv.unix()]),
        "bad JSON",
    );
    fails_with(
        &dime(&["send", "nosuchgroup", "--value", "1", "-a", &srv.unix()]),
        "No such group",
    );
    fails_with(
        &dime(&["recv", "g", "-t", "0.1", "-a", &srv.unix()]),
        "no message within",
    );
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk");
    std::fs::write(&junk, b"not a recording").unwrap();
    fails_with(
        &Command::new(DIME)
            .arg("replay")
            .arg(&junk)
            .args(["-a", &srv.unix()])
            .output()
            .unwrap(),
        "not a dime monitor recording",
    );
}
