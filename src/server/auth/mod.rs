//! Authentication and permissions (`--auth`): who a connection is, and
//! whether it may do what a command does.
//!
//! Without `--auth` every connection may do everything, as in DiME2. With
//! it, a connection starts [`Access::Pending`] and must present a token in
//! its handshake, unless its unix peer's user id stands in for one, or its
//! listener lets anonymous clients in with roles of their own. Every
//! command then passes [`Access::check`] in the dispatcher, with what
//! each service says the command does (`Service::required`).

mod file;
mod grant;

pub use file::{AuthTable, User};
pub use grant::{Action, Grant, glob_matches, refusal};

use std::sync::Arc;

/// How a connection proved who it is; re-checked when the auth file is
/// reloaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// A token from its handshake.
    Token(String),
    /// Its unix peer's user id.
    Uid(u32),
    /// None: it came in anonymously on listener number `.0`.
    Anonymous(usize),
}

/// Who a connection is and what it may do.
#[derive(Debug)]
pub struct Principal {
    /// The user's name; None for an anonymous client.
    pub user: Option<String>,
    /// What it may do.
    pub grants: Vec<Grant>,
    /// How it got in.
    pub credential: Credential,
}

impl Principal {
    /// A principal for `user`, who proved itself with `credential`.
    pub fn user(user: &User, credential: Credential) -> Principal {
        Principal {
            user: Some(user.name.clone()),
            grants: user.grants.clone(),
            credential,
        }
    }

    /// How refusals name it.
    fn who(&self) -> String {
        match &self.user {
            Some(u) => format!("user '{u}'"),
            None => "an anonymous client".to_owned(),
        }
    }
}

/// What a connection may do.
#[derive(Clone, Debug)]
pub enum Access {
    /// Everything: the server has no `--auth`.
    Full,
    /// Nothing until its handshake presents a valid token.
    Pending,
    /// What its principal's grants allow.
    Granted(Arc<Principal>),
}

impl Access {
    /// Ok if `action` on `name` is allowed; else the refusal's message.
    pub fn check(&self, action: Action, name: &str) -> Result<(), String> {
        match self {
            Access::Full => Ok(()),
            Access::Pending => Err(AUTH_REQUIRED.to_owned()),
            Access::Granted(p) if p.grants.iter().any(|g| g.allows(action, name)) => Ok(()),
            Access::Granted(p) => Err(refusal(&p.who(), action, name)),
        }
    }

    /// The user name, if the connection authenticated as one.
    pub fn user(&self) -> Option<&str> {
        match self {
            Access::Granted(p) => p.user.as_deref(),
            _ => None,
        }
    }
}

/// The refusal of a client that has not authenticated.
pub const AUTH_REQUIRED: &str = "Authentication required: this server accepts only clients \
    that present a token in their handshake (set DIME_TOKEN, or give the client a token); \
    clients without token support cannot connect here";

/// The refusal of a wrong token.
pub const BAD_TOKEN: &str = "Authentication failed: the token is not valid on this server";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_levels() {
        assert!(Access::Full.check(Action::Admin, "").is_ok());
        assert_eq!(
            Access::Pending.check(Action::Join, "g").unwrap_err(),
            AUTH_REQUIRED
        );
        let p = Access::Granted(Arc::new(Principal {
            user: Some("ann".into()),
            grants: vec![Grant::parse("join:a*").unwrap()],
            credential: Credential::Token("t".into()),
        }));
        assert!(p.check(Action::Join, "ab").is_ok());
        let e = p.check(Action::Join, "b").unwrap_err();
        assert_eq!(e, "Not permitted: user 'ann' may not join group 'b'");
        let anon = Access::Granted(Arc::new(Principal {
            user: None,
            grants: vec![],
            credential: Credential::Anonymous(0),
        }));
        assert_eq!(
            anon.check(Action::Broadcast, "").unwrap_err(),
            "Not permitted: an anonymous client may not broadcast"
        );
    }
}
