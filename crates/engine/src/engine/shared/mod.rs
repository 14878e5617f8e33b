//! The shared presence state: what every node of a cluster must agree on,
//! apart from what only this node knows.
//!
//! It holds, per user, how many connections there are (live, away) with
//! the aggregated status, its `since` and when the user was last live; per
//! channel, the members with their data, connection count and `since`; and
//! the last presence of users gone offline. It knows no connection ids,
//! sockets, sessions, subscriptions, watchers, timers or frames: those are
//! this node's, in the rest of the engine. Offline users' last presence is
//! a bounded cache of what the store holds ([`offline`]).
//!
//! Every change is one call that applies a transition and returns what it
//! changed ([`UserChange`], [`MemberOutcome`]); the engine checks a request
//! against its own state first, applies it here, then replies and fans out
//! from the outcome. Everything here is synchronous and in process; cluster
//! mode keeps this state in Redis, one script per transition.
//!
//! A struct with a narrow API, not a trait: the Redis side of this seam will
//! be asynchronous scripts, so a synchronous trait written now would have the
//! wrong signatures and a single implementation; and the engine reads members
//! while it serialises frames, which a trait object would turn into boxed
//! iterators or copies. The methods below are the list a backend must offer.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{ChannelName, UserId, UserPresence, UserStatus};
use crate::data::MemberData;
use crate::protocol::out::{MemberView, member_view};
use crate::rules::ChannelRule;

mod offline;
#[cfg(test)]
mod tests;

use offline::{OfflineCache, OfflineRecord};

/// One user with at least one connection somewhere.
#[derive(Debug)]
struct Present {
    conns: u32,
    /// Connections with a socket (not inside grace).
    live: u32,
    /// Connections whose own status is away.
    away: u32,
    status: UserStatus,
    since: u64,
    /// When the last live connection dropped (meaningful when `live == 0`).
    last_live_at: u64,
}

/// A member of a channel: one user, however many connections entered.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Member {
    /// Serialized once here; frames write it as is.
    pub(crate) data: MemberData,
    pub(crate) conns: u32,
    pub(crate) since: u64,
}

impl Member {
    /// The member as one subscriber sees it: whole, or projected for guests.
    pub(crate) fn view<'a>(
        &'a self,
        user: &'a str,
        public: Option<&ChannelRule>,
    ) -> MemberView<'a> {
        member_view(user, &self.data, self.conns, self.since, public)
    }
}

#[derive(Debug, Default)]
struct Members {
    members: BTreeMap<UserId, Member>,
    /// Sum of the members' `conns`.
    connections: usize,
}

/// A user's aggregated status changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UserChange {
    Online,
    Away,
    /// The last connection is gone; `last_seen` is when it was last live.
    Offline {
        last_seen: u64,
    },
}

/// A member joined, changed its data, or left.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum MemberChange {
    Joined {
        data: Map<String, Value>,
    },
    Updated {
        old: Member,
        data: Map<String, Value>,
    },
    /// `old` as the member was before its last connection left (one
    /// connection).
    Left {
        old: Member,
    },
}

/// What one enter or leave did to a channel's members.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct MemberOutcome {
    pub(crate) change: Option<MemberChange>,
    /// The channel's connection count changed.
    pub(crate) conns_changed: bool,
}

/// The shared presence state. See the module docs.
#[derive(Debug, Default)]
pub(crate) struct SharedPresence {
    users: BTreeMap<UserId, Present>,
    offline: OfflineCache,
    channels: BTreeMap<ChannelName, Members>,
}

impl SharedPresence {
    /// `offline_cache`: how many offline users' last presence to keep.
    pub(crate) fn new(offline_cache: usize) -> Self {
        SharedPresence {
            offline: OfflineCache::new(offline_cache),
            ..SharedPresence::default()
        }
    }

    // ----- users: apply ---------------------------------------------------

    /// A fresh connection of `user` attached: live, online.
    pub(crate) fn conn_added(&mut self, now: u64, user: &UserId) -> Option<UserChange> {
        match self.users.get_mut(user) {
            Some(u) => {
                u.conns += 1;
                u.live += 1;
                self.recompute(now, user)
            }
            None => {
                self.offline.remove(user);
                self.users.insert(
                    user.clone(),
                    Present {
                        conns: 1,
                        live: 1,
                        away: 0,
                        status: UserStatus::Online,
                        since: now,
                        last_live_at: now,
                    },
                );
                Some(UserChange::Online)
            }
        }
    }

