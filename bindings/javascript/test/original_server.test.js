// The JavaScript client against an original DiME2 server: the test double
// tests/dime2_double.py (DiME2's commands only, no "extensions" in its
// handshake, every request's command logged). Round trips work, wait
// blocks in the server (one DiME2 wait, no polling), and the client
// reports that the server supports nothing extra; against our server it
// reports the extensions.

import { test } from "node:test";
import assert from "node:assert/strict";
import { WebSocket } from "ws";
import { DimeClient, Matrix } from "../dime.js";
import { startDouble, startServer } from "./helpers.js";

test("an original DiME2 server announces no extensions", async () => {
  const double = await startDouble();
  const d = new DimeClient(double.url, { WebSocket });
  try {
    await d.ready;
    assert.deepEqual(d.serverExtensions, []);
    assert.equal(d.supports("share"), false);
  } finally {
    d.close();
    await double.stop();
  }
});

test("DiME2 calls round-trip against the original server", async () => {
  const double = await startDouble();
  const a = new DimeClient(double.url, { WebSocket });
  const b = new DimeClient(double.url, { WebSocket });
  try {
    await a.join("js");
    a.workspace.m = new Matrix(new Float64Array([1, 2, 3, 4]), [2, 2]);
    await a.send("js", "m");
    await b.broadcast_r({ s: "hello" });
    assert.deepEqual(await a.sync(), ["m", "s"]);
    assert.deepEqual([...a.workspace.m.data], [1, 2, 3, 4]);
    assert.equal(a.workspace.s, "hello");
    assert.deepEqual(await b.devices(), ["js"]);
  } finally {
    a.close();
    b.close();
    await double.stop();
  }
});

test("wait blocks in the original server until a message comes", async () => {
  const double = await startDouble();
  const a = new DimeClient(double.url, { WebSocket });
  const b = new DimeClient(double.url, { WebSocket });
  try {
    await a.join("js");
    await b.ready;
    const syncs = double.count("sync");
    const t = Date.now();
    setTimeout(() => b.send_r("js", { late: 42 }), 500);
    assert.equal(await a.wait(), 1);
    assert.ok(Date.now() - t >= 400, `wait returned after ${Date.now() - t} ms`);
    assert.equal(double.count("wait"), 1);
    assert.equal(double.count("sync"), syncs, "wait polled");
    await a.sync();
    assert.equal(a.workspace.late, 42);
  } finally {
    a.close();
    b.close();
    await double.stop();
  }
});

test("our server announces its extensions", async () => {
  const srv = await startServer();
  const d = new DimeClient(srv.ws, { WebSocket });
  try {
    await d.ready;
    for (const name of ["share", "space", "sync_wait", "send_receive", "wait_timeout"]) {
      assert.ok(d.supports(name), name);
    }
    assert.equal(d.supports("no such thing"), false);
  } finally {
    d.close();
    await srv.stop();
  }
});
