//! Cut-through relaying (docs/protocol-extensions.md, "Cut-through"): a
//! large `send`/`broadcast` reaches recipients that negotiated
//! `cut_through` while its sender is still writing it; a sender that goes
//! away midway leaves no message anywhere (its recipients are told the
//! message was aborted, and our client drops it), and clients that did not
//! negotiate get whole messages only, exactly as before.

mod common;

use common::{Raw, TestServer, frame};
use dime::client::ConnectOptions;
use dime::{Client, Value};
use serde_json::{Value as Json, json};
use std::io::{ErrorKind, Read, Write};
use std::thread;
use std::time::{Duration, Instant};

/// A payload size above the broker's cut-through threshold (1 MiB).
const BIG: usize = 4 << 20;

/// A recognisable payload of exactly `len` bytes (never all zeros): the
/// dimeb encoding of a uint8 row vector (our client checks that what it
/// sends encoded is one dimeb value).
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    let u8_row = |n: usize| {
        let elems = (0..n).map(|i| (i % 251) as u8 ^ seed | 1).collect();
        Value::Matrix(dime::Matrix::new(dime::ElemKind::U8, vec![1, n], elems).unwrap())
    };
    let head = dime::codec::dimeb::encode(&u8_row(0)).unwrap().len();
    let bytes = dime::codec::dimeb::encode(&u8_row(len - head)).unwrap();
    assert_eq!(bytes.len(), len);
    bytes
}

/// A raw connection that handshook asking for `extensions` and joined `group`.
fn member(srv: &TestServer, extensions: &[&str], group: &str) -> Raw {
    let mut r = srv.raw();
    let reply = r.call(json!({"command": "handshake", "serialization": "dimeb",
        "tls": false, "extensions": extensions}));
    assert_eq!(reply["status"], 0);
    assert_eq!(
        r.call(json!({"command": "join", "name": group}))["status"],
        0
    );
    r
}

/// A raw connection that handshook asking for nothing.
fn sender(srv: &TestServer) -> Raw {
    let mut r = srv.raw();
    let reply = r.call(json!({"command": "handshake", "serialization": "dimeb", "tls": false}));
    assert_eq!(reply["status"], 0);
    r
}

/// The bytes of a `send` of `payload` to `group`, as `varname`.
fn send_frame(group: &str, varname: &str, payload: &[u8]) -> Vec<u8> {
    let header = json!({"command": "send", "name": group, "varname": varname,
        "serialization": "dimeb"});
    frame(header.to_string().as_bytes(), payload)
}

/// Reads exactly `n` bytes, or fails the test after the raw timeout.
fn read_n(r: &mut Raw, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    r.stream.read_exact(&mut buf).expect("bytes in time");
    buf
}

/// Reads a frame's prefix and header (not its payload); returns the
/// header and the declared payload length.
fn read_head(r: &mut Raw) -> (Json, usize) {
    let prefix = read_n(r, 12);
    assert_eq!(&prefix[..4], b"DiME");
    let jl = u32::from_be_bytes(prefix[4..8].try_into().unwrap()) as usize;
    let pl = u32::from_be_bytes(prefix[8..12].try_into().unwrap()) as usize;
    (serde_json::from_slice(&read_n(r, jl)).unwrap(), pl)
}

/// True when nothing arrives on `r` within `wait`.
fn silent_for(r: &mut Raw, wait: Duration) -> bool {
    r.stream.set_read_timeout(Some(wait)).unwrap();
    let mut b = [0u8; 1];
    let quiet = match r.stream.read(&mut b) {
        Err(e) => matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        Ok(_) => false,
    };
    r.stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    quiet
}

/// A Rust client that does not send through shared memory (so its large
/// payloads go through the socket, as across hosts), negotiating
/// cut-through or not.
fn client(srv: &TestServer, cut_through: bool) -> Client {
    let options = ConnectOptions {
        shm: false,
        cut_through,
        ..ConnectOptions::default()
    };
    Client::connect_with(&srv.unix(), options).unwrap()
}

