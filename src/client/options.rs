//! How a client connects: the token it presents in the handshake and how
//! it checks a TLS server. Every client (the Rust [`super::Client`], the
//! remote-call endpoint, the C ABI and the bindings over it) takes these,
//! by default from the environment.

use crate::transport::TlsClientOptions;
use serde_json::{Value as Json, json};
use std::fmt;

/// Credentials and TLS settings for connecting.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ConnectOptions {
    /// The token presented in the handshake, for a server started with
    /// `--auth` (an `"auth"` extension; servers without `--auth` ignore it).
    pub token: Option<String>,
    /// How a `tls:`/`wss:` server is checked, and the client certificate.
    pub tls: TlsClientOptions,
}

impl ConnectOptions {
    /// Options from the environment: `DIME_TOKEN`, and the TLS variables
    /// of [`TlsClientOptions::from_env`] (`DIME_TLS_CA`, `DIME_TLS_CERT`,
    /// `DIME_TLS_KEY`). Unset or empty variables leave an option unset.
    pub fn from_env() -> ConnectOptions {
        ConnectOptions {
            token: std::env::var("DIME_TOKEN").ok().filter(|t| !t.is_empty()),
            tls: TlsClientOptions::from_env(),
        }
    }

    /// The handshake request: dimeb, plus the token when there is one.
    /// (`"tls": false` is DiME2's in-band upgrade flag, never used: a
    /// `tls:` connection is encrypted from its first byte.)
    pub(crate) fn handshake(&self) -> Json {
        let mut h = json!({"command": "handshake", "serialization": "dimeb", "tls": false});
        if let Some(t) = &self.token {
            h["token"] = Json::String(t.clone());
        }
        h
    }
}

impl fmt::Debug for ConnectOptions {
    // The token is a secret: logs and panics never show it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .field("tls", &self.tls)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_goes_in_the_handshake_and_never_in_debug_output() {
        let o = ConnectOptions {
            token: Some("s3cret".into()),
            ..Default::default()
        };
        assert_eq!(o.handshake()["token"], "s3cret");
        assert!(!format!("{o:?}").contains("s3cret"));
        assert!(ConnectOptions::default().handshake().get("token").is_none());
    }
}
