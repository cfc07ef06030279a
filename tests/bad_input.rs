//! Bad input gets a clear error to that client and everyone else carries
//! on. A request whose frame arrived whole (its header missing a field,
//! mistyped, not JSON at all) is only an error: the connection stays
//! usable and keeps what was queued for it, as with the original server.
//! Only a broken frame, after which the byte stream cannot be followed,
//! closes the connection.

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

/// Sends the request `header` (raw text) on `r`, expects an error reply
/// containing `want`, and checks the connection still answers.
fn refused_and_kept(r: &mut Raw, header: &[u8], want: &str) {
    r.send_bytes(&frame(header, b""));
    let (reply, _) = r.recv();
    let shown = String::from_utf8_lossy(header);
    assert_eq!(reply["status"], -1, "{shown}: {reply}");
    let err = reply["error"].as_str().unwrap();
    assert!(err.contains(want), "{shown}: error {err:?} lacks {want:?}");
    assert_eq!(
        r.call(json!({"command": "sync", "n": 0})),
        json!({"status": 0}),
        "connection unusable after {shown}"
    );
}

// -- broken frames: error, then close ---------------------------------------

#[test]
fn bad_magic() {
    let srv = TestServer::start();
    rejected_and_closed(&srv, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "bad magic");
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

// -- intact frames with a bad header: error, connection kept ----------------

#[test]
fn a_header_that_is_not_json_keeps_the_connection() {
    let srv = TestServer::start();
    let mut r = srv.raw();
    refused_and_kept(&mut r, b"{not json", "JSON parsing error");
    refused_and_kept(&mut r, b"[1,2,3]", "not a JSON object");
    refused_and_kept(&mut r, b"", "JSON parsing error");
    refused_and_kept(
        &mut r,
        b"{\"command\":\"devices\"} {}",
        "JSON parsing error",
    );
    refused_and_kept(
        &mut r,
        b"{\"command\":\"dev\xffices\"}",
        "JSON parsing error",
    );
}

#[test]
fn missing_and_mistyped_fields_keep_the_connection() {
    let srv = TestServer::start();
    let mut r = srv.raw();
    for (header, want) in [
        (&br#"{"command":"handshake"}"#[..], "serialization"),
        (
            br#"{"command":"handshake","serialization":5}"#,
            "JSON parsing error",
        ),
        (
            br#"{"command":"join","name":[5]}"#,
            "JSON parsing error: expected string",
        ),
        (br#"{"command":"join"}"#, "missing field: name"),
        (
            br#"{"command":"leave","name":{"g":1}}"#,
            "JSON parsing error",
        ),
        (
            br#"{"command":"send","varname":"x","serialization":"dimeb"}"#,
            "missing field: name",
        ),
        (
            br#"{"command":"send","name":7,"varname":"x"}"#,
            "name: expected string",
        ),
        (
            br#"{"command":"broadcast","serialization":"dimeb"}"#,
            "missing field: varname",
        ),
        (
            br#"{"command":"broadcast","varname":["x"]}"#,
            "JSON parsing error",
        ),
        (br#"{"command":"sync","n":"all"}"#, "JSON parsing error"),
        (br#"{"command":"sync","n":1,"n":2}"#, "duplicate field"),
        (
            br#"{"command":"wait","timeout":"soon"}"#,
            "JSON parsing error",
        ),
        (br#"{"command":"wait","timeout":-1}"#, "non-negative"),
        (
            br#"{"command":"share_get","key":"k","nowait":"yes"}"#,
            "JSON parsing error",
        ),
        (br#"{"command":"share_get"}"#, "missing field: key"),
        (
            br#"{"command":"share_get_many","keys":"k"}"#,
            "JSON parsing error",
        ),
        (
            br#"{"command":"ts_rdp","space":"s"}"#,
            "missing field: pattern",
        ),
    ] {
        refused_and_kept(&mut r, header, want);
    }
    // Still a full client: it joins, sends to itself and receives.
    assert_eq!(
        r.call(json!({"command": "join", "name": ["g"]})),
        json!({"status": 0})
    );
    r.send(
        json!({"command": "send", "name": "g", "varname": "x", "serialization": "dimeb"}),
        &[0x00],
    );
    assert_eq!(r.recv().0, json!({"status": 0}));
    r.send(json!({"command": "sync", "n": -1}), b"");
    assert_eq!(r.recv().0["varname"], "x");
    assert_eq!(r.recv().0, json!({"status": 0}));
}

#[test]
fn messages_queued_for_a_client_survive_its_bad_request() {
    let srv = TestServer::start();
    let mut a = srv.client();
    a.join(&["a"]).unwrap();
    let mut b = srv.client();
    for i in 0..5 {
        b.send("a", &format!("m{i}"), &Value::I64(i)).unwrap();
    }
    let err = a
        .request(json!({"command": "join", "name": [5]}))
        .unwrap_err();
    assert!(err.to_string().contains("expected string"), "{err}");
    let err = a
        .request(json!({"command": "send", "varname": "x", "serialization": "dimeb"}))
        .unwrap_err();
    assert!(err.to_string().contains("name"), "{err}");
    let got = a.sync(-1).unwrap();
    let want: Vec<(String, Value)> = (0..5).map(|i| (format!("m{i}"), Value::I64(i))).collect();
    assert_eq!(got, want);
    // And it is still in its group.
    b.send("a", "after", &Value::I64(9)).unwrap();
    assert_eq!(a.sync(-1).unwrap(), [("after".to_owned(), Value::I64(9))]);
}

#[test]
fn bad_requests_in_a_pipeline_are_answered_in_order() {
    let srv = TestServer::start();
    let mut r = srv.raw();
    let mut bytes = frame(br#"{"command":"join","name":["g"]}"#, b"");
    bytes.extend(frame(b"{not json", b""));
    bytes.extend(frame(br#"{"command":"join","name":[1]}"#, b""));
    bytes.extend(frame(br#"{"command":"devices"}"#, b""));
    r.send_bytes(&bytes);
    assert_eq!(r.recv().0, json!({"status": 0}));
    assert_eq!(r.recv().0["status"], -1);
    assert_eq!(r.recv().0["status"], -1);
    assert_eq!(r.recv().0, json!({"status": 0, "devices": ["g"]}));
}

#[test]
fn a_bad_request_behind_a_pending_wait_is_answered_after_it() {
    let srv = TestServer::start();
    let mut r = srv.raw();
    assert_eq!(
        r.call(json!({"command": "join", "name": ["w"]})),
        json!({"status": 0})
    );
    r.send(json!({"command": "wait"}), b"");
    r.send_bytes(&frame(br#"{"command":"sync","n":"all"}"#, b""));
    let mut other = srv.client();
    other.send("w", "x", &Value::I64(1)).unwrap();
    assert_eq!(r.recv().0, json!({"status": 0, "n": 1}));
    assert_eq!(r.recv().0["status"], -1);
    r.send(json!({"command": "sync", "n": -1}), b"");
    assert_eq!(r.recv().0["varname"], "x");
    assert_eq!(r.recv().0, json!({"status": 0}));
}

// -- optional fields stay optional ------------------------------------------

#[test]
fn send_and_broadcast_without_serialization_or_with_extra_fields_are_relayed_as_given() {
    let srv = TestServer::start();
    let mut raw_recipient = srv.raw();
    assert_eq!(
        raw_recipient.call(json!({"command": "join", "name": ["g"]})),
        json!({"status": 0})
    );
    let mut ours = srv.client();
    ours.join(&["g"]).unwrap();
    let mut sender = srv.raw();
    let payload = dime::codec::dimeb::encode(&Value::I64(5)).unwrap();
    let headers: [&[u8]; 3] = [
        br#"{"command":"send","name":"g","varname":"plain"}"#,
        br#"{"command":"broadcast","varname":"extra","note":{"any":[1,"x"]},"n2":1e400}"#,
        br#"{"command":"send","name":"g","varname":"named","serialization":"dimeb","x":null}"#,
    ];
    for h in headers {
        sender.send_bytes(&frame(h, &payload));
        assert_eq!(sender.recv().0, json!({"status": 0}));
    }
    // Byte for byte what the sender wrote.
    raw_recipient.send(json!({"command": "sync", "n": -1}), b"");
    for h in headers {
        assert_eq!(
            raw_recipient.try_recv_raw().unwrap(),
            (h.to_vec(), payload.clone())
        );
    }
    assert_eq!(raw_recipient.recv().0, json!({"status": 0}));
    // Our client decodes a payload without "serialization" by the
    // session's (dimeb), wherever the header is hard to parse.
    let got = ours.sync(-1).unwrap();
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["plain", "extra", "named"]);
    assert!(got.iter().all(|(_, v)| *v == Value::I64(5)), "{got:?}");
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
