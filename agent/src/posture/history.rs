//! "Would you know it happened?" Each posture scan is compared with the previous one, kept in
//! `work_dir/posture/state.json`: recovery points that disappeared outside their source's
//! retention (`backup.vanished`), a credential whose scope grew (`drift.detected`), and the
//! newest safe recovery point restored and checked, with its runbook, which `asset.missing`
//! hands to whoever must restore.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use lifeboat_shared::findings::{Finding, FindingKind, Severity};
use serde::{Deserialize, Serialize};
use serde_json::json;

use lifeboat_shared::durations::human;

/// A recovery point as remembered between scans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointSeen {
    pub id: String,
    pub created_at: DateTime<Utc>,
}

/// The last restore test that passed on a safe recovery point of an asset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastGood {
    pub backup: String,
    pub recovery_point: String,
    pub recovery_point_created_at: DateTime<Utc>,
    pub tested_at: DateTime<Utc>,
    pub rto_seconds: f64,
    pub runbook: Vec<String>,
}

/// What the previous scan saw.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    pub scanned_at: Option<DateTime<Utc>>,
    /// Recovery points per backup source.
    #[serde(default)]
    pub sources: BTreeMap<String, Vec<PointSeen>>,
    /// Capabilities per credential fingerprint, as `action resource selector` lines.
    #[serde(default)]
    pub scopes: BTreeMap<String, BTreeSet<String>>,
    /// The last passing test of a safe recovery point, per asset.
    #[serde(default)]
    pub last_good: BTreeMap<String, LastGood>,
}

/// The state file of one agent.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn new(work_dir: &Path) -> Self {
        Self {
            path: work_dir.join("posture").join("state.json"),
        }
    }

    /// The previous state; a missing or unreadable file is an empty state (logged).
    pub fn load(&self) -> State {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|err| {
                tracing::warn!(path = %self.path.display(), error = %err, "posture state unreadable; starting afresh");
                State::default()
            }),
            Err(_) => State::default(),
        }
    }

    /// Writes atomically (temp file, fsync, rename).
    pub fn save(&self, state: &State) -> std::io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let temp = self.path.with_extension("json.tmp");
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(&serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?)?;
        file.sync_all()?;
        std::fs::rename(&temp, &self.path)
    }
}

/// `backup.vanished` when recovery points of `source` disappeared since the previous scan while
/// still inside its retention (every disappearance counts when no retention is declared).
pub fn vanished(
    source: &str,
    asset: &str,
    previous: Option<&Vec<PointSeen>>,
    current: &[PointSeen],
    retention_seconds: Option<u64>,
    now: DateTime<Utc>,
) -> Option<Finding> {
    let previous = previous?;
    let present: BTreeSet<&str> = current.iter().map(|point| point.id.as_str()).collect();
    let gone: Vec<&PointSeen> = previous
        .iter()
        .filter(|point| !present.contains(point.id.as_str()))
        .filter(|point| {
            retention_seconds.is_none_or(|retention| (now - point.created_at).num_seconds() < retention as i64)
        })
        .collect();
    if gone.is_empty() {
        return None;
    }
    let retention = retention_seconds.map_or_else(
        || "no retention is declared for it".to_owned(),
        |seconds| format!("its retention is {}", human(seconds as f64)),
    );
    Some(
        Finding::new(
            FindingKind::BackupVanished,
            source,
            format!(
                "{} recovery point{} of {source} (backups of {asset}) disappeared since the last scan, outside its \
                 retention policy ({retention}).",
                gone.len(),
                if gone.len() == 1 { "" } else { "s" }
            ),
        )
        .with_evidence(json!({
            "asset": asset,
            "vanished": gone.iter().take(100).collect::<Vec<_>>(),
            "vanished_count": gone.len(),
            "remaining": current.len(),
            "retention_seconds": retention_seconds,
        }))
        .with_remediation(format!(
            "Find out who or what deleted them (the backup host's audit log, shell history, the credentials that can \
             reach {source}); if pruning is intended, declare `retention` on the [[backup]] so it is not reported."
        )),
    )
}

/// `drift.detected` for a credential whose capabilities grew since the previous scan.
pub fn scope_grew(
    subject: &str,
    fingerprint: &str,
    previous: Option<&BTreeSet<String>>,
    current: &BTreeSet<String>,
) -> Option<Finding> {
    let previous = previous?;
    let added: Vec<&String> = current.difference(previous).collect();
    if added.is_empty() {
        return None;
    }
    let destructive = added
        .iter()
        .any(|line| line.starts_with("destroy") || line.starts_with("overwrite"));
    Some(
        Finding::new(
            FindingKind::DriftDetected,
            subject,
            format!(
                "The scope of {subject} grew since the last scan: it can now {}.",
                added
                    .iter()
                    .take(3)
                    .map(|line| line.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        )
        .with_severity(if destructive { Severity::High } else { Severity::Medium })
        .with_evidence(json!({"fingerprint": fingerprint, "added": added}))
        .with_remediation("Find who widened this credential and whether it needs to; narrow it back if not."),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(id: &str, days: i64, now: DateTime<Utc>) -> PointSeen {
        PointSeen {
            id: id.into(),
            created_at: now - chrono::Duration::days(days),
        }
    }

    #[test]
    fn points_gone_inside_retention_are_reported_and_pruned_ones_are_not() {
        let now = Utc::now();
        let before = vec![point("a", 1, now), point("b", 2, now), point("old", 40, now)];
        let after = vec![point("a", 1, now)];
        let finding = vanished("nightly", "db", Some(&before), &after, Some(30 * 86_400), now).expect("vanished");
        assert_eq!(finding.evidence["vanished_count"], 1);
        assert!(
            finding.message.starts_with("1 recovery point of nightly"),
            "{}",
            finding.message
        );
        assert!(vanished("nightly", "db", Some(&before), &before, None, now).is_none());
        assert!(vanished("nightly", "db", None, &after, None, now).is_none());
        let all = vanished("nightly", "db", Some(&before), &after, None, now).expect("vanished");
        assert_eq!(all.evidence["vanished_count"], 2);
    }

    #[test]
    fn a_grown_scope_is_drift() {
        let before: BTreeSet<String> = ["read variables".to_owned()].into();
        let after: BTreeSet<String> = ["read variables".to_owned(), "destroy volume".to_owned()].into();
        let finding = scope_grew("token", "fp:1", Some(&before), &after).expect("drift");
        assert_eq!(finding.severity, Severity::High);
        assert!(scope_grew("token", "fp:1", Some(&after), &after).is_none());
    }

    #[test]
    fn state_round_trips_atomically() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = StateFile::new(dir.path());
        assert!(file.load().scanned_at.is_none());
        let mut state = State {
            scanned_at: Some(Utc::now()),
            ..State::default()
        };
        state.sources.insert("nightly".into(), vec![point("a", 1, Utc::now())]);
        file.save(&state).expect("save");
        assert_eq!(file.load().sources["nightly"].len(), 1);
    }
}
