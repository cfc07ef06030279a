//! The client side of shared dictionaries: `client.share("name")` gives a
//! handle whose methods map one-to-one onto the `share_*` commands
//! (documented in `docs/protocol-extensions.md`).

use crate::client::{Client, Error, Result};
use crate::codec::dimeb;
use crate::proto::extensions;
use crate::value::Value;
use serde_json::{Map, Value as Json, json};
use std::time::Duration;

/// A shared dictionary on the server, reached through one client.
pub struct Share<'c> {
    client: &'c mut Client,
    name: String,
}

impl Client {
    /// A handle on the share `name` ("" is the default share).
    pub fn share(&mut self, name: &str) -> Share<'_> {
        Share {
            client: self,
            name: name.to_owned(),
        }
    }
}

fn encode(v: &Value) -> Result<Vec<u8>> {
    dimeb::encode(v).map_err(|e| Error::InvalidArgument(e.0))
}

fn with_timeout(mut req: Json, timeout: Option<Duration>) -> Json {
    if let Some(t) = timeout {
        req["timeout"] = json!(t.as_secs_f64() * 1000.0);
    }
    req
}

impl Share<'_> {
    fn req(&self, command: &str) -> Json {
        json!({"command": command, "share": self.name})
    }

    fn keyed(&self, command: &str, key: &str) -> Json {
        json!({"command": command, "share": self.name, "key": key})
    }

    fn call(
        &mut self,
        req: Json,
        payload: &[u8],
    ) -> Result<(Map<String, Json>, crate::buffer::PooledBuf)> {
        self.client
            .require(extensions::SHARE, "shared dictionaries (shares)")?;
        self.client.request_with_payload(req, payload)
    }

    fn found_value(&mut self, req: Json) -> Result<Option<Value>> {
        let (reply, body) = self.call(req, &[])?;
        if reply.get("found").and_then(Json::as_bool) == Some(true) {
            Ok(Some(dimeb::decode(&body)?))
        } else {
            Ok(None)
        }
    }

    fn found(&mut self, req: Json) -> Result<bool> {
        let (reply, _) = self.call(req, &[])?;
        Ok(reply.get("found").and_then(Json::as_bool) == Some(true))
    }

    /// Stores `value` under `key`.
    pub fn set(&mut self, key: &str, value: &Value) -> Result<()> {
        let payload = encode(value)?;
        let req = self.keyed("share_set", key);
        self.call(req, &payload).map(drop)
    }

    /// The value under `key`, if any.
    pub fn get(&mut self, key: &str) -> Result<Option<Value>> {
        let req = self.keyed("share_get", key);
        self.found_value(req)
    }

    /// Removes `key`; true if it was there.
    pub fn del(&mut self, key: &str) -> Result<bool> {
        let req = self.keyed("share_del", key);
        self.found(req)
    }

    /// Removes and returns the value under `key`.
    pub fn pop(&mut self, key: &str) -> Result<Option<Value>> {
        let req = self.keyed("share_pop", key);
        self.found_value(req)
    }

    /// True if `key` is present.
    pub fn contains(&mut self, key: &str) -> Result<bool> {
        let req = self.keyed("share_contains", key);
        self.found(req)
    }

    /// Every key, sorted.
    pub fn keys(&mut self) -> Result<Vec<String>> {
        let req = self.req("share_keys");
        let (reply, _) = self.call(req, &[])?;
        Ok(reply
            .get("keys")
            .and_then(Json::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|k| k.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Number of keys.
    pub fn len(&mut self) -> Result<usize> {
        let req = self.req("share_len");
        let (reply, _) = self.call(req, &[])?;
        Ok(reply.get("len").and_then(Json::as_u64).unwrap_or(0) as usize)
    }

    /// True when the share holds no keys.
    pub fn is_empty(&mut self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Removes every key.
    pub fn clear(&mut self) -> Result<()> {
        let req = self.req("share_clear");
        self.call(req, &[]).map(drop)
    }

    /// The values of those `keys` that exist, as (key, value) pairs.
    pub fn get_many(&mut self, keys: &[&str]) -> Result<Vec<(String, Value)>> {
        let req = json!({"command": "share_get_many", "share": self.name, "keys": keys});
        let (_, body) = self.call(req, &[])?;
        match dimeb::decode(&body)? {
            Value::Map(pairs) => Ok(pairs
                .into_iter()
                .filter_map(|(k, v)| match k {
                    Value::String(k) => Some((k, v)),
                    _ => None,
                })
                .collect()),
            v => Err(Error::Protocol(format!(
                "share_get_many returned a {}",
                v.type_name()
            ))),
        }
    }

    /// Stores several values in one atomic step.
    pub fn set_many(&mut self, items: &[(&str, &Value)]) -> Result<()> {
        let map = Value::Map(
            items
                .iter()
                .map(|(k, v)| (Value::from(*k), (*v).clone()))
                .collect(),
        );
        let payload = encode(&map)?;
        let req = self.req("share_set_many");
        self.call(req, &payload).map(drop)
    }

    /// Adds `delta` to the number under `key` (created at 0); returns the new value.
    pub fn incr(&mut self, key: &str, delta: &Value) -> Result<Value> {
        let payload = encode(delta)?;
        let req = self.keyed("share_incr", key);
        let (_, body) = self.call(req, &payload)?;
        Ok(dimeb::decode(&body)?)
    }

    /// Sets `key` to `new` only if it currently equals `expected` (same type
    /// and bits), or is absent when `expected` is None. True if it swapped.
    pub fn cas(&mut self, key: &str, expected: Option<&Value>, new: &Value) -> Result<bool> {
        let (req, payload) = match expected {
            None => {
                let mut r = self.keyed("share_cas", key);
                r["absent"] = json!(true);
                (r, encode(new)?)
            }
            Some(e) => (
                self.keyed("share_cas", key),
                encode(&Value::List(vec![e.clone(), new.clone()]))?,
            ),
        };
        let (reply, _) = self.call(req, &payload)?;
        Ok(reply.get("swapped").and_then(Json::as_bool) == Some(true))
    }

    /// Blocks until `key` exists (woken by the write, no polling) and
    /// returns its value; `Error::Timeout` after `timeout`.
    pub fn wait_key(&mut self, key: &str, timeout: Option<Duration>) -> Result<Value> {
        let req = with_timeout(self.keyed("share_wait_key", key), timeout);
        self.found_value(req)?
            .ok_or_else(|| Error::Protocol("share_wait_key answered without a value".into()))
    }

    /// Takes the whole-share lock (FIFO; `Error::Timeout` after `timeout`).
    /// While held, other clients' writes to this share wait.
    pub fn lock(&mut self, timeout: Option<Duration>) -> Result<()> {
        let req = with_timeout(self.req("share_lock"), timeout);
        self.call(req, &[]).map(drop)
    }

    /// Takes the lock only if it is free right now.
    pub fn try_lock(&mut self) -> Result<()> {
        let mut req = self.req("share_lock");
        req["nowait"] = json!(true);
        self.call(req, &[]).map(drop)
    }

    /// Releases the whole-share lock.
    pub fn unlock(&mut self) -> Result<()> {
        let req = self.req("share_unlock");
        self.call(req, &[]).map(drop)
    }

    /// Takes the named lock `key` of this share (independent of writes).
    pub fn lock_key(&mut self, key: &str, timeout: Option<Duration>) -> Result<()> {
        let req = with_timeout(self.keyed("share_lock", key), timeout);
        self.call(req, &[]).map(drop)
    }

    /// Releases the named lock `key`.
    pub fn unlock_key(&mut self, key: &str) -> Result<()> {
        let req = self.keyed("share_unlock", key);
        self.call(req, &[]).map(drop)
    }
}
