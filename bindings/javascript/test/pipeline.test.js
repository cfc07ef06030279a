// Pipelined sends in the JavaScript client: sends need not be awaited,
// flush() waits for every answer and reports a send's failure naming it
// (a send left alone is never an unhandled rejection), the window bounds
// the requests awaiting an answer (later ones wait, in order), and
// against an original DiME2 server the window is its client's 16.

import { test, after } from "node:test";
import assert from "node:assert/strict";
import { WebSocket } from "ws";
import { DimeClient, DimeError, PIPELINE_WINDOW, ORIGINAL_SERVER_WINDOW } from "../dime.js";
import { startDouble, startServer } from "./helpers.js";

const srv = await startServer();
after(() => srv.stop());
const opts = { WebSocket };

let unhandled = 0;
process.on("unhandledRejection", () => unhandled++);

test("sends left alone, then flush: all delivered in order", { timeout: 60000 }, async (t) => {
  const a = new DimeClient(srv.ws, opts);
  const b = new DimeClient(srv.ws, opts);
  t.after(() => [a, b].forEach((c) => c.close()));
  await b.join("js-pipe-b");
  await a.ready;
  assert.equal(a.pipelineWindow, PIPELINE_WINDOW);
  for (let i = 0; i < 2000; i++) a.send_r("js-pipe-b", { v: i });
  assert.ok(a.unacknowledged > 0);
  await a.flush();
  assert.equal(a.unacknowledged, 0);
  const got = await b.sync_r();
  assert.deepEqual(got.map(([, v]) => v), Array.from({ length: 2000 }, (_, i) => i));
});

test("a failed send is reported by flush, naming it, and never unhandled", { timeout: 60000 }, async (t) => {
  const a = new DimeClient(srv.ws, opts);
  t.after(() => a.close());
  await a.join("js-pipe-own");
  a.send_r("js-pipe-own", { first: 1 });
  a.send_r("js-pipe-nobody", { lost: 2 });
  a.broadcast_r({ third: 3 });
  await assert.rejects(a.flush(), (e) => e instanceof DimeError
    && e.message === "pipelined send of 'lost' to group 'js-pipe-nobody' failed: No such group exists: js-pipe-nobody");
  await a.flush(); // reported once
  // The send's own promise carries the server's message, as in DiME2;
  // awaited, its failure is reported there, and flush() does not report
  // it again.
  await assert.rejects(a.send_r("js-pipe-nobody", { x: 1 }), /^DimeError: No such group exists/);
  await a.flush();
  // Handled with catch (before or after the answer came): the same.
  let caught = 0;
  a.send_r("js-pipe-nobody", { y: 1 }).catch(() => caught++);
  const late = a.send_r("js-pipe-nobody", { z: 1 });
  await new Promise((r) => setTimeout(r, 50));
  await late.then(() => assert.fail("the send succeeded"), () => caught++);
  await a.flush();
  assert.equal(caught, 2);
  // Left alone, it is still flush()'s to report.
  a.send_r("js-pipe-nobody", { w: 1 });
  await assert.rejects(a.flush(), /pipelined send of 'w'/);
  await a.flush();
  assert.deepEqual((await a.sync_r()).map(([n]) => n), ["first"]);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(unhandled, 0);
});

test("flush waits for the sends before a frame that gets no answer", { timeout: 60000 }, async (t) => {
  const a = new DimeClient(srv.ws, { ...opts, pipeline: 1 });
  t.after(() => a.close());
  await a.join("js-pipe-post");
  for (let i = 0; i < 5; i++) a.send_r("js-pipe-post", { v: i });
  // A remote call's frame gets no answer of its own: queued behind the
  // sends waiting for the window, it must not hide them from flush().
  const call = a.call("js-pipe-nobody-provides", null, { timeout: 50 }).catch((e) => e);
  await a.flush();
  assert.equal(a.unacknowledged, 0);
  assert.equal((await a.sync_r()).length, 5);
  assert.ok((await call) instanceof DimeError);
});

test("the window bounds the requests awaiting an answer", { timeout: 60000 }, async (t) => {
  assert.throws(() => new DimeClient(srv.ws, { ...opts, pipeline: 0 }), TypeError);
  const a = new DimeClient(srv.ws, { ...opts, pipeline: 4 });
  t.after(() => a.close());
  await a.join("js-pipe-win");
  const sends = [];
  for (let i = 0; i < 10; i++) sends.push(a.send_r("js-pipe-win", { v: i }));
  // Written: at most 4; the rest wait their turn, in order.
  assert.ok(a.pending.length <= 4, `${a.pending.length} pending`);
  assert.equal(a.unacknowledged, 10);
  const names = a.devices(); // behind the sends
  await Promise.all(sends);
  assert.deepEqual(await names, ["js-pipe-win"]);
  const got = await a.sync_r();
  assert.deepEqual(got.map(([, v]) => v), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
});

test("against an original DiME2 server the window is 16", { timeout: 60000 }, async (t) => {
  const d = await startDouble();
  t.after(() => d.stop());
  const a = new DimeClient(d.url, opts);
  t.after(() => a.close());
  await a.ready;
  assert.equal(a.pipelineWindow, ORIGINAL_SERVER_WINDOW);
  await a.join("js");
  let most = 0;
  for (let i = 0; i < 40; i++) {
    a.send_r("js", { v: i });
    most = Math.max(most, a.pending.length);
  }
  assert.ok(most <= 16, `${most} awaiting an answer`);
  assert.equal(await a.wait(), 40);
  a.send_r("nobody", { x: 1 });
  await assert.rejects(a.flush(), /pipelined send of 'x' to group 'nobody'/);
});
