//! Short-lived certificates are renewed at 2/3 of their life without dropping the session.

use std::time::Duration;

use lifeboat_agent::session::SessionEvent;
use lifeboat_tests::cluster::{CoordinatorOptions, SimAgent, TestCoordinator};

#[tokio::test]
async fn an_agent_with_a_30_second_certificate_stays_connected_across_renewals() {
    lifeboat_tests::init_logs();
    let coordinator = TestCoordinator::start_with(CoordinatorOptions {
        certificate_ttl: "30s".into(),
        ..CoordinatorOptions::default()
    })
    .await;
    let identity = coordinator.enroll("pocketos-prod", "short-lived").await;
    let first_expiry = identity.not_after;
    let mut agent = SimAgent::spawn(&coordinator.url, identity);
    assert!(agent.connected(Duration::from_secs(10)).await);

    // 75 s is 2.5 lifetimes of the first certificate: without renewal the session would be cut
    // at 30 s and the agent could not reconnect.
    let mut expiries = vec![first_expiry];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(75);
    let mut heartbeats = 0;
    while tokio::time::Instant::now() < deadline {
        let event = tokio::time::timeout_at(deadline, agent.events.recv()).await;
        match event {
            Ok(Some((_, SessionEvent::Disconnected { reason }))) => panic!("session dropped: {reason}"),
            Ok(Some((_, SessionEvent::Connected { .. }))) => panic!("session was re-established"),
            Ok(Some((_, SessionEvent::HeartbeatRoundTrip(_)))) => heartbeats += 1,
            Ok(Some(_)) => {}
            Ok(None) => panic!("agent stopped"),
            Err(_) => break,
        }
        let current = agent.identity.load().expect("identity").not_after;
        if expiries.last() != Some(&current) {
            expiries.push(current);
        }
    }
    assert!(expiries.len() >= 4, "expected at least 3 renewals, saw {expiries:?}");
    assert!(heartbeats >= 60, "heartbeats kept flowing: {heartbeats}");
    let stored = coordinator
        .agents()
        .await
        .into_iter()
        .next()
        .and_then(|agent| agent.certificate_expires_at)
        .expect("expiry recorded");
    assert!(stored >= *expiries.last().expect("some") - chrono::Duration::seconds(1));
    coordinator.stop().await;
}
