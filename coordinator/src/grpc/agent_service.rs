//! The `AgentService`: certificate renewal and the long-lived session stream.
//!
//! A session starts with the coordinator's Welcome and the agent's Hello, then carries
//! heartbeats (echoed for round-trip measurement), inventories, progress and results (handed to
//! the [`ResultIngestor`], acknowledged after commit). A result or an inventory that fails
//! [`admission`](super::admission) is rejected on its own and the session goes on. The session
//! ends when the agent goes away, when another message is malformed (`InvalidArgument`, never a
//! panic), when the agent is revoked (`PermissionDenied`, within a second), when its certificate
//! expires without renewal, or at shutdown.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use lifeboat_proto::v1 as pb;
use lifeboat_proto::v1::agent_service_server::AgentService;
use lifeboat_shared::protocol::{AgentMessage, Hello, to_timestamp};
use lifeboat_shared::tls::PeerIdentity;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::ca::CertificateAuthority;
use crate::grpc::admission::Admission;
use crate::grpc::auth::authenticate;
use crate::ingest::ResultIngestor;
use crate::revocation::Revocations;
use crate::sessions::{Outbound, SessionGuard, SessionRegistry};
use crate::store::{IssuedCertificate, Store};

/// How long a new session may take to say Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);
/// Outbound messages queued per session. Larger than the number of results an agent keeps in
/// flight (1,024), so result acks are never dropped for lack of room; tokio allocates the queue
/// in small blocks as it fills, so the depth costs nothing while idle.
const OUTBOUND_DEPTH: usize = 4_096;

/// Implements `lifeboat.v1.AgentService`.
#[derive(Clone)]
pub struct AgentApi {
    pub store: Store,
    pub ca: Arc<CertificateAuthority>,
    pub sessions: SessionRegistry,
    pub revocations: Revocations,
    pub ingestor: ResultIngestor,
    pub certificate_ttl: Duration,
    pub heartbeat_interval: Duration,
    /// The per-agent quotas and checks of results and inventories.
    pub admission: Arc<Admission>,
}

fn storage_status(err: crate::store::StoreError) -> Status {
    tracing::error!(error = %err, "store error in agent service");
    Status::unavailable("storage unavailable")
}

impl AgentApi {
    /// Authenticates the caller and checks the store agrees it is a live agent.
    async fn known_agent<T>(&self, request: &Request<T>) -> Result<PeerIdentity, Status> {
        let identity = authenticate(request, &self.revocations)?;
        let agent = self
            .store
            .agent(identity.agent_id)
            .await
            .map_err(storage_status)?
            .ok_or_else(|| Status::permission_denied(format!("agent {} is not enrolled here", identity.agent_id)))?;
        if agent.revoked_at.is_some() {
            self.revocations.insert(identity.agent_id);
            return Err(Status::permission_denied(format!(
                "agent {} has been revoked",
                identity.agent_id
            )));
        }
        Ok(identity)
    }
}

#[tonic::async_trait]
impl AgentService for AgentApi {
    async fn renew(&self, request: Request<pb::RenewRequest>) -> Result<Response<pb::RenewResponse>, Status> {
        let identity = self.known_agent(&request).await?;
        let csr_pem = request.into_inner().csr_pem;
        let issued = self
            .ca
            .sign_agent_csr(&csr_pem, &identity.environment, identity.agent_id, self.certificate_ttl)
            .map_err(|err| Status::invalid_argument(err.to_string()))?;
        self.store
            .save_certificate(&IssuedCertificate {
                agent_id: identity.agent_id,
                serial: issued.serial.clone(),
                not_after: issued.not_after,
                pem: issued.pem.clone(),
                key_fingerprint: issued.key_fingerprint.clone(),
                issued_at: Utc::now(),
            })
            .await
            .map_err(storage_status)?;
        self.sessions.extend_deadline(identity.agent_id, issued.not_after);
        tracing::info!(agent_id = %identity.agent_id, not_after = %issued.not_after, "certificate renewed");
        Ok(Response::new(pb::RenewResponse {
            certificate_pem: issued.pem,
            not_after: Some(to_timestamp(issued.not_after)),
        }))
    }

    type SessionStream = ReceiverStream<Result<pb::CoordinatorMessage, Status>>;

