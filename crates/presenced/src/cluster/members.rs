//! The channel side: a session enters, updates its member's data, leaves;
//! and reading a channel back.

use std::collections::BTreeMap;

use presenced_engine::Reason;
use serde_json::{Map, Value};

use super::scripts::{MEMBER_ENTER, MEMBER_LEAVE, MEMBER_UPDATE, Reply};
use super::users::reason;
use super::{ClusterError, OpId, RedisPresence};

/// A member of a channel: one user, however many sessions entered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The data as JSON text (an object, keys sorted).
    pub data: String,
    pub conns: u32,
    pub since: u64,
}

/// A member joined, changed its data, or left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberChange {
    Joined {
        data: String,
    },
    /// `old` as the member was before the data changed (a new connection
    /// of the same enter already counted).
    Updated {
        old: Member,
        data: String,
    },
    /// `old` as the member was with its last connection (one).
    Left {
        old: Member,
    },
}

/// What one enter, update or leave did to a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberOutcome {
    pub change: Option<MemberChange>,
    /// The member's (and so the channel's) connection count changed.
    pub conns_changed: bool,
    /// The channel's sequence number of this change; `None` if nothing
    /// changed.
    pub seq: Option<u64>,
    /// The channel's occupancy after it.
    pub members: u64,
    pub connections: u64,
    /// Redis's clock when the script ran (unix ms).
    pub at: u64,
    /// The member after it; `None` once it left.
    pub member: Option<Member>,
}

/// What an enter did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entered {
    Done(MemberOutcome),
    /// The channel has `max_members` members and this user is not one:
    /// nothing changed.
    Full,
}

/// `{result, change, conns_changed, seq, members, connections, now, user,
/// conns, since, data, old_conns, old_since, old_data}`: the result
/// (`ok`, `full`, `not_member`) and the outcome.
fn outcome(r: &Reply) -> Result<(String, MemberOutcome), ClusterError> {
    let result = r.str(0)?;
    let member_at = |i: usize| -> Result<Member, ClusterError> {
        Ok(Member {
            conns: r.count(i)?,
            since: r.int(i + 1)?,
            data: r.str(i + 2)?,
        })
    };
    let now = member_at(8)?;
    let change = match r.str(1)?.as_str() {
        "" => None,
        "joined" => Some(MemberChange::Joined {
            data: now.data.clone(),
        }),
        "updated" => Some(MemberChange::Updated {
            old: member_at(11)?,
            data: now.data.clone(),
        }),
        "left" => Some(MemberChange::Left {
            old: member_at(11)?,
        }),
        other => return Err(ClusterError::Reply(format!("change {other:?}"))),
    };
    let seq = r.int(3)?;
    Ok((
        result,
        MemberOutcome {
            change,
            conns_changed: r.flag(2)?,
            seq: (seq != 0).then_some(seq),
            members: r.int(4)?,
            connections: r.int(5)?,
            at: r.int(6)?,
            member: (now.conns > 0).then_some(now),
        },
    ))
}

/// The data as the engine stores it: compact JSON, keys sorted.
fn json(data: &Map<String, Value>) -> String {
    // A map of JSON values always serializes.
    serde_json::to_string(data).unwrap_or_else(|_| "{}".to_owned())
}

impl RedisPresence {
    async fn member_write(
        &self,
        script: &redis::Script,
        op: OpId,
        channel: &str,
        session: &str,
        extra: &[&str],
    ) -> Result<(String, MemberOutcome), ClusterError> {
        let k = self.keys.channel(channel);
        let mut args = vec![channel, session, k.publish.as_str()];
        args.extend_from_slice(extra);
        let r = self
            .write(
                script,
                |token, op| k.replay(token, op),
                &[&k.members, &k.sessions, &k.seq, &k.events],
                op,
                &args,
            )
            .await?;
        outcome(&r)
    }

    /// The session of `user` enters the channel: a new connection of the
    /// member unless it entered before; `data` replaces the member's (last
    /// writer wins); a new member gets `data` or else `default`, unless the
    /// channel has `max_members` already.
    #[allow(clippy::too_many_arguments)]
    pub async fn member_enter(
        &self,
        op: OpId,
        channel: &str,
        user: &str,
        session: &str,
        data: Option<&Map<String, Value>>,
        default: &Map<String, Value>,
        max_members: Option<usize>,
    ) -> Result<Entered, ClusterError> {
        let data = data.map(json).unwrap_or_default();
        let default = json(default);
        let max = max_members.unwrap_or(0).to_string();
        let (result, outcome) = self
            .member_write(
                &MEMBER_ENTER,
                op,
                channel,
                session,
                &[user, &data, &default, &max],
            )
            .await?;
        Ok(match result.as_str() {
            "full" => Entered::Full,
            _ => Entered::Done(outcome),
        })
    }

    /// Replaces the data of the session's member; `None` if the session has
    /// not entered.
    pub async fn member_update(
        &self,
        op: OpId,
        channel: &str,
        session: &str,
        data: &Map<String, Value>,
    ) -> Result<Option<MemberOutcome>, ClusterError> {
        let data = json(data);
        let (result, outcome) = self
            .member_write(&MEMBER_UPDATE, op, channel, session, &[&data])
            .await?;
        Ok((result != "not_member").then_some(outcome))
    }

    /// The session leaves the channel; its member leaves with its last
    /// session (`why` is the event's reason). `None` if the session has not
    /// entered.
    pub async fn member_leave(
        &self,
        op: OpId,
        channel: &str,
        session: &str,
        why: Reason,
    ) -> Result<Option<MemberOutcome>, ClusterError> {
        let (result, outcome) = self
            .member_write(&MEMBER_LEAVE, op, channel, session, &[reason(why)])
            .await?;
        Ok((result != "not_member").then_some(outcome))
    }

    /// A channel's members by user.
    pub async fn members(&self, channel: &str) -> Result<BTreeMap<String, Member>, ClusterError> {
        let k = self.keys.channel(channel);
        let all: BTreeMap<String, String> =
            self.query(redis::cmd("HGETALL").arg(&k.members)).await?;
        all.into_iter()
            .map(|(user, v)| {
                let mut f = v.splitn(3, ' ');
                let conns = f.next().and_then(|x| x.parse().ok());
                let since = f.next().and_then(|x| x.parse().ok());
                match (conns, since, f.next()) {
                    (Some(conns), Some(since), Some(data)) => Ok((
                        user,
                        Member {
                            data: data.to_owned(),
                            conns,
                            since,
                        },
                    )),
                    _ => Err(ClusterError::Reply(format!("member record {v:?}"))),
                }
            })
            .collect()
    }

    /// The sessions that entered a channel: session → user.
    pub async fn channel_sessions(
        &self,
        channel: &str,
    ) -> Result<BTreeMap<String, String>, ClusterError> {
        let k = self.keys.channel(channel);
        self.query(redis::cmd("HGETALL").arg(&k.sessions)).await
    }

    /// The channel's sequence number (of its last member change).
    pub async fn seq(&self, channel: &str) -> Result<Option<u64>, ClusterError> {
        let k = self.keys.channel(channel);
        self.query(redis::cmd("GET").arg(&k.seq)).await
    }
}
