//! A watcher that stops reading is held to the broker's limit of events
//! queued for it (`--watch-queue-events`, `--watch-queue-bytes`): what the
//! broker keeps for it stays under the limit however much is written,
//! writers are not slowed, and once it reads again it gets every event up
//! to where it fell behind, then the rest from the history, or one `lost`
//! event when the history has moved past it. Its replies are never lost.

mod common;

use common::TestServer;
use dime::Value;
use dime::pattern::Field;
use dime::watch::{Event, EventKind, Watch};
use serde_json::{Value as Json, json};
use std::time::{Duration, Instant};

const WAIT: Option<Duration> = Some(Duration::from_secs(10));

fn next(w: &mut Watch) -> Event {
    w.next(WAIT).unwrap().expect("an event")
}

fn quiet(w: &mut Watch) {
    let e = w.next(Some(Duration::from_millis(200))).unwrap();
    assert!(e.is_none(), "unexpected event {e:?}");
}

/// A server whose watchers may have `events` events or `bytes` bytes
/// queued unread.
fn bounded(events: u64, bytes: u64) -> TestServer {
    TestServer::start_with(|c| {
        c.watch_queue_events = events;
        c.watch_queue_bytes = bytes;
    })
}

/// The most watch events (and their bytes) any client has queued unread.
fn most_queued(srv: &TestServer) -> (u64, u64) {
    let r = srv.raw().call(json!({"command": "inspect"}));
    let clients = r["clients"].as_array().expect("clients");
    let field = |c: &Json, k: &str| c[k].as_u64().unwrap_or_else(|| panic!("no {k}: {c}"));
    clients
        .iter()
        .map(|c| (field(c, "watch_events"), field(c, "watch_bytes")))
        .max()
        .unwrap_or((0, 0))
}

/// Asserts that a client has more than half of `limit` events queued (a
/// watch of it is behind: it goes on from the history at half) and no
/// more than `limit`.
fn assert_behind_within(srv: &TestServer, limit: u64) {
    let queued = most_queued(srv).0;
    assert!(
        (limit / 2 + 1..=limit).contains(&queued),
        "{queued} events queued, limit {limit}"
    );
}

fn stats(srv: &TestServer) -> Json {
    srv.raw().call(json!({"command": "stats"}))
}

/// Sets `n` keys of share `name` (k0 … k999, over and over; the value is
/// the write's number), a thousand per request; returns how long it took.
fn write(c: &mut dime::Client, name: &str, n: usize, pad: usize) -> Duration {
    let started = Instant::now();
    let pad = "x".repeat(pad);
    let mut s = c.share(name);
    for batch in 0..n / 1000 {
        let values: Vec<(String, Value)> = (0..1000)
            .map(|i| {
                let n = batch * 1000 + i;
                (format!("k{i}"), Value::from(format!("{n}{pad}").as_str()))
            })
            .collect();
        let items: Vec<(&str, &Value)> = values.iter().map(|(k, v)| (k.as_str(), v)).collect();
        s.set_many(&items).unwrap();
    }
    started.elapsed()
}

/// Reads events numbered from `first` on, in order and without gaps, until
/// a `lost` one (returned) or `count` of them (None).
fn read_in_order(w: &mut Watch, first: u64, count: u64) -> (u64, Option<Event>) {
    let mut seq = first;
    while seq < first + count {
        let e = next(w);
        if e.kind == EventKind::Lost {
            return (seq - first, Some(e));
        }
        assert_eq!(e.seq, seq, "events come in order, none missing: {e:?}");
        seq += 1;
    }
    (count, None)
}

#[test]
fn a_watcher_that_never_reads_costs_the_broker_at_most_its_limit() {
    let srv = bounded(1000, 1 << 20);
    let mut c = srv.client();
    // The same writes with nobody watching, to compare.
    let alone = write(&mut c, "other", 100_000, 0);
    let mut w = c.share("s").watch("", None).unwrap();
    let start = w.position().unwrap().seq;

    let watched = write(&mut c, "s", 100_000, 0);
    // Without the limit, nearly all 100 000 events would be queued.
    assert_behind_within(&srv, 1000);
    let bytes = most_queued(&srv).1;
    assert!(bytes <= 1 << 20, "{bytes} bytes queued");
    // The writer never waited for the watcher (it would hang if it did),
    // nor paid for it beyond the few events queued before it fell behind.
    assert!(
        watched < alone * 3 + Duration::from_secs(2),
        "writes took {watched:?} watched, {alone:?} not"
    );
    let s = stats(&srv);
    assert!(s["watch_fell_behind"].as_u64().unwrap() >= 1, "{s}");
    assert_eq!(s["watch_lost"], 0, "nothing is lost until it reads: {s}");

    // Reading again: every event up to where it fell behind, in order,
    // then `lost`, for those events have left the broker's history.
    let (got, lost) = read_in_order(&mut w, start + 1, 100_000);
    let lost = lost.expect("a lost event");
    assert!(
        (1000..100_000 - dime::server::WATCH_HISTORY_EVENTS as u64).contains(&got),
        "{got} events before the cut"
    );
    assert_eq!(lost.seq, start + 100_000, "numbered where the feed is");
    let why = lost.message.unwrap();
    assert!(
        why.contains("fell behind") && why.contains("--watch-queue-events 1000"),
        "{why}"
    );
    assert!(why.contains("re-read"), "{why}");
    quiet(&mut w);
    assert_eq!(stats(&srv)["watch_lost"], 1);
    assert_eq!(most_queued(&srv), (0, 0));

    // Re-read, then carry on: new events arrive again.
    let mut s = c.share("s");
    assert_eq!(s.get("k999").unwrap(), Some(Value::from("99999")));
    s.set("after", &Value::I64(1)).unwrap();
    let e = next(&mut w);
    assert_eq!((e.kind, e.key.as_deref()), (EventKind::Set, Some("after")));
    assert_eq!(e.seq, start + 100_001);
}

