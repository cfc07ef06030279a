//! The key-value driver the share benches share: pre-encoded SET/GET
//! requests for dime (DiME) and Redis (RESP), and one single-threaded
//! driver measuring either server the same way.

use dime::codec::dimeb;
use dime::wire::encode_head;
use dime::{Matrix, Value};
use polling::{Event, Events, PollMode, Poller};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// One measurement: throughput and median latency.
pub struct Cell {
    /// Operations per second.
    pub ops: f64,
    /// Median latency, µs.
    pub p50_us: f64,
}

/// Runs per cell and server.
pub const REPEATS: usize = 3;

impl Cell {
    /// The median ops/s and the median p50 of several runs.
    pub fn median(runs: Vec<Cell>) -> Cell {
        let mid = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        Cell {
            ops: mid(runs.iter().map(|c| c.ops).collect()),
            p50_us: mid(runs.iter().map(|c| c.p50_us).collect()),
        }
    }
}

/// One request frame per operation, pre-encoded: the driver measures the
/// server, not our encoder.
pub fn request(op: &str, value_len: usize) -> Vec<u8> {
    // A uint8 vector whose dimeb encoding is exactly `value_len` bytes.
    let elems = value_len - 6;
    let v = Value::Matrix(Matrix::from_elems(vec![elems], &vec![7u8; elems]).unwrap());
    let payload = dimeb::encode(&v).unwrap();
    assert_eq!(payload.len(), value_len);
    match op {
        "set" => {
            let json = br#"{"command":"share_set","share":"bench","key":"key:0"}"#;
            let mut f = encode_head(json, payload.len());
            f.extend_from_slice(&payload);
            f
        }
        _ => encode_head(
            br#"{"command":"share_get","share":"bench","key":"key:0"}"#,
            0,
        ),
    }
}

/// Length of the first complete reply in `buf`, if there is one.
pub type Framer = fn(&[u8]) -> Option<usize>;

pub fn dime_reply(buf: &[u8]) -> Option<usize> {
    if buf.len() < 12 {
        return None;
    }
    assert_eq!(&buf[..4], b"DiME");
    let jl = u32::from_be_bytes(buf[4..8].try_into().unwrap()) as usize;
    let pl = u32::from_be_bytes(buf[8..12].try_into().unwrap()) as usize;
    assert!(!buf[12..].starts_with(br#"{"error""#), "server error");
    (buf.len() >= 12 + jl + pl).then_some(12 + jl + pl)
}

pub fn resp_reply(buf: &[u8]) -> Option<usize> {
    let line_end = buf.windows(2).position(|w| w == b"\r\n")?;
    match buf[0] {
        b'+' => Some(line_end + 2),
        b'$' => {
            let n: usize = std::str::from_utf8(&buf[1..line_end])
                .unwrap()
                .parse()
                .unwrap();
            let total = line_end + 2 + n + 2;
            (buf.len() >= total).then_some(total)
        }
        _ => panic!("redis error: {}", String::from_utf8_lossy(&buf[..line_end])),
    }
}

pub fn resp_request(op: &str, value_len: usize) -> Vec<u8> {
    match op {
        "set" => {
            let mut r = format!("*3\r\n$3\r\nSET\r\n$5\r\nkey:0\r\n${value_len}\r\n").into_bytes();
            r.extend(std::iter::repeat_n(7u8, value_len));
            r.extend_from_slice(b"\r\n");
            r
        }
        _ => b"*2\r\n$3\r\nGET\r\n$5\r\nkey:0\r\n".to_vec(),
    }
}

/// Drives `clients` connections, one request in flight each, until `total`
/// replies have arrived; the same driver serves both servers.
pub fn drive(addr: &str, clients: usize, total: usize, frame: &[u8], reply: Framer) -> Cell {
    let poller = Poller::new().unwrap();
    let mut conns: Vec<(UnixStream, Vec<u8>, Instant)> = (0..clients)
        .map(|_| {
            let s = UnixStream::connect(addr).unwrap();
            s.set_nonblocking(true).unwrap();
            (s, Vec::with_capacity(64 << 10), Instant::now())
        })
        .collect();
    // Level-triggered, so no re-arming syscall per reply: the driver
    // should cost as little as possible next to the servers it measures.
    for (i, c) in conns.iter().enumerate() {
        unsafe {
            poller
                .add_with_mode(&c.0, Event::readable(i), PollMode::Level)
                .unwrap()
        };
    }
    let send = |s: &mut UnixStream| {
        // Requests are small or the socket drains fast; finish the write.
        let mut off = 0;
        while off < frame.len() {
            match s.write(&frame[off..]) {
                Ok(n) => off += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
    };
    let mut lat = Vec::with_capacity(total);
    let mut sent = 0;
    let start = Instant::now();
    for c in conns.iter_mut() {
        c.2 = Instant::now();
        send(&mut c.0);
        sent += 1;
    }
    let mut events = Events::new();
    let mut chunk = vec![0u8; 1 << 20];
    while lat.len() < total {
        events.clear();
        poller
            .wait(&mut events, Some(Duration::from_secs(10)))
            .unwrap();
        for ev in events.iter() {
            let c = &mut conns[ev.key];
            // One read: a short one drained the socket, and anything left
            // is reported again by the level-triggered poller.
            match c.0.read(&mut chunk) {
                Ok(0) => panic!("server closed"),
                Ok(n) => c.1.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
            while let Some(n) = reply(&c.1) {
                c.1.drain(..n);
                lat.push(c.2.elapsed().as_nanos() as u64);
                if sent < total {
                    c.2 = Instant::now();
                    send(&mut c.0);
                    sent += 1;
                }
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    for c in &conns {
        poller.delete(&c.0).unwrap();
    }
    lat.sort_unstable();
    let cell = Cell {
        ops: total as f64 / secs,
        p50_us: lat[lat.len() / 2] as f64 / 1e3,
    };
    // DIME_BENCH_VERBOSE=1 shows every run, with its tail, to tell a slow
    // server from a stalled machine.
    if std::env::var_os("DIME_BENCH_VERBOSE").is_some() {
        println!(
            "    run on {addr}: {:.0} ops/s, p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
            cell.ops,
            cell.p50_us,
            lat[lat.len() * 99 / 100] as f64 / 1e3,
            lat[lat.len() - 1] as f64 / 1e3
        );
    }
    cell
}
