//! The `ws:` listener: DiME frames over WebSocket (one frame per binary
//! message from the server; from clients, the bytes of every data message,
//! text or binary, fragmented or not, read as one stream), and bad input
//! answered and closed without disturbing anyone else.

mod common;

use common::{KillOnDrop, TestServer, cpu_ticks, frame};
use dime::transport::Address;
use dime::{Client, Matrix, Value};
use serde_json::{Value as Json, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::frame::coding::{CloseCode, Data as OpData, OpCode};
use tungstenite::{Message, WebSocket};

/// A server with a unix listener (addrs[0]) and a ws one (addrs[1]).
fn ws_server(edit: impl FnOnce(&mut dime::server::Config)) -> TestServer {
    TestServer::start_with(|c| {
        c.listen.push(Address::Ws("127.0.0.1".into(), 0));
        edit(c);
    })
}

fn ws_addr(srv: &TestServer) -> String {
    let a = srv.addrs[1].clone();
    assert!(a.starts_with("ws:127.0.0.1:"), "{a}");
    a
}

fn host_port(srv: &TestServer) -> String {
    ws_addr(srv).strip_prefix("ws:").unwrap().to_owned()
}

/// A raw WebSocket client speaking DiME frame by frame.
fn ws_raw(srv: &TestServer) -> WebSocket<TcpStream> {
    let tcp = TcpStream::connect(host_port(srv)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let url = format!("ws://{}/", host_port(srv));
    tungstenite::client::client(url.as_str(), tcp).unwrap().0
}

/// Reads one binary message and checks it is exactly one DiME frame.
fn recv_frame(ws: &mut WebSocket<TcpStream>) -> (Json, Vec<u8>) {
    loop {
        match ws.read().unwrap() {
            Message::Binary(b) => {
                assert_eq!(&b[..4], b"DiME");
                let jl = u32::from_be_bytes(b[4..8].try_into().unwrap()) as usize;
                let pl = u32::from_be_bytes(b[8..12].try_into().unwrap()) as usize;
                assert_eq!(
                    b.len(),
                    12 + jl + pl,
                    "a message must hold exactly one frame"
                );
                let json = serde_json::from_slice(&b[12..12 + jl]).unwrap();
                return (json, b[12 + jl..].to_vec());
            }
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected a binary message, got {other:?}"),
        }
    }
}

fn send_frame(ws: &mut WebSocket<TcpStream>, json: Json, payload: &[u8]) {
    let f = frame(json.to_string().as_bytes(), payload);
    ws.send(Message::binary(f)).unwrap();
}

/// Reads until the server's close frame; returns its code and reason.
fn expect_close(ws: &mut WebSocket<TcpStream>) -> (CloseCode, String) {
    loop {
        match ws.read() {
            Ok(Message::Close(Some(cf))) => return (cf.code, cf.reason.to_string()),
            Ok(Message::Close(None)) => return (CloseCode::Status, String::new()),
            Ok(_) => {}
            Err(e) => panic!("connection ended without a close frame: {e}"),
        }
    }
}

/// A unix client that must still be served after someone misbehaved.
fn assert_bystander_served(srv: &TestServer) {
    let mut c = srv.client();
    c.join(&["bystander"]).unwrap();
    c.send("bystander", "x", &Value::I64(42)).unwrap();
    assert_eq!(c.sync(-1).unwrap(), vec![("x".to_owned(), Value::I64(42))]);
}

/// Reads a raw HTTP answer to the end of the stream.
fn http_answer(mut s: TcpStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn listener_reports_ws_address() {
    let srv = ws_server(|_| {});
    let a = ws_addr(&srv);
    assert_ne!(a, "ws:127.0.0.1:0");
}

#[test]
fn rust_client_over_ws_talks_to_unix_client() {
    let srv = ws_server(|_| {});
    let mut w = Client::connect(&ws_addr(&srv)).unwrap();
    let mut u = srv.client();
    w.join(&["web"]).unwrap();
    u.join(&["unix"]).unwrap();
    let elems: Vec<f64> = (0..100 * 100).map(|i| i as f64 * 0.5).collect();
    let m = Value::Matrix(Matrix::from_elems(vec![100, 100], &elems).unwrap());
    u.send("web", "m", &m).unwrap();
    assert_eq!(w.wait(None).unwrap(), 1);
    assert_eq!(w.sync(-1).unwrap(), vec![("m".to_owned(), m.clone())]);
    w.send("unix", "back", &Value::String("hé ✓".into()))
        .unwrap();
    assert_eq!(
        u.sync(-1).unwrap(),
        vec![("back".to_owned(), Value::String("hé ✓".into()))]
    );
    let mut devices = w.devices().unwrap();
    devices.sort();
    assert_eq!(devices, ["unix", "web"]);
}

#[test]
fn large_messages_cross_ws_both_ways() {
    // Larger than socket buffers and the server's per-event read budget,
    // so partial writes and input buffered inside the transport are used.
    let srv = ws_server(|_| {});
    let mut w = Client::connect(&ws_addr(&srv)).unwrap();
    let mut u = srv.client();
    w.join(&["g"]).unwrap();
    let elems: Vec<u8> = (0..24 << 20).map(|i: u32| (i % 251) as u8).collect();
    let big = Value::Matrix(Matrix::from_elems(vec![elems.len(), 1], &elems).unwrap());
    for _ in 0..2 {
        w.broadcast("big", &big).unwrap();
    }
    let got = u.sync(-1).unwrap();
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|(n, v)| n == "big" && *v == big));
    u.send("g", "big", &big).unwrap();
    u.send("g", "big", &big).unwrap();
    let got = w.sync(-1).unwrap();
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|(n, v)| n == "big" && *v == big));
}

