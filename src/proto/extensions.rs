//! The names a server announces in its handshake reply's `"extensions"`
//! list (`docs/protocol-extensions.md`): what it understands beyond DiME2.
//! An original DiME2 server's reply has no such list; clients then keep to
//! DiME2's own commands. The server's services declare which of these they
//! provide (`Service::EXTENSIONS`); clients check them before using one.

/// `wait` accepts `"timeout"` (milliseconds).
pub const WAIT_TIMEOUT: &str = "wait_timeout";
/// `sync` accepts `"wait":true` (block until a message is queued) and
/// `"timeout"`.
pub const SYNC_WAIT: &str = "sync_wait";
/// `send` and `broadcast` accept `"receive":true` (answer with the sender's
/// next messages), with `"n"` and `"timeout"`.
pub const SEND_RECEIVE: &str = "send_receive";
/// Shared dictionaries: the `share_*` commands.
pub const SHARE: &str = "share";
/// Tuple spaces: the `ts_*` commands.
pub const SPACE: &str = "space";
/// Remote calls: `provide`, `unprovide`, `call`, `return`, `cancel`, `ping`.
pub const RPC: &str = "rpc";
/// Streams on remote calls: `call` with `"stream":true`, `yield`, `credit`.
pub const STREAM: &str = "stream";
/// Batches of stream items: `yield` with `"count"`, and item pushes with
/// `"count"` to consumers that opened their stream with `"batch":true`.
pub const STREAM_BATCH: &str = "stream_batch";
/// Matrices may travel in their own layout (row- or column-major) and byte
/// order: dimeb tags `0x43`–`0x4F`. Asked for by a client in its handshake;
/// the broker sends such matrices only to clients that asked, converting to
/// DiME2's classic encoding for the others.
pub const DIMEB_LAYOUT: &str = "dimeb_layout";
/// Large payloads may travel as shared-memory descriptors over a unix
/// socket (`"shm"` in a `send`/`broadcast` header, `shm_release`,
/// `shm_free`). Asked for by a client in its handshake; granted on unix
/// connections only.
pub const SHM: &str = "shm";
/// Large messages may be relayed while they arrive: the broker writes a
/// message's payload to this client as the sender's bytes come in, and a
/// sync reply's closing status may say `"aborted":[k,…]`, naming messages
/// in it whose sender went away mid-payload (their remaining bytes were
/// zeros), which the client drops. Asked for by a client in its handshake;
/// clients that do not ask get every message once it is whole.
pub const CUT_THROUGH: &str = "cut_through";
/// `handshake` accepts `"token"` (authentication, for servers started with
/// `--auth`), and commands a client's roles do not permit are refused with
/// `"denied":true`.
pub const AUTH: &str = "auth";
