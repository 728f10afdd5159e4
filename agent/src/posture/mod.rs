//! Recovery posture: the silent failures no backup job reports (`docs/verdict.md`,
//! `docs/findings.md`). Where the asset and each backup source live and which failure domains they
//! share; which credentials lie around and what each can destroy; whether a recovery point is
//! outside the asset's blast radius; what changed since the last scan.
//!
//! A posture scan restores nothing and is cheap: the daemon runs one every `[scan] interval`,
//! and every restore test starts with one so that it can prefer a safe recovery point.
//!
//! # Layout
//!
//! - [`locations`]: detected and declared locations; shared failure domains.
//! - [`credentials`]: discovery + declared + Lifeboat's own credentials, analysed; their findings.
//! - [`blast`]: the credential → can destroy → place graph; safety; `blast_radius.shared`.
//! - [`history`]: the previous scan; `backup.vanished`, scope drift, the last good restore.

pub mod blast;
pub mod credentials;
pub mod history;
pub mod locations;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use lifeboat_shared::findings::{Finding, FindingKind, Severity};
use lifeboat_shared::protocol::{Outcome, ResultKind, RunResult};
use serde::Serialize;
use serde_json::json;

use crate::backups::{self, RecoveryPoint, SourceSpec};
use crate::config::{AgentConfig, AssetConfig, AssetKind, BackupConfig};
use crate::credentials::FingerprintKey;
use crate::credentials::redact::redact_passwords;
use crate::credentials::scope::Hits;
use crate::posture::blast::{Edge, Safety, SourceView};
use crate::posture::credentials::{AnalysedCredential, Discovery, DiscoveryStats};
use crate::posture::history::{PointSeen, State, StateFile};
use crate::posture::locations::{Placed, Shared};
use crate::runner::psql;
use lifeboat_shared::durations::human;

/// One backup source of an asset, as the posture scan found it.
#[derive(Debug, Clone, Serialize)]
pub struct SourcePosture {
    pub backup: String,
    pub place: Placed,
    #[serde(skip)]
    pub points: Vec<RecoveryPoint>,
    pub point_count: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether `error` is the agent's set-up (the discovery jail could not run), not the source.
    #[serde(skip)]
    pub agent_problem: bool,
    pub safety: Safety,
}

/// One asset, as the posture scan found it.
#[derive(Debug, Clone, Serialize)]
pub struct AssetPosture {
    pub asset: String,
    pub place: Placed,
    /// Why production could not be reached, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreachable: Option<String>,
    pub sources: Vec<SourcePosture>,
    /// Posture findings (no restore involved), unsorted.
    #[serde(skip)]
    pub findings: Vec<Finding>,
    /// Credential → can destroy → place edges that touch this asset.
    pub blast_radius: Vec<Edge>,
}

impl AssetPosture {
    /// Names of the backup sources outside the blast radius.
    pub fn safe_sources(&self) -> BTreeSet<String> {
        self.sources
            .iter()
            .filter(|source| source.safety.safe)
            .map(|source| source.backup.clone())
            .collect()
    }
}

/// A whole posture scan.
#[derive(Debug, Clone)]
pub struct Assessment {
    pub scanned_at: DateTime<Utc>,
    pub assets: Vec<AssetPosture>,
    pub credentials: Vec<AnalysedCredential>,
    /// Findings about credentials that reach no declared asset or backup.
    pub unattached: Vec<Finding>,
    pub discovery: DiscoveryStats,
    /// The state to save for the next scan.
    pub next_state: State,
}

impl Assessment {
    pub fn asset(&self, name: &str) -> Option<&AssetPosture> {
        self.assets.iter().find(|asset| asset.asset == name)
    }
}

