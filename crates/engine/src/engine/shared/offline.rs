//! The last presence of users gone offline, bounded.
//!
//! The store holds every user's last presence; this is a cache of it, so
//! memory does not grow with every user ever seen. At most `capacity`
//! records are kept, the one written longest ago going first (reads take
//! `&self` and do not refresh a record; going offline again or being fed
//! again does). Records of users this node watches are kept whatever the
//! bound: a watcher is told of changes, and resynced, from them. A user
//! with no record here and no connection has a presence the caller must
//! look up in the store and feed back in.
//!
//! Records looked up for one call ([`OfflineCache::recall`]) are held
//! beside the cache, outside its bound, until [`OfflineCache::settle`]: so a
//! `watch` or a read of more users than the bound sees every one of them,
//! and the users it starts watching are kept.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::UserId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OfflineRecord {
    pub(crate) since: u64,
    pub(crate) last_seen: u64,
}

#[derive(Debug)]
struct Entry {
    record: OfflineRecord,
    /// Position in the eviction order; `None` while kept (watched).
    stamp: Option<u64>,
}

#[derive(Debug, Default)]
pub(crate) struct OfflineCache {
    capacity: usize,
    entries: HashMap<UserId, Entry>,
    /// Evictable entries, oldest first.
    order: BTreeMap<u64, UserId>,
    next: u64,
    /// Users whose record is kept whatever the bound.
    kept: HashSet<UserId>,
    /// Looked up for the call in progress; see [`OfflineCache::recall`].
    recalled: HashMap<UserId, OfflineRecord>,
}

impl OfflineCache {
    pub(crate) fn new(capacity: usize) -> Self {
        OfflineCache {
            capacity,
            ..OfflineCache::default()
        }
    }

    pub(crate) fn get(&self, user: &str) -> Option<OfflineRecord> {
        self.entries
            .get(user)
            .map(|e| e.record)
            .or_else(|| self.recalled.get(user).copied())
    }

    /// Holds a record looked up in the store for the call in progress,
    /// outside the bound, unless the cache has one (at least as new).
    pub(crate) fn recall(&mut self, user: UserId, record: OfflineRecord) {
        if !self.entries.contains_key(&user) {
            self.recalled.insert(user, record);
        }
    }

    /// Ends the call: the records it recalled go into the cache (the
    /// newest; kept ones whatever the bound), except for users `skip` names
    /// (who came online meanwhile) and users with a fresher record.
    pub(crate) fn settle(&mut self, skip: impl Fn(&str) -> bool) {
        for (user, record) in std::mem::take(&mut self.recalled) {
            if !skip(&user) && !self.entries.contains_key(&user) {
                self.insert(user, record);
            }
        }
    }

    /// Writes a record (the newest), evicting the oldest beyond the bound.
    pub(crate) fn insert(&mut self, user: UserId, record: OfflineRecord) {
        self.remove(&user);
        let stamp = if self.kept.contains(&user) {
            None
        } else {
            Some(self.stamp(&user))
        };
        self.entries.insert(user, Entry { record, stamp });
        self.evict();
    }

    pub(crate) fn remove(&mut self, user: &str) {
        self.recalled.remove(user);
        if let Some(Entry {
            stamp: Some(stamp), ..
        }) = self.entries.remove(user)
        {
            self.order.remove(&stamp);
        }
    }

    /// Keeps (or stops keeping) a user's record whatever the bound.
    pub(crate) fn keep(&mut self, user: &UserId, keep: bool) {
        if keep {
            if !self.kept.insert(user.clone()) {
                return;
            }
            if let Some(stamp) = self.entries.get_mut(user).and_then(|e| e.stamp.take()) {
                self.order.remove(&stamp);
            }
        } else {
            if !self.kept.remove(user) {
                return;
            }
            if self.entries.contains_key(user) {
                let stamp = self.stamp(user);
                if let Some(e) = self.entries.get_mut(user) {
                    e.stamp = Some(stamp);
                }
                self.evict();
            }
        }
    }

    fn stamp(&mut self, user: &UserId) -> u64 {
        let stamp = self.next;
        self.next += 1;
        self.order.insert(stamp, user.clone());
        stamp
    }

    fn evict(&mut self) {
        while self.order.len() > self.capacity {
            let Some((_, user)) = self.order.pop_first() else {
                break;
            };
            self.entries.remove(&user);
        }
    }

    /// Records held, kept ones included.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn rec(t: u64) -> OfflineRecord {
        OfflineRecord {
            since: t,
            last_seen: t,
        }
    }

    #[test]
    fn the_oldest_record_goes_first() {
        let mut c = OfflineCache::new(2);
        for (i, u) in ["a", "b", "c"].into_iter().enumerate() {
            c.insert(Arc::from(u), rec(i as u64));
        }
        assert_eq!(
            (c.get("a"), c.get("b"), c.get("c")),
            (None, Some(rec(1)), Some(rec(2)))
        );
        // Written again, `b` is the newest: `c` goes next.
        c.insert(Arc::from("b"), rec(5));
        c.insert(Arc::from("d"), rec(6));
        assert_eq!(
            (c.get("b"), c.get("c"), c.get("d")),
            (Some(rec(5)), None, Some(rec(6)))
        );
        c.remove("b");
        assert_eq!((c.get("b"), c.len()), (None, 1));
    }

    #[test]
    fn kept_records_stay_whatever_the_bound() {
        let mut c = OfflineCache::new(0);
        c.insert(Arc::from("a"), rec(1));
        assert_eq!(c.get("a"), None);
        let w: UserId = Arc::from("w");
        c.keep(&w, true);
        c.insert(w.clone(), rec(2));
        c.insert(Arc::from("b"), rec(3));
        assert_eq!((c.get("w"), c.get("b")), (Some(rec(2)), None));
        // No longer kept: the bound applies again.
        c.keep(&w, false);
        assert_eq!((c.get("w"), c.len()), (None, 0));

        let mut c = OfflineCache::new(1);
        c.insert(w.clone(), rec(1));
        c.keep(&w, true);
        c.insert(Arc::from("x"), rec(2));
        c.insert(Arc::from("y"), rec(3));
        assert_eq!(
            (c.get("w"), c.get("x"), c.get("y")),
            (Some(rec(1)), None, Some(rec(3)))
        );
        c.keep(&w, false);
        // Released as the newest: `y` is older and goes.
        assert_eq!((c.get("w"), c.get("y")), (Some(rec(1)), None));
    }

    #[test]
    fn recalled_records_are_outside_the_bound_until_settled() {
        let mut c = OfflineCache::new(1);
        c.insert(Arc::from("a"), rec(1));
        for (i, u) in ["a", "b", "c", "d"].into_iter().enumerate() {
            c.recall(Arc::from(u), rec(10 + i as u64));
        }
        // The cache's own record wins; the others are all readable.
        assert_eq!(
            (c.get("a"), c.get("b"), c.get("c"), c.get("d")),
            (Some(rec(1)), Some(rec(11)), Some(rec(12)), Some(rec(13)))
        );
        let w: UserId = Arc::from("c");
        c.keep(&w, true);
        c.settle(|u| u == "d");
        // `c` is kept (watched), `d` came online, one of `a`/`b` fits.
        assert_eq!(c.get("c"), Some(rec(12)));
        assert_eq!(c.get("d"), None);
        assert_eq!(c.len(), 2, "the kept record and one within the bound");
    }
}
