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

/**
 * A connection to a DiME server over WebSocket.
 *
 * `new DimeClient(host, port, options)` or `new DimeClient(url, options)`
 * with url `ws://host:port`. Options: `WebSocket` (an implementation to
 * use), `decode` (options for dimeb.decode: {scalars: "typed"},
 * {maps: "map"}).
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
    this.decodeOptions = options.decode || {};
    this.ws = null;
    this.pending = [];
    this.parser = new FrameParser();
    this.closed = null;
    this.ready = this.#open(options.WebSocket);
    // The error stays with `ready` (and every call): never an unhandled rejection.
    this.ready.catch(() => {});
  }

  /** Resolves once connected and handshaken (the same promise as `ready`). */
  connect() {
    return this.ready;
  }

  async #open(Impl) {
    const WS = Impl || (await defaultWebSocket());
    if (this.closed) throw this.closed;
    const ws = new WS(this.url);
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
    const reply = await this.#request({ command: "handshake", serialization: "dimeb", tls: false });
    this.#setSerialization(reply.serialization || "dimeb");
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
    if (json.status < 0) p.reject(new DimeError(json.error || `request failed with status ${json.status}`, json));
    else p.resolve(p.messages ? { reply: json, messages: p.messages } : json);
  }

  #fail(err) {
    if (!this.closed) this.closed = err;
    for (const p of this.pending.splice(0)) p.reject(err);
  }

  /** Writes one request and returns the promise of its reply. */
  #request(json, payload, collect = false) {
    if (this.closed) return Promise.reject(this.closed);
    return new Promise((resolve, reject) => {
      this.pending.push({ resolve, reject, messages: collect ? [] : null });
      this.ws.send(encodeFrame(json, payload));
    });
  }

  async #call(json, payload, collect) {
    await this.ready;
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

  /** Sends workspace variables to every member of `group`. */
  async send(group, ...varnames) {
    await this.send_r(group, this.#variables(varnames));
  }

  /** Sends name → value pairs (an object) to every member of `group`. */
  async send_r(group, vars) {
    await this.ready;
    // Encode everything first: a value that cannot be encoded must fail
    // the call before any request is written.
    const encoded = Object.entries(vars).map(([varname, value]) => [varname, this.#encode(value)]);
    await Promise.all(
      encoded.map(([varname, payload]) =>
        this.#request({ command: "send", name: group, varname, serialization: this.serialization }, payload),
      ),
    );
  }

  /** Sends workspace variables to every other connected client. */
  async broadcast(...varnames) {
    await this.broadcast_r(this.#variables(varnames));
  }

  /** Sends name → value pairs (an object) to every other connected client. */
  async broadcast_r(vars) {
    await this.ready;
    const encoded = Object.entries(vars).map(([varname, value]) => [varname, this.#encode(value)]);
    await Promise.all(
      encoded.map(([varname, payload]) =>
        this.#request({ command: "broadcast", varname, serialization: this.serialization }, payload),
      ),
    );
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

  /** Closes the connection; pending requests are rejected. */
  close() {
    this.#fail(new DimeError("client closed"));
    // Without a socket yet, #open sees `closed` and never makes one.
    if (this.ws) this.ws.close();
  }
}

export default DimeClient;