#[test]
fn each_server_frame_is_one_binary_message() {
    let srv = ws_server(|_| {});
    let mut ws = ws_raw(&srv);
    send_frame(
        &mut ws,
        json!({"command": "handshake", "serialization": "dimeb", "tls": false}),
        b"",
    );
    assert_eq!(recv_frame(&mut ws).0["status"], 0);
    send_frame(&mut ws, json!({"command": "join", "name": ["g"]}), b"");
    assert_eq!(recv_frame(&mut ws).0["status"], 0);
    for i in 0..3u8 {
        send_frame(
            &mut ws,
            json!({"command": "send", "name": "g", "varname": format!("v{i}"), "serialization": "dimeb"}),
            &[0x07, i],
        );
        assert_eq!(recv_frame(&mut ws).0["status"], 0);
    }
    send_frame(&mut ws, json!({"command": "sync", "n": -1}), b"");
    for i in 0..3u8 {
        let (j, payload) = recv_frame(&mut ws);
        assert_eq!(j["varname"], format!("v{i}"));
        assert_eq!(payload, [0x07, i]);
    }
    assert_eq!(recv_frame(&mut ws).0, json!({"status": 0}));
}

#[test]
fn dime_frame_split_across_messages_and_frames_packed_in_one() {
    let srv = ws_server(|_| {});
    let mut ws = ws_raw(&srv);
    let hs = frame(
        json!({"command": "handshake", "serialization": "dimeb", "tls": false})
            .to_string()
            .as_bytes(),
        b"",
    );
    // Split inside the 12-byte prefix, then inside the JSON.
    ws.send(Message::binary(hs[..5].to_vec())).unwrap();
    ws.send(Message::binary(hs[5..20].to_vec())).unwrap();
    ws.send(Message::binary(hs[20..].to_vec())).unwrap();
    assert_eq!(recv_frame(&mut ws).0["status"], 0);
    // Two requests in one message: two replies, each its own message.
    let mut two = frame(br#"{"command":"join","name":["a"]}"#, b"");
    two.extend(frame(br#"{"command":"devices"}"#, b""));
    ws.send(Message::binary(two)).unwrap();
    assert_eq!(recv_frame(&mut ws).0["status"], 0);
    assert_eq!(recv_frame(&mut ws).0["devices"], json!(["a"]));
}

#[test]
fn many_frames_in_one_message_beyond_the_read_budget() {
    // The server stops reading a connection after a budget per event; the
    // rest of this one message is then held inside the transport, where no
    // readable event announces it, and must still be served.
    let srv = ws_server(|_| {});
    let mut ws = ws_raw(&srv);
    let mut batch = frame(
        br#"{"command":"handshake","serialization":"dimeb","tls":false}"#,
        b"",
    );
    batch.extend(frame(br#"{"command":"join","name":["g"]}"#, b""));
    let mut payload = vec![0x07u8; 10_000];
    payload[0] = 0x13; // any bytes will do: the server never decodes them
    let n = 1500;
    for _ in 0..n {
        batch.extend(frame(
            br#"{"command":"send","name":"g","varname":"x","serialization":"dimeb"}"#,
            &payload,
        ));
    }
    ws.send(Message::binary(batch)).unwrap();
    for _ in 0..n + 2 {
        assert_eq!(recv_frame(&mut ws).0["status"], 0);
    }
}

#[test]
fn plain_http_without_upgrade_gets_400() {
    let srv = ws_server(|_| {});
    let mut s = TcpStream::connect(host_port(&srv)).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let answer = http_answer(s);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("DiME WebSocket endpoint"), "{answer}");
    assert_bystander_served(&srv);
}

#[test]
fn garbage_bytes_get_400() {
    let srv = ws_server(|_| {});
    let mut s = TcpStream::connect(host_port(&srv)).unwrap();
    s.write_all(b"\x00\x01\x02\xffDiME garbage\r\n\r\n")
        .unwrap();
    let answer = http_answer(s);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_bystander_served(&srv);
}

/// Sends `bytes` as one WebSocket frame with `opcode` (tungstenite's own
/// text messages must be valid UTF-8; DiME bytes rarely are).
fn send_ws_frame(ws: &mut WebSocket<TcpStream>, opcode: OpData, fin: bool, bytes: &[u8]) {
    let f = Frame::message(bytes.to_vec(), OpCode::Data(opcode), fin);
    ws.send(Message::Frame(f)).unwrap();
}

/// A `send` to group `g` whose prefix and payload are not valid UTF-8.
fn non_utf8_send(varname: &str) -> Vec<u8> {
    let header =
        json!({"command": "send", "name": "g", "varname": varname, "serialization": "dimeb"});
    // dimeb: a 1x200 uint8 matrix of 0xFF bytes, 210 bytes in all, so the
    // prefix holds 0xD2 too: neither is valid UTF-8 where it stands.
    let mut payload = vec![0x17, 2, 0, 0, 0, 1, 0, 0, 0, 200];
    payload.extend(std::iter::repeat_n(0xFF, 200));
    frame(header.to_string().as_bytes(), &payload)
}

/// Handshakes and joins `g` over text messages only.
fn handshake_and_join_in_text(ws: &mut WebSocket<TcpStream>) {
    let hs = frame(
        br#"{"command":"handshake","serialization":"dimeb","tls":false}"#,
        b"",
    );
    send_ws_frame(ws, OpData::Text, true, &hs);
    assert_eq!(recv_frame(ws).0["status"], 0);
    let join = frame(br#"{"command":"join","name":["g"]}"#, b"");
    send_ws_frame(ws, OpData::Text, true, &join);
    assert_eq!(recv_frame(ws).0["status"], 0);
}

/// Syncs and checks the messages are `names`, each with `non_utf8_send`'s payload.
fn assert_synced(ws: &mut WebSocket<TcpStream>, names: &[&str]) {
    send_frame(ws, json!({"command": "sync", "n": -1}), b"");
    let want = non_utf8_send("");
    let want_payload = &want[want.len() - 210..];
    for name in names {
        let (j, payload) = recv_frame(ws);
        assert_eq!(j["varname"], *name);
        assert_eq!(payload, want_payload);
    }
    assert_eq!(recv_frame(ws).0, json!({"status": 0}));
}

#[test]
fn text_messages_carry_dime_frames_as_binary_ones_do() {
    let srv = ws_server(|_| {});
    let mut ws = ws_raw(&srv);
    handshake_and_join_in_text(&mut ws);
    let bytes = non_utf8_send("t");
    assert!(std::str::from_utf8(&bytes).is_err());
    send_ws_frame(&mut ws, OpData::Text, true, &bytes);
    assert_eq!(recv_frame(&mut ws).0, json!({"status": 0}));
    assert_synced(&mut ws, &["t"]);
    assert_bystander_served(&srv);
}

#[test]
fn several_dime_frames_in_one_text_message() {
    let srv = ws_server(|_| {});
    let mut ws = ws_raw(&srv);
    handshake_and_join_in_text(&mut ws);
    let mut three = non_utf8_send("a");
    three.extend(non_utf8_send("b"));
    three.extend(frame(br#"{"command":"devices"}"#, b""));
    send_ws_frame(&mut ws, OpData::Text, true, &three);
    assert_eq!(recv_frame(&mut ws).0, json!({"status": 0}));
    assert_eq!(recv_frame(&mut ws).0, json!({"status": 0}));
    assert_eq!(recv_frame(&mut ws).0["devices"], json!(["g"]));
    assert_synced(&mut ws, &["a", "b"]);
}

#[test]
fn one_dime_frame_across_fragments_and_messages_of_either_kind() {
    let srv = ws_server(|_| {});
    let mut ws = ws_raw(&srv);
    handshake_and_join_in_text(&mut ws);
    // One text message in three fragments, a ping between two of them,
    // the cuts inside the prefix and inside the payload.
    let f = non_utf8_send("fragmented");
    send_ws_frame(&mut ws, OpData::Text, false, &f[..6]);
    send_ws_frame(&mut ws, OpData::Continue, false, &f[6..100]);
    ws.send(Message::Ping(b"between".to_vec().into())).unwrap();
    send_ws_frame(&mut ws, OpData::Continue, true, &f[100..]);
    assert_eq!(recv_frame(&mut ws).0, json!({"status": 0}));
    // One DiME frame over a text message, a fragmented binary one and a
    // text one, with the next frame starting in the last of them.
    let f = non_utf8_send("spread");
    let mut tail = f[150..].to_vec();
    tail.extend(frame(br#"{"command":"devices"}"#, b""));
    send_ws_frame(&mut ws, OpData::Text, true, &f[..3]);
    send_ws_frame(&mut ws, OpData::Binary, false, &f[3..40]);
    send_ws_frame(&mut ws, OpData::Continue, true, &f[40..150]);
    send_ws_frame(&mut ws, OpData::Text, true, &tail);
    assert_eq!(recv_frame(&mut ws).0, json!({"status": 0}));
    assert_eq!(recv_frame(&mut ws).0["devices"], json!(["g"]));
    assert_synced(&mut ws, &["fragmented", "spread"]);
}

#[test]
fn a_text_message_that_is_not_dime_is_a_broken_frame() {
    // Bytes are bytes whatever the opcode: JSON alone has no DiME prefix.
    let srv = ws_server(|_| {});
    let mut ws = ws_raw(&srv);
    ws.send(Message::text(r#"{"command":"devices"}"#)).unwrap();
    let (reply, _) = recv_frame(&mut ws);
    assert_eq!(reply["status"], -1);
    assert!(
        reply["error"].as_str().unwrap().contains("bad magic"),
        "{reply}"
    );
    expect_close(&mut ws);
    assert_bystander_served(&srv);
}

#[test]
fn five_gigabyte_claim_gets_error_frame_then_close() {
    let srv = ws_server(|_| {});
    let mut other = Client::connect(&ws_addr(&srv)).unwrap();
    let mut ws = ws_raw(&srv);
    let mut claim = b"DiME".to_vec();
    claim.extend_from_slice(&2u32.to_be_bytes());
    claim.extend_from_slice(&u32::MAX.to_be_bytes());
    ws.send(Message::binary(claim)).unwrap();
    let (reply, _) = recv_frame(&mut ws);
    assert_eq!(reply["status"], -1);
    assert!(
        reply["error"].as_str().unwrap().contains("too large"),
        "{reply}"
    );
    expect_close(&mut ws);
    other.join(&["still"]).unwrap();
    assert_eq!(other.devices().unwrap(), ["still"]);
}

#[test]
fn oversized_websocket_message_is_closed() {
    let srv = ws_server(|c| c.max_message = 1000);
    let mut ws = ws_raw(&srv);
    // Not even a DiME frame is needed: the WebSocket layer refuses first.
    let _ = ws.send(Message::binary(vec![0u8; 5000]));
    let (code, reason) = expect_close(&mut ws);
    assert_eq!(code, CloseCode::Size, "{reason}");
    assert_bystander_served(&srv);
}

#[test]
fn origin_allow_list() {
    let srv = ws_server(|c| c.ws_origins = vec!["http://good.example".into()]);
    let handshake = |origin: Option<&str>| {
        let mut s = TcpStream::connect(host_port(&srv)).unwrap();
        let mut req = format!(
            "GET / HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
            host_port(&srv)
        );
        if let Some(o) = origin {
            req.push_str(&format!("Origin: {o}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        line
    };
    assert!(handshake(Some("http://evil.example")).starts_with("HTTP/1.1 403"));
    assert!(handshake(Some("http://good.example")).starts_with("HTTP/1.1 101"));
    assert!(handshake(None).starts_with("HTTP/1.1 101"));
    assert_bystander_served(&srv);
}

#[test]
fn clients_closing_mid_handshake_do_not_busy_loop() {
    // A separate server process, so its CPU time is its own.
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("d.sock");
    let mut child = KillOnDrop(
        std::process::Command::new(env!("CARGO_BIN_EXE_dime"))
            .args(["-l", &format!("unix:{}", sock.display()), "-l", "ws:0"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stderr = BufReader::new(child.0.stderr.take().unwrap());
    let mut ws = None;
    let mut line = String::new();
    while ws.is_none() {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "server exited");
        ws = line
            .trim()
            .strip_prefix("dime: listening on ws:")
            .map(str::to_owned);
    }
    let hp = ws.unwrap();
    // Closed before any byte, mid request line, and mid headers.
    drop(TcpStream::connect(&hp).unwrap());
    let mut s = TcpStream::connect(&hp).unwrap();
    s.write_all(b"GET / HT").unwrap();
    drop(s);
    let mut s = TcpStream::connect(&hp).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
        .unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let _ = http_answer(s);
    // A client still mid-handshake, silent, stays connected meanwhile.
    let mut idle = TcpStream::connect(&hp).unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    let before = cpu_ticks(child.0.id());
    let start = Instant::now();
    std::thread::sleep(Duration::from_millis(1000));
    let used = cpu_ticks(child.0.id()) - before;
    let ticks_per_sec = 100; // USER_HZ on Linux
    let elapsed = start.elapsed().as_secs_f64();
    assert!(
        (used as f64) < 0.2 * elapsed * ticks_per_sec as f64,
        "server used {used} ticks in {elapsed:.2}s: busy loop"
    );
    let mut c = Client::connect(&format!("ws:{hp}")).unwrap();
    c.join(&["alive"]).unwrap();
    assert_eq!(c.devices().unwrap(), ["alive"]);
    drop(idle);
}
