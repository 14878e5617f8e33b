//! The hub's gate before the engine: while the journal takes no new
//! transitions, a new connection of a user and a request that would journal
//! one are refused `unavailable` and change nothing; what cannot be refused
//! is still recorded.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use presenced_engine::{ClientFrame, EngineConfig, Identity, PresenceEvent};
use serde_json::Value;

use super::{Hub, Outbox, Outgoing};
use crate::store::{Barrier, Journal, StoredPresence};

/// A journal that keeps what it is given and accepts while told to.
#[derive(Debug, Default)]
struct Gate {
    closed: AtomicBool,
    events: Mutex<Vec<PresenceEvent>>,
}

impl Gate {
    fn kinds(&self) -> Vec<&'static str> {
        let events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        events
            .iter()
            .map(|e| match e {
                PresenceEvent::UserOnline { .. } => "online",
                PresenceEvent::UserAway { .. } => "away",
                PresenceEvent::UserOffline { .. } => "offline",
                PresenceEvent::MemberJoined { .. } => "joined",
                PresenceEvent::MemberUpdated { .. } => "updated",
                PresenceEvent::MemberLeft { .. } => "left",
            })
            .collect()
    }
}

impl Journal for Gate {
    fn record(&self, event: PresenceEvent) {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(event);
    }
    fn barrier(&self) -> Barrier {
        Barrier::failed()
    }
    fn is_healthy(&self) -> bool {
        true
    }
    fn accepting(&self) -> bool {
        !self.closed.load(Ordering::SeqCst)
    }
    fn queue_depth(&self) -> u64 {
        0
    }
    fn last_presence(&self, _: &[String]) -> anyhow::Result<Vec<StoredPresence>> {
        Ok(Vec::new())
    }
}

fn user(name: &str) -> Identity {
    Identity {
        user: Some(name.to_owned()),
        ..Identity::default()
    }
}

/// The JSON frames queued in `outbox`.
fn frames(outbox: &Outbox) -> Vec<Value> {
    let mut out = Vec::new();
    while let Some(Outgoing::Frame(f)) = outbox.try_recv() {
        out.push(serde_json::from_str(f.as_str()).unwrap());
    }
    out
}

#[test]
fn a_journal_at_its_bound_refuses_new_transitions_and_keeps_the_rest() {
    let gate = Arc::new(Gate::default());
    let hub = Hub::new(EngineConfig::default(), gate.clone());
    let alice = hub
        .connect(user("alice"), None, Some(1), Outbox::new(64))
        .unwrap();
    let welcome = frames(alice.outbox());
    let session = welcome[0]["session"].as_str().unwrap().to_owned();
    assert_eq!(gate.kinds(), ["online"]);

    gate.closed.store(true, Ordering::SeqCst);
    let e = hub
        .connect(user("bob"), None, Some(1), Outbox::new(64))
        .unwrap_err();
    assert_eq!(e.code, presenced_engine::ErrorCode::Unavailable);
    let e = hub
        .connect(
            user("alice"),
            Some("not-a-session"),
            Some(1),
            Outbox::new(64),
        )
        .unwrap_err();
    assert_eq!(e.code, presenced_engine::ErrorCode::Unavailable);
    assert_eq!(hub.counts().connections, 1, "nothing changed");

    alice.request(
        Some(2),
        ClientFrame::Enter {
            channel: "room:1".into(),
            data: None,
            subscribe: true,
        },
    );
    let reply = frames(alice.outbox());
    assert_eq!(
        (reply[0]["t"].as_str(), reply[0]["code"].as_str()),
        (Some("error"), Some("unavailable")),
        "{reply:?}"
    );
    assert_eq!(hub.counts().members, 0);

    // A guest journals nothing; a resume of a held session neither.
    let guest = hub
        .connect(Identity::default(), None, Some(1), Outbox::new(64))
        .unwrap();
    let resumed = hub
        .connect(user("alice"), Some(&session), Some(1), Outbox::new(64))
        .unwrap();
    assert_eq!(frames(resumed.outbox())[0]["resumed"], true);
    // What cannot be refused is recorded: a kick takes alice offline.
    assert_eq!(hub.kick_user("alice"), 1);
    assert_eq!(gate.kinds(), ["online", "offline"]);
    drop((guest, resumed, alice));
}
