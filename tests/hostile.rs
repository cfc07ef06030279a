//! Hostile input cannot stop the server: every command's every header field
//! fed extreme numbers, wrong types, huge strings and deep nesting, with and
//! without a handshake, against the real `dime` binary; a bystander must be
//! served after each request, the hostile connection itself must still
//! answer (a bad field is an error reply, never a close), and the server
//! must never panic (not even a panic its per-request guard would catch).

mod common;

use common::{KillOnDrop, TestServer, frame};
use dime::{Client, Value};
use serde_json::{Map, Value as Json, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Every command the server knows, plus one it does not.
const COMMANDS: &[&str] = &[
    "handshake",
    "join",
    "leave",
    "send",
    "broadcast",
    "sync",
    "wait",
    "devices",
    "shm_release",
    "share_set",
    "share_get",
    "share_del",
    "share_contains",
    "share_keys",
    "share_len",
    "share_clear",
    "share_get_many",
    "share_set_many",
    "share_incr",
    "share_cas",
    "share_pop",
    "share_wait_key",
    "share_lock",
    "share_unlock",
    "ts_out",
    "ts_in",
    "ts_rd",
    "ts_inp",
    "ts_rdp",
    "ts_count",
    "no_such_command",
];

/// Every header field any command reads.
const FIELDS: &[&str] = &[
    "command",
    "serialization",
    "varname",
    "name",
    "n",
    "timeout",
    "receive",
    "wait",
    "share",
    "key",
    "keys",
    "nowait",
    "absent",
    "space",
    "pattern",
    "extensions",
    "dimeb_layout",
    "shm",
    "ino",
];

/// Extreme numbers, written as JSON text so that values no f64 or u64
/// holds exactly (2^64, 10^40, 10^400) reach the server as sent.
const NUMBERS: &[&str] = &[
    "1e22",
    "1e30",
    "1e300",
    "-1e300",
    "1e400",
    "-1e400",
    "18446744073709551616",
    "18446744073709551615",
    "9223372036854775808",
    "-9223372036854775809",
    "10000000000000000000000000000000000000000",
    "4294967296",
    "9007199254740993",
    "5e-324",
    "-5e-324",
    "2.2250738585072014e-308",
    "-0.0",
    "0",
    "-1",
    "1.5",
    "1",
];

/// Values of every other JSON type, huge strings and deep nesting.
fn other_values() -> Vec<String> {
    let mut v: Vec<String> = [
        "\"\"",
        "\"x\"",
        "\"\\u0000\"",
        "\"\\ud800\"",
        "true",
        "false",
        "null",
        "[]",
        "{}",
        "[1,\"a\",null]",
        "[\"g\",\"g\"]",
        "{\"a\":[1]}",
        "[{\"any\":true}]",
        "[{\"min\":1e400,\"max\":-1e400}]",
        "[{\"type\":\"matrix\",\"rank\":1e22}]",
        "[{\"type\":\"matrix\",\"rank\":-1,\"class\":5}]",
        "[{\"value\":true},{\"value\":true},{\"value\":true}]",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push(Json::String("é".repeat(128 * 1024)).to_string());
    v.push(Json::Array(vec![Json::String("k".repeat(1000)); 1000]).to_string());
    for depth in [100, 127, 200, 100_000] {
        v.push(format!("{}{}", "[".repeat(depth), "]".repeat(depth)));
        v.push(format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth)));
    }
    v
}

