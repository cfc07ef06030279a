// dime.js: a promise-based DiME2 client for browsers and Node.js (≥ 20),
// speaking the DiME protocol over WebSocket (`dime -l ws:8889`).
//
//   import { DimeClient, Matrix } from "./dime.js";
//   const d = new DimeClient("ws://127.0.0.1:8889");   // or ("127.0.0.1", 8889)
//   await d.ready;
//   await d.join("web");
//   d.workspace.x = new Matrix(new Float64Array([1, 2, 3, 4]), [2, 2]);
//   await d.send("matlab", "x");
//   await d.wait();
//   const names = await d.sync();          // values land in d.workspace
//   d.close();
//
// Every method may be called without awaiting the previous one: requests
// are written in call order and the server answers in request order, so
// each reply settles the oldest pending request (a FIFO of promises).
// Sends need not be awaited at all: `await d.flush()` then waits for every
// answer and rejects with a send's failure (see flush). At most
// `pipelineWindow` requests await their answer (1024; 16 against an
// original DiME2 server, as its own Python client writes); later ones are
// written, in order, as answers come.
//
// Browsers use the global WebSocket. Node.js 20 has none: install the `ws`
// package, which is loaded on demand, or pass {WebSocket} in the options.

import * as dimeb from "./dimeb.js";

export { dimeb };
export { Complex, Matrix, Scalar, DimebError } from "./dimeb.js";

const MAGIC = 0x4469_4d45; // "DiME"
const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();

/** A request the server answered with a negative status. */
export class DimeError extends Error {
  constructor(message, reply = null) {
    super(message);
    this.name = "DimeError";
    this.reply = reply;
  }
}

/** A remote call's provider threw: its type name, message and traceback. */
export class RemoteError extends DimeError {
  constructor(reply) {
    super(`${reply.error_type || "Error"}: ${reply.error}`, reply);
    this.name = "RemoteError";
    /** The error's type name on the provider (e.g. "ValueError"). */
    this.errorType = reply.error_type || "Error";
    /** The provider's traceback, as text. */
    this.remoteTraceback = reply.traceback || "";
  }
}

/** A remote call's provider disconnected while running it. */
export class ProviderLost extends DimeError {
  constructor(reply) {
    super(reply.error, reply);
    this.name = "ProviderLost";
  }
}

/** No provider took a remote call before its timeout. */
export class NoProvider extends DimeError {
  constructor(reply) {
    super(reply.error, reply);
    this.name = "NoProvider";
  }
}

/** A remote call or stream was cancelled by its caller. */
export class CancelledError extends DimeError {
  constructor(message = "the call was cancelled") {
    super(message);
    this.name = "CancelledError";
  }
}

/**
 * The server refused this client's token (no token, or a wrong one, for a
 * server started with --auth: `ready` rejects with it), or a command its
 * roles do not permit (nothing changed; the client stays usable).
 */
export class PermissionError extends DimeError {
  constructor(reply) {
    super(reply.error, reply);
    this.name = "PermissionError";
  }
}

/** The error of a reply with a negative status. */
function replyError(json) {
  if (json.denied) return new PermissionError(json);
  return new DimeError(json.error || `request failed with status ${json.status}`, json);
}

/** The error a failed result push describes. */
function callError(json) {
  if (json.remote) return new RemoteError(json);
  if (json.lost) return new ProviderLost(json);
  if (json.timeout) return new NoProvider(json);
  if (json.denied) return new PermissionError(json);
  return new DimeError(json.error || "the call failed", json);
}

/** The `ws` package's WebSocket (Node.js), which takes TLS options. */
async function nodeWebSocket() {
  try {
    const mod = await import("ws");
    return mod.WebSocket || mod.default;
  } catch {
    throw new DimeError("tlsCa needs the 'ws' package (npm install ws); browsers use their own trusted CAs");
  }
}

async function defaultWebSocket() {
  if (typeof globalThis.WebSocket === "function") return globalThis.WebSocket;
  try {
    const mod = await import("ws");
    return mod.WebSocket || mod.default;
  } catch {
    throw new DimeError("no WebSocket implementation: install the 'ws' package (npm install ws) or pass {WebSocket}");
  }
}

