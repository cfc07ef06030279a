//! wait blocks until a message is queued, answers in request order, and
//! (our extension) times out.

mod common;

use common::TestServer;
use dime::{Error, Value};
use serde_json::json;
use std::time::{Duration, Instant};

#[test]
fn wait_returns_at_once_when_messages_are_queued() {
    let srv = TestServer::start();
    let mut a = srv.client();
    let mut b = srv.client();
    b.join(&["b"]).unwrap();
    a.send("b", "x", &Value::I64(1)).unwrap();
    a.send("b", "y", &Value::I64(2)).unwrap();
    assert_eq!(b.wait(None).unwrap(), 2);
}

#[test]
fn wait_blocks_until_a_message_arrives() {
    let srv = TestServer::start();
    let mut b = srv.client();
    b.join(&["b"]).unwrap();
    let addr = srv.unix();
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        let mut a = dime::Client::connect(&addr).unwrap();
        a.send("b", "late", &Value::from("hi")).unwrap();
    });
    let t = Instant::now();
    assert_eq!(b.wait(None).unwrap(), 1);
    assert!(t.elapsed() >= Duration::from_millis(150));
    assert_eq!(
        b.sync(-1).unwrap(),
        vec![("late".to_owned(), Value::from("hi"))]
    );
    sender.join().unwrap();
}

#[test]
fn wait_with_timeout_times_out_and_the_connection_stays_usable() {
    let srv = TestServer::start();
    let mut b = srv.client();
    b.join(&["b"]).unwrap();
    let t = Instant::now();
    assert!(matches!(
        b.wait(Some(Duration::from_millis(100))),
        Err(Error::Timeout)
    ));
    assert!(t.elapsed() >= Duration::from_millis(90));
    b.send("b", "x", &Value::Null).unwrap();
    assert_eq!(b.wait(Some(Duration::from_secs(5))).unwrap(), 1);
}

#[test]
fn replies_after_a_pending_wait_keep_request_order() {
    let srv = TestServer::start();
    let mut b = srv.raw();
    b.call(json!({"command": "join", "name": ["b"]}));
    // Pipelined: wait (blocks), then devices, then a send to itself that wakes the wait.
    b.send(json!({"command": "wait"}), &[]);
    b.send(json!({"command": "devices"}), &[]);
    b.send(
        json!({"command": "send", "name": "b", "varname": "x", "serialization": "dimeb"}),
        &[0],
    );
    assert_eq!(b.recv().0, json!({"status": 0, "n": 1}));
    assert_eq!(b.recv().0, json!({"status": 0, "devices": ["b"]}));
    assert_eq!(b.recv().0, json!({"status": 0}));
}

#[test]
fn a_waiting_client_that_disconnects_is_cleaned_up() {
    let srv = TestServer::start();
    {
        let mut w = srv.raw();
        w.call(json!({"command": "join", "name": ["w"]}));
        w.send(json!({"command": "wait"}), &[]);
    }
    let mut a = srv.client();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(a.devices().unwrap(), Vec::<String>::new());
}