    /// A connection restored from the last run, without a socket. A user new
    /// here takes its status, `since` and last-live time from the journal;
    /// nothing is announced.
    pub(crate) fn conn_restored(
        &mut self,
        user: &UserId,
        away: bool,
        status: UserStatus,
        since: u64,
        last_seen: u64,
    ) {
        self.offline.remove(user);
        let u = self.users.entry(user.clone()).or_insert_with(|| Present {
            conns: 0,
            live: 0,
            away: 0,
            status: if status == UserStatus::Away {
                UserStatus::Away
            } else {
                UserStatus::Online
            },
            since,
            last_live_at: last_seen,
        });
        u.conns += 1;
        u.away += u32::from(away);
    }

    /// A connection's socket went away (its grace window starts).
    pub(crate) fn conn_detached(&mut self, now: u64, user: &str) {
        if let Some(u) = self.users.get_mut(user) {
            u.live -= 1;
            if u.live == 0 {
                u.last_live_at = now;
            }
        }
    }

    /// A connection inside grace got its socket back (resume).
    pub(crate) fn conn_reattached(&mut self, user: &str) {
        if let Some(u) = self.users.get_mut(user) {
            u.live += 1;
        }
    }

    /// A connection changed its own status.
    pub(crate) fn conn_status(
        &mut self,
        now: u64,
        user: &UserId,
        was_away: bool,
        away: bool,
    ) -> Option<UserChange> {
        let u = self.users.get_mut(user)?;
        u.away = u.away - u32::from(was_away) + u32::from(away);
        self.recompute(now, user)
    }

    /// A connection is gone for good; `live` and `away` say what it was. The
    /// user goes offline with its last one; with `recompute` false the status
    /// is otherwise left as it is (a kick goes straight to offline, never
    /// through a passing `away`).
    pub(crate) fn conn_removed(
        &mut self,
        now: u64,
        user: &UserId,
        live: bool,
        away: bool,
        recompute: bool,
    ) -> Option<UserChange> {
        let u = self.users.get_mut(user)?;
        u.conns -= 1;
        u.away -= u32::from(away);
        if live {
            u.live -= 1;
            if u.live == 0 {
                u.last_live_at = now;
            }
        }
        if u.conns == 0 {
            let last_seen = u.last_live_at;
            self.users.remove(user);
            self.offline.insert(
                user.clone(),
                OfflineRecord {
                    since: now,
                    last_seen,
                },
            );
            Some(UserChange::Offline { last_seen })
        } else if recompute {
            self.recompute(now, user)
        } else {
            None
        }
    }

    /// Away when every connection is away, else online.
    fn recompute(&mut self, now: u64, user: &str) -> Option<UserChange> {
        let u = self.users.get_mut(user)?;
        let status = if u.away == u.conns {
            UserStatus::Away
        } else {
            UserStatus::Online
        };
        if status == u.status {
            return None;
        }
        u.status = status;
        u.since = now;
        Some(match status {
            UserStatus::Away => UserChange::Away,
            _ => UserChange::Online,
        })
    }

    /// Remembers an offline user's last presence (loaded from the store);
    /// ignored for a user who is present or has a record already, which is
    /// at least as new as the store's.
    pub(crate) fn remember_offline(&mut self, user: UserId, since: u64, last_seen: u64) {
        if self.is_known(&user) {
            return;
        }
        self.offline
            .insert(user, OfflineRecord { since, last_seen });
    }

    /// Holds an offline user's last presence looked up in the store for the
    /// call in progress (outside the cache's bound until
    /// [`SharedPresence::settle_recalled`]); ignored for a user who is
    /// present or has a record already.
    pub(crate) fn recall_offline(&mut self, user: UserId, since: u64, last_seen: u64) {
        if self.is_known(&user) {
            return;
        }
        self.offline
            .recall(user, OfflineRecord { since, last_seen });
    }

    /// Moves what [`SharedPresence::recall_offline`] held into the cache.
    pub(crate) fn settle_recalled(&mut self) {
        let users = &self.users;
        self.offline.settle(|u| users.contains_key(u));
    }

    /// Keeps (or stops keeping) an offline user's last presence whatever
    /// the cache's bound: while this node watches the user.
    pub(crate) fn keep_offline(&mut self, user: &UserId, keep: bool) {
        self.offline.keep(user, keep);
    }

    // ----- users: read ----------------------------------------------------

    /// Current presence of a user.
    pub(crate) fn presence(&self, now: u64, user: &str) -> UserPresence {
        if let Some(u) = self.users.get(user) {
            UserPresence {
                status: u.status,
                since: Some(u.since),
                last_seen: Some(if u.live > 0 { now } else { u.last_live_at }),
            }
        } else if let Some(r) = self.offline.get(user) {
            UserPresence {
                status: UserStatus::Offline,
                since: Some(r.since),
                last_seen: Some(r.last_seen),
            }
        } else {
            UserPresence {
                status: UserStatus::Offline,
                since: None,
                last_seen: None,
            }
        }
    }

    /// Whether the user's presence is known: present, or offline with a
    /// record in the cache.
    pub(crate) fn is_known(&self, user: &str) -> bool {
        self.users.contains_key(user) || self.offline.get(user).is_some()
    }

