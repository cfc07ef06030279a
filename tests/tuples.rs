//! Tuple spaces: Linda's out/in/rd with pattern matching.

mod common;

use common::TestServer;
use dime::pattern::Field;
use dime::{Error, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn s(x: &str) -> Value {
    Value::from(x)
}

fn int() -> Field {
    Field::Type("int".into())
}

#[test]
fn out_then_take_and_read_with_every_field_kind() {
    let srv = TestServer::start();
    let mut c = srv.client();
    let mut ts = c.space("");
    ts.out(&[s("point"), Value::I64(1), Value::F64(2.5)])
        .unwrap();
    ts.out(&[s("point"), Value::I64(2), Value::F64(20.0)])
        .unwrap();
    ts.out(&[s("other"), Value::I64(3)]).unwrap();
    let p = [Field::Value(s("point")), int(), Field::Type("float".into())];
    assert_eq!(ts.count(&p).unwrap(), 2);
    // rd copies, oldest first.
    assert_eq!(ts.read(&p, None).unwrap()[1], Value::I64(1));
    assert_eq!(ts.count(&p).unwrap(), 2);
    let ranged = [
        Field::Value(s("point")),
        Field::Any,
        Field::Range {
            min: Some(10.0),
            max: None,
        },
    ];
    assert_eq!(ts.take(&ranged, None).unwrap()[1], Value::I64(2));
    // Arity must match.
    assert_eq!(ts.try_take(&[Field::Value(s("other"))]).unwrap(), None);
    assert_eq!(
        ts.try_take(&[Field::Any, Field::Any]).unwrap(),
        Some(vec![s("other"), Value::I64(3)])
    );
    assert_eq!(ts.try_read(&[Field::Any, Field::Any]).unwrap(), None);
    let m = dime::Matrix::from_elems(vec![2, 2], &[1.0f64, 2.0, 3.0, 4.0]).unwrap();
    ts.out(&[Value::Matrix(m.clone())]).unwrap();
    let wrong = [Field::Matrix {
        class: Some(dime::ElemKind::I32),
        rank: None,
    }];
    assert_eq!(ts.try_read(&wrong).unwrap(), None);
    let right = [Field::Matrix {
        class: Some(dime::ElemKind::F64),
        rank: Some(2),
    }];
    assert_eq!(ts.try_take(&right).unwrap(), Some(vec![Value::Matrix(m)]));
}

#[test]
fn bad_patterns_are_errors_and_the_connection_stays_usable() {
    let srv = TestServer::start();
    let mut c = srv.client();
    let err = c
        .space("")
        .try_take(&[Field::Type("quaternion".into())])
        .unwrap_err()
        .to_string();
    assert!(err.contains("quaternion"), "{err}");
    c.space("").out(&[Value::I64(1)]).unwrap();
}

#[test]
fn blocking_take_wakes_on_out_and_times_out() {
    let srv = TestServer::start();
    let mut c = srv.client();
    let t = Instant::now();
    assert!(matches!(
        c.space("").take(&[int()], Some(Duration::from_millis(100))),
        Err(Error::Timeout)
    ));
    assert!(t.elapsed() >= Duration::from_millis(90));
    // The timed-out request never takes a tuple afterwards.
    let mut d = srv.client();
    d.space("").out(&[Value::I64(5)]).unwrap();
    assert_eq!(d.space("").count(&[int()]).unwrap(), 1);
    let addr = srv.unix();
    let producer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        dime::Client::connect(&addr)
            .unwrap()
            .space("")
            .out(&[s("late")])
            .unwrap();
    });
    assert_eq!(
        c.space("")
            .take(
                &[Field::Type("string".into())],
                Some(Duration::from_secs(5))
            )
            .unwrap(),
        vec![s("late")]
    );
    producer.join().unwrap();
}

#[test]
fn readers_all_get_copies_and_the_oldest_taker_gets_the_tuple() {
    let srv = TestServer::start();
    let got = Arc::new(Mutex::new(Vec::new()));
    let mut threads = Vec::new();
    for (i, take) in [(0, false), (1, true), (2, false), (3, true)] {
        let addr = srv.unix();
        let got = got.clone();
        threads.push(std::thread::spawn(move || {
            let mut c = dime::Client::connect(&addr).unwrap();
            let r = if take {
                c.space("").take(&[int()], Some(Duration::from_secs(2)))
            } else {
                c.space("").read(&[int()], Some(Duration::from_secs(2)))
            };
            got.lock().unwrap().push((i, r.is_ok()));
        }));
        std::thread::sleep(Duration::from_millis(80));
    }
    let mut c = srv.client();
    c.space("").out(&[Value::I64(1)]).unwrap();
    for t in threads {
        t.join().unwrap();
    }
    let mut got = got.lock().unwrap().clone();
    got.sort();
    // Both readers and the first taker succeed; the second taker times out.
    assert_eq!(got, [(0, true), (1, true), (2, true), (3, false)]);
    assert_eq!(c.space("").count(&[int()]).unwrap(), 0);
}

