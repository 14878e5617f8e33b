//! Observers: connections in this process that subscribe to channels and
//! keep a member [`View`] of each, fed with every frame they get. The
//! storm, churn and big-room scenarios measure through them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use anyhow::Result;
use futures_util::StreamExt;

use crate::client::{self, Conn, Inbound, Target};

/// A member view per channel, fed with every frame an observer gets.
#[derive(Default)]
pub(super) struct View {
    pub(super) channels: HashMap<String, HashMap<String, Option<u64>>>,
    /// A chunked snapshot is being received for these channels.
    mid_snapshot: HashSet<String>,
}

impl View {
    /// Applies one frame; calls `on_join(ts)` for members that are new or
    /// carry a new timestamp.
    pub(super) fn apply(&mut self, ev: Inbound, mut on_join: impl FnMut(Option<u64>)) {
        match ev {
            Inbound::Snapshot {
                channel,
                members,
                more,
            } => {
                let fresh = !self.mid_snapshot.contains(&channel);
                let old = if fresh {
                    self.channels.remove(&channel).unwrap_or_default()
                } else {
                    HashMap::new()
                };
                let view = self.channels.entry(channel.clone()).or_default();
                for (u, ts) in members {
                    if fresh && old.get(&u) != Some(&ts) {
                        on_join(ts);
                    }
                    view.insert(u, ts);
                }
                if more {
                    self.mid_snapshot.insert(channel);
                } else {
                    self.mid_snapshot.remove(&channel);
                }
            }
            Inbound::Delta {
                channel,
                joins,
                leaves,
            } => {
                let view = self.channels.entry(channel).or_default();
                for u in leaves {
                    view.remove(&u);
                }
                for (u, ts) in joins {
                    if view.get(&u) != Some(&ts) {
                        on_join(ts);
                    }
                    view.insert(u, ts);
                }
            }
            _ => {}
        }
    }
}

/// Connects `count` observers (users `{prefix}{k}`) and subscribes observer
/// k to `channels(k)`.
pub(super) async fn observers(
    target: &Arc<Target>,
    count: u64,
    prefix: &str,
    channels: impl Fn(u64) -> Vec<String>,
) -> Result<Vec<(Conn, View)>> {
    let jobs = (0..count).map(|k| {
        let target = target.clone();
        let user = format!("{prefix}{k}");
        let chans = channels(k);
        async move {
            let mut conn = client::connect(&target, None, &user).await?;
            let mut view = View::default();
            let proto = target.proto;
            for (i, ch) in chans.iter().enumerate() {
                let id = 100 + i as u64;
                conn.subscribe(ch, id).await?;
                let mut frames = Vec::new();
                conn.await_reply(id, ch, |t| frames.push(t.to_owned()))
                    .await?;
                for f in frames {
                    view.apply(client::parse(proto, &f), |_| {});
                }
            }
            Ok::<_, anyhow::Error>((conn, view))
        }
    });
    futures_util::stream::iter(jobs)
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}
