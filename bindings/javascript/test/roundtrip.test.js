// Every type goes JS → server → JS over the ws listener, requests
// pipeline in order, and the client handles what the server may send
// between replies.

import test from "node:test";
import assert from "node:assert/strict";
import { WebSocket, WebSocketServer } from "ws";
import { DimeClient, DimeError, Matrix, Complex, Scalar, encodeFrame } from "../dime.js";
import { startServer, sameValue } from "./helpers.js";

const opts = { WebSocket };
let srv;
test.before(async () => {
  srv = await startServer();
});
test.after(async () => {
  await srv.stop();
});

const VALUES = {
  nul: null,
  yes: true,
  no: false,
  dbl: 1.5,
  negzero: -0,
  nan: NaN,
  inf: -Infinity,
  i64min: -(2n ** 63n),
  i64max: 2n ** 63n - 1n,
  u64max: 2n ** 64n - 1n,
  int16: new Scalar("int16", -300),
  single: new Scalar("single", 0.5),
  cplx: new Complex(1, -2),
  cplxSingle: new Complex(0.5, 0, { single: true }),
  str: "héllo ✓ 🎉",
  empty: "",
  list: [1, "two", [null, false]],
  obj: { a: 1, b: { c: [1n] } },
  map: new Map([[7n, "seven"], ["k", null]]),
  f64: new Matrix(Float64Array.from({ length: 12 }, (_, i) => i / 3), [3, 4]),
  f32: new Matrix(new Float32Array([1.5, -2.5, 3]), [3]),
  i8: new Matrix(new Int8Array([-128, 0, 127]), [1, 3]),
  i16: new Matrix(Int16Array.from({ length: 24 }, (_, i) => i - 12), [2, 3, 4]),
  i32: new Matrix(new Int32Array([-(2 ** 31), 2 ** 31 - 1]), [2, 1]),
  i64: new Matrix(new BigInt64Array([-(2n ** 63n), 2n ** 63n - 1n]), [2]),
  u8: new Matrix(new Uint8Array([0, 255]), [2]),
  u16: new Matrix(new Uint16Array([0, 65535]), [2]),
  u32: new Matrix(new Uint32Array([0, 2 ** 32 - 1]), [2]),
  u64: new Matrix(new BigUint64Array([0n, 2n ** 64n - 1n]), [2]),
  c64: new Matrix(new Float32Array([1, 2, 3, 0]), [2], { complex: true }),
  c128: new Matrix(new Float64Array([1, -1, 0, 0, 2, 2, -0, 5]), [2, 2], { complex: true }),
  logical: new Matrix(new Uint8Array([1, 0, 1, 1, 0, 0]), [3, 2], { logical: true }),
  empty03: new Matrix(new Float64Array(0), [0, 3]),
};

test("every type round-trips JS → server → JS", { timeout: 60000 }, async (t) => {
  const a = new DimeClient(srv.ws, opts);
  const b = new DimeClient(srv.ws, opts);
  t.after(() => [a, b].forEach((c) => c.close()));
  await Promise.all([a.ready, b.ready]);
  await b.join("rt-b");
  Object.assign(a.workspace, VALUES);
  await a.send("rt-b", ...Object.keys(VALUES));
  assert.equal(await b.wait(), Object.keys(VALUES).length);
  const names = await b.sync();
  assert.deepEqual(names, Object.keys(VALUES));
  const typed = new DimeClient(srv.ws, { ...opts, decode: { scalars: "typed" } });
  t.after(() => typed.close());
  await typed.join("rt-typed");
  for (const [name, v] of Object.entries(VALUES)) {
    const got = b.workspace[name];
    if (v instanceof Scalar) {
      assert.equal(got, v.value, name);
    } else {
      assert.ok(sameValue(v, got), `${name}: sent ${String(v)}, got ${String(got)}`);
    }
  }
  // With typed scalars the kinds survive too.
  await a.send("rt-typed", "int16", "single");
  await typed.wait();
  await typed.sync();
  assert.ok(sameValue(VALUES.int16, typed.workspace.int16));
  assert.ok(sameValue(VALUES.single, typed.workspace.single));
});

