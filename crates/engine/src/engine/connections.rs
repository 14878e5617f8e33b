//! This node's connections: attach (`hello`, resume), detach into grace,
//! removal for good, kick; user status changes from the shared state announced.

use std::sync::Arc;

use super::conn::Conn;
use super::shared::UserChange;
use super::timer::Timer;
use super::*;
use crate::protocol::ConnStatus;
use crate::protocol::out::welcome_frame;

impl Engine {
    /// A socket said `hello` with a verified identity. `conn` is a fresh id
    /// and `session` a fresh unguessable token, both from the caller. Sends
    /// `welcome` (and on resume the snapshots) to the connection.
    #[allow(clippy::too_many_arguments)]
    pub fn connect(
        &mut self,
        now: u64,
        conn: ConnId,
        ident: Identity,
        resume: Option<&str>,
        session: String,
        req_id: Option<u64>,
        out: &mut Effects,
    ) -> Attached {
        let user: Option<UserId> = ident.user.as_deref().map(Arc::from);
        if let Some(old) = resume.and_then(|s| self.sessions.get(s).copied())
            && self.conns.get(&old).is_some_and(|c| c.user == user)
        {
            return self.resume(now, old, ident, session, req_id, out);
        }
        let session: Arc<str> = Arc::from(session);
        self.sessions.insert(session.clone(), conn);
        self.conns.insert(
            conn,
            Box::new(Conn::new(
                user.clone(),
                ident.info,
                ident.channels,
                ConnStatus::Online,
                None,
                session.clone(),
            )),
        );
        if let Some(user) = &user {
            self.user_conns.entry(user.clone()).or_default().push(conn);
            let change = self.shared.conn_added(now, user);
            self.user_changed(now, user, change, Reason::Left, out);
        }
        self.welcome(conn, req_id, &session, false, out);
        Attached {
            conn,
            resumed: false,
            replaced_live_socket: false,
        }
    }

    pub(super) fn resume(
        &mut self,
        now: u64,
        conn: ConnId,
        ident: Identity,
        session: String,
        req_id: Option<u64>,
        out: &mut Effects,
    ) -> Attached {
        let session: Arc<str> = Arc::from(session);
        let c = self.conns.get_mut(&conn).expect("resumed conn exists");
        let old_session = std::mem::replace(&mut c.session, session.clone());
        let info_changed = c.set_claims(ident);
        let was_detached = c.detached.take();
        let user = c.user.clone();
        self.sessions.remove(&old_session);
        self.sessions.insert(session.clone(), conn);
        if let Some(deadline) = was_detached {
            self.timers.remove(&(deadline, Timer::Grace(conn)));
            if let Some(u) = &user {
                self.shared.conn_reattached(u);
            }
        }
        // The new token and the current rules are checked as for a
        // `refresh` (the session may have been kept across a restart with
        // other rules), with the subscriptions quiet until then: the
        // client hears `unsubscribed` after its welcome, and fresh syncs of
        // the rest that already show the others what changed.
        self.set_subs_live(conn, false);
        self.welcome(conn, req_id, &session, true, out);
        self.claims_changed(now, conn, info_changed, out);
        self.set_subs_live(conn, true);
        self.resync(now, conn, out);
        Attached {
            conn,
            resumed: true,
            replaced_live_socket: was_detached.is_none(),
        }
    }

    pub(super) fn welcome(
        &mut self,
        conn: ConnId,
        id: Option<u64>,
        session: &str,
        resumed: bool,
        out: &mut Effects,
    ) {
        let user = self.conns.get(&conn).and_then(|c| c.user.clone());
        let frame = welcome_frame(
            id,
            conn,
            user.as_deref(),
            session,
            resumed,
            self.cfg.heartbeat_ms,
            self.cfg.grace_ms,
        );
        out.reply(conn, frame);
    }

