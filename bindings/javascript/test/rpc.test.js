// Remote calls and streams between JavaScript clients over the ws
// listener, and with a Rust/C provider: results, errors, lost providers,
// timeouts, cancellation, stream flow control and early close.

import test from "node:test";
import assert from "node:assert/strict";
import { WebSocket } from "ws";
import { DimeClient, RemoteError, ProviderLost, NoProvider, CancelledError, Matrix } from "../dime.js";
import { startServer } from "./helpers.js";

const opts = { WebSocket };
let srv;
test.before(async () => {
  srv = await startServer();
});
test.after(async () => {
  await srv.stop();
});

async function pair() {
  const p = new DimeClient(srv.ws, opts);
  const c = new DimeClient(srv.ws, opts);
  await Promise.all([p.ready, c.ready]);
  return [p, c];
}

test("a call returns the provider's result, values of every shape", async () => {
  const [p, c] = await pair();
  await p.provide("add", async ({ a, b }) => ({ sum: a + b }));
  await p.provide("echo", (x) => x);
  assert.deepEqual(await c.call("add", { a: 1, b: 2 }), { sum: 3 });
  const m = new Matrix(new Float64Array([1, 2, 3, 4, 5, 6]), [2, 3]);
  const back = await c.call("echo", { m, s: "héllo", l: [1, null, "x"] });
  assert.deepEqual(Array.from(back.m.data), [1, 2, 3, 4, 5, 6]);
  assert.deepEqual(back.m.shape, [2, 3]);
  assert.equal(back.s, "héllo");
  assert.deepEqual(back.l, [1, null, "x"]);
  // Many in flight at once, answered out of order by an async provider.
  await p.provide("slowdouble", async (x) => {
    await new Promise((r) => setTimeout(r, (x % 5) * 3));
    return 2 * x;
  }, { capacity: 8 });
  const results = await Promise.all(Array.from({ length: 200 }, (_, i) => c.call("slowdouble", i)));
  assert.deepEqual(results, Array.from({ length: 200 }, (_, i) => 2 * i));
  p.close();
  c.close();
});

test("a provider's error reaches the caller with its type and stack", async () => {
  const [p, c] = await pair();
  await p.provide("boom", () => {
    throw new TypeError("bad input");
  });
  await assert.rejects(c.call("boom", 1), (e) => {
    assert.ok(e instanceof RemoteError);
    assert.equal(e.errorType, "TypeError");
    assert.match(e.message, /bad input/);
    assert.match(e.remoteTraceback, /rpc\.test\.js/);
    return true;
  });
  p.close();
  c.close();
});

test("no provider before the timeout, a lost provider, and a cancelled call", async () => {
  const [p, c] = await pair();
  await assert.rejects(c.call("nobody", 1, { timeout: 50 }), NoProvider);
  await p.provide("hang", () => new Promise(() => {}));
  const pending = c.call("hang", 1);
  await new Promise((r) => setTimeout(r, 50));
  const t0 = Date.now();
  p.close();
  await assert.rejects(pending, ProviderLost);
  assert.ok(Date.now() - t0 < 1000);
  const ac = new AbortController();
  const cancelled = c.call("nobody-yet", 1, { signal: ac.signal });
  ac.abort();
  await assert.rejects(cancelled, CancelledError);
  // The cancelled call never runs: a provider arriving later sees only the next call.
  const p2 = new DimeClient(srv.ws, opts);
  const seen = [];
  await p2.provide("nobody-yet", (x) => {
    seen.push(x);
    return x;
  });
  assert.equal(await c.call("nobody-yet", 2), 2);
  assert.deepEqual(seen, [2]);
  p2.close();
  c.close();
});

test("a stream delivers its items in order, within the window", async () => {
  const [p, c] = await pair();
  let produced = 0;
  await p.provideStream("count", async function* (n) {
    for (let i = 0; i < n; i++) {
      produced++;
      yield i;
    }
  });
  const got = [];
  for await (const x of c.stream("count", 1000, { items: 16 })) got.push(x);
  assert.deepEqual(got, Array.from({ length: 1000 }, (_, i) => i));
  const none = [];
  for await (const x of c.stream("count", 0)) none.push(x);
  assert.deepEqual(none, []);
  // Unread, the producer stops at the window.
  produced = 0;
  const it = c.stream("count", 1000000, { items: 8 })[Symbol.asyncIterator]();
  assert.deepEqual(await it.next(), { value: 0, done: false });
  await new Promise((r) => setTimeout(r, 200));
  assert.ok(produced <= 8 + 1, `produced ${produced} into an 8-item window`);
  await it.return();
  p.close();
  c.close();
});

test("leaving a stream early closes the generator; a producer error ends it", async () => {
  const [p, c] = await pair();
  let closed = false;
  await p.provideStream("forever", async function* () {
    try {
      for (let i = 0; ; i++) yield i;
    } finally {
      closed = true;
    }
  });
  for await (const x of c.stream("forever", null, { items: 4 })) {
    if (x === 2) break;
  }
  for (let i = 0; i < 100 && !closed; i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(closed, "the generator was not closed");
  await p.provideStream("fails", function* () {
    yield 1;
    throw new RangeError("out of range");
  });
  const got = [];
  await assert.rejects(
    (async () => {
      for await (const x of c.stream("fails")) got.push(x);
    })(),
    (e) => e instanceof RemoteError && e.errorType === "RangeError",
  );
  assert.deepEqual(got, [1]);
  p.close();
  c.close();
});
