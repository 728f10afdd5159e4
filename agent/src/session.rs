//! The agent's session with the coordinator: connect out, say Hello, send the inventory,
//! heartbeats and spooled results, and reconnect forever with full-jitter backoff.
//!
//! Results are only ever sent from the [`Spool`]; a result leaves the spool when the coordinator
//! acknowledges it (after committing it). A result that was sent but not acknowledged within
//! `resend_after` is sent again (the coordinator stores each result id once), so a lost ack or a
//! coordinator crash costs a resend, never a result.
//!
//! Two errors end the loop instead of a reconnect, because retrying cannot fix them: the agent
//! was revoked, or its certificate expired (re-enrollment needed).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use lifeboat_proto::v1 as pb;
use lifeboat_proto::v1::agent_service_client::AgentServiceClient;
use lifeboat_shared::MAX_MESSAGE_BYTES;
use lifeboat_shared::ids::{AgentId, ResultId};
use lifeboat_shared::protocol::{Heartbeat, Hello, Inventory};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Code;

use crate::connect;
use crate::identity::{IdentityError, IdentityStore};
use crate::reconnect::{Reconnect, ReconnectPolicy};
use crate::spool::{Spool, SpoolError};

/// A session that stayed up this long resets the backoff to its base.
const STABLE_SESSION: Duration = Duration::from_secs(30);
/// How long the coordinator may take to send Welcome.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(30);
/// Most results sent and not yet acknowledged at once.
const MAX_IN_FLIGHT: usize = 1_024;

/// An error that ends the agent: reconnecting cannot fix it.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("the coordinator refuses this agent: {0}")]
    Refused(String),
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

/// What happened on the session; for tests, benchmarks and the demo.
#[derive(Debug, Clone)]
pub enum SessionEvent {
    Connected { agent_id: AgentId },
    HeartbeatRoundTrip(Duration),
    ResultAcknowledged(ResultId),
    Assignment(pb::RunAssignment),
    Cancel(pb::CancelRun),
    Disconnected { reason: String },
}

/// Static settings of a session.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// `https://host:port` of the coordinator.
    pub coordinator: String,
    pub hello: Hello,
    pub inventory: Inventory,
    pub reconnect: ReconnectPolicy,
    /// Sent but unacknowledged results are sent again after this long.
    pub resend_after: Duration,
}

/// The session loop of one agent.
pub struct AgentSession {
    pub settings: SessionSettings,
    pub identity: IdentityStore,
    pub spool: Spool,
    pub events: Option<mpsc::UnboundedSender<SessionEvent>>,
    /// Extra messages to send while connected (run progress); dropped while disconnected,
    /// because progress is only worth anything live.
    pub outbox: Option<Outbox>,
}

/// Receiver of extra outbound messages, shared across reconnects.
pub type Outbox = Arc<tokio::sync::Mutex<mpsc::Receiver<pb::AgentMessage>>>;

/// Waits for the next extra message, or forever when there is no outbox.
async fn next_extra(outbox: Option<&Outbox>) -> Option<pb::AgentMessage> {
    match outbox {
        Some(outbox) => outbox.lock().await.recv().await,
        None => std::future::pending().await,
    }
}

/// How one connection attempt ended.
enum Ended {
    Shutdown,
    Retry(String),
    Fatal(SessionError),
}

impl From<SpoolError> for Ended {
    fn from(err: SpoolError) -> Self {
        Self::Retry(format!("spool: {err}"))
    }
}

fn agent_message(body: pb::agent_message::Body) -> pb::AgentMessage {
    pb::AgentMessage { body: Some(body) }
}

impl AgentSession {
    fn emit(&self, event: SessionEvent) {
        if let Some(events) = &self.events {
            let _no_listener = events.send(event);
        }
    }