#[test]
fn a_waiting_recipient_gets_the_message_while_the_sender_is_still_writing_it() {
    let srv = TestServer::start();
    let mut rx = member(&srv, &["cut_through"], "g");
    let mut tx = sender(&srv);
    // The recipient blocks until a message is queued.
    rx.send(json!({"command": "sync", "wait": true}), &[]);
    let payload = pattern(BIG, 7);
    let bytes = send_frame("g", "x", &payload);
    let split = bytes.len() - payload.len() + (1 << 20);
    tx.send_bytes(&bytes[..split]);
    // The header and the first megabyte reach the recipient, although the
    // sender has not written the rest.
    let (head, len) = read_head(&mut rx);
    assert_eq!(head["varname"], "x");
    assert_eq!(len, BIG);
    assert_eq!(read_n(&mut rx, 1 << 20), payload[..1 << 20]);
    // Nothing more until the sender goes on; the sender has no reply yet.
    assert!(silent_for(&mut rx, Duration::from_millis(200)));
    assert!(silent_for(&mut tx, Duration::from_millis(50)));
    tx.send_bytes(&bytes[split..]);
    assert_eq!(read_n(&mut rx, BIG - (1 << 20)), payload[1 << 20..]);
    assert_eq!(rx.recv().0, json!({"status": 0}));
    assert_eq!(tx.recv().0, json!({"status": 0}));
}

#[test]
fn our_client_blocked_in_wait_receives_a_slowly_written_message_whole() {
    let srv = TestServer::start();
    let mut rx = client(&srv, true);
    rx.join(&["g"]).unwrap();
    let waiting = thread::spawn(move || {
        let n = rx.wait(Some(Duration::from_secs(20))).unwrap();
        let got = rx.sync_messages(-1).unwrap();
        (n, got, Instant::now())
    });
    thread::sleep(Duration::from_millis(100));
    let mut tx = sender(&srv);
    let payload = pattern(BIG, 3);
    let bytes = send_frame("g", "x", &payload);
    let pieces: Vec<&[u8]> = bytes.chunks(256 << 10).collect();
    let (last, first) = pieces.split_last().unwrap();
    for piece in first {
        tx.send_bytes(piece);
        thread::sleep(Duration::from_millis(20));
    }
    // Most of it has already been written to the waiting client.
    let deadline = Instant::now() + Duration::from_secs(10);
    while bytes_out(&srv) < 3 << 20 {
        assert!(Instant::now() < deadline, "nothing was relayed early");
        thread::sleep(Duration::from_millis(5));
    }
    let before_last = Instant::now();
    tx.send_bytes(last);
    assert_eq!(tx.recv().0, json!({"status": 0}));
    let (n, got, received) = waiting.join().unwrap();
    assert_eq!(n, 1);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].varname, "x");
    assert_eq!(&got[0].payload[..], &payload[..]);
    assert!(
        received > before_last,
        "a message is returned only once whole"
    );
}

