//! The `dime` binary: listeners, command line, socket files and signals.

mod common;

use common::cpu_ticks;
use dime::Value;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::time::{Duration, Instant};

struct Proc {
    child: Child,
    addrs: Vec<String>,
    _stderr: BufReader<ChildStderr>,
}

/// A failing test must not leave its server running.
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(args: &[&str]) -> Proc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dime"))
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let want = args.iter().filter(|a| **a == "-l").count().max(1);
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut addrs = Vec::new();
    while addrs.len() < want {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "server exited early"
        );
        if let Some(a) = line.trim().strip_prefix("dime: listening on ") {
            addrs.push(a.to_owned());
        }
    }
    Proc {
        child,
        addrs,
        _stderr: stderr,
    }
}

fn signal(p: &mut Proc, sig: i32) -> i32 {
    unsafe { libc::kill(p.child.id() as i32, sig) };
    let t = Instant::now();
    loop {
        if let Some(st) = p.child.try_wait().unwrap() {
            return st.code().expect("exited by itself, not killed");
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "server ignored signal {sig}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn unix_and_tcp_at_once_share_groups() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("d.sock");
    let mut p = spawn(&[
        "-l",
        &format!("unix:{}", sock.display()),
        "-l",
        "tcp:127.0.0.1:0",
    ]);
    assert_eq!(p.addrs[0], format!("unix:{}", sock.display()));
    assert!(p.addrs[1].starts_with("tcp:127.0.0.1:"));
    let mut u = dime::Client::connect(&p.addrs[0]).unwrap();
    let mut t = dime::Client::connect(&p.addrs[1]).unwrap();
    u.join(&["u"]).unwrap();
    t.join(&["t"]).unwrap();
    t.send("u", "from_tcp", &Value::F64(1.5)).unwrap();
    u.send("t", "from_unix", &Value::from("x")).unwrap();
    assert_eq!(
        u.sync(-1).unwrap(),
        vec![("from_tcp".to_owned(), Value::F64(1.5))]
    );
    assert_eq!(
        t.sync(-1).unwrap(),
        vec![("from_unix".to_owned(), Value::from("x"))]
    );
    assert_eq!(signal(&mut p, libc::SIGTERM), 0);
    assert!(!sock.exists(), "socket file left behind");
}

#[test]
fn tcp_port_alone_binds_loopback_and_ipc_is_an_alias() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("i.sock");
    let mut p = spawn(&["-l", &format!("ipc:{}", sock.display()), "-l", "tcp:0"]);
    assert_eq!(p.addrs[0], format!("unix:{}", sock.display()));
    assert!(p.addrs[1].starts_with("tcp:127.0.0.1:"), "{}", p.addrs[1]);
    assert_eq!(signal(&mut p, libc::SIGINT), 0);
    assert!(!sock.exists());
}

#[test]
fn socket_files_are_private_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.sock");
    let b = dir.path().join("b.sock");
    let mut pa = spawn(&["-l", &format!("unix:{}", a.display())]);
    let mut pb = spawn(&[
        "-l",
        &format!("unix:{}", b.display()),
        "--socket-mode",
        "660",
    ]);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&a), 0o600);
    assert_eq!(mode(&b), 0o660);
    signal(&mut pa, libc::SIGTERM);
    signal(&mut pb, libc::SIGTERM);
}

#[test]
fn stale_socket_is_replaced_and_live_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("s.sock");
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let addr = format!("unix:{}", sock.display());
    let mut first = spawn(&["-l", &addr]);
    let out = Command::new(env!("CARGO_BIN_EXE_dime"))
        .args(["-l", &addr])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already listening"), "{err}");
    // The first server is untouched.
    let mut c = dime::Client::connect(&addr).unwrap();
    assert!(c.devices().unwrap().is_empty());
    signal(&mut first, libc::SIGTERM);
}

#[test]
fn a_regular_file_is_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("precious");
    std::fs::write(&f, "data").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dime"))
        .args(["-l", &format!("unix:{}", f.display())])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "data");
}

#[test]
fn help_and_bad_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_dime"))
        .arg("-h")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("-l") && help.contains("unix:PATH") && help.contains("--max-queue"),
        "{help}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_dime"))
        .args(["-l", "udp:1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown scheme"));
}

#[test]
fn verbose_logs_connections() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("v.sock");
    let mut p = spawn(&["-vv", "-l", &format!("unix:{}", sock.display())]);
    let mut c = dime::Client::connect(&p.addrs[0]).unwrap();
    c.devices().unwrap();
    drop(c);
    std::thread::sleep(Duration::from_millis(100));
    signal(&mut p, libc::SIGTERM);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut p._stderr, &mut rest).unwrap();
    assert!(
        rest.contains("connected") && rest.contains("devices"),
        "{rest}"
    );
}

