//! Shared dictionaries: atomic operations, get-or-wait and locks.

mod common;

use common::TestServer;
use dime::{Error, Matrix, Value};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const SECOND: Option<Duration> = Some(Duration::from_secs(1));

#[test]
fn basic_operations() {
    let srv = TestServer::start();
    let mut c = srv.client();
    let mut s = c.share("");
    assert_eq!(s.get("a").unwrap(), None);
    s.set("a", &Value::I64(1)).unwrap();
    let m = Value::Matrix(Matrix::from_elems(vec![2, 2], &[1.0f64, 2.0, 3.0, 4.0]).unwrap());
    s.set("m", &m).unwrap();
    assert_eq!(s.get("m").unwrap(), Some(m.clone()));
    assert!(s.contains("a").unwrap());
    assert!(!s.contains("zz").unwrap());
    assert_eq!(s.keys().unwrap(), ["a", "m"]);
    assert_eq!(s.len().unwrap(), 2);
    s.set_many(&[("x", &Value::from("ex")), ("y", &Value::Null)])
        .unwrap();
    assert_eq!(
        s.get_many(&["x", "nope", "y"]).unwrap(),
        vec![
            ("x".to_owned(), Value::from("ex")),
            ("y".to_owned(), Value::Null)
        ]
    );
    assert_eq!(s.pop("x").unwrap(), Some(Value::from("ex")));
    assert_eq!(s.pop("x").unwrap(), None);
    assert!(s.del("a").unwrap());
    assert!(!s.del("a").unwrap());
    s.clear().unwrap();
    assert_eq!(s.len().unwrap(), 0);
    // Shares are separate namespaces, visible to every client.
    c.share("one").set("k", &Value::I64(1)).unwrap();
    let mut other = srv.client();
    assert_eq!(other.share("one").get("k").unwrap(), Some(Value::I64(1)));
    assert_eq!(other.share("two").get("k").unwrap(), None);
}

#[test]
fn incr_keeps_the_number_kind_and_refuses_non_numbers() {
    let srv = TestServer::start();
    let mut c = srv.client();
    let mut s = c.share("n");
    assert_eq!(s.incr("i", &Value::I64(5)).unwrap(), Value::I64(5));
    assert_eq!(s.incr("i", &Value::I64(-2)).unwrap(), Value::I64(3));
    assert_eq!(s.incr("f", &Value::F64(0.5)).unwrap(), Value::F64(0.5));
    assert_eq!(s.incr("i", &Value::F64(0.5)).unwrap(), Value::F64(3.5));
    s.set("small", &Value::U8(250)).unwrap();
    let err = s.incr("small", &Value::I64(10)).unwrap_err().to_string();
    assert!(err.contains("overflows"), "{err}");
    s.set("text", &Value::from("x")).unwrap();
    let err = s.incr("text", &Value::I64(1)).unwrap_err().to_string();
    assert!(err.contains("string"), "{err}");
    assert_eq!(s.get("small").unwrap(), Some(Value::U8(250)));
}

#[test]
fn cas_swaps_only_on_an_exact_match() {
    let srv = TestServer::start();
    let mut c = srv.client();
    let mut s = c.share("");
    assert!(s.cas("k", None, &Value::I64(1)).unwrap());
    assert!(!s.cas("k", None, &Value::I64(2)).unwrap());
    // Same number, other type: no match.
    assert!(!s.cas("k", Some(&Value::F64(1.0)), &Value::I64(3)).unwrap());
    assert!(s.cas("k", Some(&Value::I64(1)), &Value::I64(3)).unwrap());
    assert_eq!(s.get("k").unwrap(), Some(Value::I64(3)));
}

