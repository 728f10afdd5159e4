//! The agent's session with the coordinator: connect out, say Hello, send the inventory,
//! heartbeats and spooled results, and reconnect forever with full-jitter backoff.
//!
//! Results are only ever sent from the [`Spool`]; a result leaves the spool when the coordinator
//! acknowledges it (after committing it). A result that was sent but not acknowledged within
//! `resend_after` is sent again (the coordinator stores each result id once), so a lost ack or a
//! coordinator crash costs a resend, never a result. A result the coordinator rejects for good
//! (or one too large to ever send) goes to the spool's dead-letter directory instead of being
//! resent forever; one rejected for a while (a quota) is sent again when the coordinator says.
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
use prost::Message as _;
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
/// Bounds of the wait the coordinator asks for before a result it refused for a while is sent
/// again.
const MIN_RETRY_AFTER: Duration = Duration::from_secs(1);
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);
/// Room for the message framing around a result.
const FRAMING_BYTES: usize = 1_024;

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
    Connected {
        agent_id: AgentId,
    },
    HeartbeatRoundTrip(Duration),
    ResultAcknowledged(ResultId),
    /// The coordinator refused a result: for good (it is now in the dead-letter directory) or
    /// for a while.
    ResultRejected {
        result_id: ResultId,
        reason: String,
        permanent: bool,
    },
    /// The coordinator refused the inventory and schedules from the previous one.
    InventoryRejected(String),
    Assignment(pb::RunAssignment),
    Cancel(pb::CancelRun),
    Disconnected {
        reason: String,
    },
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

/// The state of one established session.
struct Live {
    outbound: mpsc::Sender<pb::AgentMessage>,
    /// Result → when to send it again if no answer came.
    in_flight: HashMap<ResultId, Instant>,
    /// Heartbeats awaiting their echo, for the round trip.
    heartbeats_sent: VecDeque<(u64, Instant)>,
    sequence: u64,
}

impl Live {
    async fn send(&self, message: pb::AgentMessage) -> Result<(), Ended> {
        self.outbound
            .send(message)
            .await
            .map_err(|_| Ended::Retry("request stream closed".into()))
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
        let (outbound, mut inbound, heartbeat_every) = match self.open_session(shutdown).await {
            Ok(opened) => opened,
            Err(ended) => return ended,
        };
        let mut live = Live {
            outbound,
            in_flight: HashMap::new(),
            heartbeats_sent: VecDeque::new(),
            sequence: 0,
        };
        let mut heartbeat = tokio::time::interval(heartbeat_every);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut resend = tokio::time::interval(self.settings.resend_after.max(Duration::from_millis(100)) / 2);
        resend.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        if let Err(ended) = self.send_pending(&mut live).await {
            return ended;
        }
        loop {
            let step = tokio::select! {
                _ = shutdown.cancelled() => return Ended::Shutdown,
                _ = heartbeat.tick() => self.send_heartbeat(&mut live).await,
                Some(extra) = next_extra(self.outbox.as_ref()) => live.send(extra).await,
                () = self.spool.notify().notified() => self.send_pending(&mut live).await,
                _ = resend.tick() => {
                    let now = Instant::now();
                    live.in_flight.retain(|_, resend_at| *resend_at > now);
                    self.send_pending(&mut live).await
                }
                message = inbound.message() => match message {
                    Ok(Some(message)) => self.on_message(message, &mut live).await,
                    Ok(None) => Err(Ended::Retry("the coordinator closed the session".into())),
                    Err(status) => Err(self.classify(&status)),
                },
            };
            if let Err(ended) = step {
                return ended;
            }
        }
    }

