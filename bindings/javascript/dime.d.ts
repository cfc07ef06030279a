// Type declarations for dime.js: a promise-based DiME2 client for browsers
// and Node.js (≥ 20) over WebSocket. See README.md.

import * as dimeb from "./dimeb.js";
import type { DecodeOptions, Decoded, Encodable } from "./dimeb.js";

export { dimeb };
export { Complex, Matrix, Scalar, DimebError } from "./dimeb.js";
export type {
  DecodeOptions,
  Decoded,
  Encodable,
  MatrixData,
  MatrixKind,
  MatrixOptions,
  ScalarKind,
} from "./dimeb.js";

/** A reply or push header from the server, as received. */
export type ServerReply = { [field: string]: unknown };

/** A request the server answered with a negative status (or a connection failure). */
export class DimeError extends Error {
  constructor(message: string, reply?: ServerReply | null);
  /** The server's reply that carried the error, if any. */
  reply: ServerReply | null;
}

/** A remote call's provider threw: its type name, message and traceback. */
export class RemoteError extends DimeError {
  constructor(reply: ServerReply);
  /** The error's type name on the provider (e.g. "ValueError"). */
  errorType: string;
  /** The provider's traceback, as text. */
  remoteTraceback: string;
}

/** A remote call's provider disconnected while running it. */
export class ProviderLost extends DimeError {
  constructor(reply: ServerReply);
}

/** No provider took a remote call before its timeout. */
export class NoProvider extends DimeError {
  constructor(reply: ServerReply);
}

/** A remote call or stream was cancelled by its caller. */
export class CancelledError extends DimeError {
  constructor(message?: string);
}

/** Builds one DiME frame: prefix, JSON header, payload. */
export function encodeFrame(json: object, payload?: Uint8Array): Uint8Array;

/** The part of a WebSocket (the browser's, or the `ws` package's) the client uses. */
export interface WebSocketLike {
  binaryType: string;
  send(data: Uint8Array): void;
  close(): void;
  onopen: ((event: any) => void) | null;
  onmessage: ((event: any) => void) | null;
  onerror: ((event: any) => void) | null;
  onclose: ((event: any) => void) | null;
}

/** A WebSocket class: `globalThis.WebSocket` or `import { WebSocket } from "ws"`. */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** Options of the DimeClient constructor. */
export interface DimeClientOptions {
  /** The WebSocket implementation; default the global one, else the `ws` package. */
  WebSocket?: WebSocketConstructor;
  /** Options for decoding received values. */
  decode?: DecodeOptions;
  /**
   * Most requests awaiting an answer at once (later ones are written, in
   * order, as answers come); default PIPELINE_WINDOW, at most
   * ORIGINAL_SERVER_WINDOW against an original DiME2 server.
   */
  pipeline?: number;
}

/** The default window of requests awaiting an answer (the pipeline option). */
export const PIPELINE_WINDOW: number;
/** The window against an original DiME2 server (its own Python client's 16). */
export const ORIGINAL_SERVER_WINDOW: number;

/** Options of call(). */
export interface CallOptions {
  /** Milliseconds to wait for a provider before NoProvider. */
  timeout?: number;
  /** Cancels the call (CancelledError) when aborted. */
  signal?: AbortSignal;
}

/** Options of provide() and provideStream(). */
export interface ProvideOptions {
  /** How many calls run at once (default 1). */
  capacity?: number;
}

/** Options of stream(). */
export interface StreamOptions {
  /** Items the producer may run ahead (default 1024). */
  items?: number;
  /** Bytes the producer may run ahead (default 64 MiB). */
  bytes?: number;
  /** Milliseconds to wait for a provider before NoProvider. */
  timeout?: number;
}

/** A provided function: called with the caller's args; its result (or thrown error) goes back. */
export type ProvidedFunction = (args: Decoded) => Encodable | Promise<Encodable>;

/** A provided stream: an (async) generator whose items go to the consumer. */
export type ProvidedStream = (
  args: Decoded,
) => AsyncIterator<Encodable, unknown, undefined> | Iterator<Encodable, unknown, undefined>;

