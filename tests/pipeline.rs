//! Pipelined sends (`Client::set_pipeline`): sends return once written,
//! their replies are read by later calls, a refused send is reported late
//! and named, `flush` waits for every reply, and at most the window of
//! sends is ever unanswered.

mod common;

use common::TestServer;
use dime::wire::encode_head;
use dime::{Client, Error, Value};
use serde_json::json;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::mpsc;
use std::time::Duration;

fn pipelined(srv: &TestServer, window: usize) -> Client {
    let mut c = srv.client();
    assert_eq!(c.set_pipeline(window).unwrap(), window);
    c
}

fn names(got: &[(String, Value)]) -> Vec<&str> {
    got.iter().map(|(n, _)| n.as_str()).collect()
}

#[test]
fn off_by_default_and_sends_then_wait_for_their_reply() {
    let srv = TestServer::start();
    let mut a = srv.client();
    assert_eq!(a.pipeline_window(), 0);
    let err = a.send("nobody", "x", &Value::Null).unwrap_err();
    assert_eq!(
        err.to_string(),
        "server error: No such group exists: nobody"
    );
    assert_eq!(a.unacknowledged(), 0);
}

#[test]
fn a_refused_send_is_reported_by_the_next_call_that_reads_replies_and_named() {
    let srv = TestServer::start();
    let mut a = pipelined(&srv, 64);
    let mut b = srv.client();
    b.join(&["b"]).unwrap();
    a.send("b", "first", &Value::I64(1)).unwrap();
    // Returns at once: the refusal is not known yet.
    a.send("nobody", "lost", &Value::I64(2)).unwrap();
    a.send("b", "third", &Value::I64(3)).unwrap();
    assert_eq!(a.unacknowledged(), 3);
    let err = a.devices().unwrap_err();
    assert!(matches!(err, Error::Server(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "server error: pipelined send #2 of 'lost' to group 'nobody' failed: \
         No such group exists: nobody"
    );
    // Reported once; the call after it works, and so did the other sends.
    assert_eq!(a.unacknowledged(), 0);
    assert_eq!(a.devices().unwrap(), ["b"]);
    assert_eq!(names(&b.sync(-1).unwrap()), ["first", "third"]);
}

#[test]
fn broadcasts_are_pipelined_and_named_too() {
    let srv = TestServer::start_with(|c| c.max_queue = 100);
    let mut a = pipelined(&srv, 8);
    let mut b = srv.client();
    let big = Value::from("x".repeat(200).as_str());
    a.broadcast("fits", &Value::I64(1)).unwrap();
    // Past b's queue cap: the server refuses it.
    a.broadcast("too_big", &big).unwrap();
    let err = a.flush().unwrap_err().to_string();
    assert!(
        err.starts_with("server error: pipelined broadcast #2 of 'too_big' failed: "),
        "{err}"
    );
    assert!(err.contains("--max-queue"), "{err}");
    a.flush().unwrap();
    assert_eq!(names(&b.sync(-1).unwrap()), ["fits"]);
}

#[test]
fn several_failures_are_reported_one_per_call_in_order() {
    let srv = TestServer::start();
    let mut a = pipelined(&srv, 16);
    for g in ["g1", "g2", "g3"] {
        a.send(g, "v", &Value::Null).unwrap();
    }
    for g in ["g1", "g2", "g3"] {
        let err = a.flush().unwrap_err().to_string();
        assert!(err.contains(&format!("to group '{g}'")), "{err}");
    }
    a.flush().unwrap();
}

#[test]
fn a_call_that_reports_an_earlier_failure_does_nothing_else() {
    let srv = TestServer::start();
    let mut a = pipelined(&srv, 16);
    let mut b = srv.client();
    b.join(&["b"]).unwrap();
    a.send("nobody", "x", &Value::Null).unwrap();
    // join reads the replies before it writes: it is not made.
    assert!(a.join(&["mine"]).is_err());
    assert_eq!(b.devices().unwrap(), ["b"]);
    a.join(&["mine"]).unwrap();
    // A send that reports one is not made either: the window had no room.
    let mut one = pipelined(&srv, 1);
    one.send("nobody", "x", &Value::Null).unwrap();
    assert!(one.send("b", "not_sent", &Value::Null).is_err());
    one.send("b", "sent", &Value::Null).unwrap();
    one.flush().unwrap();
    assert_eq!(names(&b.sync(-1).unwrap()), ["sent"]);
}

#[test]
fn sync_after_sends_sees_them_and_keeps_its_messages_when_it_reports_a_failure() {
    let srv = TestServer::start();
    let mut a = pipelined(&srv, 64);
    a.join(&["a"]).unwrap();
    for i in 0..10 {
        a.send("a", &format!("v{i}"), &Value::I64(i)).unwrap();
    }
    // The server runs this connection's requests in order: a sync right
    // after the sends gets every one of them, in order.
    let got = a.sync(-1).unwrap();
    assert_eq!(
        got,
        (0..10)
            .map(|i| (format!("v{i}"), Value::I64(i)))
            .collect::<Vec<_>>()
    );
    a.send("a", "kept", &Value::I64(1)).unwrap();
    a.send("nobody", "bad", &Value::I64(2)).unwrap();
    let err = a.sync(-1).unwrap_err().to_string();
    assert!(err.contains("'bad' to group 'nobody'"), "{err}");
    // The message that sync fetched is not lost.
    assert_eq!(a.sync(-1).unwrap(), vec![("kept".into(), Value::I64(1))]);
}

#[test]
fn wait_after_sends_sees_them_and_reports_a_failure_before_blocking() {
    let srv = TestServer::start();
    let mut a = pipelined(&srv, 64);
    a.join(&["a"]).unwrap();
    a.send("a", "x", &Value::I64(1)).unwrap();
    assert_eq!(a.wait(Some(Duration::from_secs(5))).unwrap(), 1);
    assert_eq!(names(&a.sync(-1).unwrap()), ["x"]);
    // Nothing will arrive: the failure must come back at once, not after
    // the wait's full timeout.
    a.send("nobody", "x", &Value::Null).unwrap();
    let t = std::time::Instant::now();
    assert!(matches!(a.wait(None), Err(Error::Server(_))));
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert!(matches!(
        a.wait(Some(Duration::from_millis(50))),
        Err(Error::Timeout)
    ));
}

#[test]
fn flush_waits_until_the_server_has_taken_every_send() {
    let srv = TestServer::start();
    let mut a = pipelined(&srv, 1024);
    let mut b = srv.client();
    b.join(&["b"]).unwrap();
    let n = 3000;
    for i in 0..n {
        a.send("b", "v", &Value::I64(i)).unwrap();
        assert!(a.unacknowledged() <= 1024);
    }
    a.flush().unwrap();
    assert_eq!(a.unacknowledged(), 0);
    // Once flush returns, every other connection sees every message.
    let got = b.sync(-1).unwrap();
    assert_eq!(got.len(), n as usize);
    assert!(
        got.iter()
            .enumerate()
            .all(|(i, (_, v))| *v == Value::I64(i as i64))
    );
}

#[test]
fn a_call_larger_than_the_window_is_sent_whole_in_order() {
    let srv = TestServer::start();
    let mut a = pipelined(&srv, 4);
    let mut b = srv.client();
    b.join(&["b"]).unwrap();
    let values: Vec<Value> = (0..10).map(Value::I64).collect();
    let names_: Vec<String> = (0..10).map(|i| format!("v{i}")).collect();
    let vars: Vec<(&str, &Value)> = names_.iter().map(String::as_str).zip(&values).collect();
    a.send_many("b", &vars).unwrap();
    assert!(a.unacknowledged() <= 4);
    a.flush().unwrap();
    assert_eq!(b.sync(-1).unwrap().len(), 10);
}

#[test]
fn turning_pipelining_off_waits_for_replies_and_reports_a_failure() {
    let srv = TestServer::start();
    let mut a = pipelined(&srv, 16);
    a.send("nobody", "x", &Value::Null).unwrap();
    let err = a.set_pipeline(0).unwrap_err().to_string();
    assert!(err.contains("pipelined send #1"), "{err}");
    assert_eq!(a.pipeline_window(), 0);
    assert_eq!(a.unacknowledged(), 0);
    // Off again: DiME2's immediate error.
    assert_eq!(
        a.send("nobody", "x", &Value::Null).unwrap_err().to_string(),
        "server error: No such group exists: nobody"
    );
}

#[test]
fn close_reports_a_failure_and_drop_still_delivers_what_was_written() {
    let srv = TestServer::start();
    let mut b = srv.client();
    b.join(&["b"]).unwrap();
    let mut a = pipelined(&srv, 16);
    a.send("nobody", "x", &Value::Null).unwrap();
    assert!(
        a.close()
            .unwrap_err()
            .to_string()
            .contains("pipelined send #1")
    );
    let mut a = pipelined(&srv, 16);
    for i in 0..5 {
        a.send("b", "v", &Value::I64(i)).unwrap();
    }
    drop(a);
    let t = std::time::Instant::now();
    let mut got = Vec::new();
    while got.len() < 5 && t.elapsed() < Duration::from_secs(5) {
        got.extend(b.sync(-1).unwrap());
    }
    assert_eq!(got.len(), 5);
}

/// A client that writes its sends and goes at once: the server finds it
/// gone when it writes the first replies, and still runs every request it
/// wrote (they are in the socket), so none is lost.
#[test]
fn a_client_that_closes_right_after_writing_still_has_every_send_run() {
    let srv = TestServer::start();
    let mut b = srv.client();
    b.join(&["b"]).unwrap();
    for round in 0..5 {
        let mut a = pipelined(&srv, 1024);
        for i in 0..300 {
            a.send("b", "v", &Value::I64(i)).unwrap();
        }
        drop(a);
        let t = std::time::Instant::now();
        let mut got = Vec::new();
        while got.len() < 300 && t.elapsed() < Duration::from_secs(10) {
            got.extend(b.sync(-1).unwrap());
        }
        assert_eq!(got.len(), 300, "round {round}");
    }
}

#[test]
fn the_window_is_clamped() {
    let srv = TestServer::start();
    let mut a = srv.client();
    assert_eq!(
        a.set_pipeline(usize::MAX).unwrap(),
        dime::client::pipeline::MAX_WINDOW
    );
}

/// A server that handshakes, then reads requests and answers only when
/// told to (one `{"status":0}` per message on `answer`); it reports each
/// request it reads on the returned channel.
fn silent_server(dir: &std::path::Path) -> (String, mpsc::Sender<()>, mpsc::Receiver<String>) {
    let path = dir.join("silent.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let (answer_tx, answer_rx) = mpsc::channel::<()>();
    let (seen_tx, seen_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let reply = |s: &mut UnixStream, j: serde_json::Value| {
            let text = j.to_string();
            s.write_all(&encode_head(text.as_bytes(), 0)).unwrap();
        };
        let mut reader = s.try_clone().unwrap();
        let read_one = move || -> Option<String> {
            let mut head = [0u8; 12];
            reader.read_exact(&mut head).ok()?;
            let jl = u32::from_be_bytes(head[4..8].try_into().unwrap()) as usize;
            let pl = u32::from_be_bytes(head[8..12].try_into().unwrap()) as usize;
            let mut body = vec![0u8; jl + pl];
            reader.read_exact(&mut body).ok()?;
            Some(String::from_utf8_lossy(&body[..jl]).into_owned())
        };
        let mut read_one = read_one;
        read_one().unwrap();
        reply(
            &mut s,
            json!({"status":0,"serialization":"dimeb","tls":false,"extensions":[]}),
        );
        let mut writer = s.try_clone().unwrap();
        std::thread::spawn(move || {
            while answer_rx.recv().is_ok() {
                reply(&mut writer, json!({"status":0}));
            }
        });
        while let Some(req) = read_one() {
            if seen_tx.send(req).is_err() {
                break;
            }
        }
    });
    (format!("unix:{}", path.display()), answer_tx, seen_rx)
}

#[test]
fn no_more_than_the_window_is_ever_unanswered() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, answer, seen) = silent_server(dir.path());
    let mut c = Client::connect(&addr).unwrap();
    assert_eq!(c.set_pipeline(4).unwrap(), 4);
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for i in 0..6 {
            c.send("g", &format!("v{i}"), &Value::I64(i)).unwrap();
            done_tx.send((i, c.unacknowledged())).unwrap();
        }
        c.flush().unwrap();
        done_tx.send((99, c.unacknowledged())).unwrap();
    });
    // Four sends go out with no reply at all.
    for i in 0..4 {
        assert_eq!(
            done_rx.recv_timeout(Duration::from_secs(5)),
            Ok((i, i as usize + 1))
        );
        assert!(
            seen.recv_timeout(Duration::from_secs(5))
                .unwrap()
                .contains(&format!("v{i}"))
        );
    }
    // The fifth waits for room: not written until the full window is read
    // down to half (two replies).
    assert!(done_rx.recv_timeout(Duration::from_millis(300)).is_err());
    assert!(seen.try_recv().is_err());
    answer.send(()).unwrap();
    assert!(done_rx.recv_timeout(Duration::from_millis(300)).is_err());
    assert!(seen.try_recv().is_err());
    answer.send(()).unwrap();
    assert_eq!(done_rx.recv_timeout(Duration::from_secs(5)), Ok((4, 3)));
    assert!(
        seen.recv_timeout(Duration::from_secs(5))
            .unwrap()
            .contains("v4")
    );
    // The sixth fits without a reply.
    assert_eq!(done_rx.recv_timeout(Duration::from_secs(5)), Ok((5, 4)));
    // flush returns only once all four left are answered.
    for _ in 0..3 {
        answer.send(()).unwrap();
    }
    assert!(done_rx.recv_timeout(Duration::from_millis(300)).is_err());
    answer.send(()).unwrap();
    assert_eq!(done_rx.recv_timeout(Duration::from_secs(5)), Ok((99, 0)));
}

