//! Posture: the verdict of every asset over time (`docs/verdict.md`). Recomputed on every result
//! and report, and every `[alerts] evaluate_every` for the dead-man's switch; a change is a flip,
//! stored with its reasons and the messages its routes ask for, in one transaction.
//!
//! An asset is recoverable when its latest restore test passed (the agent judged the recovery
//! point safe, fresh and fast enough), that pass is within the test interval, and
//! no newer posture scan found a critical problem. A lost agent does not page by itself: its
//! assets say why they are overdue, so one problem opens one ticket per asset, not two.

use std::time::Duration;

use chrono::{DateTime, Utc};
use lifeboat_shared::findings::{Finding, FindingKind, Severity};
use lifeboat_shared::protocol::{Outcome, ResultKind, RunResult};
use serde_json::json;

use crate::config::{AlertsConfig, RouteConfig};
use crate::escalation::{Event, Notification, dedup_key};
use crate::store::{AgentRecord, FlipRecord, NewMessage, Silence, Store, StoreError, TestRecord, VerdictRecord};

/// Default test interval when an inventory does not say (`docs/verdict.md`).
const DEFAULT_INTERVAL_SECONDS: i64 = 24 * 3600;

/// What a verdict is decided from.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub environment: String,
    pub asset: String,
    pub test: Option<TestRecord>,
    pub restore: Option<RunResult>,
    pub posture: Option<RunResult>,
    /// When the first run of the asset was due (the switch counts from then).
    pub first_due: Option<DateTime<Utc>>,
    /// The environment's agents (not revoked).
    pub agents: Vec<AgentRecord>,
    pub previous: Option<VerdictRecord>,
    /// An agent declares the asset but no agent declares a test of it.
    pub untested: bool,
}