/**
 * A connection to a DiME server over WebSocket:
 * `new DimeClient("ws://host:port", options)` or
 * `new DimeClient(host, port, options)` (default 127.0.0.1:8889).
 * Calls may be issued without awaiting the previous one; replies settle
 * them in request order. A failed command rejects with a DimeError and the
 * connection stays usable.
 */
export class DimeClient {
  constructor(url: string, options?: DimeClientOptions);
  constructor(host?: string, port?: number, options?: DimeClientOptions);
  /** The ws:// or wss:// URL connected to. */
  readonly url: string;
  /** Variables sent with send/broadcast and received with sync. */
  workspace: { [name: string]: Encodable };
  /** The serialization the server asked for ("dimeb" unless a json client came first). */
  serialization: "dimeb" | "json";
  /** Names of received variables in a serialization JS cannot read (pickle, matlab). */
  skipped: string[];
  /** What the server announced beyond DiME2 (after `ready`); [] for an original DiME2 server. */
  serverExtensions: string[];
  /** Resolves once connected and handshaken; rejects with a DimeError if that fails. */
  readonly ready: Promise<void>;
  /** Most requests awaiting an answer at once (see the pipeline option). */
  pipelineWindow: number;
  /** Requests written and not yet answered, plus those waiting for the window. */
  readonly unacknowledged: number;

  /** The same promise as `ready`. */
  connect(): Promise<void>;
  /** Whether the server announced extension `name` (after `ready`). */
  supports(name: string): boolean;
  /** Joins one or more groups. */
  join(...names: string[]): Promise<void>;
  /** Leaves one or more groups. */
  leave(...names: string[]): Promise<void>;
  /**
   * Sends workspace variables to every member of `group`. The promise
   * resolves once the server has taken them (DiME2's behaviour when
   * awaited); it need not be awaited: flush() then reports a failure, and
   * a send left alone is never an unhandled rejection.
   */
  send(group: string, ...varnames: string[]): Promise<void>;
  /** Sends name → value pairs to every member of `group`. */
  send_r(group: string, vars: { [name: string]: Encodable }): Promise<void>;
  /** Sends workspace variables to every other connected client. */
  broadcast(...varnames: string[]): Promise<void>;
  /** Sends name → value pairs to every other connected client. */
  broadcast_r(vars: { [name: string]: Encodable }): Promise<void>;
  /** Receives up to `n` (all if n < 0) queued variables into the workspace; their names in arrival order. */
  sync(n?: number): Promise<string[]>;
  /** Like sync, but returns [name, value] pairs and leaves the workspace alone. */
  sync_r(n?: number): Promise<Array<[string, Decoded]>>;
  /** Waits until a message is queued for this client; resolves to the count. */
  wait(): Promise<number>;
  /** The groups with at least one member. */
  devices(): Promise<string[]>;
  /**
   * Resolves once the server has answered every request made before it;
   * rejects with the oldest failure of a send not yet reported (one whose
   * own promise was awaited or handled reported it there).
   */
  flush(): Promise<void>;

  /** Calls the function `name` some client provides; resolves to its result. */
  call(name: string, args?: Encodable, options?: CallOptions): Promise<Decoded>;
  /** Provides the function `name` to every client of the server. */
  provide(name: string, fn: ProvidedFunction, options?: ProvideOptions): Promise<void>;
  /** Provides the stream `name`, paced by each consumer's window. */
  provideStream(name: string, gen: ProvidedStream, options?: ProvideOptions): Promise<void>;
  /** Stops providing `name`; calls already running finish. */
  unprovide(name: string): Promise<void>;
  /** Opens the stream `name`: its items, in order; leaving the loop early stops the producer. */
  stream(name: string, args?: Encodable, options?: StreamOptions): AsyncIterableIterator<Decoded>;
  /** Closes the connection; pending requests are rejected. */
  close(): void;
}

export default DimeClient;
