//! Shared dictionaries ("shares", remoteD done right): atomic operations,
//! get-or-wait, and locks owned by connections and released when they go.
//!
//! Values are kept as their dimeb bytes and relayed without decoding; only
//! `incr` decodes (numbers) and `cas` compares encodings byte for byte
//! (equality by type and bit-exact value).

use crate::buffer::PooledBuf;
use crate::codec::dimeb;
use crate::proto::extensions;
use crate::server::auth::Action;
use crate::server::blocking::deadline;
use crate::server::conn::{ConnId, Connection};
use crate::server::request::{self, CommandError, Result, Text, failed, flag, required};
use crate::server::service::{Handler, Need, Service};
use crate::server::state::State;
use crate::value::Value;
use crate::wire::Frame;
use serde::Deserialize;
use serde_json::json;
// hashbrown for `entry_ref` (one lookup, allocating the name only when it
// is new) and its seeded foldhash, several times faster than SipHash on
// short names while still randomized against collision flooding.
use hashbrown::HashMap;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// The fields share commands read.
#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub struct ShareHeader<'a> {
    /// The share (absent: the default share).
    #[serde(borrow)]
    pub share: Option<Text<'a>>,
    /// The key.
    #[serde(borrow)]
    pub key: Option<Text<'a>>,
    /// `share_get_many`: the keys.
    #[serde(borrow)]
    pub keys: Option<Vec<Text<'a>>>,
    /// Milliseconds to wait before giving up.
    pub timeout: Option<f64>,
    /// Writes and locks: fail instead of waiting for a lock.
    pub nowait: Option<bool>,
    /// `share_cas`: succeed only if the key is absent.
    pub absent: Option<bool>,
}

type Header<'a> = ShareHeader<'a>;

/// What a blocked share request waits for.
pub enum ShareWait {
    /// The whole-share lock of a share.
    Lock(String),
    /// A write held back by another client's share lock.
    Write(String),
    /// A per-key lock (share, key).
    KeyLock(String, String),
    /// A key to appear (share, key).
    Key(String, String),
}

/// A stored value: its dimeb encoding, shared with replies in flight.
type Stored = Arc<PooledBuf>;

/// Something waiting its turn behind a share's whole-share lock.
enum Queued {
    /// A `share_lock` waiting to acquire.
    Lock(ConnId),
    /// A write blocked by another client's lock, replayed on release.
    Write(ConnId, Frame),
}

/// A per-key lock and its FIFO of waiters.
struct KeyLock {
    owner: ConnId,
    waiters: VecDeque<ConnId>,
}

/// One named dictionary.
#[derive(Default)]
struct Share {
    entries: BTreeMap<String, Stored>,
    lock: Option<ConnId>,
    queue: VecDeque<Queued>,
    key_locks: HashMap<String, KeyLock>,
    key_waiters: HashMap<String, Vec<ConnId>>,
}

impl Share {
    fn is_idle(&self) -> bool {
        self.entries.is_empty()
            && self.lock.is_none()
            && self.queue.is_empty()
            && self.key_locks.is_empty()
            && self.key_waiters.is_empty()
    }
}

/// Every share, by name ("" is the default share).
#[derive(Default)]
pub struct Shares {
    map: HashMap<String, Share>,
}

/// The share a request names ("" is the default share).
fn share_name<'h>(h: &'h Header) -> &'h str {
    h.share.as_deref().unwrap_or("")
}

fn key<'h>(h: &'h Header) -> Result<&'h str> {
    required(&h.key, "key")
}

/// Lets a write through, or parks it behind another client's share lock.
/// Returns the frame back when the write may proceed now.
fn gate(
    svc: &mut Shares,
    st: &mut State,
    id: ConnId,
    name: &str,
    h: &Header,
    frame: Frame,
) -> Result<Option<Frame>> {
    let d = deadline(h.timeout)?;
    match svc.map.get(name).and_then(|s| s.lock) {
        Some(owner) if owner != id => {
            if flag(h.nowait) {
                return failed(format!("Share '{name}' is locked by another client"));
            }
            svc.share(name).queue.push_back(Queued::Write(id, frame));
            st.block(id, d, ShareWait::Write(name.to_owned()));
            Ok(None)
        }
        _ => Ok(Some(frame)),
    }
}

