//! Linda tuple spaces: `out`, blocking `in`/`rd` with timeouts, `inp`/`rdp`,
//! `count`. Tuples are dimeb lists kept as bytes; matching compares encoded
//! fields (see `crate::pattern`) and is indexed by arity and first field so
//! a request does not scan unrelated tuples. Stored tuples are logged with
//! `--data-dir` (see `persist`), and every tuple in or out is published to
//! watchers (see `watch`).

use crate::buffer::PooledBuf;
use crate::pattern::{self, Matcher};
use crate::proto::extensions;
use crate::server::auth::Action;
use crate::server::blocking::deadline;
use crate::server::conn::{ConnId, Connection};
use crate::server::persist::{Encoder, format::bincode_config};
use crate::server::request::{CommandError, Result, Text};
use crate::server::service::{Handler, Need, Service};
use crate::server::state::State;
use crate::server::watch::{Feed, WatchSpec};
use crate::wire::Frame;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value as Json, json};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

/// The fields tuple-space commands read.
#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub struct SpaceHeader<'a> {
    /// The space (absent: the default space).
    #[serde(borrow)]
    pub space: Option<Text<'a>>,
    /// Lookups: the pattern (see `crate::pattern`).
    #[serde(borrow)]
    pub pattern: Option<&'a RawValue>,
    /// `ts_in`, `ts_rd`: milliseconds to wait before giving up.
    pub timeout: Option<f64>,
    /// `ts_watch`, `ts_unwatch`: the client's id for the watch.
    pub watch: Option<u64>,
    /// `ts_watch`: resume after this event number …
    pub since: Option<u64>,
    /// … of the feed with this epoch.
    pub epoch: Option<u64>,
}

type Header<'a> = SpaceHeader<'a>;

/// What a blocked `ts_in`/`ts_rd` waits for: a matching tuple in the
/// named space.
pub struct TupleWait(String);

/// A stored tuple: its encoding and where each field is in it. Cheap to
/// clone, as the map that holds it copies on write while a snapshot
/// shares it.
#[derive(Clone)]
struct Tuple {
    bytes: Arc<PooledBuf>,
    fields: Arc<[(usize, usize)]>,
}

impl Tuple {
    fn field(&self, i: usize) -> &[u8] {
        let (a, b) = self.fields[i];
        &self.bytes[a..b]
    }

    fn matches(&self, pattern: &[Matcher]) -> bool {
        self.fields.len() == pattern.len()
            && pattern
                .iter()
                .enumerate()
                .all(|(i, m)| m.matches(self.field(i)))
    }
}

/// A blocked `in` or `rd`.
struct Waiter {
    conn: ConnId,
    take: bool,
    pattern: Vec<Matcher>,
}

#[derive(Default)]
struct Space {
    name: Arc<str>,
    tuples: imbl::OrdMap<u64, Tuple>,
    by_arity: HashMap<usize, BTreeSet<u64>>,
    by_first: HashMap<(usize, Vec<u8>), BTreeSet<u64>>,
    by_first_tag: HashMap<(usize, u8), BTreeSet<u64>>,
    waiters: VecDeque<Waiter>,
}

fn remove_from<K: std::hash::Hash + Eq>(index: &mut HashMap<K, BTreeSet<u64>>, key: K, seq: u64) {
    if let Some(set) = index.get_mut(&key) {
        set.remove(&seq);
        if set.is_empty() {
            index.remove(&key);
        }
    }
}

impl Space {
    /// Stores `t` under number `seq`, newer than every stored one.
    fn insert(&mut self, seq: u64, t: Tuple) {
        let arity = t.fields.len();
        self.by_arity.entry(arity).or_default().insert(seq);
        if arity > 0 {
            let first = t.field(0);
            self.by_first
                .entry((arity, first.to_vec()))
                .or_default()
                .insert(seq);
            self.by_first_tag
                .entry((arity, first[0]))
                .or_default()
                .insert(seq);
        }
        self.tuples.insert(seq, t);
    }

    fn remove(&mut self, seq: u64) -> Tuple {
        self.try_remove(seq).expect("indexed tuple exists")
    }

    fn try_remove(&mut self, seq: u64) -> Option<Tuple> {
        let t = self.tuples.remove(&seq)?;
        let arity = t.fields.len();
        remove_from(&mut self.by_arity, arity, seq);
        if arity > 0 {
            remove_from(&mut self.by_first, (arity, t.field(0).to_vec()), seq);
            remove_from(&mut self.by_first_tag, (arity, t.field(0)[0]), seq);
        }
        Some(t)
    }

    /// Oldest first match in one index bucket.
    fn first_in(&self, set: Option<&BTreeSet<u64>>, pattern: &[Matcher]) -> Option<u64> {
        set?.iter()
            .copied()
            .find(|s| self.tuples[s].matches(pattern))
    }

