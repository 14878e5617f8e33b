//! This node's state per channel: its subscribers, and the delivery state
//! (pending netted changes, `seq`, coalescing window, immediate-send budget,
//! occupancy throttle, cached snapshots). The members themselves are shared
//! state ([`super::shared`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::shared::Member;
use super::{ConnId, Reason, UserId};
use crate::protocol::Frame;

/// A member's change since the last flush of its channel, netted.
#[derive(Debug)]
pub(super) enum Pending {
    Joined,
    Updated {
        old: Member,
    },
    /// Only the member's connection count changed; `was` is the count as of
    /// the last flush (its data and `since` are as they are now).
    Conns {
        was: u32,
    },
    Left {
        old: Member,
        reason: Reason,
    },
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Sub {
    pub(super) guest: bool,
    pub(super) occupancy: bool,
    pub(super) live: bool,
}

#[derive(Debug)]
pub(super) struct Channel {
    pub(super) subscribers: HashMap<ConnId, Sub>,
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
            subscribers: HashMap::new(),
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

    /// Nets a member's change into what the next flush sends.
    pub(super) fn note(&mut self, user: &UserId, change: Pending) {
        use Pending::*;
        let next = match (self.pending.remove(user), change) {
            (None, c) => Some(c),
            (Some(Joined), Joined | Updated { .. } | Conns { .. }) => Some(Joined),
            (Some(Joined), Left { .. }) => None,
            (Some(Updated { old }), Joined | Updated { .. } | Conns { .. }) => {
                Some(Updated { old })
            }
            (Some(Updated { old }), Left { reason, .. }) => Some(Left { old, reason }),
            (Some(Conns { was }), Joined | Conns { .. }) => Some(Conns { was }),
            (Some(Conns { was }), Updated { old }) => Some(Updated {
                old: Member { conns: was, ..old },
            }),
            (Some(Conns { was }), Left { old, reason }) => Some(Left {
                old: Member { conns: was, ..old },
                reason,
            }),
            (Some(Left { old, .. }), _) => Some(Updated { old }),
        };
        if let Some(next) = next {
            self.pending.insert(user.clone(), next);
        }
    }
}