/// Stores `value` under `key` and hands it to every `wait_key` waiter.
fn store(svc: &mut Shares, st: &mut State, name: &str, key: &str, value: Stored) {
    let share = svc.share(name);
    match share.entries.get_mut(key) {
        Some(slot) => *slot = value.clone(),
        None => {
            share.entries.insert(key.to_owned(), value.clone());
        }
    }
    if share.key_waiters.is_empty() {
        return;
    }
    if let Some(waiters) = share.key_waiters.remove(key) {
        for w in waiters {
            st.unblock(w);
            st.reply_found(w, Some(value.clone()));
        }
    }
}

fn set(svc: &mut Shares, st: &mut State, id: ConnId, h: &Header, frame: Frame) -> Result {
    let (name, k) = (share_name(h), key(h)?);
    let Some(frame) = gate(svc, st, id, name, h, frame)? else {
        return Ok(());
    };
    if let Err(e) = dimeb::value_len(&frame.payload).and_then(|n| {
        if n == frame.payload.len() {
            Ok(())
        } else {
            Err(dimeb::CodecError("trailing bytes after the value".into()))
        }
    }) {
        return failed(format!(
            "share_set '{k}': the payload is not one dimeb value: {e}"
        ));
    }
    store(svc, st, name, k, Arc::new(frame.payload));
    st.reply_ok(id);
    Ok(())
}

fn get(svc: &mut Shares, st: &mut State, id: ConnId, h: &Header, _: Frame) -> Result {
    let (name, k) = (share_name(h), key(h)?);
    let v = svc.value(name, k).cloned();
    st.reply_found(id, v);
    Ok(())
}

fn contains(svc: &mut Shares, st: &mut State, id: ConnId, h: &Header, _: Frame) -> Result {
    let (name, k) = (share_name(h), key(h)?);
    let found = svc.value(name, k).is_some();
    st.reply_with(id, &json!({"status": 0, "found": found}), None);
    Ok(())
}

fn keys(svc: &mut Shares, st: &mut State, id: ConnId, h: &Header, _: Frame) -> Result {
    let name = share_name(h);
    let keys: Vec<String> = svc
        .map
        .get(name)
        .map(|s| s.entries.keys().cloned().collect())
        .unwrap_or_default();
    st.reply_with(id, &json!({"status": 0, "keys": keys}), None);
    Ok(())
}

fn len(svc: &mut Shares, st: &mut State, id: ConnId, h: &Header, _: Frame) -> Result {
    let name = share_name(h);
    let n = svc.map.get(name).map_or(0, |s| s.entries.len());
    st.reply_with(id, &json!({"status": 0, "len": n}), None);
    Ok(())
}

fn del(svc: &mut Shares, st: &mut State, id: ConnId, h: &Header, frame: Frame) -> Result {
    let (name, k) = (share_name(h), key(h)?);
    if gate(svc, st, id, name, h, frame)?.is_none() {
        return Ok(());
    }
    let found = svc.share(name).entries.remove(k).is_some();
    st.reply_with(id, &json!({"status": 0, "found": found}), None);
    svc.cleanup(name);
    Ok(())
}

fn pop(svc: &mut Shares, st: &mut State, id: ConnId, h: &Header, frame: Frame) -> Result {
    let (name, k) = (share_name(h), key(h)?);
    if gate(svc, st, id, name, h, frame)?.is_none() {
        return Ok(());
    }
    let v = svc.share(name).entries.remove(k);
    st.reply_found(id, v);
    svc.cleanup(name);
    Ok(())
}

fn clear(svc: &mut Shares, st: &mut State, id: ConnId, h: &Header, frame: Frame) -> Result {
    let name = share_name(h);
    if gate(svc, st, id, name, h, frame)?.is_none() {
        return Ok(());
    }
    svc.share(name).entries.clear();
    st.reply_ok(id);
    svc.cleanup(name);
    Ok(())
}