#[test]
fn a_sender_killed_mid_payload_leaves_no_message_and_every_connection_usable() {
    let srv = TestServer::start();
    // Ours, blocked in a receive; a raw one that negotiated, blocked in a
    // sync; an old DiME2 client; one that negotiated but is not syncing.
    let mut ours = client(&srv, true);
    ours.join(&["g"]).unwrap();
    let mut raw_new = member(&srv, &["cut_through"], "g");
    let mut old = member(&srv, &[], "g");
    let mut idle = member(&srv, &["cut_through"], "g");
    let ours_thread = thread::spawn(move || {
        let got = ours.receive_messages(-1, Some(Duration::from_secs(20)));
        (ours, got)
    });
    raw_new.send(json!({"command": "sync", "wait": true}), &[]);
    old.send(json!({"command": "wait"}), &[]);
    thread::sleep(Duration::from_millis(100));

    let mut tx = sender(&srv);
    let payload = pattern(BIG, 9);
    let bytes = send_frame("g", "doomed", &payload);
    let split = bytes.len() - payload.len() + (1 << 20);
    tx.send_bytes(&bytes[..split]);
    let (head, len) = read_head(&mut raw_new);
    assert_eq!((head["varname"].as_str(), len), (Some("doomed"), BIG));
    assert_eq!(read_n(&mut raw_new, 1 << 20), payload[..1 << 20]);
    // The sender dies mid-payload.
    drop(tx);
    // The stream stays in step: the rest comes as zeros, and the closing
    // status names the message as aborted.
    let rest = read_n(&mut raw_new, BIG - (1 << 20));
    assert!(rest.iter().all(|&b| b == 0));
    assert_eq!(raw_new.recv().0, json!({"status": 0, "aborted": [0]}));
    // The old client was never woken for it; the idle one has nothing queued.
    assert!(silent_for(&mut old, Duration::from_millis(200)));
    assert_eq!(idle.call(json!({"command": "sync"})), json!({"status": 0}));

    // Later messages reach everyone whole, ours included (its receive
    // dropped the aborted message and went on waiting).
    let mut tx2 = client(&srv, true);
    let later = pattern(2 << 20, 5);
    tx2.send_encoded("g", "later", &later).unwrap();
    let (ours, got) = ours_thread.join().unwrap();
    let got = got.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].varname, "later");
    assert_eq!(&got[0].payload[..], &later[..]);
    assert_eq!(old.recv().0, json!({"status": 0, "n": 1}));
    for r in [&mut old, &mut idle] {
        r.send(json!({"command": "sync"}), &[]);
        let (h, p) = r.recv();
        assert_eq!(h["varname"], "later");
        assert_eq!(p, later);
        assert_eq!(r.recv().0, json!({"status": 0}));
    }
    raw_new.send(json!({"command": "sync"}), &[]);
    let (h, p) = raw_new.recv();
    assert_eq!((h["varname"].as_str(), p == later), (Some("later"), true));
    assert_eq!(raw_new.recv().0, json!({"status": 0}));
    drop(ours);
}

#[test]
fn our_client_drops_an_aborted_message_from_a_sync_and_keeps_the_others() {
    let srv = TestServer::start();
    let mut ours = client(&srv, true);
    ours.join(&["g"]).unwrap();
    let mut small = client(&srv, true);
    small.send("g", "before", &Value::F64(1.0)).unwrap();
    let mut tx = sender(&srv);
    let payload = pattern(BIG, 11);
    let bytes = send_frame("g", "doomed", &payload);
    let split = bytes.len() - payload.len() + (1 << 20);
    tx.send_bytes(&bytes[..split]);
    // Queued at once (the client would be written it as it arrives).
    until_queued(&srv, "g", 2);
    let syncing = thread::spawn(move || {
        let got = ours.sync_messages(-1);
        (ours, got)
    });
    thread::sleep(Duration::from_millis(100));
    drop(tx);
    let (mut ours, got) = syncing.join().unwrap();
    let got = got.unwrap();
    let names: Vec<&str> = got.iter().map(|m| m.varname.as_str()).collect();
    assert_eq!(names, ["before"]);
    small.send("g", "after", &Value::F64(2.0)).unwrap();
    assert_eq!(
        ours.sync(-1).unwrap(),
        vec![("after".to_owned(), Value::F64(2.0))]
    );
}

/// Bytes the broker has written to its clients so far (`stats`).
fn bytes_out(srv: &TestServer) -> u64 {
    let mut admin = srv.raw();
    admin.call(json!({"command": "stats"}))["bytes_out"]
        .as_u64()
        .unwrap()
}

/// Waits until the members of `group` have `n` messages queued in all.
fn until_queued(srv: &TestServer, group: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while queued(srv, group) < n {
        assert!(Instant::now() < deadline, "the message was never queued");
        thread::sleep(Duration::from_millis(5));
    }
}

/// Messages queued for the members of `group`, summed, from `inspect`.
fn queued(srv: &TestServer, group: &str) -> u64 {
    let mut admin = srv.raw();
    let reply = admin.call(json!({"command": "inspect"}));
    let members = reply["services"]["messaging"]["groups"][group]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let clients = reply["clients"].as_array().cloned().unwrap_or_default();
    clients
        .iter()
        .filter(|c| members.contains(&c["id"]))
        .map(|c| c["queued"].as_u64().unwrap_or(0))
        .sum()
}

