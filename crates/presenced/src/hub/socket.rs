//! [`HubSocket`]: a connection task's handle on its engine connection.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use presenced_engine::{ClientFrame, ConnId, ErrorCode, Identity, RequestError};

use super::{Hub, Outbox, Unavailable, journal_refuses, recalled};

/// A connection task's handle on its engine connection: every request of
/// the socket goes through it. Dropping it (the task ended, or panicked)
/// unbinds the socket and detaches the connection, so a connection is never
/// left bound to a socket that is gone: its user gets a grace window and,
/// if nobody comes back, one offline.
#[derive(Debug)]
pub struct HubSocket {
    pub(super) hub: Arc<Hub>,
    pub(super) conn: ConnId,
    pub(super) socket_id: u64,
    pub(super) outbox: Arc<Outbox>,
}

impl HubSocket {
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// Applies one request (not `hello` or `refresh`); its reply and the
    /// frames it produced go into outboxes. A `watch` goes through
    /// [`HubSocket::watch`] instead. A request that would journal a
    /// transition is refused `unavailable` while the journal takes none
    /// (`journal_refuses`); `bye` is not (the socket could close anyway).
    pub fn request(&self, req_id: Option<u64>, frame: ClientFrame) {
        let conn = self.conn;
        let journals = matches!(
            frame,
            ClientFrame::Enter { .. }
                | ClientFrame::Update { .. }
                | ClientFrame::Leave { .. }
                | ClientFrame::Unsubscribe { .. }
                | ClientFrame::Status { .. }
        );
        if journals && let Some(e) = journal_refuses(&*self.hub.journal) {
            self.outbox.reply(presenced_engine::error_frame(req_id, &e));
            return;
        }
        self.hub.change(|engine, now, fx| {
            // A refused request is answered in `fx`; nothing else to do.
            let _ = engine.request(now, conn, req_id, frame, fx);
        });
    }

    /// A `watch` request: the users it may watch that the engine does not
    /// remember are read from the journal first (a watch that will be
    /// refused reads nothing); `unavailable` when the journal cannot answer
    /// (and nothing changes).
    pub async fn watch(&self, req_id: Option<u64>, frame: ClientFrame) {
        let conn = self.conn;
        let unknown = match &frame {
            ClientFrame::Watch { users } => {
                self.hub
                    .read(|engine, _| match engine.check_watch(conn, users) {
                        Ok(new) => engine.presence_unknown(new),
                        Err(_) => Vec::new(),
                    })
            }
            _ => Vec::new(),
        };
        match self.hub.look_up(unknown).await {
            Ok(found) => self.hub.change(|engine, now, fx| {
                engine.with_recalled(recalled(&found), |engine| {
                    let _ = engine.request(now, conn, req_id, frame, fx);
                })
            }),
            Err(Unavailable) => {
                let e = RequestError::new(
                    ErrorCode::Unavailable,
                    "users' last presence cannot be read now; retry",
                );
                self.outbox.reply(presenced_engine::error_frame(req_id, &e));
            }
        }
    }

    /// Replaces the connection's identity with a freshly verified one
    /// (`refresh`): channels it may no longer hold end, a new `info`
    /// reaches its member data; false (and an error reply) if it names
    /// another user.
    pub fn refresh(&self, req_id: Option<u64>, ident: Identity) -> bool {
        let conn = self.conn;
        self.hub
            .change(|engine, now, fx| engine.refresh(now, conn, req_id, ident, fx).is_ok())
    }

    /// Sends fresh snapshots after the outbox dropped broadcasts (the client
    /// lagged) and has drained.
    pub fn resync(&self) {
        let conn = self.conn;
        self.hub.change(|engine, now, fx| {
            // Cleared under the lock so no broadcast slips between the
            // snapshot and the flag.
            self.outbox.clear_lagged();
            self.hub.counters.resyncs.fetch_add(1, Ordering::Relaxed);
            engine.resync(now, conn, fx);
        });
    }
}

impl Drop for HubSocket {
    fn drop(&mut self) {
        self.hub.release(self.conn, self.socket_id);
    }
}
