//! Change events: watches of shares (by key prefix), tuple spaces and
//! group membership, numbered in order; resuming after a reconnect gets
//! what was missed, or one `lost` event once that is no longer known.

mod common;

use common::TestServer;
use dime::Value;
use dime::pattern::Field;
use dime::server::{Durability, FsyncPolicy};
use dime::watch::{Event, EventKind, Watch};
use serde_json::json;
use std::time::Duration;

const WAIT: Option<Duration> = Some(Duration::from_secs(5));

fn next(w: &mut Watch) -> Event {
    w.next(WAIT).unwrap().expect("an event")
}

fn quiet(w: &mut Watch) {
    let e = w.next(Some(Duration::from_millis(100))).unwrap();
    assert!(e.is_none(), "unexpected event {e:?}");
}

#[test]
fn a_share_watch_sees_changes_under_its_prefix() {
    let srv = TestServer::start();
    let mut c = srv.client();
    let mut w = c.share("s").watch("jobs/", None).unwrap();
    let start = w.position().unwrap().seq;
    let mut s = c.share("s");
    s.set("jobs/1", &Value::I64(1)).unwrap();
    s.set("other", &Value::I64(9)).unwrap();
    s.incr("jobs/1", &Value::I64(2)).unwrap();
    s.set_many(&[("jobs/2", &Value::from("b")), ("x", &Value::Null)])
        .unwrap();
    assert!(
        s.cas("jobs/2", Some(&Value::from("b")), &Value::from("c"))
            .unwrap()
    );
    assert!(
        !s.cas("jobs/2", Some(&Value::from("b")), &Value::from("d"))
            .unwrap()
    );
    assert!(s.del("jobs/1").unwrap());
    s.pop("jobs/2").unwrap();
    s.set("jobs/3", &Value::Bool(true)).unwrap();
    s.clear().unwrap();
    c.share("elsewhere").set("jobs/1", &Value::I64(0)).unwrap();

    let want = [
        (EventKind::Set, Some("jobs/1"), Some(Value::I64(1))),
        (EventKind::Set, Some("jobs/1"), Some(Value::I64(3))),
        (EventKind::Set, Some("jobs/2"), Some(Value::from("b"))),
        (EventKind::Set, Some("jobs/2"), Some(Value::from("c"))),
        (EventKind::Del, Some("jobs/1"), None),
        (EventKind::Del, Some("jobs/2"), None),
        (EventKind::Set, Some("jobs/3"), Some(Value::Bool(true))),
        (EventKind::Clear, None, None),
    ];
    let mut last = start;
    for (kind, key, value) in want {
        let e = next(&mut w);
        assert_eq!((e.kind, e.key.as_deref()), (kind, key), "{e:?}");
        assert_eq!(e.decode().unwrap(), value);
        assert_eq!(e.topic.as_deref(), Some("s"));
        assert!(e.seq > last, "numbers grow: {} after {last}", e.seq);
        last = e.seq;
    }
    quiet(&mut w);
    assert_eq!(w.position().unwrap().seq, last);
}

#[test]
fn a_space_watch_sees_tuples_in_and_out() {
    let srv = TestServer::start();
    let mut c = srv.client();
    let mut w = c.space("t").watch(None).unwrap();
    let mut taker = srv.client();
    let waiting = std::thread::spawn(move || {
        taker
            .space("t")
            .take(&[Field::Value(Value::from("direct"))], WAIT)
            .unwrap()
    });
    std::thread::sleep(Duration::from_millis(100));
    c.space("t").out(&[Value::from("direct")]).unwrap();
    waiting.join().unwrap();
    c.space("t")
        .out(&[Value::from("stored"), Value::I64(1)])
        .unwrap();
    c.space("t")
        .try_take(&[Field::Value(Value::from("stored")), Field::Any])
        .unwrap()
        .unwrap();
    c.space("other").out(&[Value::I64(0)]).unwrap();
    let tuple = |v: Vec<Value>| Some(Value::List(v));
    for (kind, value) in [
        (EventKind::Out, tuple(vec![Value::from("direct")])),
        (EventKind::In, tuple(vec![Value::from("direct")])),
        (
            EventKind::Out,
            tuple(vec![Value::from("stored"), Value::I64(1)]),
        ),
        (
            EventKind::In,
            tuple(vec![Value::from("stored"), Value::I64(1)]),
        ),
    ] {
        let e = next(&mut w);
        assert_eq!(e.kind, kind);
        assert_eq!(e.decode().unwrap(), value);
        assert_eq!(e.topic.as_deref(), Some("t"));
    }
    quiet(&mut w);
}

#[test]
fn a_group_watch_sees_joins_and_leaves() {
    let srv = TestServer::start();
    let c = srv.client();
    let mut w = c.watch_groups("lab/", None).unwrap();
    let mut a = srv.client();
    a.join(&["lab/x", "other"]).unwrap();
    a.leave(&["lab/x"]).unwrap();
    a.join(&["lab/y"]).unwrap();
    drop(a);
    let mut seen = Vec::new();
    for _ in 0..3 {
        let e = next(&mut w);
        assert!(e.client.is_some());
        seen.push((e.kind, e.key.unwrap()));
    }
    assert_eq!(
        seen,
        [
            (EventKind::Join, "lab/x".to_owned()),
            (EventKind::Leave, "lab/x".to_owned()),
            (EventKind::Join, "lab/y".to_owned()),
        ]
    );
    // The disconnect leaves lab/y (and "other", not watched).
    let e = next(&mut w);
    assert_eq!(
        (e.kind, e.key.as_deref()),
        (EventKind::Leave, Some("lab/y"))
    );
    quiet(&mut w);
}

