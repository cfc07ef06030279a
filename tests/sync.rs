//! sync drains the queue front first, n at a time, resending the sender's
//! header and payload unchanged.

mod common;

use common::TestServer;
use dime::Value;
use serde_json::json;

#[test]
fn sync_with_n_drains_in_fifo_order() {
    let srv = TestServer::start();
    let mut a = srv.client();
    let mut b = srv.client();
    b.join(&["b"]).unwrap();
    for i in 0..5 {
        a.send("b", &format!("v{i}"), &Value::I64(i)).unwrap();
    }
    let first = b.sync(2).unwrap();
    assert_eq!(
        first.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["v0", "v1"]
    );
    let rest = b.sync(-1).unwrap();
    assert_eq!(
        rest.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["v2", "v3", "v4"]
    );
    assert!(b.sync(-1).unwrap().is_empty());
    assert!(b.sync(3).unwrap().is_empty());
}

#[test]
fn sync_resends_the_original_header_and_payload_unchanged() {
    let srv = TestServer::start();
    let mut a = srv.raw();
    let mut b = srv.raw();
    b.call(json!({"command": "join", "name": ["b"]}));
    let header = json!({"command": "send", "name": "b", "varname": "x", "serialization": "pickle", "extra": [1, 2]});
    a.send(header.clone(), b"\x80\x04opaque");
    assert_eq!(a.recv().0, json!({"status": 0}));
    b.send(json!({"command": "sync", "n": -1}), &[]);
    let (h, p) = b.recv();
    assert_eq!(h, header);
    assert_eq!(p, b"\x80\x04opaque");
    assert_eq!(b.recv().0, json!({"status": 0}));
}

#[test]
fn undecodable_messages_are_reported_not_dropped() {
    let srv = TestServer::start();
    let mut raw = srv.raw();
    let mut b = srv.client();
    b.join(&["b"]).unwrap();
    raw.send(
        json!({"command": "send", "name": "b", "varname": "p", "serialization": "pickle"}),
        b"xx",
    );
    raw.recv();
    let mut a = srv.client();
    a.send("b", "ok", &Value::I64(1)).unwrap();
    let err = b.sync(-1).unwrap_err().to_string();
    assert!(err.contains("'p'") && err.contains("pickle"), "{err}");
    // The decodable message after it is kept for the next sync.
    assert_eq!(b.sync(-1).unwrap(), vec![("ok".to_owned(), Value::I64(1))]);
}

#[test]
fn sync_checked_hands_out_payloads_and_keeps_the_neighbours_of_a_bad_one() {
    let srv = TestServer::start();
    let mut raw = srv.raw();
    let mut b = srv.client();
    b.join(&["b"]).unwrap();
    let mut a = srv.client();
    a.send("b", "before", &Value::I64(1)).unwrap();
    for (varname, serialization, payload) in [
        ("p", "pickle", &b"xx"[..]),
        ("cut", "dimeb", &[0x0C, 0, 0][..]),
    ] {
        raw.send(
            json!({"command": "send", "name": "b", "varname": varname, "serialization": serialization}),
            payload,
        );
        raw.recv();
    }
    a.send("b", "after", &Value::F64(2.0)).unwrap();
    let err = b.sync_checked(-1).unwrap_err().to_string();
    assert!(err.contains("'p'") && err.contains("pickle"), "{err}");
    let err = b.sync_checked(-1).unwrap_err().to_string();
    assert!(err.contains("'cut'") && err.contains("truncated"), "{err}");
    let got = b.sync_checked(-1).unwrap();
    assert_eq!(
        got.iter().map(|m| m.varname.as_str()).collect::<Vec<_>>(),
        ["before", "after"]
    );
    assert_eq!(
        &got[1].payload[..],
        dime::codec::dimeb::encode(&Value::F64(2.0)).unwrap()
    );
}

#[test]
fn sync_with_wait_blocks_until_a_message_then_delivers_it() {
    let srv = TestServer::start();
    let mut b = srv.client();
    b.join(&["b"]).unwrap();
    let t = std::time::Instant::now();
    assert!(matches!(
        b.receive(-1, Some(std::time::Duration::from_millis(100))),
        Err(dime::Error::Timeout)
    ));
    assert!(t.elapsed() >= std::time::Duration::from_millis(90));
    let addr = srv.unix();
    let sender = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(150));
        let mut a = dime::Client::connect(&addr).unwrap();
        a.send("b", "x", &Value::I64(1)).unwrap();
        a.send("b", "y", &Value::I64(2)).unwrap();
    });
    let first = b.receive(-1, None).unwrap();
    assert_eq!(first[0], ("x".to_owned(), Value::I64(1)));
    sender.join().unwrap();
    // Already queued: answered at once, n respected.
    let rest = b.receive(1, None).unwrap();
    assert_eq!(rest.len() + first.len(), 2);
}

#[test]
fn send_receive_is_a_request_and_reply_in_one_exchange() {
    let srv = TestServer::start();
    let mut a = srv.client();
    a.join(&["a"]).unwrap();
    let addr = srv.unix();
    let echo = std::thread::spawn(move || {
        let mut b = dime::Client::connect(&addr).unwrap();
        b.join(&["b"]).unwrap();
        let mut got = b.receive(-1, None).unwrap();
        for _ in 0..3 {
            let (name, v) = got.remove(0);
            let Value::I64(x) = v else { panic!() };
            got = b
                .send_receive("a", &name, &Value::I64(x + 1), -1, None)
                .unwrap();
        }
    });
    while a.devices().unwrap() != ["a", "b"] {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let mut x = 0;
    for _ in 0..3 {
        let reply = a.send_receive("b", "x", &Value::I64(x), -1, None).unwrap();
        assert_eq!(reply, vec![("x".to_owned(), Value::I64(x + 1))]);
        x += 10;
    }
    a.send("b", "x", &Value::I64(0)).unwrap();
    echo.join().unwrap();
    // A failed send returns its error and receives nothing.
    let err = a
        .send_receive("nobody", "x", &Value::Null, -1, None)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "server error: No such group exists: nobody"
    );
    assert_eq!(a.devices().unwrap(), ["a"]);
}