fn get_many(svc: &mut Shares, st: &mut State, id: ConnId, h: &Header, _: Frame) -> Result {
    let name = share_name(h);
    let wanted: Vec<&str> = match &h.keys {
        Some(keys) => keys.iter().map(|k| &**k).collect(),
        None => {
            return Err(CommandError::Failed(
                "JSON parsing error: keys: expected a list of strings".into(),
            ));
        }
    };
    let share = svc.map.get(name);
    let found: Vec<(&str, &Stored)> = wanted
        .iter()
        .filter_map(|k| share.and_then(|s| s.entries.get(*k)).map(|v| (*k, v)))
        .collect();
    let mut body = Vec::new();
    dimeb::map_header(found.len(), &mut body).map_err(|e| CommandError::Failed(e.to_string()))?;
    for (k, v) in found {
        dimeb::encode_into(&Value::from(k), &mut body)
            .map_err(|e| CommandError::Failed(e.to_string()))?;
        body.extend_from_slice(v);
    }
    st.reply_with(
        id,
        &json!({"status": 0}),
        Some(Arc::new(PooledBuf::from_vec(body))),
    );
    Ok(())
}

fn set_many(svc: &mut Shares, st: &mut State, id: ConnId, h: &Header, frame: Frame) -> Result {
    let name = share_name(h);
    let Some(frame) = gate(svc, st, id, name, h, frame)? else {
        return Ok(());
    };
    let pairs = dimeb::split_map(&frame.payload).map_err(|e| {
        CommandError::Failed(format!(
            "share_set_many: the payload is not a dimeb map: {e}"
        ))
    })?;
    let mut items = Vec::with_capacity(pairs.len());
    for (k, v) in pairs {
        match dimeb::decode(k) {
            Ok(Value::String(k)) => items.push((k, Arc::new(PooledBuf::from_vec(v.to_vec())))),
            _ => return failed("share_set_many: every key must be a string".into()),
        }
    }
    for (k, v) in items {
        store(svc, st, name, &k, v);
    }
    st.reply_ok(id);
    Ok(())
}

/// Adds two numbers: integers stay integers (of the stored kind, checked
/// for overflow), anything with a float becomes a float.
fn add(name: &str, current: &Value, delta: &Value) -> std::result::Result<Value, String> {
    fn int(v: &Value) -> Option<i128> {
        Some(match *v {
            Value::I8(x) => x as i128,
            Value::I16(x) => x as i128,
            Value::I32(x) => x as i128,
            Value::I64(x) => x as i128,
            Value::U8(x) => x as i128,
            Value::U16(x) => x as i128,
            Value::U32(x) => x as i128,
            Value::U64(x) => x as i128,
            _ => return None,
        })
    }
    fn float(v: &Value) -> Option<f64> {
        match *v {
            Value::F32(x) => Some(x as f64),
            Value::F64(x) => Some(x),
            _ => int(v).map(|i| i as f64),
        }
    }
    if let (Some(a), Some(b)) = (int(current), int(delta)) {
        let sum = a + b;
        let out = match current {
            Value::I8(_) => i8::try_from(sum).map(Value::I8).ok(),
            Value::I16(_) => i16::try_from(sum).map(Value::I16).ok(),
            Value::I32(_) => i32::try_from(sum).map(Value::I32).ok(),
            Value::U8(_) => u8::try_from(sum).map(Value::U8).ok(),
            Value::U16(_) => u16::try_from(sum).map(Value::U16).ok(),
            Value::U32(_) => u32::try_from(sum).map(Value::U32).ok(),
            Value::U64(_) => u64::try_from(sum).map(Value::U64).ok(),
            _ => i64::try_from(sum).map(Value::I64).ok(),
        };
        return out.ok_or_else(|| {
            format!(
                "Cannot increment key '{name}': {a} + {b} overflows {}",
                current.type_name()
            )
        });
    }
    match (current, float(current), float(delta)) {
        (Value::F32(a), _, Some(b)) if matches!(delta, Value::F32(_)) => {
            Ok(Value::F32(a + b as f32))
        }
        (_, Some(a), Some(b)) => Ok(Value::F64(a + b)),
        (_, None, _) => Err(format!(
            "Cannot increment key '{name}': it holds a {}, not a number",
            current.type_name()
        )),
        (_, _, None) => Err(format!(
            "Cannot increment by a {}: expected a number",
            delta.type_name()
        )),
    }
}

