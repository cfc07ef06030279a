//! Shared dictionaries ("shares", remoteD done right): atomic operations,
//! get-or-wait, and locks owned by connections and released when they go.
//!
//! Values are kept as their dimeb bytes and relayed without decoding; only
//! `incr` decodes (numbers) and `cas` compares encodings byte for byte
//! (equality by type and bit-exact value).

use super::commands::{CommandError, Handler};
use super::conn::{Blocked, BlockedOn, json_item};
use super::groups::ConnId;
use super::header::Header;
use super::outqueue::OutItem;
use super::state::State;
use crate::buffer::PooledBuf;
use crate::codec::dimeb;
use crate::value::Value;
use crate::wire::{Frame, encode_head};
use serde_json::{Value as Json, json};
// hashbrown for `entry_ref` (one lookup, allocating the name only when it
// is new) and its seeded foldhash, several times faster than SipHash on
// short names while still randomized against collision flooding.
use hashbrown::HashMap;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

type Result<T = ()> = std::result::Result<T, CommandError>;

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

/// The share commands; merged into the server's command table.
pub const COMMANDS: &[(&str, Handler)] = &[
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

/// The share a request names ("" is the default share).
fn share_name<'h>(h: &'h Header) -> &'h str {
    h.share.as_deref().unwrap_or("")
}

fn key<'h>(h: &'h Header) -> Result<&'h str> {
    super::commands::required(&h.key, "key")
}

/// Deadline from an optional `"timeout"` in milliseconds.
pub fn deadline(h: &Header) -> Result<Option<Instant>> {
    deadline_after(Instant::now(), h.timeout).map_err(CommandError::Malformed)
}

/// When a wait of `timeout` milliseconds from `now` ends: None for no
/// timeout, and also for one too long to represent (1e22 ms is longer than
/// any server will run, so it means "no deadline", not an error). A
/// negative timeout is refused; JSON has no NaN or infinity, so only a
/// caller of this function could pass those, and they are refused too.
pub fn deadline_after(
    now: Instant,
    timeout: Option<f64>,
) -> std::result::Result<Option<Instant>, String> {
    let Some(ms) = timeout else {
        return Ok(None);
    };
    if !ms.is_finite() || ms < 0.0 {
        return Err(format!(
            "JSON parsing error: timeout: expected a non-negative number of milliseconds, got {ms}"
        ));
    }
    // Both steps are checked: seconds past Duration's range, and an
    // instant past the clock's range, are each "never".
    Ok(Duration::try_from_secs_f64(ms / 1000.0)
        .ok()
        .and_then(|d| now.checked_add(d)))
}

fn failed<T>(msg: String) -> Result<T> {
    Err(CommandError::Failed(msg))
}

fn reply_with(st: &mut State, id: ConnId, json: Json, body: Option<Stored>) {
    let item = match body {
        Some(b) => OutItem::WithBody(encode_head(json.to_string().as_bytes(), b.len()), b),
        None => json_item(&json),
    };
    if let Some(c) = st.conns.get_mut(&id) {
        c.reply(item);
        st.dirty.insert(id);
    }
}

fn shares<'a>(st: &'a mut State, name: &str) -> &'a mut Share {
    st.shares.map.entry_ref(name).or_default()
}

/// Lets a write through, or parks it behind another client's share lock.
/// Returns the frame back when the write may proceed now.
fn gate(st: &mut State, id: ConnId, name: &str, h: &Header, frame: Frame) -> Result<Option<Frame>> {
    let d = deadline(h)?;
    match st.shares.map.get(name).and_then(|s| s.lock) {
        Some(owner) if owner != id => {
            if Header::flag(h.nowait) {
                return failed(format!("Share '{name}' is locked by another client"));
            }
            shares(st, name).queue.push_back(Queued::Write(id, frame));
            st.block(id, d, BlockedOn::ShareWrite(name.to_owned()));
            Ok(None)
        }
        _ => Ok(Some(frame)),
    }
}

