//! TLS listeners (`tls:`, `wss:`) against real servers: traffic both ways
//! (large messages too), certificate checks with one clear message,
//! client certificates, plain clients on a TLS port, remote calls over
//! TLS, silent handshakes dropped, and certificates reloaded on SIGHUP
//! without dropping connections.

mod common;

use common::certs::Pki;
use common::{KillOnDrop, TestServer};
use dime::client::ConnectOptions;
use dime::rpc::{Rpc, RpcOptions};
use dime::transport::{Address, TlsClientOptions};
use dime::{Client, Error, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A server with a unix listener, a `tls:` and a `wss:` one.
fn tls_server(pki: &Pki, client_ca: bool) -> TestServer {
    let files = pki.server_files(client_ca);
    TestServer::start_with(move |c| {
        c.listen.push(Address::Tls("127.0.0.1".into(), 0));
        c.listen.push(Address::Wss("127.0.0.1".into(), 0));
        c.tls = Some(files);
        c.handshake_timeout = Duration::from_millis(500);
    })
}

fn connect(addr: &str, tls: TlsClientOptions) -> Result<Client, Error> {
    let options = ConnectOptions {
        tls,
        ..Default::default()
    };
    Client::connect_with(addr, options)
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn messages_cross_tls_and_wss_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let srv = tls_server(&pki, false);
    let (tls, wss) = (srv.addrs[1].clone(), srv.addrs[2].clone());
    assert!(tls.starts_with("tls:127.0.0.1:") && wss.starts_with("wss:127.0.0.1:"));
    let mut a = connect(&tls, pki.trusting()).unwrap();
    let mut b = connect(&wss, pki.trusting()).unwrap();
    let mut plain = srv.client();
    b.join(&["b"]).unwrap();
    plain.join(&["p"]).unwrap();
    // Big enough to take many TLS records and fill socket buffers.
    let big = Value::String("x".repeat(3 << 20));
    a.send("b", "big", &big).unwrap();
    a.send("p", "small", &Value::I64(5)).unwrap();
    assert_eq!(b.sync(-1).unwrap(), vec![("big".to_owned(), big.clone())]);
    assert_eq!(
        plain.sync(-1).unwrap(),
        vec![("small".to_owned(), Value::I64(5))]
    );
    a.join(&["a"]).unwrap();
    b.send("a", "back", &big).unwrap();
    assert_eq!(a.sync(-1).unwrap(), vec![("back".to_owned(), big)]);
}

#[test]
fn an_unknown_certificate_authority_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let srv = tls_server(&pki, false);
    for addr in [&srv.addrs[1], &srv.addrs[2]] {
        let wrong = TlsClientOptions {
            ca: Some(pki.path("other-ca.pem")),
            ..Default::default()
        };
        let e = connect(addr, wrong).err().expect("must fail").to_string();
        let port = port_of(addr);
        assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");
        assert!(
            e.contains("not signed by a trusted certificate authority"),
            "{e}"
        );
        assert!(e.contains("DIME_TLS_CA"), "{e}");
    }
    // The server carries on.
    connect(&srv.addrs[1], pki.trusting())
        .unwrap()
        .devices()
        .unwrap();
}

#[test]
fn a_certificate_for_another_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let (cert, key) = (pki.path("elsewhere.pem"), pki.path("elsewhere.key"));
    let srv = TestServer::start_with(move |c| {
        c.listen.push(Address::Tls("127.0.0.1".into(), 0));
        c.tls = Some(dime::transport::TlsFiles {
            cert,
            key,
            client_ca: None,
        });
    });
    let e = connect(&srv.addrs[1], pki.trusting())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not valid for the host name"), "{e}");
}

#[test]
fn client_certificates_are_required_when_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let srv = tls_server(&pki, true);
    let tls = &srv.addrs[1];
    let e = connect(tls, pki.trusting()).err().unwrap().to_string();
    assert!(e.contains("client certificate"), "{e}");
    let stranger = TlsClientOptions {
        cert: Some(pki.path("stranger.pem")),
        key: Some(pki.path("stranger.key")),
        ..pki.trusting()
    };
    assert!(connect(tls, stranger).is_err());
    let good = TlsClientOptions {
        cert: Some(pki.path("client.pem")),
        key: Some(pki.path("client.key")),
        ..pki.trusting()
    };
    let mut c = connect(tls, good.clone()).unwrap();
    c.join(&["x"]).unwrap();
    assert_eq!(c.devices().unwrap(), vec!["x".to_owned()]);
    let mut w = connect(&srv.addrs[2], good).unwrap();
    assert_eq!(w.devices().unwrap(), vec!["x".to_owned()]);
}

