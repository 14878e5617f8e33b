//! The key layout: which partition a user or a channel belongs to, and the
//! name of every key, stream and shard channel a script touches.
//!
//! A partition is one hash tag, `{<prefix>:u:<n>}` for users and
//! `{<prefix>:c:<n>}` for channels, `n` in `0..partitions`: FNV-1a (32 bit)
//! of the user id's or the channel name's bytes, modulo the partition count.
//! Every key of a partition starts with its tag, so one script touches one
//! Redis Cluster slot. The module docs (`cluster/mod.rs`) list the keys.

use std::fmt::Write as _;

/// The partition count when none is given: fine enough to spread over the
/// shards of a Redis Cluster, coarse enough that a partition's stream and
/// (later) its sender lease and clock stay few.
pub const DEFAULT_PARTITIONS: u32 = 256;

/// FNV-1a, 32 bit: fixed here for good, since every node of a cluster must
/// put a user in the same partition.
pub fn fnv1a(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Names keys under one prefix and partition count.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
    partitions: u32,
}

/// The keys of one user's partition that the user scripts touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserKeys {
    /// `{…}:u:<user>`: the user's counts, status, times and epoch.
    pub user: String,
    /// `{…}:s:<user>`: the user's sessions.
    pub sessions: String,
    /// `{…}:events`: the partition's event stream.
    pub events: String,
    /// `{…}:p:<user>`: the shard channel of the user's changes.
    pub publish: String,
    tag: String,
}

/// The keys of one channel's partition that the member scripts touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelKeys {
    /// `{…}:m:<channel>`: the members, user → `conns since data`.
    pub members: String,
    /// `{…}:s:<channel>`: the sessions that entered, session → user.
    pub sessions: String,
    /// `{…}:q:<channel>`: the channel's sequence number.
    pub seq: String,
    /// `{…}:events`: the partition's event stream.
    pub events: String,
    /// `{…}:p:<channel>`: the shard channel of the member changes.
    pub publish: String,
    tag: String,
}

/// The node registry's keys, one tag of their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeKeys {
    /// `{<prefix>:nodes}`: node id → `token deadline`.
    pub nodes: String,
    /// `{<prefix>:nodes}:token`: the fencing token counter.
    pub token: String,
    /// `{<prefix>:nodes}:lapsed`: token → `node deadline` of a node's
    /// earlier registration, replaced by a newer one.
    pub lapsed: String,
}

/// The replay record of one write (`{…}:r:<token>:<op>`), in `tag`'s
/// partition.
fn replay(tag: &str, token: u64, op: u64) -> String {
    format!("{tag}:r:{token}:{op}")
}

impl UserKeys {
    /// The replay record of one write in this partition.
    pub fn replay(&self, token: u64, op: u64) -> String {
        replay(&self.tag, token, op)
    }
}

impl ChannelKeys {
    /// The replay record of one write in this partition.
    pub fn replay(&self, token: u64, op: u64) -> String {
        replay(&self.tag, token, op)
    }
}

/// Why a prefix or partition count was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("the Redis prefix must be 1-64 printable ASCII characters without braces or spaces")]
    Prefix,
    #[error("the partition count must be 1-16384")]
    Partitions,
}

impl Keys {
    pub fn new(prefix: &str, partitions: u32) -> Result<Keys, LayoutError> {
        let printable = |c: char| c.is_ascii_graphic() && c != '{' && c != '}';
        if prefix.is_empty() || prefix.len() > 64 || !prefix.chars().all(printable) {
            return Err(LayoutError::Prefix);
        }
        if partitions == 0 || partitions > 16_384 {
            return Err(LayoutError::Partitions);
        }
        Ok(Keys {
            prefix: prefix.to_owned(),
            partitions,
        })
    }

    /// The partition of a user id or a channel name.
    pub fn partition(&self, name: &str) -> u32 {
        fnv1a(name.as_bytes()) % self.partitions
    }

    /// The hash tag (braces included) of a user's partition.
    pub fn user_tag(&self, user: &str) -> String {
        format!("{{{}:u:{}}}", self.prefix, self.partition(user))
    }

    /// The hash tag (braces included) of a channel's partition.
    pub fn channel_tag(&self, channel: &str) -> String {
        format!("{{{}:c:{}}}", self.prefix, self.partition(channel))
    }

