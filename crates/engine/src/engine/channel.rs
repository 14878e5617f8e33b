//! What the engine keeps per user and per channel: a user's connections and
//! aggregated status, a channel's members and subscribers, and its delivery
//! state (pending netted changes, `seq`, coalescing window, immediate-send
//! budget, occupancy throttle, cached snapshots).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::{Map, Value};

use super::{ChannelName, ConnId, Effects, PresenceEvent, Reason, UserId, UserStatus};
use crate::data::MemberData;
use crate::protocol::Frame;
use crate::protocol::out::{MemberView, member_view};
use crate::rules::ChannelRule;

#[derive(Debug)]
pub(super) struct User {
    pub(super) conns: Vec<ConnId>,
    pub(super) live: usize,
    pub(super) status: UserStatus,
    pub(super) since: u64,
    /// When the last live connection dropped (meaningful when `live == 0`).
    pub(super) last_live_at: u64,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct OfflineRecord {
    pub(super) since: u64,
    pub(super) last_seen: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Member {
    /// Serialized once here; frames write it as is.
    pub(super) data: MemberData,
    pub(super) conns: u32,
    pub(super) since: u64,
}

impl Member {
    /// The member as one subscriber sees it: whole, or projected for guests.
    pub(super) fn view<'a>(
        &'a self,
        user: &'a str,
        public: Option<&ChannelRule>,
    ) -> MemberView<'a> {
        member_view(user, &self.data, self.conns, self.since, public)
    }
}

/// A member's change since the last flush of its channel, netted.
#[derive(Debug)]
pub(super) enum Pending {
    Joined,
    Updated { old: Member },
    Left { old: Member, reason: Reason },
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Sub {
    pub(super) guest: bool,
    pub(super) occupancy: bool,
    pub(super) live: bool,
}

#[derive(Debug)]
pub(super) struct Channel {
    pub(super) members: BTreeMap<UserId, Member>,
    pub(super) subscribers: HashMap<ConnId, Sub>,
    pub(super) connections: usize,
    pub(super) seq: u64,
    pub(super) pending: BTreeMap<UserId, Pending>,
    pub(super) window_until: Option<u64>,
    /// Token bucket (in thousandths) of changes sent at once, without a
    /// coalescing window.
    pub(super) immediate_milli: u64,
    pub(super) immediate_at: u64,
    pub(super) occupancy_sent: Option<(usize, usize)>,
    pub(super) occupancy_next: u64,
    pub(super) occupancy_timer: Option<u64>,
    /// Snapshot as of the last flush, per projection (full, public).
    pub(super) snapshot: [Option<(u64, Arc<Vec<Frame>>)>; 2],
}

impl Channel {
    pub(super) fn new() -> Self {
        Channel {
            members: BTreeMap::new(),
            subscribers: HashMap::new(),
            connections: 0,
            seq: 0,
            pending: BTreeMap::new(),
            window_until: None,
            immediate_milli: u64::MAX,
            immediate_at: 0,
            occupancy_sent: None,
            occupancy_next: 0,
            occupancy_timer: None,
            snapshot: [None, None],
        }
    }

    pub(super) fn occupancy(&self) -> (usize, usize) {
        (self.members.len(), self.connections)
    }

    /// Takes a token for sending a change at once; refills `per_sec` a
    /// second up to `burst` (a new channel starts full).
    pub(super) fn take_immediate(&mut self, now: u64, burst: u64, per_sec: u64) -> bool {
        let cap = burst.saturating_mul(1000);
        let refill = now
            .saturating_sub(self.immediate_at)
            .saturating_mul(per_sec);
        self.immediate_milli = self.immediate_milli.saturating_add(refill).min(cap);
        self.immediate_at = now;
        if self.immediate_milli >= 1000 {
            self.immediate_milli -= 1000;
            true
        } else {
            false
        }
    }

    /// Last writer wins: replaces a member's data and notes the update;
    /// false when the data was already that.
    pub(super) fn replace_data(
        &mut self,
        name: &ChannelName,
        user: &UserId,
        data: Map<String, Value>,
        out: &mut Effects,
    ) -> bool {
        let Some(m) = self.members.get_mut(user) else {
            return false;
        };
        let stored = MemberData::from_map(&data);
        if m.data == stored {
            return false;
        }
        out.event(PresenceEvent::MemberUpdated {
            user: user.clone(),
            channel: name.clone(),
            data,
        });
        let old = m.clone();
        m.data = stored;
        self.note(user, Pending::Updated { old });
        true
    }

    pub(super) fn note(&mut self, user: &UserId, change: Pending) {
        use Pending::*;
        let next = match (self.pending.remove(user), change) {
            (None, c) => Some(c),
            (Some(Joined), Joined | Updated { .. }) => Some(Joined),
            (Some(Joined), Left { .. }) => None,
            (Some(Updated { old }), Joined | Updated { .. }) => Some(Updated { old }),
            (Some(Updated { old }), Left { reason, .. }) => Some(Left { old, reason }),
            (Some(Left { old, .. }), _) => Some(Updated { old }),
        };
        if let Some(next) = next {
            self.pending.insert(user.clone(), next);
        }
    }
}
