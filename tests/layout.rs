//! The `dimeb_layout` extension end to end (docs/protocol-extensions.md):
//! a row-major matrix travels as it is between clients that negotiated it,
//! and the broker converts it once, to DiME2's column-major big-endian
//! encoding, for every recipient that did not (old clients, raw ones, our
//! own clients connected without it). The same holds for remote calls.

mod common;

use common::{Raw, TestServer};
use dime::client::ConnectOptions;
use dime::codec::dimeb::{self, MatrixEncoding};
use dime::layout::Layout;
use dime::rpc::{Rpc, RpcOptions};
use dime::{Client, ElemKind, Matrix, Value};
use serde_json::json;
use std::time::Duration;

/// A `rows` x `cols` float64 matrix stored row-major, element (i, j) = i * 1000 + j.
fn row_major(rows: usize, cols: usize) -> Matrix {
    let elems: Vec<u8> = (0..rows)
        .flat_map(|i| (0..cols).map(move |j| (i * 1000 + j) as f64))
        .flat_map(f64::to_ne_bytes)
        .collect();
    Matrix::with_layout(ElemKind::F64, vec![rows, cols], elems, Layout::RowMajor).unwrap()
}

/// A raw connection that handshook asking for `extensions` and joined `group`.
fn raw_member(srv: &TestServer, extensions: &[&str], group: &str) -> Raw {
    let mut raw = srv.raw();
    let reply = raw.call(json!({"command": "handshake", "serialization": "dimeb",
        "tls": false, "extensions": extensions}));
    assert_eq!(reply["status"], 0);
    assert_eq!(
        raw.call(json!({"command": "join", "name": group}))["status"],
        0
    );
    raw
}

/// The one message queued for `raw`: its header and payload.
fn sync_one(raw: &mut Raw) -> (serde_json::Value, Vec<u8>) {
    raw.send(json!({"command": "sync", "n": 1}), &[]);
    let msg = raw.recv();
    assert_eq!(raw.recv().0, json!({"status": 0}));
    msg
}

#[test]
fn each_recipient_gets_the_encoding_it_negotiated() {
    let srv = TestServer::start();
    let mut sender = srv.client();
    assert_eq!(sender.matrix_encoding(), MatrixEncoding::Native);
    let mut old = raw_member(&srv, &[], "g");
    let mut new = raw_member(&srv, &["dimeb_layout"], "g");
    let mut ours_classic = Client::connect_with(
        &srv.unix(),
        ConnectOptions {
            layout: false,
            ..ConnectOptions::default()
        },
    )
    .unwrap();
    assert_eq!(ours_classic.matrix_encoding(), MatrixEncoding::Classic);
    ours_classic.join(&["g"]).unwrap();
    let mut ours = srv.client();
    ours.join(&["g"]).unwrap();

    let m = row_major(300, 200);
    let v = Value::List(vec![Value::from("tag"), Value::Matrix(m.clone())]);
    sender.send("g", "x", &v).unwrap();

    // A client that did not ask: DiME2's bytes exactly, header unmarked.
    let (h, payload) = sync_one(&mut old);
    assert_eq!(payload, dimeb::encode(&v).unwrap());
    assert_eq!(h["varname"], "x");
    assert!(h.get("dimeb_layout").is_none(), "{h}");
    // One that asked: the sender's own bytes, row-major, marked.
    let (h, payload) = sync_one(&mut new);
    assert_eq!(
        payload,
        dimeb::encode_with(&v, MatrixEncoding::Native).unwrap()
    );
    assert_eq!(h["dimeb_layout"], true);

    // Our clients decode either to the same value; the one that negotiated
    // keeps the sender's layout (nobody transposed it).
    let got = ours_classic.sync(-1).unwrap();
    assert_eq!(got, vec![("x".to_owned(), v.clone())]);
    let Value::List(items) = &got[0].1 else {
        panic!()
    };
    let Value::Matrix(back) = &items[1] else {
        panic!()
    };
    assert_eq!(back.layout(), Layout::ColumnMajor);
    let got = ours.sync(-1).unwrap();
    assert_eq!(got, vec![("x".to_owned(), v)]);
    let Value::List(items) = &got[0].1 else {
        panic!()
    };
    let Value::Matrix(back) = &items[1] else {
        panic!()
    };
    assert_eq!(back.layout(), Layout::RowMajor);
    assert_eq!(back.stored_bytes(), m.stored_bytes());
    assert_eq!(
        back.to_vec::<f64>().unwrap()[1],
        1000.0,
        "(1, 0) comes second"
    );
}

#[test]
fn values_without_matrices_go_unmarked_and_unconverted() {
    let srv = TestServer::start();
    let mut sender = srv.client();
    let mut old = raw_member(&srv, &[], "g");
    let v = Value::List(vec![Value::from("a"), Value::F64(1.5)]);
    sender.send("g", "x", &v).unwrap();
    let (h, payload) = sync_one(&mut old);
    assert!(h.get("dimeb_layout").is_none());
    assert_eq!(payload, dimeb::encode(&v).unwrap());
}

