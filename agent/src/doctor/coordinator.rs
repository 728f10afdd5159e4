//! The coordinator: reachable over mutual TLS with a certificate its CA signed for the name in
//! `[agent] coordinator`, this agent known to it (not revoked), and this machine's clock within
//! the coordinator's tolerance.
//!
//! The probe is a `Renew` call with an empty CSR: the coordinator first authenticates the agent
//! (refusing a revoked or unknown one), then refuses the CSR before issuing or storing anything.
//! So `InvalidArgument` means "known, and nothing changed". The reply's HTTP `Date` header (the
//! coordinator's clock, to the second) gives the clock offset.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use lifeboat_proto::v1 as pb;
use lifeboat_proto::v1::agent_service_client::AgentServiceClient;
use tonic::Code;

use super::Check;
use crate::config::AgentConfig;
use crate::connect;
use crate::identity::IdentityStore;

const GROUP: &str = "coordinator";
/// How long connecting and the probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(15);
/// The clock offset the coordinator tolerates: it backdates the certificates it issues by 60 s.
const MAX_CLOCK_OFFSET: TimeDelta = TimeDelta::seconds(60);
/// Above this offset the clock is worth a warning (schedules and data ages drift with it).
const WARN_CLOCK_OFFSET: TimeDelta = TimeDelta::seconds(5);

/// Checks the coordinator: reachability and trust, this agent's standing, the clock.
pub async fn check(config: &AgentConfig) -> Vec<Check> {
    let (Some(url), Some(identity_dir)) = (&config.agent.coordinator, &config.agent.identity_dir) else {
        return vec![Check::ok(
            GROUP,
            "coordinator",
            "none configured: `check` runs standalone (`run` needs [agent] coordinator and identity_dir)",
        )];
    };
    let url = url.as_str();
    let identity = match IdentityStore::Dir(identity_dir.clone()).load() {
        Ok(identity) => identity,
        Err(err) => {
            return vec![Check::fail(
                GROUP,
                url,
                format!("not checked: no usable identity ({err})"),
            )];
        }
    };
    lifeboat_shared::tls::install_crypto_provider();
    let tls = match identity.client_config() {
        Ok(tls) => tls,
        Err(err) => return vec![Check::fail(GROUP, url, format!("unusable identity: {err}"))],
    };
    match tokio::time::timeout(PROBE_TIMEOUT, probe(url, tls)).await {
        Err(_elapsed) => vec![Check::fail(
            GROUP,
            url,
            format!("no answer within {} s", PROBE_TIMEOUT.as_secs()),
        )],
        Ok(Err(detail)) => vec![Check::fail(GROUP, url, detail)],
        Ok(Ok(answer)) => vec![
            Check::ok(
                GROUP,
                url,
                format!(
                    "reachable over mutual TLS (certificate signed by the enrolled CA); agent {} is known",
                    identity.agent_id
                ),
            ),
            clock(answer),
        ],
    }
}

/// The coordinator's clock, and this machine's around the moment it was read.
struct Answer {
    coordinator_time: Option<DateTime<Utc>>,
    sent: DateTime<Utc>,
    received: DateTime<Utc>,
}

async fn probe(url: &str, tls: rustls::ClientConfig) -> Result<Answer, String> {
    let channel = connect::channel(url, Arc::new(tls))
        .await
        .map_err(|err| format!("unreachable: {}", connect::error_chain(&err)))?;
    let sent = Utc::now();
    let reply = AgentServiceClient::new(channel)
        .renew(pb::RenewRequest { csr_pem: String::new() })
        .await;
    let received = Utc::now();
    let metadata = match &reply {
        Ok(response) => response.metadata().clone(),
        Err(status) => match status.code() {
            Code::InvalidArgument => status.metadata().clone(),
            Code::PermissionDenied | Code::Unauthenticated => {
                return Err(format!(
                    "reachable, but it refuses this agent: {} (re-enroll with a new token)",
                    status.message()
                ));
            }
            code => return Err(format!("unexpected answer {code:?}: {}", status.message())),
        },
    };
    let coordinator_time = metadata
        .get("date")
        .and_then(|value| value.to_str().ok())
        .and_then(|text| DateTime::parse_from_rfc2822(text).ok())
        .map(|time| time.with_timezone(&Utc));
    Ok(Answer {
        coordinator_time,
        sent,
        received,
    })
}

fn clock(answer: Answer) -> Check {
    let Some(coordinator_time) = answer.coordinator_time else {
        return Check::warn(
            GROUP,
            "clock",
            "not compared: the coordinator's answer carried no Date header",
        );
    };
    // The Date header is truncated to the second: compare with the middle of the round trip,
    // and allow that second.
    let local = answer.sent + (answer.received - answer.sent) / 2;
    let offset = local - coordinator_time - TimeDelta::milliseconds(500);
    judge_offset(offset, answer.received - answer.sent)
}

fn judge_offset(offset: TimeDelta, round_trip: TimeDelta) -> Check {
    let seconds = offset.num_milliseconds() as f64 / 1000.0;
    let text = format!(
        "{seconds:+.1} s from the coordinator's (±1 s; round trip {} ms)",
        round_trip.num_milliseconds()
    );
    let magnitude = offset.abs();
    if magnitude > MAX_CLOCK_OFFSET {
        Check::fail(
            GROUP,
            "clock",
            format!(
                "{text}: over the {} s the coordinator tolerates; synchronise the clock (e.g. systemd-timesyncd or chrony)",
                MAX_CLOCK_OFFSET.num_seconds()
            ),
        )
    } else if magnitude > WARN_CLOCK_OFFSET {
        Check::warn(GROUP, "clock", format!("{text}: consider synchronising the clock"))
    } else {
        Check::ok(GROUP, "clock", text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Status;

    #[test]
    fn clock_offsets_beyond_the_tolerance_fail() {
        let rtt = TimeDelta::milliseconds(3);
        assert_eq!(judge_offset(TimeDelta::milliseconds(400), rtt).status, Status::Ok);
        assert_eq!(judge_offset(TimeDelta::seconds(-20), rtt).status, Status::Warn);
        let behind = judge_offset(TimeDelta::seconds(-3600), rtt);
        assert_eq!(behind.status, Status::Fail);
        assert!(behind.detail.starts_with("-3600.0 s"), "{}", behind.detail);
    }
}