    /// Connects, says Hello, sends the inventory and waits for Welcome; returns the request
    /// sender, the response stream and the heartbeat interval.
    async fn open_session(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<
        (
            mpsc::Sender<pb::AgentMessage>,
            tonic::Streaming<pb::CoordinatorMessage>,
            Duration,
        ),
        Ended,
    > {
        let identity = self
            .identity
            .load()
            .and_then(|identity| identity.ensure_valid().map(|()| identity))
            .map_err(|err| Ended::Fatal(err.into()))?;
        let tls = identity.client_config().map_err(|err| Ended::Fatal(err.into()))?;
        let channel = tokio::select! {
            _ = shutdown.cancelled() => return Err(Ended::Shutdown),
            channel = connect::channel(&self.settings.coordinator, Arc::new(tls)) => {
                channel.map_err(|err| Ended::Retry(connect::error_chain(&err)))?
            }
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
            return Err(Ended::Retry("request stream closed".into()));
        }
        let response = tokio::select! {
            _ = shutdown.cancelled() => return Err(Ended::Shutdown),
            response = client.session(ReceiverStream::new(requests)) => response,
        };
        let mut inbound = response.map_err(|status| self.classify(&status))?.into_inner();
        let heartbeat_every = match tokio::time::timeout(WELCOME_TIMEOUT, inbound.message()).await {
            Ok(Ok(Some(pb::CoordinatorMessage {
                body: Some(pb::coordinator_message::Body::Welcome(welcome)),
            }))) => Duration::from_secs(u64::from(welcome.heartbeat_interval_seconds.max(1))),
            Ok(Ok(Some(_))) => return Err(Ended::Retry("the coordinator did not start with Welcome".into())),
            Ok(Ok(None)) => return Err(Ended::Retry("the coordinator closed the session".into())),
            Ok(Err(status)) => return Err(self.classify(&status)),
            Err(_) => return Err(Ended::Retry("no Welcome from the coordinator".into())),
        };
        tracing::info!(agent_id = %identity.agent_id, environment = %identity.environment, "session established");
        self.emit(SessionEvent::Connected {
            agent_id: identity.agent_id,
        });
        Ok((outbound, inbound, heartbeat_every))
    }

    async fn send_heartbeat(&self, live: &mut Live) -> Result<(), Ended> {
        live.sequence += 1;
        let beat = Heartbeat {
            sequence: live.sequence,
            sent_at: Utc::now(),
            running: 0,
            spooled: u32::try_from(self.spool.len()).unwrap_or(u32::MAX),
        };
        live.heartbeats_sent.push_back((live.sequence, Instant::now()));
        if live.heartbeats_sent.len() > 16 {
            live.heartbeats_sent.pop_front();
        }
        live.send(agent_message(pb::agent_message::Body::Heartbeat(beat.into())))
            .await
    }

    /// Acts on one message from the coordinator.
    async fn on_message(&self, message: pb::CoordinatorMessage, live: &mut Live) -> Result<(), Ended> {
        match message.body {
            Some(pb::coordinator_message::Body::HeartbeatAck(ack)) => {
                if let Some(position) = live.heartbeats_sent.iter().position(|(seq, _)| *seq == ack.sequence) {
                    let (_, sent) = live.heartbeats_sent.remove(position).unwrap_or((0, Instant::now()));
                    self.emit(SessionEvent::HeartbeatRoundTrip(sent.elapsed()));
                }
            }
            Some(pb::coordinator_message::Body::ResultAck(ack)) => {
                let Ok(result_id) = ResultId::parse(&ack.result_id) else {
                    tracing::warn!(result_id = %ack.result_id, "ack for a malformed result id");
                    return Ok(());
                };
                live.in_flight.remove(&result_id);
                self.spool.ack(result_id).await?;
                self.emit(SessionEvent::ResultAcknowledged(result_id));
                if live.in_flight.len() < MAX_IN_FLIGHT / 2 {
                    self.send_pending(live).await?;
                }
            }
            Some(pb::coordinator_message::Body::ResultRejected(rejected)) => self.rejected(rejected, live).await?,
            Some(pb::coordinator_message::Body::InventoryRejected(rejected)) => {
                tracing::error!(reason = %rejected.reason, "the coordinator refused this agent's inventory; fix agent.toml");
                self.emit(SessionEvent::InventoryRejected(rejected.reason));
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
        Ok(())
    }

    /// Sends spooled results that are not already in flight, up to the in-flight limit. A
    /// result too large for any message is dead-lettered instead: sending it would end the
    /// session, on every reconnect.
    async fn send_pending(&self, live: &mut Live) -> Result<(), Ended> {
        if self.spool.is_empty() || live.in_flight.len() >= MAX_IN_FLIGHT {
            return Ok(());
        }
        let skip = live.in_flight.keys().copied().collect();
        let room = MAX_IN_FLIGHT - live.in_flight.len();
        for result in self.spool.pending_except(skip, room).await? {
            let result_id = result.result_id;
            let message = agent_message(pb::agent_message::Body::Result(result.into()));
            let size = message.encoded_len();
            if size + FRAMING_BYTES > MAX_MESSAGE_BYTES {
                let reason = format!("the result is {size} bytes; a message is at most {MAX_MESSAGE_BYTES}");
                self.spool.dead_letter(result_id, &reason).await?;
                self.emit(SessionEvent::ResultRejected {
                    result_id,
                    reason,
                    permanent: true,
                });
                continue;
            }
            live.in_flight
                .insert(result_id, Instant::now() + self.settings.resend_after);
            live.send(message).await?;
        }
        Ok(())
    }

    /// Acts on a rejected result: dead-letters it, or sends it again when the coordinator asks.
    async fn rejected(&self, rejected: pb::ResultRejected, live: &mut Live) -> Result<(), Ended> {
        let Ok(result_id) = ResultId::parse(&rejected.result_id) else {
            tracing::warn!(result_id = %rejected.result_id, reason = %rejected.reason, "rejection of a malformed result id");
            return Ok(());
        };
        if rejected.permanent {
            live.in_flight.remove(&result_id);
            self.spool.dead_letter(result_id, &rejected.reason).await?;
        } else {
            let wait =
                Duration::from_secs(u64::from(rejected.retry_after_seconds)).clamp(MIN_RETRY_AFTER, MAX_RETRY_AFTER);
            tracing::debug!(%result_id, reason = %rejected.reason, ?wait, "result refused for a while");
            live.in_flight.insert(result_id, Instant::now() + wait);
        }
        self.emit(SessionEvent::ResultRejected {
            result_id,
            reason: rejected.reason,
            permanent: rejected.permanent,
        });
        Ok(())
    }
}
