//! In-process providers (`Server::local_provider`): functions served by
//! threads of the broker's process, called like any provider's, with
//! errors passed on and the queue closed when the broker stops.

use dime::Value;
use dime::codec::dimeb;
use dime::rpc::{CallError, Rpc, RpcOptions};
use dime::server::{Config, Server};
use dime::transport::Address;
use std::time::Duration;

#[test]
fn local_providers_answer_calls_and_stop_with_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::bind(Config {
        listen: vec![Address::Unix(dir.path().join("b.sock"))],
        ..Config::default()
    })
    .unwrap();
    let provider = server.local_provider(&["double"], 2);
    let address = server.local_addrs()[0].clone();
    let stop = server.shutdown_handle();
    let broker = std::thread::spawn(move || server.run());
    let worker = {
        let p = provider.clone();
        std::thread::spawn(move || {
            let mut served = 0;
            while let Some(call) = p.next_call(None) {
                assert_eq!(&*call.function, "double");
                let reply = match dimeb::decode(&call.args).unwrap() {
                    Value::I64(i) => Ok(dime::buffer::PooledBuf::from_vec(
                        dimeb::encode(&Value::I64(2 * i)).unwrap(),
                    )
                    .into()),
                    other => Err(("ValueError".to_owned(), format!("cannot double {other:?}"))),
                };
                p.reply(call.id, reply);
                served += 1;
            }
            served
        })
    };
    let rpc = Rpc::connect(&address, RpcOptions::default()).unwrap();
    let calls: Vec<_> = (0..20)
        .map(|i| rpc.call("double", &Value::I64(i), None).unwrap())
        .collect();
    for (i, f) in calls.iter().enumerate() {
        let got = f.result(Some(Duration::from_secs(10))).unwrap();
        assert_eq!(got, Ok(Value::I64(2 * i as i64)));
    }
    let bad = rpc.call("double", &Value::from("x"), None).unwrap();
    match bad.result(Some(Duration::from_secs(10))).unwrap() {
        Err(CallError::Remote {
            error_type,
            message,
            ..
        }) => {
            assert_eq!(error_type, "ValueError");
            assert!(message.contains("cannot double"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!provider.is_closed());
    stop.shutdown();
    broker.join().unwrap().unwrap();
    // The worker's wait ends when the broker stops.
    assert_eq!(worker.join().unwrap(), 21);
    assert!(provider.is_closed());
    assert!(provider.next_call(Some(Duration::from_millis(1))).is_none());
}

/// A reply may leave its middle in a file: the broker sends those bytes
/// from the file, between the bytes before and after them.
#[test]
fn a_local_reply_may_send_part_of_a_file() {
    use dime::server::local::{FileSpan, LocalReply};
    let dir = tempfile::tempdir().unwrap();
    let text: String = (0..200_000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    std::fs::write(dir.path().join("t"), &text).unwrap();
    let mut server = Server::bind(Config {
        listen: vec![Address::Unix(dir.path().join("b.sock"))],
        ..Config::default()
    })
    .unwrap();
    let provider = server.local_provider(&["slice"], 1);
    let address = server.local_addrs()[0].clone();
    let stop = server.shutdown_handle();
    let broker = std::thread::spawn(move || server.run());
    let path = dir.path().join("t");
    let worker = std::thread::spawn(move || {
        while let Some(call) = provider.next_call(None) {
            let Ok(Value::I64(from)) = dimeb::decode(&call.args) else {
                panic!("not an offset");
            };
            // A dimeb string: tag, length, then the bytes (the file's).
            let len = 150_000usize;
            let mut head = vec![0x20];
            head.extend_from_slice(&(len as u32).to_be_bytes());
            let span = FileSpan {
                file: std::fs::File::open(&path).unwrap(),
                offset: from as u64,
                len,
            };
            let reply = LocalReply::WithFile {
                head,
                span,
                tail: Vec::new(),
            };
            provider.reply(call.id, Ok(reply));
        }
    });
    let rpc = Rpc::connect(&address, RpcOptions::default()).unwrap();
    for from in [0usize, 12_345] {
        let f = rpc.call("slice", &Value::I64(from as i64), None).unwrap();
        let got = f.result(Some(Duration::from_secs(10))).unwrap();
        assert_eq!(got, Ok(Value::from(&text[from..from + 150_000])));
    }
    stop.shutdown();
    broker.join().unwrap().unwrap();
    worker.join().unwrap();
}