    pub fn user(&self, user: &str) -> UserKeys {
        let tag = self.user_tag(user);
        let key = |kind: &str| {
            let mut k = String::with_capacity(tag.len() + 3 + user.len());
            let _ = write!(k, "{tag}:{kind}:{user}");
            k
        };
        UserKeys {
            user: key("u"),
            sessions: key("s"),
            events: format!("{tag}:events"),
            publish: key("p"),
            tag,
        }
    }

    pub fn channel(&self, channel: &str) -> ChannelKeys {
        let tag = self.channel_tag(channel);
        ChannelKeys {
            members: format!("{tag}:m:{channel}"),
            sessions: format!("{tag}:s:{channel}"),
            seq: format!("{tag}:q:{channel}"),
            events: format!("{tag}:events"),
            publish: format!("{tag}:p:{channel}"),
            tag,
        }
    }

    pub fn nodes(&self) -> NodeKeys {
        let tag = format!("{{{}:nodes}}", self.prefix);
        NodeKeys {
            token: format!("{tag}:token"),
            lapsed: format!("{tag}:lapsed"),
            nodes: tag,
        }
    }

    /// Every partition's event stream: users' first, then channels'.
    pub fn event_streams(&self) -> impl Iterator<Item = String> + '_ {
        let users = (0..self.partitions).map(|n| format!("{{{}:u:{n}}}:events", self.prefix));
        let channels = (0..self.partitions).map(|n| format!("{{{}:c:{n}}}:events", self.prefix));
        users.chain(channels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hash tag Redis Cluster hashes: the text between the first `{`
    /// and the first `}` after it, when not empty.
    fn tag_of(key: &str) -> &str {
        let open = key.find('{').unwrap();
        let close = key[open + 1..].find('}').unwrap() + open + 1;
        &key[open + 1..close]
    }

    #[test]
    fn fnv1a_is_the_published_function() {
        // Test vectors of FNV-1a 32.
        assert_eq!(fnv1a(b""), 0x811c_9dc5);
        assert_eq!(fnv1a(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn every_key_of_a_user_or_a_channel_has_its_partition_tag() {
        let keys = Keys::new("presenced", 16).unwrap();
        // Braces in a user id come after the tag, so they change nothing.
        for user in ["alice", "u}x{y", "{bob}", ""] {
            let k = keys.user(user);
            let tag = keys.user_tag(user);
            for key in [&k.user, &k.sessions, &k.events, &k.publish, &k.replay(7, 9)] {
                assert!(key.starts_with(&tag), "{key}");
                assert_eq!(format!("{{{}}}", tag_of(key)), tag, "{key}");
            }
        }
        let c = keys.channel("room:1");
        let tag = keys.channel_tag("room:1");
        for key in [
            &c.members,
            &c.sessions,
            &c.seq,
            &c.events,
            &c.publish,
            &c.replay(1, 2),
        ] {
            assert_eq!(format!("{{{}}}", tag_of(key)), tag, "{key}");
        }
        let n = keys.nodes();
        for key in [&n.nodes, &n.token, &n.lapsed] {
            assert_eq!(tag_of(key), "presenced:nodes");
        }
    }

    #[test]
    fn users_and_channels_spread_over_the_partitions() {
        let keys = Keys::new("p", 8).unwrap();
        let mut seen = [0u32; 8];
        for i in 0..800 {
            seen[keys.partition(&format!("user-{i}")) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| (60..=140).contains(&n)), "{seen:?}");
        assert_eq!(keys.event_streams().count(), 16);
    }

    #[test]
    fn a_prefix_that_would_break_the_tags_is_refused() {
        for bad in ["", "a{b", "a}b", "a b", &"x".repeat(65)] {
            assert_eq!(
                Keys::new(bad, 1).unwrap_err(),
                LayoutError::Prefix,
                "{bad:?}"
            );
        }
        assert_eq!(Keys::new("p", 0).unwrap_err(), LayoutError::Partitions);
        assert_eq!(Keys::new("p", 16_385).unwrap_err(), LayoutError::Partitions);
        assert!(Keys::new("presenced-eu_1.a", 16_384).is_ok());
    }
}
