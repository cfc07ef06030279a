// JS ↔ Python across the server: DiME2's own Python client (PyPI
// dime-client) on the unix socket, our JS client on the ws listener.

import test from "node:test";
import assert from "node:assert/strict";
import { WebSocket } from "ws";
import { DimeClient, Matrix, Complex, Scalar } from "../dime.js";
import { startServer, runPython, until } from "./helpers.js";

const opts = { WebSocket };
let srv;
test.before(async () => {
  srv = await startServer();
});
test.after(async () => {
  await srv.stop();
});

/** Starts a Python peer and resolves once it has joined its group. */
async function pythonPeer(args) {
  const py = runPython(args);
  await until(() => py.stdout().includes("READY") || py.proc.exitCode !== null, 20000, "the Python peer");
  if (!py.stdout().includes("READY")) {
    const r = await py.done;
    throw new Error(`the Python peer exited before joining (${r.code}): ${r.stderr}`);
  }
  return py;
}

test("a 100x100 float64 matrix from Python, and one back", { timeout: 60000 }, async (t) => {
  const d = new DimeClient(srv.ws, opts);
  t.after(() => d.close());
  await d.join("js-matrix");
  const py = await pythonPeer(["matrix", srv.unix, "js-matrix", "py-matrix"]);
  await d.wait();
  assert.deepEqual(await d.sync(), ["M"]);
  const m = d.workspace.M;
  assert.ok(m instanceof Matrix);
  assert.ok(m.data instanceof Float64Array);
  assert.deepEqual(m.shape, [100, 100]);
  for (const [i, j] of [[0, 0], [0, 1], [1, 0], [37, 99], [99, 99]]) {
    assert.equal(m.get(i, j), 100 * i + j + 0.5, `M(${i}, ${j})`);
  }
  // Column-major: the second element is M(1, 0).
  assert.equal(m.data[1], 100.5);
  d.workspace.reply = new Matrix(m.data.map((x) => 2 * x), [100, 100]);
  await d.send("py-matrix", "reply");
  const r = await py.done;
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /OK/);
});

test("every Python type reaches JS and goes back unchanged", { timeout: 60000 }, async (t) => {
  const d = new DimeClient(srv.ws, opts);
  t.after(() => d.close());
  await d.join("js-types");
  const py = await pythonPeer(["types", srv.unix, "js-types", "py-types"]);
  const names = new Set();
  while (names.size < 24) {
    await d.wait();
    for (const n of await d.sync()) names.add(n);
  }
  const w = d.workspace;
  assert.equal(w.none, null);
  assert.equal(w.t, true);
  assert.equal(w.i, 42n, "Python int is int64 → BigInt");
  assert.equal(w.i64max, 2n ** 63n - 1n);
  assert.equal(w.i64min, -(2n ** 63n));
  assert.ok(Object.is(w.negzero, -0));
  assert.ok(Number.isNaN(w.nan));
  assert.deepEqual([w.c.re, w.c.im, w.c.single], [1, -2, false]);
  assert.equal(w.s, "héllo ✓ 🎉");
  assert.equal(w.empty, "");
  assert.deepEqual(w.lst, [1n, "a", [null, 2.5]]);
  assert.deepEqual(w.d, { a: 1n, b: [1.5, "x"] });
  assert.deepEqual(w.f64.shape, [2, 3]);
  assert.deepEqual([...w.f64.data], [0, 3, 1, 4, 2, 5], "column-major from a C-ordered array");
  assert.ok(w.f32.data instanceof Float32Array);
  assert.ok(w.i8.data instanceof Int8Array);
  assert.deepEqual([...w.u64.data], [0n, 2n ** 64n - 1n]);
  assert.deepEqual([...w.i64a.data], [-(2n ** 63n), 2n ** 63n - 1n]);
  assert.ok(w.c128.complex && w.c128.data instanceof Float64Array);
  assert.deepEqual([w.c128.get(0, 1).re, w.c128.get(0, 1).im], [3, -4]);
  assert.ok(w.c64.complex && w.c64.data instanceof Float32Array);
  assert.deepEqual(w.u16_3d.shape, [2, 3, 4]);
  assert.equal(w.u16_3d.get(1, 2, 3), 1 * 12 + 2 * 4 + 3);
  assert.deepEqual(w.empty03.shape, [0, 3]);
  await d.send("py-types", ...names);
  const r = await py.done;
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /OK/);
});

test("JS values reach Python with the right classes, shapes and values", { timeout: 60000 }, async (t) => {
  const d = new DimeClient(srv.ws, opts);
  t.after(() => d.close());
  await d.ready;
  const vars = {
    m: new Matrix(Float64Array.from({ length: 6 }, (_, i) => i), [2, 3]),
    i16: new Matrix(new Int16Array([-1, 2, -3, 4]), [2, 2]),
    c32: new Matrix(new Float32Array([1, 2, 3, -4]), [2], { complex: true }),
    big: [-(2n ** 63n), 2n ** 64n - 1n],
    n: 3,
    s16: new Scalar("int16", -5),
    z: new Complex(0.5, -0.25),
    text: "naïve 🚀",
    nested: new Map([["k", { inner: [true, null] }]]),
  };
  const py = await pythonPeer(["receive", srv.unix, "py-receive", String(Object.keys(vars).length)]);
  await d.send_r("py-receive", vars);
  const r = await py.done;
  assert.equal(r.code, 0, r.stderr);
  const got = Object.fromEntries(
    r.stdout.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l)).map((o) => [o.name, o.value]),
  );
  assert.deepEqual(got.m, { type: "ndarray", dtype: "float64", shape: [2, 3], F: [0, 1, 2, 3, 4, 5] });
  assert.deepEqual(got.i16, { type: "ndarray", dtype: "int16", shape: [2, 2], F: ["-1", "2", "-3", "4"] });
  assert.deepEqual(got.c32, { type: "ndarray", dtype: "complex64", shape: [2], F: [[1, 2], [3, -4]] });
  assert.deepEqual(got.big, { type: "list", value: [{ type: "int", value: "-9223372036854775808" }, { type: "int", value: "18446744073709551615" }] });
  assert.deepEqual(got.n, { type: "float", value: "3.0" });
  assert.deepEqual(got.s16, { type: "int", value: "-5" });
  assert.deepEqual(got.z, { type: "complex", value: [0.5, -0.25] });
  assert.deepEqual(got.text, { type: "str", value: "naïve 🚀" });
  assert.deepEqual(got.nested, {
    type: "dict",
    value: { k: { type: "dict", value: { inner: { type: "list", value: [{ type: "bool", value: true }, { type: "NoneType", value: null }] } } } },
  });
});
