//! --max-queue: past the cap the sender gets an error naming the limit,
//! and nothing already queued is lost.

mod common;

use common::TestServer;
use dime::{Matrix, Value};

#[test]
fn queue_cap_rejects_the_send_and_keeps_what_was_queued() {
    let srv = TestServer::start_with(|c| c.max_queue = 3000);
    let mut a = srv.client();
    let mut b = srv.client();
    b.join(&["b"]).unwrap();
    let kb = Value::Matrix(Matrix::from_elems(vec![1000], &vec![1u8; 1000]).unwrap());
    a.send("b", "one", &kb).unwrap();
    a.send("b", "two", &kb).unwrap();
    let err = a.send("b", "three", &kb).unwrap_err().to_string();
    assert!(err.contains("--max-queue") && err.contains("3000"), "{err}");
    let got = b.sync(-1).unwrap();
    assert_eq!(
        got.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["one", "two"]
    );
    // Once drained there is room again.
    a.send("b", "three", &kb).unwrap();
    assert_eq!(b.sync(-1).unwrap().len(), 1);
}

#[test]
fn message_limit_applies_to_our_own_client_too() {
    let srv = TestServer::start_with(|c| c.max_message = 10_000);
    let mut a = srv.client();
    a.join(&["a"]).unwrap();
    let big = Value::Matrix(Matrix::from_elems(vec![20_000], &vec![0u8; 20_000]).unwrap());
    let err = a.send("a", "big", &big).unwrap_err().to_string();
    assert!(err.contains("--max-message"), "{err}");
    // The server closed that connection; a new one works.
    let mut b = srv.client();
    b.join(&["b"]).unwrap();
    b.send("b", "ok", &Value::Null).unwrap();
}
