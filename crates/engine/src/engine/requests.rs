//! Client requests: checks, then the change (subscribe, enter, update,
//! leave, publish, status, watch).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::channel::{Channel, Sub};
use super::conn::{Conn, Held};
use super::shared::MemberOutcome;
use super::*;
use crate::protocol::out::{message_frame, pong_frame};
use crate::protocol::{ClientFrame, ConnStatus, ErrorCode, RequestError};
use crate::rules::glob_match;

const E_FORBIDDEN: RequestError =
    RequestError::new(ErrorCode::Forbidden, "not allowed on this channel");
const E_GUEST: RequestError = RequestError::new(ErrorCode::Forbidden, "guests may not do this");
const E_NOT_MEMBER: RequestError = RequestError::new(
    ErrorCode::NotMember,
    "this connection has not entered the channel",
);
const E_TOO_LARGE: RequestError = RequestError::new(ErrorCode::TooLarge, "data is over the limit");
const E_CHANNELS: RequestError = RequestError::new(
    ErrorCode::LimitExceeded,
    "too many channels on this connection",
);
const E_WATCH: RequestError = RequestError::new(
    ErrorCode::LimitExceeded,
    "too many watched users on this connection",
);
const E_FULL: RequestError = RequestError::new(ErrorCode::LimitExceeded, "the channel is full");
const E_GONE: RequestError = RequestError::new(ErrorCode::Unauthorized, "connection closed");
const E_HELLO: RequestError = RequestError::new(ErrorCode::BadRequest, "already said hello");
const E_OTHER_USER: RequestError = RequestError::new(
    ErrorCode::Forbidden,
    "a refreshed token must be for the same user",
);

impl Engine {
    /// Applies one request of a connection that already said hello. Sends the
    /// reply (`ok`/`error`, when an id was given or on error) after the frames
    /// the request produced. `Hello` and `Refresh` carry no verified identity
    /// here: use [`Engine::refresh`] for the latter.
    pub fn request(
        &mut self,
        now: u64,
        conn: ConnId,
        id: Option<u64>,
        frame: ClientFrame,
        out: &mut Effects,
    ) -> Result<(), RequestError> {
        if !self.conns.contains_key(&conn) {
            // Removed (kicked) between the frame's arrival and this call:
            // its socket is closing, nothing to answer.
            return Err(E_GONE);
        }
        let result = self.apply(now, conn, frame, out);
        match &result {
            Ok(()) => out.done(conn, id),
            Err(e) => out.fail(conn, id, e),
        }
        if result.is_ok() && !self.conns.contains_key(&conn) {
            // `bye`: the reply is out, now the socket closes.
            out.items.push(Effect::Close {
                conn,
                code: 1000,
                reason: "bye",
            });
        }
        result
    }

    /// Replaces a connection's verified identity (`refresh`). Same user
    /// only. The new claims are applied at once: channels the connection
    /// may no longer hold end with `unsubscribed`, and a new `info` reaches
    /// the user's member data everywhere (before the `ok`).
    pub fn refresh(
        &mut self,
        now: u64,
        conn: ConnId,
        id: Option<u64>,
        ident: Identity,
        out: &mut Effects,
    ) -> Result<(), RequestError> {
        let result = match self.conns.get_mut(&conn) {
            Some(c) if c.user.as_deref() == ident.user.as_deref() && c.user.is_some() => {
                let info_changed = c.set_claims(ident);
                self.claims_changed(now, conn, info_changed, out);
                Ok(())
            }
            _ => Err(E_OTHER_USER),
        };
        match &result {
            Ok(()) => out.done(conn, id),
            Err(e) => out.fail(conn, id, e),
        }
        result
    }

