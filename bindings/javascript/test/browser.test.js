// A real browser: headless Chromium (Debian's /usr/bin/chromium, driven
// by playwright-core) loads a page served on 127.0.0.1 that imports
// dime.js, receives a matrix from a Python client and replies.

import test from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";
import { startServer, runPython, until, HERE } from "./helpers.js";

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const ROOT = path.resolve(HERE, "..");
const FILES = {
  "/index.html": [path.join(HERE, "browser/index.html"), "text/html; charset=utf-8"],
  "/dime.js": [path.join(ROOT, "dime.js"), "text/javascript"],
  "/dimeb.js": [path.join(ROOT, "dimeb.js"), "text/javascript"],
};

test("a page in headless Chromium exchanges a matrix with Python", { timeout: 60000 }, async (t) => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} missing: apt-get install -y chromium`);
  const srv = await startServer();
  t.after(() => srv.stop());
  const web = http.createServer((req, res) => {
    const f = FILES[new URL(req.url, "http://x").pathname];
    if (!f) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "Content-Type": f[1] }).end(readFileSync(f[0]));
  });
  await new Promise((r) => web.listen(0, "127.0.0.1", r));
  t.after(() => {
    web.closeAllConnections();
    return new Promise((r) => web.close(r));
  });
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    // playwright gives every launch a fresh, temporary user-data-dir.
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-quic",
      "--no-first-run",
    ],
  });
  t.after(() => browser.close());
  const page = await browser.newPage();
  const logs = [];
  page.on("console", (m) => logs.push(m.text()));
  page.on("pageerror", (e) => logs.push(String(e)));
  const url = `http://127.0.0.1:${web.address().port}/index.html?ws=${encodeURIComponent(srv.ws)}`;
  await page.goto(url);
  const state = () => page.evaluate(() => window.dimeStatus);
  await until(async () => ["joined", "failed"].includes(await state()), 20000, "the page to join");
  assert.equal(await state(), "joined", `${await page.evaluate(() => window.dimeError)} ${logs.join("\n")}`);

  const py = runPython(["matrix", srv.unix, "browser", "py-browser"]);
  const r = await py.done;
  assert.equal(r.code, 0, `python: ${r.stderr}`);
  assert.match(r.stdout, /OK/, "Python checked the page's reply (2*M)");
  await until(async () => ["sent", "failed"].includes(await state()), 20000, "the page to finish");
  assert.equal(await state(), "sent", await page.evaluate(() => window.dimeError));
  const result = await page.evaluate(() => window.dimeResult);
  assert.deepEqual(result, { shape: [100, 100], m01: 1.5, m10: 100.5, last: 9999.5 });
});
