//! The broker's view of itself (docs/admin.md): `inspect` (clients and
//! every service's state), `stats` (counters) and `monitor` (every message
//! as it passes). These serve the `dime ls`, `dime stats` and `dime
//! monitor` commands, and are refused to a client unless the server allows
//! it: under `--auth`, clients whose roles grant `admin`; otherwise with
//! `--admin` everyone may, without it only clients of the same user on a
//! unix socket.

use super::auth::{Access, Action};
use super::conn::ConnId;
use super::dispatch::Services;
use super::request::{CommandError, Result, Text, parse_header};
use super::state::{Monitor, State};
use crate::transport::Transport;
use serde::Deserialize;
use serde_json::{Value as Json, json};

/// The fields admin commands read.
#[derive(Deserialize, Default)]
#[serde(default)]
struct AdminHeader<'a> {
    /// `monitor`: only messages to these groups (broadcasts always).
    #[serde(borrow)]
    groups: Option<Vec<Text<'a>>>,
    /// `monitor`: also send each message's frame (for recording).
    payloads: Option<bool>,
}

/// The admin commands.
pub const COMMANDS: [&str; 3] = ["inspect", "stats", "monitor"];

/// Runs `command` if it is an admin command: None if it is not.
pub fn dispatch(
    services: &Services,
    st: &mut State,
    id: ConnId,
    command: &str,
    text: &str,
) -> Option<Result> {
    if !COMMANDS.contains(&command) {
        return None;
    }
    Some(run(services, st, id, command, text))
}

fn run(services: &Services, st: &mut State, id: ConnId, command: &str, text: &str) -> Result {
    permit(st, id, command)?;
    let h: AdminHeader = parse_header(text)?;
    match command {
        "inspect" => {
            let reply =
                json!({"status": 0, "clients": clients(st), "services": services.inspect(st)});
            st.reply(id, reply);
        }
        "stats" => {
            let mut reply = st.stats.to_json(st.conns.len());
            reply["status"] = json!(0);
            st.reply(id, reply);
        }
        _ => {
            let groups = h
                .groups
                .map(|g| g.into_iter().map(|t| t.0.into_owned()).collect());
            st.monitors.insert(
                id,
                Monitor {
                    groups,
                    payloads: h.payloads == Some(true),
                },
            );
            st.reply_ok(id);
        }
    }
    Ok(())
}

/// Whether client `id` may run admin command `command`. Under `--auth`
/// its roles decide (the `admin` permission, whatever transport it came
/// by); without, `--admin` or being the same user on the unix socket.
fn permit(st: &State, id: ConnId, command: &str) -> Result {
    let Some(c) = st.conns.get(&id) else {
        return Ok(());
    };
    match c.access {
        Access::Full if c.admin => Ok(()),
        Access::Full => Err(CommandError::Denied(format!(
            "'{command}' is an admin command: not permitted (start the server with --admin, \
             or connect over its unix socket as the user running it)"
        ))),
        _ => st.permit(id, Action::Admin, command),
    }
}

/// Every connected client: id, peer, since, groups, queue, output not
/// yet written and the watch events among it.
fn clients(st: &State) -> Json {
    let mut ids: Vec<&ConnId> = st.conns.keys().collect();
    ids.sort();
    ids.into_iter()
        .map(|id| {
            let c = &st.conns[id];
            let since = c
                .since
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            let (watch_events, watch_bytes) = c.watch_queue.unwritten(c.out.written());
            json!({
                "id": id,
                "peer": c.peer,
                "since": since,
                "groups": c.groups,
                "queued": c.inbox.len(),
                "queued_bytes": c.inbox_bytes,
                "out_bytes": c.out.pending(),
                "watch_events": watch_events,
                "watch_bytes": watch_bytes,
                "monitor": st.monitors.contains_key(id),
            })
        })
        .collect()
}

/// Whether the peer is a process of this process's user on a unix socket
/// (`SO_PEERCRED`; false for every other transport).
pub fn same_user(stream: &dyn Transport) -> bool {
    // SAFETY: geteuid cannot fail.
    stream.peer_uid() == Some(unsafe { libc::geteuid() })
}
