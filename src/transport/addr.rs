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
}

impl Address {
    /// Parses `unix:PATH`, `ipc:PATH`, `unix:///PATH`, `tcp:PORT` (loopback),
    /// `tcp:HOST:PORT`, `tcp://HOST:PORT`, the same three forms for `ws`
    /// (`ws://HOST:PORT/` as browsers write it) and `[v6]` hosts.
    pub fn parse(s: &str) -> Result<Address, String> {
        let (scheme, rest) = s.split_once(':').ok_or_else(|| {
            format!("address '{s}' has no scheme; use unix:PATH, tcp:[HOST:]PORT or ws:[HOST:]PORT")
        })?;
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        match scheme {
            "unix" | "ipc" => {
                if rest.is_empty() {
                    return Err(format!("address '{s}' has an empty path"));
                }
                Ok(Address::Unix(PathBuf::from(rest)))
            }
            "tcp" | "ws" => {
                // A URL's root path is allowed for ws (`ws://h:8889/`).
                let rest = if scheme == "ws" {
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
                if scheme == "ws" {
                    Ok(Address::Ws(host, port))
                } else {
                    Ok(Address::Tcp(host, port))
                }
            }
            other => Err(format!(
                "address '{s}': unknown scheme '{other}' (expected unix, ipc, tcp or ws)"
            )),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(p) => write!(f, "unix:{}", p.display()),
            Address::Tcp(h, p) if h.contains(':') => write!(f, "tcp:[{h}]:{p}"),
            Address::Tcp(h, p) => write!(f, "tcp:{h}:{p}"),
            Address::Ws(h, p) if h.contains(':') => write!(f, "ws:[{h}]:{p}"),
            Address::Ws(h, p) => write!(f, "ws:{h}:{p}"),
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
        for bad in [
            "",
            "x",
            "tcp:",
            "tcp:h:99999",
            "udp:1",
            "unix:",
            "ws:",
            "ws:h:x",
        ] {
            assert!(Address::parse(bad).is_err(), "{bad}");
        }
    }
}
