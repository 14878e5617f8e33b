//! The user side: a session added, dropped into grace, back, its status,
//! gone; and reading a user back.

use presenced_engine::{Reason, UserStatus};

use super::scripts::{
    Reply, SESSION_ADDED, SESSION_BACK, SESSION_DROPPED, SESSION_GONE, SESSION_STATUS,
};
use super::{ClusterError, OpId, RedisPresence};

/// A user's aggregated status changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserChange {
    Online,
    Away,
    /// The last session is gone; `last_seen` is when it was last live.
    Offline {
        last_seen: u64,
    },
}

/// Whether the session was there for the transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionResult {
    Applied,
    /// `session_added` of a session that exists: nothing changed.
    Exists,
    /// No such session: nothing changed.
    NoSession,
}

/// What a user transition did, and the user after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserOutcome {
    pub result: SessionResult,
    pub change: Option<UserChange>,
    /// Redis's clock when the script ran (unix ms): the time of the change.
    pub at: u64,
    pub status: UserStatus,
    /// Since when the user has had its status (0: never seen).
    pub since: u64,
    /// When the user was last live: `at` while a session has a socket.
    pub last_seen: u64,
    /// The user's sessions.
    pub conns: u32,
}

/// What a resume did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resumed {
    pub outcome: UserOutcome,
    /// The session still had a socket (which the resume replaces).
    pub was_live: bool,
    /// The session belonged to another node (or registration) until now.
    pub moved: bool,
    /// The session's own status is away.
    pub away: bool,
}

/// A user as Redis holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub conns: u32,
    pub live: u32,
    pub away: u32,
    pub status: UserStatus,
    pub since: u64,
    pub last_live_at: u64,
    pub epoch: u64,
}

/// One session as Redis holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The token of the node registration it belongs to.
    pub owner: u64,
    pub live: bool,
    pub away: bool,
    /// When its socket went (0 while live).
    pub dropped_at: u64,
}

fn status(s: &str) -> Result<UserStatus, ClusterError> {
    match s {
        "online" => Ok(UserStatus::Online),
        "away" => Ok(UserStatus::Away),
        "offline" => Ok(UserStatus::Offline),
        other => Err(ClusterError::Reply(format!("status {other:?}"))),
    }
}

pub(super) fn reason(r: Reason) -> &'static str {
    match r {
        Reason::Left => "left",
        Reason::Timeout => "timeout",
        Reason::Logout => "logout",
        Reason::Kicked => "kicked",
    }
}

/// `{result, change, now, status, since, last_seen, conns, …}`.
fn outcome(r: &Reply) -> Result<UserOutcome, ClusterError> {
    let result = match r.str(0)?.as_str() {
        "ok" => SessionResult::Applied,
        "exists" => SessionResult::Exists,
        "no_session" => SessionResult::NoSession,
        other => return Err(ClusterError::Reply(format!("result {other:?}"))),
    };
    let last_seen = r.int(5)?;
    let change = match r.str(1)?.as_str() {
        "" => None,
        "online" => Some(UserChange::Online),
        "away" => Some(UserChange::Away),
        "offline" => Some(UserChange::Offline { last_seen }),
        other => return Err(ClusterError::Reply(format!("change {other:?}"))),
    };
    Ok(UserOutcome {
        result,
        change,
        at: r.int(2)?,
        status: status(&r.str(3)?)?,
        since: r.int(4)?,
        last_seen,
        conns: r.count(6)?,
    })
}

impl RedisPresence {
    async fn user_write(
        &self,
        script: &redis::Script,
        op: OpId,
        user: &str,
        session: &str,
        extra: &[&str],
    ) -> Result<Reply, ClusterError> {
        let k = self.keys.user(user);
        let mut args = vec![user, session, k.publish.as_str()];
        args.extend_from_slice(extra);
        self.write(
            script,
            |token, op| k.replay(token, op),
            &[&k.user, &k.sessions, &k.events],
            op,
            &args,
        )
        .await
    }