#[test]
fn a_plain_client_on_a_tls_port_is_told_to_use_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let srv = tls_server(&pki, false);
    let port = port_of(&srv.addrs[1]);
    let e = Client::connect(&format!("tcp:127.0.0.1:{port}"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("connect with a tls: address"), "{e}");
    // A TLS client on a plain port gets a TLS error, not a hang.
    let e = connect(&srv.unix(), pki.trusting()).map(drop);
    assert!(e.is_ok(), "unix ignores TLS options");
    let plain = TestServer::start_with(|c| c.listen.push(Address::Tcp("127.0.0.1".into(), 0)));
    let port = port_of(&plain.addrs[1]);
    let e = connect(&format!("tls:127.0.0.1:{port}"), pki.trusting())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.starts_with(&format!(
            "cannot connect to tls:127.0.0.1:{port}: TLS with the server failed"
        )),
        "{e}"
    );
}

#[test]
fn remote_calls_run_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let srv = tls_server(&pki, false);
    let options = || RpcOptions {
        connect: ConnectOptions {
            tls: pki.trusting(),
            ..Default::default()
        },
        ..RpcOptions::default()
    };
    let provider = Rpc::connect(&srv.addrs[1], options()).unwrap();
    provider.provide("echo", 1).unwrap();
    let caller = Rpc::connect(&srv.addrs[1], options()).unwrap();
    let big = Value::String("y".repeat(1 << 20));
    let f = caller.call("echo", &big, None).unwrap();
    let call = provider
        .next_call(Some(Duration::from_secs(10)))
        .unwrap()
        .unwrap();
    provider.reply(call.id, &call.decode().unwrap()).unwrap();
    assert_eq!(f.result(Some(Duration::from_secs(10))).unwrap(), Ok(big));
    // A value large enough to be encoded piece by piece as it is written
    // (6 MB), from several threads at once, each waiting for its own
    // result (the waiting threads take turns reading the TLS session).
    let long = Some(Duration::from_secs(20));
    let matrix = |seed: f64| {
        let elems: Vec<u8> = (0..(6 << 20) / 8)
            .flat_map(|i| (seed + i as f64).to_le_bytes())
            .collect();
        Value::from(dime::Matrix::new(dime::ElemKind::F64, vec![(6 << 20) / 8], elems).unwrap())
    };
    std::thread::scope(|scope| {
        let callers: Vec<_> = (0..3)
            .map(|i| {
                let caller = &caller;
                scope.spawn(move || {
                    let v = matrix(f64::from(i));
                    let f = caller.call("echo", &v, None).unwrap();
                    assert_eq!(f.result(long).unwrap(), Ok(v));
                })
            })
            .collect();
        for _ in 0..3 {
            let call = provider.next_call(long).unwrap().unwrap();
            provider.reply(call.id, &call.decode().unwrap()).unwrap();
        }
        for c in callers {
            c.join().unwrap();
        }
    });
    // A stream over TLS.
    provider.provide("count", 1).unwrap();
    let mut s = caller
        .open_stream("count", &Value::I64(3), Default::default(), None)
        .unwrap();
    let call = provider.next_call(long).unwrap().unwrap();
    assert!(call.stream);
    for i in 0..3 {
        provider
            .stream_send_value(call.id, &Value::I64(i), long)
            .unwrap();
    }
    provider.stream_end(call.id).unwrap();
    let mut got = Vec::new();
    while let Some(v) = s.next_value(long).unwrap() {
        got.push(v);
    }
    assert_eq!(got, vec![Value::I64(0), Value::I64(1), Value::I64(2)]);
}

