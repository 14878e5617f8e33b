//! Restore after a restart: users the journal has online, the sessions of a
//! clean shutdown, and offline users' last presence from the store.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::{Map, Value};

use super::channel::Channel;
use super::conn::Conn;
use super::requests::add_subscription;
use super::timer::Timer;
use super::*;
use crate::protocol::ConnStatus;

impl Engine {
    /// Restores what the last run left: the users the journal has online
    /// (with their memberships) and, after a clean shutdown, the sessions of
    /// their connections. Every restored connection is detached with one grace
    /// window, like any dropped socket: a client that resumes gets its state
    /// back; a user nobody resumes for goes offline when the window ends.
    /// A journaled user without a session (after a crash) is held by a
    /// stand-in connection that cannot be resumed.
    pub fn restore(
        &mut self,
        now: u64,
        users: Vec<RestoredUser>,
        sessions: Vec<SessionRecord>,
        mut next_conn: impl FnMut() -> ConnId,
        out: &mut Effects,
    ) {
        let deadline = now + self.cfg.grace_ms;
        let journal: HashMap<String, RestoredUser> =
            users.into_iter().map(|u| (u.user.clone(), u)).collect();
        let mut covered: HashSet<String> = HashSet::new();
        let no_data = Map::new();
        for rec in sessions {
            if rec.user.as_ref().is_some_and(|u| !journal.contains_key(u)) {
                // The journal says this user was not online: nothing to hold.
                continue;
            }
            let conn = next_conn();
            let user: Option<UserId> = rec.user.as_deref().map(Arc::from);
            let session: Arc<str> = Arc::from(rec.session);
            let mut c = Conn::new(
                user.clone(),
                rec.info,
                rec.channels,
                if rec.away {
                    ConnStatus::Away
                } else {
                    ConnStatus::Online
                },
                Some(deadline),
                session.clone(),
            );
            for (name, occupancy) in rec.subs {
                if !crate::rules::valid_channel_name(&name) {
                    continue;
                }
                let name: ChannelName = Arc::from(name.as_str());
                add_subscription(&mut self.channels, conn, &mut c, &name, occupancy, false);
            }
            let mut watching = rec.watching;
            watching.sort_unstable();
            watching.dedup();
            let watching: Vec<UserId> = watching.iter().map(|w| Arc::from(w.as_str())).collect();
            for w in &watching {
                self.add_watcher(w, conn);
            }
            c.watch(watching);
            if let Some(user) = &user {
                let r = journal.get(&**user).expect("checked above");
                // Entered channels need not be subscribed ones
                // (`enter{subscribe: false}`): each is restored on its own.
                for name in rec.entered {
                    if !crate::rules::valid_channel_name(&name) {
                        continue;
                    }
                    let name: ChannelName = Arc::from(name.as_str());
                    if c.is_entered(&name) {
                        continue;
                    }
                    let (data, since) = r
                        .channels
                        .iter()
                        .find(|(n, _, _)| **n == *name)
                        .map_or((&no_data, now), |(_, d, s)| (d, *s));
                    self.restore_member(&name, user, data, since);
                    c.enter(&name);
                }
                let away = c.status == ConnStatus::Away;
                self.restore_user_conn(user, conn, away, r);
                covered.insert(user.to_string());
            }
            self.sessions.insert(session, conn);
            self.conns.insert(conn, Box::new(c));
            self.set_timer(deadline, Timer::Grace(conn), out);
        }
        for (name, r) in journal {
            if covered.contains(&name) {
                continue;
            }
            let user: UserId = Arc::from(name.as_str());
            if self.shared.is_present(&user) {
                continue;
            }
            let conn = next_conn();
            // A stand-in for the connections the crash cut: it holds the
            // user's presence for one grace window, like any dropped socket.
            let mut c = Conn::new(
                Some(user.clone()),
                None,
                None,
                if r.status == UserStatus::Away {
                    ConnStatus::Away
                } else {
                    ConnStatus::Online
                },
                Some(deadline),
                Arc::from(""),
            );
            for (channel, data, since) in &r.channels {
                if !crate::rules::valid_channel_name(channel) {
                    continue;
                }
                let channel: ChannelName = Arc::from(channel.as_str());
                // Once per channel, as the connection counts once there.
                if c.enter(&channel) {
                    self.restore_member(&channel, &user, data, *since);
                }
            }
            let away = c.status == ConnStatus::Away;
            self.conns.insert(conn, Box::new(c));
            self.restore_user_conn(&user, conn, away, &r);
            self.set_timer(deadline, Timer::Grace(conn), out);
        }
    }

    pub(super) fn restore_member(
        &mut self,
        name: &ChannelName,
        user: &UserId,
        data: &Map<String, Value>,
        since: u64,
    ) {
        self.channels
            .entry(name.clone())
            .or_insert_with(Channel::new);
        self.shared.restore_member(name, user, data, since);
    }

    pub(super) fn restore_user_conn(
        &mut self,
        user: &UserId,
        conn: ConnId,
        away: bool,
        r: &RestoredUser,
    ) {
        self.user_conns.entry(user.clone()).or_default().push(conn);
        self.shared
            .conn_restored(user, away, r.status, r.since, r.last_seen);
    }

    /// Remembers an offline user's last presence (loaded from the store):
    /// at start, and for the users [`Engine::presence_unknown`] and
    /// [`Engine::watched_unknown`] name. Kept in the bounded cache
    /// ([`EngineConfig::offline_cache`]); ignored for a user who is online or
    /// away or whose record the engine holds already (it is at least as new
    /// as the store's).
    pub fn restore_offline(&mut self, user: &str, since: u64, last_seen: Option<u64>) {
        self.shared
            .remember_offline(Arc::from(user), since, last_seen.unwrap_or(since));
    }

    /// Runs `f` (a request or a read) with the last presence of `recalled`
    /// users `(user, since, last_seen)` looked up in the store for it: every
    /// one of them readable during `f` whatever the cache's bound, then
    /// remembered in the cache (the users `f` made watched are kept). A
    /// record is ignored for a user the engine knows already.
    pub fn with_recalled<'a, R>(
        &mut self,
        recalled: impl IntoIterator<Item = (&'a str, u64, Option<u64>)>,
        f: impl FnOnce(&mut Engine) -> R,
    ) -> R {
        for (user, since, last_seen) in recalled {
            self.shared
                .recall_offline(Arc::from(user), since, last_seen.unwrap_or(since));
        }
        let r = f(self);
        self.shared.settle_recalled();
        r
    }
}