    pub(super) fn apply(
        &mut self,
        now: u64,
        conn: ConnId,
        frame: ClientFrame,
        out: &mut Effects,
    ) -> Result<(), RequestError> {
        let guest = self.conns.get(&conn).is_none_or(|c| c.user.is_none());
        match frame {
            ClientFrame::Hello { .. } => Err(E_HELLO),
            ClientFrame::Refresh { .. } => Err(E_OTHER_USER),
            ClientFrame::Ping => {
                out.reply(conn, pong_frame());
                Ok(())
            }
            ClientFrame::Subscribe { channel, occupancy } => {
                let name = self.channel_name(channel);
                self.check_subscribe(conn, &name)?;
                self.subscribe(conn, &name, Some(occupancy), out);
                Ok(())
            }
            ClientFrame::Unsubscribe { channel } => {
                let name = self.channel_name(channel);
                self.unsubscribe(now, conn, &name, out);
                Ok(())
            }
            ClientFrame::Enter {
                channel,
                data,
                subscribe,
            } => {
                if guest {
                    return Err(E_GUEST);
                }
                self.enter(now, conn, self.channel_name(channel), data, subscribe, out)
            }
            ClientFrame::Update { channel, data } => {
                if guest {
                    return Err(E_GUEST);
                }
                self.update(now, conn, &self.channel_name(channel), data, out)
            }
            ClientFrame::Leave { channel } => {
                if guest {
                    return Err(E_GUEST);
                }
                self.leave(now, conn, &self.channel_name(channel), out)
            }
            ClientFrame::Publish { channel, data } => {
                if guest {
                    return Err(E_GUEST);
                }
                self.publish(conn, &self.channel_name(channel), data, out)
            }
            ClientFrame::Status { status } => {
                if guest {
                    return Err(E_GUEST);
                }
                let c = self
                    .conns
                    .get_mut(&conn)
                    .expect("request from a known conn");
                let was_away = c.status == ConnStatus::Away;
                c.status = status;
                let user = c.user.clone().expect("not a guest");
                let change =
                    self.shared
                        .conn_status(now, &user, was_away, status == ConnStatus::Away);
                self.user_changed(now, &user, change, Reason::Left, out);
                Ok(())
            }
            ClientFrame::Watch { users } => self.watch(now, conn, users, out),
            ClientFrame::Unwatch { mut users } => {
                users.sort_unstable();
                users.dedup();
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.unwatch(&users);
                }
                for u in &users {
                    self.unwatch_one(conn, u);
                }
                Ok(())
            }
            ClientFrame::Bye => {
                self.remove_conn(now, conn, Reason::Logout, out);
                Ok(())
            }
        }
    }

    /// The name as the existing channel holds it: connections that enter
    /// or subscribe share that one allocation instead of holding a copy each
    /// (and lookups need none).
    pub(super) fn channel_name(&self, name: String) -> ChannelName {
        match self.channels.get_key_value(name.as_str()) {
            Some((existing, _)) => existing.clone(),
            None => Arc::from(name),
        }
    }

    pub(super) fn token_allows(conn: &Conn, channel: &str) -> bool {
        conn.allowed
            .as_ref()
            .is_none_or(|globs| globs.iter().any(|g| glob_match(g, channel)))
    }

    pub(super) fn check_subscribe(
        &self,
        conn: ConnId,
        name: &ChannelName,
    ) -> Result<(), RequestError> {
        let c = self.conns.get(&conn).expect("request from a known conn");
        let rule = self.cfg.rules.rule_for(name);
        let allowed = match c.user {
            None => rule.guests,
            Some(_) => rule.subscribe && Self::token_allows(c, name),
        };
        if !allowed {
            return Err(E_FORBIDDEN);
        }
        // Subscribed or entered both count: `enter{subscribe: false}` must
        // not get around the limit.
        if !c.holds_channel(name) && c.channel_count() >= self.cfg.max_channels_per_conn {
            return Err(E_CHANNELS);
        }
        Ok(())
    }

    /// Adds (or refreshes) a subscription and sends its snapshot. `occupancy`
    /// `None` keeps the current choice.
    pub(super) fn subscribe(
        &mut self,
        conn: ConnId,
        name: &ChannelName,
        occupancy: Option<bool>,
        out: &mut Effects,
    ) {
        let c = self
            .conns
            .get_mut(&conn)
            .expect("request from a known conn");
        let guest = c.user.is_none();
        let occupancy = occupancy.unwrap_or_else(|| c.held(name).sub.unwrap_or(false));
        add_subscription(&mut self.channels, conn, c, name, occupancy, true);
        self.send_snapshot(conn, name, guest, occupancy, out);
    }

    /// Ends the subscription, if any, and leaves the channel if this
    /// connection entered it (with or without a subscription).
    pub(super) fn unsubscribe(
        &mut self,
        now: u64,
        conn: ConnId,
        name: &ChannelName,
        out: &mut Effects,
    ) {
        let c = self
            .conns
            .get_mut(&conn)
            .expect("request from a known conn");
        let was = c.release(name, |h| *h = Held::default());
        let was_subscribed = was.sub.is_some();
        if was.entered {
            let user = c.user.clone().expect("only users enter");
            self.member_conn_leaves(now, name, &user, Reason::Left, out);
        }
        if was_subscribed {
            if let Some(ch) = self.channels.get_mut(name) {
                ch.subscribers.remove(&conn);
            }
            self.drop_channel_if_empty(name);
        }
    }

    /// Client data with the trusted `info` claim in place of whatever the
    /// client sent under that key.
    pub(super) fn member_data(conn: &Conn, mut data: Map<String, Value>) -> Map<String, Value> {
        data.remove("info");
        if let Some(info) = &conn.info {
            data.insert("info".into(), Value::Object((**info).clone()));
        }
        data
    }

    pub(super) fn check_data_size(&self, data: &Value) -> Result<(), RequestError> {
        let size = serde_json::to_vec(data)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > self.cfg.max_data_bytes {
            return Err(E_TOO_LARGE);
        }
        Ok(())
    }

    /// Makes the connection a member. With `subscribe` it also subscribes
    /// (and gets a fresh snapshot); without, an existing subscription stays
    /// as it is and no snapshot is sent.
    pub(super) fn enter(
        &mut self,
        now: u64,
        conn: ConnId,
        name: ChannelName,
        data: Option<Map<String, Value>>,
        subscribe: bool,
        out: &mut Effects,
    ) -> Result<(), RequestError> {
        let c = self.conns.get(&conn).expect("request from a known conn");
        let user = c.user.clone().expect("only users enter");
        let rule = self.cfg.rules.rule_for(&name);
        if !rule.enter || !Self::token_allows(c, &name) {
            return Err(E_FORBIDDEN);
        }
        self.check_subscribe(conn, &name)?;
        let data = match data {
            Some(d) => {
                let d = Value::Object(d);
                self.check_data_size(&d)?;
                let Value::Object(d) = d else { unreachable!() };
                Some(Self::member_data(c, d))
            }
            None => None,
        };
        let members = self.shared.members(&name);
        if let Some(max) = rule.max_members
            && !members.contains_key(&user)
            && members.len() >= max
        {
            return Err(E_FULL);
        }
        // All checks passed: from here on nothing fails.
        if subscribe {
            self.subscribe(conn, &name, None, out);
        }
        let c = self
            .conns
            .get_mut(&conn)
            .expect("request from a known conn");
        let new_conn_in_channel = c.enter(&name);
        let was = self.shared.members(&name).get(&user).map(|m| m.conns);
        let outcome = self
            .shared
            .enter(now, &name, &user, new_conn_in_channel, data, || {
                Self::member_data(c, Map::new())
            });
        self.member_changed(now, &name, &user, outcome, was, Reason::Left, out);
        Ok(())
    }

    pub(super) fn update(
        &mut self,
        now: u64,
        conn: ConnId,
        name: &ChannelName,
        data: Map<String, Value>,
        out: &mut Effects,
    ) -> Result<(), RequestError> {
        let c = self.conns.get(&conn).expect("request from a known conn");
        if !c.is_entered(name) {
            return Err(E_NOT_MEMBER);
        }
        let data = Value::Object(data);
        self.check_data_size(&data)?;
        let Value::Object(data) = data else {
            unreachable!()
        };
        let data = Self::member_data(c, data);
        let user = c.user.clone().expect("only users enter");
        let change = self.shared.update(name, &user, data);
        let outcome = MemberOutcome {
            change,
            conns_changed: false,
        };
        self.member_changed(now, name, &user, outcome, None, Reason::Left, out);
        Ok(())
    }

    pub(super) fn leave(
        &mut self,
        now: u64,
        conn: ConnId,
        name: &ChannelName,
        out: &mut Effects,
    ) -> Result<(), RequestError> {
        let c = self
            .conns
            .get_mut(&conn)
            .expect("request from a known conn");
        if !c.leave(name) {
            return Err(E_NOT_MEMBER);
        }
        let user = c.user.clone().expect("only users enter");
        self.member_conn_leaves(now, name, &user, Reason::Left, out);
        Ok(())
    }

    pub(super) fn publish(
        &mut self,
        conn: ConnId,
        name: &ChannelName,
        data: Value,
        out: &mut Effects,
    ) -> Result<(), RequestError> {
        let c = self.conns.get(&conn).expect("request from a known conn");
        let rule = self.cfg.rules.rule_for(name);
        if !rule.publish || !rule.subscribe || !Self::token_allows(c, name) {
            return Err(E_FORBIDDEN);
        }
        self.check_data_size(&data)?;
        let from = c.user.clone();
        self.broadcast_message(name, from.as_deref(), &data, Some(conn), out);
        Ok(())
    }

    /// Sends `message` to a channel's subscribers (the HTTP API uses this with
    /// `from: None`). Returns how many connections it reached.
    pub fn broadcast_message(
        &mut self,
        name: &str,
        from: Option<&str>,
        data: &Value,
        except: Option<ConnId>,
        out: &mut Effects,
    ) -> usize {
        let Some(ch) = self.channels.get(name) else {
            return 0;
        };
        let frame = message_frame(name, from, data);
        let mut n = 0;
        for (&sub, s) in &ch.subscribers {
            if s.live && Some(sub) != except {
                out.push(sub, frame.clone());
                n += 1;
            }
        }
        n
    }

    /// Whether connection `conn` may watch `users` (a guest only with
    /// `guests_watch`, at most `max_watch_per_conn` in all); `Ok` with the
    /// users it does not watch yet, sorted and without repeats. The caller
    /// checks this before it looks anybody up for a `watch`.
    pub fn check_watch<'a>(
        &self,
        conn: ConnId,
        users: &'a [String],
    ) -> Result<Vec<&'a str>, RequestError> {
        let c = self.conns.get(&conn).ok_or(E_GONE)?;
        if c.user.is_none() && !self.cfg.guests_watch {
            return Err(E_GUEST);
        }
        let mut new: Vec<&str> = users
            .iter()
            .map(String::as_str)
            .filter(|u| !c.is_watching(u))
            .collect();
        new.sort_unstable();
        new.dedup();
        if c.watching.len() + new.len() > self.cfg.max_watch_per_conn {
            return Err(E_WATCH);
        }
        Ok(new)
    }

    pub(super) fn watch(
        &mut self,
        now: u64,
        conn: ConnId,
        users: Vec<String>,
        out: &mut Effects,
    ) -> Result<(), RequestError> {
        let new: Vec<UserId> = self
            .check_watch(conn, &users)?
            .into_iter()
            .map(Arc::from)
            .collect();
        let guest = self.conns.get(&conn).is_some_and(|c| c.user.is_none());
        for u in &new {
            self.add_watcher(u, conn);
        }
        self.conns
            .get_mut(&conn)
            .expect("request from a known conn")
            .watch(new);
        let frame = self.presence_frame(now, users.iter().map(String::as_str), guest);
        out.reply(conn, frame);
        Ok(())
    }

    /// `conn` watches `user`. The user's offline record is kept while
    /// anybody here watches.
    pub(super) fn add_watcher(&mut self, user: &UserId, conn: ConnId) {
        let set = self.watchers.entry(user.clone()).or_default();
        if set.is_empty() {
            self.shared.keep_offline(user, true);
        }
        set.insert(conn);
    }

    pub(super) fn unwatch_one(&mut self, conn: ConnId, user: &str) {
        let Some(set) = self.watchers.get_mut(user) else {
            return;
        };
        set.remove(&conn);
        if set.is_empty()
            && let Some((user, _)) = self.watchers.remove_entry(user)
        {
            self.shared.keep_offline(&user, false);
        }
    }
}

/// Records a subscription on both sides: in the connection's channels and
/// among the channel's subscribers (the channel made if it is new). `live`
/// is false for a restored connection, which waits for its client to resume.
pub(super) fn add_subscription(
    channels: &mut BTreeMap<ChannelName, Channel>,
    id: ConnId,
    conn: &mut Conn,
    name: &ChannelName,
    occupancy: bool,
    live: bool,
) {
    conn.held_mut(name).sub = Some(occupancy);
    channels
        .entry(name.clone())
        .or_insert_with(Channel::new)
        .subscribers
        .insert(
            id,
            Sub {
                guest: conn.user.is_none(),
                occupancy,
                live,
            },
        );
}
