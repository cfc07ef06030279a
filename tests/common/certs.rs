//! Test certificates, made on the spot with rcgen: a CA, a server
//! certificate it signs (for localhost and 127.0.0.1), a client
//! certificate it signs, and a second, unrelated CA.
#![allow(dead_code)]

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use std::path::{Path, PathBuf};

/// PEM files in a directory.
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    /// Writes every file into `dir`.
    pub fn new(dir: &Path) -> Pki {
        let root = ca("dime test CA");
        std::fs::write(dir.join("ca.pem"), root.pem()).unwrap();
        leaf(dir, "server", &["localhost", "127.0.0.1"], &root);
        leaf(dir, "client", &["client"], &root);
        leaf(dir, "elsewhere", &["example.org"], &root);
        let other = ca("another CA");
        std::fs::write(dir.join("other-ca.pem"), other.pem()).unwrap();
        leaf(dir, "stranger", &["stranger"], &other);
        Pki {
            dir: dir.to_owned(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The server's files, as the server takes them.
    pub fn server_files(&self, client_ca: bool) -> dime::transport::TlsFiles {
        dime::transport::TlsFiles {
            cert: self.path("server.pem"),
            key: self.path("server.key"),
            client_ca: client_ca.then(|| self.path("ca.pem")),
        }
    }

    /// Client options trusting this CA.
    pub fn trusting(&self) -> dime::transport::TlsClientOptions {
        dime::transport::TlsClientOptions {
            ca: Some(self.path("ca.pem")),
            ..Default::default()
        }
    }
}

/// A self-signed CA named `name`.
pub fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// `NAME.pem` and `NAME.key` in `dir`: a certificate for `sans` signed by
/// `ca`, and its key.
pub fn leaf(dir: &Path, name: &str, sans: &[&str], ca: &CertifiedIssuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap();
    let names: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
    let cert = CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, ca)
        .unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
}