#[test]
fn an_old_client_gets_whole_messages_only() {
    let srv = TestServer::start();
    let mut new = member(&srv, &["cut_through"], "g");
    let mut old = member(&srv, &[], "g");
    let mut tx = sender(&srv);
    let payload = pattern(BIG, 13);
    let bytes = send_frame("g", "x", &payload);
    let split = bytes.len() - payload.len() + (2 << 20);
    tx.send_bytes(&bytes[..split]);
    // The negotiated recipient is being written it; the old one has no
    // message yet: its sync is empty and its wait is not answered.
    new.send(json!({"command": "sync", "wait": true}), &[]);
    assert_eq!(read_head(&mut new).1, BIG);
    assert_eq!(old.call(json!({"command": "sync"})), json!({"status": 0}));
    old.send(json!({"command": "wait"}), &[]);
    assert!(silent_for(&mut old, Duration::from_millis(200)));
    tx.send_bytes(&bytes[split..]);
    assert_eq!(tx.recv().0, json!({"status": 0}));
    assert_eq!(old.recv().0, json!({"status": 0, "n": 1}));
    old.send(json!({"command": "sync"}), &[]);
    let (h, p) = old.recv();
    assert_eq!(h["varname"], "x");
    assert_eq!(p, payload);
    assert_eq!(old.recv().0, json!({"status": 0}));
    assert_eq!(read_n(&mut new, BIG), payload);
    assert_eq!(new.recv().0, json!({"status": 0}));
}

#[test]
fn a_sender_that_dies_before_an_old_client_got_the_message_leaves_it_nothing() {
    let srv = TestServer::start_with(|c| c.max_queue = 6 << 20);
    let _new = member(&srv, &["cut_through"], "g");
    let mut old = member(&srv, &[], "g");
    let mut tx = sender(&srv);
    let payload = pattern(BIG, 17);
    let bytes = send_frame("g", "doomed", &payload);
    tx.send_bytes(&bytes[..bytes.len() / 2]);
    until_queued(&srv, "g", 1);
    drop(tx);
    thread::sleep(Duration::from_millis(100));
    assert_eq!(old.call(json!({"command": "sync"})), json!({"status": 0}));
    // Its reservation in the old client's queue is gone too: a message
    // as large fits again.
    let mut tx2 = client(&srv, true);
    tx2.send_encoded("g", "x", &pattern(BIG, 1)).unwrap();
    old.send(json!({"command": "sync"}), &[]);
    assert_eq!(old.recv().0["varname"], "x");
}

#[test]
fn a_broadcast_reaches_recipients_reading_at_different_speeds() {
    let srv = TestServer::start();
    let mut fast = client(&srv, true);
    let mut slow = srv.raw();
    slow.call(
        json!({"command": "handshake", "serialization": "dimeb", "tls": false,
        "extensions": ["cut_through"]}),
    );
    let mut old = srv.raw();
    old.call(json!({"command": "handshake", "serialization": "dimeb", "tls": false}));
    let mut tx = client(&srv, true);
    let payload = pattern(8 << 20, 21);
    let sending = {
        let payload = payload.clone();
        thread::spawn(move || {
            tx.broadcast_encoded("x", &payload).unwrap();
            tx
        })
    };
    // The fast one gets it all while the slow one has read nothing.
    let got = fast
        .receive_messages(-1, Some(Duration::from_secs(20)))
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].payload[..], &payload[..]);
    // The slow one reads in small pieces with pauses.
    slow.send(json!({"command": "sync", "wait": true}), &[]);
    let (h, len) = read_head(&mut slow);
    assert_eq!((h["varname"].as_str(), len), (Some("x"), payload.len()));
    let mut body = Vec::new();
    while body.len() < len {
        let take = (len - body.len()).min(1 << 20);
        body.extend(read_n(&mut slow, take));
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(body, payload);
    assert_eq!(slow.recv().0, json!({"status": 0}));
    let _tx = sending.join().unwrap();
    old.send(json!({"command": "sync"}), &[]);
    let (h, p) = old.recv();
    assert_eq!((h["varname"].as_str(), p == payload), (Some("x"), true));
    assert_eq!(old.recv().0, json!({"status": 0}));
}