/// Stores `value` under `key` and hands it to every `wait_key` waiter.
fn store(st: &mut State, name: &str, key: &str, value: Stored) {
    let share = shares(st, name);
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

fn set(st: &mut State, id: ConnId, h: &Header, frame: Frame) -> Result {
    let (name, k) = (share_name(h), key(h)?);
    let Some(frame) = gate(st, id, name, h, frame)? else {
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
    store(st, name, k, Arc::new(frame.payload));
    st.reply_ok(id);
    Ok(())
}

fn get(st: &mut State, id: ConnId, h: &Header, _: Frame) -> Result {
    let (name, k) = (share_name(h), key(h)?);
    let v = st.shares.value(name, k).cloned();
    st.reply_found(id, v);
    Ok(())
}

fn contains(st: &mut State, id: ConnId, h: &Header, _: Frame) -> Result {
    let (name, k) = (share_name(h), key(h)?);
    let found = st.shares.value(name, k).is_some();
    reply_with(st, id, json!({"status": 0, "found": found}), None);
    Ok(())
}

fn keys(st: &mut State, id: ConnId, h: &Header, _: Frame) -> Result {
    let name = share_name(h);
    let keys: Vec<String> = st
        .shares
        .map
        .get(name)
        .map(|s| s.entries.keys().cloned().collect())
        .unwrap_or_default();
    reply_with(st, id, json!({"status": 0, "keys": keys}), None);
    Ok(())
}

fn len(st: &mut State, id: ConnId, h: &Header, _: Frame) -> Result {
    let name = share_name(h);
    let n = st.shares.map.get(name).map_or(0, |s| s.entries.len());
    reply_with(st, id, json!({"status": 0, "len": n}), None);
    Ok(())
}

fn del(st: &mut State, id: ConnId, h: &Header, frame: Frame) -> Result {
    let (name, k) = (share_name(h), key(h)?);
    if gate(st, id, name, h, frame)?.is_none() {
        return Ok(());
    }
    let found = shares(st, name).entries.remove(k).is_some();
    reply_with(st, id, json!({"status": 0, "found": found}), None);
    st.shares.cleanup(name);
    Ok(())
}

fn pop(st: &mut State, id: ConnId, h: &Header, frame: Frame) -> Result {
    let (name, k) = (share_name(h), key(h)?);
    if gate(st, id, name, h, frame)?.is_none() {
        return Ok(());
    }
    let v = shares(st, name).entries.remove(k);
    st.reply_found(id, v);
    st.shares.cleanup(name);
    Ok(())
}

fn clear(st: &mut State, id: ConnId, h: &Header, frame: Frame) -> Result {
    let name = share_name(h);
    if gate(st, id, name, h, frame)?.is_none() {
        return Ok(());
    }
    shares(st, name).entries.clear();
    st.reply_ok(id);
    st.shares.cleanup(name);
    Ok(())
}

fn get_many(st: &mut State, id: ConnId, h: &Header, _: Frame) -> Result {
    let name = share_name(h);
    let wanted: Vec<&str> = match &h.keys {
        Some(keys) => keys.iter().map(|k| &**k).collect(),
        None => {
            return Err(CommandError::Malformed(
                "JSON parsing error: keys: expected a list of strings".into(),
            ));
        }
    };
    let share = st.shares.map.get(name);
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
    reply_with(
        st,
        id,
        json!({"status": 0}),
        Some(Arc::new(PooledBuf::from_vec(body))),
    );
    Ok(())
}

fn set_many(st: &mut State, id: ConnId, h: &Header, frame: Frame) -> Result {
    let name = share_name(h);
    let Some(frame) = gate(st, id, name, h, frame)? else {
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
        store(st, name, &k, v);
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

fn incr(st: &mut State, id: ConnId, h: &Header, frame: Frame) -> Result {
    let (name, k) = (share_name(h), key(h)?);
    let Some(frame) = gate(st, id, name, h, frame)? else {
        return Ok(());
    };
    let delta = if frame.payload.is_empty() {
        Value::I64(1)
    } else {
        dimeb::decode(&frame.payload)
            .map_err(|e| CommandError::Failed(format!("share_incr '{k}': {e}")))?
    };
    let current = match st.shares.value(name, k) {
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
    store(st, name, k, bytes.clone());
    reply_with(st, id, json!({"status": 0}), Some(bytes));
    Ok(())
}

fn cas(st: &mut State, id: ConnId, h: &Header, frame: Frame) -> Result {
    let (name, k) = (share_name(h), key(h)?);
    let Some(frame) = gate(st, id, name, h, frame)? else {
        return Ok(());
    };
    let bad = |e: String| CommandError::Failed(format!("share_cas '{k}': {e}"));
    // Payload: the new value when "absent" is set, else a list [expected, new].
    let (expected, new): (Option<&[u8]>, &[u8]) = if Header::flag(h.absent) {
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
    let current = st.shares.value(name, k).cloned();
    let swapped = match (expected, &current) {
        (None, None) => true,
        (Some(e), Some(c)) => e == &c[..],
        _ => false,
    };
    if swapped {
        store(st, name, k, Arc::new(PooledBuf::from_vec(new.to_vec())));
    }
    reply_with(st, id, json!({"status": 0, "swapped": swapped}), None);
    Ok(())
}

fn wait_key(st: &mut State, id: ConnId, h: &Header, _: Frame) -> Result {
    let (name, k) = (share_name(h), key(h)?);
    let d = deadline(h)?;
    if let Some(v) = st.shares.value(name, k).cloned() {
        st.reply_found(id, Some(v));
        return Ok(());
    }
    shares(st, name)
        .key_waiters
        .entry(k.to_owned())
        .or_default()
        .push(id);
    st.block(id, d, BlockedOn::ShareKey(name.to_owned(), k.to_owned()));
    Ok(())
}

fn lock(st: &mut State, id: ConnId, h: &Header, _: Frame) -> Result {
    let name = share_name(h);
    let d = deadline(h)?;
    let nowait = Header::flag(h.nowait);
    let share = shares(st, name);
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
                st.block(id, d, BlockedOn::ShareLock(name.to_owned()));
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
                st.block(id, d, BlockedOn::KeyLock(name.to_owned(), k.to_owned()));
            }
        },
    }
    Ok(())
}

fn unlock(st: &mut State, id: ConnId, h: &Header, _: Frame) -> Result {
    let name = share_name(h);
    match h.key.as_deref() {
        None => {
            if st.shares.map.get(name).and_then(|s| s.lock) != Some(id) {
                return failed(format!(
                    "This client does not hold the lock on share '{name}'"
                ));
            }
            st.reply_ok(id);
            release_share_lock(st, name);
        }
        Some(k) => {
            let owner = st
                .shares
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
            release_key_lock(st, name, k);
        }
    }
    st.shares.cleanup(name);
    Ok(())
}

/// Frees a share lock: replays queued writes in order until a queued lock
/// request takes it.
fn release_share_lock(st: &mut State, name: &str) {
    shares(st, name).lock = None;
    while let Some(q) = shares(st, name).queue.pop_front() {
        match q {
            Queued::Write(w, frame) => {
                st.unblock(w);
                replay(st, w, frame);
            }
            Queued::Lock(w) => {
                st.unblock(w);
                shares(st, name).lock = Some(w);
                st.reply_ok(w);
                return;
            }
        }
    }
}

/// Runs a write that waited for a lock, as if it had just arrived.
fn replay(st: &mut State, id: ConnId, frame: Frame) {
    // It parsed when it arrived; a copy of the text, as the frame moves on.
    let text = String::from_utf8_lossy(frame.json()).into_owned();
    let Ok(header) = Header::parse(&text) else {
        return;
    };
    let handler = header
        .command()
        .and_then(|c| COMMANDS.iter().find(|(n, _)| *n == c))
        .map(|(_, h)| *h);
    if let Some(h) = handler {
        if let Err(CommandError::Failed(m) | CommandError::Malformed(m)) = h(st, id, &header, frame)
        {
            st.reply_error(id, &m);
        }
    }
}

fn release_key_lock(st: &mut State, name: &str, key: &str) {
    let share = shares(st, name);
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

/// Withdraws a blocked request (timeout or disconnect) from its queue.
pub fn withdraw(st: &mut State, id: ConnId, on: &BlockedOn) {
    match on {
        BlockedOn::Tuple(space) => return st.spaces.withdraw(space, id),
        BlockedOn::Inbox(_) => return,
        _ => {}
    }
    let Some(share) = st.shares.map.get_mut(on.share()) else {
        return;
    };
    match on {
        BlockedOn::ShareLock(_) | BlockedOn::ShareWrite(_) => share.queue.retain(|q| match q {
            Queued::Lock(c) | Queued::Write(c, _) => *c != id,
        }),
        BlockedOn::KeyLock(_, k) => {
            if let Some(l) = share.key_locks.get_mut(k) {
                l.waiters.retain(|c| *c != id);
            }
        }
        BlockedOn::Tuple(_) | BlockedOn::Inbox(_) => unreachable!("handled above"),
        BlockedOn::ShareKey(_, k) => {
            if let Some(w) = share.key_waiters.get_mut(k) {
                w.retain(|c| *c != id);
                if w.is_empty() {
                    share.key_waiters.remove(k);
                }
            }
        }
    }
    let name = on.share().to_owned();
    st.shares.cleanup(&name);
}

/// The error a timed-out blocked request gets.
pub fn timeout_message(on: &BlockedOn) -> String {
    match on {
        BlockedOn::ShareLock(s) => format!("Timed out waiting for the lock on share '{s}'"),
        BlockedOn::ShareWrite(s) => format!("Timed out waiting for share '{s}' to be unlocked"),
        BlockedOn::KeyLock(s, k) => {
            format!("Timed out waiting for the lock on key '{k}' of share '{s}'")
        }
        BlockedOn::ShareKey(s, k) => format!("Timed out waiting for key '{k}' in share '{s}'"),
        BlockedOn::Tuple(s) => format!("Timed out waiting for a matching tuple in space '{s}'"),
        BlockedOn::Inbox(_) => "Timed out waiting for a message".to_owned(),
    }
}

/// Releases every lock `id` holds (it disconnected), waking the next waiters.
pub fn release_all(st: &mut State, id: ConnId) {
    let mut share_locks = Vec::new();
    let mut key_locks = Vec::new();
    for (name, s) in &st.shares.map {
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
        release_share_lock(st, &name);
        st.shares.cleanup(&name);
    }
    for (name, k) in key_locks {
        release_key_lock(st, &name, &k);
        st.shares.cleanup(&name);
    }
}

/// Blocked-state bookkeeping on [`State`].
impl State {
    /// Parks `id` until its request completes or `deadline` passes.
    pub fn block(&mut self, id: ConnId, deadline: Option<Instant>, on: BlockedOn) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.blocked = Some(Blocked { deadline, on });
            if let Some(d) = deadline {
                self.timers.insert((d, id));
            }
        }
    }

    /// Ends `id`'s blocked state; its deferred requests run next round.
    pub fn unblock(&mut self, id: ConnId) {
        if let Some(c) = self.conns.get_mut(&id) {
            if let Some(Blocked {
                deadline: Some(d), ..
            }) = c.blocked.take()
            {
                self.timers.remove(&(d, id));
            }
            self.resume.push(id);
            self.dirty.insert(id);
        }
    }
}

impl BlockedOn {
    fn share(&self) -> &str {
        match self {
            BlockedOn::ShareLock(s)
            | BlockedOn::ShareWrite(s)
            | BlockedOn::KeyLock(s, _)
            | BlockedOn::ShareKey(s, _)
            | BlockedOn::Tuple(s) => s,
            BlockedOn::Inbox(_) => "",
        }
    }
}