#[test]
fn a_marked_payload_that_does_not_decode_fails_the_send_and_queues_nothing() {
    let srv = TestServer::start();
    let mut sender = raw_member(&srv, &["dimeb_layout"], "s");
    let mut old = raw_member(&srv, &[], "g");
    let mut new = raw_member(&srv, &["dimeb_layout"], "g");
    // A layout matrix whose flags byte is unknown.
    let bad = [0x4Cu8, 0x80, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    sender.send(
        json!({"command": "send", "name": "g", "varname": "x", "serialization": "dimeb",
            "dimeb_layout": true}),
        &bad,
    );
    let reply = sender.recv().0;
    assert_eq!(reply["status"], -1);
    let msg = reply["error"].as_str().unwrap();
    assert!(
        msg.contains("Cannot convert") && msg.contains("flags"),
        "{msg}"
    );
    for raw in [&mut old, &mut new] {
        raw.send(json!({"command": "sync"}), &[]);
        assert_eq!(raw.recv().0, json!({"status": 0}), "nothing was queued");
    }
    // The connection stays usable.
    assert_eq!(sender.call(json!({"command": "devices"}))["status"], 0);
}

#[test]
fn the_queue_limit_counts_each_recipients_own_copy() {
    // The native encoding of this matrix is longer than the classic one
    // (flags, padding) and its header carries the marker: a limit of
    // exactly the classic frame admits the converted copy and refuses the
    // native one.
    let m = Value::Matrix(row_major(4, 4));
    let payload_len = |enc| dimeb::encode_with(&m, enc).unwrap().len();
    let header_len = |marked: bool| {
        let mut h = json!({"command": "send", "name": "g", "varname": "x",
            "serialization": "dimeb"});
        if marked {
            h["dimeb_layout"] = json!(true);
        }
        h.to_string().len()
    };
    let classic_frame = 12 + header_len(false) + payload_len(MatrixEncoding::Classic);
    let native_frame = 12 + header_len(true) + payload_len(MatrixEncoding::Native);
    assert!(native_frame > classic_frame);
    let srv = TestServer::start_with(|c| c.max_queue = classic_frame as u64);
    let mut sender = srv.client();
    let mut old = raw_member(&srv, &[], "g");
    sender.send("g", "x", &m).unwrap();
    let (_, payload) = sync_one(&mut old);
    assert_eq!(payload, dimeb::encode(&m).unwrap());
    // With a recipient that takes the native frame, the send is refused
    // as a whole.
    let _new = raw_member(&srv, &["dimeb_layout"], "g");
    let err = sender.send("g", "x", &m).unwrap_err();
    assert!(err.to_string().contains("--max-queue"), "{err}");
    old.send(json!({"command": "sync"}), &[]);
    assert_eq!(old.recv().0, json!({"status": 0}), "nothing was queued");
}

#[test]
fn remote_calls_convert_for_a_side_that_did_not_negotiate() {
    let srv = TestServer::start();
    // A provider that speaks the wire itself and did not ask for layouts.
    let mut provider = srv.raw();
    provider.call(json!({"command": "handshake", "serialization": "dimeb", "tls": false}));
    assert_eq!(
        provider.call(json!({"command": "provide", "function": "f"}))["status"],
        0
    );
    let caller = Rpc::connect(&srv.unix(), RpcOptions::default()).unwrap();
    let args = Value::Matrix(row_major(3, 5));
    let future = caller.call("f", &args, None).unwrap();
    let (push, payload) = provider.recv();
    assert_eq!(push["function"], "f");
    assert_eq!(payload, dimeb::encode(&args).unwrap(), "classic arguments");
    // Its classic result reaches our caller as the same value.
    let result = Value::Matrix(row_major(2, 2));
    provider.send(
        json!({"command": "return", "call": push["call"]}),
        &dimeb::encode(&result).unwrap(),
    );
    assert_eq!(
        future
            .result(Some(Duration::from_secs(10)))
            .unwrap()
            .unwrap(),
        result
    );

    // Between two of ours the arguments travel in their own layout.
    let provider = Rpc::connect(&srv.unix(), RpcOptions::default()).unwrap();
    provider.provide("g", 1).unwrap();
    let future = caller.call("g", &args, None).unwrap();
    let call = provider
        .next_call(Some(Duration::from_secs(10)))
        .unwrap()
        .unwrap();
    assert_eq!(
        call.args.to_vec(),
        dimeb::encode_with(&args, MatrixEncoding::Native).unwrap()
    );
    provider.reply(call.id, &call.decode().unwrap()).unwrap();
    assert_eq!(
        future
            .result(Some(Duration::from_secs(10)))
            .unwrap()
            .unwrap(),
        args
    );
}

#[test]
fn a_marked_call_with_bad_arguments_fails_at_the_caller() {
    let srv = TestServer::start();
    let mut caller = srv.raw();
    caller.call(
        json!({"command": "handshake", "serialization": "dimeb", "tls": false,
        "extensions": ["dimeb_layout"]}),
    );
    caller.send(
        json!({"command": "call", "function": "f", "id": 7, "dimeb_layout": true}),
        &[0x4C, 0x02, 1, 0, 0, 0, 9],
    );
    let (push, _) = caller.recv();
    assert_eq!(push["result"], 7);
    assert_eq!(push["status"], -1);
    assert!(
        push["error"].as_str().unwrap().contains("not valid dimeb"),
        "{push}"
    );
}
