//! Batches of stream items (docs/protocol-extensions.md, "Batches of
//! items"): several small items per `yield` and per item push, counted
//! item by item against the window, relayed whole to consumers that asked
//! for batches and split for the others, and never reordered against the
//! end of the stream or held back from a slow producer.

mod common;

use common::{Raw, TestServer};
use dime::codec::dimeb;
use dime::layout::Layout;
use dime::proto::stream_batch;
use dime::rpc::{CallError, Next, NextMany, Rpc, RpcOptions, StreamOptions};
use dime::{ElemKind, Matrix, Value};
use serde_json::{Value as Json, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const LONG: Option<Duration> = Some(Duration::from_secs(10));

fn endpoint(srv: &TestServer) -> Rpc {
    Rpc::connect(&srv.unix(), RpcOptions::default()).unwrap()
}

/// A raw connection that has handshaken.
fn raw(srv: &TestServer) -> Raw {
    let mut r = srv.raw();
    let hs = r.call(json!({"command": "handshake", "serialization": "dimeb"}));
    assert_eq!(hs["status"], 0);
    r
}

/// A raw provider of `function`.
fn raw_provider(srv: &TestServer, function: &str) -> Raw {
    let mut r = raw(srv);
    assert_eq!(
        r.call(json!({"command": "provide", "function": function}))["status"],
        0
    );
    r
}

/// Waits on `provider` for the push of a stream call: the broker's id.
fn stream_call(provider: &mut Raw) -> u64 {
    let (push, _) = provider.recv();
    assert_eq!(push["stream"], true, "{push}");
    push["call"].as_u64().unwrap()
}

fn encoded(i: i64) -> Vec<u8> {
    dimeb::encode(&Value::I64(i)).unwrap()
}

/// A batch payload of `items`.
fn batch(items: &[Vec<u8>]) -> Vec<u8> {
    let mut buf = Vec::new();
    for i in items {
        stream_batch::push(&mut buf, i).unwrap();
    }
    buf
}

/// The items of an item push, whether a batch or one item.
fn items_of(push: &Json, payload: &[u8]) -> Vec<Value> {
    match push.get("count") {
        None => vec![dimeb::decode(payload).unwrap()],
        Some(n) => stream_batch::ranges(payload, n.as_u64().unwrap())
            .unwrap()
            .into_iter()
            .map(|r| dimeb::decode(&payload[r]).unwrap())
            .collect(),
    }
}

#[test]
fn the_broker_announces_batches() {
    let srv = TestServer::start();
    let c = srv.client();
    assert!(
        c.server_extensions()
            .unwrap()
            .contains(&"stream_batch".to_owned())
    );
}

#[test]
fn a_fast_producer_sends_batches_that_arrive_whole_and_in_order() {
    let srv = TestServer::start();
    let producer = Arc::new(endpoint(&srv));
    producer.provide("count", 1).unwrap();
    const N: i64 = 20_000;
    let p = producer.clone();
    let t = std::thread::spawn(move || {
        let call = p.next_call(LONG).unwrap().unwrap();
        for i in 0..N {
            assert!(p.stream_send_value(call.id, &Value::I64(i), LONG).unwrap());
        }
        p.stream_end(call.id).unwrap();
    });
    // A consumer that asked for batches, spoken raw to see the frames.
    let mut consumer = raw(&srv);
    consumer.send(
        json!({"command": "call", "function": "count", "id": 1, "stream": true,
            "items": 1000, "bytes": 1 << 20, "batch": true}),
        &dimeb::encode(&Value::Null).unwrap(),
    );
    let (mut got, mut frames, mut batches, mut unread) = (0i64, 0, 0, 0);
    loop {
        let (push, payload) = consumer.recv();
        if push.get("result").is_some() {
            assert_eq!(push["status"], 0, "{push}");
            break;
        }
        assert_eq!(push["item"], 1, "{push}");
        frames += 1;
        batches += usize::from(push.get("count").is_some());
        for v in items_of(&push, &payload) {
            assert_eq!(v, Value::I64(got), "out of order");
            got += 1;
            unread += 1;
        }
        if unread >= 500 {
            consumer.send(
                json!({"command": "credit", "id": 1, "items": unread, "bytes": 1 << 20}),
                &[],
            );
            unread = 0;
        }
    }
    assert_eq!(got, N, "items lost or duplicated");
    assert!(batches > 0, "no batch in {frames} frames");
    assert!(
        frames < N as usize / 4,
        "{N} items took {frames} frames: hardly batched"
    );
    t.join().unwrap();
}

#[test]
fn a_consumer_that_did_not_ask_for_batches_gets_items_one_by_one() {
    let srv = TestServer::start();
    let mut producer = raw_provider(&srv, "gen");
    let mut consumer = raw(&srv);
    consumer.send(
        json!({"command": "call", "function": "gen", "id": 9, "stream": true,
            "items": 10, "bytes": 1000}),
        &[],
    );
    let k = stream_call(&mut producer);
    let items: Vec<Vec<u8>> = (0..3).map(encoded).collect();
    producer.send(
        json!({"command": "yield", "call": k, "count": 3}),
        &batch(&items),
    );
    producer.send(json!({"command": "yield", "call": k}), &encoded(3));
    producer.send(json!({"command": "return", "call": k}), &[]);
    for i in 0..4 {
        let (push, payload) = consumer.recv();
        assert_eq!(push, json!({"item": 9}));
        assert_eq!(payload, encoded(i));
    }
    let (end, _) = consumer.recv();
    assert_eq!(
        (end["result"].clone(), end["status"].clone()),
        (json!(9), json!(0))
    );
}

#[test]
fn every_item_of_a_batch_counts_against_the_window() {
    let srv = TestServer::start();
    let mut producer = raw_provider(&srv, "gen");
    let consumer = endpoint(&srv);
    // 4 items of room: a batch of 4 fits, one more item does not.
    let mut s = consumer
        .open_stream(
            "gen",
            &Value::Null,
            StreamOptions {
                items: 4,
                bytes: 1 << 20,
            },
            None,
        )
        .unwrap();
    let k = stream_call(&mut producer);
    let four: Vec<Vec<u8>> = (0..4).map(encoded).collect();
    producer.send(
        json!({"command": "yield", "call": k, "count": 4}),
        &batch(&four),
    );
    producer.send(
        json!({"command": "yield", "call": k, "count": 1}),
        &batch(&[encoded(4)]),
    );
    for i in 0..4 {
        assert_eq!(s.next_value(LONG).unwrap(), Some(Value::I64(i)));
    }
    match s.next(LONG) {
        Err(CallError::Refused(m)) => assert!(m.contains("window"), "{m}"),
        other => panic!("expected the broker to end the stream, got {other:?}"),
    }
    assert_eq!(producer.recv().0["cancel"], k);
    producer.send(json!({"command": "return", "call": k}), &[]);
    assert_eq!(producer.call(json!({"command": "ping"}))["status"], 0);
}

#[test]
fn a_batch_larger_than_the_room_is_refused_whole() {
    let srv = TestServer::start();
    let mut producer = raw_provider(&srv, "gen");
    let consumer = endpoint(&srv);
    // 3 items of room; a batch of 4 is refused, none of its items goes.
    let mut s = consumer
        .open_stream(
            "gen",
            &Value::Null,
            StreamOptions {
                items: 3,
                bytes: 1 << 20,
            },
            None,
        )
        .unwrap();
    let k = stream_call(&mut producer);
    let four: Vec<Vec<u8>> = (0..4).map(encoded).collect();
    producer.send(
        json!({"command": "yield", "call": k, "count": 4}),
        &batch(&four),
    );
    match s.next(LONG) {
        Err(CallError::Refused(m)) => assert!(m.contains("window"), "{m}"),
        other => panic!("expected the broker to refuse the batch, got {other:?}"),
    }
}

#[test]
fn the_byte_window_counts_a_batch_as_items_sent_one_by_one() {
    // Items of 9 bytes against a 10-byte window: the second still goes
    // (room was left before it), a third would not.
    for (n, accepted) in [(2, true), (3, false)] {
        let srv = TestServer::start();
        let mut producer = raw_provider(&srv, "gen");
        let consumer = endpoint(&srv);
        let mut s = consumer
            .open_stream(
                "gen",
                &Value::Null,
                StreamOptions {
                    items: 100,
                    bytes: 10,
                },
                None,
            )
            .unwrap();
        let k = stream_call(&mut producer);
        let items: Vec<Vec<u8>> = (0..n).map(encoded).collect();
        assert_eq!(items[0].len(), 9);
        producer.send(
            json!({"command": "yield", "call": k, "count": n}),
            &batch(&items),
        );
        producer.send(json!({"command": "return", "call": k}), &[]);
        if accepted {
            for i in 0..n {
                assert_eq!(s.next_value(LONG).unwrap(), Some(Value::I64(i)));
            }
            assert_eq!(s.next_value(LONG).unwrap(), None);
        } else {
            match s.next(LONG) {
                Err(CallError::Refused(m)) => assert!(m.contains("window"), "{m}"),
                other => panic!("expected the broker to refuse {n} items, got {other:?}"),
            }
        }
    }
}

#[test]
fn a_malformed_batch_ends_the_stream_and_the_broker_serves_on() {
    let srv = TestServer::start();
    let mut producer = raw_provider(&srv, "gen");
    let consumer = endpoint(&srv);
    let bad: [(Json, Vec<u8>); 3] = [
        (json!(3), batch(&[encoded(1), encoded(2)])), // fewer items than said
        (json!(1), batch(&[encoded(1), encoded(2)])), // bytes after the last
        (json!(0), Vec::new()),                       // no items at all
    ];
    for (count, payload) in bad {
        let mut s = consumer
            .open_stream("gen", &Value::Null, StreamOptions::default(), None)
            .unwrap();
        let k = stream_call(&mut producer);
        producer.send(
            json!({"command": "yield", "call": k, "count": count}),
            &payload,
        );
        match s.next(LONG) {
            Err(CallError::Refused(m)) => assert!(m.contains("malformed batch"), "{m}"),
            other => panic!("expected a malformed batch error, got {other:?}"),
        }
        assert_eq!(producer.recv().0["cancel"], k);
        // The provider ends the call as always (no reply), and is still served.
        producer.send(json!({"command": "return", "call": k}), &[]);
        assert_eq!(producer.call(json!({"command": "ping"}))["status"], 0);
    }
    assert!(consumer.ping().is_ok());
}

#[test]
fn an_error_after_held_items_arrives_after_them() {
    let srv = TestServer::start();
    let producer = endpoint(&srv);
    producer.provide("gen", 1).unwrap();
    let consumer = endpoint(&srv);
    for round in 0..20 {
        let mut s = consumer
            .open_stream("gen", &Value::Null, StreamOptions::default(), None)
            .unwrap();
        let call = producer.next_call(LONG).unwrap().unwrap();
        // Fast items: all but the first are held back for company...
        for i in 0..50 {
            assert!(
                producer
                    .stream_send_value(call.id, &Value::I64(i), LONG)
                    .unwrap()
            );
        }
        // ... and the end must not overtake them.
        if round % 2 == 0 {
            producer
                .reply_error(call.id, "RuntimeError", "broke", "")
                .unwrap();
        } else {
            producer.stream_end(call.id).unwrap();
        }
        for i in 0..50 {
            assert_eq!(s.next_value(LONG).unwrap(), Some(Value::I64(i)));
        }
        match s.next(LONG) {
            Err(CallError::Remote { message, .. }) if round % 2 == 0 => {
                assert_eq!(message, "broke")
            }
            Ok(Next::End) if round % 2 == 1 => {}
            other => panic!("round {round}: expected the end after the items, got {other:?}"),
        }
    }
}

#[test]
fn a_held_item_goes_without_waiting_for_the_next_one() {
    let srv = TestServer::start();
    let producer = endpoint(&srv);
    producer.provide("slow", 1).unwrap();
    let consumer = endpoint(&srv);
    let mut s = consumer
        .open_stream("slow", &Value::Null, StreamOptions::default(), None)
        .unwrap();
    let call = producer.next_call(LONG).unwrap().unwrap();
    for round in 0..3 {
        // A lone item goes at once; one right behind it is held back for
        // company, and must go when none comes: this producer sends
        // nothing more until both have arrived.
        let sent = Instant::now();
        for i in 0..2 {
            assert!(
                producer
                    .stream_send_value(call.id, &Value::I64(i), LONG)
                    .unwrap()
            );
        }
        for i in 0..2 {
            assert_eq!(s.next_value(LONG).unwrap(), Some(Value::I64(i)));
        }
        let waited = sent.elapsed();
        assert!(
            waited < Duration::from_secs(2),
            "round {round}: items held for {waited:?}"
        );
        // Quiet long enough that the next item is a lone one again.
        std::thread::sleep(Duration::from_millis(50));
    }
    producer.stream_end(call.id).unwrap();
    assert_eq!(s.next_value(LONG).unwrap(), None);
}

#[test]
fn closing_early_stops_a_batching_producer_within_one_batch() {
    let srv = TestServer::start();
    let producer = Arc::new(endpoint(&srv));
    producer.provide("count", 1).unwrap();
    let consumer = endpoint(&srv);
    let sent = Arc::new(AtomicUsize::new(0));
    let stopped = Arc::new(AtomicBool::new(false));
    let (p, n, st) = (producer.clone(), sent.clone(), stopped.clone());
    let t = std::thread::spawn(move || {
        let call = p.next_call(LONG).unwrap().unwrap();
        for i in 0.. {
            if !p.stream_send_value(call.id, &Value::I64(i), LONG).unwrap() {
                st.store(true, Ordering::SeqCst);
                break;
            }
            n.fetch_add(1, Ordering::SeqCst);
        }
        p.stream_end(call.id).unwrap();
    });
    let window = 64;
    let mut s = consumer
        .open_stream(
            "count",
            &Value::Null,
            StreamOptions {
                items: window,
                bytes: 1 << 20,
            },
            None,
        )
        .unwrap();
    let mut out = Vec::new();
    let mut read = 0;
    while read < 100 {
        match s.next_many(LONG, 1000, 1 << 20, &mut out).unwrap() {
            NextMany::Items(n) => read += n,
            other => panic!("{other:?}"),
        }
    }
    s.close();
    t.join().unwrap();
    assert!(stopped.load(Ordering::SeqCst));
    // Read, plus at most a window in flight, plus the one that found out.
    let n = sent.load(Ordering::SeqCst);
    assert!(
        n <= read + window as usize + 1,
        "sent {n} after {read} read"
    );
    for (i, b) in out.iter().enumerate() {
        assert_eq!(dimeb::decode(b).unwrap(), Value::I64(i as i64));
    }
}

#[test]
fn items_taken_but_not_marked_read_keep_their_room() {
    let srv = TestServer::start();
    let producer = Arc::new(endpoint(&srv));
    producer.provide("count", 1).unwrap();
    let consumer = endpoint(&srv);
    let sent = Arc::new(AtomicUsize::new(0));
    let (p, n) = (producer.clone(), sent.clone());
    let t = std::thread::spawn(move || {
        let call = p.next_call(LONG).unwrap().unwrap();
        for i in 0..100 {
            if !p.stream_send_value(call.id, &Value::I64(i), LONG).unwrap() {
                break;
            }
            n.fetch_add(1, Ordering::SeqCst);
        }
        p.stream_end(call.id).unwrap();
    });
    let mut s = consumer
        .open_stream(
            "count",
            &Value::Null,
            StreamOptions {
                items: 8,
                bytes: 1 << 20,
            },
            None,
        )
        .unwrap();
    // Take everything there is, as a binding filling its own buffer:
    // at most half the window at a time, and no room granted back.
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while out.len() < 8 && Instant::now() < deadline {
        let before = out.len();
        match s.take_many(LONG, 1000, 1 << 20, &mut out).unwrap() {
            NextMany::Items(n) => assert!(n <= 4 && out.len() == before + n, "took {n}"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(out.len(), 8);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        sent.load(Ordering::SeqCst),
        8,
        "the producer ran past the window"
    );
    // Marked read: the producer goes on.
    s.mark_read(8, out.iter().map(|b| b.len() as u64).sum());
    let mut rest = Vec::new();
    while let Some(v) = s.next_value(LONG).unwrap() {
        rest.push(v);
    }
    assert_eq!(rest, (8..100).map(Value::I64).collect::<Vec<_>>());
    t.join().unwrap();
}

/// A `rows` x `cols` float64 matrix stored row-major: between our clients
/// it travels in its own layout (`dimeb_layout`).
fn row_major(rows: usize, cols: usize) -> Matrix {
    let elems: Vec<u8> = (0..rows)
        .flat_map(|i| (0..cols).map(move |j| (i * 1000 + j) as f64))
        .flat_map(f64::to_ne_bytes)
        .collect();
    Matrix::with_layout(ElemKind::F64, vec![rows, cols], elems, Layout::RowMajor).unwrap()
}

/// Opens stream `function` on a raw connection that did not negotiate
/// layouts, asking for batches or not; its pushes until the end: each
/// item's bytes, and how many pushes were batches.
fn raw_stream(srv: &TestServer, function: &str, batch: bool) -> (Vec<Vec<u8>>, usize) {
    let mut c = raw(srv);
    c.send(
        json!({"command": "call", "function": function, "id": 5, "stream": true,
            "items": 1000, "bytes": 1 << 20, "batch": batch}),
        &dimeb::encode(&Value::Null).unwrap(),
    );
    let (mut items, mut batches) = (Vec::new(), 0);
    loop {
        let (push, payload) = c.recv();
        if push.get("result").is_some() {
            assert_eq!(push["status"], 0, "{push}");
            return (items, batches);
        }
        assert!(push.get("dimeb_layout").is_none(), "{push}");
        match push.get("count") {
            None => items.push(payload),
            Some(n) => {
                batches += 1;
                for r in stream_batch::ranges(&payload, n.as_u64().unwrap()).unwrap() {
                    items.push(payload[r].to_vec());
                }
            }
        }
    }
}

#[test]
fn batched_matrices_reach_each_consumer_in_the_encoding_it_negotiated() {
    let srv = TestServer::start();
    let producer = Arc::new(endpoint(&srv));
    producer.provide("mats", 1).unwrap();
    let items: Vec<Value> = (0..40)
        .map(|i| Value::Matrix(row_major(2, i % 5 + 1)))
        .collect();
    let classic: Vec<Vec<u8>> = items.iter().map(|v| dimeb::encode(v).unwrap()).collect();
    let (p, sent) = (producer.clone(), items.clone());
    let t = std::thread::spawn(move || {
        for _ in 0..3 {
            let call = p.next_call(LONG).unwrap().unwrap();
            for v in &sent {
                assert!(p.stream_send_value(call.id, v, LONG).unwrap());
            }
            p.stream_end(call.id).unwrap();
        }
    });
    // Without layouts, batched or not: every item converted on its own.
    let (got, batches) = raw_stream(&srv, "mats", true);
    assert_eq!(got, classic, "batched items, converted one by one");
    assert!(batches > 0, "40 items sent at once and no batch");
    let (got, batches) = raw_stream(&srv, "mats", false);
    assert_eq!((got, batches), (classic, 0));
    // Our consumer negotiated layouts: the same values.
    let consumer = endpoint(&srv);
    let mut s = consumer
        .open_stream("mats", &Value::Null, StreamOptions::default(), None)
        .unwrap();
    for v in &items {
        assert_eq!(s.next_value(LONG).unwrap().as_ref(), Some(v));
    }
    assert_eq!(s.next_value(LONG).unwrap(), None);
    t.join().unwrap();
}

#[test]
fn a_batch_marked_with_layouts_holding_a_bad_item_ends_the_stream() {
    let srv = TestServer::start();
    let mut producer = srv.raw();
    producer.call(
        json!({"command": "handshake", "serialization": "dimeb", "tls": false,
            "extensions": ["dimeb_layout"]}),
    );
    assert_eq!(
        producer.call(json!({"command": "provide", "function": "gen"}))["status"],
        0
    );
    let consumer = endpoint(&srv);
    let mut s = consumer
        .open_stream("gen", &Value::Null, StreamOptions::default(), None)
        .unwrap();
    let k = stream_call(&mut producer);
    let bad = vec![0x4C, 0x02, 1, 0, 0, 0, 9];
    producer.send(
        json!({"command": "yield", "call": k, "count": 2, "dimeb_layout": true}),
        &batch(&[encoded(1), bad]),
    );
    match s.next(LONG) {
        Err(CallError::Refused(m)) => assert!(m.contains("not valid dimeb"), "{m}"),
        other => panic!("expected the stream to end, got {other:?}"),
    }
    assert_eq!(producer.recv().0["cancel"], k);
}
