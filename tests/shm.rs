//! Shared-memory payloads (docs/protocol-extensions.md, "Shared memory"):
//! large payloads between our clients on one host travel as sealed memory
//! files passed over the unix socket; the broker checks and passes the
//! descriptor without reading the bytes, keeps each segment until every
//! recipient has released it, then tells the sender it may reuse it;
//! recipients that cannot take descriptors get the bytes in the frame.

#![cfg(target_os = "linux")]

mod common;

use common::{Raw, TestServer};
use dime::client::ConnectOptions;
use dime::codec::dimeb::{self, MatrixEncoding};
use dime::layout::Layout;
use dime::shm::Segment;
use dime::transport::{Address, Transport};
use dime::{Client, ElemKind, Matrix, Value};
use serde_json::json;
use std::io::IoSlice;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// A `rows` x `cols` float64 matrix stored row-major, (i, j) = i * 1000 + j + seed.
fn big(rows: usize, cols: usize, seed: f64) -> Value {
    let elems: Vec<u8> = (0..rows)
        .flat_map(|i| (0..cols).map(move |j| (i * 1000 + j) as f64 + seed))
        .flat_map(f64::to_ne_bytes)
        .collect();
    Value::Matrix(
        Matrix::with_layout(ElemKind::F64, vec![rows, cols], elems, Layout::RowMajor).unwrap(),
    )
}

/// Taken by every test here: two of them count this process's open
/// descriptors, which the others would change under them.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Open descriptors of this process (the test server runs in it).
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// A client of `srv` in `group` that takes shared-memory payloads as
/// descriptors: our clients ask for that once a large payload has reached
/// them through the socket, as the first one here does.
fn receiver(srv: &TestServer, group: &str) -> Client {
    let mut c = srv.client();
    c.join(&[group]).unwrap();
    let mut warm = srv.client();
    warm.send(group, "warm", &big(500, 400, 0.0)).unwrap();
    let m = c.sync_messages(-1).unwrap();
    assert!(
        !m[0].is_shared(),
        "the first large payload comes in the frame"
    );
    // The next one comes as a descriptor.
    warm.send(group, "warm", &big(500, 400, 0.0)).unwrap();
    assert!(c.sync_messages(-1).unwrap()[0].is_shared());
    c
}

