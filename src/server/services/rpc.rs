//! Remote calls (docs/protocol-extensions.md, "Remote calls"): a client
//! `provide`s a named function, any client `call`s it by name, and the
//! broker routes each call to the least loaded provider of that name and
//! the result back to its caller.
//!
//! Calls and results are pushed, not answered: a `call` gets no reply of
//! its own, and its result arrives later as a frame carrying
//! `"result": <the caller's id>`; a provider gets each call as a frame
//! carrying `"call": <the broker's id>` and answers it with `return`. So a
//! client can keep any number of calls in flight on one connection, and
//! the payloads (arguments, results) move from frame to frame without
//! being copied or decoded.
//!
//! A call to a name with no free provider waits in that name's queue until
//! a provider has room or the call's timeout passes. A provider that goes
//! away fails its running calls at once (`"lost": true`); a caller that
//! goes away has its queued calls dropped and its running calls' results
//! discarded.

use crate::buffer::PooledBuf;
use crate::codec::dimeb;
use crate::proto::{extensions, stream_batch};
use crate::server::auth::Action;
use crate::server::blocking::deadline;
use crate::server::conn::{ConnId, Connection};
use crate::server::local::{CallQueue, LocalCall, LocalResult};
use crate::server::outqueue::OutItem;
use crate::server::request::{CommandError, Result, Text, flag, required};
use crate::server::service::{Handler, Need, Service};
use crate::server::state::State;
use crate::wire::{Frame, encode_head};
use rustc_hash::FxHashMap;
use serde::Deserialize;
use serde_json::{Value as Json, json};
use std::collections::{BTreeSet, VecDeque};
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

/// The fields remote-call commands read.
#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub struct RpcHeader<'a> {
    /// `provide`, `unprovide`, `call`: the function's name.
    #[serde(borrow)]
    pub function: Option<Text<'a>>,
    /// `provide`: how many calls of it this provider runs at once.
    pub capacity: Option<u32>,
    /// `call`, `cancel`: the caller's own id for the call.
    pub id: Option<u64>,
    /// `return`: the broker's id of the call being answered.
    pub call: Option<u64>,
    /// `call`: milliseconds to wait for a provider before failing.
    pub timeout: Option<f64>,
    /// `return`: the provider's error message (absent: success).
    #[serde(borrow)]
    pub error: Option<Text<'a>>,
    /// `return` with `error`: the error's type name (e.g. `ValueError`).
    #[serde(borrow)]
    pub error_type: Option<Text<'a>>,
    /// `return` with `error`: the provider's traceback, as text.
    #[serde(borrow)]
    pub traceback: Option<Text<'a>>,
    /// `call`: the result is a stream of items (see "Streams").
    pub stream: Option<bool>,
    /// `call` with `stream`, `credit`: items the producer may send.
    pub items: Option<u64>,
    /// `call` with `stream`, `credit`: bytes the producer may send.
    pub bytes: Option<u64>,
    /// `call` with `stream`: the consumer takes batches of items (item
    /// pushes with `count`); without it, batches reach it item by item.
    pub batch: Option<bool>,
    /// `yield`: the payload is a batch of this many items (see
    /// [`stream_batch`]); absent: it is one item.
    pub count: Option<u64>,
    /// `call`, `return`, `yield`: the payload (each item of a batch) may
    /// hold `dimeb_layout` matrices, converted for a receiving side that
    /// did not ask for them.
    pub dimeb_layout: Option<bool>,
}

type Header<'a> = RpcHeader<'a>;

/// Remote calls never block a connection: calls wait in queues instead.
pub enum NeverBlocked {}

/// A payload on its way from one side of a call to the other.
struct Body {
    buf: PooledBuf,
    /// It holds `dimeb_layout` matrices (checked to be valid dimeb).
    layout: bool,
}

