//! Node registration: a fencing token and a lease, renewed.

use super::scripts::{REGISTER_NODE, RENEW_NODE};
use super::{ClusterError, RedisPresence};

/// What every write of this node carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The fencing token: unique per registration, increasing.
    pub token: u64,
    /// Until when (Redis's clock, unix ms) the lease holds.
    pub deadline: u64,
}

/// What a registration returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registration {
    pub lease: Lease,
    /// Redis's clock at the registration.
    pub at: u64,
    /// The same node id's earlier registration, now replaced (its lease
    /// may not have lapsed yet).
    pub previous: Option<Lease>,
}

impl RedisPresence {
    /// Registers this node: a new token and lease, which every write
    /// carries from now on. A node id registered before gets a new token;
    /// the old one can no longer renew.
    pub async fn register(&self) -> Result<Registration, ClusterError> {
        let k = self.keys.nodes();
        let lease = self.lease_ms.to_string();
        let r = self
            .run(
                &REGISTER_NODE,
                &[&k.nodes, &k.token, &k.lapsed],
                &[&self.node_id, &lease],
            )
            .await?;
        let lease = Lease {
            token: r.int(0)?,
            deadline: r.int(1)?,
        };
        let previous = match r.int(3)? {
            0 => None,
            token => Some(Lease {
                token,
                deadline: r.int(4)?,
            }),
        };
        self.set_lease(Some(lease));
        Ok(Registration {
            lease,
            at: r.int(2)?,
            previous,
        })
    }

    /// Extends the lease to now + the lease time. Refused
    /// ([`ClusterError::Fenced`]) once the lease has lapsed or the node id
    /// has registered again; the node then holds no lease and must
    /// [`RedisPresence::register`] afresh.
    pub async fn renew(&self) -> Result<Lease, ClusterError> {
        let current = self.lease().ok_or(ClusterError::NotRegistered)?;
        let k = self.keys.nodes();
        let (token, lease) = (current.token.to_string(), self.lease_ms.to_string());
        match self
            .run(&RENEW_NODE, &[&k.nodes], &[&self.node_id, &token, &lease])
            .await
        {
            Ok(r) => {
                let renewed = Lease {
                    token: current.token,
                    deadline: r.int(0)?,
                };
                self.set_lease(Some(renewed));
                Ok(renewed)
            }
            Err(ClusterError::Fenced) => {
                self.set_lease(None);
                Err(ClusterError::Fenced)
            }
            Err(e) => Err(e),
        }
    }

    /// Writes carry `lease` from now on, whatever Redis holds: for tests
    /// that play a node whose lease has lapsed or was replaced.
    pub fn use_lease(&self, lease: Lease) {
        self.set_lease(Some(lease));
    }
}
