//! The decision: may this resource be destroyed now? A pure function over a snapshot — the
//! assets exposed on the resource ([`Exposure`]) and the fresh facts of each (verdict, recent
//! restore tests, latest posture findings) — with an explicit `now`.
//!
//! Allowed only if every exposed asset is recoverable *from a point that does not live on the
//! resource*: a backup source not on it whose recovery point passed a restore test within the
//! asset's test interval and is still within its RPO, while the asset's verdict is recoverable
//! and no critical finding stands. A resource no inventory knows is refused, unless the
//! environment's policy allows unknown resources. Every reason is a sentence an operator (or an
//! AI agent) can act on.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use lifeboat_shared::findings::{Finding, Severity};
use serde::{Deserialize, Serialize};

use super::placement::Exposure;
use super::resources::{Operation, Resource};
use crate::config::UnknownResources;
use crate::posture::human;
use crate::store::{AssetKey, RestorePoint, VerdictRecord};

/// Critical findings quoted per asset at most (the rest are counted).
const MAX_FINDINGS_QUOTED: usize = 3;

/// What is known, right now, about one exposed asset.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AssetFacts {
    pub verdict: Option<VerdictRecord>,
    /// Recent restore tests, in any order.
    pub restores: Vec<RestorePoint>,
    /// Findings of the latest posture scan, when it is newer than the latest restore test.
    pub posture_findings: Vec<Finding>,
}

/// The recovery point an asset could be recovered from once the resource is gone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SafePoint {
    pub backup: String,
    pub recovery_point: String,
    /// When its restore test passed.
    pub tested_at: DateTime<Utc>,
    /// Its age now.
    pub age_seconds: i64,
}

/// The guard's view of one exposed asset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssetAssessment {
    pub environment: String,
    pub asset: String,
    /// Recoverable from a point off the resource, per the rules above.
    pub recoverable: bool,
    /// Its own data is on the resource.
    pub data_on_resource: bool,
    /// Its backup sources on the resource.
    pub backups_on_resource: Vec<String>,
    pub safe_point: Option<SafePoint>,
    /// Why it is not recoverable without the resource; empty when it is.
    pub reasons: Vec<String>,
}

/// The answer to "may I destroy this now?".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub allowed: bool,
    /// In plain words, worst first; for a refusal, everything that must change.
    pub reasons: Vec<String>,
    pub assets: Vec<AssetAssessment>,
    pub environment: String,
    pub resource: Resource,
    pub operation: Operation,
    pub decided_at: DateTime<Utc>,
}

/// What is asked.
#[derive(Debug, Clone, PartialEq)]
pub struct Question<'a> {
    pub environment: &'a str,
    pub resource: &'a Resource,
    pub operation: Operation,
    pub unknown_resources: UnknownResources,
}

/// Decides. `facts` holds the facts of the exposed assets (missing ones count as unknown).
pub fn decide(
    question: &Question<'_>,
    exposures: &[Exposure<'_>],
    facts: &HashMap<AssetKey, AssetFacts>,
    now: DateTime<Utc>,
) -> Decision {
    let label = question.resource.label();
    let mut decision = Decision {
        allowed: false,
        reasons: Vec::new(),
        assets: Vec::new(),
        environment: question.environment.to_owned(),
        resource: question.resource.clone(),
        operation: question.operation,
        decided_at: now,
    };
    if exposures.is_empty() {
        let unknown = format!(
            "{label} is not known to Lifeboat: no agent's inventory or posture scan puts an asset or a backup on it, \
             so nothing says what a {} would lose",
            question.operation
        );
        decision.allowed = question.unknown_resources == UnknownResources::Allow;
        decision.reasons.push(if decision.allowed {
            format!(
                "{unknown}; allowed because unknown resources are allowed in {}",
                question.environment
            )
        } else {
            format!(
                "{unknown}; unknown resources are refused (declare its assets and backups in an agent's config, or set \
                 [guard.environments.{}] unknown_resources = \"allow\")",
                question.environment
            )
        });
        return decision;
    }
    let empty = AssetFacts::default();
    for exposure in exposures {
        let asset_facts = facts.get(&exposure.asset.key()).unwrap_or(&empty);
        decision.assets.push(assess(exposure, asset_facts, &label, now));
    }
    decision.allowed = decision.assets.iter().all(|asset| asset.recoverable);
    if decision.allowed {
        let points: Vec<String> = decision
            .assets
            .iter()
            .filter_map(|asset| {
                let point = asset.safe_point.as_ref()?;
                Some(format!(
                    "{} from {}/{} ({} old, restored and checked {} ago)",
                    asset.asset,
                    point.backup,
                    point.recovery_point,
                    human(point.age_seconds),
                    human((now - point.tested_at).num_seconds())
                ))
            })
            .collect();
        decision.reasons.push(format!(
            "every asset on {label} can be recovered from outside it: {}",
            points.join("; ")
        ));
    } else {
        decision.reasons = decision
            .assets
            .iter()
            .flat_map(|asset| asset.reasons.iter().cloned())
            .collect();
    }
    decision
}

/// One restore test as the decision weighs it.
struct Tested<'a> {
    point: &'a RestorePoint,
    /// Its recovery point's age now.
    age_now: i64,
    on_resource: bool,
    passed_in_interval: bool,
}

