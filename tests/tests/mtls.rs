//! Everything but enrollment requires a valid, unrevoked client certificate from our CA; bad
//! messages end a session with a status and harm nobody else, except a bad result, which is
//! rejected on its own while the session goes on.

use std::sync::Arc;
use std::time::Duration;

use lifeboat_agent::connect;
use lifeboat_agent::identity::{self, Identity};
use lifeboat_agent::session::SessionEvent;
use lifeboat_coordinator::ca::CertificateAuthority;
use lifeboat_proto::v1 as pb;
use lifeboat_proto::v1::agent_service_client::AgentServiceClient;
use lifeboat_shared::ids::AgentId;
use lifeboat_shared::protocol::{Outcome, RunResult};
use lifeboat_tests::cluster::{SimAgent, TestCoordinator};
use lifeboat_tests::raw::RawCodec;
use prost::Message as _;
use tonic::Code;

fn hello() -> pb::AgentMessage {
    pb::AgentMessage {
        body: Some(pb::agent_message::Body::Hello(pb::Hello {
            agent_version: "test".into(),
            hostname: "test-host".into(),
            capabilities: None,
        })),
    }
}

async fn client_for(
    coordinator: &TestCoordinator,
    identity: &Identity,
) -> Result<AgentServiceClient<tonic::transport::Channel>, String> {
    let tls = identity.client_config().map_err(|err| err.to_string())?;
    let channel = connect::channel(&coordinator.url, Arc::new(tls))
        .await
        .map_err(|err| connect::error_chain(&err))?;
    Ok(AgentServiceClient::new(channel))
}

/// Opens a session with the given messages; returns the status that ended it (or OK if open).
async fn session_status(
    client: &mut AgentServiceClient<tonic::transport::Channel>,
    messages: Vec<pb::AgentMessage>,
) -> tonic::Status {
    session_outcome(client, messages).await.1
}

/// Like [`session_status`], with the messages the coordinator sent meanwhile.
async fn session_outcome(
    client: &mut AgentServiceClient<tonic::transport::Channel>,
    messages: Vec<pb::AgentMessage>,
) -> (Vec<pb::CoordinatorMessage>, tonic::Status) {
    let stream = tokio_stream::iter(messages).chain(tokio_stream::pending());
    let mut received = Vec::new();
    match client.session(stream).await {
        Err(status) => (received, status),
        Ok(response) => {
            let mut inbound = response.into_inner();
            loop {
                match tokio::time::timeout(Duration::from_secs(3), inbound.message()).await {
                    Ok(Ok(Some(message))) => received.push(message),
                    Ok(Ok(None)) => return (received, tonic::Status::ok("closed")),
                    Ok(Err(status)) => return (received, status),
                    Err(_) => return (received, tonic::Status::ok("still open")),
                }
            }
        }
    }
}

use tokio_stream::StreamExt as _;

/// Signs a certificate for `agent_id` valid between the given offsets from now.
fn identity_signed_by(ca: &CertificateAuthority, agent_id: AgentId, from: i64, to: i64) -> Identity {
    let key = identity::generate_key().expect("key");
    let csr = identity::csr_pem(&key, "x").expect("csr");
    let now = time::OffsetDateTime::now_utc();
    let env = lifeboat_shared::ids::Environment::parse("pocketos-prod").expect("env");
    let cert = ca
        .sign_agent_csr_valid(
            &csr,
            &env,
            agent_id,
            now + time::Duration::seconds(from),
            now + time::Duration::seconds(to),
        )
        .expect("sign");
    Identity::from_pem(key, cert.pem, ca.cert_pem().to_owned()).expect("identity")
}

#[tokio::test]
async fn calls_without_a_client_certificate_are_unauthenticated() {
    let coordinator = TestCoordinator::start().await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(coordinator.ca.cert_der().clone()).expect("root");
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let channel = connect::channel(&coordinator.url, Arc::new(config))
        .await
        .expect("TLS without client cert");
    let mut client = AgentServiceClient::new(channel);
    let status = session_status(&mut client, vec![hello()]).await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("client certificate"), "{status:?}");
    let status = client
        .renew(pb::RenewRequest { csr_pem: String::new() })
        .await
        .expect_err("renew without certificate");
    assert_eq!(status.code(), Code::Unauthenticated);
    coordinator.stop().await;
}

