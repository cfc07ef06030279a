//! Groups, send and leave.

mod common;

use common::TestServer;
use dime::Value;
use serde_json::json;

#[test]
fn send_reaches_every_member_including_the_sender() {
    let srv = TestServer::start();
    let mut a = srv.client();
    let mut b = srv.client();
    let mut c = srv.client();
    a.join(&["g"]).unwrap();
    b.join(&["g", "other"]).unwrap();
    c.join(&["other"]).unwrap();
    a.send("g", "x", &Value::I64(42)).unwrap();
    assert_eq!(a.sync(-1).unwrap(), vec![("x".to_owned(), Value::I64(42))]);
    assert_eq!(b.sync(-1).unwrap(), vec![("x".to_owned(), Value::I64(42))]);
    assert!(c.sync(-1).unwrap().is_empty());
}

#[test]
fn send_many_pipelines_and_keeps_order() {
    let srv = TestServer::start();
    let mut a = srv.client();
    let mut b = srv.client();
    b.join(&["b"]).unwrap();
    let values: Vec<Value> = (0..40).map(Value::I64).collect();
    let names: Vec<String> = (0..40).map(|i| format!("v{i}")).collect();
    let vars: Vec<(&str, &Value)> = names.iter().map(String::as_str).zip(&values).collect();
    a.send_many("b", &vars).unwrap();
    let got = b.sync(-1).unwrap();
    assert_eq!(got.len(), 40);
    for (i, (name, v)) in got.iter().enumerate() {
        assert_eq!(name, &format!("v{i}"));
        assert_eq!(v, &Value::I64(i as i64));
    }
}

#[test]
fn unknown_group_is_an_error_and_the_connection_stays_usable() {
    let srv = TestServer::start();
    let mut a = srv.client();
    let err = a.send("nobody", "x", &Value::Null).unwrap_err();
    assert_eq!(
        err.to_string(),
        "server error: No such group exists: nobody"
    );
    a.join(&["g"]).unwrap();
    a.send("g", "x", &Value::Null).unwrap();
    assert_eq!(a.sync(-1).unwrap().len(), 1);
}

#[test]
fn join_twice_and_leave_unjoined_are_errors() {
    let srv = TestServer::start();
    let mut raw = srv.raw();
    assert_eq!(
        raw.call(json!({"command": "join", "name": ["g"]})),
        json!({"status": 0})
    );
    assert_eq!(
        raw.call(json!({"command": "join", "name": ["h", "g"]})),
        json!({"status": -1, "error": "Client is already in group: g"})
    );
    // The failed join changed nothing: h was not joined.
    assert_eq!(
        raw.call(json!({"command": "devices"})),
        json!({"status": 0, "devices": ["g"]})
    );
    assert_eq!(
        raw.call(json!({"command": "leave", "name": ["h"]})),
        json!({"status": -1, "error": "Client is not in group: h"})
    );
    assert_eq!(
        raw.call(json!({"command": "leave", "name": ["g"]})),
        json!({"status": 0})
    );
    assert_eq!(
        raw.call(json!({"command": "devices"})),
        json!({"status": 0, "devices": []})
    );
}

#[test]
fn a_left_group_receives_nothing() {
    let srv = TestServer::start();
    let mut a = srv.client();
    let mut b = srv.client();
    a.join(&["g"]).unwrap();
    b.join(&["g"]).unwrap();
    b.leave(&["g"]).unwrap();
    a.send("g", "x", &Value::Bool(true)).unwrap();
    assert!(b.sync(-1).unwrap().is_empty());
    assert_eq!(a.sync(-1).unwrap().len(), 1);
}

#[test]
fn one_stored_message_is_shared_by_all_recipients() {
    // 8 recipients of a 8 MB message: each gets identical bytes.
    let srv = TestServer::start();
    let mut sender = srv.client();
    let mut rs: Vec<_> = (0..8).map(|_| srv.client()).collect();
    for r in &mut rs {
        r.join(&["many"]).unwrap();
    }
    let m = dime::Matrix::from_elems(vec![1000, 1000], &vec![1.5f64; 1_000_000]).unwrap();
    sender.send("many", "m", &Value::Matrix(m.clone())).unwrap();
    for r in &mut rs {
        assert_eq!(
            r.sync(-1).unwrap(),
            vec![("m".to_owned(), Value::Matrix(m.clone()))]
        );
    }
}