#[test]
fn a_disconnected_waiter_takes_nothing() {
    let srv = TestServer::start();
    {
        let mut r = srv.raw();
        r.send(
            serde_json::json!({"command": "ts_in", "pattern": [{"any": true}]}),
            &[0x21, 0, 0, 0, 0],
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(50));
    let mut c = srv.client();
    c.space("").out(&[Value::I64(9)]).unwrap();
    assert_eq!(c.space("").count(&[Field::Any]).unwrap(), 1);
}

#[test]
fn lindypy_sum_example_with_five_workers() {
    // Workers take ("add", a, b, c, d) tuples and put ("part", a+b+c+d);
    // the main thread sums the parts into ("sum", n).
    let srv = TestServer::start();
    let mut main = srv.client();
    let n_tasks = 200i64;
    for i in 0..n_tasks {
        main.space("")
            .out(&[
                s("add"),
                Value::I64(i),
                Value::I64(2 * i),
                Value::I64(3),
                Value::I64(-i),
            ])
            .unwrap();
    }
    for _ in 0..5 {
        main.space("")
            .out(&[s("add"), Value::Null, Value::Null, Value::Null, Value::Null])
            .unwrap();
    }
    let workers: Vec<_> = (0..5)
        .map(|_| {
            let addr = srv.unix();
            std::thread::spawn(move || {
                let mut c = dime::Client::connect(&addr).unwrap();
                let pat = [
                    Field::Value(s("add")),
                    Field::Any,
                    Field::Any,
                    Field::Any,
                    Field::Any,
                ];
                loop {
                    let t = c.space("").take(&pat, None).unwrap();
                    let nums: Vec<i64> = t[1..]
                        .iter()
                        .filter_map(|v| {
                            if let Value::I64(x) = v {
                                Some(*x)
                            } else {
                                None
                            }
                        })
                        .collect();
                    if nums.is_empty() {
                        break;
                    }
                    c.space("")
                        .out(&[s("part"), Value::I64(nums.iter().sum())])
                        .unwrap();
                }
            })
        })
        .collect();
    let mut total = 0;
    for _ in 0..n_tasks {
        let t = main
            .space("")
            .take(
                &[Field::Value(s("part")), int()],
                Some(Duration::from_secs(10)),
            )
            .unwrap();
        let Value::I64(x) = t[1] else { panic!() };
        total += x;
    }
    for w in workers {
        w.join().unwrap();
    }
    main.space("").out(&[s("sum"), Value::I64(total)]).unwrap();
    let expected: i64 = (0..n_tasks).map(|i| 2 * i + 3).sum();
    assert_eq!(
        main.space("")
            .take(&[Field::Value(s("sum")), int()], None)
            .unwrap()[1],
        Value::I64(expected)
    );
}

#[test]
fn eight_clients_times_10000_out_and_in_lose_and_duplicate_nothing() {
    let srv = TestServer::start();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..8i64)
        .map(|w| {
            let addr = srv.unix();
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut c = dime::Client::connect(&addr).unwrap();
                let mut mine = Vec::new();
                for i in 0..10_000i64 {
                    c.space("x").out(&[Value::I64(w * 1_000_000 + i)]).unwrap();
                    let t = c
                        .space("x")
                        .take(&[int()], Some(Duration::from_secs(10)))
                        .unwrap();
                    let Value::I64(v) = t[0] else { panic!() };
                    mine.push(v);
                }
                seen.lock().unwrap().extend(mine);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    let mut want: Vec<i64> = (0..8i64)
        .flat_map(|w| (0..10_000).map(move |i| w * 1_000_000 + i))
        .collect();
    want.sort();
    assert_eq!(seen, want);
}

#[test]
fn indexed_lookup_skips_non_matching_tuples() {
    let srv = TestServer::start();
    let mut c = srv.client();
    for i in 0..20_000i64 {
        c.space("big").out(&[s("noise"), Value::I64(i)]).unwrap();
    }
    c.space("big").out(&[s("needle"), Value::I64(1)]).unwrap();
    assert_eq!(
        c.space("big")
            .try_take(&[Field::Value(s("needle")), int()])
            .unwrap(),
        Some(vec![s("needle"), Value::I64(1)])
    );
    assert_eq!(
        c.space("big")
            .count(&[Field::Value(s("noise")), int()])
            .unwrap(),
        20_000
    );
}