    /// Whether the user has a connection (online or away).
    pub(crate) fn is_present(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// Number of users online or away.
    pub(crate) fn present_count(&self) -> usize {
        self.users.len()
    }

    /// Users online or away with their status, in id order after `cursor`.
    pub(crate) fn present_after<'a>(
        &'a self,
        cursor: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a UserId, UserStatus)> + 'a {
        use std::ops::Bound;
        let start = cursor.map_or(Bound::Unbounded, Bound::Excluded);
        self.users
            .range::<str, _>((start, Bound::Unbounded))
            .map(|(id, u)| (id, u.status))
    }

    // ----- members: apply -------------------------------------------------

    /// A connection of `user` enters the channel: `new_conn` when it had not
    /// entered before, `data` when it sets data (last writer wins). A new
    /// member gets `data` or else `default()`.
    pub(crate) fn enter(
        &mut self,
        now: u64,
        channel: &ChannelName,
        user: &UserId,
        new_conn: bool,
        data: Option<Map<String, Value>>,
        default: impl FnOnce() -> Map<String, Value>,
    ) -> MemberOutcome {
        let ch = self.channels.entry(channel.clone()).or_default();
        match ch.members.get_mut(user) {
            Some(m) => {
                if new_conn {
                    m.conns += 1;
                    ch.connections += 1;
                }
                MemberOutcome {
                    change: data.and_then(|d| replace_data(m, d)),
                    conns_changed: new_conn,
                }
            }
            None => {
                let data = data.unwrap_or_else(default);
                ch.members.insert(
                    user.clone(),
                    Member {
                        data: MemberData::from_map(&data),
                        conns: 1,
                        since: now,
                    },
                );
                ch.connections += 1;
                MemberOutcome {
                    change: Some(MemberChange::Joined { data }),
                    conns_changed: true,
                }
            }
        }
    }

    /// Replaces a member's data; `None` if it is not a member or the data
    /// was already that.
    pub(crate) fn update(
        &mut self,
        channel: &str,
        user: &str,
        data: Map<String, Value>,
    ) -> Option<MemberChange> {
        let m = self.channels.get_mut(channel)?.members.get_mut(user)?;
        replace_data(m, data)
    }

    /// One connection of `user` stops being in the channel; the member
    /// leaves with its last one.
    pub(crate) fn leave(&mut self, channel: &str, user: &str) -> MemberOutcome {
        let Some(ch) = self.channels.get_mut(channel) else {
            return MemberOutcome::default();
        };
        let Some(m) = ch.members.get_mut(user) else {
            return MemberOutcome::default();
        };
        m.conns -= 1;
        ch.connections -= 1;
        let change = if m.conns == 0 {
            let mut old = ch.members.remove(user).expect("just looked up");
            old.conns = 1;
            Some(MemberChange::Left { old })
        } else {
            None
        };
        if ch.members.is_empty() {
            self.channels.remove(channel);
        }
        MemberOutcome {
            change,
            conns_changed: true,
        }
    }

    /// A restored connection of `user` is in the channel again (data and
    /// `since` from the journal when the member is new); nothing is
    /// announced.
    pub(crate) fn restore_member(
        &mut self,
        channel: &ChannelName,
        user: &UserId,
        data: &Map<String, Value>,
        since: u64,
    ) {
        let ch = self.channels.entry(channel.clone()).or_default();
        match ch.members.get_mut(user) {
            Some(m) => m.conns += 1,
            None => {
                ch.members.insert(
                    user.clone(),
                    Member {
                        data: MemberData::from_map(data),
                        conns: 1,
                        since,
                    },
                );
            }
        }
        ch.connections += 1;
    }

    // ----- members: read --------------------------------------------------

    /// A channel's members by user id; empty for a channel without any.
    pub(crate) fn members(&self, channel: &str) -> &BTreeMap<UserId, Member> {
        static NONE: BTreeMap<UserId, Member> = BTreeMap::new();
        self.channels.get(channel).map_or(&NONE, |ch| &ch.members)
    }

    /// `(members, connections)` of a channel.
    pub(crate) fn occupancy(&self, channel: &str) -> (usize, usize) {
        self.channels
            .get(channel)
            .map_or((0, 0), |ch| (ch.members.len(), ch.connections))
    }

    /// Sum of members over all channels.
    pub(crate) fn member_count(&self) -> usize {
        self.channels.values().map(|ch| ch.members.len()).sum()
    }
}

/// Last writer wins: the update, or `None` when the data was already that.
fn replace_data(m: &mut Member, data: Map<String, Value>) -> Option<MemberChange> {
    let stored = MemberData::from_map(&data);
    if m.data == stored {
        return None;
    }
    let old = m.clone();
    m.data = stored;
    Some(MemberChange::Updated { old, data })
}
