//! One connection of this node: who it is, what it holds (channels entered
//! and subscribed, users watched), kept small because a server holds tens of
//! thousands of them, mostly idle.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::{ChannelName, Identity, UserId};
use crate::protocol::ConnStatus;

// Per-connection state is kept small: a server holds tens of thousands of
// mostly idle connections. Collections are sorted `Vec`s searched by
// bisection (one exact-size allocation, no hasher state) rather than hash
// tables, which cost a separate table of at least four buckets each.
#[derive(Debug)]
pub(super) struct Conn {
    pub(super) user: Option<UserId>,
    pub(super) info: Option<Box<Map<String, Value>>>,
    pub(super) allowed: Option<Box<[String]>>,
    pub(super) status: ConnStatus,
    /// Grace deadline while the socket is gone.
    pub(super) detached: Option<u64>,
    /// Shared with the `sessions` index; empty for a restored stand-in.
    pub(super) session: Arc<str>,
    /// Channels this connection is subscribed to or has entered, sorted by
    /// name. At most `max_channels_per_conn`.
    pub(super) channels: Vec<(ChannelName, Held)>,
    /// Watched users, sorted. At most `max_watch_per_conn`.
    pub(super) watching: Vec<UserId>,
}

/// What a connection holds in one channel; never both empty.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Held {
    /// A member. Not necessarily subscribed: `enter{subscribe: false}`
    /// enters without a subscription.
    pub(super) entered: bool,
    /// Subscribed, with whether occupancy was asked for.
    pub(super) sub: Option<bool>,
}

impl Conn {
    pub(super) fn new(
        user: Option<UserId>,
        info: Option<Map<String, Value>>,
        allowed: Option<Vec<String>>,
        status: ConnStatus,
        detached: Option<u64>,
        session: Arc<str>,
    ) -> Self {
        Conn {
            user,
            info: info.map(Box::new),
            allowed: allowed.map(Vec::into_boxed_slice),
            status,
            detached,
            session,
            channels: Vec::new(),
            watching: Vec::new(),
        }
    }

    /// Replaces the claims of the token (resume, refresh); true when the
    /// `info` claim is not what it was.
    pub(super) fn set_claims(&mut self, ident: Identity) -> bool {
        let info = ident.info.map(Box::new);
        let info_changed = info != self.info;
        self.info = info;
        self.allowed = ident.channels.map(Vec::into_boxed_slice);
        info_changed
    }

    pub(super) fn find(&self, name: &str) -> Result<usize, usize> {
        self.channels.binary_search_by(|(n, _)| (**n).cmp(name))
    }

    /// Channels this connection holds: subscribed to or entered (the union,
    /// which `max_channels_per_conn` limits).
    pub(super) fn channel_count(&self) -> usize {
        self.channels.len()
    }

    pub(super) fn holds_channel(&self, name: &str) -> bool {
        self.find(name).is_ok()
    }

    pub(super) fn held(&self, name: &str) -> Held {
        self.find(name)
            .map_or(Held::default(), |i| self.channels[i].1)
    }

    /// The entry of a channel, added empty if missing: the caller fills it.
    pub(super) fn held_mut(&mut self, name: &ChannelName) -> &mut Held {
        let i = match self.find(name) {
            Ok(i) => i,
            Err(i) => {
                // Most connections hold one channel: no room for four.
                if self.channels.capacity() == 0 {
                    self.channels.reserve_exact(1);
                }
                self.channels.insert(i, (name.clone(), Held::default()));
                i
            }
        };
        &mut self.channels[i].1
    }

    /// Changes the entry of a channel if there is one, and drops it when it
    /// holds nothing any more. Returns the entry as it was.
    pub(super) fn release(&mut self, name: &str, change: impl FnOnce(&mut Held)) -> Held {
        let Ok(i) = self.find(name) else {
            return Held::default();
        };
        let held = &mut self.channels[i].1;
        let was = *held;
        change(held);
        if !held.entered && held.sub.is_none() {
            self.channels.remove(i);
        }
        was
    }

