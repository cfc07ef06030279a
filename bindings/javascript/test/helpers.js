// Shared test helpers: a dime server to talk to, and Python peers.
//
// The server is the one run-tests.sh started (DIME_WS, DIME_UNIX, DIME_TCP
// in the environment) or, when a test file runs on its own, a fresh
// target/debug/dime started here.

import { spawn } from "node:child_process";
import { mkdtempSync, existsSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Complex, Matrix, Scalar } from "../dimeb.js";

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, "../../..");
export const PYTHON = process.env.DIME_PYTHON || path.join(REPO, ".venv/compat/bin/python");

/**
 * Starts (or reuses) a server; resolves to {ws, wsHostPort, unix, stop}.
 * {fresh: true} always starts a new one (for server-wide state).
 */
export async function startServer({ fresh = false } = {}) {
  if (!fresh && process.env.DIME_WS && process.env.DIME_UNIX) {
    const ws = process.env.DIME_WS;
    return { ws, wsHostPort: ws.replace(/^ws:\/\//, ""), unix: process.env.DIME_UNIX, stop: async () => {} };
  }
  const bin = process.env.DIME_BIN || path.join(REPO, "target/debug/dime");
  if (!existsSync(bin)) throw new Error(`server binary ${bin} not found: run cargo build`);
  const dir = mkdtempSync(path.join(tmpdir(), "dime-js-"));
  const sock = path.join(dir, "dime.sock");
  const proc = spawn(bin, ["-l", `unix:${sock}`, "-l", "ws:127.0.0.1:0"], { stdio: ["ignore", "ignore", "pipe"] });
  const addrs = await new Promise((resolve, reject) => {
    let buf = "";
    const found = {};
    const timer = setTimeout(() => reject(new Error(`server did not start: ${buf}`)), 10000);
    proc.stderr.on("data", (d) => {
      buf += d;
      for (const m of buf.matchAll(/^dime: listening on (\w+):(.+)$/gm)) found[m[1]] = m[2];
      if (found.ws && found.unix) {
        clearTimeout(timer);
        resolve(found);
      }
    });
    proc.on("exit", (code) => reject(new Error(`server exited with ${code}: ${buf}`)));
  });
  return {
    ws: `ws://${addrs.ws}`,
    wsHostPort: addrs.ws,
    unix: addrs.unix,
    stop: async () => {
      proc.kill("SIGTERM");
      await new Promise((r) => proc.once("exit", r));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Runs test/py_peer.py with `args`; resolves to {code, stdout, stderr}.
 * Killed after `timeoutMs` so a stuck peer fails the test instead of
 * hanging it.
 */
export function runPython(args, timeoutMs = 30000) {
  return runScript("py_peer.py", args, process.env, timeoutMs);
}

/**
 * Runs test/py_ours_peer.py with `args` on OUR Python binding
 * (bindings/python, first on PYTHONPATH, so it shadows the compat venv's
 * original client) over this repository's target/debug/libdime.so
 * (DIME_LIBRARY overrides); resolves as runPython does.
 */
export function runOurPython(args, timeoutMs = 30000) {
  const lib = process.env.DIME_LIBRARY || path.join(REPO, "target/debug/libdime.so");
  if (!existsSync(lib)) throw new Error(`${lib} missing: run cargo build`);
  const pythonPath = [path.join(REPO, "bindings/python"), process.env.PYTHONPATH].filter(Boolean).join(path.delimiter);
  const env = { ...process.env, PYTHONPATH: pythonPath, DIME_LIBRARY: lib };
  return runScript("py_ours_peer.py", args, env, timeoutMs);
}

function runScript(script, args, env, timeoutMs) {
  if (!existsSync(PYTHON)) {
    throw new Error(`${PYTHON} missing: python3 -m venv .venv/compat && .venv/compat/bin/pip install dime-client==0.0.1 numpy`);
  }
  const proc = spawn(PYTHON, [path.join(HERE, script), ...args], { stdio: ["ignore", "pipe", "pipe"], env });
  let stdout = "";
  let stderr = "";
  proc.stdout.on("data", (d) => (stdout += d));
  proc.stderr.on("data", (d) => (stderr += d));
  const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  const done = new Promise((resolve) =>
    proc.on("exit", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    }),
  );
  return { proc, done, stdout: () => stdout };
}

/** Resolves once `pred()` is true, polling; rejects after `ms`. */
export async function until(pred, ms = 10000, what = "condition") {
  const end = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Deep equality that tells -0 from 0, NaN from NaN-less, and keeps classes apart. */
export function sameValue(a, b) {
  if (typeof a === "number") return Object.is(a, b);
  if (a instanceof Matrix) {
    return (
      b instanceof Matrix &&
      a.data.constructor === b.data.constructor &&
      a.complex === b.complex &&
      a.logical === b.logical &&
      JSON.stringify(a.shape) === JSON.stringify(b.shape) &&
      a.data.every((x, i) => Object.is(x, b.data[i]))
    );
  }
  if (a instanceof Complex) return b instanceof Complex && Object.is(a.re, b.re) && Object.is(a.im, b.im) && a.single === b.single;
  if (a instanceof Scalar) return b instanceof Scalar && a.kind === b.kind && a.value === b.value;
  if (a instanceof Map) return b instanceof Map && a.size === b.size && [...a].every(([k, v], i) => sameValue(k, [...b][i][0]) && sameValue(v, [...b][i][1]));
  if (Array.isArray(a)) return Array.isArray(b) && a.length === b.length && a.every((x, i) => sameValue(x, b[i]));
  if (a && typeof a === "object") {
    const ka = Object.keys(a);
    return b && typeof b === "object" && !(b instanceof Map) && JSON.stringify(ka) === JSON.stringify(Object.keys(b)) && ka.every((k) => sameValue(a[k], b[k]));
  }
  return a === b;
}

/** Starts the double on ws:127.0.0.1:0; resolves to {url, count, stop}. */
export async function startDouble() {
  const dir = mkdtempSync(path.join(tmpdir(), "dime2-double-"));
  const log = path.join(dir, "requests.log");
  const proc = spawn("python3", [path.join(REPO, "tests/dime2_double.py"), "-l", "ws:127.0.0.1:0", "--log", log], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  const addr = await new Promise((resolve, reject) => {
    let buf = "";
    const timer = setTimeout(() => reject(new Error(`the DiME2 double did not start: ${buf}`)), 10000);
    proc.stderr.on("data", (d) => {
      buf += d;
      const m = buf.match(/^dime: listening on ws:(.+)$/m);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    proc.on("exit", (code) => reject(new Error(`the DiME2 double exited with ${code}: ${buf}`)));
  });
  return {
    url: `ws://${addr}`,
    count: (command) =>
      existsSync(log) ? readFileSync(log, "utf8").split("\n").filter((l) => l === command).length : 0,
    stop: async () => {
      proc.kill("SIGTERM");
      await new Promise((r) => proc.once("exit", r));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
