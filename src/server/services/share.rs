//! Shared dictionaries ("shares", remoteD done right): atomic operations,
//! get-or-wait, and locks owned by connections and released when they go
//! or when their lease runs out, each grant numbered by a fencing token
//! that fenced writes are checked against. Every change is logged with
//! `--data-dir` (see `persist`) and published to watchers (see `watch`).
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
use crate::server::persist::{Encoder, format::bincode_config};
use crate::server::request::{self, CommandError, Result, Text, failed, flag, required};
use crate::server::service::{Handler, Need, Service};
use crate::server::state::State;
use crate::server::watch::{Feed, WatchSpec};
use crate::value::Value;
use crate::wire::Frame;
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};
// hashbrown for `entry_ref` (one lookup, allocating the name only when it
// is new) and its seeded foldhash, several times faster than SipHash on
// short names while still randomized against collision flooding.
use hashbrown::HashMap;
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// `share_lock`, `share_lock_renew`: the lease, in milliseconds.
    pub ttl: Option<f64>,
    /// Writes: the fencing token of the lock the writer holds; refused if
    /// a newer grant of that lock exists.
    pub fence: Option<u64>,
    /// `share_watch`, `share_unwatch`: the client's id for the watch.
    pub watch: Option<u64>,
    /// `share_watch`: only keys starting with this.
    #[serde(borrow)]
    pub prefix: Option<Text<'a>>,
    /// `share_watch`: resume after this event number …
    pub since: Option<u64>,
    /// … of the feed with this epoch.
    pub epoch: Option<u64>,
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

/// The entries of a share: a map that shares structure, so an image for
/// a snapshot is a pointer copy, and keys that are cheap to hand to events.
type Entries = imbl::OrdMap<Arc<str>, Stored>;

/// Something waiting its turn behind a share's whole-share lock.
enum Queued {
    /// A `share_lock` waiting to acquire, with its lease.
    Lock(ConnId, Option<Duration>),
    /// A write blocked by another client's lock, replayed on release.
    Write(ConnId, Frame),
}

/// Who holds a lock, under which grant, until when.
struct Holder {
    conn: ConnId,
    /// The fencing token of this grant.
    token: u64,
    /// The lease's length, renewed by `share_lock_renew`; None: held until
    /// released.
    ttl: Option<Duration>,
    /// When the lease runs out.
    until: Option<Instant>,
}

/// A per-key lock and its FIFO of waiters (with their leases).
struct KeyLock {
    holder: Holder,
    waiters: VecDeque<(ConnId, Option<Duration>)>,
}

/// One named dictionary.
#[derive(Default)]
struct Share {
    name: Arc<str>,
    entries: Entries,
    lock: Option<Holder>,
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

/// The newest grant of each lock of a share: what fenced writes are
/// checked against. Kept (and persisted) after the lock is released.
#[derive(Default, Clone, Serialize, Deserialize)]
struct Fences {
    share: u64,
    keys: std::collections::HashMap<String, u64>,
}

/// Every share, by name ("" is the default share).
pub struct Shares {
    map: HashMap<String, Share>,
    /// The last fencing token granted (of any lock: tokens grow with each
    /// grant of every lock).
    last_token: u64,
    fences: HashMap<String, Fences>,
    /// Lease deadlines: (when, share, key). Entries of locks released or
    /// renewed since are skipped when their time comes.
    leases: BTreeSet<(Instant, String, Option<String>)>,
    feed: Feed,
}

impl Default for Shares {
    fn default() -> Shares {
        Shares {
            map: HashMap::default(),
            last_token: 0,
            fences: HashMap::default(),
            leases: BTreeSet::new(),
            feed: Feed::new("share", "key"),
        }
    }
}

/// The tag of share records and of the shares' snapshot section.
const TAG: u8 = 1;

/// A change to the shares, as logged.
#[derive(Serialize, Deserialize)]
enum Record<'a> {
    /// `key` holds `value` (set, incr, cas).
    Set {
        share: &'a str,
        key: &'a str,
        #[serde(borrow, with = "serde_bytes")]
        value: &'a [u8],
    },
    /// Several keys set in one step.
    SetMany {
        share: &'a str,
        #[serde(borrow)]
        items: Vec<(&'a str, &'a serde_bytes::Bytes)>,
    },
    /// `key` removed (del, pop).
    Del { share: &'a str, key: &'a str },
    /// Every key removed.
    Clear { share: &'a str },
    /// A lock granted with fencing token `token`.
    Grant {
        share: &'a str,
        key: Option<&'a str>,
        token: u64,
    },
}

/// The share a request names ("" is the default share).
fn share_name<'h>(h: &'h Header) -> &'h str {
    h.share.as_deref().unwrap_or("")
}