#[tokio::test]
async fn certificates_from_another_ca_or_expired_fail_the_handshake() {
    let coordinator = TestCoordinator::start().await;
    let real = coordinator.enroll("pocketos-prod", "real").await;

    // Same identity, signed by a CA the coordinator has never seen.
    let (other_cert, other_key) = CertificateAuthority::generate_pem().expect("other CA");
    let other_ca = CertificateAuthority::from_pem(&other_cert, &other_key).expect("other CA");
    let mut forged = identity_signed_by(&other_ca, real.agent_id, -60, 3600);
    forged.ca_pem = coordinator.ca.cert_pem().to_owned(); // trust the real server
    let err = match client_for(&coordinator, &forged).await {
        Ok(mut client) => connect::error_chain(&session_status(&mut client, vec![hello()]).await),
        Err(err) => err,
    };
    assert!(
        err.contains("UnknownCA") || err.contains("BadCertificate") || err.contains("alert"),
        "{err}"
    );

    // Our CA, but expired.
    let expired = identity_signed_by(&coordinator.ca, real.agent_id, -7200, -3600);
    assert!(expired.ensure_valid().is_err());
    let err = match client_for(&coordinator, &expired).await {
        Ok(mut client) => connect::error_chain(&session_status(&mut client, vec![hello()]).await),
        Err(err) => err,
    };
    assert!(err.contains("CertificateExpired") || err.contains("expired"), "{err}");

    // The real identity still works.
    let mut client = client_for(&coordinator, &real).await.expect("real agent connects");
    let status = session_status(&mut client, vec![hello()]).await;
    assert_eq!(status.message(), "still open", "{status:?}");
    coordinator.stop().await;
}

#[tokio::test]
async fn an_agent_whose_certificate_expired_is_told_to_re_enroll() {
    let coordinator = TestCoordinator::start().await;
    let real = coordinator.enroll("pocketos-prod", "real").await;
    let expired = identity_signed_by(&coordinator.ca, real.agent_id, -7200, -3600);
    let agent = SimAgent::spawn(&coordinator.url, expired);
    let err = agent.join().await.expect_err("must stop");
    assert!(err.to_string().contains("re-enroll needed"), "{err}");
    coordinator.stop().await;
}

#[tokio::test]
async fn revoking_an_agent_cuts_its_session_and_refuses_reconnect_and_renewal() {
    let coordinator = TestCoordinator::start().await;
    let identity = coordinator.enroll("pocketos-prod", "doomed").await;
    let bystander = coordinator.enroll("pocketos-prod", "bystander").await;
    let mut agent = SimAgent::spawn(&coordinator.url, identity.clone());
    let mut other = SimAgent::spawn(&coordinator.url, bystander);
    assert!(agent.connected(Duration::from_secs(10)).await);
    assert!(other.connected(Duration::from_secs(10)).await);

    let revoked_at = std::time::Instant::now();
    coordinator
        .store
        .revoke_agent(identity.agent_id, chrono::Utc::now())
        .await
        .expect("revoke");
    let reason = agent
        .wait_for(Duration::from_secs(5), |event| match event {
            SessionEvent::Disconnected { reason } => Some(reason.clone()),
            _ => None,
        })
        .await
        .expect("session cut");
    let cut_after = revoked_at.elapsed();
    assert!(cut_after < Duration::from_secs(2), "cut after {cut_after:?}");
    assert!(reason.contains("revoked"), "{reason}");
    // The agent does not reconnect: the loop ends with the refusal.
    let err = agent.join().await.expect_err("revoked agent must stop");
    assert!(err.to_string().contains("revoked"), "{err}");

    // A fresh connection with the same certificate is refused, and so is renewal.
    let mut client = client_for(&coordinator, &identity).await.expect("TLS still completes");
    let status = session_status(&mut client, vec![hello()]).await;
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let status = client
        .renew(pb::RenewRequest {
            csr_pem: identity.csr().expect("csr"),
        })
        .await
        .expect_err("renewal of a revoked agent");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    // Nobody else was affected.
    assert!(
        other
            .wait_for(Duration::from_secs(3), |event| match event {
                SessionEvent::Disconnected { reason } => Some(reason.clone()),
                SessionEvent::HeartbeatRoundTrip(_) => None,
                _ => None,
            })
            .await
            .is_none(),
        "the bystander lost its session"
    );
    let listed = coordinator.agents().await;
    assert!(
        listed
            .iter()
            .any(|agent| agent.id == identity.agent_id && agent.revoked && !agent.connected)
    );
    coordinator.stop().await;
}

