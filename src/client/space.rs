//! The client side of tuple spaces: `client.space("name")` gives a handle
//! with Linda's `out`, `in`, `rd`, `inp`, `rdp` and `count`.

use crate::buffer::PooledBuf;
use crate::client::watch::{Position, Target, Watch};
use crate::client::{Client, Error, Result};
use crate::codec::dimeb;
use crate::pattern::{self, Field};
use crate::proto::extensions;
use crate::value::Value;
use serde_json::{Map, Value as Json, json};
use std::time::Duration;

/// A tuple space on the server, reached through one client.
pub struct TupleSpace<'c> {
    client: &'c mut Client,
    name: String,
}

impl Client {
    /// A handle on the tuple space `name` ("" is the default space).
    pub fn space(&mut self, name: &str) -> TupleSpace<'_> {
        TupleSpace {
            client: self,
            name: name.to_owned(),
        }
    }
}

fn decode_tuple(body: &[u8]) -> Result<Vec<Value>> {
    match dimeb::decode(body)? {
        Value::List(items) => Ok(items),
        v => Err(Error::Protocol(format!(
            "tuple space returned a {}, not a list",
            v.type_name()
        ))),
    }
}

impl TupleSpace<'_> {
    /// Sends a request of this family, if the server has tuple spaces.
    fn call(&mut self, req: Json, payload: &[u8]) -> Result<(Map<String, Json>, PooledBuf)> {
        self.client.require(extensions::SPACE, "tuple spaces")?;
        self.client.request_with_payload(req, payload)
    }

    /// Puts a tuple into the space.
    pub fn out(&mut self, tuple: &[Value]) -> Result<()> {
        let payload =
            dimeb::encode(&Value::List(tuple.to_vec())).map_err(|e| Error::InvalidArgument(e.0))?;
        let req = json!({"command": "ts_out", "space": self.name});
        self.call(req, &payload).map(drop)
    }

    fn lookup(
        &mut self,
        command: &str,
        pattern: &[Field],
        timeout: Option<Duration>,
    ) -> Result<Option<Vec<Value>>> {
        let (spec, payload) = pattern::encode(pattern).map_err(|e| Error::InvalidArgument(e.0))?;
        let mut req = json!({"command": command, "space": self.name, "pattern": spec});
        if let Some(t) = timeout {
            req["timeout"] = json!(t.as_secs_f64() * 1000.0);
        }
        let (reply, body) = self.call(req, &payload)?;
        if reply.get("found").and_then(Json::as_bool) == Some(true) {
            decode_tuple(&body).map(Some)
        } else {
            Ok(None)
        }
    }

    fn blocking(
        &mut self,
        command: &str,
        pattern: &[Field],
        timeout: Option<Duration>,
    ) -> Result<Vec<Value>> {
        self.lookup(command, pattern, timeout)?
            .ok_or_else(|| Error::Protocol(format!("{command} answered without a tuple")))
    }

    /// Removes and returns the oldest matching tuple, blocking until one
    /// exists (`Error::Timeout` after `timeout`).
    pub fn take(&mut self, pattern: &[Field], timeout: Option<Duration>) -> Result<Vec<Value>> {
        self.blocking("ts_in", pattern, timeout)
    }

    /// Returns a copy of the oldest matching tuple, blocking until one exists.
    pub fn read(&mut self, pattern: &[Field], timeout: Option<Duration>) -> Result<Vec<Value>> {
        self.blocking("ts_rd", pattern, timeout)
    }

    /// Removes and returns a matching tuple if there is one now.
    pub fn try_take(&mut self, pattern: &[Field]) -> Result<Option<Vec<Value>>> {
        self.lookup("ts_inp", pattern, None)
    }

    /// Returns a copy of a matching tuple if there is one now.
    pub fn try_read(&mut self, pattern: &[Field]) -> Result<Option<Vec<Value>>> {
        self.lookup("ts_rdp", pattern, None)
    }

    /// Number of stored tuples matching `pattern`.
    pub fn count(&mut self, pattern: &[Field]) -> Result<usize> {
        let (spec, payload) = pattern::encode(pattern).map_err(|e| Error::InvalidArgument(e.0))?;
        let req = json!({"command": "ts_count", "space": self.name, "pattern": spec});
        let (reply, _) = self.call(req, &payload)?;
        Ok(reply.get("count").and_then(Json::as_u64).unwrap_or(0) as usize)
    }

    /// Watches every tuple put into or taken from this space, on a
    /// connection of its own, resuming after `resume` if given.
    pub fn watch(&self, resume: Option<Position>) -> Result<Watch> {
        let target = Target::Space {
            name: self.name.clone(),
        };
        Watch::open(self.client.address(), target, resume)
    }
}