/// Waits until `cond` holds, reading pushes with `c` (a sender learns of a
/// freed segment from a meta message read with its next request).
fn eventually(c: &mut Client, cond: impl Fn(&Client) -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !cond(c) {
        assert!(Instant::now() < until, "timed out");
        c.devices().unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn large_payloads_go_through_shared_memory_and_segments_are_reused() {
    let _serial = serial();
    let srv = TestServer::start();
    let mut a = srv.client();
    let mut b = receiver(&srv, "g");
    assert!(a.uses_shm() && b.uses_shm());
    let v = big(500, 400, 0.5);
    a.send("g", "x", &v).unwrap();
    assert_eq!(a.shm_segments(), (1, 0), "lent to the broker");
    let msgs = b.sync_messages(-1).unwrap();
    assert_eq!(msgs.len(), 1);
    assert!(msgs[0].is_shared());
    assert!(msgs[0].payload.is_empty(), "no bytes in the frame");
    let got = msgs.into_iter().next().unwrap().into_value().unwrap();
    assert_eq!(got, v);
    // Released when the value is dropped; the sender hears it is free.
    drop(got);
    eventually(&mut a, |a| a.shm_segments() == (0, 1));
    // And reuses it: no new segment.
    a.send("g", "x", &big(500, 400, 1.5)).unwrap();
    assert_eq!(a.shm_segments(), (1, 0));
    assert_eq!(b.sync(-1).unwrap()[0].1, big(500, 400, 1.5));
    eventually(&mut a, |a| a.shm_segments() == (0, 1));
}

#[test]
fn a_client_may_take_descriptors_from_the_start() {
    let _serial = serial();
    let srv = TestServer::start();
    let mut a = srv.client();
    let now = ConnectOptions {
        shm_receive_now: true,
        ..ConnectOptions::default()
    };
    let mut b = Client::connect_with(&srv.unix(), now).unwrap();
    b.join(&["g"]).unwrap();
    a.send("g", "x", &big(500, 400, 4.0)).unwrap();
    let m = b.sync_messages(-1).unwrap();
    assert!(m[0].is_shared(), "the very first large payload");
    // The default client's first one came through the socket (see `receiver`).
    drop(receiver(&srv, "h"));
}

#[test]
fn small_payloads_and_clients_without_it_use_the_socket() {
    let _serial = serial();
    let srv = TestServer::start_with(|c| {
        c.listen.push(Address::parse("tcp:127.0.0.1:0").unwrap());
    });
    let mut a = srv.client();
    let mut b = receiver(&srv, "g");
    a.send("g", "x", &big(10, 10, 0.0)).unwrap();
    let m = b.sync_messages(-1).unwrap();
    assert!(!m[0].is_shared(), "below the threshold");
    assert_eq!(a.shm_segments(), (0, 0));

    // Over TCP nobody offers descriptors; a unix client that did not ask
    // gets the bytes in the frame too.
    let mut tcp = Client::connect(&srv.addrs[1]).unwrap();
    assert!(!tcp.uses_shm());
    tcp.join(&["g"]).unwrap();
    let plain = ConnectOptions {
        shm: false,
        ..ConnectOptions::default()
    };
    let mut unix_plain = Client::connect_with(&srv.unix(), plain).unwrap();
    assert!(!unix_plain.uses_shm());
    unix_plain.join(&["g"]).unwrap();
    let mut old = srv.raw();
    old.call(json!({"command": "handshake", "serialization": "dimeb", "tls": false}));
    old.call(json!({"command": "join", "name": "g"}));
    let v = big(500, 400, 2.0);
    a.send("g", "x", &v).unwrap();
    let m = b.sync_messages(-1).unwrap();
    assert!(m[0].is_shared());
    for c in [&mut tcp, &mut unix_plain] {
        let m = c.sync_messages(-1).unwrap();
        assert!(!m[0].is_shared());
        assert_eq!(
            m[0].payload.to_vec(),
            dimeb::encode_with(&v, MatrixEncoding::Native).unwrap()
        );
    }
    old.send(json!({"command": "sync"}), &[]);
    let (h, payload) = old.recv();
    assert!(
        h.get("shm").is_none() && h.get("dimeb_layout").is_none(),
        "{h}"
    );
    assert_eq!(payload, dimeb::encode(&v).unwrap(), "classic, in the frame");
}

#[test]
fn a_recipient_that_dies_holding_a_segment_frees_it_and_nothing_leaks() {
    let _serial = serial();
    let fds_before = open_fds();
    {
        let srv = TestServer::start();
        let mut a = srv.client();
        let mut b = receiver(&srv, "g");
        let idle = receiver(&srv, "g");
        // Both took the other's warm-up too.
        b.sync(-1).unwrap();
        a.send("g", "x", &big(500, 400, 0.0)).unwrap();
        let held = b.sync(-1).unwrap();
        // `idle` never syncs; `b` holds its view. Both go away.
        drop(idle);
        drop(b);
        // The value outlives its client: its data is still readable, and
        // dropping it later sends nothing (the connection is gone).
        assert_eq!(held[0].1, big(500, 400, 0.0));
        drop(held);
        eventually(&mut a, |a| a.shm_segments() == (0, 1));
    }
    // Server and clients gone: every descriptor is closed again.
    let deadline = Instant::now() + Duration::from_secs(5);
    while open_fds() > fds_before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(open_fds() <= fds_before, "{} > {fds_before}", open_fds());
}

#[test]
fn a_sender_that_goes_away_leaves_its_messages_readable() {
    let _serial = serial();
    let srv = TestServer::start();
    let mut b = srv.client();
    b.join(&["g"]).unwrap();
    {
        let mut a = srv.client();
        a.send("g", "x", &big(500, 400, 7.0)).unwrap();
    }
    assert_eq!(b.sync(-1).unwrap()[0].1, big(500, 400, 7.0));
}

#[test]
fn releases_may_come_from_another_thread() {
    let _serial = serial();
    let srv = TestServer::start();
    let mut a = srv.client();
    let mut b = receiver(&srv, "g");
    a.send("g", "x", &big(500, 400, 0.0)).unwrap();
    let got = b.sync(-1).unwrap();
    std::thread::spawn(move || drop(got)).join().unwrap();
    eventually(&mut a, |a| a.shm_segments() == (0, 1));
    // b's connection is intact after the release written beside it.
    a.send("g", "y", &Value::I64(3)).unwrap();
    assert_eq!(b.sync(-1).unwrap(), vec![("y".to_owned(), Value::I64(3))]);
}

#[test]
fn the_queue_limit_counts_shared_memory_bytes() {
    let _serial = serial();
    let v = big(500, 400, 0.0);
    let len = dimeb::encoded_len_with(&v, MatrixEncoding::Native) as u64;
    let srv = TestServer::start_with(|c| c.max_queue = len);
    let mut a = srv.client();
    let mut b = srv.client();
    b.join(&["g"]).unwrap();
    let err = a.send("g", "x", &v).unwrap_err();
    assert!(err.to_string().contains("--max-queue"), "{err}");
    // Refused, the segment comes back to the sender.
    eventually(&mut a, |a| a.shm_segments() == (0, 1));
}

/// A raw unix connection that negotiated shared memory and announced it
/// will send descriptors.
fn raw_shm(srv: &TestServer) -> Raw {
    let mut raw = srv.raw();
    let r = raw.call(
        json!({"command": "handshake", "serialization": "dimeb", "tls": false,
        "extensions": ["shm"]}),
    );
    assert_eq!(r["status"], 0);
    assert_eq!(raw.call(json!({"command": "shm_send"}))["status"], 0);
    raw
}

/// Writes a frame with `fd` attached to its first byte.
fn send_with_fd(
    raw: &mut Raw,
    json: serde_json::Value,
    payload: &[u8],
    fd: std::os::fd::BorrowedFd,
) {
    let bytes = common::frame(json.to_string().as_bytes(), payload);
    let n = raw
        .stream
        .send_with_fds(&[IoSlice::new(&bytes)], &[fd])
        .unwrap();
    assert_eq!(n, bytes.len());
}

#[test]
fn descriptors_are_checked_before_anything_is_relayed() {
    let _serial = serial();
    let srv = TestServer::start();
    let mut b = srv.client();
    b.join(&["g"]).unwrap();
    let mut raw = raw_shm(&srv);
    let send = |len: usize| {
        json!({"command": "send", "name": "g", "varname": "x", "serialization": "dimeb",
            "shm": {"len": len, "segment": 1}})
    };
    let expect_error = |raw: &mut Raw, text: &str| {
        let (r, _) = raw.recv();
        assert_eq!(r["status"], -1, "{r}");
        let msg = r["error"].as_str().unwrap();
        assert!(msg.contains(text), "{msg} lacks {text}");
    };
    // Announced, but no descriptor.
    raw.send(send(16), &[]);
    expect_error(&mut raw, "no descriptor");
    // A descriptor that is not a memory file.
    let file = tempfile::tempfile().unwrap();
    file.set_len(4096).unwrap();
    send_with_fd(&mut raw, send(16), &[], file.as_fd());
    expect_error(&mut raw, "memory file");
    // A memory file shorter than the header says.
    let seg = Segment::create(4096).unwrap();
    send_with_fd(&mut raw, send(8192), &[], seg.fd());
    expect_error(&mut raw, "holds 4096 bytes");
    // Bytes in the frame as well.
    send_with_fd(&mut raw, send(16), &[1, 2, 3], seg.fd());
    expect_error(&mut raw, "must not carry a payload");
    // A bad "shm" field.
    send_with_fd(
        &mut raw,
        json!({"command": "send", "name": "g", "varname": "x", "shm": {"len": "many"}}),
        &[],
        seg.fd(),
    );
    expect_error(&mut raw, "JSON parsing error");
    // Nothing reached the recipient, and the connection still works.
    assert!(b.sync(-1).unwrap().is_empty());
    assert_eq!(raw.call(json!({"command": "devices"}))["status"], 0);
    // A good one goes through.
    let mut seg = Segment::create(4096).unwrap();
    let v = Value::from("via shared memory");
    let bytes = dimeb::encode(&v).unwrap();
    seg.bytes_mut()[..bytes.len()].copy_from_slice(&bytes);
    send_with_fd(&mut raw, send(bytes.len()), &[], seg.fd());
    assert_eq!(raw.recv().0["status"], 0);
    assert_eq!(b.sync(-1).unwrap(), vec![("x".to_owned(), v)]);
}

#[test]
fn descriptors_are_only_taken_after_shm_send() {
    let _serial = serial();
    let srv = TestServer::start();
    let mut b = srv.client();
    b.join(&["g"]).unwrap();
    let seg = Segment::create(4096).unwrap();
    let send = json!({"command": "send", "name": "g", "varname": "x",
        "shm": {"len": 1, "segment": 1}});
    // Negotiated, but shm_send not asked: the descriptor is dropped unread.
    let mut raw = srv.raw();
    raw.call(
        json!({"command": "handshake", "serialization": "dimeb", "tls": false,
        "extensions": ["shm"]}),
    );
    send_with_fd(&mut raw, send.clone(), &[], seg.fd());
    let (r, _) = raw.recv();
    assert!(r["error"].as_str().unwrap().contains("shm_send"), "{r}");
    // Not negotiated: shm_start itself is refused.
    let mut plain = srv.raw();
    plain.call(json!({"command": "handshake", "serialization": "dimeb", "tls": false}));
    let r = plain.call(json!({"command": "shm_send"}));
    assert!(r["error"].as_str().unwrap().contains("handshake"), "{r}");
    assert!(b.sync(-1).unwrap().is_empty());
}

#[test]
fn an_announcement_without_a_descriptor_is_never_relayed() {
    let _serial = serial();
    // A client that did not negotiate shared memory (its descriptors are
    // never taken) cannot make recipients expect one.
    let srv = TestServer::start();
    let mut b = srv.client();
    b.join(&["g"]).unwrap();
    let mut raw = srv.raw();
    raw.call(json!({"command": "handshake", "serialization": "dimeb", "tls": false}));
    let seg = Segment::create(4096).unwrap();
    send_with_fd(
        &mut raw,
        json!({"command": "send", "name": "g", "varname": "x", "shm": {"len": 1, "segment": 1}}),
        &[0],
        seg.fd(),
    );
    let (r, _) = raw.recv();
    assert_eq!(r["status"], -1);
    assert!(r["error"].as_str().unwrap().contains("\"shm\""), "{r}");
    assert!(b.sync(-1).unwrap().is_empty());
}

#[test]
fn a_client_has_a_bounded_number_of_segments_in_the_broker() {
    let _serial = serial();
    let srv = TestServer::start_with(|c| c.max_shm_in_flight = 3);
    // A recipient that takes descriptors and never syncs: every message
    // sent to it stays in the broker.
    let mut r = srv.raw();
    r.call(
        json!({"command": "handshake", "serialization": "dimeb", "tls": false,
        "extensions": ["shm"]}),
    );
    assert_eq!(r.call(json!({"command": "shm_receive"}))["status"], 0);
    r.call(json!({"command": "join", "name": "g"}));
    let mut raw = raw_shm(&srv);
    let mut seg = Segment::create(4096).unwrap();
    let bytes = dimeb::encode(&Value::I64(1)).unwrap();
    seg.bytes_mut()[..bytes.len()].copy_from_slice(&bytes);
    let send = json!({"command": "send", "name": "g", "varname": "x", "serialization": "dimeb",
        "shm": {"len": bytes.len(), "segment": 1}});
    // The next reply, past meta messages (a freed segment's notice).
    let reply = |raw: &mut Raw| loop {
        let (h, _) = raw.recv();
        if h["meta"] != true {
            return h;
        }
    };
    for _ in 0..3 {
        send_with_fd(&mut raw, send.clone(), &[], seg.fd());
        assert_eq!(reply(&mut raw)["status"], 0);
    }
    send_with_fd(&mut raw, send.clone(), &[], seg.fd());
    let r4 = reply(&mut raw);
    assert!(
        r4["error"]
            .as_str()
            .unwrap()
            .contains("Too many shared-memory messages"),
        "{r4}"
    );
    // Once the recipient is gone, its queue with it, there is room again
    // (for a recipient that gets the bytes in its frames).
    let mut b = srv.client();
    b.join(&["g"]).unwrap();
    drop(r);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        send_with_fd(&mut raw, send.clone(), &[], seg.fd());
        if reply(&mut raw)["status"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "never freed");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_recording_monitor_gets_the_bytes_and_holds_no_segment() {
    let _serial = serial();
    let srv = TestServer::start();
    let mut a = srv.client();
    let mut b = receiver(&srv, "g");
    let mut rec = srv.raw();
    rec.call(json!({"command": "handshake", "serialization": "dimeb", "tls": false}));
    let r = rec.call(json!({"command": "monitor", "payloads": true}));
    assert_eq!(r["status"], 0, "{r}");
    let v = big(500, 400, 3.0);
    a.send("g", "x", &v).unwrap();
    assert!(b.sync_messages(-1).unwrap()[0].is_shared());
    let (summary, _) = rec.recv();
    assert_eq!(summary["monitor"]["value"], "double 500×400");
    let (h, payload) = rec.recv();
    assert!(h.get("shm").is_none(), "{h}");
    assert_eq!(payload, dimeb::encode(&v).unwrap(), "in the frame, classic");
    // Only b held the segment: once it let go, the sender has it back.
    eventually(&mut a, |a| a.shm_segments() == (0, 1));
}

#[test]
fn descriptors_nobody_announced_close_the_connection() {
    let _serial = serial();
    let srv = TestServer::start();
    let mut raw = raw_shm(&srv);
    let seg = Segment::create(4096).unwrap();
    let probe = common::frame(br#"{"command":"devices"}"#, &[]);
    let mut closed = false;
    for _ in 0..100 {
        if raw
            .stream
            .send_with_fds(&[IoSlice::new(&probe)], &[seg.fd()])
            .is_err()
        {
            closed = true;
            break;
        }
    }
    // Replies came while it was fine, then an error naming the reason.
    let mut last = None;
    while let Some((h, _)) = raw.try_recv() {
        last = Some(h);
    }
    let last = last.unwrap();
    assert!(
        last["error"]
            .as_str()
            .is_some_and(|e| e.contains("file descriptors")),
        "{last} (closed early: {closed})"
    );
}

#[test]
fn a_client_without_shared_memory_never_gets_descriptors() {
    let _serial = serial();
    // Descriptors a peer sends on a connection that did not negotiate them
    // are dropped by the kernel, never kept.
    let srv = TestServer::start();
    let mut raw = srv.raw();
    raw.call(json!({"command": "handshake", "serialization": "dimeb", "tls": false}));
    let seg = Segment::create(4096).unwrap();
    let frame = common::frame(br#"{"command":"devices"}"#, &[]);
    let fds_before = open_fds();
    for _ in 0..20 {
        raw.stream
            .send_with_fds(&[IoSlice::new(&frame)], &[seg.fd()])
            .unwrap();
        assert_eq!(raw.recv().0["status"], 0);
    }
    assert!(open_fds() <= fds_before + 1);
}

/// A client that takes shared-memory payloads as descriptors from the start.
fn receiver_now(srv: &TestServer, group: &str) -> Client {
    let now = ConnectOptions {
        shm_receive_now: true,
        ..ConnectOptions::default()
    };
    let mut c = Client::connect_with(&srv.unix(), now).unwrap();
    c.join(&[group]).unwrap();
    c
}

/// The broker's `inspect` reply (admin: same user on its unix socket).
fn inspect(srv: &TestServer) -> serde_json::Value {
    let mut raw = srv.raw();
    raw.call(json!({"command": "handshake", "serialization": "dimeb", "tls": false}));
    let r = raw.call(json!({"command": "inspect"}));
    assert_eq!(r["status"], 0, "{r}");
    r
}

#[test]
fn a_segment_lives_until_its_last_recipient_lets_go_even_if_one_dies_holding_it() {
    let _serial = serial();
    let srv = TestServer::start();
    let mut a = srv.client();
    let mut r1 = receiver_now(&srv, "g");
    let mut r3 = receiver_now(&srv, "g");
    // One round first, so the sender's segment exists and is free: the
    // descriptors counted below are then only this round's.
    a.send("g", "warm", &big(500, 400, 0.0)).unwrap();
    drop((r1.sync(-1).unwrap(), r3.sync(-1).unwrap()));
    eventually(&mut a, |a| a.shm_segments() == (0, 1));
    let fds_before = open_fds();

    let mut r2 = receiver_now(&srv, "g");
    let v = big(500, 400, 9.0);
    a.send("g", "x", &v).unwrap();
    assert_eq!(a.shm_segments(), (1, 0), "the free segment was reused");
    let mut held = Vec::new();
    for r in [&mut r1, &mut r2, &mut r3] {
        let m = r.sync_messages(-1).unwrap();
        assert_eq!(m.len(), 1);
        assert!(m[0].is_shared());
        held.push(m.into_iter().next().unwrap().into_value().unwrap());
    }
    let (v1, v2, v3) = (held.remove(0), held.remove(0), held.remove(0));

    // r1 lets go: its release is in before the reply to its next request.
    drop(v1);
    r1.devices().unwrap();
    a.devices().unwrap();
    assert_eq!(a.shm_segments(), (1, 0), "two recipients still hold it");

    // r2 dies holding its view; the broker drops r2's hold with it.
    drop(r2);
    let deadline = Instant::now() + Duration::from_secs(10);
    while inspect(&srv)["clients"].as_array().unwrap().len() > 4 {
        assert!(Instant::now() < deadline, "r2 never left");
        std::thread::sleep(Duration::from_millis(5));
    }
    a.devices().unwrap();
    assert_eq!(a.shm_segments(), (1, 0), "r3 still holds it");
    // The dead client's view is still a good value.
    assert_eq!(v2, v);

    // The last holder lets go: the sender has its segment back.
    assert_eq!(v3, v);
    drop(v3);
    eventually(&mut a, |a| a.shm_segments() == (0, 1));
    // Dropping the dead client's view afterwards sends nothing anywhere.
    drop(v2);
    a.devices().unwrap();
    assert_eq!(a.shm_segments(), (0, 1));

    // Nothing is left in the broker: no queued bytes for anyone, and every
    // descriptor of this round (the broker's hold, the three mappings, r2's
    // connection) is closed again.
    for c in inspect(&srv)["clients"].as_array().unwrap() {
        assert_eq!(c["queued"], 0, "{c}");
        assert_eq!(c["queued_bytes"], 0, "{c}");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while open_fds() > fds_before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(open_fds() <= fds_before, "{} > {fds_before}", open_fds());
    // And the segment is reused for the next message.
    a.send("g", "y", &big(500, 400, 1.0)).unwrap();
    assert_eq!(a.shm_segments(), (1, 0));
    assert_eq!(r1.sync(-1).unwrap()[0].1, big(500, 400, 1.0));
}

#[test]
fn queued_shared_memory_messages_count_towards_the_queue_limit() {
    let _serial = serial();
    // Room for one large message in a recipient's queue, not two. The
    // recipient takes descriptors: its queued copy is the shared frame,
    // whose bytes live in the segment, not in the broker, and still count.
    let v = big(500, 400, 0.0);
    let len = dimeb::encoded_len_with(&v, MatrixEncoding::Native) as u64;
    let srv = TestServer::start_with(|c| c.max_queue = len + len / 2);
    let mut a = srv.client();
    let mut b = receiver_now(&srv, "g");
    a.send("g", "x", &v).unwrap();
    assert_eq!(a.shm_segments(), (1, 0), "went through shared memory");
    let queued: u64 = inspect(&srv)["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["queued_bytes"].as_u64().unwrap())
        .sum();
    assert!(queued >= len, "queued {queued} < {len}");
    let err = a.send("g", "x", &big(500, 400, 1.0)).unwrap_err();
    assert!(err.to_string().contains("--max-queue"), "{err}");
    // Once the first is taken there is room again.
    let m = b.sync_messages(-1).unwrap();
    assert_eq!(m.len(), 1, "the refused one was not queued");
    assert!(m[0].is_shared());
    assert_eq!(m.into_iter().next().unwrap().into_value().unwrap(), v);
    a.send("g", "x", &big(500, 400, 2.0)).unwrap();
    assert_eq!(b.sync(-1).unwrap()[0].1, big(500, 400, 2.0));
}

/// A memory file of `size` bytes holding `bytes`, sealed with `seals`.
fn memfd(size: usize, bytes: &[u8], seals: libc::c_int) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: plain syscalls on a descriptor created here.
    unsafe {
        let raw = libc::memfd_create(c"forged".as_ptr(), libc::MFD_ALLOW_SEALING);
        assert!(raw >= 0);
        let fd = std::os::fd::OwnedFd::from_raw_fd(raw);
        assert_eq!(libc::ftruncate(raw, size as libc::off_t), 0);
        assert_eq!(
            libc::pwrite(raw, bytes.as_ptr().cast(), bytes.len(), 0),
            bytes.len() as isize
        );
        if seals != 0 {
            assert_eq!(libc::fcntl(raw, libc::F_ADD_SEALS, seals), 0);
        }
        fd
    }
}

#[test]
fn forged_shared_memory_headers_are_refused_and_relay_nothing() {
    let _serial = serial();
    let srv = TestServer::start();
    let mut b = receiver_now(&srv, "g");
    let mut raw = raw_shm(&srv);
    let payload = dimeb::encode(&Value::from("forged")).unwrap();
    let send = |shm: serde_json::Value| {
        json!({"command": "send", "name": "g", "varname": "x", "serialization": "dimeb",
            "shm": shm})
    };
    let refused =
        |raw: &mut Raw, shm: serde_json::Value, fd: std::os::fd::BorrowedFd, text: &str| {
            send_with_fd(raw, send(shm.clone()), &[], fd);
            let (r, _) = raw.recv();
            assert_eq!(r["status"], -1, "{shm}: {r}");
            let msg = r["error"].as_str().unwrap();
            assert!(msg.contains(text), "{shm}: {msg} lacks {text}");
        };
    // A memory file its sender could still write (or shrink) after
    // sending: recipients' data would change under them.
    let open = memfd(4096, &payload, 0);
    let len = payload.len();
    refused(
        &mut raw,
        json!({"len": len, "segment": 1}),
        open.as_fd(),
        "not sealed",
    );
    let shrink_only = memfd(4096, &payload, libc::F_SEAL_SHRINK);
    refused(
        &mut raw,
        json!({"len": len, "segment": 1}),
        shrink_only.as_fd(),
        "not sealed",
    );
    let write_only = memfd(4096, &payload, libc::F_SEAL_WRITE);
    refused(
        &mut raw,
        json!({"len": len, "segment": 1}),
        write_only.as_fd(),
        "not sealed",
    );
    // Sizes the header makes up: none, more than the file, absurd, negative.
    let sealed = memfd(
        4096,
        &payload,
        libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE,
    );
    refused(
        &mut raw,
        json!({"len": 0, "segment": 1}),
        sealed.as_fd(),
        "holds 4096 bytes",
    );
    refused(
        &mut raw,
        json!({"len": 4097, "segment": 1}),
        sealed.as_fd(),
        "holds 4096 bytes",
    );
    refused(
        &mut raw,
        json!({"len": u64::MAX, "segment": 1}),
        sealed.as_fd(),
        "--max-message",
    );
    refused(
        &mut raw,
        json!({"len": -1, "segment": 1}),
        sealed.as_fd(),
        "JSON parsing error",
    );
    refused(
        &mut raw,
        json!("all of it"),
        sealed.as_fd(),
        "JSON parsing error",
    );
    // Nothing of it reached the recipient, and the forger's connection
    // still works; the same file sealed as it must be goes through.
    assert!(b.sync(-1).unwrap().is_empty());
    assert_eq!(raw.call(json!({"command": "devices"}))["status"], 0);
    send_with_fd(
        &mut raw,
        send(json!({"len": len, "segment": 1})),
        &[],
        sealed.as_fd(),
    );
    assert_eq!(raw.recv().0["status"], 0);
    let m = b.sync_messages(-1).unwrap();
    assert_eq!(m.len(), 1);
    assert!(m[0].is_shared());
    assert_eq!(
        m.into_iter().next().unwrap().into_value().unwrap(),
        Value::from("forged")
    );
}

/// Pipelined sends (`set_pipeline`) of large values lend segments as
/// other sends do; a refused one (no such group) is reported late and its
/// segment freed by the broker all the same; a pipelined client whose
/// sync is written behind unanswered sends keeps the descriptors that
/// arrive with the messages it fetches in the same reads.
#[test]
fn pipelined_sends_use_shared_memory_and_keep_received_descriptors() {
    let _serial = serial();
    let srv = TestServer::start();
    let now = ConnectOptions {
        shm_receive_now: true,
        ..ConnectOptions::default()
    };
    let mut a = Client::connect_with(&srv.unix(), now.clone()).unwrap();
    a.join(&["a"]).unwrap();
    a.set_pipeline(64).unwrap();
    let mut b = Client::connect_with(&srv.unix(), now).unwrap();
    b.join(&["b"]).unwrap();
    b.set_pipeline(64).unwrap();
    // A failure still unanswered when the first large send asks the
    // broker to take descriptors is reported by that send, which sends
    // nothing and keeps no segment; shared memory is not given up for it.
    a.send("nobody", "early", &Value::Null).unwrap();
    let early = a.send("b", "x", &big(500, 400, 9.0)).unwrap_err();
    assert!(early.to_string().contains("of 'early'"), "{early}");
    assert_eq!(a.shm_segments().0, 0);
    for round in 0..3 {
        let seed = f64::from(round);
        a.send("b", "x", &big(500, 400, seed)).unwrap();
        a.send("nobody", "lost", &big(500, 400, seed)).unwrap();
        a.send("b", "y", &big(400, 500, seed)).unwrap();
        let late = a.flush().unwrap_err().to_string();
        assert!(
            late.contains("pipelined send #") && late.contains("of 'lost' to group 'nobody'"),
            "{late}"
        );
        // B's own sends are still unanswered when its sync is written:
        // their replies and the two shared-memory messages come together.
        for i in 0..5 {
            b.send("a", "ack", &Value::I64(i)).unwrap();
        }
        assert!(b.unacknowledged() > 0);
        let msgs = b.sync_messages(-1).unwrap();
        assert_eq!(msgs.len(), 2, "round {round}");
        assert!(msgs.iter().all(|m| m.is_shared()), "round {round}");
        let values: Vec<Value> = msgs.into_iter().map(|m| m.into_value().unwrap()).collect();
        assert_eq!(values, [big(500, 400, seed), big(400, 500, seed)]);
        drop(values);
        assert_eq!(a.sync(-1).unwrap().len(), 5);
        // Every segment comes back, the refused send's too.
        eventually(&mut a, |a| a.shm_segments().0 == 0);
    }
    assert!(a.shm_segments().1 <= 3, "segments are reused");
}

/// Encoded sends (`send_encoded`, what the Python binding's lean path
/// uses) may hold `dimeb_layout` matrices on a connection that negotiated
/// it: the request is marked, so a DiME2 recipient gets them converted;
/// on a connection that did not, such bytes are refused and nothing sent.
#[test]
fn encoded_layout_payloads_are_marked_and_refused_where_not_negotiated() {
    let _serial = serial();
    let srv = TestServer::start();
    let v = big(3, 4, 0.25);
    let native = dimeb::encode_with(&v, MatrixEncoding::Native).unwrap();
    assert!(dimeb::uses_layout(&native).unwrap());
    let mut classic = srv.raw();
    let hs = json!({"command": "handshake", "serialization": "dimeb", "tls": false});
    assert_eq!(classic.call(hs)["status"], 0);
    assert_eq!(
        classic.call(json!({"command": "join", "name": ["c"]}))["status"],
        0
    );
    let mut a = srv.client();
    assert_eq!(a.matrix_encoding(), MatrixEncoding::Native);
    for pipelined in [false, true] {
        a.set_pipeline(usize::from(pipelined) * 16).unwrap();
        a.send_encoded("c", "m", &native).unwrap();
        a.flush().unwrap();
        let (_, payload) = sync_one(&mut classic);
        assert_eq!(dimeb::decode(&payload).unwrap(), v);
        assert!(
            !dimeb::uses_layout(&payload).unwrap(),
            "converted for DiME2"
        );
    }
    let dime2 = ConnectOptions {
        layout: false,
        ..ConnectOptions::default()
    };
    let mut old = Client::connect_with(&srv.unix(), dime2).unwrap();
    assert_eq!(old.matrix_encoding(), MatrixEncoding::Classic);
    let err = old.send_encoded("c", "m", &native).unwrap_err();
    assert!(
        matches!(err, dime::Error::InvalidArgument(_)) && err.to_string().contains("dimeb_layout"),
        "{err}"
    );
    let classic_bytes = dimeb::encode(&v).unwrap();
    old.send_encoded("c", "m", &classic_bytes).unwrap();
    let (header, payload) = sync_one(&mut classic);
    assert_eq!(header["varname"], "m");
    assert_eq!(payload, classic_bytes, "the refused one was never sent");
}

/// The one message a raw DiME2 connection's sync returns.
fn sync_one(raw: &mut Raw) -> (serde_json::Value, Vec<u8>) {
    raw.send(json!({"command": "sync", "n": -1}), &[]);
    let msg = raw.recv();
    assert!(msg.0.get("status").is_none(), "no message: {}", msg.0);
    assert_eq!(raw.recv().0["status"], 0);
    msg
}
