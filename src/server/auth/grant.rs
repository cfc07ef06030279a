//! Permissions: what a command does to a named thing ([`Action`]), and the
//! grants of a role (`ACTION:PATTERN`, `*` in a pattern standing for any
//! run of characters).

use std::fmt;

/// What a command does, as far as permissions go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `join` a group.
    Join,
    /// `send` to a group.
    Send,
    /// `broadcast` to every client (the name is empty).
    Broadcast,
    /// Read a share (`share_get`, `share_keys`, `share_wait_key` …).
    ShareRead,
    /// Change a share (`share_set`, `share_del`, `share_incr` …).
    ShareWrite,
    /// Lock a share or its keys (`share_lock`, `share_unlock`).
    ShareLock,
    /// Read a tuple space (`ts_rd`, `ts_rdp`, `ts_count`).
    SpaceRead,
    /// Change a tuple space (`ts_out`, and `ts_in`/`ts_inp`, which take).
    SpaceWrite,
    /// Provide a function (`provide`, `unprovide`).
    Provide,
    /// Call a function (`call`).
    Call,
    /// Call a function as a stream (`call` with `"stream":true`).
    Stream,
    /// Administrative commands.
    Admin,
}

impl Action {
    /// Every action, in the order of their bits.
    pub const ALL: [Action; 12] = [
        Action::Join,
        Action::Send,
        Action::Broadcast,
        Action::ShareRead,
        Action::ShareWrite,
        Action::ShareLock,
        Action::SpaceRead,
        Action::SpaceWrite,
        Action::Provide,
        Action::Call,
        Action::Stream,
        Action::Admin,
    ];

    /// The name used in the auth file.
    pub fn name(self) -> &'static str {
        match self {
            Action::Join => "join",
            Action::Send => "send",
            Action::Broadcast => "broadcast",
            Action::ShareRead => "share.read",
            Action::ShareWrite => "share.write",
            Action::ShareLock => "share.lock",
            Action::SpaceRead => "space.read",
            Action::SpaceWrite => "space.write",
            Action::Provide => "provide",
            Action::Call => "call",
            Action::Stream => "stream",
            Action::Admin => "admin",
        }
    }

    /// What is refused, for the error message ("send to group").
    fn doing(self) -> &'static str {
        match self {
            Action::Join => "join group",
            Action::Send => "send to group",
            Action::Broadcast => "broadcast",
            Action::ShareRead => "read share",
            Action::ShareWrite => "write share",
            Action::ShareLock => "lock share",
            Action::SpaceRead => "read tuple space",
            Action::SpaceWrite => "write tuple space",
            Action::Provide => "provide function",
            Action::Call => "call function",
            Action::Stream => "call as a stream function",
            Action::Admin => "run the admin command",
        }
    }

    fn bit(self) -> u16 {
        1 << Action::ALL.iter().position(|a| *a == self).unwrap_or(0)
    }

    /// The actions an auth-file name stands for: one action, a family
    /// (`share`, `space`) or every action (`*`).
    fn parse_set(name: &str) -> Option<u16> {
        let bits = |actions: &[Action]| actions.iter().fold(0, |b, a| b | a.bit());
        match name {
            "*" => Some(bits(&Action::ALL)),
            "share" => Some(bits(&[
                Action::ShareRead,
                Action::ShareWrite,
                Action::ShareLock,
            ])),
            "space" => Some(bits(&[Action::SpaceRead, Action::SpaceWrite])),
            _ => Action::ALL
                .iter()
                .find(|a| a.name() == name)
                .map(|a| a.bit()),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The message of a refused command, naming who, what and which.
pub fn refusal(who: &str, action: Action, name: &str) -> String {
    if action == Action::Broadcast || action == Action::Admin {
        format!("Not permitted: {who} may not {}", action.doing())
    } else {
        format!("Not permitted: {who} may not {} '{name}'", action.doing())
    }
}

/// One grant: some actions on the names matching a pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    actions: u16,
    pattern: String,
}

impl Grant {
    /// Parses `ACTION` or `ACTION:PATTERN` (no pattern: every name).
    pub fn parse(text: &str) -> Result<Grant, String> {
        let (action, pattern) = text.split_once(':').unwrap_or((text, "*"));
        let actions = Action::parse_set(action).ok_or_else(|| {
            let names: Vec<&str> = Action::ALL.iter().map(|a| a.name()).collect();
            format!(
                "'{action}' is not a permission (expected one of {}, share, space or *)",
                names.join(", ")
            )
        })?;
        if pattern.is_empty() {
            return Err(format!(
                "'{text}' has an empty pattern (use * for every name)"
            ));
        }
        Ok(Grant {
            actions,
            pattern: pattern.to_owned(),
        })
    }

    /// Whether this grant allows `action` on `name`.
    pub fn allows(&self, action: Action, name: &str) -> bool {
        self.actions & action.bit() != 0 && glob_matches(&self.pattern, name)
    }
}

/// Whether `name` matches `pattern`, where `*` matches any run of
/// characters (none included) and everything else matches itself.
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    // Where the last `*` was, and how much of the name it has taken.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((sp, sn)) = star {
            // The last star takes one more byte; retry after it.
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        for (p, n, want) in [
            ("*", "", true),
            ("*", "anything", true),
            ("sim.*", "sim.a", true),
            ("sim.*", "sim.", true),
            ("sim.*", "sima", false),
            ("*.out", "a.b.out", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("", "", true),
            ("", "x", false),
            ("**", "x", true),
            (
                "a*a*a*a*b",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                false,
            ),
        ] {
            assert_eq!(glob_matches(p, n), want, "{p} ~ {n}");
        }
    }

    #[test]
    fn grants_parse_and_allow() {
        let g = Grant::parse("send:sim.*").unwrap();
        assert!(g.allows(Action::Send, "sim.x"));
        assert!(!g.allows(Action::Join, "sim.x"));
        assert!(!g.allows(Action::Send, "other"));
        let share = Grant::parse("share:cfg").unwrap();
        for a in [Action::ShareRead, Action::ShareWrite, Action::ShareLock] {
            assert!(share.allows(a, "cfg"));
        }
        assert!(!share.allows(Action::SpaceRead, "cfg"));
        let all = Grant::parse("*").unwrap();
        assert!(Action::ALL.iter().all(|a| all.allows(*a, "x")));
        assert!(
            Grant::parse("broadcast")
                .unwrap()
                .allows(Action::Broadcast, "")
        );
        assert!(
            Grant::parse("fly:x")
                .unwrap_err()
                .contains("not a permission")
        );
        assert!(Grant::parse("send:").is_err());
        // A pattern may itself hold colons.
        assert!(
            Grant::parse("call:a:b")
                .unwrap()
                .allows(Action::Call, "a:b")
        );
    }

    #[test]
    fn every_action_has_its_own_bit_and_name() {
        for (i, a) in Action::ALL.iter().enumerate() {
            assert_eq!(a.bit(), 1 << i);
            assert_eq!(Action::parse_set(a.name()), Some(a.bit()));
        }
    }
}