fn incr(svc: &mut Shares, st: &mut State, id: ConnId, h: &Header, frame: Frame) -> Result {
    let (name, k) = (share_name(h), key(h)?);
    let Some(frame) = gate(svc, st, id, name, h, frame)? else {
        return Ok(());
    };
    let delta = if frame.payload.is_empty() {
        Value::I64(1)
    } else {
        dimeb::decode(&frame.payload)
            .map_err(|e| CommandError::Failed(format!("share_incr '{k}': {e}")))?
    };
    let current = match svc.value(name, k) {
        Some(bytes) => dimeb::decode(bytes).map_err(|e| CommandError::Failed(e.to_string()))?,
        None => match delta {
            Value::F32(_) => Value::F32(0.0),
            Value::F64(_) => Value::F64(0.0),
            _ => Value::I64(0),
        },
    };
    let sum = add(k, &current, &delta).map_err(CommandError::Failed)?;
    let bytes = Arc::new(PooledBuf::from_vec(
        dimeb::encode(&sum).map_err(|e| CommandError::Failed(e.to_string()))?,
    ));
    store(svc, st, name, k, bytes.clone());
    st.reply_with(id, &json!({"status": 0}), Some(bytes));
    Ok(())
}

fn cas(svc: &mut Shares, st: &mut State, id: ConnId, h: &Header, frame: Frame) -> Result {
    let (name, k) = (share_name(h), key(h)?);
    let Some(frame) = gate(svc, st, id, name, h, frame)? else {
        return Ok(());
    };
    let bad = |e: String| CommandError::Failed(format!("share_cas '{k}': {e}"));
    // Payload: the new value when "absent" is set, else a list [expected, new].
    let (expected, new): (Option<&[u8]>, &[u8]) = if flag(h.absent) {
        (None, &frame.payload[..])
    } else {
        let p = &frame.payload[..];
        if p.len() < 5 || p[0] != 0x21 || p[1..5] != 2u32.to_be_bytes() {
            return Err(bad("payload must be a list [expected, new]".into()));
        }
        let n1 = dimeb::value_len(&p[5..]).map_err(|e| bad(e.to_string()))?;
        (Some(&p[5..5 + n1]), &p[5 + n1..])
    };
    if dimeb::value_len(new).map_err(|e| bad(e.to_string()))? != new.len() {
        return Err(bad("trailing bytes after the new value".into()));
    }
    let current = svc.value(name, k).cloned();
    let swapped = match (expected, &current) {
        (None, None) => true,
        (Some(e), Some(c)) => e == &c[..],
        _ => false,
    };
    if swapped {
        store(
            svc,
            st,
            name,
            k,
            Arc::new(PooledBuf::from_vec(new.to_vec())),
        );
    }
    st.reply_with(id, &json!({"status": 0, "swapped": swapped}), None);
    Ok(())
}

fn wait_key(svc: &mut Shares, st: &mut State, id: ConnId, h: &Header, _: Frame) -> Result {
    let (name, k) = (share_name(h), key(h)?);
    let d = deadline(h.timeout)?;
    if let Some(v) = svc.value(name, k).cloned() {
        st.reply_found(id, Some(v));
        return Ok(());
    }
    svc.share(name)
        .key_waiters
        .entry(k.to_owned())
        .or_default()
        .push(id);
    st.block(id, d, ShareWait::Key(name.to_owned(), k.to_owned()));
    Ok(())
}

