// Arrays between OUR Python binding and the JS client. Our Python client
// sends numpy arrays in their own memory order (dimeb_layout), large ones
// through shared memory into the broker; the JS client negotiates neither,
// so the server converts each array once, to DiME2's column-major
// encoding, for it. Arrays from JS (column-major) reach numpy as
// Fortran-ordered views with the same values.

import test from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import path from "node:path";
import { WebSocket } from "ws";
import { DimeClient, Matrix } from "../dime.js";
import { REPO, startServer, runOurPython, until } from "./helpers.js";

const opts = { WebSocket };
let srv;
test.before(async () => {
  srv = await startServer();
});
test.after(async () => {
  await srv.stop();
});

/** Element k of an array (k counting in C order): py_ours_peer.py's value(). */
const VALUE = {
  f64: (k) => k + 0.5,
  f32: (k) => Math.fround(k + 0.25),
  i16: (k) => k - 6,
  i32: (k) => k * 7 - 100,
  u16: (k) => k * 3,
  i64: (k) => BigInt(k) - 2n ** 62n,
  c128: (k) => [k + 0.5, -(k + 1)],
  c64: (k) => [Math.fround(k + 0.5), Math.fround(-(k + 1))],
  bool: (k) => (k % 7 < 3 ? 1 : 0),
};

/** The C-order index of the element at column-major offset `o` of `shape`. */
function cIndex(o, shape) {
  let k = 0;
  let stride = shape.reduce((a, b) => a * b, 1);
  for (let d = 0; d < shape.length; d++) {
    stride /= shape[d]; // C-order stride of axis d: the product of the later axes
    k += (o % shape[d]) * stride;
    o = Math.floor(o / shape[d]);
  }
  return k;
}

/** A column-major Matrix of `kind` and `shape` whose elements are VALUE[kind](C index). */
function build(kind, shape) {
  const n = shape.reduce((a, b) => a * b, 1);
  const Data = { f64: Float64Array, f32: Float32Array, i16: Int16Array, i32: Int32Array, u16: Uint16Array,
    i64: BigInt64Array, c128: Float64Array, c64: Float32Array, bool: Uint8Array }[kind];
  const complex = kind === "c128" || kind === "c64";
  const data = new Data(complex ? 2 * n : n);
  for (let o = 0; o < n; o++) {
    const v = VALUE[kind](cIndex(o, shape));
    if (complex) [data[2 * o], data[2 * o + 1]] = v;
    else data[o] = v;
  }
  return new Matrix(data, shape, { complex, logical: kind === "bool" });
}

/** Asserts `m` is exactly `build(kind, shape)`: class, shape, every element. */
function assertArray(name, m, kind, shape) {
  const want = build(kind, shape);
  assert.ok(m instanceof Matrix, `${name}: ${m?.constructor?.name}`);
  assert.deepEqual(m.shape, shape, `${name}: shape`);
  assert.equal(m.data.constructor, want.data.constructor, `${name}: element class`);
  assert.equal(m.complex, want.complex, `${name}: complex`);
  assert.equal(m.logical, want.logical, `${name}: logical`);
  const bad = want.data.findIndex((x, i) => !Object.is(x, m.data[i]));
  assert.equal(bad, -1, `${name}: data[${bad}] is ${m.data[bad]}, expected ${want.data[bad]}`);
}

/** The broker's counters (`dime stats --json`, over its unix socket). */
function stats() {
  const bin = process.env.DIME_BIN || path.join(REPO, "target/debug/dime");
  return JSON.parse(execFileSync(bin, ["stats", "--json", `unix:${srv.unix}`], { encoding: "utf8" }));
}

/** Starts a peer and resolves once it has joined its group. */
async function ourPeer(args) {
  const py = runOurPython(args);
  await until(() => py.stdout().includes("READY") || py.proc.exitCode !== null, 20000, "the Python peer");
  if (!py.stdout().includes("READY")) {
    const r = await py.done;
    throw new Error(`the Python peer exited before joining (${r.code}): ${r.stderr}`);
  }
  return py;
}

// py_ours_peer.py's CASES: name -> [kind, shape].
const FROM_PYTHON = {
  f64: ["f64", [300, 200]],
  f32: ["f32", [1023, 77]],
  i16: ["i16", [3, 4]],
  u16_3d: ["u16", [4, 5, 6]],
  c128: ["c128", [5, 7]],
  bool: ["bool", [4, 6]],
  i64: ["i64", [3, 5]],
};
// Bytes of the two large ones, which our Python client puts in shared memory.
const LARGE = 300 * 200 * 8 + 1023 * 77 * 4;

test("C-ordered numpy arrays from our Python binding arrive column-major", { timeout: 60000 }, async (t) => {
  const d = new DimeClient(srv.ws, opts);
  t.after(() => d.close());
  await d.join("js-arrays");
  const before = stats();
  const py = await ourPeer(["send", srv.unix, "js-arrays", "py-arrays-ack"]);
  const names = new Set();
  while (names.size < Object.keys(FROM_PYTHON).length) {
    await d.wait();
    for (const n of await d.sync()) names.add(n);
  }
  for (const [name, [kind, shape]] of Object.entries(FROM_PYTHON)) {
    assertArray(name, d.workspace[name], kind, shape);
  }
  // Spot checks of the order itself: the second element of a column-major
  // 300x200 array is (1, 0), the 201st in C order.
  assert.equal(d.workspace.f64.data[1], 200.5);
  assert.equal(d.workspace.f64.get(0, 1), 1.5);
  // The large arrays came into the broker through shared memory (it read
  // only their headers from the socket) and went out to JS in frames.
  const after = stats();
  assert.ok(after.bytes_in - before.bytes_in < LARGE / 4, `bytes_in grew by ${after.bytes_in - before.bytes_in}`);
  assert.ok(after.bytes_out - before.bytes_out > LARGE, `bytes_out grew by ${after.bytes_out - before.bytes_out}`);
  d.workspace.ack = true;
  await d.send("py-arrays-ack", "ack");
  const r = await py.done;
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /OK/);
});

test("JS arrays reach numpy as Fortran-ordered views with the same values", { timeout: 60000 }, async (t) => {
  const d = new DimeClient(srv.ws, opts);
  t.after(() => d.close());
  await d.ready;
  const py = await ourPeer(["receive", srv.unix, "py-arrays-in"]);
  await d.send_r("py-arrays-in", {
    m: build("f64", [300, 200]),
    i32_3d: build("i32", [4, 5, 6]),
    c64: build("c64", [5, 7]),
    lg: build("bool", [4, 6]),
  });
  const r = await py.done;
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /checked m\nchecked i32_3d\nchecked c64\nchecked lg\nOK/);
});
