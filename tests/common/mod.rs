//! Shared helpers for integration tests: an in-process server on a
//! temporary unix socket, and a raw protocol connection.
#![allow(dead_code)]

use dime::Client;
use dime::server::{Config, Server, ShutdownHandle};
use dime::transport::Address;
use serde_json::Value as Json;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::thread::JoinHandle;
use std::time::Duration;

/// A server running on its own thread; stopped on drop.
pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub addrs: Vec<String>,
    handle: ShutdownHandle,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    /// A server listening on a fresh unix socket.
    pub fn start() -> TestServer {
        TestServer::start_with(|_| {})
    }

    /// A server with a customised config (the unix listener is preset).
    pub fn start_with(edit: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            listen: vec![Address::Unix(dir.path().join("dime.sock"))],
            ..Config::default()
        };
        edit(&mut config);
        let mut server = Server::bind(config).expect("bind");
        let addrs = server.local_addrs();
        let handle = server.shutdown_handle();
        let thread = std::thread::spawn(move || server.run().expect("server loop"));
        TestServer {
            dir,
            addrs,
            handle,
            thread: Some(thread),
        }
    }

    /// The unix address.
    pub fn unix(&self) -> String {
        self.addrs[0].clone()
    }

    /// A connected, handshaken Rust client.
    pub fn client(&self) -> Client {
        Client::connect(&self.unix()).expect("connect")
    }

    /// A raw protocol connection (no handshake).
    pub fn raw(&self) -> Raw {
        Raw::connect(self.unix().strip_prefix("unix:").unwrap())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.handle.shutdown();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

/// A DiME connection spoken byte by byte.
pub struct Raw {
    pub stream: UnixStream,
}

impl Raw {
    pub fn connect(path: &str) -> Raw {
        let stream = UnixStream::connect(path).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Raw { stream }
    }

    /// Writes one frame.
    pub fn send(&mut self, json: Json, payload: &[u8]) {
        let j = json.to_string();
        self.send_bytes(&frame(j.as_bytes(), payload));
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads one frame, or None at end of stream.
    pub fn try_recv(&mut self) -> Option<(Json, Vec<u8>)> {
        let (header, payload) = self.try_recv_raw()?;
        Some((serde_json::from_slice(&header).unwrap(), payload))
    }

    /// Reads one frame's header bytes, unparsed, and payload; None at end
    /// of stream.
    pub fn try_recv_raw(&mut self) -> Option<(Vec<u8>, Vec<u8>)> {
        let mut prefix = [0u8; 12];
        if self.stream.read_exact(&mut prefix).is_err() {
            return None;
        }
        assert_eq!(&prefix[..4], b"DiME");
        let jl = u32::from_be_bytes(prefix[4..8].try_into().unwrap()) as usize;
        let pl = u32::from_be_bytes(prefix[8..12].try_into().unwrap()) as usize;
        let mut body = vec![0u8; jl + pl];
        self.stream.read_exact(&mut body).unwrap();
        let payload = body.split_off(jl);
        Some((body, payload))
    }

    pub fn recv(&mut self) -> (Json, Vec<u8>) {
        self.try_recv().expect("server closed the connection")
    }

    /// Sends a payload-less request and returns the reply JSON.
    pub fn call(&mut self, json: Json) -> Json {
        self.send(json, &[]);
        self.recv().0
    }

    /// True once the server has closed this connection.
    pub fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.stream.read(&mut b), Ok(0) | Err(_))
    }
}

/// Encodes a frame.
pub fn frame(json: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut v = b"DiME".to_vec();
    v.extend_from_slice(&(json.len() as u32).to_be_bytes());
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(json);
    v.extend_from_slice(payload);
    v
}

/// User + system CPU time of a process, in clock ticks (USER_HZ, 100/s).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised name; utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// A child process killed when dropped, so a failing test leaves nothing
/// running (a leftover server would also keep the test's output pipe open).
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub mod certs;
pub mod soak;
