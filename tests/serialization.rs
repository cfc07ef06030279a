//! The handshake's serialization negotiation (docs/protocol.md §3).

mod common;

use common::TestServer;
use serde_json::json;

fn hs(s: &str) -> serde_json::Value {
    json!({"command": "handshake", "serialization": s, "tls": false})
}

/// Our handshake reply: DiME2's, plus the extensions we announce
/// (docs/protocol-extensions.md).
fn hs_reply(s: &str) -> serde_json::Value {
    json!({"status": 0, "serialization": s, "tls": false,
           "extensions": ["wait_timeout", "sync_wait", "send_receive", "dimeb_layout", "shm",
                          "cut_through", "auth", "share", "space", "rpc", "stream",
                          "stream_batch"]})
}

#[test]
fn first_client_sets_it_and_a_conflict_switches_everyone_to_dimeb() {
    let srv = TestServer::start();
    let mut a = srv.raw();
    let mut b = srv.raw();
    let mut c = srv.raw();
    assert_eq!(a.call(hs("pickle")), hs_reply("pickle"));
    assert_eq!(b.call(hs("pickle")), hs_reply("pickle"));
    assert_eq!(c.call(hs("matlab")), hs_reply("dimeb"));
    let meta =
        json!({"status": 1, "meta": true, "command": "reregister", "serialization": "dimeb"});
    assert_eq!(a.recv().0, meta);
    assert_eq!(b.recv().0, meta);
    // The switcher itself gets no meta message: its next reply is its own.
    assert_eq!(
        c.call(json!({"command": "devices"})),
        json!({"status": 0, "devices": []})
    );
}

#[test]
fn dimeb_and_json_stay_put() {
    let srv = TestServer::start();
    let mut a = srv.raw();
    let mut b = srv.raw();
    assert_eq!(a.call(hs("json"))["serialization"], "json");
    assert_eq!(b.call(hs("pickle"))["serialization"], "json");
    // No meta message for a.
    assert_eq!(a.call(json!({"command": "devices"}))["status"], 0);
}

#[test]
fn extra_handshake_fields_are_accepted_and_not_echoed() {
    let srv = TestServer::start();
    let mut a = srv.raw();
    let reply = a.call(json!({"command": "handshake", "serialization": "dimeb", "tls": false, "capabilities": ["shm"]}));
    assert_eq!(reply, hs_reply("dimeb"));
}
