//! How a client connects: what it asks the server for beyond DiME2 (the
//! matrix layout, shared memory, cut-through relaying), the token it presents in the handshake,
//! and how it checks a TLS server. Every client (the Rust
//! [`super::Client`], the remote-call endpoint, the C ABI and the bindings
//! over it) takes these; `from_env` fills the token and TLS settings from
//! the environment.

use super::shm::DEFAULT_THRESHOLD;
use crate::transport::TlsClientOptions;
use serde_json::{Value as Json, json};
use std::fmt;

/// What a client asks for when it connects. The layout and shared-memory
/// requests apply only where the server announces the extension (with an
/// original DiME2 server everything stays DiME2); the token only matters
/// to a server started with `--auth`; the TLS settings only to `tls:` and
/// `wss:` addresses.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectOptions {
    /// Matrices travel in the layout and byte order they are stored in
    /// (`dimeb_layout`): a C-ordered array is not transposed to send, and
    /// received ones may be row-major ([`crate::Matrix::layout`]). Default on.
    pub layout: bool,
    /// Over a unix socket, payloads of at least `shm_threshold` bytes go
    /// through shared memory (`shm`) instead of the socket, both ways.
    /// Default on.
    pub shm: bool,
    /// The smallest payload sent through shared memory.
    pub shm_threshold: usize,
    /// Take shared-memory payloads from the start (`shm_receive` at
    /// connect). Otherwise the client asks once a large payload has reached
    /// it through the socket: until then relayed messages are read with
    /// plain `recv`, which costs less than `recvmsg` (about 0.2 µs a read),
    /// but that first payload is copied through the broker. Default off;
    /// the C ABI's `dime_connect` (Python, MATLAB) turns it on.
    pub shm_receive_now: bool,
    /// Large messages may reach this client while their sender is still
    /// sending them (`cut_through`): the broker's two hops overlap. A
    /// message whose sender goes away or stalls midway is dropped by this
    /// client before anything returns it. Default off (`DIME_CUT_THROUGH=1`
    /// in [`ConnectOptions::from_env`]): a `sync` that meets such a message
    /// returns only once its last byte has arrived, so a slow sender holds
    /// up this client's other messages behind it, which DiME2 programs do
    /// not expect.
    pub cut_through: bool,
    /// The token presented in the handshake, for a server started with
    /// `--auth` (an `"auth"` extension; servers without `--auth` ignore it).
    /// Default none.
    pub token: Option<String>,
    /// How a `tls:`/`wss:` server is checked (default: against the
    /// system's certificate authorities), and the client certificate.
    pub tls: TlsClientOptions,
}

impl Default for ConnectOptions {
    /// Layout and shared memory on, cut-through off, no token, the system's CAs; nothing
    /// read from the environment (see [`ConnectOptions::from_env`]).
    fn default() -> ConnectOptions {
        ConnectOptions {
            layout: true,
            shm: true,
            shm_threshold: DEFAULT_THRESHOLD,
            shm_receive_now: false,
            cut_through: false,
            token: None,
            tls: TlsClientOptions::default(),
        }
    }
}

impl ConnectOptions {
    /// The defaults, with the token and TLS settings of the environment:
    /// `DIME_TOKEN`, and the variables of [`TlsClientOptions::from_env`]
    /// (`DIME_TLS_CA`, `DIME_TLS_CERT`, `DIME_TLS_KEY`). Unset or empty
    /// variables leave an option unset.
    pub fn from_env() -> ConnectOptions {
        ConnectOptions {
            cut_through: cut_through_from_env(),
            token: std::env::var("DIME_TOKEN").ok().filter(|t| !t.is_empty()),
            tls: TlsClientOptions::from_env(),
            ..ConnectOptions::default()
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

/// True when `DIME_CUT_THROUGH` asks for cut-through (`1`, `on`, `true`,
/// `yes`).
pub(crate) fn cut_through_from_env() -> bool {
    std::env::var("DIME_CUT_THROUGH").is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "on" | "true" | "yes"
        )
    })
}

impl fmt::Debug for ConnectOptions {
    // The token is a secret: logs and panics never show it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("layout", &self.layout)
            .field("shm", &self.shm)
            .field("shm_threshold", &self.shm_threshold)
            .field("shm_receive_now", &self.shm_receive_now)
            .field("cut_through", &self.cut_through)
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