/// True when the server closes `s` within `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut b = [0u8; 64];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn silent_half_open_handshakes_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let srv = tls_server(&pki, false);
    let ws = TestServer::start_with(|c| {
        c.listen.push(Address::Ws("127.0.0.1".into(), 0));
        c.handshake_timeout = Duration::from_millis(500);
    });
    for addr in [&srv.addrs[1], &srv.addrs[2], &ws.addrs[1]] {
        let started = Instant::now();
        let mut s = TcpStream::connect(("127.0.0.1", port_of(addr))).unwrap();
        // Half a handshake, then silence.
        let half: &[u8] = if addr.starts_with("ws:") {
            b"GET / HTTP/1.1\r\nHost: x\r\n"
        } else {
            b"\x16\x03\x01"
        };
        s.write_all(half).unwrap();
        assert!(closed_within(&mut s, Duration::from_secs(5)), "{addr}");
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(400), "{addr}: {took:?}");
    }
    // A finished handshake is not dropped.
    let mut c = connect(&srv.addrs[1], pki.trusting()).unwrap();
    std::thread::sleep(Duration::from_millis(800));
    c.devices().unwrap();
}

/// The `dime` binary with `args`, and the addresses it reports.
fn spawn_dime(args: &[&str]) -> (KillOnDrop, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dime"))
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let n = args.iter().filter(|a| **a == "-l").count();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut addrs = Vec::new();
    while addrs.len() < n {
        let line = lines.next().expect("dime exited").unwrap();
        if let Some(a) = line.strip_prefix("dime: listening on ") {
            addrs.push(a.to_owned());
        }
    }
    // Keep reading stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (KillOnDrop(child), addrs)
}

#[test]
fn certificates_reload_on_sighup_without_dropping_connections() {
    let dir = tempfile::tempdir().unwrap();
    let old = Pki::new(&dir.path().join("old").tap_mkdir());
    let new = Pki::new(&dir.path().join("new").tap_mkdir());
    let live = dir.path().join("live").tap_mkdir();
    for f in ["server.pem", "server.key"] {
        std::fs::copy(old.path(f), live.join(f)).unwrap();
    }
    let sock = dir.path().join("d.sock");
    let (server, addrs) = spawn_dime(&[
        "-l",
        &format!("unix:{}", sock.display()),
        "-l",
        "tls:127.0.0.1:0",
        "--tls-cert",
        live.join("server.pem").to_str().unwrap(),
        "--tls-key",
        live.join("server.key").to_str().unwrap(),
    ]);
    let mut before = connect(&addrs[1], old.trusting()).unwrap();
    before.join(&["g"]).unwrap();
    for f in ["server.pem", "server.key"] {
        std::fs::copy(new.path(f), live.join(f)).unwrap();
    }
    unsafe { libc::kill(server.0.id() as i32, libc::SIGHUP) };
    // New connections get the new certificate once the reload is done.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut after = loop {
        match connect(&addrs[1], new.trusting()) {
            Ok(c) => break c,
            // The old certificate, until the reload is done.
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("the new certificate never came: {e}"),
        }
    };
    assert!(connect(&addrs[1], old.trusting()).is_err());
    // The connection made before the reload carries on.
    after.send("g", "v", &Value::I64(9)).unwrap();
    assert_eq!(
        before.sync(-1).unwrap(),
        vec![("v".to_owned(), Value::I64(9))]
    );
    drop(server);
}

/// `mkdir` in a chain.
trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}

impl TapMkdir for std::path::PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

/// `dime get` over `tls:`: pieces of a large file and whole small files
/// are read through the session (no splicing there) and arrive intact.
#[test]
fn files_download_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let srv = tls_server(&pki, false);
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let big: Vec<u8> = (0..(2u32 << 20) + 999).map(|i| (i % 253) as u8).collect();
    std::fs::write(root.join("big.bin"), &big).unwrap();
    std::fs::write(root.join("small.txt"), b"over tls").unwrap();
    let _server =
        dime::files::FileServer::start(&root, &srv.unix(), dime::files::ServeOptions::default())
            .unwrap();
    let dest = dir.path().join("dest");
    let out = Command::new(env!("CARGO_BIN_EXE_dime"))
        .args([
            "get",
            "-q",
            "--piece",
            "256K",
            "-a",
            &srv.addrs[1],
            "files:*",
        ])
        .arg(&dest)
        .env("DIME_TLS_CA", pki.path("ca.pem"))
        .env_remove("DIME_TOKEN")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(dest.join("big.bin")).unwrap(), big);
    assert_eq!(std::fs::read(dest.join("small.txt")).unwrap(), b"over tls");
}
