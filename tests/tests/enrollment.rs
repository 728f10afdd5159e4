//! Enrollment and sessions over real mutual TLS on 127.0.0.1:0.

use std::time::Duration;

use lifeboat_agent::enroll::{self, EnrollError};
use lifeboat_shared::ids::Environment;
use lifeboat_shared::tls::CaPin;
use lifeboat_tests::cluster::{SimAgent, TestCoordinator};
use lifeboat_tests::eventually;

#[tokio::test]
async fn enrolled_agents_connect_and_heartbeats_show_in_agents_list() {
    lifeboat_tests::init_logs();
    let coordinator = TestCoordinator::start().await;
    let prod = coordinator.enroll("pocketos-prod", "prod-1").await;
    let staging = coordinator.enroll("pocketos-staging", "staging-1").await;
    assert_eq!(prod.environment.as_str(), "pocketos-prod");
    assert_eq!(staging.environment.as_str(), "pocketos-staging");

    let mut prod_agent = SimAgent::spawn(&coordinator.url, prod.clone());
    let mut staging_agent = SimAgent::spawn(&coordinator.url, staging.clone());
    assert!(prod_agent.connected(Duration::from_secs(10)).await);
    assert!(staging_agent.connected(Duration::from_secs(10)).await);
    // A heartbeat round trip proves the session carries traffic both ways.
    let round_trip = prod_agent
        .wait_for(Duration::from_secs(5), |event| match event {
            lifeboat_agent::session::SessionEvent::HeartbeatRoundTrip(rtt) => Some(*rtt),
            _ => None,
        })
        .await;
    assert!(round_trip.is_some(), "no heartbeat echo");

    let first_seen = coordinator
        .agents()
        .await
        .into_iter()
        .find(|agent| agent.id == prod.agent_id)
        .and_then(|agent| agent.last_seen);
    let listed = eventually(Duration::from_secs(10), || async {
        let agents = coordinator.agents().await;
        agents.len() == 2
            && agents.iter().all(|agent| agent.connected)
            && agents
                .iter()
                .find(|agent| agent.id == prod.agent_id)
                .is_some_and(|agent| agent.last_seen > first_seen)
    })
    .await;
    let agents = coordinator.agents().await;
    assert!(
        listed,
        "agents list never showed both connected with fresh heartbeats: {agents:#?}"
    );
    let prod_row = agents
        .iter()
        .find(|agent| agent.id == prod.agent_id)
        .expect("prod listed");
    assert_eq!(prod_row.environment.as_str(), "pocketos-prod");
    assert_eq!(prod_row.name, "prod-1");
    assert_eq!(prod_row.hostname.as_deref(), Some("sim-host"));
    assert_eq!(prod_row.version.as_deref(), Some(lifeboat_shared::VERSION));
    assert!(prod_row.certificate_expires_at.is_some());

    staging_agent.join().await.expect("clean stop");
    assert!(
        eventually(Duration::from_secs(5), || async {
            coordinator
                .agents()
                .await
                .iter()
                .any(|agent| agent.id == staging.agent_id && !agent.connected)
        })
        .await,
        "a stopped agent must show disconnected"
    );
    coordinator.stop().await;
}

