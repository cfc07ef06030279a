//! Authentication and permissions (`--auth`) against real servers: tokens
//! in the handshake, old clients refused with a clear error, the unix
//! peer's uid standing in for a token, anonymous listeners, every kind of
//! command refused with "not permitted" and nothing changed, and the auth
//! file re-read on SIGHUP.

mod common;

use common::{KillOnDrop, Raw, TestServer};
use dime::client::ConnectOptions;
use dime::pattern::Field;
use dime::rpc::{CallError, Rpc, RpcOptions};
use dime::transport::Address;
use dime::{Client, ElemKind, Error, Matrix, Value};
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const USERS: &str = "\
role sim     join:sim.* send:sim.* share:sim space:sim provide:sim.* call:sim.* stream:sim.*
role viewer  join:view share.read:sim space.read:sim call:sim.read
role admin   *
alice  tok-alice   sim
victor tok-victor  viewer
root   tok-root    admin
";

/// A server whose auth file is `users`, on a unix socket (and a second
/// unix listener letting anonymous clients in as viewers).
fn server(users: &str) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users");
    std::fs::write(&file, users).unwrap();
    let anon = Address::Unix(dir.path().join("anon.sock"));
    let srv = TestServer::start_with(move |c| {
        c.auth_file = Some(file);
        c.listen.push(anon.clone());
        c.anonymous = vec![(anon, vec!["viewer".into()])];
        c.handshake_timeout = Duration::from_millis(500);
    });
    // Keeps the auth file's directory alive with the server.
    std::mem::forget(dir);
    srv
}

fn as_user(srv: &TestServer, token: &str) -> Result<Client, Error> {
    let opts = ConnectOptions {
        token: Some(token.into()),
        ..Default::default()
    };
    Client::connect_with(&srv.unix(), opts)
}

fn raw(srv: &TestServer) -> Raw {
    srv.raw()
}

#[test]
fn old_clients_without_a_token_are_refused_clearly() {
    let srv = server(USERS);
    // DiME2's own handshake, as every original client sends it.
    let mut r = raw(&srv);
    let reply = r.call(json!({"command": "handshake", "serialization": "pickle", "tls": false}));
    assert_eq!(reply["status"], -1);
    assert_eq!(reply["denied"], true);
    let msg = reply["error"].as_str().unwrap();
    assert!(
        msg.contains("Authentication required") && msg.contains("DIME_TOKEN"),
        "{msg}"
    );
    assert!(r.is_closed());
    // Skipping the handshake gets the same.
    let mut r = raw(&srv);
    let reply = r.call(json!({"command": "join", "name": ["sim.a"]}));
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .contains("Authentication required")
    );
    assert!(r.is_closed());
    // Our own client says so too, as NotPermitted.
    match Client::connect_with(&srv.unix(), ConnectOptions::default()) {
        Err(Error::NotPermitted(m)) => assert!(m.contains("Authentication required"), "{m}"),
        other => panic!("expected NotPermitted, got {:?}", other.map(drop)),
    }
}

#[test]
fn a_wrong_token_is_refused_and_a_right_one_names_the_user() {
    let srv = server(USERS);
    match as_user(&srv, "tok-nobody") {
        Err(Error::NotPermitted(m)) => assert!(m.contains("token is not valid"), "{m}"),
        other => panic!("expected NotPermitted, got {:?}", other.map(drop)),
    }
    let mut r = raw(&srv);
    let reply =
        r.call(json!({"command": "handshake", "serialization": "dimeb", "token": "tok-alice"}));
    assert_eq!(reply["status"], 0);
    assert_eq!(reply["user"], "alice");
    assert!(
        reply["extensions"]
            .as_array()
            .unwrap()
            .contains(&json!("auth"))
    );
    let mut alice = as_user(&srv, "tok-alice").unwrap();
    assert!(alice.supports("auth"));
    alice.join(&["sim.a"]).unwrap();
}

