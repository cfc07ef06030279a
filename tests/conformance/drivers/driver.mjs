// Conformance driver for the JavaScript client (bindings/javascript) on Node.
//
//   node driver.mjs WS_URL GROUP
//
// Connects over WebSocket (the `ws` package from bindings/javascript's npm
// dev dependencies), joins GROUP, prints "ready", then runs the same
// commands as driver.py (row / send / recv; see there) from stdin until
// EOF, with values in the token form of tests/conformance/model.py.

import { createRequire } from "node:module";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const JS_DIR = path.resolve(HERE, "../../../bindings/javascript");
const { WebSocket } = createRequire(path.join(JS_DIR, "package.json"))("ws");
const { DimeClient, Matrix, Complex, Scalar } = await import(path.join(JS_DIR, "dime.js"));

// ------------------------------------------------------------ tokens

const PART = { int8: 1, int16: 2, int32: 4, int64: 8, uint8: 1, uint16: 2, uint32: 4, uint64: 8,
  single: 4, double: 8, csingle: 4, cdouble: 8, logical: 1 };
const ARRAY = { int8: Int8Array, int16: Int16Array, int32: Int32Array, int64: BigInt64Array,
  uint8: Uint8Array, uint16: Uint16Array, uint32: Uint32Array, uint64: BigUint64Array,
  single: Float32Array, double: Float64Array, csingle: Float32Array, cdouble: Float64Array,
  logical: Uint8Array };
const GET = { int8: "getInt8", int16: "getInt16", int32: "getInt32", int64: "getBigInt64",
  uint8: "getUint8", uint16: "getUint16", uint32: "getUint32", uint64: "getBigUint64",
  single: "getFloat32", double: "getFloat64", csingle: "getFloat32", cdouble: "getFloat64",
  logical: "getUint8" };
const SET = Object.fromEntries(Object.entries(GET).map(([k, v]) => [k, v.replace(/^get/, "set")]));

function unhex(t) {
  return t === "-" ? new Uint8Array(0) : Uint8Array.from(t.match(/../g), (h) => parseInt(h, 16));
}

function hex(bytes) {
  return bytes.length ? Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("hex") : "-";
}

/** Parses one value of the token form into {k, ...} objects. */
function parse(tokens, pos) {
  const k = tokens[pos++];
  switch (k) {
    case "N":
      return [{ k }, pos];
    case "B":
      return [{ k, v: tokens[pos] === "1" }, pos + 1];
    case "S":
      return [{ k, cls: tokens[pos], bytes: unhex(tokens[pos + 1]) }, pos + 2];
    case "M": {
      const cls = tokens[pos];
      const rank = Number(tokens[pos + 1]);
      const dims = tokens.slice(pos + 2, pos + 2 + rank).map(Number);
      return [{ k, cls, dims, bytes: unhex(tokens[pos + 2 + rank]) }, pos + 3 + rank];
    }
    case "U":
      return [{ k, bytes: unhex(tokens[pos]) }, pos + 1];
    case "L": {
      const n = Number(tokens[pos++]);
      const items = [];
      for (let i = 0; i < n; i++) {
        let item;
        [item, pos] = parse(tokens, pos);
        items.push(item);
      }
      return [{ k, items }, pos];
    }
    case "D": {
      const n = Number(tokens[pos++]);
      const pairs = [];
      for (let i = 0; i < n; i++) {
        let key;
        let value;
        [key, pos] = parse(tokens, pos);
        [value, pos] = parse(tokens, pos);
        pairs.push([key, value]);
      }
      return [{ k, pairs }, pos];
    }
    default:
      throw new Error(`cannot build a ${k} node`);
  }
}

/** Big-endian bytes -> a native typed array of class `cls`. */
function elements(cls, bytes) {
  const size = PART[cls];
  const n = bytes.length / size;
  const out = new ARRAY[cls](n);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  for (let i = 0; i < n; i++) out[i] = view[GET[cls]](i * size);
  return out;
}

// ------------------------------------------------------------ building

const textDecoder = new TextDecoder("utf-8", { fatal: true });

/** The JavaScript value a user would write for a wire value. */
function build(node, hints, top = true) {
  const h = top ? hints : [];
  switch (node.k) {
    case "N":
      return null;
    case "B":
      return node.v;
    case "S": {
      const x = elements(node.cls, node.bytes);
      if (node.cls === "double") return x[0];
      if (node.cls === "int64") return x[0];
      if (node.cls === "csingle" || node.cls === "cdouble") {
        return new Complex(x[0], x[1], { single: node.cls === "csingle" });
      }
      return new Scalar(node.cls, x[0]);
    }
    case "M": {
      const data = elements(node.cls, node.bytes);
      if (h.includes("typedarray") && node.dims.length === 1) return data;
      return new Matrix(data, node.dims, {
        complex: node.cls === "csingle" || node.cls === "cdouble",
        logical: node.cls === "logical",
      });
    }
    case "U":
      return textDecoder.decode(node.bytes);
    case "L":
      return node.items.map((x) => build(x, [], false));
    case "D": {
      const pairs = node.pairs.map(([k, v]) => [build(k, [], false), build(v, [], false)]);
      if (!h.includes("map") && pairs.every(([k]) => typeof k === "string")) {
        const obj = {};
        for (const [k, v] of pairs) {
          Object.defineProperty(obj, k, { value: v, enumerable: true, writable: true, configurable: true });
        }
        return obj;
      }
      return new Map(pairs);
    }
    default:
      throw new Error(`no JavaScript value for ${node.k}`);
  }
}

// ------------------------------------------------------------ describing

