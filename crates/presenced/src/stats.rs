//! The dashboard's statistics: counts of connections, users, channels and
//! members sampled every few seconds into a one-hour ring (in memory only),
//! served by `GET /v1/stats`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::hub::Hub;

/// How often the history is sampled.
pub const STATS_INTERVAL: Duration = Duration::from_secs(5);
/// Samples kept: one hour.
pub const STATS_HISTORY: usize = 720;

/// Counts at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Unix milliseconds.
    pub at: u64,
    pub connections: usize,
    pub users: usize,
    pub channels: usize,
    pub members: usize,
}

impl Sample {
    /// The counts now.
    pub fn take(hub: &Hub) -> Sample {
        let c = hub.counts();
        Sample {
            at: now_ms(),
            connections: c.connections,
            users: c.users,
            channels: c.channels,
            members: c.members,
        }
    }
}

/// The last hour of samples, oldest first.
#[derive(Debug, Default)]
pub struct Stats {
    history: Mutex<VecDeque<Sample>>,
}

impl Stats {
    pub fn push(&self, sample: Sample) {
        let mut h = self.history.lock().unwrap_or_else(|e| e.into_inner());
        if h.len() >= STATS_HISTORY {
            h.pop_front();
        }
        h.push_back(sample);
    }

    pub fn history(&self) -> Vec<Sample> {
        let h = self.history.lock().unwrap_or_else(|e| e.into_inner());
        h.iter().copied().collect()
    }
}

/// Samples the counts into `stats` every [`STATS_INTERVAL`] (the first at
/// once) until `shutdown`. Spawned by `server::run`.
pub async fn run_sampler(hub: Arc<Hub>, stats: Arc<Stats>, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(STATS_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        stats.push(Sample::take(&hub));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_is_a_ring_of_one_hour() {
        let stats = Stats::default();
        for i in 0..(STATS_HISTORY + 5) {
            stats.push(Sample {
                at: i as u64,
                connections: i,
                users: 0,
                channels: 0,
                members: 0,
            });
        }
        let h = stats.history();
        assert_eq!(h.len(), STATS_HISTORY);
        assert_eq!(h[0].at, 5);
        assert_eq!(h.last().unwrap().at, (STATS_HISTORY + 4) as u64);
    }
}