    /// Sends fresh snapshots, occupancy and watched presence: after a resume,
    /// or when a lagging connection's outbox has drained.
    pub fn resync(&mut self, now: u64, conn: ConnId, out: &mut Effects) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let subs: Vec<(ChannelName, bool)> = c.subs().map(|(k, v)| (k.clone(), v)).collect();
        let watching: Vec<UserId> = c.watching.clone();
        let guest = c.user.is_none();
        for (name, occupancy) in subs {
            self.send_snapshot(conn, &name, guest, occupancy, out);
        }
        if !watching.is_empty() {
            let frame = self.presence_frame(now, watching.iter().map(|u| &**u), guest);
            out.reply(conn, frame);
        }
    }

    /// The socket went away (closed, heartbeat missed, token expired): the
    /// connection is kept for the grace window.
    pub fn disconnect(&mut self, now: u64, conn: ConnId, out: &mut Effects) {
        let grace = self.cfg.grace_ms;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.detached.is_some() {
            return;
        }
        let deadline = now + grace;
        c.detached = Some(deadline);
        let user = c.user.clone();
        let subs: Vec<ChannelName> = c.subs().map(|(n, _)| n.clone()).collect();
        for name in subs {
            if let Some(sub) = self
                .channels
                .get_mut(&name)
                .and_then(|ch| ch.subscribers.get_mut(&conn))
            {
                sub.live = false;
            }
        }
        if let Some(u) = &user {
            self.shared.conn_detached(now, u);
        }
        self.set_timer(deadline, Timer::Grace(conn), out);
    }

    /// Closes every connection of a user at once (HTTP API kick): close 4409,
    /// members leave with reason `kicked`, the user goes offline now.
    pub fn kick_user(&mut self, now: u64, user: &str, out: &mut Effects) -> usize {
        let conns = self.user_conns.get(user).cloned().unwrap_or_default();
        // Members leave once, not a connection count at a time.
        self.deferring(now, out, |engine, out| {
            for &conn in &conns {
                let live = engine
                    .conns
                    .get(&conn)
                    .is_some_and(|c| c.detached.is_none());
                // No status recompute between removals: the user goes
                // straight to offline, never through a passing `away`.
                engine.remove_conn_inner(now, conn, Reason::Kicked, false, out);
                if live {
                    out.items.push(Effect::Close {
                        conn,
                        code: 4409,
                        reason: "kicked",
                    });
                }
            }
        });
        conns.len()
    }

    /// Removes a connection for good: its members leave, its subscriptions
    /// and watches end, and the user goes offline if it was the last one.
    pub(super) fn remove_conn(
        &mut self,
        now: u64,
        conn: ConnId,
        reason: Reason,
        out: &mut Effects,
    ) {
        self.remove_conn_inner(now, conn, reason, true, out);
    }

    pub(super) fn remove_conn_inner(
        &mut self,
        now: u64,
        conn: ConnId,
        reason: Reason,
        recompute: bool,
        out: &mut Effects,
    ) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        if let Some(deadline) = c.detached {
            self.timers.remove(&(deadline, Timer::Grace(conn)));
        }
        self.sessions.remove(&c.session);
        if let Some(user) = &c.user {
            for name in c.entered() {
                self.member_conn_leaves(now, name, user, reason, out);
            }
        }
        for (name, _) in c.subs() {
            if let Some(ch) = self.channels.get_mut(name) {
                ch.subscribers.remove(&conn);
            }
            self.drop_channel_if_empty(name);
        }
        for watched in &c.watching {
            self.unwatch_one(conn, watched);
        }
        let Some(user) = c.user else { return };
        if let Some(list) = self.user_conns.get_mut(&user) {
            list.retain(|&x| x != conn);
            if list.is_empty() {
                self.user_conns.remove(&user);
            }
        }
        let away = c.status == ConnStatus::Away;
        let change = self
            .shared
            .conn_removed(now, &user, c.detached.is_none(), away, recompute);
        self.user_changed(now, &user, change, reason, out);
    }

    /// Announces a change of a user's status: the event, and a `presence`
    /// push to the user's watchers. `reason` is for going offline.
    pub(super) fn user_changed(
        &mut self,
        now: u64,
        user: &UserId,
        change: Option<UserChange>,
        reason: Reason,
        out: &mut Effects,
    ) {
        let Some(change) = change else {
            return;
        };
        let who = user.clone();
        out.event(match change {
            UserChange::Online => PresenceEvent::UserOnline { user: who, at: now },
            UserChange::Away => PresenceEvent::UserAway { user: who, at: now },
            UserChange::Offline { last_seen } => PresenceEvent::UserOffline {
                user: who,
                at: now,
                last_seen,
                reason,
            },
        });
        self.notify_watchers(now, user, out);
    }
}
