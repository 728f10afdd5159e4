//! Result ingestion with group commit.
//!
//! Sessions hand every received result to one [`ResultIngestor`] task, which writes them to the
//! store in batches (one transaction per batch, idempotent by result id) and only then sends each
//! agent its `ResultAck`. An agent deletes a spooled result only on that ack, so a crash of either
//! side at any instant loses nothing and, thanks to the idempotent insert, doubles nothing.
//! Batching turns thousands of small commits per second into a few dozen.

use std::time::Duration;

use chrono::Utc;
use lifeboat_proto::v1 as pb;
use lifeboat_shared::ids::{AgentId, Environment, ResultId};
use lifeboat_shared::protocol::RunResult;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::sessions::Outbound;
use crate::store::{ResultRow, Store};

/// Most results written in one transaction.
pub const MAX_BATCH: usize = 512;
/// Results waiting for the writer before sessions are slowed down (backpressure).
const QUEUE_DEPTH: usize = 8_192;

struct Submission {
    row: ResultRow,
    ack_to: Outbound,
}

/// Handle to the ingest task; cheap to clone.
#[derive(Clone)]
pub struct ResultIngestor {
    submissions: mpsc::Sender<Submission>,
}

impl ResultIngestor {
    /// Starts the writer task; it stops after draining its queue once `shutdown` fires. Each
    /// committed batch is also handed to `committed` (runs completed, evidence, verdicts).
    pub fn spawn(
        store: Store,
        tracker: &tokio_util::task::TaskTracker,
        shutdown: CancellationToken,
        committed: Option<mpsc::UnboundedSender<Vec<ResultRow>>>,
    ) -> Self {
        let (submissions, receiver) = mpsc::channel(QUEUE_DEPTH);
        tracker.spawn(write_batches(store, receiver, shutdown, committed));
        Self { submissions }
    }

    /// Queues a result; the ack goes to `ack_to` after it is committed.
    /// Returns false when the coordinator is shutting down.
    pub async fn submit(
        &self,
        agent_id: AgentId,
        environment: Environment,
        result: RunResult,
        ack_to: Outbound,
    ) -> bool {
        let row = ResultRow {
            agent_id,
            environment,
            result,
            received_at: Utc::now(),
        };
        self.submissions.send(Submission { row, ack_to }).await.is_ok()
    }
}

async fn write_batches(
    store: Store,
    mut receiver: mpsc::Receiver<Submission>,
    shutdown: CancellationToken,
    committed: Option<mpsc::UnboundedSender<Vec<ResultRow>>>,
) {
    let mut batch: Vec<Submission> = Vec::with_capacity(MAX_BATCH);
    loop {
        let first = tokio::select! {
            biased;
            next = receiver.recv() => next,
            _ = shutdown.cancelled() => {
                // Finish what was received, then stop.
                receiver.close();
                receiver.recv().await
            }
        };
        let Some(first) = first else { return };
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        if let Some(rows) = commit(&store, &mut batch).await
            && let Some(committed) = &committed
        {
            let _closed = committed.send(rows);
        }
    }
}

/// Commits a batch and acknowledges it; returns the committed rows.
async fn commit(store: &Store, batch: &mut Vec<Submission>) -> Option<Vec<ResultRow>> {
    let rows: Vec<ResultRow> = batch.iter().map(|submission| submission.row.clone()).collect();
    let mut delay = Duration::from_millis(50);
    for attempt in 1..=5 {
        match store.insert_results(&rows).await {
            Ok(inserted) => {
                tracing::debug!(received = rows.len(), inserted, "results committed");
                // The evidence log is appended before the ack too: an acknowledged restore result
                // is in the chain (appending is idempotent by result id, so a resend is harmless).
                if let Err(err) = append_evidence(store, &rows).await {
                    tracing::error!(error = %err, results = rows.len(), "cannot append to the evidence log");
                }
                for submission in batch.drain(..) {
                    send_ack(&submission.ack_to, submission.row.result.result_id);
                }
                return Some(rows);
            }
            Err(err) => {
                tracing::warn!(error = %err, attempt, results = rows.len(), "cannot store results; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
    // Not acknowledged: the agents keep the results in their spools and send them again.
    tracing::error!(
        results = batch.len(),
        "giving up on a batch of results; agents will resend"
    );
    batch.clear();
    None
}

async fn append_evidence(store: &Store, rows: &[ResultRow]) -> Result<u64, crate::store::StoreError> {
    let mut delay = Duration::from_millis(50);
    let mut last = None;
    for _ in 0..5 {
        match store.append_evidence(rows).await {
            Ok(appended) => return Ok(appended),
            Err(err) => {
                last = Some(err);
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
    Err(last.unwrap_or(crate::store::StoreError::Corrupt("no attempt".into())))
}

fn send_ack(ack_to: &Outbound, result_id: ResultId) {
    let ack = pb::CoordinatorMessage {
        body: Some(pb::coordinator_message::Body::ResultAck(pb::ResultAck {
            result_id: result_id.to_string(),
        })),
    };
    // A full or closed session drops the ack; the agent resends the result and it is acked then.
    if ack_to.try_send(Ok(ack)).is_err() {
        tracing::debug!(%result_id, "ack not delivered; the agent will resend");
    }
}