#[test]
fn max_queue_counts_a_message_still_arriving_at_its_declared_size() {
    let srv = TestServer::start_with(|c| c.max_queue = 6 << 20);
    let mut new = member(&srv, &["cut_through"], "g");
    let mut old = member(&srv, &[], "g");
    let mut tx = sender(&srv);
    let payload = pattern(BIG, 23);
    let bytes = send_frame("g", "first", &payload);
    tx.send_bytes(&bytes[..bytes.len() / 2]);
    until_queued(&srv, "g", 1);
    // Both queues already count the whole first message (4 MiB of 6).
    let mut tx2 = client(&srv, true);
    let err = tx2
        .send_encoded("g", "second", &pattern(BIG, 2))
        .unwrap_err();
    assert!(err.to_string().contains("--max-queue"), "{err}");
    // What fits still goes.
    tx2.send("g", "small", &Value::F64(3.0)).unwrap();
    tx.send_bytes(&bytes[bytes.len() / 2..]);
    assert_eq!(tx.recv().0, json!({"status": 0}));
    for r in [&mut new, &mut old] {
        r.send(json!({"command": "sync"}), &[]);
        let mut names = Vec::new();
        loop {
            let (h, _) = r.recv();
            if h.get("status").is_some() {
                assert_eq!(h, json!({"status": 0}));
                break;
            }
            names.push(h["varname"].as_str().unwrap().to_owned());
        }
        names.sort();
        assert_eq!(names, ["first", "small"]);
    }
}

#[test]
fn the_sender_replies_stay_in_request_order() {
    let srv = TestServer::start();
    let _rx = member(&srv, &["cut_through"], "g");
    let mut tx = sender(&srv);
    // A large send to a group, then one to a group that does not exist,
    // then a large one again, pipelined.
    let mut bytes = send_frame("g", "a", &pattern(2 << 20, 1));
    bytes.extend(send_frame("nobody", "b", &[1]));
    bytes.extend(send_frame("g", "c", &pattern(2 << 20, 2)));
    tx.stream.write_all(&bytes).unwrap();
    assert_eq!(tx.recv().0, json!({"status": 0}));
    assert_eq!(tx.recv().0["error"], "No such group exists: nobody");
    assert_eq!(tx.recv().0, json!({"status": 0}));
}

/// Reads one `sync` reply from a raw connection: its messages (varname,
/// payload), with those its closing status names as aborted dropped.
fn read_reply(r: &mut Raw) -> Vec<(String, Vec<u8>)> {
    let mut got: Vec<(String, Vec<u8>)> = Vec::new();
    loop {
        let (h, p) = r.recv();
        if h.get("status").is_some() {
            assert_eq!(h["status"], 0, "{h}");
            let mut aborted: Vec<usize> = h
                .get("aborted")
                .map(|a| {
                    a.as_array()
                        .unwrap()
                        .iter()
                        .map(|k| k.as_u64().unwrap() as usize)
                        .collect()
                })
                .unwrap_or_default();
            aborted.sort_unstable();
            aborted.dedup();
            for k in aborted.into_iter().rev() {
                got.remove(k);
            }
            return got;
        }
        got.push((h["varname"].as_str().unwrap().to_owned(), p));
    }
}

#[test]
fn senders_dying_at_random_points_never_corrupt_what_anyone_receives() {
    let mut cuts = 0;
    for seed in [
        0x2545_F491_4F6C_DD1D,
        0x9E37_79B9_7F4A_7C15,
        0xD1B5_4A32_D192_ED03,
    ] {
        cuts += random_senders(seed);
    }
    assert!(
        cuts >= 2,
        "only {cuts} senders died midway: the seeds test too little"
    );
}

