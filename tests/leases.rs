//! Locks with leases and fencing tokens: a lease runs out unless renewed,
//! every grant has a larger token, and a write fenced with an older token
//! than the lock's newest grant is refused, so a holder that was paused
//! past its lease cannot overwrite the next holder's work.

mod common;

use common::{KillOnDrop, TestServer};
use dime::server::{Durability, FsyncPolicy};
use dime::share::LockOptions;
use dime::{Client, Error, Value};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn lease(ms: u64) -> LockOptions {
    LockOptions {
        ttl: Some(Duration::from_millis(ms)),
        ..LockOptions::default()
    }
}

fn server_error(r: Result<impl std::fmt::Debug, Error>) -> String {
    match r {
        Err(Error::Server(m)) => m,
        other => panic!("expected a server error, got {other:?}"),
    }
}

#[test]
fn every_grant_has_a_larger_token() {
    let srv = TestServer::start();
    let mut a = srv.client();
    let mut b = srv.client();
    let t1 = a.share("s").lock(None).unwrap();
    a.share("s").unlock().unwrap();
    let t2 = b.share("s").lock(None).unwrap();
    assert!(t2 > t1, "{t1} then {t2}");
    let t3 = a.share("s").lock_key("job", None).unwrap();
    let t4 = a.share("other").try_lock().unwrap();
    assert!(t3 > t2 && t4 > t3);
    // Plain locks (no lease) are held until released, as before.
    std::thread::sleep(Duration::from_millis(100));
    assert!(matches!(
        b.share("s")
            .lock_key("job", Some(Duration::from_millis(50))),
        Err(Error::Timeout)
    ));
}

#[test]
fn a_lease_runs_out_and_the_next_waiter_gets_the_lock() {
    let srv = TestServer::start();
    let mut a = srv.client();
    let mut b = srv.client();
    let t1 = a.share("s").lock_with(None, lease(200)).unwrap();
    let started = Instant::now();
    // b waits behind a, which never renews nor unlocks.
    let t2 = b.share("s").lock(Some(Duration::from_secs(5))).unwrap();
    let waited = started.elapsed();
    assert!(t2 > t1);
    assert!(
        waited >= Duration::from_millis(150) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    // a learns it lost the lock when it renews or unlocks.
    let e = server_error(a.share("s").renew(None, None));
    assert!(e.contains("does not hold the lock"), "{e}");
    let e = server_error(a.share("s").unlock());
    assert!(e.contains("lease ran out"), "{e}");
    // A key lock's lease too.
    let k1 = a.share("s").lock_with(Some("job"), lease(100)).unwrap();
    let k2 = b
        .share("s")
        .lock_key("job", Some(Duration::from_secs(5)))
        .unwrap();
    assert!(k2 > k1);
}

#[test]
fn renewing_keeps_the_lock() {
    let srv = TestServer::start();
    let mut a = srv.client();
    let mut b = srv.client();
    let t = a.share("s").lock_with(Some("k"), lease(300)).unwrap();
    let until = Instant::now() + Duration::from_millis(900);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(a.share("s").renew(Some("k"), None).unwrap(), t);
        assert!(
            b.share("s")
                .lock_with(
                    Some("k"),
                    LockOptions {
                        nowait: true,
                        ..LockOptions::default()
                    }
                )
                .is_err()
        );
    }
    // A renewal may also change the lease's length.
    a.share("s")
        .renew(Some("k"), Some(Duration::from_millis(50)))
        .unwrap();
    let t2 = b
        .share("s")
        .lock_key("k", Some(Duration::from_secs(5)))
        .unwrap();
    assert!(t2 > t);
}

#[test]
fn bad_leases_are_refused() {
    let srv = TestServer::start();
    let mut raw = srv.raw();
    for ttl in [serde_json::json!(0), serde_json::json!(-5)] {
        raw.send(
            serde_json::json!({"command": "share_lock", "share": "s", "ttl": ttl}),
            &[],
        );
        let (reply, _) = raw.recv();
        assert_eq!(reply["status"], -1, "{reply}");
        assert!(reply["error"].as_str().unwrap().contains("ttl"), "{reply}");
        raw = srv.raw();
    }
    let mut c = srv.client();
    c.share("s").lock(None).unwrap();
    let e = server_error(c.share("s").renew(None, None));
    assert!(e.contains("no lease"), "{e}");
}

