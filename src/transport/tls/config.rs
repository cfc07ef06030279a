//! Building rustls configurations from PEM files: the server's certificate
//! and key (and, optionally, the CA its clients' certificates must be
//! signed by), and a client's trusted roots and optional certificate.
//! Every error names the file and what is wrong with it.

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The PEM files a TLS listener (`tls:`, `wss:`) serves with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key of the leaf certificate.
    pub key: PathBuf,
    /// When set, only clients presenting a certificate signed by this CA
    /// complete the handshake.
    pub client_ca: Option<PathBuf>,
}

/// How a client checks its server, and what it presents itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsClientOptions {
    /// Trust the CA certificates in this PEM file instead of the system's.
    pub ca: Option<PathBuf>,
    /// A client certificate chain (for a server started with
    /// `--tls-client-ca`), with its key in `key`.
    pub cert: Option<PathBuf>,
    /// The private key of `cert`.
    pub key: Option<PathBuf>,
}

impl TlsClientOptions {
    /// Options from the environment: `DIME_TLS_CA` (a PEM file of CA
    /// certificates to trust instead of the system's), `DIME_TLS_CERT` and
    /// `DIME_TLS_KEY` (a client certificate and its key). Unset or empty
    /// variables leave the option unset.
    pub fn from_env() -> TlsClientOptions {
        let var = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        TlsClientOptions {
            ca: var("DIME_TLS_CA"),
            cert: var("DIME_TLS_CERT"),
            key: var("DIME_TLS_KEY"),
        }
    }
}

/// The one crypto provider this crate uses (ring: no C toolchain beyond
/// a compiler, no OpenSSL).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Every certificate in the PEM file at `path` (at least one).
pub(crate) fn load_certs(path: &Path, what: &str) -> io::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| invalid(format!("{what} {}: {}", path.display(), pem_error(&e))))?;
    if certs.is_empty() {
        return Err(invalid(format!(
            "{what} {}: no \"BEGIN CERTIFICATE\" block in the file",
            path.display()
        )));
    }
    Ok(certs)
}

/// The private key in the PEM file at `path`.
fn load_key(path: &Path) -> io::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        invalid(format!(
            "TLS key file {}: {}",
            path.display(),
            match e {
                rustls_pki_types::pem::Error::NoItemsFound =>
                    "no private key (\"BEGIN PRIVATE KEY\", \"BEGIN EC PRIVATE KEY\" or \"BEGIN RSA PRIVATE KEY\" block) in the file".to_owned(),
                e => pem_error(&e),
            }
        ))
    })
}

fn pem_error(e: &rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::Io(e) => e.to_string(),
        rustls_pki_types::pem::Error::NoItemsFound => "nothing found in the file".to_owned(),
        other => format!("not valid PEM ({other:?})"),
    }
}

/// A root store holding every certificate of the PEM file at `path`.
fn roots_from(path: &Path, what: &str) -> io::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path, what)? {
        roots
            .add(cert)
            .map_err(|e| invalid(format!("{what} {}: {e}", path.display())))?;
    }
    Ok(roots)
}

/// The system's trusted roots (as `rustls-native-certs` finds them).
fn system_roots() -> io::Result<RootCertStore> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        return Err(invalid(format!(
            "no system CA certificates found{why}; name the server's CA with DIME_TLS_CA or the tls_ca option"
        )));
    }
    Ok(roots)
}

/// A server configuration from `files`: its certificate and key, and the
/// client-certificate check when `client_ca` is set.
pub fn server_config(files: &TlsFiles) -> io::Result<Arc<ServerConfig>> {
    let certs = load_certs(&files.cert, "TLS certificate file")?;
    let key = load_key(&files.key)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(format!("TLS: {e}")))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let roots = roots_from(ca, "TLS client CA file")?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| invalid(format!("TLS client CA file {}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_single_cert(certs, key).map_err(|e| {
        invalid(format!(
            "TLS certificate {} and key {} do not go together: {e}",
            files.cert.display(),
            files.key.display()
        ))
    })?;
    Ok(Arc::new(config))
}

/// A client configuration from `opts`: roots from `ca` (else the
/// system's), and a client certificate when `cert` and `key` are set.
pub fn client_config(opts: &TlsClientOptions) -> io::Result<Arc<ClientConfig>> {
    if opts.cert.is_some() != opts.key.is_some() {
        return Err(invalid(
            "a TLS client certificate needs both a certificate and a key file (DIME_TLS_CERT and DIME_TLS_KEY)"
                .to_owned(),
        ));
    }
    let roots = match &opts.ca {
        Some(ca) => roots_from(ca, "TLS CA file")?,
        None => system_roots()?,
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(format!("TLS: {e}")))?
        .with_root_certificates(roots);
    let config = match (&opts.cert, &opts.key) {
        (Some(cert), Some(key)) => {
            let certs = load_certs(cert, "TLS client certificate file")?;
            let key_der = load_key(key)?;
            builder.with_client_auth_cert(certs, key_der).map_err(|e| {
                invalid(format!(
                    "TLS client certificate {} and key {} do not go together: {e}",
                    cert.display(),
                    key.display()
                ))
            })?
        }
        // Neither (one alone was refused above).
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_empty_files_are_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let files = TlsFiles {
            cert: missing.clone(),
            key: missing.clone(),
            client_ca: None,
        };
        let e = server_config(&files).unwrap_err().to_string();
        assert!(e.contains("nope.pem"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "hello\n").unwrap();
        let e = client_config(&TlsClientOptions {
            ca: Some(empty),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("empty.pem") && e.contains("BEGIN CERTIFICATE"),
            "{e}"
        );
    }

    #[test]
    fn a_client_certificate_needs_its_key() {
        let e = client_config(&TlsClientOptions {
            ca: None,
            cert: Some("c.pem".into()),
            key: None,
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("both"), "{e}");
    }
}