impl Body {
    /// The payload of `frame`, checked when it is marked as holding
    /// `dimeb_layout` matrices, so converting it later cannot fail.
    fn of(frame: Frame, h: &Header) -> std::result::Result<Body, String> {
        let layout = flag(h.dimeb_layout) && !frame.payload.is_empty();
        if layout {
            check_value(&frame.payload)?;
        }
        Ok(Body {
            buf: frame.payload,
            layout,
        })
    }
}

/// Checks that `bytes` hold exactly one valid dimeb value.
fn check_value(bytes: &[u8]) -> std::result::Result<(), String> {
    match dimeb::value_len(bytes) {
        Ok(n) if n == bytes.len() => Ok(()),
        Ok(n) => Err(format!(
            "{} trailing bytes after the value",
            bytes.len() - n
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// A call and who made it.
struct Call {
    caller: ConnId,
    /// The caller's id for it, echoed as `"result"`.
    caller_id: u64,
    function: Arc<str>,
    args: Body,
    /// For a stream: the consumer's initial window.
    window: Option<Window>,
    /// For a stream: the consumer takes batches of items.
    batch: bool,
}

/// What a stream's producer may still send before the consumer grants
/// more: it may send while both are positive (so one item larger than the
/// whole byte window still goes, alone).
#[derive(Clone, Copy, Debug)]
struct Window {
    items: i64,
    bytes: i64,
}

impl Window {
    /// Takes the room of items of `lengths` bytes sent one after another,
    /// each while both rooms are still positive; false (taking nothing)
    /// if one of them would go past the window.
    fn take(&mut self, lengths: &[usize]) -> bool {
        let mut w = *self;
        for &len in lengths {
            if w.items <= 0 || w.bytes <= 0 {
                return false;
            }
            w.items -= 1;
            w.bytes = w.bytes.saturating_sub(clamp(len as u64));
        }
        *self = w;
        true
    }
}

/// A call waiting for a provider.
struct Queued {
    call: Call,
    deadline: Option<Instant>,
    /// Orders the queue's timer entries.
    seq: u64,
}

/// A call handed to a provider.
struct Running {
    /// None once the caller has gone or cancelled: the result is dropped.
    caller: Option<(ConnId, u64)>,
    provider: ConnId,
    function: Arc<str>,
    /// For a stream: the producer's remaining window.
    window: Option<Window>,
    /// For a stream: the consumer takes batches of items.
    batch: bool,
}

/// One provider of one function.
struct Slot {
    provider: ConnId,
    capacity: u32,
    running: u32,
}

/// A function name's providers and the calls waiting for one.
#[derive(Default)]
struct Function {
    slots: Vec<Slot>,
    /// Rotates ties between equally loaded providers.
    next: usize,
    queue: VecDeque<Queued>,
}

impl Function {
    /// The least loaded provider with room, ties taken in turn.
    fn pick(&mut self) -> Option<usize> {
        let n = self.slots.len();
        let mut best: Option<(usize, u64)> = None;
        for k in 0..n {
            let i = (self.next + k) % n;
            let s = &self.slots[i];
            if s.running >= s.capacity {
                continue;
            }
            // Load as a fraction of capacity, compared without division.
            let load = (u64::from(s.running) << 32) / u64::from(s.capacity);
            if best.is_none_or(|(_, b)| load < b) {
                best = Some((i, load));
            }
        }
        let (i, _) = best?;
        self.next = (i + 1) % n;
        Some(i)
    }
}

/// A caller's call, by the caller's id.
enum CallerEntry {
    Queued(Arc<str>, u64),
    Running(u64),
}

/// The remote-call service's data.
#[derive(Default)]
pub struct Rpc {
    functions: FxHashMap<Arc<str>, Function>,
    running: FxHashMap<u64, Running>,
    /// Each caller's calls in flight, so cancel and disconnect find them.
    by_caller: FxHashMap<(ConnId, u64), CallerEntry>,
    /// Functions each provider provides.
    provided: FxHashMap<ConnId, Vec<Arc<str>>>,
    /// Deadlines of queued calls: (when, function, seq).
    timers: BTreeSet<(Instant, Arc<str>, u64)>,
    next_call: u64,
    next_seq: u64,
    /// In-process providers' call queues, by their provider id.
    locals: FxHashMap<ConnId, Arc<CallQueue>>,
}

impl Service for Rpc {
    type Header<'h> = RpcHeader<'h>;
    type Blocked = NeverBlocked;

    fn inspect(&self, _: &State) -> Json {
        self.describe()
    }

    const EXTENSIONS: &'static [&'static str] = &[
        extensions::RPC,
        extensions::STREAM,
        extensions::STREAM_BATCH,
    ];

    const COMMANDS: &'static [(&'static str, Handler<Self>)] = &[
        ("provide", provide),
        ("unprovide", unprovide),
        ("call", call),
        ("return", give_back),
        ("cancel", cancel),
        ("ping", ping),
        ("yield", give_item),
        ("credit", credit),
    ];

    fn required(command: &str, h: &Header<'_>, need: &mut Need<'_>) -> Result {
        match command {
            "provide" | "unprovide" => need(Action::Provide, required(&h.function, "function")?),
            "call" if flag(h.stream) => need(Action::Stream, required(&h.function, "function")?),
            "call" => need(Action::Call, required(&h.function, "function")?),
            // Answers and controls of calls the client is already part of.
            "return" | "cancel" | "ping" | "yield" | "credit" => Ok(()),
            // A command added without a line here is for admins only.
            _ => need(Action::Admin, command),
        }
    }

    /// A refused call is answered as its result (routed by the caller's
    /// id), like every other failed call.
    fn refuse(
        st: &mut State,
        id: ConnId,
        command: &str,
        h: &Header<'_>,
        refusal: CommandError,
    ) -> Result {
        match (command, h.id) {
            ("call", Some(caller_id)) => {
                let mut head = refusal.reply();
                head["result"] = json!(caller_id);
                push_result(st, id, &head, None);
                Ok(())
            }
            _ => Err(refusal),
        }
    }

    fn withdraw(&mut self, _: &mut State, _: ConnId, on: NeverBlocked) {
        match on {}
    }

    fn timeout_message(on: &NeverBlocked) -> String {
        match *on {}
    }

    fn disconnect(&mut self, st: &mut State, id: ConnId, _: &Connection) {
        // As a provider: its running calls fail now, its slots go.
        if let Some(names) = self.provided.remove(&id) {
            for name in names {
                if let Some(f) = self.functions.get_mut(&name) {
                    f.slots.retain(|s| s.provider != id);
                }
            }
            let lost: Vec<u64> = self
                .running
                .iter()
                .filter(|(_, r)| r.provider == id)
                .map(|(k, _)| *k)
                .collect();
            for k in lost {
                let r = self.running.remove(&k).expect("listed above");
                if let Some((caller, caller_id)) = r.caller {
                    self.by_caller.remove(&(caller, caller_id));
                    push_result(
                        st,
                        caller,
                        &json!({"status": -1, "result": caller_id, "lost": true,
                            "error": format!("The provider of '{}' disconnected during the call", r.function)}),
                        None,
                    );
                }
            }
        }
        // As a caller: queued calls go, running ones are orphaned.
        let mine: Vec<(ConnId, u64)> = self
            .by_caller
            .keys()
            .filter(|(c, _)| *c == id)
            .copied()
            .collect();
        for key in mine {
            match self.by_caller.remove(&key).expect("listed above") {
                CallerEntry::Queued(name, seq) => self.unqueue(&name, seq),
                CallerEntry::Running(k) => self.detach(st, k),
            }
        }
        self.drop_unused_functions();
    }

    fn expire(&mut self, st: &mut State, now: Instant) -> Option<Instant> {
        while let Some((when, name, seq)) = self.timers.first().cloned() {
            if when > now {
                return Some(when);
            }
            self.timers.pop_first();
            let Some(f) = self.functions.get_mut(&name) else {
                continue;
            };
            let Some(pos) = f.queue.iter().position(|q| q.seq == seq) else {
                continue;
            };
            let q = f.queue.remove(pos).expect("found above");
            self.by_caller.remove(&(q.call.caller, q.call.caller_id));
            push_result(
                st,
                q.call.caller,
                &json!({"status": -1, "result": q.call.caller_id, "timeout": true,
                    "error": format!("No provider of '{name}' took the call before its timeout")}),
                None,
            );
        }
        self.drop_unused_functions();
        None
    }
}

impl Rpc {
    /// Hands queued calls of `name` to providers with room.
    fn drain(&mut self, st: &mut State, name: &Arc<str>) {
        let Some(f) = self.functions.get_mut(name) else {
            return;
        };
        while !f.queue.is_empty() {
            let Some(i) = f.pick() else { break };
            let q = f.queue.pop_front().expect("not empty");
            if let Some(d) = q.deadline {
                self.timers.remove(&(d, name.clone(), q.seq));
            }
            f.slots[i].running += 1;
            let provider = f.slots[i].provider;
            let k = self.next_call;
            self.next_call += 1;
            let call = q.call;
            self.by_caller
                .insert((call.caller, call.caller_id), CallerEntry::Running(k));
            let mut head = json!({"call": k, "function": &*call.function});
            if let Some(w) = call.window {
                head["stream"] = json!(true);
                head["items"] = json!(w.items);
                head["bytes"] = json!(w.bytes);
            }
            self.running.insert(
                k,
                Running {
                    caller: Some((call.caller, call.caller_id)),
                    provider,
                    function: call.function,
                    window: call.window,
                    batch: call.batch,
                },
            );
            match self.locals.get(&provider) {
                // In-process providers decode either encoding themselves.
                Some(q) => q.push(LocalCall {
                    id: k,
                    function: self.running[&k].function.clone(),
                    args: call.args.buf,
                    stream: call.window.is_some(),
                }),
                None => push_result(st, provider, &head, Some(call.args)),
            }
        }
    }

    /// Registers an in-process provider `id` of `functions`, running up to
    /// `capacity` calls of each at once; its calls go to `queue`.
    pub fn add_local(
        &mut self,
        st: &mut State,
        id: ConnId,
        queue: Arc<CallQueue>,
        functions: &[&str],
        capacity: u32,
    ) {
        self.locals.insert(id, queue);
        for name in functions {
            let name = self.function(name);
            self.functions
                .get_mut(&name)
                .expect("just made")
                .slots
                .push(Slot {
                    provider: id,
                    capacity: capacity.max(1),
                    running: 0,
                });
            self.provided.entry(id).or_default().push(name.clone());
            self.drain(st, &name);
        }
    }

    /// Routes in-process providers' replies, as `return` does a
    /// connection's: (provider, call id, result).
    pub fn local_replies(&mut self, st: &mut State, replies: Vec<(ConnId, u64, LocalResult)>) {
        for (provider, k, result) in replies {
            if self.running.get(&k).is_none_or(|r| r.provider != provider) {
                continue;
            }
            let (head, body) = match result {
                Ok(buf) => (json!({"status": 0}), Some(Body { buf, layout: false })),
                Err((error_type, message)) => (
                    json!({"status": -1, "remote": true, "error": message,
                        "error_type": error_type, "traceback": ""}),
                    None,
                ),
            };
            self.end_call_with(st, k, head, body);
        }
    }

    /// The broker is stopping: in-process providers' workers stop waiting.
    pub fn close_locals(&mut self) {
        for q in self.locals.values() {
            q.close();
        }
    }

    /// Removes queued call `seq` of `name` and its timer.
    fn unqueue(&mut self, name: &Arc<str>, seq: u64) {
        if let Some(f) = self.functions.get_mut(name) {
            if let Some(pos) = f.queue.iter().position(|q| q.seq == seq) {
                let q = f.queue.remove(pos).expect("found above");
                if let Some(d) = q.deadline {
                    self.timers.remove(&(d, name.clone(), seq));
                }
            }
        }
    }

    /// Ends running call `k`: frees its provider's slot and pushes `head`
    /// (plus `"result"`) and `body` to its caller, if it still has one.
    fn end_call_with(&mut self, st: &mut State, k: u64, mut head: Json, body: Option<Body>) {
        let Some(r) = self.running.remove(&k) else {
            return;
        };
        if let Some(f) = self.functions.get_mut(&r.function) {
            if let Some(s) = f.slots.iter_mut().find(|s| s.provider == r.provider) {
                s.running = s.running.saturating_sub(1);
            }
        }
        if let Some((caller, caller_id)) = r.caller {
            self.by_caller.remove(&(caller, caller_id));
            head["result"] = json!(caller_id);
            push_result(st, caller, &head, body);
        }
        self.drain(st, &r.function);
        self.drop_unused_functions();
    }

    /// Ends running call `k` with `head` and no body.
    fn end_call(&mut self, st: &mut State, k: u64, head: &Json) {
        self.end_call_with(st, k, head.clone(), None);
    }

    /// Running call `k` lost its caller (cancelled or gone): its result
    /// will be dropped, and its provider is told, so it can skip the call
    /// if it has not started it, and must close a stream's producer.
    fn detach(&mut self, st: &mut State, k: u64) {
        if let Some(r) = self.running.get_mut(&k) {
            r.caller = None;
            push_result(st, r.provider, &json!({"cancel": k}), None);
        }
    }

    /// Forgets names with neither providers nor waiting calls.
    fn drop_unused_functions(&mut self) {
        self.functions
            .retain(|_, f| !f.slots.is_empty() || !f.queue.is_empty());
    }

    /// The interned name, creating its entry.
    fn function(&mut self, name: &str) -> Arc<str> {
        match self.functions.get_key_value(name) {
            Some((k, _)) => k.clone(),
            None => {
                let k: Arc<str> = name.into();
                self.functions.insert(k.clone(), Function::default());
                k
            }
        }
    }
}

/// Queues a pushed frame (a call for a provider, a result for a caller)
/// ahead of any replies held behind a DiME2 `wait`: pushes are not replies.
/// A body holding `dimeb_layout` matrices is converted to DiME2's classic
/// encoding for a client that did not ask for layouts.
fn push_result(st: &mut State, id: ConnId, head: &Json, body: Option<Body>) {
    let Some(c) = st.conns.get_mut(&id) else {
        return;
    };
    let body = body.map(|b| {
        if !b.layout || c.accepts.layout {
            return b.buf;
        }
        // Checked on arrival (Body::of): only running out of memory fails.
        dimeb::to_classic(&b.buf).unwrap_or_else(|e| {
            log::error!("client {id}: cannot convert a payload to the classic encoding: {e}");
            b.buf
        })
    });
    let text = head.to_string();
    let item = match body {
        Some(b) if !b.is_empty() => {
            OutItem::WithBody(encode_head(text.as_bytes(), b.len()), Arc::new(b))
        }
        _ => OutItem::Bytes(encode_head(text.as_bytes(), 0)),
    };
    c.meta(item);
    st.dirty.insert(id);
}

fn provide(svc: &mut Rpc, st: &mut State, id: ConnId, h: &Header, _: Frame) -> Result {
    let name = required(&h.function, "function")?;
    let capacity = h.capacity.unwrap_or(1);
    if capacity == 0 {
        return Err(CommandError::Failed(
            "capacity must be at least 1".to_owned(),
        ));
    }
    let name = svc.function(name);
    let f = svc.functions.get_mut(&name).expect("just made");
    match f.slots.iter_mut().find(|s| s.provider == id) {
        Some(s) => s.capacity = capacity,
        None => {
            f.slots.push(Slot {
                provider: id,
                capacity,
                running: 0,
            });
            svc.provided.entry(id).or_default().push(name.clone());
        }
    }
    st.reply_ok(id);
    svc.drain(st, &name);
    Ok(())
}

fn unprovide(svc: &mut Rpc, st: &mut State, id: ConnId, h: &Header, _: Frame) -> Result {
    let name = required(&h.function, "function")?;
    let Some(f) = svc.functions.get_mut(name) else {
        return Err(CommandError::Failed(format!(
            "This client does not provide '{name}'"
        )));
    };
    let before = f.slots.len();
    f.slots.retain(|s| s.provider != id);
    if f.slots.len() == before {
        return Err(CommandError::Failed(format!(
            "This client does not provide '{name}'"
        )));
    }
    if let Some(names) = svc.provided.get_mut(&id) {
        names.retain(|n| &**n != name);
    }
    // Its running calls still finish: `return` accepts them.
    svc.drop_unused_functions();
    st.reply_ok(id);
    Ok(())
}

fn call(svc: &mut Rpc, st: &mut State, id: ConnId, h: &Header, frame: Frame) -> Result {
    let name = required(&h.function, "function")?;
    let caller_id = h
        .id
        .ok_or_else(|| CommandError::Failed("JSON parsing error: missing field: id".to_owned()))?;
    let fail = |st: &mut State, msg: String| {
        push_result(
            st,
            id,
            &json!({"status": -1, "result": caller_id, "error": msg}),
            None,
        );
        Ok(())
    };
    let deadline = match deadline(h.timeout) {
        Ok(d) => d,
        Err(e) => return fail(st, e.message().to_owned()),
    };
    if svc.by_caller.contains_key(&(id, caller_id)) {
        return fail(
            st,
            format!("A call with id {caller_id} is already in flight"),
        );
    }
    let window = match (flag(h.stream), h.items, h.bytes) {
        (false, ..) => None,
        (true, Some(items @ 1..), Some(bytes @ 1..)) => Some(Window {
            items: clamp(items),
            bytes: clamp(bytes),
        }),
        (true, ..) => {
            return fail(
                st,
                "A stream needs a window: \"items\" and \"bytes\", both at least 1".to_owned(),
            );
        }
    };
    let args = match Body::of(frame, h) {
        Ok(b) => b,
        Err(e) => return fail(st, format!("The call's arguments are not valid dimeb: {e}")),
    };
    let name = svc.function(name);
    let seq = svc.next_seq;
    svc.next_seq += 1;
    let queued = Queued {
        call: Call {
            caller: id,
            caller_id,
            function: name.clone(),
            args,
            window,
            batch: window.is_some() && flag(h.batch),
        },
        deadline,
        seq,
    };
    svc.by_caller
        .insert((id, caller_id), CallerEntry::Queued(name.clone(), seq));
    if let Some(d) = deadline {
        svc.timers.insert((d, name.clone(), seq));
    }
    svc.functions
        .get_mut(&name)
        .expect("just made")
        .queue
        .push_back(queued);
    svc.drain(st, &name);
    Ok(())
}

/// `return`: a provider's result (or error) for call `call`.
fn give_back(svc: &mut Rpc, st: &mut State, id: ConnId, h: &Header, frame: Frame) -> Result {
    let k = h.call.ok_or_else(|| {
        CommandError::Failed("JSON parsing error: missing field: call".to_owned())
    })?;
    // A result nobody waits for any more (cancelled, caller gone), or one
    // this client was never given, is dropped without a word: the provider
    // cannot do anything about it.
    if svc.running.get(&k).is_none_or(|r| r.provider != id) {
        return Ok(());
    }
    let (head, body) = match &h.error {
        None => match Body::of(frame, h) {
            Ok(b) => (json!({"status": 0}), Some(b)),
            Err(e) => (
                json!({"status": -1, "remote": true,
                    "error": format!("The provider's result is not valid dimeb: {e}"),
                    "error_type": "ValueError", "traceback": ""}),
                None,
            ),
        },
        Some(msg) => (
            json!({"status": -1, "remote": true,
            "error": &**msg,
            "error_type": h.error_type.as_deref().unwrap_or("Exception"),
            "traceback": h.traceback.as_deref().unwrap_or("")}),
            None,
        ),
    };
    svc.end_call_with(st, k, head, body);
    Ok(())
}

/// `cancel`: withdraws a queued call, or discards a running call's result.
/// No reply: the caller has already given up on it.
fn cancel(svc: &mut Rpc, st: &mut State, id: ConnId, h: &Header, _: Frame) -> Result {
    let caller_id = h
        .id
        .ok_or_else(|| CommandError::Failed("JSON parsing error: missing field: id".to_owned()))?;
    match svc.by_caller.remove(&(id, caller_id)) {
        Some(CallerEntry::Queued(name, seq)) => svc.unqueue(&name, seq),
        Some(CallerEntry::Running(k)) => svc.detach(st, k),
        None => {}
    }
    svc.drop_unused_functions();
    Ok(())
}

/// `yield`: the next item of stream `call`, or a batch of them (`count`),
/// within the producer's window.
fn give_item(svc: &mut Rpc, st: &mut State, id: ConnId, h: &Header, frame: Frame) -> Result {
    let k = h.call.ok_or_else(|| {
        CommandError::Failed("JSON parsing error: missing field: call".to_owned())
    })?;
    // As for `return`: an item nobody waits for any more is dropped.
    let Some(r) = svc.running.get_mut(&k).filter(|r| r.provider == id) else {
        return Ok(());
    };
    let Some((caller, caller_id)) = r.caller else {
        return Ok(());
    };
    let layout = flag(h.dimeb_layout) && !frame.payload.is_empty();
    let batch = match h.count {
        None => None,
        Some(n) => match stream_batch::ranges(&frame.payload, n) {
            Ok(items) => Some(items),
            Err(e) => {
                let msg = format!(
                    "The producer of '{}' sent a malformed batch: {e}",
                    r.function
                );
                return fault(svc, st, id, k, msg);
            }
        },
    };
    let one = [frame.payload.len()];
    let many: Vec<usize>;
    let lengths: &[usize] = match &batch {
        None => &one,
        Some(items) => {
            many = items.iter().map(|r| r.len()).collect();
            &many
        }
    };
    // Items marked as holding layouts are checked now, so converting them
    // for the consumer later cannot fail.
    if layout {
        let checked = match &batch {
            None => check_value(&frame.payload),
            Some(items) => items
                .iter()
                .try_for_each(|r| check_value(&frame.payload[r.clone()])),
        };
        if let Err(e) = checked {
            let msg = format!(
                "The producer of '{}' sent an item that is not valid dimeb: {e}",
                r.function
            );
            return fault(svc, st, id, k, msg);
        }
    }
    let Some(w) = r.window.as_mut() else {
        let msg = format!(
            "The provider of '{}' sent a stream item for a plain call",
            r.function
        );
        return fault(svc, st, id, k, msg);
    };
    // A producer past its window would make the broker hold what the
    // consumer has not asked for. A batch counts as its items sent one
    // by one: each needs item and byte room left before it.
    if !w.take(lengths) {
        let msg = format!(
            "The producer of '{}' sent past the consumer's window",
            r.function
        );
        return fault(svc, st, id, k, msg);
    }
    let consumer_batches = r.batch;
    let Some(items) = batch else {
        let item = Body {
            buf: frame.payload,
            layout,
        };
        push_result(st, caller, &json!({"item": caller_id}), Some(item));
        return Ok(());
    };
    if consumer_batches {
        let converts = layout && st.conns.get(&caller).is_some_and(|c| !c.accepts.layout);
        let payload = if converts {
            classic_batch(&frame.payload, items.iter().cloned())
        } else {
            frame.payload
        };
        let head = json!({"item": caller_id, "count": items.len()});
        let body = Body {
            buf: payload,
            layout: false, // a batch is no one value: its items were converted
        };
        push_result(st, caller, &head, Some(body));
        return Ok(());
    }
    // A consumer that did not ask for batches gets the items one by one.
    for range in items {
        let mut buf = PooledBuf::with_len(range.len());
        buf.copy_from_slice(&frame.payload[range]);
        let item = Body { buf, layout };
        push_result(st, caller, &json!({"item": caller_id}), Some(item));
    }
    Ok(())
}

/// The batch payload `payload` (its items at `items`) with each item's
/// `dimeb_layout` matrices in DiME2's classic encoding, for a consumer
/// that did not ask for layouts.
fn classic_batch(payload: &[u8], items: impl Iterator<Item = Range<usize>>) -> PooledBuf {
    let mut out = Vec::with_capacity(payload.len());
    for r in items {
        let item = &payload[r];
        // Checked on arrival: only running out of memory fails.
        let pushed = match dimeb::to_classic(item) {
            Ok(classic) => stream_batch::push(&mut out, &classic),
            Err(e) => {
                log::error!("cannot convert a stream item to the classic encoding: {e}");
                stream_batch::push(&mut out, item)
            }
        };
        pushed.expect("no longer than the item it came from");
    }
    PooledBuf::from_vec(out)
}

/// Ends stream `k`, whose producer `provider` broke the protocol, with
/// `msg` for its consumer, and tells the producer to stop: `yield` has no
/// reply of its own.
fn fault(svc: &mut Rpc, st: &mut State, provider: ConnId, k: u64, msg: String) -> Result {
    svc.end_call(st, k, &json!({"status": -1, "error": msg}));
    push_result(st, provider, &json!({"cancel": k}), None);
    Ok(())
}

/// `credit`: the consumer of stream `id` grants its producer more room.
fn credit(svc: &mut Rpc, st: &mut State, id: ConnId, h: &Header, _: Frame) -> Result {
    let caller_id = h
        .id
        .ok_or_else(|| CommandError::Failed("JSON parsing error: missing field: id".to_owned()))?;
    let (items, bytes) = (clamp(h.items.unwrap_or(0)), clamp(h.bytes.unwrap_or(0)));
    // A stream still queued, finished or unknown: nothing to grant to.
    let Some(CallerEntry::Running(k)) = svc.by_caller.get(&(id, caller_id)) else {
        return Ok(());
    };
    let k = *k;
    let Some(r) = svc.running.get_mut(&k) else {
        return Ok(());
    };
    if let Some(w) = &mut r.window {
        w.items = w.items.saturating_add(items);
        w.bytes = w.bytes.saturating_add(bytes);
        push_result(
            st,
            r.provider,
            &json!({"credit": k, "items": items, "bytes": bytes}),
            None,
        );
    }
    Ok(())
}

/// A window count from the wire, kept in i64 range.
fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `ping`: proves the broker is alive to a client watching for silence.
fn ping(_: &mut Rpc, st: &mut State, id: ConnId, _: &Header, _: Frame) -> Result {
    st.reply_ok(id);
    Ok(())
}

impl Rpc {
    /// Each function's providers, running and queued calls, for `inspect`.
    fn describe(&self) -> Json {
        let mut names: Vec<&Arc<str>> = self.functions.keys().collect();
        names.sort();
        let functions: serde_json::Map<String, Json> = names
            .into_iter()
            .map(|n| {
                let f = &self.functions[n];
                let providers: Vec<Json> = f
                    .slots
                    .iter()
                    .map(|s| json!({"client": s.provider, "capacity": s.capacity, "running": s.running}))
                    .collect();
                let streams = self
                    .running
                    .values()
                    .filter(|r| &r.function == n && r.window.is_some())
                    .count();
                (
                    n.to_string(),
                    json!({"providers": providers, "queued": f.queue.len(), "streams": streams}),
                )
            })
            .collect();
        Json::Object(functions)
    }
}
