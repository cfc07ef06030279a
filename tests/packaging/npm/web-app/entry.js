// The entry of a browser bundle (esbuild --bundle --platform=browser) of
// the installed npm package: window.roundTrip(url) connects two clients
// over the browser's WebSocket, sends a matrix from one to the other and
// resolves to what arrived.
import { DimeClient, Matrix } from "dime-client-js";

window.roundTrip = async (url) => {
  const a = new DimeClient(url);
  const b = new DimeClient(url);
  await a.join("web-a");
  await b.join("web-b");
  a.workspace.m = new Matrix(new Float64Array([1, 2, 3, 4, 5, 6]), [3, 2]);
  await a.send("web-b", "m");
  await b.wait();
  await b.sync();
  const m = b.workspace.m;
  const result = { kind: m.kind, shape: m.shape, last: m.get(2, 1), extensions: b.serverExtensions };
  a.close();
  b.close();
  return result;
};
window.bundleLoaded = true;