fn assess(exposure: &Exposure<'_>, facts: &AssetFacts, label: &str, now: DateTime<Utc>) -> AssetAssessment {
    let asset = exposure.asset;
    let name = asset.asset.as_str();
    let tests: Vec<Tested<'_>> = facts
        .restores
        .iter()
        .map(|point| Tested {
            point,
            age_now: point
                .recovery_point_age_seconds
                .saturating_add((now - point.finished_at).num_seconds().max(0)),
            on_resource: exposure.backups.contains(&point.backup) || point.backup.is_empty(),
            passed_in_interval: point.outcome == "passed"
                && (now - point.finished_at).num_seconds() <= asset.interval_seconds,
        })
        .collect();
    let safe = tests
        .iter()
        .filter(|test| !test.on_resource && test.passed_in_interval)
        .min_by_key(|test| test.age_now);
    let mut reasons = Vec::new();
    match &facts.verdict {
        None => reasons.push(format!("{name} has no verdict yet: nothing proves it can be recovered")),
        Some(verdict) if !verdict.recoverable => reasons.push(format!(
            "{name} is NOT RECOVERABLE: {}",
            verdict
                .reasons
                .first()
                .map_or("no restore test has passed", |finding| finding.message.as_str())
        )),
        Some(_) => {}
    }
    reasons.extend(safe_point_reason(exposure, &tests, safe, label));
    reasons.extend(critical_reasons(name, facts));
    AssetAssessment {
        environment: asset.environment.clone(),
        asset: asset.asset.clone(),
        recoverable: reasons.is_empty(),
        data_on_resource: exposure.data,
        backups_on_resource: exposure.backups.clone(),
        safe_point: safe.map(|test| SafePoint {
            backup: test.point.backup.clone(),
            recovery_point: test.point.recovery_point.clone(),
            tested_at: test.point.finished_at,
            age_seconds: test.age_now,
        }),
        reasons,
    }
}