/** Builds one DiME frame: prefix, JSON header, payload. */
export function encodeFrame(json, payload = new Uint8Array(0)) {
  const head = textEncoder.encode(JSON.stringify(json));
  const frame = new Uint8Array(12 + head.length + payload.length);
  const view = new DataView(frame.buffer);
  view.setUint32(0, MAGIC);
  view.setUint32(4, head.length);
  view.setUint32(8, payload.length);
  frame.set(head, 12);
  frame.set(payload, 12 + head.length);
  return frame;
}

/**
 * Incremental DiME frame parser over received bytes. Our server sends one
 * frame per WebSocket message, but the protocol lets a frame span messages
 * and the parser does not rely on either.
 */
class FrameParser {
  constructor() {
    this.chunks = [];
    this.length = 0;
  }
  push(bytes) {
    if (bytes.length > 0) {
      this.chunks.push(bytes);
      this.length += bytes.length;
    }
  }
  take(n) {
    // The common case, a whole frame in the first chunk, needs no copy.
    const first = this.chunks[0];
    if (first.length >= n) {
      const out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      this.length -= n;
      return out;
    }
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[0];
      const m = Math.min(c.length, n - filled);
      out.set(c.subarray(0, m), filled);
      filled += m;
      if (m === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(m);
    }
    this.length -= n;
    return out;
  }
  peekPrefix() {
    const p = this.length >= 12 ? this.take(12) : null;
    if (p) {
      // Put it back in front: it is read again with the rest of the frame.
      this.chunks.unshift(p);
      this.length += 12;
    }
    return p;
  }
  /** The next complete frame as {json, payload}, or null. */
  next() {
    const prefix = this.peekPrefix();
    if (!prefix) return null;
    const view = new DataView(prefix.buffer, prefix.byteOffset, 12);
    if (view.getUint32(0) !== MAGIC) throw new DimeError("invalid DiME frame from the server: bad magic");
    const jsonLen = view.getUint32(4);
    const payloadLen = view.getUint32(8);
    const total = 12 + jsonLen + payloadLen;
    if (this.length < total) return null;
    const frame = this.take(total);
    const json = JSON.parse(textDecoder.decode(frame.subarray(12, 12 + jsonLen)));
    return { json, payload: frame.subarray(12 + jsonLen) };
  }
}

// The JSON serialization of DiME2's Python client, for servers whose
// first client chose "json" (docs/protocol.md §3). Lossy where JSON is:
// BigInt travels as a number.
const JSON_DTYPES = {
  int8: Int8Array, int16: Int16Array, int32: Int32Array, int64: BigInt64Array,
  uint8: Uint8Array, uint16: Uint16Array, uint32: Uint32Array, uint64: BigUint64Array,
  float32: Float32Array, float64: Float64Array, complex64: Float32Array, complex128: Float64Array,
};

