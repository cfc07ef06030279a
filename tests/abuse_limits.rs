//! Limits against hostile or runaway clients, on real servers: connections
//! per peer, groups per client, name lengths, and the refusal to open a
//! network listener without TLS and authentication.

mod common;

use common::TestServer;
use dime::Value;
use dime::transport::Address;
use serde_json::json;
use std::process::Command;
use std::time::Duration;

#[test]
fn a_peer_over_its_connection_limit_is_told_and_closed() {
    let srv = TestServer::start_with(|c| {
        c.listen.push(Address::Tcp("127.0.0.1".into(), 0));
        c.max_conns_per_peer = 3;
    });
    // Three connections from this user on the unix socket…
    let mut kept: Vec<_> = (0..3).map(|_| srv.client()).collect();
    let e = dime::Client::connect(&srv.unix())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("Too many connections from user id") && e.contains("--max-conns-per-peer"),
        "{e}"
    );
    // …and three from 127.0.0.1, counted apart.
    let tcp: Vec<_> = (0..3)
        .map(|_| dime::Client::connect(&srv.addrs[1]).unwrap())
        .collect();
    let e = dime::Client::connect(&srv.addrs[1])
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("Too many connections from address 127.0.0.1"),
        "{e}"
    );
    // Those in carry on; one leaving makes room.
    kept[0].join(&["g"]).unwrap();
    kept.pop();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut again = loop {
        match dime::Client::connect(&srv.unix()) {
            Ok(c) => break c,
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("no room after a client left: {e}"),
        }
    };
    assert_eq!(again.devices().unwrap(), vec!["g".to_owned()]);
    drop(tcp);
}

#[test]
fn groups_per_client_are_capped() {
    let srv = TestServer::start_with(|c| c.max_groups = 4);
    let mut c = srv.client();
    c.join(&["a", "b", "c"]).unwrap();
    let e = c.join(&["d", "e"]).unwrap_err().to_string();
    assert!(
        e.contains("Too many groups") && e.contains("--max-groups"),
        "{e}"
    );
    // Nothing of the refused join happened; what fits still does.
    assert_eq!(c.devices().unwrap(), vec!["a", "b", "c"]);
    c.join(&["d"]).unwrap();
    c.leave(&["a"]).unwrap();
    c.join(&["e"]).unwrap();
}

#[test]
fn long_names_are_refused_in_every_service() {
    let srv = TestServer::start_with(|c| c.max_name = 16);
    let mut c = srv.client();
    let long = "n".repeat(17);
    let check = |r: Result<(), dime::Error>| {
        let e = r.expect_err("a long name must be refused").to_string();
        assert!(
            e.contains("Name too long") && e.contains("--max-name"),
            "{e}"
        );
    };
    check(c.join(&[&long]).map(drop));
    check(c.send(&long, "x", &Value::I64(1)).map(drop));
    check(c.share(&long).set("k", &Value::I64(1)).map(drop));
    check(c.space(&long).out(&[Value::I64(1)]).map(drop));
    let mut raw = srv.raw();
    raw.call(json!({"command": "handshake", "serialization": "dimeb"}));
    let r = raw.call(json!({"command": "provide", "function": long, "capacity": 1}));
    assert!(
        r["error"].as_str().unwrap().contains("Name too long"),
        "{r}"
    );
    // A name at the limit is fine, and the client carries on.
    c.join(&["n".repeat(16).as_str()]).unwrap();
    assert!(c.devices().unwrap().contains(&"n".repeat(16)));
}

#[test]
fn a_network_listener_without_tls_and_auth_refuses_to_start() {
    let out = Command::new(env!("CARGO_BIN_EXE_dime"))
        .args(["-l", "tcp:0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to listen on tcp:0.0.0.0:0")
            && err.contains("TLS")
            && err.contains("--auth")
            && err.contains("--insecure"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    std::fs::write(&users, "role r *\nu t r\n").unwrap();
    // With --auth but without TLS it still refuses, and says only that.
    let out = Command::new(env!("CARGO_BIN_EXE_dime"))
        .args(["-l", "ws:0.0.0.0:0", "--auth"])
        .arg(&users)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("wss:") && !err.contains("--auth FILE"),
        "{err}"
    );
    // A bad auth file stops the start with its line number.
    std::fs::write(&users, "u t nosuchrole\n").unwrap();
    let sock = dir.path().join("s.sock");
    let out = Command::new(env!("CARGO_BIN_EXE_dime"))
        .arg("-l")
        .arg(format!("unix:{}", sock.display()))
        .arg("--auth")
        .arg(&users)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 1: role 'nosuchrole' is not defined"),
        "{err}"
    );
}