fn run_parallel(srv: &TestServer, work: impl Fn(&mut dime::Client) + Send + Sync + 'static) {
    let work = Arc::new(work);
    let barrier = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let addr = srv.unix();
            let work = work.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut c = dime::Client::connect(&addr).unwrap();
                barrier.wait();
                work(&mut c);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

fn counter(srv: &TestServer) -> i64 {
    match srv.client().share("").get("n").unwrap() {
        Some(Value::I64(n)) => n,
        v => panic!("{v:?}"),
    }
}

#[test]
fn eight_clients_times_1000_increments() {
    // With incr and no lock: exact.
    let srv = TestServer::start();
    run_parallel(&srv, |c| {
        for _ in 0..1000 {
            c.share("").incr("n", &Value::I64(1)).unwrap();
        }
    });
    assert_eq!(counter(&srv), 8000);

    // Read-modify-write under the lock: exact.
    let srv = TestServer::start();
    srv.client().share("").set("n", &Value::I64(0)).unwrap();
    run_parallel(&srv, |c| {
        let mut s = c.share("");
        for _ in 0..1000 {
            s.lock(None).unwrap();
            let Some(Value::I64(n)) = s.get("n").unwrap() else {
                panic!()
            };
            s.set("n", &Value::I64(n + 1)).unwrap();
            s.unlock().unwrap();
        }
    });
    assert_eq!(counter(&srv), 8000);

    // The same without the lock loses updates: the lock is what matters.
    let srv = TestServer::start();
    srv.client().share("").set("n", &Value::I64(0)).unwrap();
    run_parallel(&srv, |c| {
        let mut s = c.share("");
        for _ in 0..1000 {
            let Some(Value::I64(n)) = s.get("n").unwrap() else {
                panic!()
            };
            s.set("n", &Value::I64(n + 1)).unwrap();
        }
    });
    let n = counter(&srv);
    assert!(
        n < 8000,
        "naive read-modify-write lost nothing ({n}); the test proves nothing"
    );
}

#[test]
fn a_dead_holder_releases_its_locks_at_once() {
    let srv = TestServer::start();
    let mut holder = srv.client();
    holder.share("").lock(None).unwrap();
    holder.share("").lock_key("job", None).unwrap();
    let mut waiter = srv.client();
    assert!(matches!(waiter.share("").try_lock(), Err(Error::Server(_))));
    let t = Instant::now();
    let addr = srv.unix();
    let key_waiter = std::thread::spawn(move || {
        let mut c = dime::Client::connect(&addr).unwrap();
        c.share("")
            .lock_key("job", Some(Duration::from_secs(5)))
            .unwrap();
        t.elapsed()
    });
    std::thread::sleep(Duration::from_millis(100));
    drop(holder); // the kernel closes the socket, as when a process is killed
    waiter.share("").lock(SECOND).unwrap();
    assert!(t.elapsed() < Duration::from_secs(1));
    assert!(key_waiter.join().unwrap() < Duration::from_secs(1));
}

#[test]
fn lock_timeouts_and_no_reentry() {
    let srv = TestServer::start();
    let mut a = srv.client();
    let mut b = srv.client();
    a.share("s").lock(None).unwrap();
    let err = a.share("s").lock(None).unwrap_err().to_string();
    assert!(err.contains("not re-entrant"), "{err}");
    let t = Instant::now();
    assert!(matches!(
        b.share("s").lock(Some(Duration::from_millis(100))),
        Err(Error::Timeout)
    ));
    assert!(t.elapsed() >= Duration::from_millis(90));
    // The timed-out request never takes the lock later.
    a.share("s").unlock().unwrap();
    let mut c = srv.client();
    c.share("s").lock(SECOND).unwrap();
    assert!(
        b.share("s")
            .unlock()
            .unwrap_err()
            .to_string()
            .contains("does not hold")
    );
}

#[test]
fn writes_wait_for_the_share_lock_or_fail_with_nowait() {
    let srv = TestServer::start();
    let mut a = srv.client();
    a.share("s").lock(None).unwrap();
    let addr = srv.unix();
    let writer = std::thread::spawn(move || {
        let mut b = dime::Client::connect(&addr).unwrap();
        b.share("s").set("k", &Value::I64(2)).unwrap();
        // Requests behind the blocked write are answered after it, in order.
        b.share("s").get("k").unwrap()
    });
    std::thread::sleep(Duration::from_millis(150));
    // Reads are not blocked; the write has not happened yet.
    assert_eq!(a.share("s").get("k").unwrap(), None);
    a.share("s").set("k", &Value::I64(1)).unwrap();
    a.share("s").unlock().unwrap();
    assert_eq!(writer.join().unwrap(), Some(Value::I64(2)));
    let mut raw = srv.raw();
    a.share("s").lock(None).unwrap();
    let reply = raw.call(
        serde_json::json!({"command": "share_del", "share": "s", "key": "k", "nowait": true}),
    );
    assert_eq!(reply["status"], -1);
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .contains("locked by another client")
    );
}

#[test]
fn key_locks_are_fifo() {
    let srv = TestServer::start();
    let mut a = srv.client();
    a.share("").lock_key("k", None).unwrap();
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut threads = Vec::new();
    for i in 0..3 {
        let addr = srv.unix();
        let order = order.clone();
        threads.push(std::thread::spawn(move || {
            let mut c = dime::Client::connect(&addr).unwrap();
            c.share("").lock_key("k", None).unwrap();
            order.lock().unwrap().push(i);
            c.share("").unlock_key("k").unwrap();
        }));
        std::thread::sleep(Duration::from_millis(100));
    }
    a.share("").unlock_key("k").unwrap();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(*order.lock().unwrap(), [0, 1, 2]);
}

#[test]
fn wait_key_wakes_on_set_and_times_out() {
    let srv = TestServer::start();
    let mut a = srv.client();
    let t = Instant::now();
    assert!(matches!(
        a.share("").wait_key("k", Some(Duration::from_millis(100))),
        Err(Error::Timeout)
    ));
    assert!(t.elapsed() >= Duration::from_millis(90));
    let addr = srv.unix();
    let setter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        dime::Client::connect(&addr)
            .unwrap()
            .share("")
            .set("k", &Value::from("v"))
            .unwrap();
    });
    let t = Instant::now();
    assert_eq!(
        a.share("")
            .wait_key("k", Some(Duration::from_secs(5)))
            .unwrap(),
        Value::from("v")
    );
    assert!(t.elapsed() >= Duration::from_millis(100));
    setter.join().unwrap();
    // Present already: immediate.
    assert_eq!(a.share("").wait_key("k", None).unwrap(), Value::from("v"));
}