fn lock(svc: &mut Shares, st: &mut State, id: ConnId, h: &Header, _: Frame) -> Result {
    let name = share_name(h);
    let d = deadline(h.timeout)?;
    let nowait = flag(h.nowait);
    let share = svc.share(name);
    match h.key.as_deref() {
        None => {
            if share.lock == Some(id) {
                return failed(format!(
                    "This client already holds the lock on share '{name}' (locks are not re-entrant)"
                ));
            }
            if share.lock.is_none() {
                share.lock = Some(id);
                st.reply_ok(id);
            } else if nowait {
                return failed(format!("Share '{name}' is locked by another client"));
            } else {
                share.queue.push_back(Queued::Lock(id));
                st.block(id, d, ShareWait::Lock(name.to_owned()));
            }
        }
        Some(k) => match share.key_locks.get_mut(k) {
            None => {
                share.key_locks.insert(
                    k.to_owned(),
                    KeyLock {
                        owner: id,
                        waiters: VecDeque::new(),
                    },
                );
                st.reply_ok(id);
            }
            Some(l) if l.owner == id => {
                return failed(format!(
                    "This client already holds the lock on key '{k}' of share '{name}' (locks are not re-entrant)"
                ));
            }
            Some(_) if nowait => {
                return failed(format!(
                    "Key '{k}' of share '{name}' is locked by another client"
                ));
            }
            Some(l) => {
                l.waiters.push_back(id);
                st.block(id, d, ShareWait::KeyLock(name.to_owned(), k.to_owned()));
            }
        },
    }
    Ok(())
}

fn unlock(svc: &mut Shares, st: &mut State, id: ConnId, h: &Header, _: Frame) -> Result {
    let name = share_name(h);
    match h.key.as_deref() {
        None => {
            if svc.map.get(name).and_then(|s| s.lock) != Some(id) {
                return failed(format!(
                    "This client does not hold the lock on share '{name}'"
                ));
            }
            st.reply_ok(id);
            release_share_lock(svc, st, name);
        }
        Some(k) => {
            let owner = svc
                .map
                .get(name)
                .and_then(|s| s.key_locks.get(&*k))
                .map(|l| l.owner);
            if owner != Some(id) {
                return failed(format!(
                    "This client does not hold the lock on key '{k}' of share '{name}'"
                ));
            }
            st.reply_ok(id);
            release_key_lock(svc, st, name, k);
        }
    }
    svc.cleanup(name);
    Ok(())
}

/// Frees a share lock: replays queued writes in order until a queued lock
/// request takes it.
fn release_share_lock(svc: &mut Shares, st: &mut State, name: &str) {
    svc.share(name).lock = None;
    while let Some(q) = svc.share(name).queue.pop_front() {
        match q {
            Queued::Write(w, frame) => {
                st.unblock(w);
                replay(svc, st, w, frame);
            }
            Queued::Lock(w) => {
                st.unblock(w);
                svc.share(name).lock = Some(w);
                st.reply_ok(w);
                return;
            }
        }
    }
}

/// Runs a write that waited for a lock, as if it had just arrived.
fn replay(svc: &mut Shares, st: &mut State, id: ConnId, frame: Frame) {
    // It parsed when it arrived; a copy of the text, as the frame moves on.
    let text = String::from_utf8_lossy(frame.json()).into_owned();
    let (Ok(command), Ok(header)) = (
        request::parse::<request::CommandHeader>(&text),
        request::parse::<Header>(&text),
    ) else {
        return;
    };
    let handler = command
        .name()
        .and_then(|c| Shares::COMMANDS.iter().find(|(n, _)| *n == c))
        .map(|(_, h)| *h);
    if let Some(h) = handler {
        if let Err(e) = h(svc, st, id, &header, frame) {
            st.reply(id, e.reply());
        }
    }
}

fn release_key_lock(svc: &mut Shares, st: &mut State, name: &str, key: &str) {
    let share = svc.share(name);
    let Some(l) = share.key_locks.get_mut(key) else {
        return;
    };
    match l.waiters.pop_front() {
        Some(next) => {
            l.owner = next;
            st.unblock(next);
            st.reply_ok(next);
        }
        None => {
            share.key_locks.remove(key);
        }
    }
}

impl Shares {
    /// Share `name`, created empty if it does not exist.
    fn share(&mut self, name: &str) -> &mut Share {
        self.map.entry_ref(name).or_default()
    }

