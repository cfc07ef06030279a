//! The broker's view of itself (docs/admin.md): `inspect` (clients and
//! every service's state), `stats` (counters) and `monitor` (every message
//! as it passes). These serve the `dime ls`, `dime stats` and `dime
//! monitor` commands, and are refused to a client unless the server allows
//! it: with `--admin` everyone may; otherwise only clients of the same user
//! on a unix socket.

use super::conn::ConnId;
use super::dispatch::Services;
use super::request::{CommandError, Result, Text, parse_header};
use super::state::{Monitor, State};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use std::os::fd::RawFd;

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
    if !st.conns.get(&id).is_some_and(|c| c.admin) {
        return Err(CommandError::Failed(format!(
            "'{command}' is an admin command: not permitted (start the server with --admin, or \
             connect over its unix socket as the user running it)"
        )));
    }
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

/// Whether the peer on unix socket `fd` runs as this process's user (false
/// for sockets that are not unix sockets).
pub fn same_user(fd: RawFd) -> bool {
    let mut domain: libc::c_int = 0;
    let mut dlen = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `domain` and `dlen` are valid for writes of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_DOMAIN,
            (&mut domain as *mut libc::c_int).cast(),
            &mut dlen,
        )
    };
    if rc != 0 || domain != libc::AF_UNIX {
        return false;
    }
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    // SAFETY: geteuid cannot fail.
    rc == 0 && cred.uid == unsafe { libc::geteuid() }
}