/// A header that reaches deep into `command`: every other field plausible,
/// `field` set to the raw JSON `value`.
fn header(command: &str, field: &str, value: &str, plausible: bool) -> String {
    let mut base = Map::new();
    base.insert("command".into(), json!(command));
    if plausible {
        for (k, v) in [
            ("serialization", json!("dimeb")),
            ("varname", json!("v")),
            ("name", json!("g")),
            ("n", json!(1)),
            ("share", json!("s")),
            ("key", json!("k")),
            ("keys", json!(["k"])),
            ("space", json!("sp")),
            ("pattern", json!([{"any": true}, {"any": true}])),
            // Remote calls: a stream call to a function nobody provides
            // (so it queues), answering or crediting call 0.
            ("function", json!("f")),
            ("id", json!(1)),
            ("call", json!(0)),
            ("stream", json!(true)),
            ("items", json!(2)),
            ("bytes", json!(100)),
            ("timeout", json!(50)),
        ] {
            base.insert(k.into(), v);
        }
    }
    base.remove(field);
    let rest = Json::Object(base).to_string();
    // Splice the raw value in as text: serde_json would round 1e400 or 2^64.
    format!("{{\"{field}\":{value},{}", &rest[1..])
}

/// The `dime` binary on a fresh socket, its stderr kept for inspection.
struct Spawned {
    child: KillOnDrop,
    sock: String,
    stderr: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn spawn() -> Spawned {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("dime.sock");
    let stderr = dir.path().join("stderr.log");
    let child = Command::new(env!("CARGO_BIN_EXE_dime"))
        .arg("-l")
        .arg(format!("unix:{}", sock.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let child = KillOnDrop(child);
    for _ in 0..500 {
        if Path::new(&sock).exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Spawned {
        child,
        sock: sock.display().to_string(),
        stderr,
        _dir: dir,
    }
}

/// Reads one reply frame's JSON (None on close or timeout).
fn read_reply(s: &mut UnixStream) -> Option<Json> {
    read_frame(s).ok()
}

/// Why no frame was read.
#[derive(Debug)]
enum NoFrame {
    /// The server closed the connection.
    Closed,
    /// Nothing arrived before the read timeout.
    Silent,
}

/// Reads one frame's header JSON (`Null` if it is not JSON: a relayed
/// hostile header need not be).
fn read_frame(s: &mut UnixStream) -> Result<Json, NoFrame> {
    let mut prefix = [0u8; 12];
    s.read_exact(&mut prefix[..1]).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => NoFrame::Silent,
        _ => NoFrame::Closed,
    })?;
    // The frame has begun: the short timeout only tells a silent request
    // from an answered one, so the rest of a long reply may take its time
    // on a loaded machine.
    let short = s.read_timeout().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let rest = read_rest(s, &mut prefix);
    s.set_read_timeout(short).unwrap();
    rest
}

/// The rest of a frame whose first byte is already in `prefix`.
fn read_rest(s: &mut UnixStream, prefix: &mut [u8; 12]) -> Result<Json, NoFrame> {
    s.read_exact(&mut prefix[1..])
        .map_err(|_| NoFrame::Closed)?;
    let jl = u32::from_be_bytes(prefix[4..8].try_into().unwrap()) as usize;
    let pl = u32::from_be_bytes(prefix[8..12].try_into().unwrap()) as usize;
    let mut body = vec![0u8; jl + pl];
    s.read_exact(&mut body).map_err(|_| NoFrame::Closed)?;
    Ok(serde_json::from_slice(&body[..jl]).unwrap_or(Json::Null))
}

/// A request sent after each hostile one: its reply is unmistakable.
const PROBE: &[u8] = br#"{"command":"probe after a hostile request"}"#;

/// How long a hostile request may take to answer before it counts as one
/// that blocks (a wait, a lookup with no match): a request that does is
/// accepted, and a closed connection would have ended the read at once.
const ANSWER_WITHIN: Duration = Duration::from_millis(20);

/// What became of the hostile connection after its request and the probe.
enum Outcome {
    /// The probe was answered: the connection is usable.
    Usable,
    /// The hostile request blocks, holding the probe's reply back.
    Blocked,
}

/// Reads the replies to the hostile request and the probe that follows it;
/// panics if the server closes the connection or leaves the probe unanswered.
fn probe_answered(s: &mut UnixStream, after: &str) -> Outcome {
    s.set_read_timeout(Some(ANSWER_WITHIN)).unwrap();
    let mut first = true;
    loop {
        match read_frame(s) {
            Ok(reply) => {
                if first {
                    // Now the server is answering: the rest comes promptly.
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    first = false;
                }
                if reply["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("probe after a hostile request"))
                {
                    return Outcome::Usable;
                }
            }
            Err(NoFrame::Silent) if first => return Outcome::Blocked,
            Err(e) => panic!("{e:?} instead of the probe's reply after {after}"),
        }
    }
}

/// Commands that may wait for a message to be queued for their client
/// (`wait`, `sync` with `"wait"`, `send`/`broadcast` with `"receive"`).
const WAIT_FOR_MESSAGES: &[&str] = &["wait", "sync", "send", "broadcast"];

/// A client the hostile traffic must never disturb.
struct Bystander {
    client: Client,
    round: i64,
}

impl Bystander {
    fn new(sock: &str) -> Bystander {
        let mut client = Client::connect(&format!("unix:{sock}")).expect("bystander connects");
        client.join(&["bystander-only"]).unwrap();
        Bystander { client, round: 0 }
    }

    /// Queues a message for every other client, answering a hostile
    /// request that waits for one (so the probe behind it is answered).
    fn wake_waiters(&mut self) {
        let woke = self.client.broadcast("wake", &Value::I64(0));
        assert!(woke.is_ok(), "bystander cannot broadcast: {woke:?}");
    }

    /// A send to itself and a sync; hostile broadcasts may arrive too.
    fn check(&mut self, after: &str) {
        self.round += 1;
        let sent = self
            .client
            .send("bystander-only", "round", &Value::I64(self.round));
        assert!(sent.is_ok(), "bystander not served after {after}: {sent:?}");
        // Raw messages: a hostile broadcast may carry any serialization.
        let got = self.client.sync_messages(-1);
        assert!(
            got.as_ref().is_ok_and(|m| m
                .iter()
                .any(|m| m.varname == "round" && m.decode().ok() == Some(Value::I64(self.round)))),
            "bystander lost its message after {after}: {got:?}"
        );
    }
}

#[test]
fn no_field_value_stops_the_server() {
    let (sent, _) = sweep(COMMANDS, FIELDS);
    assert!(sent > 10_000, "the sweep sent only {sent} requests");
}

/// Remote-call commands (calls and streams) with every field they read.
const RPC_COMMANDS: &[&str] = &[
    "provide",
    "unprovide",
    "call",
    "return",
    "cancel",
    "ping",
    "yield",
    "credit",
];

/// Every header field a remote-call command reads.
const RPC_FIELDS: &[&str] = &[
    "command",
    "function",
    "capacity",
    "id",
    "call",
    "timeout",
    "error",
    "error_type",
    "traceback",
    "stream",
    "items",
    "bytes",
    "batch",
    "count",
    "dimeb_layout",
];

#[test]
fn no_remote_call_field_value_stops_the_server() {
    let (sent, _) = sweep(RPC_COMMANDS, RPC_FIELDS);
    assert!(sent > 5_000, "the sweep sent only {sent} requests");
}

/// Sends every command with each field set to every hostile value, each on
/// a fresh connection followed by a probe; checks the server, a bystander
/// and (mostly) the hostile connection survive. Returns (sent, usable).
fn sweep(commands: &[&str], fields: &[&str]) -> (usize, usize) {
    let mut srv = spawn();
    let mut bystander = Bystander::new(&srv.sock);
    let payload = dime::codec::dimeb::encode(&Value::List(vec![Value::I64(1), Value::I64(2)]))
        .expect("encodes");
    let mut values: Vec<String> = NUMBERS.iter().map(|s| s.to_string()).collect();
    values.extend(other_values());
    let (mut sent, mut usable) = (0usize, 0usize);
    for (i, command) in commands.iter().enumerate() {
        for field in fields {
            for value in &values {
                // Alternate between a handshaken connection with every other
                // field plausible, and a bare one with only the command.
                for (handshake, plausible) in [(true, true), (false, false)] {
                    let mut s = UnixStream::connect(&srv.sock).expect("connect");
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    if handshake {
                        let hs = json!({"command":"handshake","serialization":"dimeb"});
                        s.write_all(&frame(hs.to_string().as_bytes(), b"")).unwrap();
                        assert_eq!(read_reply(&mut s).expect("handshake reply")["status"], 0);
                    }
                    let text = header(command, field, value, plausible);
                    let body: &[u8] = if plausible { &payload } else { b"" };
                    let mut bytes = frame(text.as_bytes(), body);
                    bytes.extend(frame(PROBE, b""));
                    s.write_all(&bytes)
                        .expect("the server reads the whole request");
                    sent += 1;
                    let shown: String = text.chars().take(160).collect();
                    let after = format!("request #{sent} (command {i}): {shown}");
                    bystander.check(&after);
                    if WAIT_FOR_MESSAGES.contains(command) {
                        bystander.wake_waiters();
                    }
                    if let Outcome::Usable = probe_answered(&mut s, &after) {
                        usable += 1;
                    }
                }
            }
        }
    }
    bystander.check("the whole sweep");
    assert!(
        srv.child.0.try_wait().unwrap().is_none(),
        "the server exited"
    );
    let log = std::fs::read_to_string(&srv.stderr).unwrap();
    assert!(
        !log.contains("panicked") && !log.contains("internal error"),
        "the server panicked during the sweep of {sent} requests:\n{}",
        log.lines().take(20).collect::<Vec<_>>().join("\n")
    );
    // Most hostile requests are refused (a bad field) or answered at once;
    // only those left waiting for a message, key or tuple hold the probe.
    assert!(
        usable * 10 > sent * 8,
        "the probe was answered after only {usable} of {sent} requests"
    );
    (sent, usable)
}

#[test]
fn a_timeout_too_long_to_represent_means_no_deadline() {
    let srv = spawn();
    let mut waiter = UnixStream::connect(&srv.sock).unwrap();
    waiter
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let hs = json!({"command":"handshake","serialization":"dimeb"});
    waiter
        .write_all(&frame(hs.to_string().as_bytes(), b""))
        .unwrap();
    read_reply(&mut waiter).unwrap();
    waiter
        .write_all(&frame(br#"{"command":"join","name":"w"}"#, b""))
        .unwrap();
    assert_eq!(read_reply(&mut waiter).unwrap()["status"], 0);
    // The attack from the report: a wait of 1e22 ms used to panic the loop.
    for timeout in ["1e22", "1e30", "1e300", "18446744073709551616"] {
        let req = format!(r#"{{"command":"wait","timeout":{timeout}}}"#);
        waiter.write_all(&frame(req.as_bytes(), b"")).unwrap();
        let mut other = Client::connect(&format!("unix:{}", srv.sock)).unwrap();
        other.send("w", "x", &Value::I64(1)).unwrap();
        let reply = read_reply(&mut waiter).expect("the wait is answered by the message");
        assert_eq!(reply, json!({"status":0,"n":1}), "timeout {timeout}");
        waiter
            .write_all(&frame(br#"{"command":"sync","n":-1}"#, b""))
            .unwrap();
        let msg = read_reply(&mut waiter).unwrap();
        assert_eq!(msg["varname"], "x");
        assert_eq!(read_reply(&mut waiter).unwrap(), json!({"status":0}));
    }
    // A negative one is a clear error to that client only.
    let mut bad = UnixStream::connect(&srv.sock).unwrap();
    bad.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    bad.write_all(&frame(
        br#"{"command":"share_wait_key","key":"k","timeout":-1e300}"#,
        b"",
    ))
    .unwrap();
    let reply = read_reply(&mut bad).unwrap();
    assert_eq!(reply["status"], -1);
    let err = reply["error"].as_str().unwrap();
    assert!(
        err.contains("timeout") && err.contains("non-negative"),
        "{err}"
    );
    let mut b = Bystander::new(&srv.sock);
    b.check("a negative timeout");
}

#[test]
fn the_binary_refuses_an_unrepresentable_idle_time() {
    let out = Command::new(env!("CARGO_BIN_EXE_dime"))
        .args([
            "--exit-when-idle",
            "1e300",
            "-l",
            "unix:/nonexistent/x.sock",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a non-negative number of seconds"),
        "{err}"
    );
    // A merely enormous one is accepted (it never ends).
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("s.sock");
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_dime"))
            .args(["--exit-when-idle", "1e15", "-l"])
            .arg(format!("unix:{}", sock.display()))
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(child.0.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("listening on"), "{line}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(child.0.try_wait().unwrap().is_none(), "server exited");
}

#[test]
fn a_panicking_request_closes_only_its_own_client() {
    let srv = TestServer::start_with(|c| c.test_panic_command = true);
    let mut bystander = srv.client();
    bystander.join(&["by"]).unwrap();
    // A client blocked in a wait must survive the panic and still be answered.
    let mut waiter = srv.raw();
    assert_eq!(
        waiter.call(json!({"command":"join","name":"w"}))["status"],
        0
    );
    waiter.send(json!({"command":"wait"}), b"");
    let mut victim = srv.raw();
    victim.send(json!({"command":"_test_panic"}), b"");
    let (reply, _) = victim.recv();
    assert_eq!(reply["status"], -1, "{reply}");
    let err = reply["error"].as_str().unwrap();
    assert!(
        err.contains("Internal server error") && err.contains("_test_panic"),
        "{err}"
    );
    assert!(victim.is_closed(), "the panicking client is closed");
    bystander.send("w", "x", &Value::I64(3)).unwrap();
    assert_eq!(waiter.recv().0, json!({"status":0,"n":1}));
    bystander.send("by", "y", &Value::I64(4)).unwrap();
    assert_eq!(
        bystander.sync(-1).unwrap(),
        vec![("y".to_owned(), Value::I64(4))]
    );
    // A new client is served too, and the server keeps catching.
    let mut again = srv.raw();
    again.send(json!({"command":"_test_panic"}), b"");
    assert_eq!(again.recv().0["status"], -1);
    assert!(srv.client().devices().unwrap().contains(&"by".to_owned()));
}

#[test]
fn the_panic_command_exists_only_when_asked_for() {
    let srv = TestServer::start();
    let mut r = srv.raw();
    let reply = r.call(json!({"command":"_test_panic"}));
    assert_eq!(reply["error"], "Unknown command: _test_panic");
    assert_eq!(r.call(json!({"command":"devices"}))["status"], 0);
}

#[test]
fn a_message_cannot_pass_for_a_reply_or_break_its_recipients() {
    let srv = TestServer::start();
    let mut recipient = srv.client();
    recipient.join(&["r"]).unwrap();
    let mut sender = srv.raw();
    let payload = dime::codec::dimeb::encode(&Value::I64(5)).unwrap();
    // A header with "status" would end the recipient's sync early.
    for extra in [r#""status":0"#, r#""meta":true"#] {
        let text = format!(
            r#"{{"command":"send","name":"r","varname":"x","serialization":"dimeb",{extra}}}"#
        );
        sender.send_bytes(&frame(text.as_bytes(), &payload));
        let (reply, _) = sender.recv();
        assert_eq!(reply["status"], -1, "{extra}: {reply}");
        assert!(reply["error"].as_str().unwrap().contains("may not carry"));
    }
    // A number other readers take as infinity, in a field nobody reads.
    let text = r#"{"command":"send","name":"r","varname":"x","serialization":"dimeb","odd":1e400}"#;
    sender.send_bytes(&frame(text.as_bytes(), &payload));
    assert_eq!(sender.recv().0["status"], 0);
    assert_eq!(
        recipient.sync(-1).unwrap(),
        vec![("x".to_owned(), Value::I64(5))]
    );
}