    /// Runs until `shutdown` (Ok) or a fatal error.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), SessionError> {
        let mut reconnect = Reconnect::new(self.settings.reconnect);
        loop {
            let started = Instant::now();
            match self.connect_once(&shutdown).await {
                Ended::Shutdown => return Ok(()),
                Ended::Fatal(err) => {
                    self.emit(SessionEvent::Disconnected {
                        reason: err.to_string(),
                    });
                    return Err(err);
                }
                Ended::Retry(reason) => {
                    tracing::warn!(%reason, "session lost; reconnecting");
                    self.emit(SessionEvent::Disconnected { reason });
                }
            }
            if started.elapsed() >= STABLE_SESSION {
                reconnect.reset();
            }
            let delay = reconnect.next_delay();
            tracing::debug!(?delay, "waiting before reconnect");
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    fn classify(&self, status: &tonic::Status) -> Ended {
        match status.code() {
            Code::PermissionDenied => Ended::Fatal(SessionError::Refused(status.message().to_owned())),
            Code::Unauthenticated => match self.identity.load().and_then(|identity| identity.ensure_valid()) {
                Err(err) => Ended::Fatal(err.into()),
                Ok(()) => Ended::Retry(format!("unauthenticated: {}", status.message())),
            },
            code => Ended::Retry(format!("{code:?}: {}", status.message())),
        }
    }

    async fn connect_once(&self, shutdown: &CancellationToken) -> Ended {
        let identity = match self
            .identity
            .load()
            .and_then(|identity| identity.ensure_valid().map(|()| identity))
        {
            Ok(identity) => identity,
            Err(err) => return Ended::Fatal(err.into()),
        };
        let tls = match identity.client_config() {
            Ok(tls) => tls,
            Err(err) => return Ended::Fatal(err.into()),
        };
        let channel = tokio::select! {
            _ = shutdown.cancelled() => return Ended::Shutdown,
            channel = connect::channel(&self.settings.coordinator, Arc::new(tls)) => match channel {
                Ok(channel) => channel,
                Err(err) => return Ended::Retry(connect::error_chain(&err)),
            },
        };
        let mut client = AgentServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);

        let (outbound, requests) = mpsc::channel(256);
        let hello = agent_message(pb::agent_message::Body::Hello(self.settings.hello.clone().into()));
        let inventory = agent_message(pb::agent_message::Body::Inventory(
            self.settings.inventory.clone().into(),
        ));
        if outbound.send(hello).await.is_err() || outbound.send(inventory).await.is_err() {
            return Ended::Retry("request stream closed".into());
        }
        let response = tokio::select! {
            _ = shutdown.cancelled() => return Ended::Shutdown,
            response = client.session(ReceiverStream::new(requests)) => response,
        };
        let mut inbound = match response {
            Ok(response) => response.into_inner(),
            Err(status) => return self.classify(&status),
        };
        let heartbeat_every = match tokio::time::timeout(WELCOME_TIMEOUT, inbound.message()).await {
            Ok(Ok(Some(pb::CoordinatorMessage {
                body: Some(pb::coordinator_message::Body::Welcome(welcome)),
            }))) => Duration::from_secs(u64::from(welcome.heartbeat_interval_seconds.max(1))),
            Ok(Ok(Some(_))) => return Ended::Retry("the coordinator did not start with Welcome".into()),
            Ok(Ok(None)) => return Ended::Retry("the coordinator closed the session".into()),
            Ok(Err(status)) => return self.classify(&status),
            Err(_) => return Ended::Retry("no Welcome from the coordinator".into()),
        };
        tracing::info!(agent_id = %identity.agent_id, environment = %identity.environment, "session established");
        self.emit(SessionEvent::Connected {
            agent_id: identity.agent_id,
        });

        let mut in_flight: HashMap<ResultId, Instant> = HashMap::new();
        let mut heartbeats_sent: VecDeque<(u64, Instant)> = VecDeque::new();
        let mut sequence = 0u64;
        let mut heartbeat = tokio::time::interval(heartbeat_every);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut resend = tokio::time::interval(self.settings.resend_after.max(Duration::from_millis(100)) / 2);
        resend.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        if let Err(ended) = self.send_pending(&outbound, &mut in_flight).await {
            return ended;
        }
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ended::Shutdown,
                _ = heartbeat.tick() => {
                    sequence += 1;
                    let beat = Heartbeat {
                        sequence,
                        sent_at: Utc::now(),
                        running: 0,
                        spooled: u32::try_from(self.spool.len()).unwrap_or(u32::MAX),
                    };
                    heartbeats_sent.push_back((sequence, Instant::now()));
                    if heartbeats_sent.len() > 16 {
                        heartbeats_sent.pop_front();
                    }
                    if outbound.send(agent_message(pb::agent_message::Body::Heartbeat(beat.into()))).await.is_err() {
                        return Ended::Retry("request stream closed".into());
                    }
                }
                Some(extra) = next_extra(self.outbox.as_ref()) => {
                    if outbound.send(extra).await.is_err() {
                        return Ended::Retry("request stream closed".into());
                    }
                }
                () = self.spool.notify().notified() => {
                    if let Err(ended) = self.send_pending(&outbound, &mut in_flight).await {
                        return ended;
                    }
                }
                _ = resend.tick() => {
                    let resend_after = self.settings.resend_after;
                    in_flight.retain(|_, sent| sent.elapsed() < resend_after);
                    if let Err(ended) = self.send_pending(&outbound, &mut in_flight).await {
                        return ended;
                    }
                }
                message = inbound.message() => {
                    let message = match message {
                        Ok(Some(message)) => message,
                        Ok(None) => return Ended::Retry("the coordinator closed the session".into()),
                        Err(status) => return self.classify(&status),
                    };
                    match message.body {
                        Some(pb::coordinator_message::Body::HeartbeatAck(ack)) => {
                            if let Some(position) = heartbeats_sent.iter().position(|(seq, _)| *seq == ack.sequence) {
                                let (_, sent) = heartbeats_sent.remove(position).unwrap_or((0, Instant::now()));
                                self.emit(SessionEvent::HeartbeatRoundTrip(sent.elapsed()));
                            }
                        }
                        Some(pb::coordinator_message::Body::ResultAck(ack)) => {
                            let Ok(result_id) = ResultId::parse(&ack.result_id) else {
                                tracing::warn!(result_id = %ack.result_id, "ack for a malformed result id");
                                continue;
                            };
                            in_flight.remove(&result_id);
                            if let Err(err) = self.spool.ack(result_id).await {
                                return Ended::Retry(format!("spool: {err}"));
                            }
                            self.emit(SessionEvent::ResultAcknowledged(result_id));
                            if in_flight.len() < MAX_IN_FLIGHT / 2
                                && let Err(ended) = self.send_pending(&outbound, &mut in_flight).await
                            {
                                return ended;
                            }
                        }
                        Some(pb::coordinator_message::Body::Assignment(assignment)) => {
                            self.emit(SessionEvent::Assignment(assignment));
                        }
                        Some(pb::coordinator_message::Body::Cancel(cancel)) => {
                            self.emit(SessionEvent::Cancel(cancel));
                        }
                        Some(pb::coordinator_message::Body::Welcome(_)) | None => {
                            tracing::debug!("ignoring unexpected coordinator message");
                        }
                    }
                }
            }
        }
    }

    /// Sends spooled results that are not already in flight, up to the in-flight limit.
    async fn send_pending(
        &self,
        outbound: &mpsc::Sender<pb::AgentMessage>,
        in_flight: &mut HashMap<ResultId, Instant>,
    ) -> Result<(), Ended> {
        if self.spool.is_empty() || in_flight.len() >= MAX_IN_FLIGHT {
            return Ok(());
        }
        let skip = in_flight.keys().copied().collect();
        let room = MAX_IN_FLIGHT - in_flight.len();
        for result in self.spool.pending_except(skip, room).await? {
            in_flight.insert(result.result_id, Instant::now());
            let message = agent_message(pb::agent_message::Body::Result(result.into()));
            if outbound.send(message).await.is_err() {
                return Err(Ended::Retry("request stream closed".into()));
            }
        }
        Ok(())
    }
}
