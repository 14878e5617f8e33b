//! Rights rechecked when a connection's claims change: a `refresh`, or a
//! `resume` with a new token (perhaps after a restart with other channel
//! rules). What the connection holds is checked again as a request would
//! be checked now; each channel it may no longer hold ends with
//! `unsubscribed` to it and, for a member, the same leave as an
//! `unsubscribe` to the others; a new `info` claim reaches the user's
//! member data in every channel the user is in (PROTOCOL.md §4, §6).

use serde_json::Value;

use super::conn::{Conn, Held};
use super::shared::MemberOutcome;
use super::*;
use crate::protocol::out::unsubscribed_frame;

impl Engine {
    /// After the connection's claims were replaced: ends what it may no
    /// longer hold, then (when `info_changed`) rewrites the user's member
    /// data with the new `info`. Frames for the connection are replies
    /// (never dropped for a lagging client); the others' are the usual
    /// broadcasts.
    pub(super) fn claims_changed(
        &mut self,
        now: u64,
        conn: ConnId,
        info_changed: bool,
        out: &mut Effects,
    ) {
        self.revoke_forbidden(now, conn, out);
        if info_changed {
            self.info_changed(now, conn, out);
        }
    }

    /// Whether a connection may hold a channel as it does now: a
    /// subscription needs the right to subscribe, a membership the right to
    /// enter as well, both from the current rules and the connection's
    /// current claims.
    pub(super) fn may_hold(&self, c: &Conn, name: &str, held: Held) -> bool {
        let rule = self.cfg.rules.rule_for(name);
        match c.user {
            None => rule.guests && !held.entered,
            Some(_) => {
                rule.subscribe && Self::token_allows(c, name) && (!held.entered || rule.enter)
            }
        }
    }

    /// Ends every channel the connection may no longer hold (subscription
    /// and membership: a channel is kept whole or not at all), and a
    /// guest's watches when guests may no longer watch. Returns the
    /// channels ended.
    pub(super) fn revoke_forbidden(
        &mut self,
        now: u64,
        conn: ConnId,
        out: &mut Effects,
    ) -> Vec<ChannelName> {
        let Some(c) = self.conns.get(&conn) else {
            return Vec::new();
        };
        let revoked: Vec<ChannelName> = c
            .channels
            .iter()
            .filter(|(name, held)| !self.may_hold(c, name, *held))
            .map(|(name, _)| name.clone())
            .collect();
        let unwatch = c.user.is_none() && !self.cfg.guests_watch;
        for name in &revoked {
            self.revoke(now, conn, name, out);
        }
        if unwatch {
            // No frame says a watch ended: the watched users' presence
            // simply stops coming (and a resume's resync sends none).
            let c = self.conns.get_mut(&conn).expect("looked up above");
            let watching = std::mem::take(&mut c.watching);
            for user in &watching {
                self.unwatch_one(conn, user);
            }
        }
        revoked
    }

    /// Ends one channel of the connection: it stops being a subscriber
    /// first (so it gets no frame of that channel after this one), its
    /// membership goes as with `unsubscribe` (a `leave` with reason `left`
    /// when it was the user's last connection there), then `unsubscribed`.
    fn revoke(&mut self, now: u64, conn: ConnId, name: &ChannelName, out: &mut Effects) {
        let c = self.conns.get_mut(&conn).expect("revoked conn exists");
        let was = c.release(name, |h| *h = Held::default());
        let user = c.user.clone();
        if was.sub.is_some()
            && let Some(ch) = self.channels.get_mut(name)
        {
            ch.subscribers.remove(&conn);
        }
        if was.entered
            && let Some(user) = &user
        {
            self.member_conn_leaves(now, name, user, Reason::Left, out);
        }
        self.drop_channel_if_empty(name);
        out.reply(conn, unsubscribed_frame(name));
    }

    /// The connection's `info` claim changed: the user's member data in
    /// every channel the user is in (through any of its connections here)
    /// carries the new one under `info` (none when the new token has none);
    /// subscribers get an `update`. The user's other connections keep their
    /// own tokens' claims for their later updates.
    pub(super) fn info_changed(&mut self, now: u64, conn: ConnId, out: &mut Effects) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let Some(user) = c.user.clone() else {
            return;
        };
        let info = c.info.as_deref().cloned();
        let mut names: Vec<ChannelName> = self
            .user_conns
            .get(&user)
            .into_iter()
            .flatten()
            .filter_map(|id| self.conns.get(id))
            .flat_map(|c| c.entered().cloned())
            .collect();
        names.sort_unstable();
        names.dedup();
        for name in names {
            let Some(member) = self.shared.members(&name).get(&user) else {
                continue;
            };
            let mut data = member.data.to_map();
            match &info {
                Some(info) => data.insert("info".into(), Value::Object(info.clone())),
                None => data.remove("info"),
            };
            let change = self.shared.update(&name, &user, data);
            let outcome = MemberOutcome {
                change,
                conns_changed: false,
            };
            self.member_changed(now, &name, &user, outcome, None, Reason::Left, out);
        }
    }

    /// Marks the connection's subscriptions live or not: a resume keeps
    /// them quiet while its new claims are applied, so that its fresh
    /// syncs, not events before them, show the result.
    pub(super) fn set_subs_live(&mut self, conn: ConnId, live: bool) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        for (name, _) in c.subs() {
            if let Some(sub) = self
                .channels
                .get_mut(name)
                .and_then(|ch| ch.subscribers.get_mut(&conn))
            {
                sub.live = live;
            }
        }
    }
}