function toBase64(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

function fromBase64(s) {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function jsonEncode(value) {
  const text = JSON.stringify(value, function (key, v) {
    const raw = this[key];
    if (typeof raw === "bigint") return Number(raw);
    if (raw instanceof dimeb.Complex) return { __dime_type: "complex", real: raw.re, imag: raw.im };
    if (raw instanceof dimeb.Scalar) return Number(raw.value);
    if (raw instanceof Map) return Object.fromEntries(raw);
    if (raw instanceof dimeb.Matrix) {
      let dtype = raw.kind.replace("single", "float32").replace("double", "float64");
      if (raw.complex) dtype = raw.data instanceof Float32Array ? "complex64" : "complex128";
      if (raw.logical) throw new TypeError("logical matrices have no JSON form");
      const d = raw.data;
      return {
        __dime_type: "matrix", dtype, shape: raw.shape,
        data: toBase64(new Uint8Array(d.buffer, d.byteOffset, d.byteLength)),
      };
    }
    return v;
  });
  return textEncoder.encode(text);
}

function jsonDecode(bytes) {
  return JSON.parse(textDecoder.decode(bytes), (key, v) => {
    if (v && typeof v === "object" && v.__dime_type === "complex") return new dimeb.Complex(v.real, v.imag);
    if (v && typeof v === "object" && v.__dime_type === "matrix") {
      const Ctor = JSON_DTYPES[v.dtype];
      if (!Ctor) throw new DimeError(`unknown JSON matrix dtype ${v.dtype}`);
      const bytes = fromBase64(v.data);
      const data = new Ctor(bytes.buffer, 0, bytes.length / Ctor.BYTES_PER_ELEMENT);
      return new dimeb.Matrix(data, v.shape, { complex: v.dtype.startsWith("complex") });
    }
    return v;
  });
}

/** Most requests awaiting an answer at once, against our server. */
export const PIPELINE_WINDOW = 1024;
/** The same against an original DiME2 server (its Python client's 16). */
export const ORIGINAL_SERVER_WINDOW = 16;

/**
 * The promise a send or broadcast returns. It settles as the send does,
 * and records whether the caller looked at it (await, then, catch,
 * finally): a failure the caller saw there is theirs already, and flush()
 * does not report it a second time. Left alone, it is never an unhandled
 * rejection.
 */
class SendPromise extends Promise {
  /** Promises derived from it (then, catch) are plain ones. */
  static get [Symbol.species]() {
    return Promise;
  }

  /** `inner`'s outcome; `seen.observed` is set once the caller looks. */
  static of(inner, seen) {
    let settle;
    const p = new SendPromise((resolve, reject) => {
      settle = { resolve, reject };
    });
    inner.then(settle.resolve, settle.reject);
    p.seen = seen;
    // Marked handled without counting as the caller's look.
    Promise.prototype.then.call(p, undefined, () => {});
    return p;
  }

  then(onFulfilled, onRejected) {
    if (this.seen) this.seen.observed = true;
    return super.then(onFulfilled, onRejected);
  }
}

/** The error flush() reports for a failed send or broadcast. */
function relayFailure({ group, varname }, error) {
  const what = group === null ? `broadcast of '${varname}'` : `send of '${varname}' to group '${group}'`;
  return new DimeError(`pipelined ${what} failed: ${error.message}`, error.reply);
}

/**
 * A connection to a DiME server over WebSocket.
 *
 * `new DimeClient(host, port, options)` or `new DimeClient(url, options)`
 * with url `ws://host:port` or, over TLS, `wss://host:port`. Options:
 * `WebSocket` (an implementation to use), `decode` (options for
 * dimeb.decode: {scalars: "typed"}, {maps: "map"}), `pipeline` (most
 * requests awaiting an answer at once; default PIPELINE_WINDOW, at most
 * ORIGINAL_SERVER_WINDOW against an original DiME2 server), `token`
 * (presented in the handshake to a server started with --auth; a refusal
 * rejects `ready` with a PermissionError), `tlsCa` (Node.js with the `ws`
 * package: PEM text of the CA certificates a wss:// server's certificate
 * must be signed by, instead of the system's; browsers use their own).
 */
export class DimeClient {
  constructor(hostOrUrl = "127.0.0.1", port = 8889, options = {}) {
    if (typeof port === "object" && port !== null) {
      options = port;
      port = 8889;
    }
    this.url = /^wss?:\/\//.test(hostOrUrl)
      ? hostOrUrl
      : `ws://${hostOrUrl.includes(":") ? `[${hostOrUrl}]` : hostOrUrl}:${port}`;
    /** Variables sent with send/broadcast and received with sync. */
    this.workspace = {};
    /** The serialization the server asked for ("dimeb" unless a json client came first). */
    this.serialization = "dimeb";
    /** Names of received variables in a serialization JS cannot read (pickle, matlab). */
    this.skipped = [];
    /**
     * What the server announced beyond DiME2 in its handshake (names such as
     * "share"; docs/protocol-extensions.md), once `ready` resolves. Empty for
     * an original DiME2 server, with which every method here works: they
     * use only DiME2's commands.
     */
    this.serverExtensions = [];
    this.decodeOptions = options.decode || {};
    this.token = options.token;
    this.tlsCa = options.tlsCa;
    this.ws = null;
    this.pending = [];
    /** Requests written once fewer than `pipelineWindow` await an answer. */
    this.backlog = [];
    const window = options.pipeline ?? PIPELINE_WINDOW;
    if (!Number.isInteger(window) || window < 1) {
      throw new TypeError(`the pipeline option must be a whole number of requests >= 1, not ${window}`);
    }
    /** Most requests awaiting an answer at once (see the pipeline option). */
    this.pipelineWindow = window;
    /** Failures of sends not yet reported by flush(), oldest first. */
    this.unreported = [];
    this.parser = new FrameParser();
    this.closed = null;
    this.ready = this.#open(options.WebSocket);
    // The error stays with `ready` (and every call): never an unhandled rejection.
    this.ready.catch(() => {});
    // Registered first, so set before any call waiting for `ready` resumes;
    // from then on sends are written at once, in the call.
    this.ready.then(() => {
      this.#isReady = true;
    }, () => {});
  }

  /** Resolves once connected and handshaken (the same promise as `ready`). */
  connect() {
    return this.ready;
  }

  async #open(Impl) {
    const WS = Impl || (this.tlsCa ? await nodeWebSocket() : await defaultWebSocket());
    if (this.closed) throw this.closed;
    const ws = this.tlsCa ? new WS(this.url, [], { ca: this.tlsCa }) : new WS(this.url);
    this.ws = ws;
    ws.binaryType = "arraybuffer";
    await new Promise((resolve, reject) => {
      ws.onopen = () => resolve();
      ws.onerror = (e) => reject(new DimeError(`cannot connect to ${this.url}: ${e && e.message ? e.message : "WebSocket error"}`));
      ws.onclose = (e) => reject(new DimeError(`cannot connect to ${this.url}: closed (${e.code}${e.reason ? ` ${e.reason}` : ""})`));
    });
    ws.onmessage = (e) => this.#onMessage(e.data);
    ws.onerror = () => {};
    ws.onclose = (e) => {
      const why = `${e.code}${e.reason ? `: ${e.reason}` : ""}`;
      this.#fail(new DimeError(`connection to ${this.url} closed (${why})`));
    };
    const hello = { command: "handshake", serialization: "dimeb", tls: false };
    if (this.token !== undefined) hello.token = this.token;
    const reply = await this.#request(hello);
    this.#setSerialization(reply.serialization || "dimeb");
    // An original DiME2 server sends no list: it supports nothing extra.
    const ext = reply.extensions;
    if (ext !== undefined && !(Array.isArray(ext) && ext.every((e) => typeof e === "string"))) {
      throw new DimeError(`the server's handshake has a malformed "extensions": ${JSON.stringify(ext)}`);
    }
    this.serverExtensions = ext || [];
    if (ext === undefined) this.pipelineWindow = Math.min(this.pipelineWindow, ORIGINAL_SERVER_WINDOW);
  }

  /** Whether the server announced extension `name` (after `ready`); always false for an original DiME2 server. */
  supports(name) {
    return this.serverExtensions.includes(name);
  }

  #setSerialization(s) {
    if (s !== "dimeb" && s !== "json") {
      throw new DimeError(`the server asked for the ${s} serialization, which JavaScript cannot speak`);
    }
    this.serialization = s;
  }

  #onMessage(data) {
    if (typeof data === "string") {
      this.#fail(new DimeError("the server sent a text message; DiME uses binary messages"));
      return;
    }
    const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    this.parser.push(bytes);
    try {
      for (let f = this.parser.next(); f; f = this.parser.next()) this.#onFrame(f);
    } catch (e) {
      this.#fail(e);
      this.ws.close();
    }
  }

  #onFrame(frame) {
    const { json } = frame;
    if (json.meta === true && typeof json.status === "number" && json.status > 0) {
      // Meta messages may arrive between replies (docs/protocol.md §3).
      if (json.command === "reregister") {
        try {
          this.#setSerialization(json.serialization);
        } catch (e) {
          this.#fail(e);
        }
      }
      return;
    }
    // Remote-call pushes arrive between replies; relayed messages (which
    // always carry a varname) never are pushes.
    if (!("varname" in json) && this.#onPush(frame)) return;
    const p = this.pending[0];
    if (!p) {
      this.#fail(new DimeError(`unexpected frame from the server: ${JSON.stringify(json)}`));
      return;
    }
    if (!("status" in json)) {
      // A relayed message answering a sync: collected until its status.
      if (p.messages) p.messages.push(frame);
      return;
    }
    this.pending.shift();
    this.#writeBacklog();
    if (json.status < 0) {
      const error = replyError(json);
      // Bounded: a program that never flushes keeps the oldest failures.
      // One whose send was awaited was reported there.
      if (p.relay && !p.relay.seen.observed && this.unreported.length < PIPELINE_WINDOW) {
        this.unreported.push({ error: relayFailure(p.relay, error), seen: p.relay.seen });
      }
      p.reject(error);
    } else p.resolve(p.messages ? { reply: json, messages: p.messages } : json);
  }

  /** Writes waiting requests while the window has room, in call order. */
  #writeBacklog() {
    while (this.backlog.length > 0 && this.pending.length < this.pipelineWindow) {
      const { entry, frame } = this.backlog.shift();
      if (entry) this.pending.push(entry);
      this.ws.send(frame);
    }
  }

  #fail(err) {
    if (!this.closed) this.closed = err;
    for (const p of this.pending.splice(0)) p.reject(err);
    for (const { entry } of this.backlog.splice(0)) entry?.reject(err);
    for (const c of this.#calls.values()) c.reject(err);
    this.#calls.clear();
    for (const s of this.#streams.values()) s.end(err);
    this.#streams.clear();
    for (const r of this.#running.values()) r.cancel();
    this.#running.clear();
  }

  /**
   * Writes one request (or queues it behind the window) and returns the
   * promise of its reply. `relay` names a send or broadcast, whose failure
   * flush() reports too.
   */
  #request(json, payload, collect = false, relay = null) {
    if (this.closed) return Promise.reject(this.closed);
    return new Promise((resolve, reject) => {
      this.#write({ resolve, reject, messages: collect ? [] : null, relay }, encodeFrame(json, payload));
    });
  }

  /** Writes `frame` now if the window has room and nothing waits, else queues it. */
  #write(entry, frame) {
    if (this.backlog.length === 0 && (!entry || this.pending.length < this.pipelineWindow)) {
      if (entry) this.pending.push(entry);
      this.ws.send(frame);
    } else {
      this.backlog.push({ entry, frame });
    }
  }

  async #call(json, payload, collect) {
    if (!this.#isReady) await this.ready;
    return this.#request(json, payload, collect);
  }

  #encode(value) {
    return this.serialization === "json" ? jsonEncode(value) : dimeb.encode(value);
  }

  /** Joins one or more groups. */
  async join(...names) {
    await this.#call({ command: "join", name: names });
  }

  /** Leaves one or more groups. */
  async leave(...names) {
    await this.#call({ command: "leave", name: names });
  }

  #variables(varnames) {
    const out = {};
    for (const v of varnames) {
      if (!(v in this.workspace)) throw new DimeError(`no variable '${v}' in the workspace`);
      out[v] = this.workspace[v];
    }
    return out;
  }

  // Sends resolve once the server has taken them, so awaiting one gives
  // DiME2's behaviour. They need not be awaited: a send left alone never
  // becomes an unhandled rejection, and flush() reports its failure.

  /** Sends workspace variables to every member of `group`. */
  send(group, ...varnames) {
    return this.#sent(group, () => this.#variables(varnames));
  }

  /** Sends name → value pairs (an object) to every member of `group`. */
  send_r(group, vars) {
    return this.#sent(group, () => vars);
  }

  /** Sends workspace variables to every other connected client. */
  broadcast(...varnames) {
    return this.#sent(null, () => this.#variables(varnames));
  }

  /** Sends name → value pairs (an object) to every other connected client. */
  broadcast_r(vars) {
    return this.#sent(null, () => vars);
  }

  /** Set once connected: calls then write without waiting a turn. */
  #isReady = false;

  /** The promise of a send of `vars()` to `group` (null: broadcast). */
  #sent(group, vars) {
    const seen = { observed: false };
    return SendPromise.of(this.#relay(group, vars, seen), seen);
  }

  /** Sends each of `vars()` to `group` (null: broadcast); `seen` tells
   * whether the caller looked at the send's promise. */
  async #relay(group, vars, seen) {
    const entries = Object.entries(vars());
    if (!this.#isReady) await this.ready;
    // Encode everything first: a value that cannot be encoded must fail
    // the call before any request is written.
    const encoded = entries.map(([varname, value]) => [varname, this.#encode(value)]);
    await Promise.all(
      encoded.map(([varname, payload]) => {
        const head = group === null
          ? { command: "broadcast", varname, serialization: this.serialization }
          : { command: "send", name: group, varname, serialization: this.serialization };
        return this.#request(head, payload, false, { group, varname, seen });
      }),
    );
  }

  /**
   * Resolves once the server has answered every request made before it,
   * so every message sent is queued for its recipients. Rejects with the
   * oldest failure of a send not yet reported (a DimeError whose message
   * names the send: "pipelined send of 'x' to group 'g' failed: …"); call
   * it again for the next one. A send whose own promise the caller
   * awaited (or handled with then/catch) reported its failure there, with
   * the server's message, and flush() does not report it again.
   */
  async flush() {
    await this.ready;
    // The last request awaiting an answer (frames that get none, such as
    // a remote call's return, hold no entry).
    const waiting = this.backlog.findLast(({ entry }) => entry);
    const last = waiting ? waiting.entry : this.pending[this.pending.length - 1];
    if (last) {
      // Replies come in order: once the last request is answered, all are.
      await new Promise((resolve) => {
        const { resolve: done, reject: failed } = last;
        last.resolve = (v) => { done(v); resolve(); };
        last.reject = (e) => { failed(e); resolve(); };
      });
    }
    while (this.unreported.length > 0) {
      const { error, seen } = this.unreported.shift();
      if (!seen.observed) throw error;
    }
    if (this.closed) throw this.closed;
  }

  /** Requests written and not yet answered, plus those waiting for the window. */
  get unacknowledged() {
    return this.pending.length + this.backlog.length;
  }

  /**
   * Receives up to `n` queued messages (all with n < 0), stores them in the
   * workspace and returns their names in arrival order.
   */
  async sync(n = -1) {
    const vars = await this.sync_r(n);
    const names = [];
    for (const [name, value] of vars) {
      this.workspace[name] = value;
      names.push(name);
    }
    return names;
  }

  /** Like sync, but returns [name, value] pairs and leaves the workspace alone. */
  async sync_r(n = -1) {
    const { messages } = await this.#call({ command: "sync", n }, undefined, true);
    const out = [];
    for (const { json, payload } of messages) {
      // DiME2 senders may leave "serialization" out: the payload is then in
      // the one the session negotiated.
      const serialization = json.serialization ?? this.serialization;
      if (serialization === "dimeb") out.push([json.varname, dimeb.decode(payload, this.decodeOptions)]);
      else if (serialization === "json") out.push([json.varname, jsonDecode(payload)]);
      else this.skipped.push(json.varname);
    }
    return out;
  }

  /** Waits until a message is queued for this client; resolves to the count. */
  async wait() {
    const reply = await this.#call({ command: "wait" });
    return reply.n;
  }

  /** The groups with at least one member. */
  async devices() {
    const reply = await this.#call({ command: "devices" });
    return reply.devices;
  }

  // ---- remote calls and streams (docs/protocol-extensions.md)

  /** Calls in flight, by our id: {resolve, reject}. */
  #calls = new Map();
  /** Streams being consumed, by our id. */
  #streams = new Map();
  /** Calls we run for others, by the broker's id: {cancel(), grant()}. */
  #running = new Map();
  /** Functions and stream generators we provide, by name. */
  #provided = new Map();
  #nextId = 1;

  /** Writes a frame that gets no reply (call, return, yield …), in order
   * behind any request waiting for the window. */
  #post(json, payload) {
    if (this.closed) throw this.closed;
    this.#write(null, encodeFrame(json, payload));
  }

  // Remote calls always carry dimeb, whatever the messaging serialization.
  #decodePayload(payload) {
    return payload.length === 0 ? null : dimeb.decode(payload, this.decodeOptions);
  }

  /** Routes a push; false if the frame is not one. */
  #onPush(frame) {
    const { json, payload } = frame;
    if ("result" in json && "status" in json) {
      const id = json.result;
      const s = this.#streams.get(id);
      if (s) {
        this.#streams.delete(id);
        s.end(json.status === 0 ? null : callError(json));
        return true;
      }
      const c = this.#calls.get(id);
      if (c) {
        this.#calls.delete(id);
        if (json.status === 0) {
          try {
            c.resolve(this.#decodePayload(payload));
          } catch (e) {
            c.reject(e);
          }
        } else c.reject(callError(json));
      }
      return true;
    }
    if ("item" in json) {
      this.#streams.get(json.item)?.push(payload);
      return true;
    }
    if ("call" in json && "function" in json) {
      this.#runCall(json, payload);
      return true;
    }
    if ("credit" in json) {
      this.#running.get(json.credit)?.grant(json.items, json.bytes);
      return true;
    }
    if ("cancel" in json && !("command" in json)) {
      this.#running.get(json.cancel)?.cancel();
      return true;
    }
    return false;
  }

  /**
   * Calls the function `name` some client provides, with `args`; resolves
   * to its result. Options: `timeout` (ms to wait for a provider),
   * `signal` (an AbortSignal that cancels the call). Rejects with
   * RemoteError, ProviderLost, NoProvider or CancelledError.
   */
  async call(name, args = null, { timeout, signal } = {}) {
    await this.ready;
    const id = this.#nextId++;
    const head = { command: "call", function: name, id };
    if (timeout !== undefined) head.timeout = timeout;
    const payload = dimeb.encode(args);
    return new Promise((resolve, reject) => {
      this.#calls.set(id, { resolve, reject });
      if (signal) {
        const abort = () => {
          if (this.#calls.delete(id)) {
            reject(new CancelledError());
            if (!this.closed) this.#post({ command: "cancel", id });
          }
        };
        if (signal.aborted) abort();
        else signal.addEventListener("abort", abort, { once: true });
      }
      try {
        if (this.#calls.has(id)) this.#post(head, payload);
      } catch (e) {
        this.#calls.delete(id);
        reject(e);
      }
    });
  }

  /**
   * Provides the function `name`: `fn(args)` (may be async) runs for each
   * call and its return value (or thrown error) goes back to the caller.
   * `capacity`: calls run at once.
   */
  async provide(name, fn, { capacity = 1 } = {}) {
    this.#provided.set(name, { fn, stream: false });
    await this.#call({ command: "provide", function: name, capacity });
  }

  /**
   * Provides the stream `name`: `gen(args)` is an (async) generator whose
   * items go to the consumer, never more than its window ahead; it is
   * closed (`return()`) when the consumer stops early.
   */
  async provideStream(name, gen, { capacity = 1 } = {}) {
    this.#provided.set(name, { fn: gen, stream: true });
    await this.#call({ command: "provide", function: name, capacity });
  }

  /** Stops providing `name`; calls already running finish. */
  async unprovide(name) {
    this.#provided.delete(name);
    await this.#call({ command: "unprovide", function: name });
  }

  #errorReturn(k, e) {
    const head = {
      command: "return",
      call: k,
      error: e && e.message !== undefined ? String(e.message) : String(e),
      error_type: (e && e.name) || "Error",
      traceback: (e && e.stack) || "",
    };
    if (!this.closed) this.#post(head);
  }

  async #runCall(json, payload) {
    const k = json.call;
    const entry = this.#provided.get(json.function);
    let cancelled = false;
    let room = json.stream ? { items: json.items, bytes: json.bytes } : null;
    let wake = null;
    this.#running.set(k, {
      cancel: () => {
        cancelled = true;
        wake?.();
      },
      grant: (items, bytes) => {
        if (room) {
          room.items += items;
          room.bytes += bytes;
        }
        wake?.();
      },
    });
    try {
      if (!entry) throw new DimeError(`this client does not provide '${json.function}'`);
      const args = this.#decodePayload(payload);
      if (!json.stream) {
        const result = await entry.fn(args);
        if (!cancelled && !this.closed) this.#post({ command: "return", call: k }, dimeb.encode(result ?? null));
        else if (!this.closed) this.#post({ command: "return", call: k });
        return;
      }
      const it = entry.fn(args);
      try {
        for (;;) {
          while (!cancelled && !(room.items > 0 && room.bytes > 0)) {
            await new Promise((r) => (wake = r));
            wake = null;
          }
          if (cancelled || this.closed) break;
          const { value, done } = await it.next();
          if (done) break;
          const bytes = dimeb.encode(value ?? null);
          room.items -= 1;
          room.bytes -= bytes.length;
          this.#post({ command: "yield", call: k }, bytes);
        }
      } finally {
        if (cancelled) await it.return?.();
      }
      if (!this.closed) this.#post({ command: "return", call: k });
    } catch (e) {
      this.#errorReturn(k, e);
    } finally {
      this.#running.delete(k);
    }
  }

  /**
   * Opens the stream `name` with `args`: an async iterable of its items
   * (`for await (const x of d.stream("count", 10))`); leaving the loop
   * early stops the producer. Options: `items`, `bytes` (the window:
   * how far the producer may run ahead), `timeout` (ms to wait for a
   * provider).
   */
  stream(name, args = null, { items = 1024, bytes = 64 << 20, timeout } = {}) {
    const client = this;
    const id = this.#nextId++;
    const queue = [];
    let ended = false;
    let error = null;
    let wake = null;
    let readItems = 0;
    let readBytes = 0;
    let opened = null;
    const open = async () => {
      await this.ready;
      this.#streams.set(id, {
        push: (payload) => {
          queue.push(payload);
          wake?.();
        },
        end: (err) => {
          ended = true;
          error = err;
          wake?.();
        },
      });
      const head = { command: "call", function: name, id, stream: true, items, bytes };
      if (timeout !== undefined) head.timeout = timeout;
      this.#post(head, dimeb.encode(args));
    };
    const close = () => {
      if (!ended && client.#streams.delete(id) && !client.closed) client.#post({ command: "cancel", id });
      ended = true;
    };
    return {
      [Symbol.asyncIterator]() {
        return this;
      },
      async next() {
        opened ??= open();
        await opened;
        for (;;) {
          if (queue.length > 0) {
            const payload = queue.shift();
            readItems += 1;
            readBytes += payload.length;
            if (!ended && (readItems * 2 >= items || readBytes * 2 >= bytes)) {
              client.#post({ command: "credit", id, items: readItems, bytes: readBytes });
              readItems = 0;
              readBytes = 0;
            }
            return { value: client.#decodePayload(payload), done: false };
          }
          if (ended) {
            if (error) throw error;
            return { value: undefined, done: true };
          }
          await new Promise((r) => (wake = r));
          wake = null;
        }
      },
      async return() {
        close();
        return { value: undefined, done: true };
      },
    };
  }

  /** Closes the connection; pending requests are rejected. */
  close() {
    this.#fail(new DimeError("client closed"));
    // Without a socket yet, #open sees `closed` and never makes one.
    if (this.ws) this.ws.close();
  }
}

export default DimeClient;