/// Three senders at once, some killed mid-message, to recipients of every
/// kind; returns how many were killed.
fn random_senders(mut seed: u64) -> usize {
    let srv = TestServer::start();
    // Recipients of every kind, each reading on its own thread until "end".
    let mut ours = client(&srv, true);
    ours.join(&["g"]).unwrap();
    let new = member(&srv, &["cut_through"], "g");
    let old = member(&srv, &[], "g");
    type Got = Vec<(String, Vec<u8>)>;
    let ours_thread = thread::spawn(move || {
        let mut got: Got = Vec::new();
        while !got.iter().any(|(n, _)| n == "end") {
            for m in ours
                .receive_messages(-1, Some(Duration::from_secs(30)))
                .unwrap()
            {
                got.push((m.varname.clone(), m.payload.to_vec()));
            }
        }
        got
    });
    let raw_thread = |mut r: Raw, negotiated: bool| {
        thread::spawn(move || {
            let mut got: Got = Vec::new();
            while !got.iter().any(|(n, _)| n == "end") {
                if negotiated {
                    r.send(json!({"command": "sync", "wait": true}), &[]);
                } else {
                    assert_eq!(r.call(json!({"command": "wait"}))["status"], 0);
                    r.send(json!({"command": "sync"}), &[]);
                }
                got.extend(read_reply(&mut r));
            }
            got
        })
    };
    let new_thread = raw_thread(new, true);
    let old_thread = raw_thread(old, false);

    // Three senders at once, each sending messages of 1 to 3 MiB in
    // pieces; some messages are cut short by killing their sender.
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut plans = Vec::new();
    for s in 0..3u8 {
        let mut msgs = Vec::new();
        for k in 0..4u8 {
            let len = (1 << 20) + rand(2 << 20) as usize;
            // One in three dies after a random part of its bytes.
            let cut = (rand(3) == 0).then(|| rand(len as u64) as usize);
            msgs.push((k, len, cut));
            if cut.is_some() {
                break;
            }
        }
        plans.push((s, msgs));
    }
    let cuts = plans
        .iter()
        .filter(|(_, msgs)| msgs.iter().any(|m| m.2.is_some()))
        .count();
    let mut expected: Vec<(String, Vec<u8>)> = Vec::new();
    let senders: Vec<_> = plans
        .into_iter()
        .map(|(s, msgs)| {
            for &(k, len, cut) in &msgs {
                if cut.is_none() {
                    expected.push((format!("s{s}_{k}"), pattern(len, s * 16 + k)));
                }
            }
            let mut tx = sender(&srv);
            thread::spawn(move || {
                for (k, len, cut) in msgs {
                    let payload = pattern(len, s * 16 + k);
                    let bytes = send_frame("g", &format!("s{s}_{k}"), &payload);
                    let upto = cut.map_or(bytes.len(), |c| bytes.len() - len + c);
                    for piece in bytes[..upto].chunks(512 << 10) {
                        tx.send_bytes(piece);
                        thread::sleep(Duration::from_millis(2));
                    }
                    if cut.is_some() {
                        return; // the sender dies with its connection
                    }
                    assert_eq!(tx.recv().0, json!({"status": 0}));
                }
            })
        })
        .collect();
    for t in senders {
        t.join().unwrap();
    }
    let mut last = client(&srv, true);
    last.send("g", "end", &Value::F64(0.0)).unwrap();
    let end = dime::codec::dimeb::encode(&Value::F64(0.0)).unwrap();
    expected.push(("end".to_owned(), end));
    expected.sort();
    for (who, got) in [
        ("ours", ours_thread.join().unwrap()),
        ("negotiated", new_thread.join().unwrap()),
        ("old", old_thread.join().unwrap()),
    ] {
        // Each sender's messages in the order it sent them.
        for s in 0..3 {
            let names: Vec<&String> = got
                .iter()
                .map(|(n, _)| n)
                .filter(|n| n.starts_with(&format!("s{s}_")))
                .collect();
            let mut sorted = names.clone();
            sorted.sort();
            assert_eq!(names, sorted, "{who}: sender {s} out of order");
        }
        let mut got = got;
        got.sort();
        assert_eq!(got.len(), expected.len(), "{who}");
        for (g, e) in got.iter().zip(&expected) {
            assert_eq!(g.0, e.0, "{who}");
            assert!(g.1 == e.1, "{who}: {} arrived changed", g.0);
        }
    }
    cuts
}