/** Big-endian bytes of one scalar: written straight from the number (no
 * array of numbers in between: V8 may canonicalize a NaN stored in one). */
function scalarBytes(cls, x) {
  const size = PART[cls];
  const out = new Uint8Array(size);
  new DataView(out.buffer)[SET[cls]](0, x);
  return out;
}

/** Big-endian bytes of a typed array's elements, copied byte by byte. */
function arrayBytes(cls, data) {
  const size = PART[cls];
  const src = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const out = new Uint8Array(src.length);
  const little = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
  for (let i = 0; i < src.length; i += size) {
    for (let j = 0; j < size; j++) out[i + j] = src[little ? i + size - 1 - j : i + j];
  }
  return out;
}

function classOf(m) {
  if (m.logical) return "logical";
  const real = Object.keys(ARRAY).filter((c) => !["csingle", "cdouble", "logical"].includes(c));
  const name = real.find((c) => m.data instanceof ARRAY[c]);
  if (!name) return null;
  if (m.complex) return name === "single" ? "csingle" : "cdouble";
  return name;
}

/** A received value in the token form, appended to `out`. */
function describe(v, out) {
  if (v === null) return out.push("N");
  switch (typeof v) {
    case "boolean":
      return out.push("B", v ? "1" : "0");
    case "number":
      return out.push("S", "number", hex(scalarBytes("double", v)));
    case "bigint":
      return out.push("S", "bigint", v.toString());
    case "string":
      return out.push("U", hex(new TextEncoder().encode(v)));
    case "object":
      break;
    default:
      return out.push("X", hex(new TextEncoder().encode(typeof v)));
  }
  if (v instanceof Scalar) return out.push("S", v.kind, hex(scalarBytes(v.kind, v.value)));
  if (v instanceof Complex) {
    const cls = v.single ? "csingle" : "cdouble";
    return out.push("S", cls, hex(scalarBytes(cls, v.re)) + hex(scalarBytes(cls, v.im)));
  }
  if (v instanceof Matrix) {
    const cls = classOf(v);
    if (!cls) return out.push("X", hex(new TextEncoder().encode(`Matrix of ${v.data.constructor.name}`)));
    return out.push("M", cls, String(v.shape.length), ...v.shape.map(String), hex(arrayBytes(cls, v.data)));
  }
  if (Array.isArray(v)) {
    out.push("L", String(v.length));
    for (const x of v) describe(x, out);
    return out;
  }
  if (v instanceof Map) {
    out.push("MAP", "js", String(v.size));
    for (const [k, x] of v) {
      describe(k, out);
      describe(x, out);
    }
    return out;
  }
  const proto = Object.getPrototypeOf(v);
  if (proto === Object.prototype || proto === null) {
    const keys = Object.keys(v);
    out.push("D", String(keys.length));
    for (const k of keys) {
      describe(k, out);
      describe(v[k], out);
    }
    return out;
  }
  return out.push("X", hex(new TextEncoder().encode(v.constructor ? v.constructor.name : "object")));
}

// ------------------------------------------------------------ commands

function say(...words) {
  process.stdout.write(`${words.join(" ")}\n`);
}

function hexmsg(e) {
  return hex(new TextEncoder().encode(`${e && e.name ? e.name : "Error"}: ${e && e.message ? e.message : e}`));
}

async function receive(d, senders, seconds) {
  const deadline = Date.now() + seconds * 1000;
  const announced = new Map(senders.map((s) => [s, null])); // rows each sender says it sent
  const arrived = new Map(senders.map((s) => [s, 0]));
  const done = () => [...announced].every(([s, n]) => n !== null && arrived.get(s) >= n);
  while (!done() && Date.now() < deadline) {
    let batch;
    try {
      batch = await d.sync_r(1);
    } catch (e) {
      say("rerr", hexmsg(e));
      continue;
    }
    if (batch.length === 0) {
      await new Promise((r) => setTimeout(r, 10));
      continue;
    }
    for (const [name, value] of batch) {
      const cut = name.indexOf("__");
      const [sender, id] = [name.slice(0, cut), name.slice(cut + 2)];
      if (id === "end" && typeof value === "string" && announced.has(sender)) {
        announced.set(sender, Number(value));
        continue;
      }
      arrived.set(sender, (arrived.get(sender) || 0) + 1);
      const out = [];
      try {
        describe(value, out);
      } catch (e) {
        out.splice(0, out.length, "E", hexmsg(e));
      }
      say("got", name, out.join(" "));
    }
  }
  say("recv-done");
}

async function main() {
  const [url, group] = process.argv.slice(2);
  const d = new DimeClient(url, { WebSocket });
  await d.join(group);
  say("ready", "js");
  const rows = [];
  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of lines) {
    const words = line.split(" ");
    const cmd = words[0];
    if (cmd === "row") {
      const [node] = parse(words.slice(3), 0);
      rows.push([words[1], words[2] === "-" ? [] : words[2].split(","), node]);
    } else if (cmd === "send") {
      const [to, prefix] = [words[1], words[2]];
      let count = 0;
      for (const [id, hints, node] of rows) {
        try {
          await d.send_r(to, { [`${prefix}__${id}`]: build(node, hints) });
          say("sent", id);
          count++;
        } catch (e) {
          say("err", id, hexmsg(e));
        }
      }
      await d.send_r(to, { [`${prefix}__end`]: String(count) });
      say("sent-done");
    } else if (cmd === "recv") {
      await receive(d, words.slice(2), Number(words[1]));
    } else {
      say("err", "-", hexmsg(new Error(`unknown command ${cmd}`)));
    }
  }
  d.close();
  process.exit(0);
}

main().catch((e) => {
  process.stderr.write(`driver.mjs: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
