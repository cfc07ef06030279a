//! The committed test certificates in `tests/fixtures/tls/`, which the
//! Python, MATLAB and JavaScript suites use so that no suite needs a
//! certificate tool (the Rust tests make theirs on the spot, with the
//! same `common::certs`). `DIME_BLESS_TLS_FIXTURES=1 cargo test --test
//! tls_fixtures` makes them afresh with rcgen (valid until 4096); without
//! it this checks that a real server serving them is accepted, for the
//! names the suites connect to, by a client trusting `ca.pem`, and refused
//! by one trusting `other-ca.pem`.

mod common;

use common::TestServer;
use common::certs::{ca, leaf};
use dime::client::ConnectOptions;
use dime::transport::{Address, TlsClientOptions, TlsFiles};
use dime::{Client, Error};
use std::path::{Path, PathBuf};

/// The directory of the fixtures.
fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls")
}

/// Writes every fixture: a CA (`ca.pem`; its key is not kept), a server
/// certificate for localhost and 127.0.0.1 and a client certificate it
/// signed (`server.pem`/`.key`, `client.pem`/`.key`), and an unrelated CA
/// (`other-ca.pem`).
fn bless(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let root = ca("dime test CA");
    std::fs::write(dir.join("ca.pem"), root.pem()).unwrap();
    leaf(dir, "server", &["localhost", "127.0.0.1"], &root);
    leaf(dir, "client", &["client"], &root);
    std::fs::write(dir.join("other-ca.pem"), ca("another CA").pem()).unwrap();
}

fn connect(addr: &str, ca: &str, client_cert: bool) -> Result<Client, Error> {
    let tls = TlsClientOptions {
        ca: Some(dir().join(ca)),
        cert: client_cert.then(|| dir().join("client.pem")),
        key: client_cert.then(|| dir().join("client.key")),
    };
    Client::connect_with(
        addr,
        ConnectOptions {
            tls,
            ..ConnectOptions::default()
        },
    )
}

#[test]
fn the_fixtures_serve_tls_to_clients_trusting_their_ca() {
    if std::env::var_os("DIME_BLESS_TLS_FIXTURES").is_some() {
        bless(&dir());
    }
    let srv = TestServer::start_with(|c| {
        c.listen.push(Address::Tls("127.0.0.1".into(), 0));
        c.tls = Some(TlsFiles {
            cert: dir().join("server.pem"),
            key: dir().join("server.key"),
            client_ca: Some(dir().join("ca.pem")),
        });
    });
    let port = srv.addrs[1].rsplit(':').next().unwrap().to_owned();
    for host in ["localhost", "127.0.0.1"] {
        let addr = format!("tls:{host}:{port}");
        let mut c = connect(&addr, "ca.pem", true).unwrap_or_else(|e| panic!("{addr}: {e}"));
        c.join(&["fixtures"]).unwrap();
        assert_eq!(c.devices().unwrap(), vec!["fixtures".to_owned()]);
        let e = connect(&addr, "other-ca.pem", true).err().unwrap();
        assert!(
            e.to_string()
                .contains("not signed by a trusted certificate authority"),
            "{e}"
        );
    }
}