#[test]
fn large_matrices_sent_from_their_own_memory_arrive_exactly() {
    use dime::codec::dimeb::{self, MatrixEncoding};
    use dime::layout::Layout;
    use dime::{ElemKind, Matrix};
    let srv = TestServer::start();
    let mut rx = client(&srv, true);
    rx.join(&["g"]).unwrap();
    let mut tx = client(&srv, true);
    assert_eq!(tx.matrix_encoding(), MatrixEncoding::Native);
    let matrix = |rows: usize, cols: usize, layout| {
        let elems: Vec<u8> = (0..rows * cols)
            .flat_map(|i| (i as f64 + 0.5).to_ne_bytes())
            .collect();
        Value::Matrix(Matrix::with_layout(ElemKind::F64, vec![rows, cols], elems, layout).unwrap())
    };
    // Large matrices of both layouts among small values, nested.
    let value = Value::List(vec![
        Value::F64(1.0),
        matrix(700, 300, Layout::RowMajor),
        Value::Map(vec![
            (
                Value::String("k".into()),
                matrix(300, 700, Layout::ColumnMajor),
            ),
            (
                Value::String("small".into()),
                matrix(3, 4, Layout::RowMajor),
            ),
        ]),
    ]);
    tx.send("g", "x", &value).unwrap();
    let got = rx
        .receive_messages(-1, Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(got.len(), 1);
    // The bytes are the value's encoding, exactly as if encoded whole.
    assert_eq!(
        &got[0].payload[..],
        &dimeb::encode_with(&value, MatrixEncoding::Native).unwrap()[..]
    );
    assert_eq!(got.into_iter().next().unwrap().into_value().unwrap(), value);
}

/// The stall limit of the stall tests: long enough that a loaded machine
/// never pauses a writing sender this long, short for the tests.
const STALL: Duration = Duration::from_millis(600);

#[test]
fn a_sender_that_stalls_mid_payload_is_cut_off_and_nobody_waits_longer_than_the_limit() {
    let srv = TestServer::start_with(|c| c.cut_through_stall = STALL);
    let mut rx = member(&srv, &["cut_through"], "g");
    let mut old = member(&srv, &[], "g");
    let mut bystander = member(&srv, &["cut_through"], "h");
    let mut tx = sender(&srv);
    rx.send(json!({"command": "sync", "wait": true}), &[]);
    let payload = pattern(BIG, 29);
    let bytes = send_frame("g", "stalled", &payload);
    let split = bytes.len() - payload.len() + (1 << 20);
    // The sender writes a quarter of the payload and stops, connected.
    tx.send_bytes(&bytes[..split]);
    let (head, len) = read_head(&mut rx);
    assert_eq!((head["varname"].as_str(), len), (Some("stalled"), BIG));
    assert_eq!(read_n(&mut rx, 1 << 20), payload[..1 << 20]);
    let stalled_at = Instant::now();
    // Everyone else carries on meanwhile.
    let mut other = client(&srv, true);
    other.send("h", "meanwhile", &Value::F64(1.0)).unwrap();
    bystander.send(json!({"command": "sync"}), &[]);
    assert_eq!(bystander.recv().0["varname"], "meanwhile");
    assert_eq!(bystander.recv().0, json!({"status": 0}));
    // Once the limit has passed, the recipient's reply ends: zeros for
    // the rest, and the message named as aborted.
    let rest = read_n(&mut rx, BIG - (1 << 20));
    let waited = stalled_at.elapsed();
    assert!(rest.iter().all(|&b| b == 0));
    assert_eq!(rx.recv().0, json!({"status": 0, "aborted": [0]}));
    assert!(waited < STALL * 4, "the sync reply waited {waited:?}");
    // The sender is told at once, while its frame is still unfinished.
    let (reply, _) = tx.recv();
    assert_eq!(reply["status"], -1);
    let error = reply["error"].as_str().unwrap();
    assert!(
        error.contains("stalled") && error.contains("--cut-through-stall-ms"),
        "{error}"
    );
    // The old client never had the message.
    assert_eq!(old.call(json!({"command": "sync"})), json!({"status": 0}));
    // The sender keeps its connection: the rest of its payload, when it
    // comes, is discarded, and its next message goes out as usual.
    tx.send_bytes(&bytes[split..]);
    let after = pattern(2 << 20, 31);
    tx.send_bytes(&send_frame("g", "after", &after));
    assert_eq!(tx.recv().0, json!({"status": 0}));
    for r in [&mut rx, &mut old] {
        r.send(json!({"command": "sync"}), &[]);
        let (h, p) = r.recv();
        assert_eq!((h["varname"].as_str(), p == after), (Some("after"), true));
        assert_eq!(r.recv().0, json!({"status": 0}));
    }
}

#[test]
fn our_client_syncing_while_a_sender_stalls_gets_the_other_messages_within_the_limit() {
    let srv = TestServer::start_with(|c| c.cut_through_stall = STALL);
    let mut ours = client(&srv, true);
    ours.join(&["g"]).unwrap();
    let mut small = client(&srv, true);
    small.send("g", "before", &Value::F64(1.0)).unwrap();
    let mut tx = sender(&srv);
    let payload = pattern(BIG, 37);
    let bytes = send_frame("g", "stalled", &payload);
    tx.send_bytes(&bytes[..bytes.len() / 2]);
    until_queued(&srv, "g", 2);
    let syncing = Instant::now();
    let (done, answer) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let got = ours.sync_messages(-1);
        let _ = done.send((ours, got));
    });
    // (Without the limit the sync would wait for the sender for ever.)
    let (_ours, got) = answer
        .recv_timeout(STALL * 4)
        .expect("the sync returned within the limit");
    let names: Vec<String> = got.unwrap().into_iter().map(|m| m.varname).collect();
    assert!(
        syncing.elapsed() >= STALL / 2,
        "it waited for the sender first"
    );
    assert_eq!(names, ["before"]);
    assert_eq!(tx.recv().0["status"], -1);
    // The stalled sender's connection stays usable.
    tx.send_bytes(&bytes[bytes.len() / 2..]);
    assert_eq!(
        tx.call(json!({"command": "send", "name": "g", "varname": "small",
            "serialization": "dimeb"})),
        json!({"status": 0})
    );
}

