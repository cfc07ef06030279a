//! broadcast reaches every other client, joined or not, never the sender.

mod common;

use common::TestServer;
use dime::Value;

#[test]
fn broadcast_excludes_the_sender_and_includes_unjoined_clients() {
    let srv = TestServer::start();
    let mut a = srv.client();
    let mut b = srv.client();
    let mut c = srv.client();
    a.join(&["g"]).unwrap();
    b.join(&["g"]).unwrap();
    a.broadcast("hello", &Value::from("world")).unwrap();
    assert!(a.sync(-1).unwrap().is_empty());
    assert_eq!(
        b.sync(-1).unwrap(),
        vec![("hello".to_owned(), Value::from("world"))]
    );
    assert_eq!(
        c.sync(-1).unwrap(),
        vec![("hello".to_owned(), Value::from("world"))]
    );
}

#[test]
fn broadcast_with_nobody_else_succeeds() {
    let srv = TestServer::start();
    let mut a = srv.client();
    a.broadcast("x", &Value::Null).unwrap();
    assert!(a.sync(-1).unwrap().is_empty());
}