    /// Marks the channel entered; false if it already was.
    pub(super) fn enter(&mut self, name: &ChannelName) -> bool {
        !std::mem::replace(&mut self.held_mut(name).entered, true)
    }

    /// Unmarks the channel entered; false if it was not.
    pub(super) fn leave(&mut self, name: &str) -> bool {
        self.release(name, |h| h.entered = false).entered
    }

    pub(super) fn is_entered(&self, name: &str) -> bool {
        self.held(name).entered
    }

    pub(super) fn entered(&self) -> impl Iterator<Item = &ChannelName> {
        self.channels
            .iter()
            .filter(|(_, h)| h.entered)
            .map(|(n, _)| n)
    }

    /// Subscriptions, with whether occupancy was asked for.
    pub(super) fn subs(&self) -> impl Iterator<Item = (&ChannelName, bool)> {
        self.channels
            .iter()
            .filter_map(|(n, h)| h.sub.map(|occupancy| (n, occupancy)))
    }

    pub(super) fn is_watching(&self, user: &str) -> bool {
        self.watching.binary_search_by(|w| (**w).cmp(user)).is_ok()
    }

    /// Adds users (callers pass only new ones; a repeat is dropped anyway).
    pub(super) fn watch(&mut self, new: impl IntoIterator<Item = UserId>) {
        self.watching.extend(new);
        self.watching.sort_unstable();
        self.watching.dedup();
    }

    /// Removes the users of a sorted list.
    pub(super) fn unwatch(&mut self, sorted: &[String]) {
        self.watching
            .retain(|w| sorted.binary_search_by(|u| u.as_str().cmp(w)).is_err());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn conn() -> Conn {
        Conn::new(
            Some(Arc::from("u1")),
            None,
            None,
            ConnStatus::Online,
            None,
            Arc::from("s"),
        )
    }

    pub(super) fn names<'a>(it: impl Iterator<Item = &'a ChannelName>) -> Vec<&'a str> {
        it.map(|n| &**n).collect()
    }

    #[test]
    pub(super) fn conn_channels_stay_sorted_and_count_the_union() {
        let mut c = conn();
        let (a, b, z): (ChannelName, ChannelName, ChannelName) =
            (Arc::from("a"), Arc::from("b"), Arc::from("z"));
        assert!(c.enter(&z));
        assert!(!c.enter(&z));
        c.held_mut(&a).sub = Some(true);
        c.held_mut(&z).sub = Some(false);
        assert!(c.enter(&b));
        assert_eq!(c.channel_count(), 3);
        assert_eq!(names(c.entered()), ["b", "z"]);
        let subs: Vec<(&str, bool)> = c.subs().map(|(n, o)| (&**n, o)).collect();
        assert_eq!(subs, [("a", true), ("z", false)]);
        assert!(c.holds_channel("a") && !c.holds_channel("c"));

        // Leaving keeps a subscription; dropping both forgets the channel.
        assert!(c.leave("z"));
        assert!(!c.leave("z"));
        assert!(c.holds_channel("z") && !c.is_entered("z"));
        assert!(c.leave("b"));
        assert!(!c.holds_channel("b"));
        let was = c.release("a", |h| *h = Held::default());
        assert_eq!(was.sub, Some(true));
        assert_eq!(c.channel_count(), 1);
        assert!(!c.leave("nope"));
    }

    #[test]
    pub(super) fn conn_watching_is_a_sorted_set() {
        let mut c = conn();
        c.watch(["c", "a"].map(Arc::from));
        c.watch([Arc::from("b")]);
        assert!(c.is_watching("a") && c.is_watching("c") && !c.is_watching("d"));
        assert_eq!(
            c.watching.iter().map(|u| &**u).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        c.unwatch(&["a".to_owned(), "c".to_owned(), "x".to_owned()]);
        assert_eq!(c.watching.iter().map(|u| &**u).collect::<Vec<_>>(), ["b"]);
    }
}
