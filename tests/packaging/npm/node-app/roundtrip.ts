// A TypeScript program against the installed npm package: tsc checks it
// (strict, through the package's "exports" and .d.ts files), then node
// runs what tsc emitted against a server: `node out/roundtrip.js WS_URL`.
// Node 20 has no global WebSocket, so the client loads the `ws` package
// installed beside it. Prints "ok" when every check passed.

import DefaultClient, {
  CancelledError,
  Complex,
  DimeClient,
  DimeError,
  DimebError,
  Matrix,
  NoProvider,
  ProviderLost,
  RemoteError,
  Scalar,
  dimeb,
  type Decoded,
  type DimeClientOptions,
  type Encodable,
} from "dime-client-js";
import { MAX_DEPTH, decode, encode } from "dime-client-js/dimeb.js";

// Without @types/node: the two things used from Node.
declare const process: { argv: string[]; exitCode?: number };

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`check failed: ${what}`);
}

async function rejects(p: Promise<unknown>, type: Function, what: string): Promise<void> {
  try {
    await p;
  } catch (e) {
    check(e instanceof type, `${what}: got ${String(e)}`);
    return;
  }
  throw new Error(`${what}: did not reject`);
}

// Never called: each call below must fail to type-check (else tsc reports
// its expect-error directive as unused), so the declarations do constrain
// callers.
export function misuse(d: DimeClient): void {
  // @ts-expect-error a Set is not a dimeb value
  void d.send_r("g", { s: new Set([1]) });
  // @ts-expect-error Matrix data is a typed array
  void new Matrix([1, 2], [2]);
  // @ts-expect-error no such scalar kind
  void new Scalar("int128", 1);
  // @ts-expect-error call options have no "retries"
  void d.call("f", null, { retries: 3 });
  // @ts-expect-error join takes group names
  void d.join(1);
}

const url = process.argv[2];
const options: DimeClientOptions = { decode: { scalars: "typed" } };
const a = new DimeClient(url);
const b: DimeClient = new DefaultClient(url, options);
await Promise.all([a.ready, b.connect()]);
check(a.supports("rpc") && b.serverExtensions.includes("rpc"), "our server announces rpc");
await a.join("ts-a");
await b.join("ts-b");

// A matrix and the other types through the workspace and send_r.
a.workspace.m = new Matrix(new Float64Array([1, 2, 3, 4, 5, 6]), [2, 3]);
await a.send("ts-b", "m");
const sent: { [name: string]: Encodable } = {
  s: new Scalar("int16", 7),
  z: new Complex(1, -2),
  list: [1, "two", null, 3n],
  map: new Map<Encodable, Encodable>([[1, "one"]]),
};
await b.send_r("ts-a", sent);
const queued: number = await b.wait();
check(queued >= 1, "wait counts the queued message");
const names: string[] = await b.sync();
check(names.join() === "m", `b received ${names}`);
const m = b.workspace.m;
check(m instanceof Matrix && m.shape.join() === "2,3" && m.get(1, 2) === 6 && m.kind === "double", "matrix");

let pairs: Array<[string, Decoded]> = [];
while (pairs.length < 4) {
  await a.wait();
  pairs = pairs.concat(await a.sync_r());
}
const got = new Map(pairs);
check(got.get("s") === 7, "int16 decodes as a number");
const z = got.get("z");
check(z instanceof Complex && z.re === 1 && z.im === -2, "complex");
const list = got.get("list");
check(Array.isArray(list) && list[1] === "two" && list[3] === 3n, "list");
const map = got.get("map");
check(map instanceof Map && map.get(1) === "one", "map with a number key");

// Errors are the declared classes.
await rejects(a.send("ts-b", "missing"), DimeError, "sending a missing variable");
check(new RemoteError({ error: "x", error_type: "ValueError" }).errorType === "ValueError", "RemoteError");
check(new ProviderLost({ error: "gone" }) instanceof DimeError, "ProviderLost");

// Remote calls and streams.
await b.provide("add", (args) => {
  const { x, y } = args as { x: number; y: number };
  return x + y;
});
check((await a.call("add", { x: 1, y: 2 }, { timeout: 5000 })) === 3, "call");
await rejects(a.call("nobody", null, { timeout: 50 }), NoProvider, "a call nobody provides");
const abort = new AbortController();
await b.provide("slow", () => new Promise<Encodable>(() => {}));
const slow = a.call("slow", null, { signal: abort.signal });
abort.abort();
await rejects(slow, CancelledError, "a cancelled call");
await b.provideStream("count", async function* (n) {
  for (let i = 0; i < (n as number); i++) yield i;
});
const items: Decoded[] = [];
for await (const x of a.stream("count", 5, { items: 2 })) items.push(x);
check(items.join() === "0,1,2,3,4", `stream gave ${items}`);
await b.unprovide("add");

// The codec on its own.
const bytes: Uint8Array = encode([new Matrix(new Int32Array([1, 2]), [1, 2]), "x"]);
const back = decode(bytes);
check(Array.isArray(back) && back[0] instanceof Matrix && back[0].kind === "int32", "dimeb round trip");
check(dimeb.MAX_DEPTH === MAX_DEPTH && MAX_DEPTH > 0, "MAX_DEPTH");
try {
  decode(new Uint8Array([0xff]));
  check(false, "a bad tag throws");
} catch (e) {
  check(e instanceof DimebError, "DimebError");
}

a.close();
b.close();
console.log("ok");