#[test]
fn a_resumed_watch_gets_what_it_missed() {
    let srv = TestServer::start();
    let mut c = srv.client();
    let mut w = c.share("s").watch("", None).unwrap();
    c.share("s").set("a", &Value::I64(1)).unwrap();
    assert_eq!(next(&mut w).key.as_deref(), Some("a"));
    let pos = w.position().unwrap();
    drop(w);
    // While nobody watches.
    c.share("s").set("b", &Value::I64(2)).unwrap();
    c.share("s").del("a").unwrap();
    let mut w = c.share("s").watch("", Some(pos)).unwrap();
    c.share("s").set("c", &Value::I64(3)).unwrap();
    let got: Vec<(EventKind, String)> = (0..3)
        .map(|_| {
            let e = next(&mut w);
            (e.kind, e.key.unwrap())
        })
        .collect();
    assert_eq!(
        got,
        [
            (EventKind::Set, "b".to_owned()),
            (EventKind::Del, "a".to_owned()),
            (EventKind::Set, "c".to_owned()),
        ]
    );
    quiet(&mut w);
}

#[test]
fn resuming_past_the_history_says_it_is_lost() {
    let srv = TestServer::start();
    let mut c = srv.client();
    let w = c.share("s").watch("", None).unwrap();
    let pos = w.position().unwrap();
    drop(w);
    for i in 0..(dime::server::WATCH_HISTORY_EVENTS as i64 + 10) {
        c.share("s").set("k", &Value::I64(i)).unwrap();
    }
    let mut w = c.share("s").watch("", Some(pos)).unwrap();
    let e = next(&mut w);
    assert_eq!(e.kind, EventKind::Lost);
    assert!(e.message.unwrap().contains("re-read"));
    // Then it goes on from the present.
    c.share("s").set("k", &Value::from("new")).unwrap();
    let e = next(&mut w);
    assert_eq!(e.decode().unwrap(), Some(Value::from("new")));
}

#[test]
fn a_watch_reconnects_after_a_broker_restart_and_is_told_to_re_read() {
    let data = tempfile::tempdir().unwrap();
    let sock = tempfile::tempdir().unwrap();
    let start = || {
        let (dir, sock) = (data.path().to_owned(), sock.path().join("d.sock"));
        TestServer::start_with(move |c| {
            c.listen = vec![dime::transport::Address::Unix(sock)];
            c.durability = Some(Durability {
                dir,
                fsync: FsyncPolicy::EverySec,
                rewrite_after: 64 << 20,
            })
        })
    };
    let srv = start();
    let mut c = srv.client();
    let mut w = c.share("s").watch("", None).unwrap();
    c.share("s").set("k", &Value::I64(1)).unwrap();
    assert_eq!(next(&mut w).kind, EventKind::Set);
    drop(c);
    drop(srv);
    let srv = start();
    // The data survived, the broker's history did not: re-read.
    let e = next(&mut w);
    assert_eq!(e.kind, EventKind::Lost, "{e:?}");
    assert!(e.message.unwrap().contains("restarted"));
    let mut c = srv.client();
    assert_eq!(c.share("s").get("k").unwrap(), Some(Value::I64(1)));
    c.share("s").set("k", &Value::I64(2)).unwrap();
    let e = next(&mut w);
    assert_eq!(e.decode().unwrap(), Some(Value::I64(2)));
}

#[test]
fn watch_requests_are_checked() {
    let srv = TestServer::start();
    let mut raw = srv.raw();
    let r = raw.call(json!({"command": "share_watch", "share": "s", "watch": 7}));
    assert_eq!(r["status"], 0, "{r}");
    let r = raw.call(json!({"command": "share_watch", "share": "s", "watch": 7}));
    assert!(
        r["error"].as_str().unwrap().contains("already has a watch"),
        "{r}"
    );
    let r = raw.call(json!({"command": "share_unwatch", "watch": 8}));
    assert_eq!(r["status"], -1, "{r}");
    let r = raw.call(json!({"command": "share_unwatch", "watch": 7}));
    assert_eq!(r["status"], 0, "{r}");
    let r = raw.call(json!({"command": "ts_unwatch", "watch": 7}));
    assert_eq!(r["status"], -1, "{r}");
    // An unwatched share no longer pushes anything.
    srv.client().share("s").set("k", &Value::I64(1)).unwrap();
    let r = raw.call(json!({"command": "share_len", "share": "s"}));
    assert_eq!(r["len"], 1, "{r}");
    // A missing id is a malformed request.
    raw.send(json!({"command": "group_watch"}), &[]);
    let (r, _) = raw.recv();
    assert!(r["error"].as_str().unwrap().contains("watch"), "{r}");
    assert!(raw.is_closed());
}
