//! Who gets in and who stays: the access a new connection starts with,
//! the per-peer connection limit, the deadline for finishing handshakes,
//! and the re-check of every connection when the auth file is reloaded.

use super::auth::{Access, AuthTable, Credential, Principal};
use super::config::Config;
use super::conn::{ConnId, PeerKey};
use super::state::State;
use crate::transport::{Address, Transport};
use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::Instant;

/// The principal of anonymous clients on each listener (by index), from
/// `Config::anonymous`; None where a listener lets none in.
pub fn anonymous_principals(
    config: &Config,
    table: Option<&AuthTable>,
) -> io::Result<Vec<Option<Arc<Principal>>>> {
    let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidInput, m);
    for (addr, _) in &config.anonymous {
        if !config.listen.contains(addr) {
            return Err(invalid(format!(
                "anonymous access is set for {addr}, which is not a listener (-l)"
            )));
        }
    }
    config
        .listen
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            let Some((_, roles)) = config.anonymous.iter().find(|(a, _)| a == addr) else {
                return Ok(None);
            };
            let table = table.ok_or_else(|| {
                invalid(format!(
                    "anonymous access on {addr} names roles, which need --auth (without it \
                     every client may do everything)"
                ))
            })?;
            let roles: Vec<&str> = roles.iter().map(String::as_str).collect();
            let grants = table
                .grants(&roles)
                .map_err(|e| invalid(format!("anonymous access on {addr}: {e}")))?;
            Ok(Some(Arc::new(Principal {
                user: None,
                grants,
                credential: Credential::Anonymous(i),
            })))
        })
        .collect()
}

/// The access a connection starts with: everything without `--auth`; the
/// user of its unix peer's uid; its listener's anonymous access; else
/// nothing until its handshake presents a token.
pub fn initial_access(
    table: Option<&AuthTable>,
    stream: &dyn Transport,
    anonymous: Option<&Arc<Principal>>,
) -> Access {
    let Some(table) = table else {
        return Access::Full;
    };
    if let Some(uid) = stream.peer_uid() {
        if let Some(user) = table.by_uid(uid) {
            return Access::Granted(Arc::new(Principal::user(user, Credential::Uid(uid))));
        }
    }
    match anonymous {
        Some(p) => Access::Granted(p.clone()),
        None => Access::Pending,
    }
}

/// Where a connection comes from, for the per-peer limit.
pub fn peer_key(stream: &dyn Transport) -> Option<PeerKey> {
    stream
        .peer_ip()
        .map(PeerKey::Ip)
        .or_else(|| stream.peer_uid().map(PeerKey::Uid))
}

/// Counts a new connection from `peer`; the refusal's message if that
/// peer already has `Config::max_conns_per_peer` open.
pub fn count_peer(st: &mut State, peer: PeerKey) -> Result<(), String> {
    let limit = st.config.max_conns_per_peer;
    let n = st.peers.entry(peer).or_insert(0);
    if limit > 0 && *n >= limit {
        let who = match peer {
            PeerKey::Ip(ip) => format!("address {ip}"),
            PeerKey::Uid(uid) => format!("user id {uid}"),
        };
        return Err(format!(
            "Too many connections from {who}: {n} are open and the limit (--max-conns-per-peer) is {limit}"
        ));
    }
    *n += 1;
    Ok(())
}

/// Connections that must finish their handshakes by a deadline, in the
/// order they arrived (so deadlines come in order too).
#[derive(Default)]
pub struct HandshakeDeadlines {
    queue: VecDeque<(Instant, ConnId)>,
}

impl HandshakeDeadlines {
    /// Watches `id` until `deadline`.
    pub fn watch(&mut self, id: ConnId, deadline: Instant) {
        self.queue.push_back((deadline, id));
    }

    /// The connections whose deadline has passed at `now` and that are
    /// still mid-handshake (transport handshake unfinished, or not yet
    /// authenticated); and the next deadline.
    pub fn expired(&mut self, st: &State, now: Instant) -> (Vec<ConnId>, Option<Instant>) {
        let mut late = Vec::new();
        while let Some(&(t, id)) = self.queue.front() {
            if t > now {
                return (late, Some(t));
            }
            self.queue.pop_front();
            if let Some(c) = st.conns.get(&id) {
                if !c.stream.handshake_done() || matches!(c.access, Access::Pending) {
                    late.push(id);
                }
            }
        }
        (late, None)
    }
}