/// Expects `NotPermitted` naming `what`.
fn refused<T: std::fmt::Debug>(r: Result<T, Error>, what: &str) {
    match r {
        Err(Error::NotPermitted(m)) => {
            assert!(m.starts_with("Not permitted: ") && m.contains(what), "{m}")
        }
        other => panic!("expected NotPermitted ({what}), got {other:?}"),
    }
}

#[test]
fn messaging_commands_outside_the_roles_are_refused_and_change_nothing() {
    let srv = server(USERS);
    let mut alice = as_user(&srv, "tok-alice").unwrap();
    let mut victor = as_user(&srv, "tok-victor").unwrap();
    let mut root = as_user(&srv, "tok-root").unwrap();
    // A join of several groups, one of them refused, joins none.
    refused(
        alice.join(&["sim.a", "secret"]),
        "user 'alice' may not join group 'secret'",
    );
    assert!(root.devices().unwrap().is_empty());
    alice.join(&["sim.a"]).unwrap();
    victor.join(&["view"]).unwrap();
    root.join(&["secret"]).unwrap();
    refused(
        victor.send("sim.a", "x", &Value::I64(1)),
        "may not send to group 'sim.a'",
    );
    refused(alice.send("secret", "x", &Value::I64(1)), "'secret'");
    refused(victor.broadcast("x", &Value::I64(1)), "may not broadcast");
    assert!(alice.sync(-1).unwrap().is_empty());
    assert!(root.sync(-1).unwrap().is_empty());
    // The refused clients carry on with what they may do.
    alice.send("sim.a", "ok", &Value::I64(2)).unwrap();
    assert_eq!(
        alice.sync(-1).unwrap(),
        vec![("ok".to_owned(), Value::I64(2))]
    );
    root.broadcast("all", &Value::I64(3)).unwrap();
    assert_eq!(
        victor.sync(-1).unwrap(),
        vec![("all".to_owned(), Value::I64(3))]
    );
}

#[test]
fn shares_and_tuple_spaces_are_guarded_per_name() {
    let srv = server(USERS);
    let mut alice = as_user(&srv, "tok-alice").unwrap();
    let mut victor = as_user(&srv, "tok-victor").unwrap();
    // alice writes the share and space she may.
    alice.share("sim").set("k", &Value::I64(1)).unwrap();
    alice.space("sim").out(&[Value::I64(1)]).unwrap();
    // victor may read them but not change or lock them.
    assert_eq!(victor.share("sim").get("k").unwrap(), Some(Value::I64(1)));
    refused(
        victor.share("sim").set("k", &Value::I64(2)),
        "user 'victor' may not write share 'sim'",
    );
    refused(victor.share("sim").try_lock(), "may not lock share 'sim'");
    refused(victor.share("sim").clear(), "may not write share 'sim'");
    refused(alice.share("other").get("k"), "may not read share 'other'");
    let any = [Field::Any];
    assert_eq!(victor.space("sim").count(&any).unwrap(), 1);
    refused(
        victor.space("sim").try_take(&any),
        "may not write tuple space 'sim'",
    );
    refused(
        victor.space("sim").out(&[Value::I64(2)]),
        "may not write tuple space 'sim'",
    );
    // Nothing changed: the value and the tuple are as alice left them.
    assert_eq!(alice.space("sim").count(&any).unwrap(), 1);
    assert_eq!(alice.share("sim").get("k").unwrap(), Some(Value::I64(1)));
}