/// Runs a posture scan of every declared asset.
pub async fn assess(
    config: &AgentConfig,
    discovery: &Discovery,
    key: &FingerprintKey,
    previous: &State,
    now: DateTime<Utc>,
) -> Assessment {
    let (credentials, stats) =
        credentials::discover_and_analyse(&config.credential, &config.asset, discovery, key).await;
    let mut next_state = State {
        scanned_at: Some(now),
        last_good: previous.last_good.clone(),
        ..State::default()
    };

    let mut assets = Vec::new();
    for asset in &config.asset {
        assets.push(assess_asset(config, asset, &credentials, previous, &mut next_state, now).await);
    }

    // Credential findings go to every asset whose data or backups the credential can destroy.
    let mut unattached = Vec::new();
    for credential in &credentials {
        let mut destroys = Vec::new();
        let mut touched = BTreeSet::new();
        for asset in &assets {
            if credential.destroys(&asset.place.effective, Hits::Data) {
                destroys.push(asset.asset.clone());
                touched.insert(asset.asset.clone());
            }
            for source in &asset.sources {
                if credential.destroys(&source.place.effective, Hits::Backups) {
                    destroys.push(format!("the backups in {}", source.backup));
                    touched.insert(asset.asset.clone());
                }
            }
        }
        let mut findings = credentials::findings(credential, &destroys);
        let scope: BTreeSet<String> = credential
            .public
            .capabilities
            .iter()
            .map(|capability| {
                format!(
                    "{} {} {}",
                    serde_json::to_value(capability.action)
                        .ok()
                        .and_then(|value| value.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    capability.resource,
                    serde_json::to_string(&capability.selector).unwrap_or_default()
                )
            })
            .collect();
        let subject = credential.public.name.clone().unwrap_or_else(|| credential.describe());
        if let Some(drift) = history::scope_grew(
            &subject,
            &credential.public.fingerprint,
            previous.scopes.get(&credential.public.fingerprint),
            &scope,
        ) {
            findings.push(drift);
        }
        next_state.scopes.insert(credential.public.fingerprint.clone(), scope);
        if touched.is_empty() {
            unattached.extend(findings);
        } else {
            for asset in assets.iter_mut().filter(|asset| touched.contains(&asset.asset)) {
                asset.findings.extend(findings.iter().cloned());
            }
        }
    }
    Assessment {
        scanned_at: now,
        assets,
        credentials,
        unattached,
        discovery: stats,
        next_state,
    }
}

async fn assess_asset(
    config: &AgentConfig,
    asset: &AssetConfig,
    credentials: &[AnalysedCredential],
    previous: &State,
    next_state: &mut State,
    now: DateTime<Utc>,
) -> AssetPosture {
    let name = asset.name.get_ref().clone();
    let detected = match asset.kind {
        AssetKind::Postgres => match &asset.url {
            Some(url) => locations::detect_postgres(&url.value).await,
            None => locations::Detected::default(),
        },
        AssetKind::Sqlite | AssetKind::Files => match &asset.path {
            Some(path) => locations::detect_path(Path::new(&path.value)),
            None => locations::Detected::default(),
        },
    };
    let place = Placed::new(asset.location.clone(), detected);
    let unreachable = reachability(asset).await;

    let backups: Vec<&BackupConfig> = config
        .backup
        .iter()
        .filter(|backup| backup.asset.get_ref() == &name)
        .collect();
    let mut sources = Vec::new();
    for backup in &backups {
        let source_place = Placed::new(backup.location.clone(), locations::detect_source(&backup.path.value));
        let discovered = match crate::sandbox::discovery_jail(&config.agent.work_dir) {
            Ok(jail) => {
                let spec = SourceSpec {
                    kind: backup.kind,
                    path: PathBuf::from(&backup.path.value),
                    restic_password: crate::runner::restic_password(backup),
                    jail,
                };
                backups::discover(&spec)
                    .await
                    .map_err(|err| (err.to_string(), err.is_agent_problem()))
            }
            Err(err) => Err((format!("cannot inspect backups: {err}"), err.is_agent_problem())),
        };
        let (points, error, agent_problem) = match discovered {
            Ok(points) => (points, None, false),
            Err((err, agent_problem)) => (Vec::new(), Some(err), agent_problem),
        };
        let view = SourceView {
            name: backup.name.get_ref(),
            place: &source_place,
            points: points.iter().map(|point| point.created_at).collect(),
        };
        let safety = blast::safety(&place, &view, credentials);
        sources.push(SourcePosture {
            backup: backup.name.get_ref().clone(),
            place: source_place,
            point_count: points.len(),
            points,
            error,
            agent_problem,
            safety,
        });
    }

    let mut findings = Vec::new();
    let any_safe = sources
        .iter()
        .any(|source| source.safety.safe && !source.points.is_empty());
    for source in &sources {
        if let Some(shares) = source.safety.shares {
            findings.push(co_located(&name, &place, source, shares, any_safe));
        }
        if let Some(finding) = shrunk(&name, source) {
            findings.push(finding);
        }
        let backup = backups.iter().find(|backup| backup.name.get_ref() == &source.backup);
        let seen: Vec<PointSeen> = source
            .points
            .iter()
            .map(|point| PointSeen {
                id: point.id.clone(),
                created_at: point.created_at,
            })
            .collect();
        // A source that could not be read keeps its previous points: unreadable is not vanished.
        if source.error.is_none() {
            if let Some(finding) = history::vanished(
                &source.backup,
                &name,
                previous.sources.get(&source.backup),
                &seen,
                backup
                    .and_then(|backup| backup.retention)
                    .map(|retention| retention.as_secs()),
                now,
            ) {
                findings.push(finding);
            }
            next_state.sources.insert(source.backup.clone(), seen);
        } else if let Some(points) = previous.sources.get(&source.backup) {
            next_state.sources.insert(source.backup.clone(), points.clone());
        }
    }
    let views: Vec<SourceView<'_>> = sources
        .iter()
        .map(|source| SourceView {
            name: &source.backup,
            place: &source.place,
            points: source.points.iter().map(|point| point.created_at).collect(),
        })
        .collect();
    findings.extend(blast::shared_findings(
        &name,
        &place,
        asset.rpo.as_secs(),
        &views,
        credentials,
        now,
    ));
    let blast_radius = blast::edges(&name, &place, &views, credentials);
    if let Some(reason) = &unreachable {
        findings.push(asset_missing(
            &name,
            reason,
            &sources,
            previous.last_good.get(&name),
            now,
        ));
    }
    AssetPosture {
        asset: name,
        place,
        unreachable,
        sources,
        findings,
        blast_radius,
    }
}

/// Whether production answers (read-only); `Some(reason)` when it does not.
async fn reachability(asset: &AssetConfig) -> Option<String> {
    match asset.kind {
        AssetKind::Postgres => {
            let url = asset.url.as_ref()?;
            let connection = psql::Connection::production(&url.value);
            match connection.scalar("select 1", Duration::from_secs(20)).await {
                Ok(_) => None,
                Err(err) => Some(redact_passwords(&err.to_string())),
            }
        }
        AssetKind::Sqlite => {
            let path = asset.path.as_ref()?;
            match std::fs::File::open(&path.value) {
                Ok(_) => None,
                Err(err) => Some(format!("{}: {err}", path.value)),
            }
        }
        AssetKind::Files => {
            let path = asset.path.as_ref()?;
            match std::fs::read_dir(&path.value) {
                Ok(_) => None,
                Err(err) => Some(format!("{}: {err}", path.value)),
            }
        }
    }
}

fn co_located(asset: &str, place: &Placed, source: &SourcePosture, shares: Shared, any_safe: bool) -> Finding {
    let mut severity = shares.severity();
    let provider = place
        .effective
        .provider
        .clone()
        .unwrap_or_else(|| "the same provider".into());
    let what = match shares {
        Shared::Volume => format!(
            "The backups in {} are on the same volume as {asset} ({}). That is not a backup: losing the volume loses both.",
            source.backup,
            place.describe()
        ),
        Shared::Host => format!(
            "The backups in {} are on the same host as {asset} ({}). One lost machine takes both.",
            source.backup,
            place.effective.host.clone().unwrap_or_default()
        ),
        Shared::Account => format!(
            "Your backups in {} are also on {provider}, in the same account. That is not redundancy: one outage, one bad \
             API call, one volume deletion takes both.",
            source.backup
        ),
        Shared::Provider => format!(
            "Your backups in {} are also on {provider}. One provider outage or account problem takes both.",
            source.backup
        ),
        Shared::Region => format!(
            "The backups in {} are in the same region as {asset}; a regional outage takes both.",
            source.backup
        ),
    };
    let mut message = what;
    if any_safe && severity == Severity::Critical {
        // Another source is outside the blast radius, so this one does not decide the verdict.
        severity = Severity::High;
        message.push_str(" Another backup source is outside the blast radius.");
    }
    Finding::new(FindingKind::BackupCoLocated, source.backup.as_str(), message)
        .with_severity(severity)
        .with_evidence(json!({
            "asset": asset,
            "shares": shares,
            "asset_location": place,
            "backup_location": source.place,
        }))
        .with_remediation(format!(
            "Copy {asset}'s backups to another {} (e.g. restic or rclone to object storage in another provider \
             account), declare it as a [[backup]] and let Lifeboat test it.",
            match shares {
                Shared::Volume | Shared::Host => "machine",
                Shared::Account | Shared::Provider => "provider account",
                Shared::Region => "region",
            }
        ))
}

/// A recovery point that is less than half the size of the one before it.
fn shrunk(asset: &str, source: &SourcePosture) -> Option<Finding> {
    let mut points: Vec<&RecoveryPoint> = source.points.iter().filter(|point| point.size_bytes > 0).collect();
    points.sort_by_key(|point| std::cmp::Reverse(point.created_at));
    let newest = points.first()?;
    // Sizes compare only within one format: a compressed archive is smaller than plain SQL.
    let previous = points.iter().skip(1).find(|point| point.format == newest.format)?;
    if newest.size_bytes.saturating_mul(2) >= previous.size_bytes {
        return None;
    }
    Some(
        Finding::new(
            FindingKind::BackupShrunk,
            source.backup.as_str(),
            format!(
                "The newest backup of {asset} in {} ({}) is {} bytes, less than half the {} bytes of the one before it \
                 ({}).",
                source.backup, newest.id, newest.size_bytes, previous.size_bytes, previous.id
            ),
        )
        .with_evidence(json!({
            "newest": {"id": newest.id, "size_bytes": newest.size_bytes, "created_at": newest.created_at},
            "previous": {"id": previous.id, "size_bytes": previous.size_bytes, "created_at": previous.created_at},
        }))
        .with_remediation(
            "Check whether data was deleted in production or the backup job skipped tables or failed part-way.",
        ),
    )
}

fn asset_missing(
    asset: &str,
    reason: &str,
    sources: &[SourcePosture],
    last_good: Option<&history::LastGood>,
    now: DateTime<Utc>,
) -> Finding {
    let newest_safe = sources
        .iter()
        .filter(|source| source.safety.safe)
        .flat_map(|source| source.points.iter().map(move |point| (source, point)))
        .max_by_key(|(_, point)| point.created_at);
    let recovery = match (last_good, newest_safe) {
        (Some(good), Some((source, point))) if good.backup == source.backup && good.recovery_point == point.id => {
            format!(
                " Newest safe recovery point: {}/{}, restored and checked {} ago in {} — runbook attached.",
                good.backup,
                good.recovery_point,
                human((now - good.tested_at).num_seconds() as f64),
                human(good.rto_seconds)
            )
        }
        (Some(good), Some((source, point))) => format!(
            " Newest safe recovery point: {}/{} ({} old). The runbook attached restored {}/{} {} ago in {}; \
             use it with this file.",
            source.backup,
            point.id,
            human((now - point.created_at).num_seconds() as f64),
            good.backup,
            good.recovery_point,
            human((now - good.tested_at).num_seconds() as f64),
            human(good.rto_seconds)
        ),
        (Some(good), None) => format!(
            " No recovery point outside its blast radius is left; the last one restored and checked was {}/{} {} \
             ago (runbook attached).",
            good.backup,
            good.recovery_point,
            human((now - good.tested_at).num_seconds() as f64)
        ),
        (None, Some((source, point))) => format!(
            " Newest safe recovery point: {}/{} ({} old), never restored by Lifeboat.",
            source.backup,
            point.id,
            human((now - point.created_at).num_seconds() as f64)
        ),
        (None, None) => " There is no recovery point outside its blast radius.".to_owned(),
    };
    Finding::new(
        FindingKind::AssetMissing,
        asset,
        format!("{asset} stopped answering ({reason}).{recovery}"),
    )
    .with_evidence(json!({
        "error": reason,
        "newest_safe_recovery_point": newest_safe.map(|(source, point)| json!({
            "backup": source.backup, "recovery_point": point.id, "created_at": point.created_at,
        })),
        "last_good_restore": last_good,
        "runbook": last_good.map(|good| good.runbook.clone()),
    }))
    .with_remediation(match last_good {
        Some(_) => format!("If {asset} is gone, restore it with the attached runbook (tested by Lifeboat)."),
        None => format!(
            "If {asset} is gone, restore its newest safe recovery point; check that the agent can reach it if not."
        ),
    })
}

/// Credentials listed in one posture result at most (the rest are counted).
const MAX_CREDENTIALS_REPORTED: usize = 500;

/// The posture result of one asset, sent to the coordinator between restore tests: its
/// findings, its places and blast-radius edges, and the credentials that reach it (by
/// fingerprint and preview).
pub fn posture_result(asset: &AssetPosture, assessment: &Assessment) -> RunResult {
    let now = assessment.scanned_at;
    let mut findings = asset.findings.clone();
    findings.extend(assessment.unattached.iter().cloned());
    let reaching: BTreeSet<&str> = asset.blast_radius.iter().map(|edge| edge.credential.as_str()).collect();
    let credentials: Vec<&credentials::PublicCredential> = assessment
        .credentials
        .iter()
        .map(|credential| &credential.public)
        .filter(|public| {
            reaching.contains(public.fingerprint.as_str()) || public.sightings.iter().any(|seen| seen.in_a_file())
        })
        .take(MAX_CREDENTIALS_REPORTED)
        .collect();
    findings.sort_by_key(|finding| std::cmp::Reverse(finding.severity));
    findings.truncate(lifeboat_shared::protocol::MAX_FINDINGS);
    let critical = findings.iter().any(|finding| finding.severity == Severity::Critical);
    RunResult {
        result_id: lifeboat_shared::ids::ResultId::new(),
        kind: ResultKind::Posture,
        run_id: None,
        asset: asset.asset.clone(),
        backup: String::new(),
        recovery_point: String::new(),
        outcome: if critical { Outcome::Failed } else { Outcome::Passed },
        started_at: now,
        finished_at: now,
        restore_seconds: 0.0,
        rto_seconds: 0.0,
        recovery_point_age_seconds: 0,
        findings,
        detail: json!({
            "posture": asset,
            "credentials": credentials,
            "credentials_known": assessment.credentials.len(),
            "discovery": assessment.discovery,
        }),
    }
}

/// Loads the previous state, scans, saves the new state.
pub async fn scan_and_remember(
    config: &AgentConfig,
    discovery: &Discovery,
    key: &FingerprintKey,
    now: DateTime<Utc>,
) -> Assessment {
    let state_file = StateFile::new(&config.agent.work_dir);
    let previous = state_file.load();
    let assessment = assess(config, discovery, key, &previous, now).await;
    if let Err(err) = state_file.save(&assessment.next_state) {
        tracing::warn!(error = %err, "cannot save the posture state; the next scan cannot compare");
    }
    assessment
}

/// The agent's fingerprint key (`work_dir/fingerprint.key`).
pub fn fingerprint_key(config: &AgentConfig) -> FingerprintKey {
    FingerprintKey::load_or_create(&config.agent.work_dir.join("fingerprint.key")).unwrap_or_else(|err| {
        tracing::warn!(error = %err, "cannot keep a fingerprint key; fingerprints will change every run");
        FingerprintKey::random()
    })
}

/// Records the last passing test of a safe recovery point (for `asset.missing`'s runbook).
pub fn remember_good_run(work_dir: &Path, asset: &str, good: history::LastGood) {
    let file = StateFile::new(work_dir);
    let mut state = file.load();
    state.last_good.insert(asset.to_owned(), good);
    if let Err(err) = file.save(&state) {
        tracing::warn!(error = %err, "cannot save the posture state");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(id: &str, hours_ago: i64, size_bytes: u64) -> RecoveryPoint {
        RecoveryPoint {
            id: id.into(),
            path: PathBuf::from(id),
            format: crate::backups::BackupFormat::PgCustom,
            created_at: Utc::now() - chrono::Duration::hours(hours_ago),
            timestamp_source: crate::backups::TimestampSource::ArchiveHeader,
            size_bytes,
            checksum: None,
            server_major: Some(15),
            detail: serde_json::Value::Null,
        }
    }

    fn source(points: Vec<RecoveryPoint>) -> SourcePosture {
        SourcePosture {
            backup: "nightly".into(),
            place: Placed::default(),
            point_count: points.len(),
            points,
            error: None,
            agent_problem: false,
            safety: Safety {
                backup: "nightly".into(),
                shares: None,
                destroyed_with_asset_by: Vec::new(),
                safe: true,
            },
        }
    }

    #[test]
    fn a_backup_half_the_size_of_the_one_before_is_reported() {
        let shrunk_source = source(vec![point("new", 1, 400), point("old", 25, 1_000)]);
        let finding = shrunk("db", &shrunk_source).expect("shrunk");
        assert_eq!(finding.kind, FindingKind::BackupShrunk);
        assert_eq!(finding.evidence["newest"]["id"], "new");
        assert!(shrunk("db", &source(vec![point("new", 1, 600), point("old", 25, 1_000)])).is_none());
        assert!(shrunk("db", &source(vec![point("only", 1, 10)])).is_none());
    }
}
