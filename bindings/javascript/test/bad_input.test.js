// Input on the ws listener beyond what our client sends: DiME bytes in text
// messages are served; bad input is answered and closed; a client connected
// all along keeps working.

import test from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { WebSocket } from "ws";
import { DimeClient, encodeFrame } from "../dime.js";
import { startServer } from "./helpers.js";

let srv;
let bystander;
test.before(async () => {
  srv = await startServer();
  bystander = new DimeClient(srv.ws, { WebSocket });
  await bystander.join("bystander");
});
test.after(async () => {
  bystander.close();
  await srv.stop();
});

async function bystanderServed() {
  bystander.workspace.x = 7;
  await bystander.send("bystander", "x");
  assert.deepEqual(await bystander.sync(), ["x"]);
}

/** Writes raw bytes to the ws port; resolves to everything read until the server closes. */
function rawExchange(bytes) {
  const [host, port] = srv.wsHostPort.split(":");
  return new Promise((resolve, reject) => {
    const s = net.connect(Number(port), host, () => s.write(bytes));
    const chunks = [];
    s.on("data", (c) => chunks.push(c));
    s.on("end", () => resolve(Buffer.concat(chunks).toString("latin1")));
    s.on("error", reject);
    s.setTimeout(10000, () => reject(new Error("server neither answered nor closed")));
  });
}

/** Opens a raw WebSocket; resolves to it once open. */
function rawWs() {
  const ws = new WebSocket(srv.ws);
  ws.binaryType = "arraybuffer";
  return new Promise((resolve, reject) => {
    ws.once("open", () => resolve(ws));
    ws.once("error", reject);
  });
}

test("plain HTTP without an upgrade gets 400 and a close", { timeout: 60000 }, async () => {
  const answer = await rawExchange("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  assert.match(answer, /^HTTP\/1\.1 400 Bad Request\r\n/);
  assert.match(answer, /DiME WebSocket endpoint/);
  await bystanderServed();
});

test("garbage bytes get 400 and a close", { timeout: 60000 }, async () => {
  const answer = await rawExchange(Buffer.from([0, 1, 2, 0xff, 0x13, 0x37, 13, 10, 13, 10]));
  assert.match(answer, /^HTTP\/1\.1 400 /);
  await bystanderServed();
});

test("text messages carry DiME bytes as binary ones do", { timeout: 60000 }, async () => {
  // As the original server: a message's bytes are read whatever its opcode,
  // even when they are not UTF-8 (a dimeb payload rarely is).
  const ws = await rawWs();
  const replies = [];
  let arrived = () => {};
  ws.on("message", (m) => {
    const bytes = new Uint8Array(m);
    const jsonLength = new DataView(bytes.buffer, bytes.byteOffset).getUint32(4);
    replies.push(JSON.parse(new TextDecoder().decode(bytes.subarray(12, 12 + jsonLength))));
    arrived();
  });
  const next = async (n) => {
    while (replies.length < n) await new Promise((r) => (arrived = r));
    return replies.splice(0, n);
  };
  const payload = new Uint8Array([0x17, 2, 0, 0, 0, 1, 0, 0, 0, 3, 0xff, 0xfe, 0x80]);
  const join = encodeFrame({ command: "join", name: ["text"] });
  const send = encodeFrame({ command: "send", name: "text", varname: "t", serialization: "dimeb" }, payload);
  const sync = encodeFrame({ command: "sync", n: -1 });
  ws.send(join, { binary: false });
  assert.deepEqual(await next(1), [{ status: 0 }]);
  // Two frames in one text message, the second cut across two messages.
  const both = new Uint8Array([...send, ...sync]);
  const cut = send.length + 5;
  ws.send(both.subarray(0, cut), { binary: false });
  ws.send(both.subarray(cut), { binary: false });
  const [sent, message, done] = await next(3);
  assert.deepEqual(sent, { status: 0 });
  assert.equal(message.varname, "t");
  assert.deepEqual(done, { status: 0 });
  ws.close();
  await bystanderServed();
});

test("a text message that is not a DiME frame gets an error, then a close", { timeout: 60000 }, async () => {
  const ws = await rawWs();
  const messages = [];
  ws.on("message", (m) => messages.push(new Uint8Array(m)));
  const closed = new Promise((r) => ws.once("close", (code) => r(code)));
  ws.send(JSON.stringify({ command: "devices" }));
  await closed;
  assert.equal(messages.length, 1, "exactly one reply before the close");
  const reply = JSON.parse(new TextDecoder().decode(messages[0].subarray(12)));
  assert.equal(reply.status, -1);
  assert.match(reply.error, /bad magic/);
  await bystanderServed();
});

test("a 5 GB length claim gets an error frame, then a close", { timeout: 60000 }, async () => {
  const ws = await rawWs();
  const messages = [];
  ws.on("message", (m) => messages.push(new Uint8Array(m)));
  const closed = new Promise((r) => ws.once("close", (code) => r(code)));
  const claim = new Uint8Array(12);
  const v = new DataView(claim.buffer);
  v.setUint32(0, 0x44694d45);
  v.setUint32(4, 0xffffffff);
  v.setUint32(8, 0x40000000); // 4 GiB + 1 GiB of JSON and payload claimed
  ws.send(claim);
  await closed;
  assert.equal(messages.length, 1, "exactly one reply before the close");
  const reply = JSON.parse(new TextDecoder().decode(messages[0].subarray(12)));
  assert.equal(reply.status, -1);
  assert.match(reply.error, /too large/i);
  await bystanderServed();
});

test("a client that closes mid-handshake leaves the server serving", { timeout: 60000 }, async () => {
  const [host, port] = srv.wsHostPort.split(":");
  await new Promise((resolve) => {
    const s = net.connect(Number(port), host, () => {
      s.end("GET / HTTP/1.1\r\nUpgrade: websocket\r\n");
    });
    s.on("close", resolve);
    s.resume();
  });
  await bystanderServed();
  // A well-formed frame still works on a fresh raw WebSocket.
  const ws = await rawWs();
  const reply = new Promise((r) => ws.once("message", (m) => r(new Uint8Array(m))));
  ws.send(encodeFrame({ command: "devices" }));
  const json = JSON.parse(new TextDecoder().decode((await reply).subarray(12)));
  assert.equal(json.status, 0);
  ws.close();
});