/// Decides the verdict; `None` while there is nothing to judge yet (a new asset before its
/// first interval is over).
pub fn decide(inputs: &Inputs, agent_lost_after: Duration, now: DateTime<Utc>) -> Option<VerdictRecord> {
    let asset = inputs.asset.as_str();
    let interval = inputs
        .test
        .as_ref()
        .map(|test| test.interval_seconds)
        .filter(|seconds| *seconds > 0)
        .unwrap_or(DEFAULT_INTERVAL_SECONDS);
    let schedule = inputs
        .test
        .as_ref()
        .map(|test| test.effective_schedule().to_owned())
        .unwrap_or_else(|| "on no schedule".to_owned());
    let lost: Vec<&AgentRecord> = inputs
        .agents
        .iter()
        .filter(|agent| {
            agent
                .last_seen
                .is_none_or(|seen| (now - seen).to_std().unwrap_or_default() > agent_lost_after)
        })
        .collect();
    let all_lost = !inputs.agents.is_empty() && lost.len() == inputs.agents.len();

    let mut reasons: Vec<Finding> = Vec::new();
    let mut recoverable = true;
    let lost_note = || {
        if all_lost {
            let names: Vec<&str> = lost.iter().map(|agent| agent.name.as_str()).collect();
            format!(
                " Its agent ({}) has not been heard from, so no test can run.",
                names.join(", ")
            )
        } else {
            String::new()
        }
    };
    match &inputs.restore {
        None if inputs.untested => {
            recoverable = false;
            reasons.push(
                Finding::new(
                    FindingKind::TestOverdue,
                    asset,
                    format!("{asset} has no restore test: nothing proves it can be recovered."),
                )
                .with_severity(Severity::Critical)
                .with_remediation(format!(
                    "Declare a [[test]] for {asset} in the agent's config, with the checks that prove its data is whole."
                )),
            );
        }
        None => {
            let started = inputs.first_due?;
            let waited = (now - started).num_seconds();
            if waited < interval {
                return None;
            }
            recoverable = false;
            reasons.push(
                Finding::new(
                    FindingKind::TestOverdue,
                    asset,
                    format!(
                        "{asset} has never passed a restore test; its first was due {} ago and it is tested {schedule}.{}",
                        human(waited),
                        lost_note()
                    ),
                )
                .with_evidence(json!({"first_due": started, "interval_seconds": interval, "lost_agents": lost.iter().map(|a| &a.name).collect::<Vec<_>>()}))
                .with_remediation("Check that an agent of this environment is connected and declares the test."),
            );
        }
        Some(restore) => {
            let age = (now - restore.finished_at).num_seconds();
            if restore.outcome != Outcome::Passed {
                recoverable = false;
                reasons.extend(restore.findings.iter().cloned());
                if restore.findings.is_empty() {
                    reasons.push(Finding::new(
                        FindingKind::RestoreCheckFailed,
                        asset,
                        format!("The last restore test of {asset} ended {}.", restore.outcome.as_str()),
                    ));
                }
            } else {
                reasons.extend(
                    restore
                        .findings
                        .iter()
                        .filter(|finding| finding.severity >= Severity::Medium)
                        .cloned(),
                );
            }
            if age > interval {
                recoverable = false;
                reasons.push(
                    Finding::new(
                        FindingKind::TestOverdue,
                        asset,
                        format!(
                            "{asset} has not passed a restore test for {}; it must pass every {} (tested {schedule}).{}",
                            human(age),
                            human(interval),
                            lost_note()
                        ),
                    )
                    .with_evidence(json!({"last_result": restore.finished_at, "interval_seconds": interval}))
                    .with_remediation("Check that its agent is connected and its runs are not missed (lifeboat-coordinator runs --asset)."),
                );
            }
        }
    }
    if !lost.is_empty() {
        for agent in &lost {
            let silent = agent
                .last_seen
                .map_or_else(|| "ever".to_owned(), |seen| human((now - seen).num_seconds()));
            reasons.push(
                Finding::new(
                    FindingKind::AgentLost,
                    agent.name.as_str(),
                    format!(
                        "Agent {} has not been heard from for {silent}; tests of its assets cannot run.",
                        agent.name
                    ),
                )
                .with_evidence(json!({"agent_id": agent.id.to_string(), "last_seen": agent.last_seen}))
                .with_remediation(
                    "Check the agent's host and its lifeboat-agent service; its logs say why it cannot connect.",
                ),
            );
        }
    }
    if let Some(posture) = &inputs.posture {
        let newer = inputs
            .restore
            .as_ref()
            .is_none_or(|restore| posture.finished_at >= restore.finished_at);
        if newer {
            for finding in &posture.findings {
                if finding.severity == Severity::Critical {
                    recoverable = false;
                }
                if finding.severity >= Severity::High && !reasons.contains(finding) {
                    reasons.push(finding.clone());
                }
            }
        }
    }
    reasons.sort_by_key(|finding| std::cmp::Reverse(finding.severity));
    reasons.dedup_by(|a, b| a.kind == b.kind && a.subject == b.subject && a.message == b.message);
    let passed = inputs
        .restore
        .as_ref()
        .filter(|restore| restore.outcome == Outcome::Passed);
    Some(VerdictRecord {
        environment: inputs.environment.clone(),
        asset: inputs.asset.clone(),
        recoverable,
        reasons,
        last_passed_at: passed
            .map(|restore| restore.finished_at)
            .or_else(|| inputs.previous.as_ref().and_then(|previous| previous.last_passed_at)),
        backup_age_seconds: passed
            .map(|restore| restore.recovery_point_age_seconds + (now - restore.finished_at).num_seconds()),
        restore_seconds: inputs.restore.as_ref().map(|restore| restore.rto_seconds),
        rpo_seconds: inputs.test.as_ref().map(|test| test.rpo_seconds),
        rto_seconds: inputs.test.as_ref().map(|test| test.rto_seconds),
        since: now,
        updated_at: now,
    })
}

/// `47 min`, `3 h`, `3 days`.
pub fn human(seconds: i64) -> String {
    let seconds = seconds.max(0);
    if seconds < 120 {
        format!("{seconds} s")
    } else if seconds < 2 * 3600 {
        format!("{} min", seconds / 60)
    } else if seconds < 2 * 86_400 {
        format!("{} h", seconds / 3600)
    } else {
        format!("{} days", seconds / 86_400)
    }
}

