//! Remote calls through the broker: routing to a pool of providers,
//! queueing until a provider comes, errors, lost providers and callers,
//! cancellation, in-flight caps and silent brokers.

mod common;

use common::TestServer;
use dime::Value;
use dime::rpc::{CallError, IncomingCall, Rpc, RpcOptions};
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const LONG: Option<Duration> = Some(Duration::from_secs(10));

fn endpoint(srv: &TestServer) -> Rpc {
    Rpc::connect(&srv.unix(), RpcOptions::default()).unwrap()
}

/// Serves `function` on `rpc` until stopped: replies with f(args).
fn serve(
    rpc: Arc<Rpc>,
    f: impl Fn(&IncomingCall, Value) -> Result<Value, String> + Send + 'static,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut served = 0;
        while !stop.load(Ordering::SeqCst) {
            let Ok(Some(call)) = rpc.next_call(Some(Duration::from_millis(20))) else {
                continue;
            };
            let args = call.decode().unwrap();
            match f(&call, args) {
                Ok(v) => rpc.reply(call.id, &v).unwrap(),
                Err(m) => rpc
                    .reply_error(call.id, "ValueError", &m, "Traceback: line 1")
                    .unwrap(),
            }
            served += 1;
        }
        served
    })
}

fn double(_: &IncomingCall, v: Value) -> Result<Value, String> {
    match v {
        Value::I64(i) => Ok(Value::I64(2 * i)),
        other => Err(format!("cannot double {other:?}")),
    }
}

#[test]
fn call_round_trip_and_remote_error() {
    let srv = TestServer::start();
    let provider = Arc::new(endpoint(&srv));
    provider.provide("double", 1).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let t = serve(provider.clone(), double, stop.clone());
    let caller = endpoint(&srv);
    let f = caller.call("double", &Value::I64(21), None).unwrap();
    assert_eq!(f.result(LONG).unwrap(), Ok(Value::I64(42)));
    let f = caller.call("double", &Value::from("x"), None).unwrap();
    match f.result(LONG).unwrap() {
        Err(CallError::Remote {
            error_type,
            message,
            traceback,
        }) => {
            assert_eq!(error_type, "ValueError");
            assert!(message.contains("cannot double"), "{message}");
            assert_eq!(traceback, "Traceback: line 1");
        }
        other => panic!("expected a remote error, got {other:?}"),
    }
    stop.store(true, Ordering::SeqCst);
    assert_eq!(t.join().unwrap(), 2);
}

#[test]
fn large_values_are_streamed_out_and_arrive_whole() {
    // Above the size where calls and replies are encoded as they are
    // written: a C-ordered (row-major, borrowed) matrix and a column-major
    // one, in a map with small values around them.
    let srv = TestServer::start();
    let provider = Arc::new(endpoint(&srv));
    provider.provide("echo", 1).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let t = serve(provider.clone(), |_, v| Ok(v), stop.clone());
    let (rows, cols) = (700, 1100);
    let c_data: Vec<f64> = (0..rows * cols).map(|x| x as f64 * 0.5).collect();
    // SAFETY: c_data outlives the value (dropped at the end of the test).
    let row_major = unsafe {
        dime::Matrix::borrowed_row_major(
            dime::ElemKind::F64,
            vec![rows, cols],
            c_data.as_ptr().cast(),
            c_data.len() * 8,
        )
    }
    .unwrap();
    let col: Vec<i32> = (0..2_000_000).collect();
    let col_major = dime::Matrix::from_elems(vec![1000, 2000], &col).unwrap();
    let args = Value::Map(vec![
        (Value::from("a"), Value::Matrix(row_major)),
        (Value::from("n"), Value::I64(7)),
        (Value::from("b"), Value::Matrix(col_major.clone())),
    ]);
    let caller = endpoint(&srv);
    let got = caller
        .call("echo", &args, None)
        .unwrap()
        .result(LONG)
        .unwrap()
        .unwrap();
    let Value::Map(pairs) = got else {
        panic!("expected a map, got {got:?}")
    };
    let Value::Matrix(a) = &pairs[0].1 else {
        panic!("expected a matrix")
    };
    assert_eq!(a.dims(), &[rows, cols]);
    let elems: Vec<f64> = a
        .bytes()
        .chunks_exact(8)
        .map(|b| f64::from_ne_bytes(b.try_into().unwrap()))
        .collect();
    // Column-major now: element (i, j) at j * rows + i.
    for (i, j) in [(0, 0), (1, 0), (0, 1), (rows - 1, cols - 1), (345, 678)] {
        assert_eq!(elems[j * rows + i], c_data[i * cols + j], "({i}, {j})");
    }
    assert_eq!(pairs[1].1, Value::I64(7));
    assert_eq!(pairs[2].1, Value::Matrix(col_major));
    stop.store(true, Ordering::SeqCst);
    assert_eq!(t.join().unwrap(), 1);
}