#[test]
fn fenced_writes_older_than_the_newest_grant_are_refused() {
    let srv = TestServer::start();
    let mut a = srv.client();
    let mut b = srv.client();
    let old = a.share("s").lock_key("row", None).unwrap();
    a.share("s")
        .fenced(old)
        .set("row", &Value::from("a's"))
        .unwrap();
    a.share("s").unlock_key("row").unwrap();
    let new = b.share("s").lock_key("row", None).unwrap();
    b.share("s")
        .fenced(new)
        .set("row", &Value::from("b's"))
        .unwrap();
    // Every kind of write with the old token is refused and changes nothing.
    let mut s = a.share("s").fenced(old);
    for e in [
        server_error(s.set("row", &Value::from("late"))),
        server_error(s.del("row")),
        server_error(s.pop("row")),
        server_error(s.incr("row", &Value::I64(1))),
        server_error(s.cas("row", Some(&Value::from("b's")), &Value::I64(0))),
        server_error(s.set_many(&[("row", &Value::I64(1))])),
        server_error(s.clear()),
    ] {
        assert!(
            e.contains("refused") && e.contains(&format!("token {old}")),
            "{e}"
        );
    }
    assert_eq!(a.share("s").get("row").unwrap(), Some(Value::from("b's")));
    // Other keys' locks do not fence this one; unfenced writes are as before.
    a.share("s")
        .fenced(old)
        .set("elsewhere", &Value::I64(1))
        .unwrap();
    a.share("s").set("row", &Value::from("unfenced")).unwrap();
    // The whole-share lock fences every key of the share.
    let whole = b.share("s").lock(None).unwrap();
    b.share("s").unlock().unwrap();
    let e = server_error(a.share("s").fenced(new).set("elsewhere", &Value::I64(2)));
    assert!(e.contains(&format!("({whole})")), "{e}");
    a.share("s")
        .fenced(whole)
        .set("elsewhere", &Value::I64(3))
        .unwrap();
}

#[test]
fn tokens_keep_growing_across_restarts() {
    let data = tempfile::tempdir().unwrap();
    let start = || {
        let dir = data.path().to_owned();
        TestServer::start_with(move |c| {
            c.durability = Some(Durability {
                dir,
                fsync: FsyncPolicy::Always,
                rewrite_after: 64 << 20,
            })
        })
    };
    let t1 = {
        let srv = start();
        let mut c = srv.client();
        c.share("s").lock_key("k", None).unwrap();
        c.share("s").unlock_key("k").unwrap();
        c.share("s").lock(None).unwrap()
    };
    let srv = start();
    let mut c = srv.client();
    // The newest grant is remembered: the old holder's token is refused.
    let e = server_error(c.share("s").fenced(t1 - 1).set("k", &Value::I64(0)));
    assert!(e.contains("refused"), "{e}");
    let t2 = c.share("s").lock_key("k", None).unwrap();
    assert!(t2 > t1, "{t1} then {t2}");
}

/// The holder in `a_paused_holder_loses_its_lock_and_its_late_write_is_refused`,
/// run as a child process so it can be stopped with SIGSTOP: takes a
/// leased lock, prints its token, then on each line of stdin tries a
/// fenced write and prints how it went.
#[test]
fn holder_child() {
    let Ok(addr) = std::env::var("DIME_TEST_HOLDER") else {
        return;
    };
    let mut c = Client::connect(&addr).unwrap();
    let token = c.share("s").lock_with(None, lease(300)).unwrap();
    println!("TOKEN {token}");
    for line in std::io::stdin().lock().lines() {
        if line.unwrap() != "write" {
            break;
        }
        match c
            .share("s")
            .fenced(token)
            .set("result", &Value::from("stale"))
        {
            Ok(()) => println!("WROTE"),
            Err(e) => println!("REFUSED {e}"),
        }
        std::io::stdout().flush().unwrap();
    }
}

#[test]
fn a_paused_holder_loses_its_lock_and_its_late_write_is_refused() {
    let srv = TestServer::start();
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["holder_child", "--exact", "--nocapture", "--test-threads=1"])
        .env("DIME_TEST_HOLDER", srv.unix())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    let mut stdin = child.0.stdin.take().unwrap();
    let mut line_with = |prefix: &str| loop {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "the holder exited");
        // The harness may print "test holder_child ... " before it.
        if let Some(at) = line.find(prefix) {
            return line[at + prefix.len()..].trim().to_owned();
        }
    };
    let old: u64 = line_with("TOKEN ").parse().unwrap();
    let pid = child.0.id() as i32;
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    // The holder is alive (its connection stays open) but stuck.
    let mut b = srv.client();
    let new = b.share("s").lock(Some(Duration::from_secs(5))).unwrap();
    assert!(new > old);
    b.share("s")
        .fenced(new)
        .set("result", &Value::from("fresh"))
        .unwrap();
    unsafe { libc::kill(pid, libc::SIGCONT) };
    writeln!(stdin, "write").unwrap();
    let answer = line_with("REFUSED ");
    assert!(answer.contains(&format!("token {old}")), "{answer}");
    assert_eq!(
        b.share("s").get("result").unwrap(),
        Some(Value::from("fresh"))
    );
    b.share("s").unlock().unwrap();
    drop(stdin);
}
