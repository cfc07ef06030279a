//! Malformed input gets a clear error to that client, the connection is
//! closed where the stream can no longer be trusted, and everyone else
//! carries on.

mod common;

use common::{Raw, TestServer, frame};
use dime::Value;
use serde_json::json;

/// Sends `bytes`, expects an error reply containing `want`, then a close;
/// checks a bystander is still served.
fn rejected_and_closed(srv: &TestServer, bytes: &[u8], want: &str) {
    let mut bystander = srv.client();
    bystander.join(&["by"]).unwrap();
    let mut r = srv.raw();
    r.send_bytes(bytes);
    let (reply, _) = r.recv();
    assert_eq!(reply["status"], -1, "{reply}");
    let err = reply["error"].as_str().unwrap();
    assert!(err.contains(want), "error {err:?} lacks {want:?}");
    assert!(r.is_closed(), "connection left open after {want}");
    bystander.send("by", "x", &Value::I64(7)).unwrap();
    assert_eq!(
        bystander.sync(-1).unwrap(),
        vec![("x".to_owned(), Value::I64(7))]
    );
}

#[test]
fn bad_magic() {
    let srv = TestServer::start();
    rejected_and_closed(&srv, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "bad magic");
}

#[test]
fn invalid_json() {
    let srv = TestServer::start();
    rejected_and_closed(&srv, &frame(b"{not json", b""), "JSON parsing error");
}

#[test]
fn header_that_is_not_an_object() {
    let srv = TestServer::start();
    rejected_and_closed(&srv, &frame(b"[1,2,3]", b""), "not a JSON object");
}

#[test]
fn missing_and_mistyped_fields() {
    let srv = TestServer::start();
    rejected_and_closed(
        &srv,
        &frame(br#"{"command":"handshake"}"#, b""),
        "JSON parsing error",
    );
    rejected_and_closed(
        &srv,
        &frame(br#"{"command":"join","name":[1]}"#, b""),
        "JSON parsing error: expected string",
    );
    rejected_and_closed(
        &srv,
        &frame(
            br#"{"command":"send","varname":"x","serialization":"dimeb"}"#,
            b"",
        ),
        "name",
    );
    rejected_and_closed(&srv, &frame(br#"{"command":"sync","n":"all"}"#, b""), "n");
}

#[test]
fn oversized_declared_length() {
    let srv = TestServer::start_with(|c| c.max_message = 1 << 20);
    let mut prefix = b"DiME".to_vec();
    prefix.extend_from_slice(&2u32.to_be_bytes());
    prefix.extend_from_slice(&u32::MAX.to_be_bytes());
    rejected_and_closed(&srv, &prefix, "--max-message");
}

#[test]
fn unknown_commands_keep_the_connection_open() {
    let srv = TestServer::start();
    let mut r = srv.raw();
    assert_eq!(
        r.call(json!({"command": "frobnicate"})),
        json!({"status": -1, "error": "Unknown command: frobnicate"})
    );
    assert_eq!(
        r.call(json!({"no": "command"})),
        json!({"status": -1, "error": "Unknown command"})
    );
    assert_eq!(
        r.call(json!({"command": 5})),
        json!({"status": -1, "error": "Unknown command"})
    );
    assert_eq!(
        r.call(json!({"command": "devices"})),
        json!({"status": 0, "devices": []})
    );
}

#[test]
fn garbage_after_good_frames_still_answers_the_good_ones() {
    let srv = TestServer::start();
    let mut r = srv.raw();
    let mut bytes = frame(br#"{"command":"devices"}"#, b"");
    bytes.extend_from_slice(b"garbage garbage");
    r.send_bytes(&bytes);
    assert_eq!(r.recv().0, json!({"status": 0, "devices": []}));
    assert_eq!(r.recv().0["status"], -1);
    assert!(r.is_closed());
}

#[test]
fn a_client_that_never_reads_does_not_stall_others() {
    let srv = TestServer::start();
    let mut hog = Raw::connect(srv.unix().strip_prefix("unix:").unwrap());
    hog.call(json!({"command": "join", "name": ["hog"]}));
    let mut a = srv.client();
    // Queue 64 MB for the hog, then have it request everything and never read.
    let m = dime::Matrix::from_elems(vec![1 << 20], &vec![0u64; 1 << 20]).unwrap();
    for i in 0..8 {
        a.send("hog", &format!("m{i}"), &Value::Matrix(m.clone()))
            .unwrap();
    }
    hog.stream.set_nonblocking(true).unwrap();
    for _ in 0..100 {
        let _ = std::io::Write::write_all(
            &mut hog.stream,
            &frame(br#"{"command":"sync","n":-1}"#, b""),
        );
    }
    a.join(&["a"]).unwrap();
    for i in 0..50 {
        a.send("a", "x", &Value::I64(i)).unwrap();
        assert_eq!(a.sync(-1).unwrap(), vec![("x".to_owned(), Value::I64(i))]);
    }
}

#[test]
fn unsupported_serialization_is_refused() {
    let srv = TestServer::start();
    let mut r = srv.raw();
    let reply = r.call(json!({"command": "handshake", "serialization": "yaml", "tls": false}));
    assert_eq!(reply["status"], -1);
    assert!(reply["error"].as_str().unwrap().contains("yaml"));
    assert_eq!(r.call(json!({"command": "devices"}))["status"], 0);
}
