//! Thousands of simultaneous clients (the original server's select() loop
//! hangs at the 1,021st).

mod common;

use common::TestServer;
use dime::Value;

fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}

#[test]
fn thousands_of_clients_are_all_served() {
    let limit = raise_fd_limit();
    // Client and server share this process: two descriptors per client.
    let n = 3000.min((limit.saturating_sub(100) / 2) as usize) / 100 * 100;
    assert!(
        n > 1100,
        "open-file hard limit {limit} is too low to test past select()'s cap"
    );
    let srv = TestServer::start();
    let mut clients: Vec<_> = (0..n).map(|_| srv.client()).collect();
    for (i, c) in clients.iter_mut().enumerate().step_by(100) {
        c.join(&[&format!("g{i}")]).unwrap();
    }
    let mut last = clients.pop().unwrap();
    last.broadcast("all", &Value::I64(1)).unwrap();
    for c in clients.iter_mut() {
        assert_eq!(c.sync(-1).unwrap(), vec![("all".to_owned(), Value::I64(1))]);
    }
    assert_eq!(last.devices().unwrap().len(), n / 100);
}
