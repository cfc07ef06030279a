//! The client side of shared dictionaries: `client.share("name")` gives a
//! handle whose methods map one-to-one onto the `share_*` commands
//! (documented in `docs/protocol-extensions.md`).

use crate::client::watch::{Position, Target, Watch};
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
    /// The fencing token every request carries (see [`Share::fenced`]).
    fence: Option<u64>,
}

impl Client {
    /// A handle on the share `name` ("" is the default share).
    pub fn share(&mut self, name: &str) -> Share<'_> {
        Share {
            client: self,
            name: name.to_owned(),
            fence: None,
        }
    }
}

/// How to take a lock.
#[derive(Debug, Clone, Copy, Default)]
pub struct LockOptions {
    /// Give up waiting after this long (`Error::Timeout`); None waits.
    pub timeout: Option<Duration>,
    /// Fail at once if another client holds the lock.
    pub nowait: bool,
    /// A lease: the broker releases the lock this long after the grant
    /// unless it is renewed ([`Share::renew`]). None: held until released
    /// or the client disconnects.
    pub ttl: Option<Duration>,
}

/// Milliseconds on the wire.
fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The fencing token of a lock reply.
fn token(reply: &Map<String, Json>) -> Result<u64> {
    reply
        .get("fence")
        .and_then(Json::as_u64)
        .ok_or_else(|| Error::Protocol("the lock reply has no fencing token".into()))
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
        let mut r = json!({"command": command, "share": self.name});
        if let Some(f) = self.fence {
            r["fence"] = json!(f);
        }
        r
    }

    fn keyed(&self, command: &str, key: &str) -> Json {
        let mut r = self.req(command);
        r["key"] = json!(key);
        r
    }

    /// This handle with every write carrying fencing token `token` (from
    /// a lock grant): the broker refuses such a write once a newer grant of
    /// the lock exists, so a holder whose lease ran out cannot overwrite
    /// the work of the next holder.
    pub fn fenced(self, token: u64) -> Self {
        Share {
            fence: Some(token),
            ..self
        }
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
        let mut req = self.req("share_get_many");
        req["keys"] = json!(keys);
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

    /// Takes the whole-share lock (FIFO; `Error::Timeout` after `timeout`)
    /// and returns its fencing token. While held, other clients' writes to
    /// this share wait.
    pub fn lock(&mut self, timeout: Option<Duration>) -> Result<u64> {
        self.lock_with(
            None,
            LockOptions {
                timeout,
                ..LockOptions::default()
            },
        )
    }

    /// Takes the lock only if it is free right now; returns its token.
    pub fn try_lock(&mut self) -> Result<u64> {
        self.lock_with(
            None,
            LockOptions {
                nowait: true,
                ..LockOptions::default()
            },
        )
    }

    /// Takes the whole-share lock (`key` None) or the named lock `key`, as
    /// `options` say; returns the grant's fencing token, which grows with
    /// every grant and survives broker restarts with `--data-dir`.
    pub fn lock_with(&mut self, key: Option<&str>, options: LockOptions) -> Result<u64> {
        let mut req = match key {
            None => self.req("share_lock"),
            Some(k) => self.keyed("share_lock", k),
        };
        if options.nowait {
            req["nowait"] = json!(true);
        }
        if let Some(t) = options.ttl {
            req["ttl"] = json!(millis(t));
        }
        let req = with_timeout(req, options.timeout);
        let (reply, _) = self.call(req, &[])?;
        token(&reply)
    }

    /// Extends the lease of a lock this client holds (`key` None: the
    /// whole-share lock) to `ttl` from now (None: its last length); returns
    /// its token. Fails if the lease already ran out.
    pub fn renew(&mut self, key: Option<&str>, ttl: Option<Duration>) -> Result<u64> {
        let mut req = match key {
            None => self.req("share_lock_renew"),
            Some(k) => self.keyed("share_lock_renew", k),
        };
        if let Some(t) = ttl {
            req["ttl"] = json!(millis(t));
        }
        let (reply, _) = self.call(req, &[])?;
        token(&reply)
    }

    /// Releases the whole-share lock.
    pub fn unlock(&mut self) -> Result<()> {
        let req = self.req("share_unlock");
        self.call(req, &[]).map(drop)
    }

    /// Takes the named lock `key` of this share (independent of writes);
    /// returns its fencing token.
    pub fn lock_key(&mut self, key: &str, timeout: Option<Duration>) -> Result<u64> {
        self.lock_with(
            Some(key),
            LockOptions {
                timeout,
                ..LockOptions::default()
            },
        )
    }

    /// Releases the named lock `key`.
    pub fn unlock_key(&mut self, key: &str) -> Result<()> {
        let req = self.keyed("share_unlock", key);
        self.call(req, &[]).map(drop)
    }

    /// Watches this share's keys starting with `prefix` ("" for all) on a
    /// connection of its own, resuming after `resume` if given.
    pub fn watch(&self, prefix: &str, resume: Option<Position>) -> Result<Watch> {
        let target = Target::Share {
            name: self.name.clone(),
            prefix: prefix.to_owned(),
        };
        Watch::open(self.client.address(), target, resume)
    }
}
