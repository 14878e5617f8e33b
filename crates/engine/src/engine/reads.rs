//! Reads for the protocol, the HTTP API, metrics and tests: presence of
//! users, occupancy, listings, and the sessions to keep across a restart.

use std::collections::BTreeSet;

use serde_json::Value;

use super::*;
use crate::protocol::out::presence_frame;
use crate::protocol::{ConnStatus, Frame};

impl Engine {
    /// Current presence of a user.
    pub fn presence(&self, now: u64, user: &str) -> UserPresence {
        self.shared.presence(now, user)
    }

    /// Of `users`, those whose presence this engine does not know: no
    /// connection and no offline record in the cache (sorted, each once).
    /// Their presence reads as offline with no `since` or `last_seen`, and
    /// [`Engine::user_detail`] as never seen, until their last presence is
    /// fed in with [`Engine::restore_offline`]: the caller looks these up in
    /// its store before a `watch` request, a resume or resync of a
    /// connection that watches them, or a read of their presence.
    pub fn presence_unknown<'a>(&self, users: impl IntoIterator<Item = &'a str>) -> Vec<UserId> {
        let mut unknown: Vec<UserId> = users
            .into_iter()
            .filter(|u| !self.shared.is_known(u))
            .map(UserId::from)
            .collect();
        unknown.sort_unstable();
        unknown.dedup();
        unknown
    }

    /// Users watched here whose presence is unknown: after [`Engine::restore`]
    /// (restored sessions watch again), the caller feeds these in with
    /// [`Engine::restore_offline`]. Once fed, a watched user's record is kept
    /// whatever the cache's bound for as long as anybody here watches.
    pub fn watched_unknown(&self) -> Vec<UserId> {
        self.presence_unknown(self.watchers.keys().map(|u| &**u))
    }

    /// The `presence` frame of `users`; status only for a guest watcher.
    pub(super) fn presence_frame<'a>(
        &self,
        now: u64,
        users: impl Iterator<Item = &'a str>,
        guest: bool,
    ) -> Frame {
        presence_frame(users.map(|u| (u, self.presence(now, u))), guest)
    }

    /// `(members, connections)` of a channel, if it exists.
    pub fn occupancy(&self, channel: &str) -> Option<(usize, usize)> {
        self.channels
            .contains_key(channel)
            .then(|| self.shared.occupancy(channel))
    }

    /// Number of users online or away.
    pub fn users_present(&self) -> usize {
        self.shared.present_count()
    }

    /// Number of connections, live or inside grace.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Number of channels that exist.
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// User ids of a channel's members, in order.
    pub fn member_ids(&self, channel: &str) -> Vec<String> {
        self.shared
            .members(channel)
            .keys()
            .map(|u| u.to_string())
            .collect()
    }

    /// Whether the connection exists (live or inside grace).
    pub fn has_conn(&self, conn: ConnId) -> bool {
        self.conns.contains_key(&conn)
    }

    /// A user's presence with its connections and channels; `None` if the
    /// user was never seen.
    pub fn user_detail(&self, now: u64, user: &str) -> Option<UserDetail> {
        let presence = self.presence(now, user);
        presence.since?;
        let (connections, channels) = match self.user_conns.get(user) {
            Some(conns) => {
                let mut channels: BTreeSet<&str> = BTreeSet::new();
                for c in conns.iter().filter_map(|c| self.conns.get(c)) {
                    channels.extend(c.entered().map(|n| &**n));
                }
                (
                    conns.len(),
                    channels.into_iter().map(str::to_owned).collect(),
                )
            }
            None => (0, Vec::new()),
        };
        Some(UserDetail {
            user: user.to_owned(),
            presence,
            connections,
            channels,
        })
    }

    /// Users online or away (or only those with `status`), in id order after
    /// `cursor`, at most `limit`; the cursor of the next page if any.
    pub fn list_users(
        &self,
        now: u64,
        status: Option<UserStatus>,
        cursor: Option<&str>,
        limit: usize,
    ) -> (Vec<UserDetail>, Option<String>) {
        let mut iter = self
            .shared
            .present_after(cursor)
            .filter(|(_, s)| status.is_none_or(|want| want == *s))
            .map(|(id, _)| id);
        let page: Vec<UserDetail> = iter
            .by_ref()
            .take(limit)
            .filter_map(|id| self.user_detail(now, id))
            .collect();
        let next = match iter.next() {
            Some(_) => page.last().map(|u| u.user.clone()),
            None => None,
        };
        (page, next)
    }

    /// Channels whose name starts with `prefix`, in name order after
    /// `cursor`: `(name, members, connections)`.
    pub fn list_channels(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> (Vec<(String, usize, usize)>, Option<String>) {
        use std::ops::Bound;
        let start = match cursor {
            Some(c) if c >= prefix => Bound::Excluded(c),
            _ => Bound::Included(prefix),
        };
        let mut iter = self
            .channels
            .range::<str, _>((start, Bound::Unbounded))
            .take_while(|(name, _)| name.starts_with(prefix));
        let page: Vec<(String, usize, usize)> = iter
            .by_ref()
            .take(limit)
            .map(|(name, _)| {
                let (members, connections) = self.shared.occupancy(name);
                (name.to_string(), members, connections)
            })
            .collect();
        let next = match iter.next() {
            Some(_) => page.last().map(|c| c.0.clone()),
            None => None,
        };
        (page, next)
    }

    /// A page of a channel's members as JSON member objects (the full view),
    /// in user id order after `cursor`. `None` if the channel does not exist.
    pub fn channel_members(
        &self,
        channel: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Option<(Vec<Value>, Option<String>)> {
        use std::ops::Bound;
        if !self.channels.contains_key(channel) {
            return None;
        }
        let start = cursor.map_or(Bound::Unbounded, Bound::Excluded);
        let mut iter = self
            .shared
            .members(channel)
            .range::<str, _>((start, Bound::Unbounded));
        let mut last = None;
        let page: Vec<Value> = iter
            .by_ref()
            .take(limit)
            .map(|(user, m)| {
                last = Some(user.to_string());
                serde_json::to_value(m.view(user, None)).unwrap_or(Value::Null)
            })
            .collect();
        let next = iter.next().and(last);
        Some((page, next))
    }

    /// Whether a `hello` of `user` naming `resume` would take over a held
    /// session (rather than open a new connection).
    pub fn resumes(&self, resume: Option<&str>, user: Option<&str>) -> bool {
        resume
            .and_then(|s| self.sessions.get(s))
            .and_then(|conn| self.conns.get(conn))
            .is_some_and(|c| c.user.as_deref() == user)
    }

    /// Sum of members over all channels.
    pub fn member_count(&self) -> usize {
        self.shared.member_count()
    }

    /// Every connection that has a session, for a clean shutdown: with
    /// [`Engine::restore`] after the restart, clients resume as if the server
    /// had never gone.
    pub fn export_sessions(&self) -> Vec<SessionRecord> {
        self.conns
            .values()
            .filter(|c| !c.session.is_empty())
            .map(|c| SessionRecord {
                session: c.session.to_string(),
                user: c.user.as_deref().map(str::to_owned),
                away: c.status == ConnStatus::Away,
                entered: c.entered().map(|n| n.to_string()).collect(),
                subs: c.subs().map(|(n, o)| (n.to_string(), o)).collect(),
                watching: c.watching.iter().map(|u| u.to_string()).collect(),
                info: c.info.as_deref().cloned(),
                channels: c.allowed.as_ref().map(|a| a.to_vec()),
            })
            .collect()
    }
}
