//! devices lists non-empty groups; disconnects clean up.

mod common;

use common::TestServer;
use dime::Value;
use std::time::{Duration, Instant};

#[test]
fn devices_lists_groups_with_members() {
    let srv = TestServer::start();
    let mut a = srv.client();
    let mut b = srv.client();
    assert!(a.devices().unwrap().is_empty());
    a.join(&["matlab", "python"]).unwrap();
    b.join(&["python"]).unwrap();
    assert_eq!(b.devices().unwrap(), ["matlab", "python"]);
    a.leave(&["matlab"]).unwrap();
    assert_eq!(b.devices().unwrap(), ["python"]);
}

#[test]
fn disconnect_removes_the_client_from_its_groups() {
    let srv = TestServer::start();
    let mut a = srv.client();
    let mut b = srv.client();
    b.join(&["gone"]).unwrap();
    a.join(&["stays"]).unwrap();
    // Leave a queued message behind too.
    a.send("gone", "x", &Value::I64(1)).unwrap();
    drop(b);
    let t = Instant::now();
    while a.devices().unwrap() != ["stays"] {
        assert!(t.elapsed() < Duration::from_secs(5), "group never vanished");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        a.send("gone", "x", &Value::I64(1)).unwrap_err().to_string(),
        "server error: No such group exists: gone"
    );
}

#[test]
fn disconnect_mid_frame_leaves_others_unaffected() {
    let srv = TestServer::start();
    let mut a = srv.client();
    a.join(&["a"]).unwrap();
    {
        let mut r = srv.raw();
        let f = common::frame(
            br#"{"command":"send","name":"a","varname":"x","serialization":"dimeb"}"#,
            &[1u8; 1000],
        );
        r.send_bytes(&f[..500]);
    }
    a.send("a", "y", &Value::I64(2)).unwrap();
    assert_eq!(a.sync(-1).unwrap(), vec![("y".to_owned(), Value::I64(2))]);
}
