//! The hub's reads: what the HTTP API, the dashboard and `/metrics` ask of
//! the presence state. Users the engine does not remember are read back
//! from the journal first ([`Hub::recall`]).

use std::sync::atomic::Ordering;

use presenced_engine::{UserDetail, UserPresence, UserStatus};
use serde_json::Value;

use super::{Counts, Hub, Unavailable, recalled};

impl Hub {
    /// A user's presence with connections and channels; `None` if never
    /// seen. Reads the journal for a user the engine does not remember.
    pub async fn user_detail(&self, user: &str) -> Result<Option<UserDetail>, Unavailable> {
        let found = self.recall([user]).await?;
        Ok(self.change(|engine, now, _| {
            engine.with_recalled(recalled(&found), |engine| engine.user_detail(now, user))
        }))
    }

    /// The presence of each of `users`, in the given order. Reads the
    /// journal for users the engine does not remember.
    pub async fn presence_of(
        &self,
        users: &[String],
    ) -> Result<Vec<(String, UserPresence)>, Unavailable> {
        let found = self.recall(users.iter().map(String::as_str)).await?;
        Ok(self.change(|engine, now, _| {
            engine.with_recalled(recalled(&found), |engine| {
                users
                    .iter()
                    .map(|u| (u.clone(), engine.presence(now, u)))
                    .collect()
            })
        }))
    }

    /// A page of users online or away (or of `status`), in id order.
    pub fn list_users(
        &self,
        status: Option<UserStatus>,
        cursor: Option<&str>,
        limit: usize,
    ) -> (Vec<UserDetail>, Option<String>) {
        self.read(|engine, now| engine.list_users(now, status, cursor, limit))
    }

    /// A page of `(channel, members, connections)`, in name order.
    pub fn list_channels(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> (Vec<(String, usize, usize)>, Option<String>) {
        self.read(|engine, _| engine.list_channels(prefix, cursor, limit))
    }

    /// `(members, connections)` of a channel; `None` if it does not exist.
    pub fn occupancy(&self, channel: &str) -> Option<(usize, usize)> {
        self.read(|engine, _| engine.occupancy(channel))
    }

    /// A page of a channel's member objects; `None` if it does not exist.
    pub fn channel_members(
        &self,
        channel: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Option<(Vec<Value>, Option<String>)> {
        self.read(|engine, _| engine.channel_members(channel, cursor, limit))
    }

    /// The counts and counters `/metrics` shows.
    pub fn metrics_snapshot(&self) -> crate::metrics::Snapshot {
        let counts = self.counts();
        let c = &self.counters;
        crate::metrics::Snapshot {
            connections: counts.connections,
            users: counts.users,
            channels: counts.channels,
            members: counts.members,
            frames_in: c.frames_in.load(Ordering::Relaxed),
            frames_out: c.frames_out.load(Ordering::Relaxed),
            dropped_broadcasts: c.dropped_broadcasts.load(Ordering::Relaxed),
            resyncs: c.resyncs.load(Ordering::Relaxed),
            journal_queue: self.journal.queue_depth(),
        }
    }

    pub fn counts(&self) -> Counts {
        self.read(|engine, _| Counts {
            connections: engine.connection_count(),
            users: engine.users_present(),
            channels: engine.channel_count(),
            members: engine.member_count(),
        })
    }
}
