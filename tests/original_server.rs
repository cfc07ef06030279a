//! The Rust client against an original DiME2 server (the test double
//! `tests/dime2_double.py`, which knows only DiME2's commands and announces
//! no extensions): DiME2's calls work, `wait` blocks without spinning,
//! calls that use our extensions fall back to DiME2's commands, and shares
//! and tuple spaces fail with a clear error.

use dime::{Client, Error, Value};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The test double on a unix socket in a temporary directory, logging
/// every request's command; killed on drop.
struct Double {
    child: Child,
    dir: tempfile::TempDir,
    address: String,
}

impl Double {
    fn start() -> Double {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("dime2.sock");
        let mut child = Command::new("python3")
            .arg(format!("{ROOT}/tests/dime2_double.py"))
            .arg("-l")
            .arg(format!("unix:{}", sock.display()))
            .arg("--log")
            .arg(dir.path().join("requests.log"))
            .stderr(Stdio::piped())
            .spawn()
            .expect("start python3 tests/dime2_double.py");
        let mut line = String::new();
        BufReader::new(child.stderr.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(
            line.starts_with("dime: listening on unix:"),
            "the DiME2 double did not start: {line:?}"
        );
        Double {
            child,
            address: format!("unix:{}", sock.display()),
            dir,
        }
    }

    fn client(&self) -> Client {
        Client::connect(&self.address).expect("connect to the DiME2 double")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("requests.log")
    }

    /// How many requests with `command` the double has served.
    fn count(&self, command: &str) -> usize {
        std::fs::read_to_string(self.log())
            .unwrap_or_default()
            .lines()
            .filter(|l| *l == command)
            .count()
    }
}

impl Drop for Double {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `value` as `name` to `group` from a fresh client after `delay`.
fn send_later(address: &str, group: &str, name: &str, value: Value, delay: Duration) {
    let (address, group, name) = (address.to_owned(), group.to_owned(), name.to_owned());
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        let mut a = Client::connect(&address).unwrap();
        a.send(&group, &name, &value).unwrap();
    });
}

#[test]
fn an_original_server_announces_no_extensions() {
    let d = Double::start();
    let c = d.client();
    assert_eq!(c.server_extensions(), None);
    assert!(!c.supports("share"));
    assert!(!c.supports("sync_wait"));
}

#[test]
fn dime2_calls_round_trip() {
    let d = Double::start();
    let mut a = d.client();
    let mut b = d.client();
    b.join(&["b", "c"]).unwrap();
    a.send("b", "x", &Value::from("hello")).unwrap();
    a.send_many("c", &[("y", &Value::I64(7)), ("z", &Value::F64(0.5))])
        .unwrap();
    a.broadcast("w", &Value::Bool(true)).unwrap();
    assert_eq!(
        b.sync(-1).unwrap(),
        vec![
            ("x".to_owned(), Value::from("hello")),
            ("y".to_owned(), Value::I64(7)),
            ("z".to_owned(), Value::F64(0.5)),
            ("w".to_owned(), Value::Bool(true)),
        ]
    );
    let mut devices = a.devices().unwrap();
    devices.sort();
    assert_eq!(devices, ["b", "c"]);
    b.leave(&["c"]).unwrap();
    assert!(matches!(
        a.send("c", "x", &Value::Null),
        Err(Error::Server(_))
    ));
}

#[test]
fn wait_without_timeout_blocks_in_the_server() {
    let d = Double::start();
    let mut b = d.client();
    b.join(&["b"]).unwrap();
    send_later(
        &d.address,
        "b",
        "late",
        Value::I64(1),
        Duration::from_millis(300),
    );
    let t = Instant::now();
    // The original server answers a sync with "wait" at once, with nothing:
    // a client sending that returned 0 here, and a wait-then-sync loop spun.
    assert_eq!(b.wait(None).unwrap(), 1);
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(d.count("wait"), 1);
    assert_eq!(d.count("sync"), 0, "wait polled instead of blocking");
    assert_eq!(
        b.sync(-1).unwrap(),
        vec![("late".to_owned(), Value::I64(1))]
    );
}

#[test]
fn wait_with_timeout_polls_gently_then_times_out() {
    let d = Double::start();
    let mut b = d.client();
    b.join(&["b"]).unwrap();
    let t = Instant::now();
    assert!(matches!(
        b.wait(Some(Duration::from_secs(1))),
        Err(Error::Timeout)
    ));
    let took = t.elapsed();
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    // A wait the server cannot time out is polled with plain syncs, backing
    // off to 50 ms: about 25 in a second, where a spin makes thousands.
    let polls = d.count("sync");
    assert!((2..=40).contains(&polls), "{polls} syncs in 1 s");
    assert_eq!(d.count("wait"), 0, "an unanswerable wait was left behind");
    // The client is still in step with the server.
    assert_eq!(b.devices().unwrap(), ["b"]);
}

