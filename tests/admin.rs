//! The broker's view of itself: `inspect` (clients and every service's
//! state), `stats` (counters), `monitor` (traffic as it passes), and who
//! may use them.

mod common;

use common::{Raw, TestServer};
use dime::Value;
use dime::server::Config;
use dime::transport::Address;
use serde_json::{Value as Json, json};
use std::io::{Read, Write};
use std::net::TcpStream;

fn handshaken(srv: &TestServer) -> Raw {
    let mut r = srv.raw();
    assert_eq!(
        r.call(json!({"command": "handshake", "serialization": "dimeb"}))["status"],
        0
    );
    r
}

#[test]
fn inspect_shows_clients_groups_shares_spaces_and_functions() {
    let srv = TestServer::start();
    let mut a = srv.client();
    a.join(&["sim", "all"]).unwrap();
    let mut b = srv.client();
    b.join(&["all"]).unwrap();
    b.send("sim", "x", &Value::from("queued for a")).unwrap();
    a.share("jobs").set("k", &Value::I64(5)).unwrap();
    a.space("work").out(&[Value::I64(1)]).unwrap();
    let provider = dime::rpc::Rpc::connect(&srv.unix(), Default::default()).unwrap();
    provider.provide("add", 3).unwrap();

    let mut admin = handshaken(&srv);
    let r = admin.call(json!({"command": "inspect"}));
    assert_eq!(r["status"], 0, "{r}");
    let clients = r["clients"].as_array().unwrap();
    assert_eq!(clients.len(), 4, "{r}");
    let a_entry = clients
        .iter()
        .find(|c| c["groups"] == json!(["all", "sim"]))
        .expect("client a is listed with its groups");
    assert_eq!(a_entry["queued"], 1);
    assert!(a_entry["queued_bytes"].as_u64().unwrap() > 0);
    assert!(a_entry["since"].as_f64().unwrap() > 1.6e9);
    let groups = &r["services"]["messaging"]["groups"];
    assert_eq!(groups["all"].as_array().unwrap().len(), 2);
    assert_eq!(groups["sim"].as_array().unwrap().len(), 1);
    assert_eq!(r["services"]["shares"]["jobs"]["keys"], 1);
    assert_eq!(r["services"]["spaces"]["work"]["tuples"], 1);
    let add = &r["services"]["rpc"]["add"];
    assert_eq!(add["providers"][0]["capacity"], 3);
    assert_eq!(add["queued"], 0);
}

#[test]
fn stats_count_requests_errors_messages_and_clients() {
    let srv = TestServer::start();
    let mut a = srv.client();
    a.join(&["g"]).unwrap();
    for i in 0..5 {
        a.send("g", "x", &Value::I64(i)).unwrap();
    }
    assert!(a.send("nosuch", "x", &Value::I64(0)).is_err());
    let mut admin = handshaken(&srv);
    let s = admin.call(json!({"command": "stats"}));
    assert_eq!(s["status"], 0, "{s}");
    assert_eq!(s["commands"]["send"]["requests"], 6);
    assert_eq!(s["commands"]["send"]["errors"], 1);
    assert_eq!(s["commands"]["join"]["requests"], 1);
    assert_eq!(s["messages"], 5);
    assert_eq!(s["clients"], 2);
    assert!(s["accepted"].as_u64().unwrap() >= 2);
    assert!(s["bytes_in"].as_u64().unwrap() > 0);
    assert!(s["handling_us"]["p50"].as_u64().unwrap() >= 1);
    // Names nobody knows are counted together, not one entry each.
    admin.call(json!({"command": "made_up_1"}));
    admin.call(json!({"command": "made_up_2"}));
    let s = admin.call(json!({"command": "stats"}));
    assert_eq!(s["commands"]["(unknown)"]["requests"], 2);
    assert!(s["commands"].get("made_up_1").is_none());
}

/// Reads one frame's header and payload from a raw connection.
fn recv(r: &mut Raw) -> (Json, Vec<u8>) {
    r.recv()
}

