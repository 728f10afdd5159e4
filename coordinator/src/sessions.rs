//! Live agent sessions of this coordinator process.
//!
//! One entry per connected agent: the sender of its outbound stream, a one-shot "cut" that ends
//! the session with a status (revocation, replacement, expiry, shutdown), the deadline of its
//! certificate (extended by renewals), and its last-seen time, kept in memory on every heartbeat
//! and written to the store in batches by [`flush_last_seen`] so that thousands of heartbeats do
//! not become thousands of writes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use lifeboat_proto::v1 as pb;
use lifeboat_shared::ids::AgentId;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// What a session sends to its agent: messages, or a final status.
pub type Outbound = mpsc::Sender<Result<pb::CoordinatorMessage, tonic::Status>>;

/// Shared, cheap to clone.
#[derive(Clone)]
pub struct SessionRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    /// Identifies this process in the store (`connected_instance`), so that replicas do not
    /// mark each other's agents disconnected.
    instance: String,
    sessions: Mutex<HashMap<AgentId, Entry>>,
    next_session: AtomicU64,
}

struct Entry {
    session_id: u64,
    outbound: Outbound,
    cut: Option<oneshot::Sender<tonic::Status>>,
    liveness: Arc<Liveness>,
}

/// Per-session state the session task and the registry share without locking.
#[derive(Debug)]
pub struct Liveness {
    /// Unix milliseconds of the last message from the agent.
    last_seen_ms: AtomicI64,
    /// Whether `last_seen_ms` moved since the last flush.
    dirty: AtomicBool,
    /// Unix milliseconds after which the session's certificate is no longer valid.
    deadline_ms: AtomicI64,
}

impl Liveness {
    /// Records that the agent was heard from now.
    pub fn seen(&self) {
        self.last_seen_ms
            .store(Utc::now().timestamp_millis(), Ordering::Relaxed);
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// Time left before the certificate deadline (zero when passed).
    pub fn until_deadline(&self) -> Duration {
        let left = self.deadline_ms.load(Ordering::Relaxed) - Utc::now().timestamp_millis();
        Duration::from_millis(u64::try_from(left).unwrap_or(0))
    }
}

/// Held by a session task; unregisters the session when dropped.
pub struct SessionGuard {
    registry: SessionRegistry,
    agent_id: AgentId,
    session_id: u64,
    pub liveness: Arc<Liveness>,
    /// Fires when the registry cuts this session.
    pub cut: oneshot::Receiver<tonic::Status>,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        if let Ok(mut sessions) = self.registry.inner.sessions.lock()
            && sessions
                .get(&self.agent_id)
                .is_some_and(|entry| entry.session_id == self.session_id)
        {
            sessions.remove(&self.agent_id);
        }
    }
}

impl SessionRegistry {
    pub fn new(instance: String) -> Self {
        Self {
            inner: Arc::new(Inner {
                instance,
                sessions: Mutex::new(HashMap::new()),
                next_session: AtomicU64::new(1),
            }),
        }
    }

    /// This process's instance id.
    pub fn instance(&self) -> &str {
        &self.inner.instance
    }

    /// Registers a new session; an older session of the same agent is cut.
    pub fn register(&self, agent_id: AgentId, outbound: Outbound, cert_not_after: DateTime<Utc>) -> SessionGuard {
        let session_id = self.inner.next_session.fetch_add(1, Ordering::Relaxed);
        let (cut_tx, cut_rx) = oneshot::channel();
        let liveness = Arc::new(Liveness {
            last_seen_ms: AtomicI64::new(Utc::now().timestamp_millis()),
            dirty: AtomicBool::new(true),
            deadline_ms: AtomicI64::new(cert_not_after.timestamp_millis()),
        });
        let entry = Entry {
            session_id,
            outbound,
            cut: Some(cut_tx),
            liveness: liveness.clone(),
        };
        let replaced = self
            .inner
            .sessions
            .lock()
            .ok()
            .and_then(|mut sessions| sessions.insert(agent_id, entry));
        if let Some(mut old) = replaced
            && let Some(cut) = old.cut.take()
        {
            let _gone = cut.send(tonic::Status::aborted("replaced by a newer session of the same agent"));
        }
        SessionGuard {
            registry: self.clone(),
            agent_id,
            session_id,
            liveness,
            cut: cut_rx,
        }
    }

    /// Ends an agent's session with `status`, if it has one here.
    pub fn cut(&self, agent_id: AgentId, status: tonic::Status) {
        let cut = self
            .inner
            .sessions
            .lock()
            .ok()
            .and_then(|mut sessions| sessions.get_mut(&agent_id).and_then(|entry| entry.cut.take()));
        if let Some(cut) = cut {
            let _gone = cut.send(status);
        }
    }

    /// Ends every session (shutdown).
    pub fn cut_all(&self, status: &tonic::Status) {
        let cuts: Vec<_> = self
            .inner
            .sessions
            .lock()
            .map(|mut sessions| sessions.values_mut().filter_map(|entry| entry.cut.take()).collect())
            .unwrap_or_default();
        for cut in cuts {
            let _gone = cut.send(status.clone());
        }
    }

    /// Moves the certificate deadline of a live session after a renewal.
    pub fn extend_deadline(&self, agent_id: AgentId, not_after: DateTime<Utc>) {
        if let Ok(sessions) = self.inner.sessions.lock()
            && let Some(entry) = sessions.get(&agent_id)
        {
            entry
                .liveness
                .deadline_ms
                .fetch_max(not_after.timestamp_millis(), Ordering::Relaxed);
        }
    }

    /// Sends a message to a connected agent; false when it is not connected here or its queue is full.
    pub fn send(&self, agent_id: AgentId, message: pb::CoordinatorMessage) -> bool {
        let outbound = self
            .inner
            .sessions
            .lock()
            .ok()
            .and_then(|sessions| sessions.get(&agent_id).map(|entry| entry.outbound.clone()));
        outbound.is_some_and(|outbound| outbound.try_send(Ok(message)).is_ok())
    }

    /// Agents connected to this process.
    pub fn connected(&self) -> Vec<AgentId> {
        self.inner
            .sessions
            .lock()
            .map(|sessions| sessions.keys().copied().collect())
            .unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.inner.sessions.lock().map(|sessions| sessions.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the last-seen times that moved since the previous call.
    pub fn take_seen(&self) -> Vec<(AgentId, DateTime<Utc>)> {
        let Ok(sessions) = self.inner.sessions.lock() else {
            return Vec::new();
        };
        sessions
            .iter()
            .filter(|(_, entry)| entry.liveness.dirty.swap(false, Ordering::Relaxed))
            .filter_map(|(agent_id, entry)| {
                DateTime::from_timestamp_millis(entry.liveness.last_seen_ms.load(Ordering::Relaxed))
                    .map(|seen| (*agent_id, seen))
            })
            .collect()
    }
}

/// Writes last-seen times to the store every `every`, and once more at shutdown.
pub async fn flush_last_seen(store: Store, sessions: SessionRegistry, every: Duration, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = shutdown.cancelled() => true,
            _ = ticker.tick() => false,
        };
        let seen = sessions.take_seen();
        if !seen.is_empty()
            && let Err(err) = store.touch_agents(&seen).await
        {
            tracing::warn!(error = %err, agents = seen.len(), "cannot record last-seen times");
        }
        if stopping {
            return;
        }
    }
}