    /// The oldest stored tuple matching `pattern`, using the narrowest index.
    fn find(&self, pattern: &[Matcher]) -> Option<u64> {
        let arity = pattern.len();
        match pattern.first() {
            Some(Matcher::Exact(b)) => {
                self.first_in(self.by_first.get(&(arity, b.clone())), pattern)
            }
            Some(Matcher::Tags(tags)) => tags
                .iter()
                .filter_map(|t| self.first_in(self.by_first_tag.get(&(arity, *t)), pattern))
                .min(),
            Some(Matcher::Matrix { tag: Some(t), .. }) => {
                self.first_in(self.by_first_tag.get(&(arity, *t)), pattern)
            }
            _ => self.first_in(self.by_arity.get(&arity), pattern),
        }
    }

    fn count(&self, pattern: &[Matcher]) -> usize {
        self.by_arity.get(&pattern.len()).map_or(0, |set| {
            set.iter()
                .filter(|s| self.tuples[*s].matches(pattern))
                .count()
        })
    }

    fn is_idle(&self) -> bool {
        self.tuples.is_empty() && self.waiters.is_empty()
    }
}

/// Every tuple space, by name ("" is the default).
pub struct Spaces {
    // hashbrown, as for shares: one lookup, the name copied only when new.
    map: hashbrown::HashMap<String, Space>,
    /// The number the next stored tuple gets: one counter for every space,
    /// so a log record names a tuple the same way however often a space
    /// emptied and went away.
    next_tuple: u64,
    feed: Feed,
}

impl Default for Spaces {
    fn default() -> Spaces {
        Spaces {
            map: hashbrown::HashMap::default(),
            next_tuple: 0,
            feed: Feed::new("space", "key"),
        }
    }
}

/// The tag of tuple-space records and of their snapshot section.
const TAG: u8 = 2;

/// A change to the tuple spaces, as logged.
#[derive(Serialize, Deserialize)]
enum Record<'a> {
    /// A tuple stored (not one handed straight to a waiting `in`).
    Out {
        space: &'a str,
        #[serde(borrow, with = "serde_bytes")]
        tuple: &'a [u8],
    },
    /// Stored tuple number `seq` taken.
    Take { space: &'a str, seq: u64 },
}

impl Spaces {
    /// Space `name`, created empty if it does not exist.
    fn space(&mut self, name: &str) -> &mut Space {
        self.map.entry_ref(name).or_insert_with(|| Space {
            name: name.into(),
            ..Space::default()
        })
    }
}

/// The space a request names ("" is the default space).
fn space_name<'h>(h: &'h Header) -> &'h str {
    h.space.as_deref().unwrap_or("")
}

fn out(svc: &mut Spaces, st: &mut State, id: ConnId, h: &Header, frame: Frame) -> Result {
    let name = space_name(h);
    let fields = pattern::split_list(&frame.payload).map_err(|e| {
        CommandError::Failed(format!("ts_out: the tuple must be a dimeb list: {}", e.0))
    })?;
    let tuple = Tuple {
        bytes: Arc::new(frame.payload),
        fields: fields.into(),
    };
    let space = svc.space(name);
    // Every matching rd gets a copy; then the longest-waiting matching in takes it.
    let mut readers = Vec::new();
    let mut taker = None;
    let mut i = 0;
    while i < space.waiters.len() {
        let w = &space.waiters[i];
        if tuple.matches(&w.pattern) {
            if !w.take {
                readers.push(space.waiters.remove(i).expect("in range").conn);
                continue;
            } else if taker.is_none() {
                taker = Some(i);
            }
        }
        i += 1;
    }
    let taker = taker.map(|i| space.waiters.remove(i).expect("in range").conn);
    let bytes = tuple.bytes.clone();
    let topic = space.name.clone();
    if taker.is_none() {
        let seq = svc.next_tuple;
        svc.next_tuple += 1;
        svc.space(name).insert(seq, tuple);
        st.persist(
            TAG,
            &Record::Out {
                space: name,
                tuple: &bytes,
            },
        );
    }
    svc.feed
        .publish(st, Some(&topic), None, "out", Some(&bytes), None);
    if taker.is_some() {
        svc.feed
            .publish(st, Some(&topic), None, "in", Some(&bytes), None);
    }
    for r in readers {
        st.unblock(r);
        st.reply_found(r, Some(bytes.clone()));
    }
    if let Some(t) = taker {
        st.unblock(t);
        st.reply_found(t, Some(bytes));
    }
    st.reply_ok(id);
    Ok(())
}