test("broadcast, devices, leave, and pipelined calls keep their order", { timeout: 60000 }, async (t) => {
  const a = new DimeClient(srv.ws, opts);
  const [host, port] = srv.wsHostPort.split(":");
  const b = new DimeClient(host, Number(port), opts);
  t.after(() => [a, b].forEach((c) => c.close()));
  await b.join("pipe-b", "pipe-c");
  a.workspace.x = 1;
  a.workspace.big = new Matrix(Float64Array.from({ length: 1_000_000 }, (_, i) => i), [1000, 1000]);
  // Not awaited one by one: replies settle the calls in request order.
  const calls = [a.broadcast("x"), a.send("pipe-b", "big"), a.devices(), a.send("pipe-c", "x")];
  const [, , devices] = await Promise.all(calls);
  assert.ok(devices.includes("pipe-b") && devices.includes("pipe-c"));
  const synced = await b.sync_r();
  assert.deepEqual(synced.map(([n]) => n), ["x", "big", "x"]);
  assert.ok(sameValue(a.workspace.big, synced[1][1]));
  await b.leave("pipe-c");
  await assert.rejects(a.send("pipe-c", "x"), (e) => e instanceof DimeError && /No such group/.test(e.message));
  await assert.rejects(b.leave("pipe-c"), /not in group/);
  // The connection stays usable after failed commands.
  assert.ok((await b.devices()).includes("pipe-b"));
  await assert.rejects(a.send("pipe-b", "nope"), /no variable 'nope'/);
  a.workspace.bad = new Set();
  await assert.rejects(a.send("pipe-b", "bad"), /cannot encode a Set/);
  assert.deepEqual(await b.sync(), []);
});

test("a pending wait is answered by a later send", { timeout: 60000 }, async (t) => {
  const a = new DimeClient(srv.ws, opts);
  const b = new DimeClient(srv.ws, opts);
  t.after(() => [a, b].forEach((c) => c.close()));
  await b.join("wait-b");
  const waiting = b.wait();
  const devices = b.devices(); // held behind the wait, answered after it
  await new Promise((r) => setTimeout(r, 50));
  a.workspace.v = "hi";
  await a.send("wait-b", "v");
  assert.equal(await waiting, 1);
  assert.ok((await devices).includes("wait-b"));
  assert.deepEqual(await b.sync(1), ["v"]);
  assert.equal(b.workspace.v, "hi");
});

test("close rejects pending calls and later calls", { timeout: 60000 }, async (t) => {
  const a = new DimeClient(srv.ws, opts);
  await a.join("close-a");
  const waiting = a.wait();
  a.close();
  await assert.rejects(waiting, /client closed/);
  await assert.rejects(a.devices(), /client closed/);
  const bad = new DimeClient("127.0.0.1", 1, opts);
  await assert.rejects(bad.ready, /cannot connect/);
});

test("meta messages between replies and frames split across messages", { timeout: 60000 }, async (t) => {
  // A stand-in server: checks what the client sends and answers with a
  // reregister meta message and a reply cut over two WebSocket messages.
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise((r) => wss.once("listening", r));
  t.after(() => {
    // ws's close waits for its connections: end them first.
    for (const c of wss.clients) c.terminate();
    return new Promise((r) => wss.close(r));
  });
  const seen = [];
  wss.on("connection", (sock) => {
    sock.on("message", (data) => {
      const buf = new Uint8Array(data);
      const view = new DataView(buf.buffer, buf.byteOffset);
      const jl = view.getUint32(4);
      const json = JSON.parse(new TextDecoder().decode(buf.subarray(12, 12 + jl)));
      seen.push({ json, payload: buf.subarray(12 + jl) });
      if (json.command === "handshake") {
        sock.send(encodeFrame({ status: 0, serialization: "dimeb", tls: false }));
      } else if (json.command === "join") {
        sock.send(encodeFrame({ status: 1, meta: true, command: "reregister", serialization: "json" }));
        const reply = encodeFrame({ status: 0 });
        sock.send(reply.subarray(0, 5));
        sock.send(reply.subarray(5));
      } else {
        sock.send(encodeFrame({ status: 0 }));
      }
    });
  });
  const d = new DimeClient(`ws://127.0.0.1:${wss.address().port}`, opts);
  t.after(() => d.close());
  await d.join("g");
  assert.equal(d.serialization, "json");
  d.workspace.m = new Matrix(new Float64Array([1, 2]), [2]);
  d.workspace.c = new Complex(1, 2);
  await d.send("h", "m", "c");
  const sends = seen.filter((s) => s.json.command === "send");
  assert.deepEqual(sends.map((s) => s.json.serialization), ["json", "json"]);
  const m = JSON.parse(new TextDecoder().decode(sends[0].payload));
  assert.deepEqual([m.__dime_type, m.dtype, m.shape], ["matrix", "float64", [2]]);
  assert.deepEqual(JSON.parse(new TextDecoder().decode(sends[1].payload)), { __dime_type: "complex", real: 1, imag: 2 });
});
