//! Linda tuple spaces: `out`, blocking `in`/`rd` with timeouts, `inp`/`rdp`,
//! `count`. Tuples are dimeb lists kept as bytes; matching compares encoded
//! fields (see `crate::pattern`) and is indexed by arity and first field so
//! a request does not scan unrelated tuples.

use crate::buffer::PooledBuf;
use crate::pattern::{self, Matcher};
use crate::proto::extensions;
use crate::server::auth::Action;
use crate::server::blocking::deadline;
use crate::server::conn::{ConnId, Connection};
use crate::server::request::{CommandError, Result, Text};
use crate::server::service::{Handler, Need, Service};
use crate::server::state::State;
use crate::wire::Frame;
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
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
}

type Header<'a> = SpaceHeader<'a>;

/// What a blocked `ts_in`/`ts_rd` waits for: a matching tuple in the
/// named space.
pub struct TupleWait(String);

struct Tuple {
    bytes: Arc<PooledBuf>,
    fields: Vec<(usize, usize)>,
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
    next_seq: u64,
    tuples: BTreeMap<u64, Tuple>,
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
    fn insert(&mut self, t: Tuple) {
        let seq = self.next_seq;
        self.next_seq += 1;
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
        let t = self.tuples.remove(&seq).expect("indexed tuple exists");
        let arity = t.fields.len();
        remove_from(&mut self.by_arity, arity, seq);
        if arity > 0 {
            remove_from(&mut self.by_first, (arity, t.field(0).to_vec()), seq);
            remove_from(&mut self.by_first_tag, (arity, t.field(0)[0]), seq);
        }
        t
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
                .filter(|s| self.tuples[s].matches(pattern))
                .count()
        })
    }

    fn is_idle(&self) -> bool {
        self.tuples.is_empty() && self.waiters.is_empty()
    }
}

/// Every tuple space, by name ("" is the default).
#[derive(Default)]
pub struct Spaces {
    // hashbrown, as for shares: one lookup, the name copied only when new.
    map: hashbrown::HashMap<String, Space>,
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
        fields,
    };
    let space = svc.map.entry_ref(name).or_default();
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
    if taker.is_none() {
        space.insert(tuple);
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
    let space = svc.map.entry_ref(name).or_default();
    match space.find(&pattern) {
        Some(seq) => {
            let bytes = if take {
                space.remove(seq).bytes
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

    const COMMANDS: &'static [(&'static str, Handler<Self>)] = &[
        ("ts_out", out),
        ("ts_in", take_blocking),
        ("ts_rd", read_blocking),
        ("ts_inp", take_now),
        ("ts_rdp", read_now),
        ("ts_count", count),
    ];

    const EXTENSIONS: &'static [&'static str] = &[extensions::SPACE];

    fn required(command: &str, h: &Header<'_>, need: &mut Need<'_>) -> Result {
        let action = match command {
            "ts_rd" | "ts_rdp" | "ts_count" => Action::SpaceRead,
            // Taking a tuple changes the space as much as adding one.
            "ts_out" | "ts_in" | "ts_inp" => Action::SpaceWrite,
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

    /// Nothing to release: a client holds no tuples.
    fn disconnect(&mut self, _: &mut State, _: ConnId, _: &Connection) {}
}