    async fn session(
        &self,
        request: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let identity = self.known_agent(&request).await?;
        let inbound = request.into_inner();
        let (outbound, receiver) = mpsc::channel(OUTBOUND_DEPTH);
        let guard = self
            .sessions
            .register(identity.agent_id, outbound.clone(), identity.not_after);
        tokio::spawn(self.clone().run_session(identity, inbound, outbound, guard));
        Ok(Response::new(ReceiverStream::new(receiver)))
    }
}

fn coordinator_message(body: pb::coordinator_message::Body) -> pb::CoordinatorMessage {
    pb::CoordinatorMessage { body: Some(body) }
}

impl AgentApi {
    async fn run_session(
        self,
        identity: PeerIdentity,
        mut inbound: Streaming<pb::AgentMessage>,
        outbound: Outbound,
        mut guard: SessionGuard,
    ) {
        let agent_id = identity.agent_id;
        let welcome = pb::Welcome {
            agent_id: agent_id.to_string(),
            environment: identity.environment.to_string(),
            heartbeat_interval_seconds: u32::try_from(self.heartbeat_interval.as_secs()).unwrap_or(u32::MAX),
        };
        if outbound
            .send(Ok(coordinator_message(pb::coordinator_message::Body::Welcome(welcome))))
            .await
            .is_err()
        {
            return;
        }
        let hello = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
            Ok(Ok(Some(first))) => match AgentMessage::try_from(first) {
                Ok(AgentMessage::Hello(hello)) => hello,
                Ok(_) => {
                    let _closed = outbound
                        .send(Err(Status::invalid_argument(
                            "the first message of a session must be Hello",
                        )))
                        .await;
                    return;
                }
                Err(err) => {
                    let _closed = outbound.send(Err(err.into())).await;
                    return;
                }
            },
            Ok(Ok(None)) => return,
            Ok(Err(status)) => {
                let _closed = outbound.send(Err(status)).await;
                return;
            }
            Err(_) => {
                let _closed = outbound
                    .send(Err(Status::deadline_exceeded("no Hello within 30 s")))
                    .await;
                return;
            }
        };
        self.connected(&identity, &hello).await;