fn compiled(h: &Header, frame: &Frame) -> Result<Vec<Matcher>> {
    let spec: serde_json::Value = h
        .pattern
        .and_then(|r| serde_json::from_str(r.get()).ok())
        .ok_or_else(|| CommandError::Failed("JSON parsing error: missing field: pattern".into()))?;
    pattern::compile(&spec, &frame.payload).map_err(|e| CommandError::Failed(e.to_string()))
}

/// Shared body of in/rd/inp/rdp.
fn lookup(
    svc: &mut Spaces,
    st: &mut State,
    id: ConnId,
    h: &Header,
    frame: Frame,
    take: bool,
    block: bool,
) -> Result {
    let name = space_name(h);
    let pattern = compiled(h, &frame)?;
    let d = if block { deadline(h.timeout)? } else { None };
    let space = svc.space(name);
    match space.find(&pattern) {
        Some(seq) => {
            let bytes = if take {
                let bytes = space.remove(seq).bytes;
                let topic = space.name.clone();
                st.persist(TAG, &Record::Take { space: name, seq });
                svc.feed
                    .publish(st, Some(&topic), None, "in", Some(&bytes), None);
                bytes
            } else {
                space.tuples[&seq].bytes.clone()
            };
            st.reply_found(id, Some(bytes));
        }
        None if block => {
            space.waiters.push_back(Waiter {
                conn: id,
                take,
                pattern,
            });
            st.block(id, d, TupleWait(name.to_owned()));
        }
        None => st.reply_found(id, None),
    }
    svc.cleanup(name);
    Ok(())
}

fn take_blocking(svc: &mut Spaces, st: &mut State, id: ConnId, h: &Header, frame: Frame) -> Result {
    lookup(svc, st, id, h, frame, true, true)
}

fn read_blocking(svc: &mut Spaces, st: &mut State, id: ConnId, h: &Header, frame: Frame) -> Result {
    lookup(svc, st, id, h, frame, false, true)
}

fn take_now(svc: &mut Spaces, st: &mut State, id: ConnId, h: &Header, frame: Frame) -> Result {
    lookup(svc, st, id, h, frame, true, false)
}

fn read_now(svc: &mut Spaces, st: &mut State, id: ConnId, h: &Header, frame: Frame) -> Result {
    lookup(svc, st, id, h, frame, false, false)
}

fn count(svc: &mut Spaces, st: &mut State, id: ConnId, h: &Header, frame: Frame) -> Result {
    let name = space_name(h);
    let pattern = compiled(h, &frame)?;
    let n = svc.map.get(name).map_or(0, |s| s.count(&pattern));
    st.reply(id, json!({"status": 0, "count": n}));
    Ok(())
}

/// `ts_watch`: pushes every tuple put into or taken from this space.
fn watch(svc: &mut Spaces, st: &mut State, id: ConnId, h: &Header, _: Frame) -> Result {
    let spec = WatchSpec {
        id: watch_id(h)?,
        topic: Some(space_name(h)),
        prefix: "",
        since: h.since,
        epoch: h.epoch,
    };
    svc.feed.watch(st, id, &spec).map_err(CommandError::Failed)
}

/// `ts_unwatch`: ends a watch.
fn unwatch(svc: &mut Spaces, st: &mut State, id: ConnId, h: &Header, _: Frame) -> Result {
    let w = watch_id(h)?;
    if !svc.feed.unwatch(id, w) {
        return Err(CommandError::Failed(format!(
            "This connection has no tuple-space watch with id {w}"
        )));
    }
    st.reply_ok(id);
    Ok(())
}

fn watch_id(h: &Header) -> Result<u64> {
    h.watch
        .ok_or_else(|| CommandError::Failed("JSON parsing error: missing field: watch".into()))
}

/// A tuple from its encoding (a dimeb list).
fn tuple_of(bytes: &[u8]) -> std::result::Result<Tuple, String> {
    let fields = pattern::split_list(bytes).map_err(|e| e.0)?;
    Ok(Tuple {
        bytes: Arc::new(PooledBuf::from_vec(bytes.to_vec())),
        fields: fields.into(),
    })
}

/// The spaces' snapshot section, as written: the next tuple number, then
/// each space's tuples (number, encoding), oldest first.
struct ImageOut(u64, Vec<(Arc<str>, imbl::OrdMap<u64, Tuple>)>);

impl Serialize for ImageOut {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        struct Tuples<'a>(&'a imbl::OrdMap<u64, Tuple>);
        impl Serialize for Tuples<'_> {
            fn serialize<S: serde::Serializer>(
                &self,
                s: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                s.collect_seq(
                    self.0
                        .iter()
                        .map(|(seq, t)| (*seq, serde_bytes::Bytes::new(&t.bytes))),
                )
            }
        }
        let spaces: Vec<(&str, Tuples)> = self
            .1
            .iter()
            .map(|(name, tuples)| (&**name, Tuples(tuples)))
            .collect();
        (self.0, spaces).serialize(s)
    }
}