/// `*` globs for environment names (`*` matches any run of characters).
pub(crate) fn env_matches(pattern: &str, environment: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = environment.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(position) => rest = &rest[position + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// The messages a flip asks for: a trigger to every channel of every matching route (after the
/// route's group wait), or a resolve to every channel where a ticket is open.
pub fn messages_for_flip(
    flip: &FlipRecord,
    open_channels: &[String],
    routes: &[RouteConfig],
    silences: &[Silence],
    public_url: Option<&str>,
) -> Vec<NewMessage> {
    let key = dedup_key(&flip.environment, &flip.asset);
    let severity = flip
        .reasons
        .iter()
        .map(|finding| finding.severity)
        .max()
        .unwrap_or(Severity::Critical);
    let silenced = silences.iter().any(|silence| {
        silence
            .environment
            .as_deref()
            .is_none_or(|environment| environment == flip.environment)
            && silence.asset.as_deref().is_none_or(|asset| asset == flip.asset)
    });
    let status_url = public_url.map(|url| {
        format!(
            "{}/assets/{}/{}",
            url.trim_end_matches('/'),
            flip.environment,
            flip.asset
        )
    });
    let worst = flip
        .reasons
        .first()
        .map(|finding| finding.message.clone())
        .unwrap_or_default();
    let notification = |event: Event| Notification {
        event,
        dedup_key: key.clone(),
        environment: flip.environment.clone(),
        asset: flip.asset.clone(),
        severity: if event == Event::Resolve {
            Severity::Info
        } else {
            severity
        },
        summary: if event == Event::Resolve {
            format!("{} ({}) is recoverable again.", flip.asset, flip.environment)
        } else {
            format!("{} ({}) is NOT RECOVERABLE: {worst}", flip.asset, flip.environment)
        },
        reasons: flip.reasons.clone(),
        status_url: status_url.clone(),
        at: flip.at,
    };
    let mut messages = Vec::new();
    if flip.recoverable {
        let payload = serde_json::to_value(notification(Event::Resolve)).unwrap_or_default();
        for channel in open_channels {
            messages.push(NewMessage {
                channel: channel.clone(),
                event: "resolve",
                dedup_key: key.clone(),
                payload: payload.clone(),
                not_before: flip.at,
                silenced: false,
            });
        }
        return messages;
    }
    let payload = serde_json::to_value(notification(Event::Trigger)).unwrap_or_default();
    let mut seen = std::collections::BTreeMap::<String, Duration>::new();
    for route in routes {
        if severity < route.min_severity
            || !route
                .environments
                .iter()
                .any(|pattern| env_matches(pattern, &flip.environment))
        {
            continue;
        }
        let wait: Duration = route.group_wait.map(Duration::from).unwrap_or_default();
        for channel in &route.channels {
            let entry = seen.entry(channel.clone()).or_default();
            *entry = (*entry).max(wait);
        }
    }
    for (channel, wait) in seen {
        messages.push(NewMessage {
            channel,
            event: "trigger",
            dedup_key: key.clone(),
            payload: payload.clone(),
            not_before: flip.at + chrono::Duration::from_std(wait).unwrap_or_default(),
            silenced,
        });
    }
    messages
}

/// Decides and records verdicts.
#[derive(Clone)]
pub struct Posture {
    pub store: Store,
    pub routes: Vec<RouteConfig>,
    pub alerts: AlertsConfig,
}

impl Posture {
    /// Re-evaluates these assets, reading the tests, agents and inventories once for all of
    /// them; returns the flips. An asset whose evaluation fails is logged and left to the next
    /// pass; the others go on.
    pub async fn evaluate_assets(
        &self,
        assets: &[(String, String)],
        now: DateTime<Utc>,
    ) -> Result<Vec<FlipRecord>, StoreError> {
        let tests = self.store.tests().await?;
        let agents = self.store.list_agents().await?;
        let declared = self.declared_assets().await?;
        let mut flips = Vec::new();
        for (environment, asset) in assets {
            match self
                .evaluate_with(environment, asset, &tests, &agents, &declared, now)
                .await
            {
                Ok(Some(flip)) => flips.push(flip),
                Ok(None) => {}
                Err(err) => {
                    tracing::warn!(%environment, %asset, error = %err, "cannot evaluate a verdict; the next pass retries")
                }
            }
        }
        Ok(flips)
    }

    /// (environment, asset) of every asset an agent of the environment declares without any
    /// agent of it declaring a test of it. Read from the inventories themselves: the tests table
    /// follows them a few seconds later, and an asset must not look untested meanwhile.
    async fn declared_assets(&self) -> Result<std::collections::BTreeSet<(String, String)>, StoreError> {
        let mut declared = std::collections::BTreeSet::new();
        let mut tested = std::collections::BTreeSet::new();
        for (_agent, environment, inventory) in self.store.inventories().await? {
            let Ok(inventory) = serde_json::from_value::<lifeboat_shared::protocol::Inventory>(inventory) else {
                continue;
            };
            for asset in inventory.assets {
                declared.insert((environment.to_string(), asset.name));
            }
            for test in inventory.tests {
                tested.insert((environment.to_string(), test.asset));
            }
        }
        Ok(declared.difference(&tested).cloned().collect())
    }

    async fn evaluate_with(
        &self,
        environment: &str,
        asset: &str,
        tests: &[TestRecord],
        agents: &[AgentRecord],
        declared: &std::collections::BTreeSet<(String, String)>,
        now: DateTime<Utc>,
    ) -> Result<Option<FlipRecord>, StoreError> {
        let tested = tests
            .iter()
            .any(|test| test.environment == environment && test.asset == asset);
        let inputs = Inputs {
            environment: environment.to_owned(),
            asset: asset.to_owned(),
            test: tests
                .iter()
                .find(|test| test.environment == environment && test.asset == asset)
                .cloned(),
            restore: self
                .store
                .latest_result(environment, asset, ResultKind::Restore)
                .await?
                .map(|stored| stored.result),
            posture: self
                .store
                .latest_result(environment, asset, ResultKind::Posture)
                .await?
                .map(|stored| stored.result),
            first_due: self.store.first_due(environment, asset).await?,
            agents: agents
                .iter()
                .filter(|agent| agent.environment.as_str() == environment && agent.revoked_at.is_none())
                .cloned()
                .collect(),
            previous: self.store.verdict(environment, asset).await?,
            untested: !tested && declared.contains(&(environment.to_owned(), asset.to_owned())),
        };
        let Some(verdict) = decide(&inputs, self.alerts.agent_lost_after.into(), now) else {
            return Ok(None);
        };
        if inputs.previous.as_ref().is_some_and(|previous| {
            previous.recoverable == verdict.recoverable
                && previous.reasons == verdict.reasons
                && previous.backup_age_seconds == verdict.backup_age_seconds
        }) {
            return Ok(None);
        }
        let silences = self.store.silences(now).await?;
        let key = dedup_key(environment, asset);
        let routes = self.routes.clone();
        let public_url = self.alerts.public_url.clone();
        let flip = self
            .store
            .record_verdict(&verdict, &key, |flip, _previous, open| {
                messages_for_flip(flip, open, &routes, &silences, public_url.as_deref())
            })
            .await?;
        if let Some(flip) = &flip {
            tracing::info!(
                environment,
                asset,
                recoverable = flip.recoverable,
                reasons = flip.reasons.len(),
                "verdict flipped"
            );
        }
        Ok(flip)
    }

    /// Re-evaluates every known asset (the dead-man's switch); returns the flips.
    pub async fn evaluate_all(&self, now: DateTime<Utc>) -> Result<Vec<FlipRecord>, StoreError> {
        let mut assets: Vec<(String, String)> = self
            .store
            .tests()
            .await?
            .into_iter()
            .map(|test| (test.environment, test.asset))
            .collect();
        for verdict in self.store.verdicts(None).await? {
            assets.push((verdict.environment, verdict.asset));
        }
        assets.extend(self.declared_assets().await?);
        assets.sort();
        assets.dedup();
        self.evaluate_assets(&assets, now).await
    }

    /// Queues reminders for tickets still open after a route's `repeat_interval` (at most
    /// `max_reminders` per ticket).
    pub async fn remind(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let verdicts = self.store.verdicts(None).await?;
        let mut messages = Vec::new();
        for ticket in self.store.open_tickets().await? {
            let Some(verdict) = verdicts.iter().find(|verdict| {
                !verdict.recoverable && dedup_key(&verdict.environment, &verdict.asset) == ticket.dedup_key
            }) else {
                continue;
            };
            let every = self
                .routes
                .iter()
                .filter(|route| route.channels.contains(&ticket.channel))
                .filter(|route| {
                    route
                        .environments
                        .iter()
                        .any(|pattern| env_matches(pattern, &verdict.environment))
                })
                .filter_map(|route| route.repeat_interval)
                .map(Duration::from)
                .min();
            let Some(every) = every else { continue };
            let due = ticket.last_sent_at + chrono::Duration::from_std(every).unwrap_or_default();
            if now < due || ticket.reminders >= i64::from(self.alerts.max_reminders) {
                continue;
            }
            let notification = Notification {
                event: Event::Reminder,
                dedup_key: ticket.dedup_key.clone(),
                environment: verdict.environment.clone(),
                asset: verdict.asset.clone(),
                severity: verdict
                    .reasons
                    .first()
                    .map_or(Severity::Critical, |finding| finding.severity),
                summary: format!(
                    "{} ({}) is still NOT RECOVERABLE, since {}.",
                    verdict.asset,
                    verdict.environment,
                    verdict.since.format("%Y-%m-%d %H:%M UTC")
                ),
                reasons: verdict.reasons.clone(),
                status_url: self.alerts.public_url.as_ref().map(|url| {
                    format!(
                        "{}/assets/{}/{}",
                        url.trim_end_matches('/'),
                        verdict.environment,
                        verdict.asset
                    )
                }),
                at: now,
            };
            messages.push(NewMessage {
                channel: ticket.channel.clone(),
                event: "reminder",
                dedup_key: ticket.dedup_key.clone(),
                payload: serde_json::to_value(notification).unwrap_or_default(),
                not_before: now,
                silenced: false,
            });
        }
        let count = messages.len();
        if count > 0 {
            self.store.enqueue_messages(&messages, now).await?;
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lifeboat_shared::ids::{AgentId, Environment, ResultId};

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-25T12:00:00Z")
            .expect("time")
            .with_timezone(&Utc)
    }

    fn test_record() -> TestRecord {
        TestRecord {
            environment: "prod".into(),
            asset: "db".into(),
            schedule: "0 */6 * * *".into(),
            timeout_seconds: 3600,
            interval_seconds: 6 * 3600,
            rpo_seconds: 86_400,
            rto_seconds: 1800,
            override_schedule: None,
            override_timeout_seconds: None,
            paused: false,
            next_due_at: None,
            updated_at: now(),
        }
    }

    fn result(outcome: Outcome, hours_ago: i64, kind: ResultKind) -> RunResult {
        let mut result = RunResult::for_test("db", outcome);
        result.result_id = ResultId::new();
        result.kind = kind;
        result.finished_at = now() - chrono::Duration::hours(hours_ago);
        result.started_at = result.finished_at;
        result
    }

    fn agent(seen_minutes_ago: i64) -> AgentRecord {
        AgentRecord {
            id: AgentId(uuid::Uuid::nil()),
            name: "prod-1".into(),
            environment: Environment::parse("prod").expect("env"),
            hostname: None,
            version: None,
            capabilities: serde_json::Value::Null,
            connected: seen_minutes_ago < 1,
            last_seen: Some(now() - chrono::Duration::minutes(seen_minutes_ago)),
            cert_not_after: None,
            revoked_at: None,
            created_at: now(),
        }
    }

    fn inputs(restore: Option<RunResult>, agents: Vec<AgentRecord>) -> Inputs {
        Inputs {
            environment: "prod".into(),
            asset: "db".into(),
            test: Some(test_record()),
            restore,
            posture: None,
            first_due: Some(now() - chrono::Duration::hours(30)),
            agents,
            previous: None,
            untested: false,
        }
    }

    const LOST: Duration = Duration::from_secs(900);

    #[test]
    fn a_recent_pass_is_recoverable_and_an_old_one_is_overdue() {
        let fresh = decide(
            &inputs(Some(result(Outcome::Passed, 1, ResultKind::Restore)), vec![agent(0)]),
            LOST,
            now(),
        )
        .expect("verdict");
        assert!(fresh.recoverable, "{fresh:?}");
        let old = decide(
            &inputs(Some(result(Outcome::Passed, 7, ResultKind::Restore)), vec![agent(0)]),
            LOST,
            now(),
        )
        .expect("verdict");
        assert!(!old.recoverable);
        assert_eq!(old.reasons[0].kind, FindingKind::TestOverdue);
        assert!(old.reasons[0].message.contains("7 h"), "{}", old.reasons[0].message);
    }

    #[test]
    fn a_lost_agent_explains_the_overdue_test_in_the_same_verdict() {
        let verdict = decide(
            &inputs(Some(result(Outcome::Passed, 7, ResultKind::Restore)), vec![agent(60)]),
            LOST,
            now(),
        )
        .expect("verdict");
        assert!(!verdict.recoverable);
        let kinds: Vec<FindingKind> = verdict.reasons.iter().map(|finding| finding.kind).collect();
        assert!(
            kinds.contains(&FindingKind::TestOverdue) && kinds.contains(&FindingKind::AgentLost),
            "{kinds:?}"
        );
        let overdue = verdict
            .reasons
            .iter()
            .find(|finding| finding.kind == FindingKind::TestOverdue)
            .expect("overdue");
        assert!(overdue.message.contains("prod-1"), "{}", overdue.message);
        // Lost, but the last pass still counts: recoverable, with the lost agent said.
        let recent = decide(
            &inputs(Some(result(Outcome::Passed, 1, ResultKind::Restore)), vec![agent(60)]),
            LOST,
            now(),
        )
        .expect("verdict");
        assert!(recent.recoverable);
        assert_eq!(recent.reasons[0].kind, FindingKind::AgentLost);
    }

    #[test]
    fn a_new_asset_waits_one_interval_and_a_failure_or_critical_posture_is_not_recoverable() {
        let mut new = inputs(None, vec![agent(0)]);
        new.first_due = Some(now() - chrono::Duration::hours(1));
        assert!(decide(&new, LOST, now()).is_none());
        new.first_due = None;
        assert!(decide(&new, LOST, now()).is_none());
        let failed = decide(
            &inputs(Some(result(Outcome::Failed, 1, ResultKind::Restore)), vec![agent(0)]),
            LOST,
            now(),
        )
        .expect("verdict");
        assert!(!failed.recoverable);
        let mut exposed = inputs(Some(result(Outcome::Passed, 2, ResultKind::Restore)), vec![agent(0)]);
        let mut posture = result(Outcome::Failed, 0, ResultKind::Posture);
        posture.findings.push(Finding::new(
            FindingKind::BlastRadiusShared,
            "db",
            "one token can destroy all",
        ));
        exposed.posture = Some(posture);
        let verdict = decide(&exposed, LOST, now()).expect("verdict");
        assert!(!verdict.recoverable);
        assert_eq!(verdict.reasons[0].kind, FindingKind::BlastRadiusShared);
    }

    #[test]
    fn a_declared_asset_without_a_test_is_not_recoverable_at_once() {
        let mut untested = inputs(None, vec![agent(0)]);
        untested.test = None;
        untested.first_due = None;
        assert!(
            decide(&untested, LOST, now()).is_none(),
            "unknown until an agent declares it"
        );
        untested.untested = true;
        let verdict = decide(&untested, LOST, now()).expect("verdict");
        assert!(!verdict.recoverable);
        assert_eq!(verdict.reasons[0].kind, FindingKind::TestOverdue);
        assert!(
            verdict.reasons[0].message.contains("no restore test"),
            "{}",
            verdict.reasons[0].message
        );
    }

    #[test]
    fn flips_route_by_environment_and_severity_with_group_wait_and_silences() {
        let flip = FlipRecord {
            id: 1,
            environment: "pocketos-prod".into(),
            asset: "db".into(),
            recoverable: false,
            reasons: vec![Finding::new(FindingKind::BackupStale, "db", "92 days old")],
            at: now(),
        };
        let route = |environments: &[&str], min: Severity, channels: &[&str], wait: u64| RouteConfig {
            environments: environments.iter().map(|e| (*e).to_owned()).collect(),
            min_severity: min,
            channels: channels.iter().map(|c| (*c).to_owned()).collect(),
            group_wait: Some(lifeboat_shared::durations::HumanDuration::from_secs(wait)),
            repeat_interval: None,
        };
        let routes = vec![
            route(&["pocketos-*"], Severity::High, &["jira", "pager"], 30),
            route(&["staging"], Severity::Info, &["hook"], 0),
            route(&["*"], Severity::Critical, &["jira"], 60),
        ];
        let messages = messages_for_flip(&flip, &[], &routes, &[], Some("https://lb.example"));
        let channels: Vec<&str> = messages.iter().map(|m| m.channel.as_str()).collect();
        assert_eq!(channels, ["jira", "pager"]);
        assert_eq!(messages[0].not_before, now() + chrono::Duration::seconds(60));
        assert_eq!(
            messages[0].payload["status_url"],
            "https://lb.example/assets/pocketos-prod/db"
        );
        let silence = Silence {
            id: 1,
            environment: Some("pocketos-prod".into()),
            asset: None,
            until: now() + chrono::Duration::hours(1),
            reason: "maintenance".into(),
        };
        assert!(
            messages_for_flip(&flip, &[], &routes, &[silence], None)
                .iter()
                .all(|m| m.silenced)
        );
        let back = FlipRecord {
            recoverable: true,
            ..flip
        };
        let resolves = messages_for_flip(&back, &["jira".to_owned()], &routes, &[], None);
        assert_eq!(resolves.len(), 1);
        assert_eq!(resolves[0].event, "resolve");
        assert!(
            env_matches("*", "x") && env_matches("pocketos-*", "pocketos-prod") && !env_matches("pocketos-*", "acme")
        );
        assert!(env_matches("*-prod", "pocketos-prod") && !env_matches("*-prod", "pocketos-staging"));
    }
}