#[test]
fn wait_with_timeout_returns_a_message_that_arrives() {
    let d = Double::start();
    let mut b = d.client();
    b.join(&["b"]).unwrap();
    send_later(
        &d.address,
        "b",
        "v",
        Value::from("x"),
        Duration::from_millis(200),
    );
    assert_eq!(b.wait(Some(Duration::from_secs(10))).unwrap(), 1);
    assert_eq!(
        b.sync(-1).unwrap(),
        vec![("v".to_owned(), Value::from("x"))]
    );
    assert_eq!(b.sync(-1).unwrap(), vec![]);
}

#[test]
fn receive_and_send_receive_use_dime2_commands() {
    let d = Double::start();
    let mut a = d.client();
    a.join(&["a"]).unwrap();
    // send_receive to our own group: the reply is the message itself.
    let got = a
        .send_receive(
            "a",
            "ping",
            &Value::I64(5),
            -1,
            Some(Duration::from_secs(5)),
        )
        .unwrap();
    assert_eq!(got, vec![("ping".to_owned(), Value::I64(5))]);
    assert!(matches!(
        a.receive(-1, Some(Duration::from_millis(100))),
        Err(Error::Timeout)
    ));
    send_later(
        &d.address,
        "a",
        "later",
        Value::I64(6),
        Duration::from_millis(200),
    );
    assert_eq!(
        a.receive(-1, None).unwrap(),
        vec![("later".to_owned(), Value::I64(6))]
    );
}

#[test]
fn shares_and_tuple_spaces_fail_clearly_and_send_nothing() {
    let d = Double::start();
    let mut c = d.client();
    let err = c.share("jobs").get("k").unwrap_err();
    assert!(matches!(err, Error::Unsupported(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "this server does not support shared dictionaries (shares) (it is an original DiME2 \
         server: its handshake announces no extensions)"
    );
    let err = c.space("").out(&[Value::I64(1)]).unwrap_err();
    assert!(
        matches!(err, Error::Unsupported(ref m) if m.contains("tuple spaces")),
        "{err:?}"
    );
    // Nothing reached the server, and the client carries on.
    assert_eq!(d.count("share_get") + d.count("ts_out"), 0);
    c.join(&["still"]).unwrap();
    assert_eq!(c.devices().unwrap(), ["still"]);
}

#[test]
fn pipelined_sends_keep_to_the_original_clients_window_and_report_late_failures() {
    let d = Double::start();
    let mut a = d.client();
    let mut b = d.client();
    b.join(&["b"]).unwrap();
    // DiME2's own Python client writes up to 16 sends before reading their
    // replies: the window is held to that against an original server.
    assert_eq!(a.set_pipeline(1024).unwrap(), 16);
    for i in 0..100 {
        let group = if i == 40 { "nobody" } else { "b" };
        // Every send after the window fills reads replies first; the
        // refused one is reported by one of those, named.
        if let Err(e) = a.send(group, &format!("v{i}"), &Value::I64(i)) {
            let msg = e.to_string();
            assert!(
                msg.contains("pipelined send #41 of 'v40' to group 'nobody' failed: No such group exists: nobody"),
                "{msg}"
            );
            // That call sent nothing: send it again.
            a.send(group, &format!("v{i}"), &Value::I64(i)).unwrap();
        }
        assert!(a.unacknowledged() <= 16);
    }
    a.flush().unwrap();
    let got = b.sync(-1).unwrap();
    let want: Vec<String> = (0..100)
        .filter(|&i| i != 40)
        .map(|i| format!("v{i}"))
        .collect();
    assert_eq!(got.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(), want);
}

#[test]
fn pipelined_sends_then_dime2_wait_sync_and_devices_stay_in_step() {
    let d = Double::start();
    let mut a = d.client();
    a.set_pipeline(16).unwrap();
    a.join(&["a"]).unwrap();
    a.send("a", "x", &Value::I64(1)).unwrap();
    a.send("a", "y", &Value::I64(2)).unwrap();
    // DiME2's blocking wait, after the replies to the sends.
    assert_eq!(a.wait(None).unwrap(), 2);
    assert_eq!(a.unacknowledged(), 0);
    a.send("a", "z", &Value::I64(3)).unwrap();
    assert_eq!(a.devices().unwrap(), ["a"]);
    assert_eq!(
        a.sync(-1).unwrap(),
        vec![
            ("x".to_owned(), Value::I64(1)),
            ("y".to_owned(), Value::I64(2)),
            ("z".to_owned(), Value::I64(3)),
        ]
    );
    a.send("nobody", "w", &Value::Null).unwrap();
    assert!(matches!(a.wait(None), Err(Error::Server(_))));
    assert_eq!(d.count("wait"), 1, "a wait was sent behind a failed send");
}
