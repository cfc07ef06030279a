//! The connections a transfer spreads its calls over: N remote-call
//! endpoints to one broker, each call naming the file server's function.

use crate::buffer::PooledBuf;
use crate::client::ConnectOptions;
use crate::client::rpc::{Rpc, RpcOptions};
use crate::files::wire;
use crate::files::{Error, Result};
use std::time::{Duration, Instant};

/// How long a piece call may wait for a free file-server worker.
const PIECE_QUEUE_TIMEOUT: Duration = Duration::from_secs(120);

/// N connections to the broker, for calls to one file server.
pub struct Pool {
    endpoints: Vec<Rpc>,
    server: String,
}

impl Pool {
    /// Opens `n` connections to the broker at `address`.
    pub fn connect(address: &str, server: &str, n: usize, wait: Duration) -> Result<Pool> {
        let options = RpcOptions {
            // A broker just starting gets a moment; a wrong address fails soon.
            retry_until: Some(Instant::now() + wait.min(Duration::from_secs(1))),
            // A broker silent this long while calls are in flight is gone.
            maxage: Some(Duration::from_secs(30)),
            // DIME_TOKEN and DIME_TLS_*, as every client takes them.
            connect: ConnectOptions::from_env(),
            ..RpcOptions::default()
        };
        let endpoints = (0..n)
            .map(|_| Rpc::connect(address, options.clone()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Pool {
            endpoints,
            server: server.to_owned(),
        })
    }

    /// The number of connections.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// Connection `i` (modulo the count).
    pub fn endpoint(&self, i: usize) -> &Rpc {
        &self.endpoints[i % self.endpoints.len()]
    }

    /// Calls the server's function `op` on `ep` and waits for the result;
    /// `timeout` bounds the wait for a server worker to take it (default:
    /// a generous one for pieces).
    pub fn call(
        &self,
        ep: &Rpc,
        op: &str,
        args: &[u8],
        timeout: Option<Duration>,
    ) -> Result<PooledBuf> {
        let f = ep.call_encoded(
            &wire::function(&self.server, op),
            args,
            Some(timeout.unwrap_or(PIECE_QUEUE_TIMEOUT)),
        )?;
        f.wait(None);
        match f.take() {
            Some(Ok(buf)) => Ok(buf),
            Some(Err(e)) => Err(Error::from_call(e, &self.server)),
            None => Err(Error::Connection("the call's result was lost".into())),
        }
    }

    /// Asks the server who it is: fails fast (within `wait`) with
    /// [`Error::NoServer`] if no server of that name is on the broker.
    /// Returns whether it accepts uploads.
    pub fn probe(&self, wait: Duration) -> Result<bool> {
        let args = wire::encode_map(vec![])?;
        let reply = self.call(self.endpoint(0), wire::INFO, &args, Some(wait))?;
        let f = wire::Fields::parse(&reply)?;
        Ok(matches!(
            f.value("writable")?,
            crate::value::Value::Bool(true)
        ))
    }

    /// Closes every connection.
    pub fn close(&self) {
        for ep in &self.endpoints {
            ep.close();
        }
    }
}
