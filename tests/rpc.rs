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
        // Answering the gone caller's call is harmless.
        std::thread::sleep(Duration::from_millis(50));
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
    assert!(*made.lock().unwrap());
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
        raw.send(json!({"status": 0, "serialization": "dimeb"}), &[]);
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