#[test]
fn functions_and_streams_are_guarded_per_name() {
    let srv = server(USERS);
    let opts = |token: &str| RpcOptions {
        connect: ConnectOptions {
            token: Some(token.into()),
            ..Default::default()
        },
        ..RpcOptions::default()
    };
    let alice = Rpc::connect(&srv.unix(), opts("tok-alice")).unwrap();
    let victor = Rpc::connect(&srv.unix(), opts("tok-victor")).unwrap();
    let e = victor.provide("sim.read", 1).err().unwrap();
    assert!(
        matches!(e, Error::NotPermitted(ref m) if m.contains("may not provide function 'sim.read'")),
        "{e}"
    );
    alice.provide("sim.read", 1).unwrap();
    alice.provide("sim.secret", 1).unwrap();
    let long = Some(Duration::from_secs(10));
    // victor may call sim.read, not sim.secret; the refusal is the call's result.
    let f = victor.call("sim.secret", &Value::I64(1), None).unwrap();
    match f.result(long).unwrap() {
        Err(CallError::Refused(m)) => {
            assert!(m.contains("may not call function 'sim.secret'"), "{m}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let f = victor.call("sim.read", &Value::I64(4), None).unwrap();
    let call = alice.next_call(long).unwrap().unwrap();
    assert_eq!(call.function, "sim.read");
    alice.reply(call.id, &Value::I64(8)).unwrap();
    assert_eq!(f.result(long).unwrap(), Ok(Value::I64(8)));
    // Streams need their own permission.
    let s = victor.open_stream("sim.read", &Value::I64(1), Default::default(), None);
    let refusal = match s {
        Err(e) => e.to_string(),
        Ok(mut s) => format!("{:?}", s.next(long)),
    };
    assert!(
        refusal.contains("may not call as a stream function 'sim.read'"),
        "{refusal}"
    );
    // And nothing reached the provider.
    assert!(
        alice
            .next_call(Some(Duration::from_millis(200)))
            .unwrap()
            .is_none()
    );
}

/// A raw connection that handshook with `token`.
fn raw_as(srv: &TestServer, token: &str) -> Raw {
    let mut r = raw(srv);
    let reply = r.call(json!({"command": "handshake", "serialization": "dimeb", "token": token}));
    assert_eq!(reply["status"], 0, "{reply}");
    r
}

/// Expects a raw reply refusing with "Not permitted" and naming `what`.
fn denied(reply: &serde_json::Value, what: &str) {
    assert_eq!(reply["denied"], true, "{reply}");
    let m = reply["error"].as_str().unwrap();
    assert!(m.starts_with("Not permitted: ") && m.contains(what), "{m}");
}

#[test]
fn watches_need_the_permission_to_read_what_they_watch() {
    let srv = server(USERS);
    let mut victor = raw_as(&srv, "tok-victor");
    // Shares and spaces: their read permission.
    let r = victor.call(json!({"command": "share_watch", "share": "sim", "watch": 1}));
    assert_eq!(r["status"], 0, "{r}");
    let r = victor.call(json!({"command": "share_watch", "share": "other", "watch": 2}));
    denied(&r, "may not read share 'other'");
    let r = victor.call(json!({"command": "ts_watch", "space": "sim", "watch": 3}));
    assert_eq!(r["status"], 0, "{r}");
    let r = victor.call(json!({"command": "ts_watch", "space": "other", "watch": 4}));
    denied(&r, "may not read tuple space 'other'");
    // Groups: joining or sending to every group the prefix covers.
    let r = victor.call(json!({"command": "group_watch", "prefix": "sim.", "watch": 5}));
    denied(&r, "'sim.*'");
    let r = victor.call(json!({"command": "group_watch", "watch": 6}));
    denied(&r, "'*'");
    let mut alice = raw_as(&srv, "tok-alice");
    let r = alice.call(json!({"command": "group_watch", "prefix": "sim.", "watch": 7}));
    assert_eq!(r["status"], 0, "{r}");
    // Ending one's own watch needs nothing, and a refused watch was never made.
    let r = victor.call(json!({"command": "share_unwatch", "watch": 1}));
    assert_eq!(r["status"], 0, "{r}");
    let r = victor.call(json!({"command": "share_unwatch", "watch": 2}));
    assert_eq!(r["status"], -1, "{r}");
    assert!(r.get("denied").is_none(), "{r}");
    // alice sees her own join; victor's share watch saw nothing.
    let mut a = as_user(&srv, "tok-alice").unwrap();
    a.join(&["sim.w"]).unwrap();
    let (ev, _) = alice.recv();
    assert_eq!(
        (ev["event"].as_u64(), ev["group"].as_str()),
        (Some(7), Some("sim.w")),
        "{ev}"
    );
}

#[test]
fn lock_leases_need_the_lock_permission() {
    let srv = server(USERS);
    let mut alice = as_user(&srv, "tok-alice").unwrap();
    let mut share = alice.share("sim");
    share.lock(None).unwrap();
    share.renew(None, Some(Duration::from_secs(5))).unwrap();
    share.unlock().unwrap();
    let mut victor = raw_as(&srv, "tok-victor");
    let r = victor.call(json!({"command": "share_lock_renew", "share": "sim", "ttl": 5000}));
    denied(&r, "may not lock share 'sim'");
}

#[test]
fn admin_commands_under_auth_follow_the_roles() {
    let srv = server(USERS);
    // alice runs as the server's user on its unix socket, which without
    // --auth would make her an admin; with it, her roles decide.
    let mut alice = raw_as(&srv, "tok-alice");
    for command in ["inspect", "stats", "monitor"] {
        let r = alice.call(json!({"command": command}));
        denied(&r, "may not run the admin command");
    }
    let mut root = raw_as(&srv, "tok-root");
    let r = root.call(json!({"command": "inspect"}));
    assert_eq!(r["status"], 0, "{r}");
    assert!(r["clients"].as_array().unwrap().len() >= 2, "{r}");
    let r = root.call(json!({"command": "stats"}));
    assert_eq!(r["status"], 0, "{r}");
    // A client yet to authenticate is closed, admin command or not.
    let mut r = raw(&srv);
    let reply = r.call(json!({"command": "stats"}));
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .contains("Authentication required"),
        "{reply}"
    );
    assert!(r.is_closed());
}

#[test]
fn shared_memory_messages_are_checked_as_sends() {
    let srv = server(USERS);
    let mut alice = as_user(&srv, "tok-alice").unwrap();
    assert!(alice.uses_shm());
    let mut root = as_user(&srv, "tok-root").unwrap();
    root.join(&["secret"]).unwrap();
    alice.join(&["sim.big"]).unwrap();
    // 2 MB: through shared memory.
    let big = Value::from(Matrix::new(ElemKind::U8, vec![2 << 20], vec![7u8; 2 << 20]).unwrap());
    refused(
        alice.send("secret", "x", &big),
        "may not send to group 'secret'",
    );
    alice.send("sim.big", "x", &big).unwrap();
    let got = alice.sync(-1).unwrap();
    assert_eq!(got, vec![("x".to_owned(), big.clone())]);
    assert!(root.sync(-1).unwrap().is_empty());
}

#[test]
fn anonymous_listeners_and_unix_users_need_no_token() {
    let uid = unsafe { libc::getuid() };
    let srv = server(&format!("{USERS}me uid:{uid} admin\n"));
    // The unix peer's uid stands in for a token, even for an old client.
    let mut r = raw(&srv);
    let reply = r.call(json!({"command": "handshake", "serialization": "pickle", "tls": false}));
    assert_eq!(reply["status"], 0, "{reply}");
    assert_eq!(reply["user"], "me");
    // On the anonymous listener an old client gets the viewer role.
    let srv2 = server(USERS);
    let mut anon = Client::connect_with(&srv2.addrs[1], ConnectOptions::default()).unwrap();
    anon.join(&["view"]).unwrap();
    refused(
        anon.join(&["sim.a"]),
        "an anonymous client may not join group 'sim.a'",
    );
    // A token there still makes the client its user.
    let alice = ConnectOptions {
        token: Some("tok-alice".into()),
        ..Default::default()
    };
    let mut a = Client::connect_with(&srv2.addrs[1], alice.clone()).unwrap();
    a.join(&["sim.a"]).unwrap();
}

#[test]
fn a_client_that_never_authenticates_is_dropped() {
    let srv = server(USERS);
    let started = Instant::now();
    let mut r = raw(&srv);
    assert!(r.is_closed());
    assert!(started.elapsed() >= Duration::from_millis(400));
}

#[test]
fn without_auth_a_token_is_ignored() {
    let srv = TestServer::start();
    let mut c = as_user(&srv, "anything").unwrap();
    c.join(&["g"]).unwrap();
}

/// The `dime` binary with `args`; its unix address.
fn spawn_dime(dir: &Path, args: &[&str]) -> (KillOnDrop, String) {
    let sock = dir.join("d.sock");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dime"))
        .arg("-l")
        .arg(format!("unix:{}", sock.display()))
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("dime exited").unwrap();
        if let Some(a) = line.strip_prefix("dime: listening on ") {
            break a.to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (KillOnDrop(child), addr)
}

#[test]
fn the_auth_file_is_reread_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users");
    std::fs::write(&file, USERS).unwrap();
    let (server, addr) = spawn_dime(dir.path(), &["--auth", file.to_str().unwrap()]);
    let connect = |token: &str| {
        let o = ConnectOptions {
            token: Some(token.into()),
            ..Default::default()
        };
        Client::connect_with(&addr, o.clone())
    };
    let mut alice = connect("tok-alice").unwrap();
    let mut victor = connect("tok-victor").unwrap();
    refused(victor.join(&["sim.x"]), "'sim.x'");
    // victor becomes a sim, alice's token is withdrawn, a new user comes.
    std::fs::write(
        &file,
        USERS
            .replace("victor tok-victor  viewer", "victor tok-victor sim")
            .replace("alice  tok-alice   sim", "carol tok-carol sim"),
    )
    .unwrap();
    unsafe { libc::kill(server.0.id() as i32, libc::SIGHUP) };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut carol = loop {
        match connect("tok-carol") {
            Ok(c) => break c,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("the new auth file was never read: {e}"),
        }
    };
    carol.join(&["sim.c"]).unwrap();
    victor.join(&["sim.x"]).unwrap();
    assert!(
        alice.devices().is_err(),
        "alice's connection should be closed"
    );
    assert!(connect("tok-alice").is_err());
    // A broken file keeps the old one.
    std::fs::write(&file, "role broken fly\n").unwrap();
    unsafe { libc::kill(server.0.id() as i32, libc::SIGHUP) };
    std::thread::sleep(Duration::from_millis(300));
    connect("tok-carol").unwrap().devices().unwrap();
    victor.devices().unwrap();
}

#[test]
fn a_large_send_without_permission_is_never_relayed_while_it_arrives() {
    let srv = server(USERS);
    let hello = |token: &str| {
        let mut r = raw(&srv);
        let reply = r.call(json!({"command": "handshake", "serialization": "dimeb",
            "tls": false, "token": token, "extensions": ["cut_through"]}));
        assert_eq!(reply["status"], 0, "{reply}");
        r
    };
    let mut alice = hello("tok-alice");
    assert_eq!(
        alice.call(json!({"command": "join", "name": "sim.x"}))["status"],
        0
    );
    alice.send(
        json!({"command": "sync", "wait": true, "timeout": 1000}),
        &[],
    );
    // victor may not send to sim.x: half of a 4 MiB send (large enough to
    // be relayed while it arrives) reaches the broker, and nothing of it
    // reaches alice.
    let mut victor = hello("tok-victor");
    let header = json!({"command": "send", "name": "sim.x", "varname": "v",
        "serialization": "dimeb"});
    let bytes = common::frame(header.to_string().as_bytes(), &vec![1u8; 4 << 20]);
    let half = bytes.len() / 2;
    victor.send_bytes(&bytes[..half]);
    let (reply, _) = alice.recv();
    assert_eq!(
        reply["timeout"], true,
        "the message was relayed before it was permitted: {reply}"
    );
    victor.send_bytes(&bytes[half..]);
    let reply = victor.recv().0;
    assert_eq!(
        (&reply["status"], &reply["denied"]),
        (&json!(-1), &json!(true))
    );
    assert_eq!(alice.call(json!({"command": "sync"})), json!({"status": 0}));
}
