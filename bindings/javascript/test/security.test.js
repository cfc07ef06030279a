// TLS (wss://) and --auth from JavaScript against a real server serving
// the committed test certificates (tests/fixtures/tls, made by
// tests/tls_fixtures.rs): a token and a CA as options, a refused token and
// a refused command as PermissionError, and a certificate the client does
// not trust.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { DimeClient, PermissionError } from "../dime.js";
import { REPO } from "./helpers.js";

const PKI = path.join(REPO, "tests", "fixtures", "tls");

/** A server on wss: with --auth, serving the fixtures' certificate for localhost. */
async function secureServer() {
  const dir = mkdtempSync(path.join(tmpdir(), "dime-js-tls-"));
  writeFileSync(path.join(dir, "users"), "role sim join:sim.* send:sim.*\nann tok-ann sim\n");
  const bin = process.env.DIME_BIN || path.join(REPO, "target/debug/dime");
  const proc = spawn(bin, ["-l", "wss:127.0.0.1:0", "--tls-cert", path.join(PKI, "server.pem"),
    "--tls-key", path.join(PKI, "server.key"), "--auth", path.join(dir, "users")],
  { stdio: ["ignore", "ignore", "pipe"] });
  const port = await new Promise((resolve, reject) => {
    let buf = "";
    const timer = setTimeout(() => reject(new Error(`server did not start: ${buf}`)), 10000);
    proc.stderr.on("data", (d) => {
      buf += d;
      const m = buf.match(/listening on wss:[^\s]*:(\d+)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
  });
  return {
    url: `wss://localhost:${port}`,
    ca: readFileSync(path.join(PKI, "ca.pem")),
    other: readFileSync(path.join(PKI, "other-ca.pem")),
    stop: async () => {
      proc.kill("SIGTERM");
      await new Promise((r) => proc.once("exit", r));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

test("wss with a token; refusals are PermissionErrors; an untrusted certificate fails", async () => {
  const srv = await secureServer();
  try {
    const a = new DimeClient(srv.url, { token: "tok-ann", tlsCa: srv.ca });
    const b = new DimeClient(srv.url, { token: "tok-ann", tlsCa: srv.ca });
    await Promise.all([a.ready, b.ready]);
    assert.ok(a.serverExtensions.includes("auth"));
    await b.join("sim.b");
    await a.send_r("sim.b", { x: 42 });
    await b.wait();
    await b.sync();
    assert.equal(b.workspace.x, 42);
    await assert.rejects(a.join("ops"), (e) => e instanceof PermissionError && /may not join group 'ops'/.test(e.message));
    await a.join("sim.after");
    assert.ok((await a.devices()).includes("sim.after"));
    a.close();
    b.close();

    const nope = new DimeClient(srv.url, { token: "nope", tlsCa: srv.ca });
    await assert.rejects(nope.ready, (e) => e instanceof PermissionError && /token is not valid/.test(e.message));
    const none = new DimeClient(srv.url, { tlsCa: srv.ca });
    await assert.rejects(none.ready, (e) => e instanceof PermissionError && /Authentication required/.test(e.message));
    const untrusted = new DimeClient(srv.url, { token: "tok-ann", tlsCa: srv.other });
    await assert.rejects(untrusted.ready, /cannot connect to wss:\/\/localhost/);
  } finally {
    await srv.stop();
  }
});