#[test]
fn a_slow_sender_that_keeps_sending_is_not_cut_off() {
    let srv = TestServer::start_with(|c| c.cut_through_stall = STALL);
    let mut rx = member(&srv, &["cut_through"], "g");
    let mut tx = sender(&srv);
    rx.send(json!({"command": "sync", "wait": true}), &[]);
    let payload = pattern(BIG, 41);
    let bytes = send_frame("g", "slow", &payload);
    // Four times the limit in all, never a pause of half of it.
    let pieces: Vec<&[u8]> = bytes.chunks(bytes.len() / 16 + 1).collect();
    let pause = STALL * 4 / pieces.len() as u32;
    let reading = thread::spawn(move || {
        let (head, len) = read_head(&mut rx);
        let body = read_n(&mut rx, len);
        (head, body, rx.recv().0)
    });
    for piece in pieces {
        tx.send_bytes(piece);
        thread::sleep(pause);
    }
    assert_eq!(tx.recv().0, json!({"status": 0}));
    let (head, body, status) = reading.join().unwrap();
    assert_eq!(head["varname"], "slow");
    assert!(body == payload);
    assert_eq!(status, json!({"status": 0}));
}

#[test]
fn the_broker_flag_sets_the_stall_limit() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("d.sock");
    let dime = || Command::new(env!("CARGO_BIN_EXE_dime"));
    // Zero would abort every message at once: refused.
    let out = dime()
        .args(["--cut-through-stall-ms", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--cut-through-stall-ms"));
    let _broker = common::KillOnDrop(
        dime()
            .arg("-l")
            .arg(format!("unix:{}", sock.display()))
            .args(["--cut-through-stall-ms", "300"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let path = sock.to_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(path).is_err() {
        assert!(Instant::now() < deadline, "the broker never listened");
        thread::sleep(Duration::from_millis(10));
    }
    let handshake = |extensions: &[&str]| {
        let mut r = Raw::connect(path);
        let reply = r.call(json!({"command": "handshake", "serialization": "dimeb",
            "tls": false, "extensions": extensions}));
        assert_eq!(reply["status"], 0);
        r
    };
    let mut rx = handshake(&["cut_through"]);
    rx.call(json!({"command": "join", "name": "g"}));
    let mut tx = handshake(&[]);
    let payload = pattern(BIG, 43);
    let bytes = send_frame("g", "stalled", &payload);
    tx.send_bytes(&bytes[..bytes.len() / 2]);
    rx.send(json!({"command": "sync", "wait": true}), &[]);
    let started = Instant::now();
    assert_eq!(read_head(&mut rx).1, BIG);
    read_n(&mut rx, BIG);
    assert_eq!(rx.recv().0, json!({"status": 0, "aborted": [0]}));
    // Well before the default limit of five seconds.
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(tx.recv().0["status"], -1);
}
