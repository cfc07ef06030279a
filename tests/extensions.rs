//! Our handshake reply announces what the server understands beyond DiME2
//! (docs/protocol-extensions.md), listed by the registered services, and
//! our client records it.

mod common;

use common::TestServer;
use dime::proto::extensions;
use serde_json::json;

/// Every extension this server has, in registration order.
const ALL: [&str; 12] = [
    "wait_timeout",
    "sync_wait",
    "send_receive",
    "dimeb_layout",
    "shm",
    "cut_through",
    "auth",
    "share",
    "space",
    "rpc",
    "stream",
    "stream_batch",
];

#[test]
fn the_handshake_lists_every_service_extension() {
    let srv = TestServer::start();
    let mut raw = srv.raw();
    let reply = raw.call(json!({"command": "handshake", "serialization": "dimeb", "tls": false}));
    assert_eq!(
        reply,
        json!({"status": 0, "serialization": "dimeb", "tls": false, "extensions": ALL})
    );
    // The names the clients check are the ones the server announces.
    assert_eq!(
        [
            extensions::WAIT_TIMEOUT,
            extensions::SYNC_WAIT,
            extensions::SEND_RECEIVE,
            extensions::DIMEB_LAYOUT,
            extensions::SHM,
            extensions::CUT_THROUGH,
            extensions::AUTH,
            extensions::SHARE,
            extensions::SPACE,
            extensions::RPC,
            extensions::STREAM,
            extensions::STREAM_BATCH,
        ],
        ALL
    );
}

#[test]
fn the_client_records_them() {
    let srv = TestServer::start();
    let mut c = srv.client();
    assert_eq!(c.server_extensions().unwrap(), ALL);
    for name in ALL {
        assert!(c.supports(name), "{name}");
        c.require(name, name).unwrap();
    }
    assert!(!c.supports("teleportation"));
    let err = c.require("teleportation", "teleporting").unwrap_err();
    assert!(matches!(err, dime::Error::Unsupported(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "this server does not support teleporting (its handshake does not announce the \
         \"teleportation\" extension)"
    );
    // With everything announced, the extensions are used: a share works.
    c.share("s").set("k", &dime::Value::I64(1)).unwrap();
}
