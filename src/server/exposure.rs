//! The rule that keeps a server from being opened to the network by
//! accident: a listener on an address other than loopback must use TLS
//! (`tls:`, `wss:`) and the server must authenticate clients (`--auth`),
//! unless `--insecure` says the operator means it.

use super::config::Config;
use crate::transport::Address;
use std::io;
use std::net::ToSocketAddrs;

/// Ok if every listener of `config` may start; else an error saying
/// which one, why, and how to proceed.
pub fn check(config: &Config) -> io::Result<()> {
    if config.insecure {
        return Ok(());
    }
    for addr in &config.listen {
        let Some((host, port)) = addr.host_port() else {
            continue;
        };
        if is_loopback(host, port) {
            continue;
        }
        let mut missing = Vec::new();
        if !addr.is_tls() {
            missing.push(match addr {
                Address::Ws(..) => {
                    "TLS (listen on wss: instead of ws:, with --tls-cert and --tls-key)"
                }
                _ => "TLS (listen on tls: instead of tcp:, with --tls-cert and --tls-key)",
            });
        }
        if config.auth_file.is_none() {
            missing.push("authentication (--auth FILE)");
        }
        if !missing.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "refusing to listen on {addr}: it is reachable from other machines, and \
                     without {} anyone who can reach it can read and change everything; \
                     add {}, or pass --insecure if this network is trusted",
                    missing.join(" and "),
                    if missing.len() == 1 { "it" } else { "them" },
                ),
            ));
        }
    }
    Ok(())
}

/// Whether `host` resolves to loopback addresses only (an unresolvable
/// host fails later, when binding, with its own error).
fn is_loopback(host: &str, port: u16) -> bool {
    match (host, port).to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<_> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
        }
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn config(listen: &str, auth: bool) -> Config {
        Config {
            listen: vec![Address::parse(listen).unwrap()],
            auth_file: auth.then(|| PathBuf::from("users")),
            ..Config::default()
        }
    }

    #[test]
    fn network_listeners_need_tls_and_auth() {
        for ok in [
            "unix:/tmp/x.sock",
            "tcp:127.0.0.1:1",
            "ws:[::1]:1",
            "tcp:localhost:1",
        ] {
            check(&config(ok, false)).unwrap();
        }
        check(&config("tls:0.0.0.0:1", true)).unwrap();
        check(&config("wss:0.0.0.0:1", true)).unwrap();
        let e = check(&config("tcp:0.0.0.0:1", true))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tcp:0.0.0.0:1") && e.contains("TLS") && !e.contains("--auth"),
            "{e}"
        );
        let e = check(&config("tls:0.0.0.0:1", false))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--auth") && e.contains("--insecure"), "{e}");
        let e = check(&config("ws:0.0.0.0:1", false))
            .unwrap_err()
            .to_string();
        assert!(e.contains("wss:") && e.contains("--auth"), "{e}");
        let mut c = config("tcp:0.0.0.0:1", false);
        c.insecure = true;
        check(&c).unwrap();
    }
}