#[test]
fn exit_when_idle_waits_for_the_last_client() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("idle.sock");
    let mut p = spawn(&[
        "-l",
        &format!("unix:{}", sock.display()),
        "--exit-when-idle",
        "0.3",
    ]);
    let mut c = dime::Client::connect(&p.addrs[0]).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    assert!(
        p.child.try_wait().unwrap().is_none(),
        "exited with a client connected"
    );
    c.devices().unwrap();
    drop(c);
    let t = Instant::now();
    let status = loop {
        if let Some(st) = p.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "idle server did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "exited too early"
    );
    assert_eq!(status.code(), Some(0));
    assert!(!sock.exists());
}

/// Round trips made by [`dense_traffic`].
const DENSE_ROUND_TRIPS: i64 = 2000;

/// Many round trips, each a send to itself and a sync.
fn dense_traffic(addr: &str) {
    let mut c = dime::Client::connect(addr).unwrap();
    c.join(&["me"]).unwrap();
    for i in 0..DENSE_ROUND_TRIPS {
        c.send("me", "x", &Value::I64(i)).unwrap();
        assert_eq!(c.sync(-1).unwrap(), vec![("x".to_owned(), Value::I64(i))]);
    }
}

#[test]
fn busy_poll_stops_when_traffic_does() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("d.sock");
    let mut p = spawn(&["-l", &format!("unix:{}", sock.display())]);
    dense_traffic(&p.addrs[0]);
    // Past the busy-poll window the server must sleep: no CPU at all.
    std::thread::sleep(Duration::from_millis(200));
    let before = cpu_ticks(p.child.id());
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks(p.child.id()) - before;
    assert!(used <= 2, "idle server used {used} ticks in 1 s");
    assert_eq!(signal(&mut p, libc::SIGTERM), 0);
}

/// How many times the process `pid` went to sleep (blocked in a system
/// call such as `epoll_wait`): the voluntary context switches of all its
/// threads. A busy-polling loop does not block (its `sched_yield`s count
/// as involuntary switches), so this tells sleeping from spinning however
/// cheap the spin is in CPU ticks.
fn sleeps(pid: u32) -> u64 {
    let mut n = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        let line = status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .expect("no voluntary_ctxt_switches in /proc status");
        n += line.trim().parse::<u64>().unwrap();
    }
    n
}

/// `--busy-poll 0` must really turn polling off, and another window must
/// still serve. Dense round trips tell polling from not polling: each one
/// leaves the server a gap of a few microseconds while the client turns
/// around. A polling server (the default 50 µs window, say, if `0` were
/// ignored) spins through those gaps and hardly ever sleeps (measured: 8 to
/// 187 sleeps in these 2,000 round trips); a server that does not poll
/// sleeps in `epoll_wait` at least once per round trip, since the client
/// cannot send the next request before it has the reply (measured: 2 per
/// round trip, with or without other load). CPU ticks cannot tell them
/// apart here: the spin yields, and both used about the same ticks. Load
/// can only add sleeps (lengthening gaps past a window), never remove them,
/// so the `0` check does not flake; for the same reason a loaded machine
/// makes a polling server sleep too (measured: ~1 per round trip with 200
/// µs and three CPU hogs on two cores), so the nonzero window is only
/// checked to serve, not to spin.
#[test]
fn busy_poll_can_be_turned_off_or_tuned() {
    let dir = tempfile::tempdir().unwrap();
    for (i, window) in ["0", "200"].iter().enumerate() {
        let sock = dir.path().join(format!("d{i}.sock"));
        let mut p = spawn(&[
            "-l",
            &format!("unix:{}", sock.display()),
            "--busy-poll",
            window,
        ]);
        let before = sleeps(p.child.id());
        dense_traffic(&p.addrs[0]);
        let slept = sleeps(p.child.id()) - before;
        if *window == "0" {
            assert!(
                slept >= DENSE_ROUND_TRIPS as u64 * 3 / 4,
                "--busy-poll 0: the server slept only {slept} times in {DENSE_ROUND_TRIPS} round trips, \
                 so it polled between them"
            );
        }
        assert_eq!(signal(&mut p, libc::SIGTERM), 0);
    }
    let out = Command::new(env!("CARGO_BIN_EXE_dime"))
        .args(["--busy-poll", "-5"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a negative window was accepted");
}