#[test]
fn a_watch_that_fell_behind_catches_up_from_the_history() {
    let srv = bounded(100, 1 << 20);
    let mut c = srv.client();
    let mut w = c.share("s").watch("", None).unwrap();
    let start = w.position().unwrap().seq;
    // Larger than the socket's buffer, within the history.
    write(&mut c, "s", 8000, 1000);
    assert_behind_within(&srv, 100);
    assert_eq!(read_in_order(&mut w, start + 1, 8000).0, 8000, "no loss");
    quiet(&mut w);
    let s = stats(&srv);
    assert!(s["watch_fell_behind"].as_u64().unwrap() >= 1, "{s}");
    assert_eq!(s["watch_lost"], 0, "{s}");

    // Resuming replays what was missed within the same limit.
    let pos = w.position().unwrap();
    drop(w);
    write(&mut c, "s", 8000, 1000);
    let mut w = c.share("s").watch("", Some(pos)).unwrap();
    assert_behind_within(&srv, 100);
    assert_eq!(read_in_order(&mut w, pos.seq + 1, 8000).0, 8000);
    quiet(&mut w);
}

#[test]
fn the_byte_limit_holds_and_a_value_larger_than_it_still_arrives() {
    let srv = bounded(1_000_000, 1 << 20);
    let mut c = srv.client();
    let mut w = c.share("s").watch("", None).unwrap();
    let start = w.position().unwrap().seq;
    let mut s = c.share("s");
    let value = Value::from("v".repeat(64 << 10).as_str());
    for i in 0..100 {
        s.set(&format!("k{i}"), &value).unwrap();
    }
    let (events, bytes) = most_queued(&srv);
    assert!(bytes <= 1 << 20, "{bytes} bytes queued");
    assert!(bytes > (1 << 20) - (80 << 10), "filled up to it: {bytes}");
    assert!(events < 20, "{events}");
    assert_eq!(read_in_order(&mut w, start + 1, 100).0, 100);
    // Nothing queued: a value three times the limit goes out alone.
    let big = Value::from("b".repeat(3 << 20).as_str());
    s.set("big", &big).unwrap();
    let e = next(&mut w);
    assert_eq!(e.decode().unwrap(), Some(big));
    assert_eq!(stats(&srv)["watch_lost"], 0);
}

#[test]
fn a_client_that_watches_and_asks_on_one_connection_loses_no_reply() {
    let srv = bounded(100, 1 << 20);
    let mut raw = srv.raw();
    let r = raw.call(json!({"command": "share_watch", "share": "s", "watch": 5}));
    let start = r["seq"].as_u64().unwrap();
    let mut c = srv.client();
    write(&mut c, "s", 15_000, 0);
    // Requests while its events are stuck: the broker still answers them.
    for i in 0..20 {
        raw.send(
            json!({"command": "share_get", "share": "s", "key": format!("k{i}")}),
            &[],
        );
    }
    write(&mut c, "s", 15_000, 0);
    let (mut replies, mut seq, mut lost) = (0, start + 1, None);
    while replies < 20 || lost.is_none() {
        let (head, payload) = raw.recv();
        if head.get("event").is_none() {
            assert_eq!(head["status"], 0, "{head}");
            assert!(!payload.is_empty(), "the value");
            replies += 1;
        } else if head["kind"] == "lost" {
            assert!(lost.is_none(), "one lost event: {head}");
            lost = Some(head);
        } else {
            assert!(lost.is_none(), "no stale event after lost: {head}");
            assert_eq!(head["seq"], seq, "{head}");
            seq += 1;
        }
    }
    assert_eq!(lost.unwrap()["seq"], start + 30_000);
    // Every reply came (20), and the connection still works.
    let r = raw.call(json!({"command": "share_len", "share": "s"}));
    assert_eq!(r["len"], 1000, "{r}");
}

#[test]
fn space_and_group_watches_are_bounded_and_catch_up_too() {
    let srv = bounded(50, 1 << 20);
    let mut c = srv.client();
    let mut ws = c.space("t").watch(None).unwrap();
    let mut wg = c.watch_groups("", None).unwrap();
    let (s0, g0) = (ws.position().unwrap().seq, wg.position().unwrap().seq);
    let pad = "p".repeat(1000);
    for i in 0..1000 {
        c.space("t")
            .out(&[Value::I64(i), Value::from(pad.as_str())])
            .unwrap();
    }
    let names: Vec<String> = (0..1000).map(|i| format!("{i:04}{pad}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut member = srv.client();
    member.join(&names).unwrap();
    assert_behind_within(&srv, 50);
    assert_eq!(read_in_order(&mut ws, s0 + 1, 1000).0, 1000);
    assert_eq!(read_in_order(&mut wg, g0 + 1, 1000).0, 1000);
    quiet(&mut ws);
    let took = c
        .space("t")
        .try_take(&[Field::Value(Value::I64(0)), Field::Any])
        .unwrap();
    assert!(took.is_some());
    assert_eq!(next(&mut ws).kind, EventKind::In);
    assert!(stats(&srv)["watch_fell_behind"].as_u64().unwrap() >= 2);
}

#[test]
fn the_limits_are_broker_flags() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_dime"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for text in [
        "--watch-queue-events <N>",
        "[default: 100000]",
        "--watch-queue-bytes <BYTES>",
        "[default: 67108864]",
        "falls behind",
        "\"lost\"",
    ] {
        assert!(help.contains(text), "{text:?} not in {help}");
    }
    let out = run(&["--watch-queue-events", "0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--watch-queue-events"));
}