    /// The value stored under `key` in share `name`, if any.
    fn value(&self, name: &str, key: &str) -> Option<&Stored> {
        self.map.get(name).and_then(|s| s.entries.get(key))
    }

    /// Drops a share that holds nothing and has nobody waiting.
    fn cleanup(&mut self, name: &str) {
        if self.map.get(name).is_some_and(Share::is_idle) {
            self.map.remove(name);
        }
    }
}

impl Service for Shares {
    type Header<'h> = ShareHeader<'h>;
    type Blocked = ShareWait;

    const COMMANDS: &'static [(&'static str, Handler<Self>)] = &[
        ("share_set", set),
        ("share_get", get),
        ("share_del", del),
        ("share_contains", contains),
        ("share_keys", keys),
        ("share_len", len),
        ("share_clear", clear),
        ("share_get_many", get_many),
        ("share_set_many", set_many),
        ("share_incr", incr),
        ("share_cas", cas),
        ("share_pop", pop),
        ("share_wait_key", wait_key),
        ("share_lock", lock),
        ("share_unlock", unlock),
    ];

    const EXTENSIONS: &'static [&'static str] = &[extensions::SHARE];

    fn required(command: &str, h: &Header<'_>, need: &mut Need<'_>) -> Result {
        let action = match command {
            "share_get" | "share_contains" | "share_keys" | "share_len" | "share_get_many"
            | "share_wait_key" => Action::ShareRead,
            "share_set" | "share_del" | "share_clear" | "share_set_many" | "share_incr"
            | "share_cas" | "share_pop" => Action::ShareWrite,
            "share_lock" | "share_unlock" => Action::ShareLock,
            // A command added without a line here is for admins only.
            _ => return need(Action::Admin, command),
        };
        need(action, share_name(h))
    }

    fn withdraw(&mut self, _: &mut State, id: ConnId, on: ShareWait) {
        let name = match &on {
            ShareWait::Lock(s)
            | ShareWait::Write(s)
            | ShareWait::KeyLock(s, _)
            | ShareWait::Key(s, _) => s,
        };
        let Some(share) = self.map.get_mut(name.as_str()) else {
            return;
        };
        match &on {
            ShareWait::Lock(_) | ShareWait::Write(_) => share.queue.retain(|q| match q {
                Queued::Lock(c) | Queued::Write(c, _) => *c != id,
            }),
            ShareWait::KeyLock(_, k) => {
                if let Some(l) = share.key_locks.get_mut(k) {
                    l.waiters.retain(|c| *c != id);
                }
            }
            ShareWait::Key(_, k) => {
                if let Some(w) = share.key_waiters.get_mut(k) {
                    w.retain(|c| *c != id);
                    if w.is_empty() {
                        share.key_waiters.remove(k);
                    }
                }
            }
        }
        self.cleanup(name);
    }

    fn timeout_message(on: &ShareWait) -> String {
        match on {
            ShareWait::Lock(s) => format!("Timed out waiting for the lock on share '{s}'"),
            ShareWait::Write(s) => format!("Timed out waiting for share '{s}' to be unlocked"),
            ShareWait::KeyLock(s, k) => {
                format!("Timed out waiting for the lock on key '{k}' of share '{s}'")
            }
            ShareWait::Key(s, k) => format!("Timed out waiting for key '{k}' in share '{s}'"),
        }
    }

    /// Releases every lock the client held, waking the next waiters.
    fn disconnect(&mut self, st: &mut State, id: ConnId, _: &Connection) {
        let mut share_locks = Vec::new();
        let mut key_locks = Vec::new();
        for (name, s) in &self.map {
            if s.lock == Some(id) {
                share_locks.push(name.clone());
            }
            for (k, l) in &s.key_locks {
                if l.owner == id {
                    key_locks.push((name.clone(), k.clone()));
                }
            }
        }
        for name in share_locks {
            release_share_lock(self, st, &name);
            self.cleanup(&name);
        }
        for (name, k) in key_locks {
            release_key_lock(self, st, &name, &k);
            self.cleanup(&name);
        }
    }
}