/// After the auth file was reloaded: each authenticated connection is
/// checked again with the credential it came with. Users whose roles
/// changed get the new ones; connections whose token or uid is no longer
/// listed are returned, to be closed.
pub fn recheck(
    st: &mut State,
    table: &AuthTable,
    anonymous: &[Option<Arc<Principal>>],
) -> Vec<ConnId> {
    let mut revoked = Vec::new();
    for (id, c) in st.conns.iter_mut() {
        let Access::Granted(p) = &c.access else {
            continue;
        };
        let renewed = match &p.credential {
            Credential::Token(t) => table
                .by_token(t)
                .map(|u| Principal::user(u, p.credential.clone())),
            Credential::Uid(uid) => table
                .by_uid(*uid)
                .map(|u| Principal::user(u, p.credential.clone())),
            Credential::Anonymous(i) => {
                anonymous
                    .get(*i)
                    .and_then(Option::as_ref)
                    .map(|a| Principal {
                        user: None,
                        grants: a.grants.clone(),
                        credential: a.credential.clone(),
                    })
            }
        };
        match renewed {
            Some(p) => c.access = Access::Granted(Arc::new(p)),
            None => revoked.push(*id),
        }
    }
    revoked
}

/// Parses `ADDRESS[,anonymous=ROLE[+ROLE…]]`, the server's `-l` value:
/// a listener, and the roles of clients that come in there without
/// credentials.
pub fn parse_listen(spec: &str) -> Result<(Address, Option<Vec<String>>), String> {
    let (addr, options) = match spec.split_once(',') {
        Some((a, o)) => (a, Some(o)),
        None => (spec, None),
    };
    let addr = Address::parse(addr)?;
    let Some(options) = options else {
        return Ok((addr, None));
    };
    let roles = options
        .strip_prefix("anonymous=")
        .ok_or_else(|| format!("'{spec}': the only listener option is anonymous=ROLE[+ROLE…]"))?;
    let roles: Vec<String> = roles.split('+').map(str::to_owned).collect();
    if roles.iter().any(String::is_empty) {
        return Err(format!("'{spec}': anonymous= needs role names"));
    }
    Ok((addr, Some(roles)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_specs() {
        assert_eq!(
            parse_listen("tcp:1").unwrap(),
            (Address::Tcp("127.0.0.1".into(), 1), None)
        );
        assert_eq!(
            parse_listen("unix:/a,anonymous=viewer+sim").unwrap(),
            (
                Address::Unix("/a".into()),
                Some(vec!["viewer".to_owned(), "sim".to_owned()])
            )
        );
        assert!(parse_listen("unix:/a,bogus=1").is_err());
        assert!(parse_listen("unix:/a,anonymous=").is_err());
        assert!(parse_listen("nope").is_err());
    }

    #[test]
    fn anonymous_roles_need_auth_and_a_listener() {
        let a = Address::Unix("/x".into());
        let mut c = Config {
            listen: vec![a.clone()],
            anonymous: vec![(a.clone(), vec!["r".into()])],
            ..Config::default()
        };
        let e = anonymous_principals(&c, None).unwrap_err().to_string();
        assert!(e.contains("--auth"), "{e}");
        let t = AuthTable::parse("role r join:x\n").unwrap();
        let p = anonymous_principals(&c, Some(&t)).unwrap();
        assert!(p[0].as_ref().unwrap().user.is_none());
        let t = AuthTable::parse("role other join:x\n").unwrap();
        let e = anonymous_principals(&c, Some(&t)).unwrap_err().to_string();
        assert!(e.contains("'r' is not defined"), "{e}");
        c.anonymous[0].0 = Address::Unix("/elsewhere".into());
        let e = anonymous_principals(&c, Some(&t)).unwrap_err().to_string();
        assert!(e.contains("not a listener"), "{e}");
    }
}
