//! Address syntax shared by the server's `-l` flag and clients.

use std::fmt;
use std::path::PathBuf;

/// Where a listener binds or a client connects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// Unix domain socket at a path.
    Unix(PathBuf),
    /// TCP host (name or IP) and port.
    Tcp(String, u16),
    /// WebSocket over TCP: host and port.
    Ws(String, u16),
    /// TLS over TCP: host and port.
    Tls(String, u16),
    /// WebSocket over TLS: host and port.
    Wss(String, u16),
}

impl Address {
    /// Parses `unix:PATH`, `ipc:PATH`, `unix:///PATH`, `tcp:PORT` (loopback),
    /// `tcp:HOST:PORT`, `tcp://HOST:PORT`, the same three forms for `tls`,
    /// `ws` and `wss` (`ws://HOST:PORT/` as browsers write it) and `[v6]`
    /// hosts.
    pub fn parse(s: &str) -> Result<Address, String> {
        let (scheme, rest) = s.split_once(':').ok_or_else(|| {
            format!(
                "address '{s}' has no scheme; use unix:PATH, tcp:[HOST:]PORT, tls:[HOST:]PORT, \
                 ws:[HOST:]PORT or wss:[HOST:]PORT"
            )
        })?;
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        match scheme {
            "unix" | "ipc" => {
                if rest.is_empty() {
                    return Err(format!("address '{s}' has an empty path"));
                }
                Ok(Address::Unix(PathBuf::from(rest)))
            }
            "tcp" | "tls" | "ws" | "wss" => {
                // A URL's root path is allowed for ws (`ws://h:8889/`).
                let rest = if scheme.starts_with("ws") {
                    rest.strip_suffix('/').unwrap_or(rest)
                } else {
                    rest
                };
                let (host, port) = match rest.rsplit_once(':') {
                    Some((h, p)) => (
                        h.trim_start_matches('[').trim_end_matches(']').to_owned(),
                        p,
                    ),
                    None => ("127.0.0.1".to_owned(), rest),
                };
                let port = port
                    .parse::<u16>()
                    .map_err(|_| format!("address '{s}': '{port}' is not a port number"))?;
                if host.is_empty() {
                    return Err(format!("address '{s}' has an empty host"));
                }
                // Names, IPv4 and IPv6 (with a %zone) only: anything else
                // is a typo, and would not print back as the same address.
                let host_char =
                    |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '%');
                if !host.chars().all(host_char) {
                    return Err(format!(
                        "address '{s}': '{host}' is not a host name or IP address"
                    ));
                }
                Ok(match scheme {
                    "ws" => Address::Ws(host, port),
                    "wss" => Address::Wss(host, port),
                    "tls" => Address::Tls(host, port),
                    _ => Address::Tcp(host, port),
                })
            }
            other => Err(format!(
                "address '{s}': unknown scheme '{other}' (expected unix, ipc, tcp, tls, ws or wss)"
            )),
        }
    }
}

impl Address {
    /// The host and port of a network address; None for a unix socket.
    pub fn host_port(&self) -> Option<(&str, u16)> {
        match self {
            Address::Unix(_) => None,
            Address::Tcp(h, p) | Address::Ws(h, p) | Address::Tls(h, p) | Address::Wss(h, p) => {
                Some((h, *p))
            }
        }
    }

    /// True for the addresses whose traffic is encrypted (`tls`, `wss`).
    pub fn is_tls(&self) -> bool {
        matches!(self, Address::Tls(..) | Address::Wss(..))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self {
            // `unix://` is the URL form, whose `//` parsing drops: a path
            // that itself starts with `//` is written in that form.
            Address::Unix(p) if p.to_string_lossy().starts_with("//") => {
                return write!(f, "unix://{}", p.display());
            }
            Address::Unix(p) => return write!(f, "unix:{}", p.display()),
            Address::Tcp(..) => "tcp",
            Address::Ws(..) => "ws",
            Address::Tls(..) => "tls",
            Address::Wss(..) => "wss",
        };
        match self.host_port() {
            Some((h, p)) if h.contains(':') => write!(f, "{scheme}:[{h}]:{p}"),
            Some((h, p)) => write!(f, "{scheme}:{h}:{p}"),
            None => Ok(()),
        }
    }
}

impl std::str::FromStr for Address {
    type Err = String;
    fn from_str(s: &str) -> Result<Address, String> {
        Address::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(
            Address::parse("unix:/tmp/x").unwrap(),
            Address::Unix("/tmp/x".into())
        );
        assert_eq!(
            Address::parse("ipc:/tmp/x").unwrap(),
            Address::Unix("/tmp/x".into())
        );
        assert_eq!(
            Address::parse("unix:///tmp/x").unwrap(),
            Address::Unix("/tmp/x".into())
        );
        assert_eq!(
            Address::parse("tcp:8888").unwrap(),
            Address::Tcp("127.0.0.1".into(), 8888)
        );
        assert_eq!(
            Address::parse("tcp:0.0.0.0:1").unwrap(),
            Address::Tcp("0.0.0.0".into(), 1)
        );
        assert_eq!(
            Address::parse("tcp://h:2").unwrap(),
            Address::Tcp("h".into(), 2)
        );
        assert_eq!(
            Address::parse("tcp:[::1]:3").unwrap(),
            Address::Tcp("::1".into(), 3)
        );
        assert_eq!(
            Address::parse("tcp:[::1]:3").unwrap().to_string(),
            "tcp:[::1]:3"
        );
        assert_eq!(
            Address::parse("ws:8889").unwrap(),
            Address::Ws("127.0.0.1".into(), 8889)
        );
        assert_eq!(
            Address::parse("ws://0.0.0.0:8889/").unwrap(),
            Address::Ws("0.0.0.0".into(), 8889)
        );
        assert_eq!(
            Address::parse("ws:[::1]:5").unwrap().to_string(),
            "ws:[::1]:5"
        );
        assert_eq!(
            Address::parse("tls://example.org:7").unwrap(),
            Address::Tls("example.org".into(), 7)
        );
        assert_eq!(
            Address::parse("tls:8").unwrap(),
            Address::Tls("127.0.0.1".into(), 8)
        );
        assert_eq!(
            Address::parse("wss://h:9/").unwrap(),
            Address::Wss("h".into(), 9)
        );
        assert_eq!(
            Address::parse("wss:[::1]:5").unwrap().to_string(),
            "wss:[::1]:5"
        );
        assert_eq!(Address::parse("tls:h:5").unwrap().to_string(), "tls:h:5");
        // Found by the fuzzer: a path starting with `//` printed as the URL
        // form, which parses to another path.
        for text in ["unix:////x", "unix://x", "unix:/x", "unix:///x"] {
            let a = Address::parse(text).unwrap();
            assert_eq!(Address::parse(&a.to_string()).unwrap(), a, "{text}");
        }
        for bad in [
            "",
            "x",
            "tcp:",
            "tcp:h:99999",
            "udp:1",
            "unix:",
            "ws:",
            "ws:h:x",
            "tls:",
            "wss:h:x",
            // Found by libFuzzer: printed as `ws://,mp/:5`, which parses
            // to another host.
            "ws:[//,mp/]:5",
            "tcp:a b:1",
        ] {
            assert!(Address::parse(bad).is_err(), "{bad}");
        }
    }
}