#[test]
fn with_pipelining_a_sync_after_a_wait_returns_what_the_wait_fetched() {
    let srv = TestServer::start();
    let mut b = srv.client();
    for (window, want) in [(0, vec!["m1", "m2"]), (16, vec!["m1"])] {
        let mut a = srv.client();
        a.set_pipeline(window).unwrap();
        a.join(&["a"]).unwrap();
        b.send("a", "m1", &Value::I64(1)).unwrap();
        assert_eq!(a.wait(Some(Duration::from_secs(5))).unwrap(), 1);
        // Queued at the server before the sync below starts.
        b.send("a", "m2", &Value::I64(2)).unwrap();
        // DiME2's sync asks the server again; a pipelining client's sync
        // hands out what its wait fetched, in one exchange less.
        assert_eq!(names(&a.sync(-1).unwrap()), want, "window {window}");
        let rest: Vec<String> = a.sync(-1).unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(rest.len(), 2 - want.len(), "window {window}");
    }
}

#[test]
fn a_wait_behind_unanswered_sends_waits_its_whole_timeout() {
    let srv = TestServer::start();
    let mut a = pipelined(&srv, 16);
    let mut b = srv.client();
    a.join(&["a"]).unwrap();
    b.join(&["b"]).unwrap();
    // A send in flight, then a wait longer than the first, capped slice.
    a.send("b", "x", &Value::Null).unwrap();
    let t = std::time::Instant::now();
    assert!(matches!(
        a.wait(Some(Duration::from_millis(250))),
        Err(Error::Timeout)
    ));
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(250), "{took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    // And a message that comes after the first slice is still received.
    a.send("b", "y", &Value::Null).unwrap();
    let addr = srv.unix();
    let late = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let mut c = Client::connect(&addr).unwrap();
        c.send("a", "late", &Value::I64(7)).unwrap();
    });
    assert_eq!(a.wait(Some(Duration::from_secs(10))).unwrap(), 1);
    late.join().unwrap();
    assert_eq!(a.sync(-1).unwrap(), vec![("late".into(), Value::I64(7))]);
    assert_eq!(names(&b.sync(-1).unwrap()), ["x", "y"]);
}
