//! The `--auth` file: who may connect, with which token, and what each
//! role may do.
//!
//! ```text
//! # role NAME PERMISSION…      (PERMISSION: ACTION or ACTION:PATTERN)
//! role sim      join:sim.* send:sim.* share:sim.* call:* provide:sim.*
//! role viewer   join:view.* share.read:*
//! role admin    *
//! # NAME TOKEN ROLE…           (TOKEN uid:N: the unix peer with user id N)
//! alice  5f0c9a3e8d0b4e21a7c6  sim
//! bob    uid:1000              admin
//! ```
//!
//! Blank lines and `#` comments are ignored; `role` is reserved as a
//! user name and tokens starting `uid:` name a unix user instead.

use super::grant::Grant;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// A user of the auth file, with every grant of its roles.
#[derive(Debug, PartialEq, Eq)]
pub struct User {
    /// The user's name, in logs and refusals.
    pub name: String,
    /// Its roles' grants, together.
    pub grants: Vec<Grant>,
}

/// A parsed auth file.
#[derive(Debug, Default)]
pub struct AuthTable {
    tokens: HashMap<String, Arc<User>>,
    uids: HashMap<u32, Arc<User>>,
    roles: HashMap<String, Vec<Grant>>,
}

impl AuthTable {
    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<AuthTable, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the auth file {}: {e}", path.display()))?;
        AuthTable::parse(&text).map_err(|e| format!("auth file {}: {e}", path.display()))
    }

    /// Parses an auth file's text.
    pub fn parse(text: &str) -> Result<AuthTable, String> {
        let mut table = AuthTable::default();
        // Users come after every role is known, wherever roles are defined.
        let mut users: Vec<(usize, Vec<&str>)> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let line = line.split('#').next().unwrap_or("");
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                [] => {}
                ["role", name, grants @ ..] => {
                    if table.roles.contains_key(*name) {
                        return Err(format!("line {n}: role '{name}' is defined twice"));
                    }
                    let grants = grants
                        .iter()
                        .map(|g| Grant::parse(g).map_err(|e| format!("line {n}: {e}")))
                        .collect::<Result<Vec<_>, _>>()?;
                    table.roles.insert((*name).to_owned(), grants);
                }
                ["role"] => return Err(format!("line {n}: a role line needs a name")),
                [_, _, _, ..] => users.push((n, words)),
                _ => {
                    return Err(format!(
                        "line {n}: expected 'NAME TOKEN ROLE…' or 'role NAME PERMISSION…'"
                    ));
                }
            }
        }
        for (n, words) in users {
            let (name, token, roles) = (words[0], words[1], &words[2..]);
            let user = Arc::new(User {
                name: name.to_owned(),
                grants: table.grants(roles).map_err(|e| format!("line {n}: {e}"))?,
            });
            if let Some(uid) = token.strip_prefix("uid:") {
                let uid: u32 = uid
                    .parse()
                    .map_err(|_| format!("line {n}: '{token}' is not uid:NUMBER"))?;
                if table.uids.insert(uid, user).is_some() {
                    return Err(format!("line {n}: uid {uid} is given twice"));
                }
            } else if table.tokens.insert(token.to_owned(), user).is_some() {
                return Err(format!("line {n}: this token is given to two users"));
            }
        }
        Ok(table)
    }

    /// Every grant of `roles`; an error names a role not defined.
    pub fn grants(&self, roles: &[&str]) -> Result<Vec<Grant>, String> {
        let mut all = Vec::new();
        for r in roles {
            let g = self
                .roles
                .get(*r)
                .ok_or_else(|| format!("role '{r}' is not defined (add a 'role {r} …' line)"))?;
            all.extend(g.iter().cloned());
        }
        Ok(all)
    }

    /// The user holding `token`.
    pub fn by_token(&self, token: &str) -> Option<&Arc<User>> {
        self.tokens.get(token)
    }

    /// The user standing for unix user id `uid`.
    pub fn by_uid(&self, uid: u32) -> Option<&Arc<User>> {
        self.uids.get(&uid)
    }
}

#[cfg(test)]
mod tests {
    use super::super::grant::Action;
    use super::*;

    const FILE: &str = "\
# a comment
alice  tok-a  sim            # users may come before their roles
role sim join:sim.* send:sim.*
role admin *

bob uid:1000 admin sim
";

    #[test]
    fn users_tokens_uids_and_roles() {
        let t = AuthTable::parse(FILE).unwrap();
        let alice = t.by_token("tok-a").unwrap();
        assert_eq!(alice.name, "alice");
        assert!(alice.grants.iter().any(|g| g.allows(Action::Send, "sim.1")));
        assert!(!alice.grants.iter().any(|g| g.allows(Action::Admin, "")));
        let bob = t.by_uid(1000).unwrap();
        assert!(bob.grants.iter().any(|g| g.allows(Action::Admin, "")));
        assert!(t.by_token("uid:1000").is_none());
        assert!(t.by_token("nope").is_none());
    }

    #[test]
    fn mistakes_are_refused_with_their_line() {
        for (text, want) in [
            ("alice tok nosuch\n", "line 1: role 'nosuch' is not defined"),
            (
                "role r send\n\nrole r join\n",
                "line 3: role 'r' is defined twice",
            ),
            ("role r fly\n", "line 1: 'fly' is not a permission"),
            (
                "role r *\na t r\nb t r\n",
                "line 3: this token is given to two users",
            ),
            ("role r *\na uid:x r\n", "line 2: 'uid:x' is not uid:NUMBER"),
            ("alice tok\n", "line 1: expected"),
            ("role\n", "line 1: a role line needs a name"),
        ] {
            let e = AuthTable::parse(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }
}