#[test]
fn a_call_waits_for_a_provider_and_times_out_without_one() {
    let srv = TestServer::start();
    let caller = endpoint(&srv);
    let t0 = Instant::now();
    let f = caller
        .call("nobody", &Value::Null, Some(Duration::from_millis(150)))
        .unwrap();
    match f.result(LONG).unwrap() {
        Err(CallError::NoProvider(m)) => assert!(m.contains("nobody"), "{m}"),
        other => panic!("expected no provider, got {other:?}"),
    }
    assert!(t0.elapsed() >= Duration::from_millis(140));
    // A call made before its provider exists runs once one arrives.
    let f = caller.call("late", &Value::I64(5), None).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(!f.is_done());
    let provider = Arc::new(endpoint(&srv));
    provider.provide("late", 1).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let t = serve(provider, double, stop.clone());
    assert_eq!(f.result(LONG).unwrap(), Ok(Value::I64(10)));
    stop.store(true, Ordering::SeqCst);
    t.join().unwrap();
}

#[test]
fn many_callers_over_a_pool_lose_and_duplicate_nothing() {
    let srv = TestServer::start();
    let stop = Arc::new(AtomicBool::new(false));
    let mut providers = Vec::new();
    for _ in 0..3 {
        let p = Arc::new(endpoint(&srv));
        p.provide("double", 2).unwrap();
        providers.push(serve(p.clone(), double, stop.clone()));
        providers.push(serve(p, double, stop.clone()));
    }
    let callers: Vec<_> = (0..8)
        .map(|c| {
            let addr = srv.unix();
            std::thread::spawn(move || {
                let rpc = Rpc::connect(
                    &addr,
                    RpcOptions {
                        max_in_flight: Some(16),
                        ..Default::default()
                    },
                )
                .unwrap();
                let futures: Vec<_> = (0..1000i64)
                    .map(|i| {
                        (
                            i,
                            rpc.call("double", &Value::I64(c * 10_000 + i), None)
                                .unwrap(),
                        )
                    })
                    .collect();
                for (i, f) in futures {
                    assert_eq!(
                        f.result(LONG).unwrap(),
                        Ok(Value::I64(2 * (c * 10_000 + i)))
                    );
                }
            })
        })
        .collect();
    for c in callers {
        c.join().unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    let served: Vec<usize> = providers.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(served.iter().sum::<usize>(), 8000);
    // Every provider took a share of the load.
    for pair in served.chunks(2) {
        assert!(pair[0] + pair[1] > 500, "served per provider: {served:?}");
    }
}

#[test]
fn a_lost_provider_fails_its_calls_at_once() {
    let srv = TestServer::start();
    let provider = endpoint(&srv);
    provider.provide("hang", 1).unwrap();
    let caller = endpoint(&srv);
    let f = caller.call("hang", &Value::Null, None).unwrap();
    let call = provider.next_call(LONG).unwrap().unwrap();
    assert_eq!(call.function, "hang");
    let t0 = Instant::now();
    provider.close();
    match f.result(LONG).unwrap() {
        Err(CallError::ProviderLost(m)) => assert!(m.contains("hang"), "{m}"),
        other => panic!("expected provider lost, got {other:?}"),
    }
    assert!(t0.elapsed() < Duration::from_secs(1));
}

#[test]
fn a_lost_caller_leaves_nothing_behind() {
    let srv = TestServer::start();
    let provider = endpoint(&srv);
    provider.provide("f", 1).unwrap();
    {
        let caller = endpoint(&srv);
        let _running = caller.call("f", &Value::I64(1), None).unwrap();
        let _queued = caller.call("f", &Value::I64(2), None).unwrap();
        let call = provider.next_call(LONG).unwrap().unwrap();
        caller.close();
        // Answering the gone caller's call is harmless. (Give the broker
        // time to see the close first: answering earlier would free the
        // slot for the queued call while it still counts.)
        std::thread::sleep(Duration::from_millis(300));
        provider.reply(call.id, &Value::Null).unwrap();
    }
    // The queued call was dropped: the next call the provider sees is new.
    let caller = endpoint(&srv);
    let f = caller.call("f", &Value::I64(3), None).unwrap();
    let call = provider.next_call(LONG).unwrap().unwrap();
    assert_eq!(call.decode().unwrap(), Value::I64(3));
    provider.reply(call.id, &Value::I64(4)).unwrap();
    assert_eq!(f.result(LONG).unwrap(), Ok(Value::I64(4)));
}

#[test]
fn cancel_withdraws_queued_calls_and_discards_running_ones() {
    let srv = TestServer::start();
    let provider = endpoint(&srv);
    provider.provide("f", 1).unwrap();
    let caller = endpoint(&srv);
    let running = caller.call("f", &Value::I64(1), None).unwrap();
    let queued = caller.call("f", &Value::I64(2), None).unwrap();
    let first = provider.next_call(LONG).unwrap().unwrap();
    assert!(queued.cancel());
    assert!(running.cancel());
    assert!(
        !running.cancel(),
        "a finished call cannot be cancelled again"
    );
    assert!(matches!(running.take(), Some(Err(CallError::Cancelled))));
    provider.reply(first.id, &Value::Null).unwrap();
    // The cancelled queued call never reaches the provider.
    let f = caller.call("f", &Value::I64(3), None).unwrap();
    let next = provider.next_call(LONG).unwrap().unwrap();
    assert_eq!(next.decode().unwrap(), Value::I64(3));
    provider.reply(next.id, &Value::I64(30)).unwrap();
    assert_eq!(f.result(LONG).unwrap(), Ok(Value::I64(30)));
}

#[test]
fn max_in_flight_blocks_the_caller() {
    let srv = TestServer::start();
    let provider = endpoint(&srv);
    provider.provide("f", 8).unwrap();
    let caller = Arc::new(
        Rpc::connect(
            &srv.unix(),
            RpcOptions {
                max_in_flight: Some(2),
                ..Default::default()
            },
        )
        .unwrap(),
    );
    let _a = caller.call("f", &Value::I64(1), None).unwrap();
    let _b = caller.call("f", &Value::I64(2), None).unwrap();
    let made = Arc::new(Mutex::new(false));
    let (c2, m2) = (caller.clone(), made.clone());
    let t = std::thread::spawn(move || {
        let f = c2.call("f", &Value::I64(3), None).unwrap();
        *m2.lock().unwrap() = true;
        f.result(LONG).unwrap()
    });
    std::thread::sleep(Duration::from_millis(100));
    assert!(!*made.lock().unwrap(), "a third call went out past the cap");
    let mut by_arg = HashMap::new();
    for _ in 0..2 {
        let c = provider.next_call(LONG).unwrap().unwrap();
        by_arg.insert(format!("{:?}", c.decode().unwrap()), c.id);
    }
    provider.reply(by_arg["I64(1)"], &Value::Null).unwrap();
    let c = provider.next_call(LONG).unwrap().unwrap();
    // The third call went out once the first finished; its caller marks
    // it made just after, maybe after the provider already has it.
    let deadline = std::time::Instant::now() + LONG.unwrap();
    while !*made.lock().unwrap() {
        assert!(
            std::time::Instant::now() < deadline,
            "the third call never returned"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    provider.reply(c.id, &Value::I64(33)).unwrap();
    assert_eq!(t.join().unwrap(), Ok(Value::I64(33)));
}

#[test]
fn a_dropped_failed_future_is_raised_at_the_next_call() {
    let srv = TestServer::start();
    let provider = endpoint(&srv);
    provider.provide("f", 1).unwrap();
    let caller = Rpc::connect(
        &srv.unix(),
        RpcOptions {
            raise_dropped_errors: true,
            ..Default::default()
        },
    )
    .unwrap();
    drop(caller.call("f", &Value::Null, None).unwrap());
    let c = provider.next_call(LONG).unwrap().unwrap();
    provider.reply_error(c.id, "KeyError", "'x'", "").unwrap();
    let t0 = Instant::now();
    loop {
        match caller.call("f", &Value::Null, None) {
            Err(e) => {
                assert!(e.to_string().contains("KeyError: 'x'"), "{e}");
                break;
            }
            Ok(f) => {
                f.cancel();
                assert!(t0.elapsed() < Duration::from_secs(5));
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

#[test]
fn a_silent_broker_fails_calls_after_maxage() {
    // A listener that handshakes and then never answers again.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("silent.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let t = std::thread::spawn(move || {
        let mut raw = common::Raw {
            stream: listener.accept().unwrap().0,
        };
        let _handshake = raw.recv();
        raw.send(
            json!({"status": 0, "serialization": "dimeb", "extensions": ["rpc", "stream"]}),
            &[],
        );
        // Swallow whatever comes until the client gives up.
        while raw.try_recv().is_some() {}
    });
    let caller = Rpc::connect(
        &format!("unix:{}", path.display()),
        RpcOptions {
            maxage: Some(Duration::from_millis(300)),
            ..Default::default()
        },
    )
    .unwrap();
    let t0 = Instant::now();
    let f = caller.call("f", &Value::Null, None).unwrap();
    match f.result(LONG).unwrap() {
        Err(CallError::Connection(m)) => assert!(m.contains("maxage"), "{m}"),
        other => panic!("expected a connection error, got {other:?}"),
    }
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(290) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    drop(caller);
    t.join().unwrap();
}

#[test]
fn an_original_dime2_server_is_told_apart_at_connect() {
    // A broker whose handshake announces no extensions (an original DiME2
    // server), and one announcing remote calls but not streams.
    for (extensions, rpc_ok) in [(None, false), (Some(json!(["rpc"])), true)] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let t = std::thread::spawn(move || {
            let mut raw = common::Raw {
                stream: listener.accept().unwrap().0,
            };
            let _handshake = raw.recv();
            let mut reply = json!({"status": 0, "serialization": "dimeb"});
            if let Some(e) = extensions {
                reply["extensions"] = e;
            }
            raw.send(reply, &[]);
            while raw.try_recv().is_some() {}
        });
        let r = Rpc::connect(&format!("unix:{}", path.display()), RpcOptions::default());
        if rpc_ok {
            let rpc = r.unwrap();
            match rpc.open_stream("s", &Value::Null, StreamOptions::default(), None) {
                Err(dime::Error::Unsupported(m)) => assert!(m.contains("streams"), "{m}"),
                Err(other) => panic!("expected unsupported, got {other}"),
                Ok(_) => panic!("expected unsupported, got a stream"),
            }
            drop(rpc);
        } else {
            match r {
                Err(dime::Error::Unsupported(m)) => {
                    assert!(
                        m.contains("remote calls") && m.contains("original DiME2"),
                        "{m}"
                    )
                }
                Err(other) => panic!("expected unsupported, got {other}"),
                Ok(_) => panic!("expected unsupported, got an endpoint"),
            }
        }
        t.join().unwrap();
    }
}

#[test]
fn connect_retries_until_the_broker_exists() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("late.sock");
    let addr = format!("unix:{}", path.display());
    let a2 = addr.clone();
    let t = std::thread::spawn(move || {
        Rpc::connect(
            &a2,
            RpcOptions {
                retry_until: Some(Instant::now() + Duration::from_secs(10)),
                ..Default::default()
            },
        )
        .map(|r| r.ping().is_ok())
    });
    std::thread::sleep(Duration::from_millis(200));
    let _srv = TestServer::start_with(|c| c.listen = vec![dime::transport::Address::Unix(path)]);
    assert!(t.join().unwrap().unwrap());
    // Without retry, a missing broker is an error at once.
    assert!(Rpc::connect("unix:/nonexistent/dime.sock", RpcOptions::default()).is_err());
}

#[test]
fn remote_calls_and_messaging_share_one_broker() {
    let srv = TestServer::start();
    let mut c = srv.client();
    c.join(&["g"]).unwrap();
    let provider = endpoint(&srv);
    provider.provide("f", 1).unwrap();
    let caller = endpoint(&srv);
    let f = caller.call("f", &Value::I64(1), None).unwrap();
    c.send("g", "x", &Value::I64(7)).unwrap();
    let call = provider.next_call(LONG).unwrap().unwrap();
    provider.reply(call.id, &Value::I64(2)).unwrap();
    assert_eq!(f.result(LONG).unwrap(), Ok(Value::I64(2)));
    assert_eq!(c.sync(-1).unwrap(), vec![("x".to_owned(), Value::I64(7))]);
}

// ---- streams

use dime::rpc::{Next, StreamOptions};
use std::sync::atomic::AtomicUsize;

/// Produces `count` items 0..count for each stream call, counting what it
/// sent in `sent`; stops when the consumer goes.
fn produce(
    rpc: Arc<Rpc>,
    count: i64,
    sent: Arc<AtomicUsize>,
    stopped_early: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let Ok(Some(call)) = rpc.next_call(LONG) else {
            return;
        };
        assert!(call.stream);
        for i in 0..count {
            match rpc.stream_send_value(call.id, &Value::I64(i), LONG) {
                Ok(true) => {
                    sent.fetch_add(1, Ordering::SeqCst);
                }
                Ok(false) => {
                    stopped_early.store(true, Ordering::SeqCst);
                    break;
                }
                Err(e) => panic!("{e}"),
            }
        }
        rpc.stream_end(call.id).unwrap();
    })
}

#[test]
fn a_stream_delivers_every_item_in_order_then_ends() {
    let srv = TestServer::start();
    let provider = Arc::new(endpoint(&srv));
    provider.provide("count", 1).unwrap();
    let consumer = endpoint(&srv);
    for n in [0i64, 1, 100_000] {
        let sent = Arc::new(AtomicUsize::new(0));
        let early = Arc::new(AtomicBool::new(false));
        let t = produce(provider.clone(), n, sent.clone(), early.clone());
        let mut s = consumer
            .open_stream(
                "count",
                &Value::Null,
                StreamOptions {
                    items: 64,
                    bytes: 1 << 20,
                },
                None,
            )
            .unwrap();
        let mut expect = 0;
        while let Some(v) = s.next_value(LONG).unwrap() {
            assert_eq!(v, Value::I64(expect));
            expect += 1;
        }
        assert_eq!(expect, n);
        assert!(s.is_finished());
        t.join().unwrap();
        assert!(!early.load(Ordering::SeqCst));
    }
}

#[test]
fn a_full_window_stops_the_producer_until_the_consumer_reads() {
    let srv = TestServer::start();
    let provider = Arc::new(endpoint(&srv));
    provider.provide("count", 1).unwrap();
    let consumer = endpoint(&srv);
    let sent = Arc::new(AtomicUsize::new(0));
    let early = Arc::new(AtomicBool::new(false));
    let t = produce(provider.clone(), 1000, sent.clone(), early.clone());
    let mut s = consumer
        .open_stream(
            "count",
            &Value::Null,
            StreamOptions {
                items: 4,
                bytes: 1 << 20,
            },
            None,
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        sent.load(Ordering::SeqCst),
        4,
        "the producer ran past the window"
    );
    // Reading half the window grants that much room again.
    for i in 0..2 {
        assert_eq!(s.next_value(LONG).unwrap(), Some(Value::I64(i)));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(sent.load(Ordering::SeqCst), 6);
    // A byte window holds items back too.
    drop(s);
    t.join().unwrap();
    assert!(early.load(Ordering::SeqCst));
    let sent = Arc::new(AtomicUsize::new(0));
    let t = produce(provider.clone(), 1000, sent.clone(), early.clone());
    let s = consumer
        .open_stream(
            "count",
            &Value::Null,
            StreamOptions {
                items: 1000,
                bytes: 30,
            },
            None,
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let n = sent.load(Ordering::SeqCst);
    assert!((1..10).contains(&n), "sent {n} items into a 30-byte window");
    drop(s);
    t.join().unwrap();
}

#[test]
fn closing_a_stream_early_stops_its_producer_within_one_item() {
    let srv = TestServer::start();
    let provider = Arc::new(endpoint(&srv));
    provider.provide("count", 1).unwrap();
    let consumer = endpoint(&srv);
    let sent = Arc::new(AtomicUsize::new(0));
    let early = Arc::new(AtomicBool::new(false));
    let t = produce(provider.clone(), i64::MAX, sent.clone(), early.clone());
    let mut s = consumer
        .open_stream(
            "count",
            &Value::Null,
            StreamOptions {
                items: 8,
                bytes: 1 << 20,
            },
            None,
        )
        .unwrap();
    for i in 0..3 {
        assert_eq!(s.next_value(LONG).unwrap(), Some(Value::I64(i)));
    }
    s.close();
    t.join().unwrap();
    assert!(early.load(Ordering::SeqCst));
    assert!(sent.load(Ordering::SeqCst) <= 3 + 8 + 1);
    // The provider's slot is free again: a new stream runs.
    let t = produce(provider.clone(), 2, Arc::default(), Arc::default());
    let mut s = consumer
        .open_stream("count", &Value::Null, StreamOptions::default(), None)
        .unwrap();
    assert_eq!(s.next_value(LONG).unwrap(), Some(Value::I64(0)));
    assert_eq!(s.next_value(LONG).unwrap(), Some(Value::I64(1)));
    assert_eq!(s.next_value(LONG).unwrap(), None);
    t.join().unwrap();
}

#[test]
fn a_producer_error_or_death_ends_the_stream_after_its_items() {
    let srv = TestServer::start();
    let provider = endpoint(&srv);
    provider.provide("gen", 2).unwrap();
    let consumer = endpoint(&srv);
    let mut a = consumer
        .open_stream("gen", &Value::Null, StreamOptions::default(), None)
        .unwrap();
    let b = consumer
        .open_stream("gen", &Value::Null, StreamOptions::default(), None)
        .unwrap();
    // Two consumers, two generators.
    let c1 = provider.next_call(LONG).unwrap().unwrap();
    let c2 = provider.next_call(LONG).unwrap().unwrap();
    assert_ne!(c1.id, c2.id);
    let (ca, cb) = (c1.id, c2.id);
    provider
        .stream_send_value(ca, &Value::I64(1), LONG)
        .unwrap();
    provider
        .stream_send_value(ca, &Value::I64(2), LONG)
        .unwrap();
    provider
        .reply_error(ca, "RuntimeError", "generator broke", "tb")
        .unwrap();
    provider
        .stream_send_value(cb, &Value::from("x"), LONG)
        .unwrap();
    // Which reader got which call is up to the broker: find out.
    let (mut first, mut second) = match a.next(LONG).unwrap() {
        Next::Item(buf) if dime::codec::dimeb::decode(&buf).unwrap() == Value::I64(1) => (a, b),
        Next::Item(_) => {
            let mut b2 = b;
            assert_eq!(b2.next_value(LONG).unwrap(), Some(Value::I64(1)));
            (b2, a)
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(first.next_value(LONG).unwrap(), Some(Value::I64(2)));
    match first.next(LONG) {
        Err(CallError::Remote {
            error_type,
            message,
            ..
        }) => {
            assert_eq!(
                (error_type.as_str(), message.as_str()),
                ("RuntimeError", "generator broke")
            );
        }
        other => panic!("expected the producer's error, got {other:?}"),
    }
    assert_eq!(second.next_value(LONG).unwrap(), Some(Value::from("x")));
    provider.close();
    match second.next(LONG) {
        Err(CallError::ProviderLost(_)) => {}
        other => panic!("expected provider lost, got {other:?}"),
    }
}

#[test]
fn the_broker_ends_a_stream_whose_producer_ignores_the_window() {
    let srv = TestServer::start();
    let mut raw = srv.raw();
    assert_eq!(
        raw.call(json!({"command": "handshake", "serialization": "dimeb"}))["status"],
        0
    );
    assert_eq!(
        raw.call(json!({"command": "provide", "function": "rude"}))["status"],
        0
    );
    let consumer = endpoint(&srv);
    let mut s = consumer
        .open_stream(
            "rude",
            &Value::Null,
            StreamOptions {
                items: 2,
                bytes: 1 << 20,
            },
            None,
        )
        .unwrap();
    let (push, _) = raw.recv();
    assert_eq!(push["stream"], true);
    assert_eq!(push["items"], 2);
    let k = push["call"].as_u64().unwrap();
    let item = dime::codec::dimeb::encode(&Value::I64(7)).unwrap();
    for _ in 0..3 {
        raw.send(json!({"command": "yield", "call": k}), &item);
    }
    assert_eq!(s.next_value(LONG).unwrap(), Some(Value::I64(7)));
    assert_eq!(s.next_value(LONG).unwrap(), Some(Value::I64(7)));
    match s.next(LONG) {
        Err(CallError::Refused(m)) => assert!(m.contains("window"), "{m}"),
        other => panic!("expected the broker to end the stream, got {other:?}"),
    }
    // The producer is told to stop.
    let (cancel, _) = raw.recv();
    assert_eq!(cancel["cancel"], k);
}