/// Why the asset has no usable point off the resource: none passed within the interval, or the
/// best one is older than the RPO. `None` when `safe` is a point within the RPO.
fn safe_point_reason(
    exposure: &Exposure<'_>,
    tests: &[Tested<'_>],
    safe: Option<&Tested<'_>>,
    label: &str,
) -> Option<String> {
    let asset = exposure.asset;
    let name = asset.asset.as_str();
    let within_rpo = |age: i64| asset.rpo_seconds.is_none_or(|rpo| age <= rpo);
    let only_on_resource = tests
        .iter()
        .any(|test| test.passed_in_interval && test.on_resource && within_rpo(test.age_now));
    let elsewhere = tests
        .iter()
        .filter(|test| !test.on_resource)
        .min_by_key(|test| test.age_now)
        .map_or_else(
            || "no backup elsewhere was ever restored by Lifeboat".to_owned(),
            |test| format!("the newest backup elsewhere is {} old", human(test.age_now)),
        );
    match safe {
        None if only_on_resource => Some(format!(
            "{name}: its only backups within its RPO that passed a restore test are on {label}; {elsewhere}"
        )),
        None => Some(format!(
            "{name}: no backup outside {label} passed a restore test within its test interval ({}); {elsewhere}",
            human(asset.interval_seconds)
        )),
        Some(test) if !within_rpo(test.age_now) => Some(format!(
            "{name}: {}the newest safe backup is {} old; its RPO is {}",
            if only_on_resource {
                format!("its only backups within its RPO are on {label}; ")
            } else {
                String::new()
            },
            human(test.age_now),
            human(asset.rpo_seconds.unwrap_or_default())
        )),
        Some(_) => None,
    }
}

/// The critical findings that stand (the verdict's and a newer posture scan's), but the one the
/// "NOT RECOVERABLE" reason already quotes.
fn critical_reasons(name: &str, facts: &AssetFacts) -> Vec<String> {
    let worst = facts
        .verdict
        .as_ref()
        .filter(|verdict| !verdict.recoverable)
        .and_then(|verdict| verdict.reasons.first())
        .map(|finding| finding.message.as_str());
    let verdict_reasons = facts
        .verdict
        .as_ref()
        .map_or(&[][..], |verdict| verdict.reasons.as_slice());
    let mut critical: Vec<&str> = Vec::new();
    for finding in verdict_reasons.iter().chain(&facts.posture_findings) {
        let message = finding.message.as_str();
        if finding.severity == Severity::Critical && Some(message) != worst && !critical.contains(&message) {
            critical.push(message);
        }
    }
    let mut reasons: Vec<String> = critical
        .iter()
        .take(MAX_FINDINGS_QUOTED)
        .map(|message| format!("{name}: a critical finding stands: {message}"))
        .collect();
    if critical.len() > MAX_FINDINGS_QUOTED {
        reasons.push(format!(
            "{name}: {} more critical findings stand",
            critical.len() - MAX_FINDINGS_QUOTED
        ));
    }
    reasons
}

#[cfg(test)]
mod tests {
    use lifeboat_shared::findings::FindingKind;
    use lifeboat_shared::protocol::Location;

    use super::*;
    use crate::guard::placement::{PlacedAsset, PlacedBackup};

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-25T12:00:00Z")
            .expect("time")
            .with_timezone(&Utc)
    }

    fn asset() -> PlacedAsset {
        PlacedAsset {
            environment: "pocketos-prod".into(),
            asset: "rentals-db".into(),
            locations: vec![Location {
                provider: Some("railway".into()),
                volume: Some("vol-7f3a".into()),
                ..Location::default()
            }],
            rpo_seconds: Some(86_400),
            interval_seconds: 86_400,
            backups: vec![
                PlacedBackup {
                    name: "volume-dumps".into(),
                    locations: Vec::new(),
                    with_asset: true,
                },
                PlacedBackup {
                    name: "offsite".into(),
                    locations: Vec::new(),
                    with_asset: false,
                },
            ],
        }
    }

    fn restore(backup: &str, outcome: &str, hours_ago: i64, age_days: i64) -> RestorePoint {
        RestorePoint {
            finished_at: now() - chrono::Duration::hours(hours_ago),
            outcome: outcome.into(),
            backup: backup.into(),
            recovery_point: format!("{backup}-point"),
            recovery_seconds: 60.0,
            restore_seconds: 50.0,
            recovery_point_age_seconds: age_days * 86_400,
        }
    }

    fn verdict(recoverable: bool, reasons: Vec<Finding>) -> VerdictRecord {
        VerdictRecord {
            environment: "pocketos-prod".into(),
            asset: "rentals-db".into(),
            recoverable,
            reasons,
            last_passed_at: None,
            backup_age_seconds: None,
            restore_seconds: None,
            rpo_seconds: Some(86_400),
            rto_seconds: None,
            since: now(),
            updated_at: now(),
        }
    }

    fn ask(facts: AssetFacts) -> Decision {
        let placed = asset();
        let exposure = Exposure {
            asset: &placed,
            data: true,
            backups: vec!["volume-dumps".into()],
        };
        let resource = Resource::parse("railway", "volume:vol-7f3a").expect("valid");
        let question = Question {
            environment: "pocketos-prod",
            resource: &resource,
            operation: Operation::Delete,
            unknown_resources: UnknownResources::Refuse,
        };
        let facts = HashMap::from([(placed.key(), facts)]);
        decide(&question, &[exposure], &facts, now())
    }

    #[test]
    fn the_incident_is_refused_with_its_reasons() {
        let stale = Finding::new(
            FindingKind::BackupStale,
            "rentals-db",
            "The newest recoverable backup of rentals-db outside its blast radius is 92 days old.",
        );
        let decision = ask(AssetFacts {
            verdict: Some(verdict(false, vec![stale])),
            restores: vec![
                restore("volume-dumps", "passed", 2, 0),
                restore("offsite", "failed", 3, 92),
            ],
            posture_findings: vec![Finding::new(
                FindingKind::BlastRadiusShared,
                "rentals-db",
                "One credential can destroy rentals-db and every backup of it.",
            )],
        });
        assert!(!decision.allowed);
        let text = decision.reasons.join("\n");
        assert!(
            text.contains("rentals-db is NOT RECOVERABLE: The newest recoverable backup"),
            "{text}"
        );
        assert!(
            text.contains(
                "rentals-db: its only backups within its RPO that passed a restore test are on railway volume \
                 vol-7f3a; the newest backup elsewhere is 92 days old"
            ),
            "{text}"
        );
        assert!(text.contains("a critical finding stands: One credential"), "{text}");
        assert!(!decision.assets[0].recoverable);
        assert_eq!(decision.assets[0].safe_point, None);
    }

    #[test]
    fn a_fresh_tested_point_elsewhere_allows_it() {
        let decision = ask(AssetFacts {
            verdict: Some(verdict(true, Vec::new())),
            restores: vec![
                restore("volume-dumps", "passed", 1, 0),
                restore("offsite", "passed", 2, 0),
                restore("offsite", "failed", 30, 92),
            ],
            posture_findings: Vec::new(),
        });
        assert!(decision.allowed, "{:?}", decision.reasons);
        let point = decision.assets[0].safe_point.as_ref().expect("safe point");
        assert_eq!(point.backup, "offsite");
        assert_eq!(point.age_seconds, 2 * 3600);
        assert!(
            decision.reasons[0].contains("rentals-db from offsite/offsite-point"),
            "{:?}",
            decision.reasons
        );
    }

    #[test]
    fn an_old_pass_an_old_point_or_a_missing_verdict_refuses() {
        let overdue = ask(AssetFacts {
            verdict: Some(verdict(true, Vec::new())),
            restores: vec![restore("offsite", "passed", 30, 0)],
            posture_findings: Vec::new(),
        });
        assert!(!overdue.allowed);
        assert!(
            overdue.reasons[0].contains(
                "no backup outside railway volume vol-7f3a passed a restore test within its test interval (24 h)"
            ),
            "{:?}",
            overdue.reasons
        );
        let old = ask(AssetFacts {
            verdict: Some(verdict(true, Vec::new())),
            restores: vec![restore("offsite", "passed", 1, 3)],
            posture_findings: Vec::new(),
        });
        assert!(!old.allowed);
        assert!(
            old.reasons[0].contains("the newest safe backup is 3 days old; its RPO is 24 h"),
            "{:?}",
            old.reasons
        );
        let unknown = ask(AssetFacts::default());
        assert!(!unknown.allowed);
        assert!(
            unknown.reasons[0].contains("has no verdict yet"),
            "{:?}",
            unknown.reasons
        );
    }

    #[test]
    fn unknown_resources_follow_the_environments_policy() {
        let resource = Resource::parse("railway", "volume:vol-9").expect("valid");
        let mut question = Question {
            environment: "pocketos-staging",
            resource: &resource,
            operation: Operation::Wipe,
            unknown_resources: UnknownResources::Refuse,
        };
        let refused = decide(&question, &[], &HashMap::new(), now());
        assert!(!refused.allowed);
        assert!(
            refused.reasons[0].contains("not known to Lifeboat"),
            "{:?}",
            refused.reasons
        );
        assert!(refused.reasons[0].contains("[guard.environments.pocketos-staging]"));
        question.unknown_resources = UnknownResources::Allow;
        assert!(decide(&question, &[], &HashMap::new(), now()).allowed);
    }
}