#[tokio::test]
async fn a_lost_response_retry_gets_the_same_identity_without_burning_the_token() {
    let coordinator = TestCoordinator::start().await;
    let token = coordinator.token("pocketos-prod", 1).await;
    let identity_dir = tempfile::tempdir().expect("dir");
    let request = coordinator.enroll_request(&token, "agent-a");
    let first = enroll::enroll_to_dir(&request, identity_dir.path())
        .await
        .expect("enroll");
    let cert_before = std::fs::read_to_string(identity_dir.path().join("cert.pem")).expect("cert");
    // The response was "lost": the agent runs enroll again with the same key and token.
    std::fs::remove_file(identity_dir.path().join("cert.pem")).expect("rm");
    let second = enroll::enroll_to_dir(&request, identity_dir.path())
        .await
        .expect("retry");
    assert_eq!(first.agent_id, second.agent_id);
    let cert_after = std::fs::read_to_string(identity_dir.path().join("cert.pem")).expect("cert");
    assert_eq!(cert_before, cert_after, "the same certificate is returned");
    assert_eq!(coordinator.agents().await.len(), 1, "no second agent was created");

    // The key never left: key.pem is 0600 and the certificate certifies it.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(identity_dir.path().join("key.pem"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // Another key with the same single-use token is refused.
    let err = enroll::enroll_in_memory(&request)
        .await
        .expect_err("token reused by another key");
    assert_rejected(&err, tonic::Code::PermissionDenied, "already been used");
    coordinator.stop().await;
}

fn assert_rejected(err: &EnrollError, code: tonic::Code, text: &str) {
    match err {
        EnrollError::Rejected(status) => {
            assert_eq!(status.code(), code, "{status:?}");
            assert!(status.message().contains(text), "{status:?}");
        }
        other => panic!("expected a {code:?} rejection, got {other}"),
    }
}

#[tokio::test]
async fn bad_tokens_and_wrong_pins_are_refused_with_clear_errors() {
    let coordinator = TestCoordinator::start().await;

    // Expired token.
    let expired = coordinator
        .token_with_ttl("pocketos-prod", 1, Duration::from_millis(1))
        .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let err = enroll::enroll_in_memory(&coordinator.enroll_request(&expired, "a"))
        .await
        .expect_err("expired");
    assert_rejected(&err, tonic::Code::Unauthenticated, "expired");

    // Token of environment A used for B.
    let token_a = coordinator.token("env-a", 1).await;
    let mut request = coordinator.enroll_request(&token_a, "a");
    request.environment = Some(Environment::parse("env-b").expect("env"));
    let err = enroll::enroll_in_memory(&request).await.expect_err("wrong environment");
    assert_rejected(
        &err,
        tonic::Code::PermissionDenied,
        "is for environment env-a, not env-b",
    );
    // Refusing it did not consume it: the right environment still works.
    request.environment = Some(Environment::parse("env-a").expect("env"));
    let identity = enroll::enroll_in_memory(&request).await.expect("right environment");
    assert_eq!(identity.environment.as_str(), "env-a");

    // Unknown token.
    let mut unknown = coordinator.token("env-a", 1).await;
    unknown.token = lifeboat_coordinator::tokens::generate();
    let err = enroll::enroll_in_memory(&coordinator.enroll_request(&unknown, "a"))
        .await
        .expect_err("unknown");
    assert_rejected(&err, tonic::Code::Unauthenticated, "not recognised");

    // Wrong CA pin: the TLS handshake itself fails, and says why.
    let token = coordinator.token("env-a", 1).await;
    let mut request = coordinator.enroll_request(&token, "a");
    request.ca_pin = CaPin::of(b"some other CA");
    let err = enroll::enroll_in_memory(&request).await.expect_err("wrong pin");
    assert!(matches!(err, EnrollError::Connect(_)), "{err}");
    assert!(err.to_string().contains("does not match the pin"), "{err}");
    // ... and the token was not used by the failed attempt.
    request.ca_pin = coordinator.pin();
    enroll::enroll_in_memory(&request).await.expect("right pin");

    // Multi-use tokens admit exactly their number of agents.
    let shared = coordinator.token("fleet", 3).await;
    for n in 0..3 {
        enroll::enroll_in_memory(&coordinator.enroll_request(&shared, &format!("fleet-{n}")))
            .await
            .expect("within uses");
    }
    let err = enroll::enroll_in_memory(&coordinator.enroll_request(&shared, "fleet-4"))
        .await
        .expect_err("exhausted");
    assert_rejected(&err, tonic::Code::PermissionDenied, "already been used");
    coordinator.stop().await;
}