#[test]
fn monitor_sees_messages_as_they_pass_and_records_frames() {
    let srv = TestServer::start();
    let mut a = srv.client();
    a.join(&["sim"]).unwrap();
    let mut b = srv.client();
    b.join(&["other"]).unwrap();
    let mut mon = handshaken(&srv);
    assert_eq!(mon.call(json!({"command": "monitor"}))["status"], 0);
    let mut rec = handshaken(&srv);
    assert_eq!(
        rec.call(json!({"command": "monitor", "groups": ["sim"], "payloads": true}))["status"],
        0
    );
    let m = dime::Matrix::from_elems(vec![2, 3], &[0.0f64; 6]).unwrap();
    b.send("sim", "A", &Value::Matrix(m)).unwrap();
    b.send("other", "skip", &Value::I64(1)).unwrap();
    a.broadcast("hello", &Value::from("hi")).unwrap();

    let (s, _) = recv(&mut mon);
    assert_eq!(s["monitor"]["command"], "send");
    assert_eq!(s["monitor"]["group"], "sim");
    assert_eq!(s["monitor"]["varname"], "A");
    assert_eq!(s["monitor"]["value"], "double 2×3");
    assert_eq!(s["monitor"]["recipients"], 1);
    let (s, _) = recv(&mut mon);
    assert_eq!(s["monitor"]["varname"], "skip");
    let (s, _) = recv(&mut mon);
    assert_eq!(s["monitor"]["command"], "broadcast");
    assert_eq!(s["monitor"]["value"], "string(2)");
    // Monitors are not recipients of broadcasts: b got it, nobody else.
    assert_eq!(s["monitor"]["recipients"], 1);

    // The recorder sees only group "sim" (and broadcasts), each followed
    // by the frame exactly as sent.
    let (s, _) = recv(&mut rec);
    assert_eq!(s["monitor"]["varname"], "A");
    assert_eq!(s["monitor"]["frame"], true);
    let (h, payload) = recv(&mut rec);
    assert_eq!(h["command"], "send");
    assert_eq!(h["varname"], "A");
    assert_eq!(dime::codec::dimeb::summary(&payload), "double 2×3");
    let (s, _) = recv(&mut rec);
    assert_eq!(s["monitor"]["varname"], "hello");
    let (h, _) = recv(&mut rec);
    assert_eq!(h["varname"], "hello");
    // Nothing queued for the monitors themselves.
    let r = mon.call(json!({"command": "inspect"}));
    let monitors: Vec<&Json> = r["clients"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["monitor"] == true)
        .collect();
    assert_eq!(monitors.len(), 2);
    assert!(monitors.iter().all(|c| c["queued"] == 0));
}

/// One request over a raw TCP connection.
fn tcp_call(addr: &str, json: Json) -> Json {
    let port = addr.rsplit(':').next().unwrap();
    let mut s = TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    s.write_all(&common::frame(json.to_string().as_bytes(), b""))
        .unwrap();
    let mut prefix = [0u8; 12];
    s.read_exact(&mut prefix).unwrap();
    let jl = u32::from_be_bytes(prefix[4..8].try_into().unwrap()) as usize;
    let pl = u32::from_be_bytes(prefix[8..12].try_into().unwrap()) as usize;
    let mut body = vec![0; jl + pl];
    s.read_exact(&mut body).unwrap();
    serde_json::from_slice(&body[..jl]).unwrap()
}

#[test]
fn admin_commands_need_the_same_user_or_admin() {
    let tcp = |admin| {
        TestServer::start_with(move |c: &mut Config| {
            c.listen.push(Address::Tcp("127.0.0.1".into(), 0));
            c.admin = admin;
        })
    };
    let srv = tcp(false);
    for command in ["inspect", "stats", "monitor"] {
        let r = tcp_call(&srv.addrs[1], json!({"command": command}));
        assert_eq!(r["status"], -1, "{r}");
        assert!(
            r["error"].as_str().unwrap().contains("not permitted"),
            "{r}"
        );
    }
    // The same user on the unix socket may.
    assert_eq!(
        handshaken(&srv).call(json!({"command": "stats"}))["status"],
        0
    );
    let srv = tcp(true);
    assert_eq!(
        tcp_call(&srv.addrs[1], json!({"command": "stats"}))["status"],
        0
    );
}

#[test]
fn side_connections_take_no_broadcasts() {
    let srv = TestServer::start();
    let mut a = srv.client();
    let mut b = srv.client();
    let rpc = dime::rpc::Rpc::connect(&srv.unix(), Default::default()).unwrap();
    rpc.provide("f", 1).unwrap();
    let _watch = a.share("s").watch("", None).unwrap();
    for i in 0..3 {
        a.broadcast("x", &Value::I64(i)).unwrap();
    }
    assert_eq!(b.sync(-1).unwrap().len(), 3);
    let mut admin = handshaken(&srv);
    let r = admin.call(json!({"command": "inspect"}));
    let clients = r["clients"].as_array().unwrap();
    // a, b, the remote-call and watch connections, and this one.
    assert_eq!(clients.len(), 5, "{r}");
    let queued: u64 = clients.iter().map(|c| c["queued"].as_u64().unwrap()).sum();
    assert_eq!(queued, 0, "broadcasts piled up in a side connection: {r}");
}
