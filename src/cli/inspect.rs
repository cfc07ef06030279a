//! `dime ls`, `dime stats`, `dime monitor`, `dime replay`, `dime send`,
//! `dime recv`: the broker seen from a shell (docs/admin.md). Errors are
//! one line on stderr and exit status 1.

use super::values;
use clap::Args;
use dime::Client;
use dime::transport::{self, Address, Transport};
use dime::wire::{FrameReader, encode_head};
use serde_json::{Map, Value as Json, json};
use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

/// Where the broker is, when not given.
const DEFAULT_ADDRESS: &str = "unix:/tmp/dime.sock";

/// `dime ls`.
#[derive(Args, Debug)]
pub struct LsArgs {
    /// The broker (default unix:/tmp/dime.sock).
    #[arg(default_value = DEFAULT_ADDRESS)]
    address: String,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

/// `dime stats`.
#[derive(Args, Debug)]
pub struct StatsArgs {
    /// The broker (default unix:/tmp/dime.sock).
    #[arg(default_value = DEFAULT_ADDRESS)]
    address: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// `dime monitor`.
#[derive(Args, Debug)]
pub struct MonitorArgs {
    /// Only messages sent to these groups (broadcasts are always shown).
    groups: Vec<String>,
    /// The broker.
    #[arg(short = 'a', long, default_value = DEFAULT_ADDRESS)]
    address: String,
    /// Also write every message, payload included, to FILE (for `dime replay`).
    #[arg(long, value_name = "FILE")]
    record: Option<std::path::PathBuf>,
    /// Stop after this many messages.
    #[arg(short = 'n', long)]
    count: Option<u64>,
}

/// `dime replay`.
#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// A file written by `dime monitor --record`.
    file: std::path::PathBuf,
    /// The broker to send the messages to.
    #[arg(short = 'a', long, default_value = DEFAULT_ADDRESS)]
    address: String,
    /// Keep the recorded pauses between messages.
    #[arg(long)]
    realtime: bool,
}

/// `dime send`.
#[derive(Args, Debug)]
pub struct SendArgs {
    /// The group to send to; `--broadcast` sends to every client instead.
    #[arg(required_unless_present = "broadcast")]
    group: Option<String>,
    /// The variable's name.
    #[arg(long = "as", value_name = "VARNAME", default_value = "x")]
    varname: String,
    /// The value as JSON (numbers are doubles, arrays of numbers matrices).
    #[arg(long, conflicts_with = "npy")]
    value: Option<String>,
    /// The value from a .npy file.
    #[arg(long, value_name = "FILE")]
    npy: Option<std::path::PathBuf>,
    /// Send to every other client.
    #[arg(long)]
    broadcast: bool,
    /// The broker.
    #[arg(short = 'a', long, default_value = DEFAULT_ADDRESS)]
    address: String,
}

/// `dime recv`.
#[derive(Args, Debug)]
pub struct RecvArgs {
    /// Join this group first (else only broadcasts arrive).
    group: Option<String>,
    /// Give up after this many seconds (default: wait forever).
    #[arg(short = 't', long)]
    timeout: Option<f64>,
    /// Print `{"varname":…,"value":…}` JSON.
    #[arg(long)]
    json: bool,
    /// Messages to wait for.
    #[arg(short = 'n', long, default_value_t = 1)]
    count: usize,
    /// The broker.
    #[arg(short = 'a', long, default_value = DEFAULT_ADDRESS)]
    address: String,
}

/// Prints `msg` as the one error line and fails.
fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("dime: {msg}");
    ExitCode::FAILURE
}

fn connect(address: &str) -> Result<Client, String> {
    Client::connect(address).map_err(|e| e.to_string())
}

/// Runs an admin command; its reply without `status`.
fn admin(address: &str, command: &str) -> Result<Map<String, Json>, String> {
    let mut c = connect(address)?;
    let mut reply = c
        .request(json!({"command": command}))
        .map_err(|e| e.to_string())?;
    reply.remove("status");
    Ok(reply)
}