        let ending = self
            .serve_messages(&identity, &mut inbound, &outbound, &mut guard)
            .await;
        if let Some(status) = ending {
            tracing::info!(%agent_id, code = ?status.code(), reason = status.message(), "session ended by coordinator");
            let _closed = outbound.send(Err(status)).await;
        } else {
            tracing::info!(%agent_id, "session closed by agent");
        }
        if let Err(err) = self
            .store
            .mark_disconnected(agent_id, self.sessions.instance(), Utc::now())
            .await
        {
            tracing::warn!(%agent_id, error = %err, "cannot record disconnection");
        }
    }

    async fn connected(&self, identity: &PeerIdentity, hello: &Hello) {
        let capabilities = serde_json::to_value(&hello.capabilities).unwrap_or_default();
        if let Err(err) = self
            .store
            .mark_connected(
                identity.agent_id,
                &hello.hostname,
                &hello.agent_version,
                &capabilities,
                self.sessions.instance(),
                Utc::now(),
            )
            .await
        {
            tracing::warn!(agent_id = %identity.agent_id, error = %err, "cannot record connection");
        }
        tracing::info!(
            agent_id = %identity.agent_id,
            environment = %identity.environment,
            hostname = %hello.hostname,
            version = %hello.agent_version,
            "agent connected"
        );
    }

    /// Handles messages until the session ends; returns the status to end it with, if any.
    async fn serve_messages(
        &self,
        identity: &PeerIdentity,
        inbound: &mut Streaming<pb::AgentMessage>,
        outbound: &Outbound,
        guard: &mut SessionGuard,
    ) -> Option<Status> {
        let mut expiry = pin!(tokio::time::sleep(guard.liveness.until_deadline()));
        loop {
            let next = tokio::select! {
                status = &mut guard.cut => return Some(status.unwrap_or_else(|_| Status::aborted("session cut"))),
                () = &mut expiry => {
                    let left = guard.liveness.until_deadline();
                    if left.is_zero() {
                        return Some(Status::unauthenticated("the agent certificate expired without renewal: re-enroll needed"));
                    }
                    expiry.as_mut().reset(tokio::time::Instant::now() + left);
                    continue;
                }
                next = inbound.message() => next,
            };
            let raw = match next {
                Ok(Some(raw)) => raw,
                Ok(None) => return None,
                Err(status) => {
                    tracing::info!(agent_id = %identity.agent_id, code = ?status.code(), error = status.message(), "bad message on session");
                    return Some(status);
                }
            };
            guard.liveness.seen();
            let handled = match raw.body {
                Some(pb::agent_message::Body::Result(result)) => self.receive_result(identity, result, outbound).await,
                Some(pb::agent_message::Body::Inventory(inventory)) => {
                    self.receive_inventory(identity, inventory, outbound).await
                }
                body => match AgentMessage::try_from(pb::AgentMessage { body }) {
                    Ok(message) => self.handle(identity, message, outbound).await,
                    Err(err) => Err(err.into()),
                },
            };
            if let Err(status) = handled {
                return Some(status);
            }
        }
    }

    /// Admits a result and queues it for the store, or rejects it on its own.
    async fn receive_result(
        &self,
        identity: &PeerIdentity,
        result: pb::RunResult,
        outbound: &Outbound,
    ) -> Result<(), Status> {
        let sent_id = result.result_id.clone();
        match self.admission.result(&self.store, identity, result, Utc::now()).await {
            Ok(result) => {
                self.handle(identity, AgentMessage::Result(Box::new(result)), outbound)
                    .await
            }
            Err(rejection) => {
                tracing::warn!(
                    agent_id = %identity.agent_id,
                    result_id = %sent_id.chars().take(64).collect::<String>(),
                    reason = rejection.reason(),
                    "result rejected"
                );
                // A full queue means the agent is not reading; it sends the result again later.
                let _full = outbound.try_send(Ok(rejection.message(&sent_id)));
                Ok(())
            }
        }
    }

    /// Admits and stores an inventory, or tells the agent why not (the previous one stays).
    async fn receive_inventory(
        &self,
        identity: &PeerIdentity,
        inventory: pb::Inventory,
        outbound: &Outbound,
    ) -> Result<(), Status> {
        match self.admission.inventory(identity.agent_id, inventory, Utc::now()) {
            Ok(inventory) => {
                self.handle(identity, AgentMessage::Inventory(inventory), outbound)
                    .await
            }
            Err(reason) => {
                tracing::warn!(agent_id = %identity.agent_id, %reason, "inventory rejected");
                let rejected = pb::InventoryRejected { reason };
                let _full = outbound.try_send(Ok(coordinator_message(
                    pb::coordinator_message::Body::InventoryRejected(rejected),
                )));
                Ok(())
            }
        }
    }

    async fn handle(&self, identity: &PeerIdentity, message: AgentMessage, outbound: &Outbound) -> Result<(), Status> {
        match message {
            AgentMessage::Hello(_) => Err(Status::invalid_argument("Hello may only be sent once per session")),
            AgentMessage::Heartbeat(heartbeat) => {
                let ack = pb::HeartbeatAck {
                    sequence: heartbeat.sequence,
                    received_at: Some(to_timestamp(Utc::now())),
                };
                // A full queue means the agent is not reading; skipping an echo is harmless.
                let _full = outbound.try_send(Ok(coordinator_message(pb::coordinator_message::Body::HeartbeatAck(
                    ack,
                ))));
                Ok(())
            }
            AgentMessage::Inventory(inventory) => {
                let json = serde_json::to_value(&inventory).unwrap_or_default();
                self.store
                    .save_inventory(identity.agent_id, &json, Utc::now())
                    .await
                    .map_err(storage_status)
            }
            AgentMessage::Progress(progress) => {
                tracing::debug!(
                    agent_id = %identity.agent_id,
                    run_id = %progress.run_id,
                    phase = %progress.phase,
                    bytes_done = progress.bytes_done,
                    "run progress"
                );
                Ok(())
            }
            AgentMessage::Result(result) => {
                let accepted = self
                    .ingestor
                    .submit(
                        identity.agent_id,
                        identity.environment.clone(),
                        *result,
                        outbound.clone(),
                    )
                    .await;
                if accepted {
                    Ok(())
                } else {
                    Err(Status::unavailable("coordinator is shutting down"))
                }
            }
        }
    }
}
