//! Named groups and their members.

use std::collections::{BTreeMap, BTreeSet};

/// Connection identifier (the poller key).
pub type ConnId = usize;

/// Group name → members. A group exists while it has members.
#[derive(Default)]
pub struct Groups {
    members: BTreeMap<String, BTreeSet<ConnId>>,
}

impl Groups {
    /// Adds `id` to `group`; false if it was already a member.
    pub fn join(&mut self, group: &str, id: ConnId) -> bool {
        self.members.entry(group.to_owned()).or_default().insert(id)
    }

    /// Removes `id` from `group`; false if it was not a member.
    pub fn leave(&mut self, group: &str, id: ConnId) -> bool {
        let Some(set) = self.members.get_mut(group) else {
            return false;
        };
        let was = set.remove(&id);
        if set.is_empty() {
            self.members.remove(group);
        }
        was
    }

    /// True if `id` is in `group`.
    pub fn contains(&self, group: &str, id: ConnId) -> bool {
        self.members.get(group).is_some_and(|s| s.contains(&id))
    }

    /// Members of `group` (None when it has none).
    pub fn members(&self, group: &str) -> Option<&BTreeSet<ConnId>> {
        self.members.get(group)
    }

    /// Every non-empty group, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.members.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_vanish_when_empty() {
        let mut g = Groups::default();
        assert!(g.join("a", 1));
        assert!(!g.join("a", 1));
        assert!(g.join("a", 2));
        assert!(g.leave("a", 1));
        assert!(!g.leave("a", 1));
        assert_eq!(g.names().collect::<Vec<_>>(), ["a"]);
        g.leave("a", 2);
        assert_eq!(g.names().count(), 0);
        assert!(g.members("a").is_none());
    }
}