    /// A fresh session of `user` attached: live, online. The first session
    /// of a user brings it online.
    pub async fn session_added(
        &self,
        op: OpId,
        user: &str,
        session: &str,
    ) -> Result<UserOutcome, ClusterError> {
        outcome(
            &self
                .user_write(&SESSION_ADDED, op, user, session, &[])
                .await?,
        )
    }

    /// The session's socket went away: its grace window starts.
    pub async fn session_dropped(
        &self,
        op: OpId,
        user: &str,
        session: &str,
    ) -> Result<UserOutcome, ClusterError> {
        outcome(
            &self
                .user_write(&SESSION_DROPPED, op, user, session, &[])
                .await?,
        )
    }

    /// The session got a socket again, here: it moves to this node if it
    /// was another's.
    pub async fn session_back(
        &self,
        op: OpId,
        user: &str,
        session: &str,
    ) -> Result<Resumed, ClusterError> {
        let r = self
            .user_write(&SESSION_BACK, op, user, session, &[])
            .await?;
        Ok(Resumed {
            outcome: outcome(&r)?,
            was_live: r.flag(7)?,
            moved: r.flag(8)?,
            away: r.flag(9)?,
        })
    }

    /// The session set its own status.
    pub async fn session_status(
        &self,
        op: OpId,
        user: &str,
        session: &str,
        away: bool,
    ) -> Result<UserOutcome, ClusterError> {
        let away = if away { "1" } else { "0" };
        outcome(
            &self
                .user_write(&SESSION_STATUS, op, user, session, &[away])
                .await?,
        )
    }

    /// The session ends for good; the user goes offline with its last one
    /// (`reason` is the offline event's). With `recompute` false a user
    /// still present keeps its status (a kick ends every session in turn).
    pub async fn session_gone(
        &self,
        op: OpId,
        user: &str,
        session: &str,
        why: Reason,
        recompute: bool,
    ) -> Result<UserOutcome, ClusterError> {
        let recompute = if recompute { "1" } else { "0" };
        let args = [reason(why), recompute];
        outcome(
            &self
                .user_write(&SESSION_GONE, op, user, session, &args)
                .await?,
        )
    }

    /// The user as Redis holds it; `None` if never seen.
    pub async fn user(&self, user: &str) -> Result<Option<UserRecord>, ClusterError> {
        let k = self.keys.user(user);
        let v: Vec<Option<String>> = self
            .query(
                redis::cmd("HMGET")
                    .arg(&k.user)
                    .arg(&["c", "l", "a", "st", "si", "ll", "ep"]),
            )
            .await?;
        let Some(st) = v[3].as_deref() else {
            return Ok(None);
        };
        let n = |i: usize| -> u64 { v[i].as_deref().and_then(|s| s.parse().ok()).unwrap_or(0) };
        let c = |i: usize| u32::try_from(n(i)).unwrap_or(u32::MAX);
        Ok(Some(UserRecord {
            conns: c(0),
            live: c(1),
            away: c(2),
            status: status(st)?,
            since: n(4),
            last_live_at: n(5),
            epoch: n(6),
        }))
    }

    /// The user's sessions, by session.
    pub async fn sessions(
        &self,
        user: &str,
    ) -> Result<std::collections::BTreeMap<String, SessionRecord>, ClusterError> {
        let k = self.keys.user(user);
        let all: std::collections::BTreeMap<String, String> =
            self.query(redis::cmd("HGETALL").arg(&k.sessions)).await?;
        all.into_iter()
            .map(|(sid, v)| {
                let f: Vec<u64> = v.split(' ').filter_map(|x| x.parse().ok()).collect();
                match f[..] {
                    [owner, live, away, dropped_at] => Ok((
                        sid,
                        SessionRecord {
                            owner,
                            live: live != 0,
                            away: away != 0,
                            dropped_at,
                        },
                    )),
                    _ => Err(ClusterError::Reply(format!("session record {v:?}"))),
                }
            })
            .collect()
    }
}