#[tokio::test]
async fn malformed_and_oversized_messages_end_the_session_with_a_status_but_a_bad_result_does_not() {
    let coordinator = TestCoordinator::start().await;
    let identity = coordinator.enroll("pocketos-prod", "fuzzer").await;
    let mut client = client_for(&coordinator, &identity).await.expect("connect");

    // First message must be a Hello.
    let heartbeat = pb::AgentMessage {
        body: Some(pb::agent_message::Body::Heartbeat(pb::Heartbeat::default())),
    };
    let status = session_status(&mut client, vec![heartbeat]).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    // An empty message.
    let status = session_status(&mut client, vec![hello(), pb::AgentMessage { body: None }]).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("body"), "{status:?}");

    // A result that does not validate is rejected on its own, and the session goes on: the
    // heartbeat after it is answered.
    let mut bad = pb::RunResult::from(RunResult::for_test("db", Outcome::Passed));
    bad.result_id = "not-a-uuid".into();
    let bad = pb::AgentMessage {
        body: Some(pb::agent_message::Body::Result(bad)),
    };
    let heartbeat_after = pb::AgentMessage {
        body: Some(pb::agent_message::Body::Heartbeat(pb::Heartbeat {
            sequence: 7,
            sent_at: Some(lifeboat_shared::protocol::to_timestamp(chrono::Utc::now())),
            ..Default::default()
        })),
    };
    let (received, status) = session_outcome(&mut client, vec![hello(), bad, heartbeat_after]).await;
    assert_eq!(status.message(), "still open", "{status:?}");
    let rejection = received
        .iter()
        .find_map(|message| match &message.body {
            Some(pb::coordinator_message::Body::ResultRejected(rejected)) => Some(rejected.clone()),
            _ => None,
        })
        .expect("a ResultRejected");
    assert_eq!(rejection.result_id, "not-a-uuid");
    assert!(
        rejection.permanent && rejection.reason.contains("result_id"),
        "{rejection:?}"
    );
    assert!(
        received
            .iter()
            .any(|message| matches!(&message.body, Some(pb::coordinator_message::Body::HeartbeatAck(ack)) if ack.sequence == 7)),
        "the session went on: {received:?}"
    );

    // Oversized: a 5 MiB detail document (limit 4 MiB).
    let mut huge = RunResult::for_test("db", Outcome::Passed);
    huge.detail = serde_json::Value::String("x".repeat(5 * 1024 * 1024));
    let huge = pb::AgentMessage {
        body: Some(pb::agent_message::Body::Result(huge.into())),
    };
    let status = session_status(&mut client, vec![hello(), huge]).await;
    assert!(
        matches!(
            status.code(),
            Code::ResourceExhausted | Code::OutOfRange | Code::InvalidArgument
        ),
        "{status:?}"
    );

    // Bytes that are not protobuf at all.
    let channel = connect::channel(&coordinator.url, Arc::new(identity.client_config().expect("tls")))
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let frames = vec![hello().encode_to_vec(), vec![0xff, 0xff, 0xff, 0xff, 0x0f]];
    let request = tonic::Request::new(tokio_stream::iter(frames).chain(tokio_stream::pending()));
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/lifeboat.v1.AgentService/Session");
    let response = grpc.streaming(request, path, RawCodec).await.expect("stream opens");
    let mut inbound = response.into_inner();
    let status = loop {
        match tokio::time::timeout(Duration::from_secs(10), inbound.message()).await {
            Ok(Ok(Some(_))) => continue,
            Ok(Err(status)) => break status,
            other => panic!("garbage did not end the session: {other:?}"),
        }
    };
    assert!(
        matches!(status.code(), Code::Internal | Code::InvalidArgument),
        "{status:?}"
    );

    // The coordinator is unharmed: a well-behaved agent still connects.
    let mut agent = SimAgent::spawn(&coordinator.url, identity);
    assert!(agent.connected(Duration::from_secs(10)).await);
    coordinator.stop().await;
}

/// A CSR is a few KiB: a larger `Renew` is refused before it is read, even from an agent.
#[tokio::test]
async fn a_renew_request_larger_than_a_csr_is_refused() {
    let coordinator = TestCoordinator::start().await;
    let identity = coordinator.enroll("pocketos-prod", "renewer").await;
    let mut client = client_for(&coordinator, &identity).await.expect("connect");
    let status = client
        .renew(pb::RenewRequest {
            csr_pem: "A".repeat(256 * 1024),
        })
        .await
        .expect_err("too large");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let renewed = client
        .renew(pb::RenewRequest {
            csr_pem: identity.csr().expect("csr"),
        })
        .await
        .expect("a real renewal still works");
    assert!(renewed.into_inner().certificate_pem.contains("BEGIN CERTIFICATE"));
    coordinator.stop().await;
}