fn key<'h>(h: &'h Header) -> Result<&'h str> {
    required(&h.key, "key")
}

/// Refuses a fenced write to `keys` (all keys: None) of share `name` whose
/// token is older than the newest grant of a lock covering them.
fn check_fence(svc: &Shares, name: &str, keys: Option<&[&str]>, h: &Header) -> Result {
    let Some(token) = h.fence else {
        return Ok(());
    };
    let Some(f) = svc.fences.get(name) else {
        return Ok(());
    };
    let newest = match keys {
        Some(keys) => keys
            .iter()
            .filter_map(|k| f.keys.get(*k))
            .copied()
            .max()
            .unwrap_or(0),
        None => f.keys.values().copied().max().unwrap_or(0),
    }
    .max(f.share);
    if token < newest {
        return failed(format!(
            "Fenced write to share '{name}' refused: token {token} is older than the \
             newest lock grant ({newest}); this client no longer holds the lock"
        ));
    }
    Ok(())
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
    match svc
        .map
        .get(name)
        .and_then(|s| s.lock.as_ref())
        .map(|l| l.conn)
    {
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

/// Stores `value` under `key`, hands it to every `wait_key` waiter and
/// tells the watchers (not the log: callers log what the client asked).
fn store(svc: &mut Shares, st: &mut State, name: &str, key: &str, value: Stored) {
    let share = svc.share(name);
    let key = match share.entries.get_key_value_mut(key) {
        Some((k, slot)) => {
            *slot = value.clone();
            k.clone()
        }
        None => {
            let k: Arc<str> = key.into();
            share.entries.insert(k.clone(), value.clone());
            k
        }
    };
    if !share.key_waiters.is_empty() {
        if let Some(waiters) = share.key_waiters.remove(&*key) {
            for w in waiters {
                st.unblock(w);
                st.reply_found(w, Some(value.clone()));
            }
        }
    }
    let topic = share.name.clone();
    svc.feed
        .publish(st, Some(&topic), Some(&key), "set", Some(&value), None);
}

/// Removes `key`, telling the watchers; its value, if it was there.
fn remove(svc: &mut Shares, st: &mut State, name: &str, key: &str) -> Option<Stored> {
    let share = svc.map.get_mut(name)?;
    let (k, v) = share.entries.remove_with_key(key)?;
    let topic = share.name.clone();
    svc.feed
        .publish(st, Some(&topic), Some(&k), "del", None, None);
    Some(v)
}

/// Removes every key, telling the watchers if there were any.
fn clear_all(svc: &mut Shares, st: &mut State, name: &str) {
    let Some(share) = svc.map.get_mut(name) else {
        return;
    };
    if share.entries.is_empty() {
        return;
    }
    share.entries.clear();
    let topic = share.name.clone();
    svc.feed
        .publish(st, Some(&topic), None, "clear", None, None);
}

fn set(svc: &mut Shares, st: &mut State, id: ConnId, h: &Header, frame: Frame) -> Result {
    let (name, k) = (share_name(h), key(h)?);
    check_fence(svc, name, Some(&[k]), h)?;
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
    st.persist(
        TAG,
        &Record::Set {
            share: name,
            key: k,
            value: &frame.payload,
        },
    );
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
        .map(|s| s.entries.keys().map(|k| k.to_string()).collect())
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
    check_fence(svc, name, Some(&[k]), h)?;
    if gate(svc, st, id, name, h, frame)?.is_none() {
        return Ok(());
    }
    let found = remove(svc, st, name, k).is_some();
    if found {
        st.persist(
            TAG,
            &Record::Del {
                share: name,
                key: k,
            },
        );
    }
    st.reply_with(id, &json!({"status": 0, "found": found}), None);
    svc.cleanup(name);
    Ok(())
}

fn pop(svc: &mut Shares, st: &mut State, id: ConnId, h: &Header, frame: Frame) -> Result {
    let (name, k) = (share_name(h), key(h)?);
    check_fence(svc, name, Some(&[k]), h)?;
    if gate(svc, st, id, name, h, frame)?.is_none() {
        return Ok(());
    }
    let v = remove(svc, st, name, k);
    if v.is_some() {
        st.persist(
            TAG,
            &Record::Del {
                share: name,
                key: k,
            },
        );
    }
    st.reply_found(id, v);
    svc.cleanup(name);
    Ok(())
}

fn clear(svc: &mut Shares, st: &mut State, id: ConnId, h: &Header, frame: Frame) -> Result {
    let name = share_name(h);
    check_fence(svc, name, None, h)?;
    if gate(svc, st, id, name, h, frame)?.is_none() {
        return Ok(());
    }
    if svc.map.get(name).is_some_and(|s| !s.entries.is_empty()) {
        st.persist(TAG, &Record::Clear { share: name });
    }
    clear_all(svc, st, name);
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
    let keys: Vec<&str> = items.iter().map(|(k, _)| k.as_str()).collect();
    check_fence(svc, name, Some(&keys), h)?;
    st.persist(
        TAG,
        &Record::SetMany {
            share: name,
            items: items
                .iter()
                .map(|(k, v)| (k.as_str(), serde_bytes::Bytes::new(v)))
                .collect(),
        },
    );
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
    check_fence(svc, name, Some(&[k]), h)?;
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
    st.persist(
        TAG,
        &Record::Set {
            share: name,
            key: k,
            value: &bytes,
        },
    );
    store(svc, st, name, k, bytes.clone());
    st.reply_with(id, &json!({"status": 0}), Some(bytes));
    Ok(())
}

fn cas(svc: &mut Shares, st: &mut State, id: ConnId, h: &Header, frame: Frame) -> Result {
    let (name, k) = (share_name(h), key(h)?);
    check_fence(svc, name, Some(&[k]), h)?;
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
        st.persist(
            TAG,
            &Record::Set {
                share: name,
                key: k,
                value: new,
            },
        );
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

/// The lease a request asks for (`ttl` milliseconds), if any.
fn lease(h: &Header) -> Result<Option<Duration>> {
    match h.ttl {
        None => Ok(None),
        Some(ms) if ms.is_finite() && ms > 0.0 => Ok(Some(
            Duration::try_from_secs_f64(ms / 1000.0).unwrap_or(Duration::MAX),
        )),
        Some(ms) => Err(CommandError::Failed(format!(
            "JSON parsing error: ttl: expected a positive number of milliseconds, got {ms}"
        ))),
    }
}

/// Grants the lock of `name` (whole share: `key` None) to `conn` with a
/// new fencing token (logged, so tokens keep growing across restarts),
/// and answers the request that asked for it.
fn grant(
    svc: &mut Shares,
    st: &mut State,
    name: &str,
    key: Option<&str>,
    conn: ConnId,
    ttl: Option<Duration>,
) -> Holder {
    svc.last_token += 1;
    let token = svc.last_token;
    record_grant(svc, name, key, token);
    st.persist(
        TAG,
        &Record::Grant {
            share: name,
            key,
            token,
        },
    );
    let until = ttl.and_then(|t| Instant::now().checked_add(t));
    if let Some(u) = until {
        svc.leases
            .insert((u, name.to_owned(), key.map(str::to_owned)));
    }
    st.reply(conn, json!({"status": 0, "fence": token}));
    Holder {
        conn,
        token,
        ttl,
        until,
    }
}

/// Notes `token` as the newest grant of a lock.
fn record_grant(svc: &mut Shares, name: &str, key: Option<&str>, token: u64) {
    svc.last_token = svc.last_token.max(token);
    let f = svc.fences.entry_ref(name).or_default();
    match key {
        None => f.share = token,
        Some(k) => {
            f.keys.insert(k.to_owned(), token);
        }
    }
}

fn lock(svc: &mut Shares, st: &mut State, id: ConnId, h: &Header, _: Frame) -> Result {
    let name = share_name(h);
    let d = deadline(h.timeout)?;
    let ttl = lease(h)?;
    let nowait = flag(h.nowait);
    let share = svc.share(name);
    match h.key.as_deref() {
        None => {
            if share.lock.as_ref().is_some_and(|l| l.conn == id) {
                return failed(format!(
                    "This client already holds the lock on share '{name}' (locks are not re-entrant)"
                ));
            }
            if share.lock.is_none() {
                let holder = grant(svc, st, name, None, id, ttl);
                svc.share(name).lock = Some(holder);
            } else if nowait {
                return failed(format!("Share '{name}' is locked by another client"));
            } else {
                share.queue.push_back(Queued::Lock(id, ttl));
                st.block(id, d, ShareWait::Lock(name.to_owned()));
            }
        }
        Some(k) => match share.key_locks.get_mut(k) {
            None => {
                let holder = grant(svc, st, name, Some(k), id, ttl);
                svc.share(name).key_locks.insert(
                    k.to_owned(),
                    KeyLock {
                        holder,
                        waiters: VecDeque::new(),
                    },
                );
            }
            Some(l) if l.holder.conn == id => {
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
                l.waiters.push_back((id, ttl));
                st.block(id, d, ShareWait::KeyLock(name.to_owned(), k.to_owned()));
            }
        },
    }
    Ok(())
}

/// The lock of `name` (or of its `key`) if `id` holds it.
fn held_by<'s>(
    svc: &'s mut Shares,
    name: &str,
    key: Option<&str>,
    id: ConnId,
) -> Option<&'s mut Holder> {
    let share = svc.map.get_mut(name)?;
    let holder = match key {
        None => share.lock.as_mut()?,
        Some(k) => &mut share.key_locks.get_mut(k)?.holder,
    };
    (holder.conn == id).then_some(holder)
}

/// The error for a lock this client does not hold.
fn not_held(name: &str, key: Option<&str>) -> CommandError {
    let what = match key {
        None => format!("share '{name}'"),
        Some(k) => format!("key '{k}' of share '{name}'"),
    };
    CommandError::Failed(format!(
        "This client does not hold the lock on {what} (never taken, released, or its lease ran out)"
    ))
}

/// `share_lock_renew`: extends the lease of a lock this client holds.
fn renew(svc: &mut Shares, st: &mut State, id: ConnId, h: &Header, _: Frame) -> Result {
    let name = share_name(h);
    let key = h.key.as_deref();
    let ttl = lease(h)?;
    let holder = held_by(svc, name, key, id).ok_or_else(|| not_held(name, key))?;
    let Some(ttl) = ttl.or(holder.ttl) else {
        return failed(format!(
            "The lock on share '{name}' has no lease to renew: give ttl"
        ));
    };
    holder.ttl = Some(ttl);
    holder.until = Instant::now().checked_add(ttl);
    let (token, until) = (holder.token, holder.until);
    if let Some(u) = until {
        svc.leases
            .insert((u, name.to_owned(), key.map(str::to_owned)));
    }
    st.reply(id, json!({"status": 0, "fence": token}));
    Ok(())
}

fn unlock(svc: &mut Shares, st: &mut State, id: ConnId, h: &Header, _: Frame) -> Result {
    let name = share_name(h);
    let key = h.key.as_deref();
    if held_by(svc, name, key, id).is_none() {
        return Err(not_held(name, key));
    }
    st.reply_ok(id);
    match key {
        None => release_share_lock(svc, st, name),
        Some(k) => release_key_lock(svc, st, name, k),
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
            Queued::Lock(w, ttl) => {
                st.unblock(w);
                let holder = grant(svc, st, name, None, w, ttl);
                svc.share(name).lock = Some(holder);
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
        Some((next, ttl)) => {
            st.unblock(next);
            let holder = grant(svc, st, name, Some(key), next, ttl);
            if let Some(l) = svc.share(name).key_locks.get_mut(key) {
                l.holder = holder;
            }
        }
        None => {
            share.key_locks.remove(key);
        }
    }
}

/// `share_watch`: pushes this share's changes (keys under `prefix`).
fn watch(svc: &mut Shares, st: &mut State, id: ConnId, h: &Header, _: Frame) -> Result {
    let spec = WatchSpec {
        id: watch_id(h)?,
        topic: Some(share_name(h)),
        prefix: h.prefix.as_deref().unwrap_or(""),
        since: h.since,
        epoch: h.epoch,
    };
    svc.feed.watch(st, id, &spec).map_err(CommandError::Failed)
}

/// `share_unwatch`: ends a watch.
fn unwatch(svc: &mut Shares, st: &mut State, id: ConnId, h: &Header, _: Frame) -> Result {
    let w = watch_id(h)?;
    if !svc.feed.unwatch(id, w) {
        return failed(format!("This connection has no share watch with id {w}"));
    }
    st.reply_ok(id);
    Ok(())
}

fn watch_id(h: &Header) -> Result<u64> {
    h.watch
        .ok_or_else(|| CommandError::Failed("JSON parsing error: missing field: watch".into()))
}

/// Ends every lease that has run out: the lock goes to the next waiter.
fn expire_leases(svc: &mut Shares, st: &mut State, now: Instant) -> Option<Instant> {
    while let Some((when, _, _)) = svc.leases.first() {
        if *when > now {
            return Some(*when);
        }
        let (when, name, key) = svc.leases.pop_first().expect("checked above");
        let Some(share) = svc.map.get(name.as_str()) else {
            continue;
        };
        let holder = match &key {
            None => share.lock.as_ref(),
            Some(k) => share.key_locks.get(k).map(|l| &l.holder),
        };
        // Released or renewed since: not this lease any more.
        let Some(holder) = holder.filter(|h| h.until == Some(when)) else {
            continue;
        };
        log::info!(
            "client {}: the lease on share '{name}'{} ran out (fencing token {})",
            holder.conn,
            key.as_ref()
                .map_or(String::new(), |k| format!(" key '{k}'")),
            holder.token
        );
        match &key {
            None => release_share_lock(svc, st, &name),
            Some(k) => release_key_lock(svc, st, &name, k),
        }
        svc.cleanup(&name);
    }
    None
}

impl Shares {
    /// Share `name`, created empty if it does not exist.
    fn share(&mut self, name: &str) -> &mut Share {
        self.map.entry_ref(name).or_insert_with(|| Share {
            name: name.into(),
            ..Share::default()
        })
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

    fn inspect(&self, _: &State) -> Json {
        self.describe()
    }

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
        ("share_lock_renew", renew),
        ("share_watch", watch),
        ("share_unwatch", unwatch),
    ];

    const EXTENSIONS: &'static [&'static str] = &[extensions::SHARE];
    const PERSIST_TAG: Option<u8> = Some(TAG);

    fn required(command: &str, h: &Header<'_>, need: &mut Need<'_>) -> Result {
        let action = match command {
            // Watching a share reads every change made to it.
            "share_get" | "share_contains" | "share_keys" | "share_len" | "share_get_many"
            | "share_wait_key" | "share_watch" => Action::ShareRead,
            "share_set" | "share_del" | "share_clear" | "share_set_many" | "share_incr"
            | "share_cas" | "share_pop" => Action::ShareWrite,
            "share_lock" | "share_unlock" | "share_lock_renew" => Action::ShareLock,
            // Ends the client's own watch.
            "share_unwatch" => return Ok(()),
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
                Queued::Lock(c, _) | Queued::Write(c, _) => *c != id,
            }),
            ShareWait::KeyLock(_, k) => {
                if let Some(l) = share.key_locks.get_mut(k) {
                    l.waiters.retain(|(c, _)| *c != id);
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

    fn drained(&mut self, st: &mut State, id: ConnId) -> bool {
        self.feed.drained(st, id)
    }

    /// Releases every lock the client held, waking the next waiters, and
    /// ends its watches.
    fn disconnect(&mut self, st: &mut State, id: ConnId, _: &Connection) {
        self.feed.forget(id);
        let mut share_locks = Vec::new();
        let mut key_locks = Vec::new();
        for (name, s) in &self.map {
            if s.lock.as_ref().is_some_and(|l| l.conn == id) {
                share_locks.push(name.clone());
            }
            for (k, l) in &s.key_locks {
                if l.holder.conn == id {
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

    fn expire(&mut self, st: &mut State, now: Instant) -> Option<Instant> {
        expire_leases(self, st, now)
    }

    fn image(&self) -> Option<Encoder> {
        let shares: Vec<(Arc<str>, Entries)> = self
            .map
            .values()
            .filter(|s| !s.entries.is_empty())
            .map(|s| (s.name.clone(), s.entries.clone()))
            .collect();
        let fences: Vec<(String, Fences)> = self
            .fences
            .iter()
            .map(|(n, f)| (n.clone(), f.clone()))
            .collect();
        let last_token = self.last_token;
        Some(Box::new(move || {
            let image = ImageOut {
                last_token,
                shares: shares.iter().map(|(n, e)| (&**n, EntriesOut(e))).collect(),
                fences,
            };
            bincode::serde::encode_to_vec(&image, bincode_config()).map_err(|e| e.to_string())
        }))
    }

    fn restore(&mut self, section: &[u8]) -> std::result::Result<(), String> {
        let (image, _): (ImageIn, _) =
            bincode::serde::borrow_decode_from_slice(section, bincode_config())
                .map_err(|e| format!("the shares do not decode: {e}"))?;
        self.last_token = image.last_token;
        for (name, entries) in image.shares {
            let share = self.share(name);
            for (k, v) in entries {
                share
                    .entries
                    .insert(k.into(), Arc::new(PooledBuf::from_vec(v.to_vec())));
            }
        }
        self.fences = image.fences.into_iter().collect();
        Ok(())
    }

    fn replay(&mut self, st: &mut State, record: &[u8]) -> std::result::Result<(), String> {
        let (r, _): (Record, _) =
            bincode::serde::borrow_decode_from_slice(record, bincode_config())
                .map_err(|e| format!("a share record does not decode: {e}"))?;
        let value = |v: &[u8]| Arc::new(PooledBuf::from_vec(v.to_vec()));
        let name = match &r {
            Record::Set { share, .. }
            | Record::SetMany { share, .. }
            | Record::Del { share, .. }
            | Record::Clear { share }
            | Record::Grant { share, .. } => *share,
        };
        match r {
            Record::Set {
                share,
                key,
                value: v,
            } => store(self, st, share, key, value(v)),
            Record::SetMany { share, items } => {
                for (k, v) in items {
                    store(self, st, share, k, value(v));
                }
            }
            Record::Del { share, key } => {
                remove(self, st, share, key);
            }
            Record::Clear { share } => clear_all(self, st, share),
            Record::Grant { share, key, token } => record_grant(self, share, key, token),
        }
        self.cleanup(name);
        Ok(())
    }
}

/// The shares' snapshot section, as written: the last token, each share's
/// entries, each share's fences.
#[derive(Serialize)]
struct ImageOut<'a> {
    last_token: u64,
    shares: Vec<(&'a str, EntriesOut<'a>)>,
    fences: Vec<(String, Fences)>,
}

/// A share's entries, written as a list of (key, value bytes) straight
/// from the map.
struct EntriesOut<'a>(&'a Entries);

impl Serialize for EntriesOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_seq(
            self.0
                .iter()
                .map(|(k, v)| (&**k, serde_bytes::Bytes::new(v))),
        )
    }
}

/// The shares' snapshot section, as read (borrowing the file's bytes).
#[derive(Deserialize)]
struct ImageIn<'a> {
    last_token: u64,
    #[serde(borrow)]
    shares: Vec<(&'a str, Vec<(&'a str, &'a serde_bytes::Bytes)>)>,
    fences: Vec<(String, Fences)>,
}

impl Shares {
    /// Each share's keys, bytes, locks and waiters, for `inspect`.
    fn describe(&self) -> Json {
        let mut names: Vec<&String> = self.map.keys().collect();
        names.sort();
        let shares: serde_json::Map<String, Json> = names
            .into_iter()
            .map(|n| {
                let s = &self.map[n];
                let bytes: usize = s.entries.values().map(|v| v.len()).sum();
                let key_locks: serde_json::Map<String, Json> = s
                    .key_locks
                    .iter()
                    .map(|(k, l)| (k.clone(), json!({"holder": l.holder.conn, "token": l.holder.token, "waiters": l.waiters.len()})))
                    .collect();
                (
                    n.clone(),
                    json!({
                        "keys": s.entries.len(),
                        "bytes": bytes,
                        "lock": s.lock.as_ref().map(|h| h.conn),
                        "lock_waiters": s.queue.iter().filter(|q| matches!(q, Queued::Lock(..))).count(),
                        "blocked_writes": s.queue.iter().filter(|q| matches!(q, Queued::Write(..))).count(),
                        "key_locks": key_locks,
                        "key_waiters": s.key_waiters.values().map(Vec::len).sum::<usize>(),
                    }),
                )
            })
            .collect();
        Json::Object(shares)
    }
}