/// The spaces' snapshot section, as read.
type ImageIn<'a> = (u64, Vec<(&'a str, Vec<(u64, &'a serde_bytes::Bytes)>)>);

impl Spaces {
    fn cleanup(&mut self, name: &str) {
        if self.map.get(name).is_some_and(Space::is_idle) {
            self.map.remove(name);
        }
    }
}

impl Service for Spaces {
    type Header<'h> = SpaceHeader<'h>;
    type Blocked = TupleWait;

    fn inspect(&self, _: &State) -> Json {
        self.describe()
    }

    const COMMANDS: &'static [(&'static str, Handler<Self>)] = &[
        ("ts_out", out),
        ("ts_in", take_blocking),
        ("ts_rd", read_blocking),
        ("ts_inp", take_now),
        ("ts_rdp", read_now),
        ("ts_count", count),
        ("ts_watch", watch),
        ("ts_unwatch", unwatch),
    ];

    const EXTENSIONS: &'static [&'static str] = &[extensions::SPACE];
    const PERSIST_TAG: Option<u8> = Some(TAG);

    fn required(command: &str, h: &Header<'_>, need: &mut Need<'_>) -> Result {
        let action = match command {
            // Watching a space reads every tuple that enters or leaves it.
            "ts_rd" | "ts_rdp" | "ts_count" | "ts_watch" => Action::SpaceRead,
            // Taking a tuple changes the space as much as adding one.
            "ts_out" | "ts_in" | "ts_inp" => Action::SpaceWrite,
            // Ends the client's own watch.
            "ts_unwatch" => return Ok(()),
            // A command added without a line here is for admins only.
            _ => return need(Action::Admin, command),
        };
        need(action, space_name(h))
    }

    /// Drops the blocked request from its space: it will never take a
    /// tuple afterwards.
    fn withdraw(&mut self, _: &mut State, id: ConnId, TupleWait(name): TupleWait) {
        if let Some(s) = self.map.get_mut(name.as_str()) {
            s.waiters.retain(|w| w.conn != id);
        }
        self.cleanup(&name);
    }

    fn timeout_message(TupleWait(name): &TupleWait) -> String {
        format!("Timed out waiting for a matching tuple in space '{name}'")
    }

    fn drained(&mut self, st: &mut State, id: ConnId) -> bool {
        self.feed.drained(st, id)
    }

    /// A client holds no tuples; its watches end.
    fn disconnect(&mut self, _: &mut State, id: ConnId, _: &Connection) {
        self.feed.forget(id);
    }

    fn image(&self) -> Option<Encoder> {
        let spaces = ImageOut(
            self.next_tuple,
            self.map
                .values()
                .filter(|s| !s.tuples.is_empty())
                .map(|s| (s.name.clone(), s.tuples.clone()))
                .collect(),
        );
        Some(Box::new(move || {
            bincode::serde::encode_to_vec(&spaces, bincode_config()).map_err(|e| e.to_string())
        }))
    }

    fn restore(&mut self, section: &[u8]) -> std::result::Result<(), String> {
        let (image, _): (ImageIn, _) =
            bincode::serde::borrow_decode_from_slice(section, bincode_config())
                .map_err(|e| format!("the tuple spaces do not decode: {e}"))?;
        let (next, spaces) = image;
        self.next_tuple = next;
        for (name, tuples) in spaces {
            let space = self.space(name);
            for (seq, bytes) in tuples {
                space.insert(seq, tuple_of(bytes)?);
            }
        }
        Ok(())
    }

    fn replay(&mut self, _: &mut State, record: &[u8]) -> std::result::Result<(), String> {
        let (r, _): (Record, _) =
            bincode::serde::borrow_decode_from_slice(record, bincode_config())
                .map_err(|e| format!("a tuple-space record does not decode: {e}"))?;
        match r {
            Record::Out { space, tuple } => {
                let t = tuple_of(tuple)?;
                let seq = self.next_tuple;
                self.next_tuple += 1;
                self.space(space).insert(seq, t);
            }
            Record::Take { space, seq } => {
                if self.space(space).try_remove(seq).is_none() {
                    return Err(format!(
                        "it takes tuple {seq} of space '{space}', which is not there"
                    ));
                }
                self.cleanup(space);
            }
        }
        Ok(())
    }
}

impl Spaces {
    /// Each space's tuples and waiters, for `inspect`.
    fn describe(&self) -> Json {
        let mut names: Vec<&String> = self.map.keys().collect();
        names.sort();
        let spaces: serde_json::Map<String, Json> = names
            .into_iter()
            .map(|n| {
                let s = &self.map[n];
                (
                    n.clone(),
                    json!({"tuples": s.tuples.len(), "waiters": s.waiters.len()}),
                )
            })
            .collect();
        Json::Object(spaces)
    }
}