/// `dime ls`.
pub fn ls(a: LsArgs) -> ExitCode {
    let r = match admin(&a.address, "inspect") {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    if a.json {
        println!("{}", Json::Object(r));
        return ExitCode::SUCCESS;
    }
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let empty = Vec::new();
    let clients = r["clients"].as_array().unwrap_or(&empty);
    println!("CLIENTS ({})", clients.len());
    println!(
        "  {:>6}  {:<22} {:>9}  {:>7} {:>10}  GROUPS",
        "ID", "PEER", "SINCE", "QUEUED", "BYTES"
    );
    for c in clients {
        let groups: Vec<&str> = c["groups"]
            .as_array()
            .map(|g| g.iter().filter_map(Json::as_str).collect())
            .unwrap_or_default();
        let role = if c["monitor"] == true {
            " (monitor)"
        } else {
            ""
        };
        println!(
            "  {:>6}  {:<22} {:>9}  {:>7} {:>10}  {}{role}",
            c["id"],
            c["peer"].as_str().unwrap_or(""),
            ago(now - c["since"].as_f64().unwrap_or(now)),
            c["queued"],
            c["queued_bytes"],
            groups.join(",")
        );
    }
    let services = &r["services"];
    section(
        "GROUPS",
        &services["messaging"]["groups"],
        |(name, members)| format!("  {name}: {} member(s) {members}", len(members)),
    );
    section("SHARES", &services["shares"], |(name, s)| {
        let display = if name.is_empty() { "(default)" } else { name };
        format!(
            "  {display}: {} key(s), {} bytes, lock {}, {} lock waiter(s), {} key lock(s)",
            s["keys"],
            s["bytes"],
            if s["lock"].is_null() {
                "free".to_owned()
            } else {
                format!("held by {}", s["lock"])
            },
            s["lock_waiters"],
            s["key_locks"].as_object().map_or(0, Map::len),
        )
    });
    section("TUPLE SPACES", &services["spaces"], |(name, s)| {
        let display = if name.is_empty() { "(default)" } else { name };
        format!(
            "  {display}: {} tuple(s), {} waiter(s)",
            s["tuples"], s["waiters"]
        )
    });
    section("FUNCTIONS", &services["rpc"], |(name, f)| {
        let providers: Vec<String> = f["providers"]
            .as_array()
            .map(|p| {
                p.iter()
                    .map(|p| {
                        format!(
                            "client {} ({}/{})",
                            p["client"], p["running"], p["capacity"]
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        format!(
            "  {name}: {} queued, {} stream(s), providers: {}",
            f["queued"],
            f["streams"],
            if providers.is_empty() {
                "none".to_owned()
            } else {
                providers.join(", ")
            }
        )
    });
    ExitCode::SUCCESS
}

fn len(j: &Json) -> usize {
    j.as_array().map_or(0, Vec::len)
}

/// Prints a titled section of a JSON object's entries (nothing if empty).
fn section(title: &str, obj: &Json, line: impl Fn((&String, &Json)) -> String) {
    let Some(map) = obj.as_object().filter(|m| !m.is_empty()) else {
        return;
    };
    println!("{title} ({})", map.len());
    for entry in map {
        println!("{}", line(entry));
    }
}

/// "5s", "3m", "2h", "4d".
fn ago(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// `dime stats`.
pub fn stats(a: StatsArgs) -> ExitCode {
    let r = match admin(&a.address, "stats") {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    if a.json {
        println!("{}", Json::Object(r));
        return ExitCode::SUCCESS;
    }
    println!(
        "uptime {:.0} s; clients {} now, {} at most, {} accepted",
        r["uptime_s"].as_f64().unwrap_or(0.0),
        r["clients"],
        r["peak_clients"],
        r["accepted"]
    );
    println!(
        "requests {} ({} failed); messages relayed {}; bytes in {}, out {}",
        r["requests"], r["errors"], r["messages"], r["bytes_in"], r["bytes_out"]
    );
    let h = &r["handling_us"];
    println!(
        "handling time (µs, bucket bounds): p50 ≤ {}, p90 ≤ {}, p99 ≤ {}, max ≤ {}",
        h["p50"], h["p90"], h["p99"], h["max_bucket"]
    );
    if let Some(per) = r["commands"].as_object() {
        println!("  {:<16} {:>12} {:>8}", "COMMAND", "REQUESTS", "ERRORS");
        for (name, c) in per {
            println!("  {name:<16} {:>12} {:>8}", c["requests"], c["errors"]);
        }
    }
    ExitCode::SUCCESS
}

/// A connection read frame by frame (for the pushes `monitor` sends).
struct RawConn {
    stream: Box<dyn Transport>,
    reader: FrameReader,
}

impl RawConn {
    fn open(address: &str) -> Result<RawConn, String> {
        let addr = Address::parse(address)?;
        let stream = transport::connect(&addr).map_err(|e| e.to_string())?;
        let mut c = RawConn {
            stream,
            reader: FrameReader::new(u64::MAX),
        };
        c.request(&json!({"command": "handshake", "serialization": "dimeb"}))?;
        Ok(c)
    }

    fn write(&mut self, head: &Json) -> Result<(), String> {
        let frame = encode_head(head.to_string().as_bytes(), 0);
        self.stream.write_all(&frame).map_err(|e| e.to_string())
    }

    /// The next frame: its header and the whole frame's bytes.
    fn next(&mut self) -> Result<(Json, Vec<u8>), String> {
        loop {
            if let Some(f) = self.reader.next_frame().map_err(|e| e.to_string())? {
                let head: Json = serde_json::from_slice(f.json())
                    .map_err(|e| format!("bad JSON from the broker: {e}"))?;
                let mut bytes = f.head.clone();
                bytes.extend_from_slice(&f.payload);
                return Ok((head, bytes));
            }
            match self.reader.read_from(&mut *self.stream) {
                Ok(0) => return Err("the broker closed the connection".into()),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    fn request(&mut self, head: &Json) -> Result<Json, String> {
        self.write(head)?;
        let (reply, _) = self.next()?;
        if reply["status"].as_i64().unwrap_or(-1) < 0 {
            return Err(reply["error"]
                .as_str()
                .unwrap_or("the broker refused the request")
                .to_owned());
        }
        Ok(reply)
    }
}

/// Magic line at the start of a recording.
const RECORD_MAGIC: &[u8] = b"DIMEREC1\n";

/// `dime monitor`.
pub fn monitor(a: MonitorArgs) -> ExitCode {
    match run_monitor(a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

fn run_monitor(a: MonitorArgs) -> Result<(), String> {
    let mut c = RawConn::open(&a.address)?;
    let mut record = match &a.record {
        Some(p) => {
            let mut f = std::fs::File::create(p)
                .map_err(|e| format!("cannot write {}: {e}", p.display()))?;
            f.write_all(RECORD_MAGIC).map_err(|e| e.to_string())?;
            Some(std::io::BufWriter::new(f))
        }
        None => None,
    };
    let mut head = json!({"command": "monitor", "payloads": record.is_some()});
    if !a.groups.is_empty() {
        head["groups"] = json!(a.groups);
    }
    c.request(&head)?;
    let start = Instant::now();
    let mut seen = 0u64;
    while a.count.is_none_or(|n| seen < n) {
        let (h, _) = c.next()?;
        let Some(m) = h.get("monitor") else { continue };
        let to = match m["group"].as_str() {
            Some(g) => format!("→ {g}"),
            None => "→ everyone".to_owned(),
        };
        println!(
            "{:>10.3}  client {} {to} ({} recipient(s))  {}: {}, {} bytes",
            start.elapsed().as_secs_f64(),
            m["sender"],
            m["recipients"],
            m["varname"].as_str().unwrap_or(""),
            m["value"].as_str().unwrap_or("?"),
            m["bytes"]
        );
        let _ = std::io::stdout().flush();
        if m["frame"] == true {
            let (_, bytes) = c.next()?;
            if let Some(w) = &mut record {
                let micros = start.elapsed().as_micros() as u64;
                w.write_all(&micros.to_be_bytes())
                    .and_then(|()| w.write_all(&bytes))
                    .and_then(|()| w.flush())
                    .map_err(|e| format!("cannot write the recording: {e}"))?;
            }
        }
        seen += 1;
    }
    Ok(())
}

/// `dime replay`.
pub fn replay(a: ReplayArgs) -> ExitCode {
    match run_replay(a) {
        Ok((n, failed)) if failed.is_empty() => {
            println!("replayed {n} message(s)");
            ExitCode::SUCCESS
        }
        Ok((n, failed)) => fail(format!(
            "replayed {n} message(s); {} refused, first: {}",
            failed.len(),
            failed[0]
        )),
        Err(e) => fail(e),
    }
}

fn run_replay(a: ReplayArgs) -> Result<(usize, Vec<String>), String> {
    let mut bytes = Vec::new();
    std::fs::File::open(&a.file)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read {}: {e}", a.file.display()))?;
    let body = bytes
        .strip_prefix(RECORD_MAGIC)
        .ok_or_else(|| format!("{} is not a dime monitor recording", a.file.display()))?;
    // Check the whole file before sending anything.
    let mut records = Vec::new();
    let mut reader = FrameReader::new(u64::MAX);
    let mut rest = body;
    while !rest.is_empty() {
        let (at, tail) = rest
            .split_at_checked(8)
            .ok_or("the recording is truncated")?;
        let micros = u64::from_be_bytes(at.try_into().expect("8 bytes"));
        reader.feed(tail);
        let frame = reader
            .next_frame()
            .map_err(|e| format!("the recording is corrupt: {e}"))?
            .ok_or("the recording is truncated")?;
        let len = frame.wire_len();
        records.push((micros, frame));
        rest = &tail[len..];
        reader = FrameReader::new(u64::MAX);
    }
    let mut c = RawConn::open(&a.address)?;
    let start = Instant::now();
    let mut failed = Vec::new();
    for (micros, frame) in &records {
        if a.realtime {
            let due = Duration::from_micros(*micros);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        c.stream
            .write_all(&frame.head)
            .and_then(|()| c.stream.write_all(&frame.payload))
            .map_err(|e| e.to_string())?;
        let (reply, _) = c.next()?;
        if reply["status"].as_i64().unwrap_or(-1) < 0 {
            failed.push(reply["error"].as_str().unwrap_or("refused").to_owned());
        }
    }
    Ok((records.len(), failed))
}

/// `dime send`.
pub fn send(a: SendArgs) -> ExitCode {
    let value = match (&a.value, &a.npy) {
        (Some(text), None) => values::from_json(text),
        (None, Some(path)) => std::fs::read(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
            .and_then(|b| values::from_npy(&b)),
        _ => Err("give the value with --value JSON or --npy FILE".to_owned()),
    };
    let value = match value {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    let mut c = match connect(&a.address) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let sent = match (&a.group, a.broadcast) {
        (_, true) => c.broadcast(&a.varname, &value),
        (Some(g), false) => c.send(g, &a.varname, &value),
        (None, false) => unreachable!("clap requires a group without --broadcast"),
    };
    match sent {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

/// `dime recv`.
pub fn recv(a: RecvArgs) -> ExitCode {
    match run_recv(&a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

fn run_recv(a: &RecvArgs) -> Result<(), String> {
    let mut c = connect(&a.address)?;
    if let Some(g) = &a.group {
        c.join(&[g]).map_err(|e| e.to_string())?;
    }
    let deadline = a
        .timeout
        .map(|t| Instant::now() + Duration::from_secs_f64(t.max(0.0)));
    let mut got = 0;
    while got < a.count {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let n = match c.wait(left) {
            Ok(n) => n,
            Err(dime::Error::Timeout) => 0,
            Err(e) => return Err(e.to_string()),
        };
        if n == 0 {
            return Err(format!("no message within {} s", a.timeout.unwrap_or(0.0)));
        }
        for m in c
            .sync_messages((a.count - got) as i64)
            .map_err(|e| e.to_string())?
        {
            let value = m.decode().map_err(|e| e.to_string())?;
            let shown = values::to_json(&value);
            if a.json {
                println!("{}", json!({"varname": m.varname, "value": shown}));
            } else {
                println!("{} = {shown}", m.varname);
            }
            got += 1;
        }
    }
    Ok(())
}
