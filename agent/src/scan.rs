//! `lifeboat-agent scan PATH…`: credential discovery and scope on their own, without restoring
//! anything. Values never leave: the output holds fingerprints, redacted
//! previews, where each credential was found and what it can destroy.
//!
//! Every credential has a [severity](crate::credentials::severity) (from its rule and value,
//! raised to high when its scope analysis shows it can destroy something); the
//! `credential.exposed` findings of `scan` carry it, and `scan` exits 1 when anything reaches
//! `--min-severity` (high by default), so a CI gate can trust the exit code.

use std::path::PathBuf;

use lifeboat_shared::findings::{Finding, FindingKind};
use serde::Serialize;

use crate::config::AgentConfig;
use crate::credentials::scope::Action;
use crate::credentials::{CredentialSeverity, FingerprintKey, rules, severity};
use crate::posture::credentials::{self, AnalysedCredential, Discovery, DiscoveryStats, PublicCredential};

/// The `scan` output.
#[derive(Debug, Clone, Serialize)]
pub struct ScanOutput {
    pub credentials: Vec<ScanCredential>,
    pub findings: Vec<Finding>,
    pub discovery: DiscoveryStats,
}

/// A found credential with its severity.
#[derive(Debug, Clone, Serialize)]
pub struct ScanCredential {
    pub severity: CredentialSeverity,
    #[serde(flatten)]
    pub credential: PublicCredential,
}

impl ScanOutput {
    /// Whether a credential or a finding reaches `min_severity` (exit code 1).
    pub fn alarming(&self, min_severity: CredentialSeverity) -> bool {
        self.credentials
            .iter()
            .any(|credential| credential.severity >= min_severity)
            || self
                .findings
                .iter()
                .any(|finding| finding.severity >= min_severity.finding_severity())
    }

    /// Text for a terminal.
    pub fn render(&self) -> String {
        let mut text = String::new();
        for ScanCredential { severity, credential } in &self.credentials {
            let place = match (&credential.path, credential.line) {
                (Some(path), Some(line)) => format!("{}:{line}", path.display()),
                (Some(path), None) => path.display().to_string(),
                _ => credential
                    .sightings
                    .first()
                    .map(|seen| seen.variable.clone().unwrap_or_else(|| seen.source.clone()))
                    .unwrap_or_default(),
            };
            text.push_str(&format!(
                "{} {} {} {} at {place}\n",
                severity.as_str().to_uppercase(),
                credential.label,
                credential.preview,
                credential.fingerprint
            ));
            for capability in &credential.capabilities {
                text.push_str(&format!(
                    "    can {:?} {}: {}\n",
                    capability.action, capability.resource, capability.via
                ));
            }
            if let Some(analysis) = &credential.analysis {
                text.push_str(&format!("    ({analysis})\n"));
            }
        }
        for finding in &self.findings {
            text.push_str(&format!(
                "{} {}: {}\n",
                finding.severity.as_str().to_uppercase(),
                finding.kind,
                finding.message
            ));
        }
        text.push_str(&format!(
            "{} credentials in {} files ({} bytes); {} skipped; {} unreadable\n",
            self.credentials.len(),
            self.discovery.files_scanned,
            self.discovery.bytes_scanned,
            self.discovery.skipped,
            self.discovery.problems.len()
        ));
        text
    }
}

/// The key fingerprints are made with: the agent's own with a config (fingerprints then match
/// the daemon's), a fresh one without.
pub fn fingerprint_key(config: Option<&AgentConfig>) -> FingerprintKey {
    config.map_or_else(FingerprintKey::random, crate::posture::fingerprint_key)
}

/// Scans `paths` (plus, with a config, its declared credentials and `[scan]` paths; with
/// `stores`, the environment and `$HOME`'s credential stores). Found credentials are analysed
/// offline only: live analysis is for what the config declares.
pub async fn run(paths: Vec<PathBuf>, config: Option<&AgentConfig>, stores: bool, key: &FingerprintKey) -> ScanOutput {
    let mut discovery = Discovery {
        paths,
        environment: stores,
        home: if stores {
            std::env::var_os("HOME").map(PathBuf::from)
        } else {
            None
        },
    };
    if let Some(config) = config {
        discovery.paths.extend(config.scan.paths.iter().cloned());
    }
    let (declared, assets) = match config {
        Some(config) => (config.credential.as_slice(), config.asset.as_slice()),
        None => (&[][..], &[][..]),
    };
    let (found, stats) = credentials::discover_and_analyse(declared, assets, &discovery, key).await;
    let mut findings = Vec::new();
    for credential in &found {
        // Without assets, "what it can destroy" is what its scope says, anywhere.
        let destroys: Vec<String> = credential
            .public
            .capabilities
            .iter()
            .filter(|capability| capability.action == Action::Destroy)
            .map(|capability| capability.resource.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .map(|resource| format!("any {resource} it reaches"))
            .collect();
        let level = credential_severity(credential);
        findings.extend(
            credentials::findings(credential, &destroys)
                .into_iter()
                .map(|finding| match finding.kind {
                    FindingKind::CredentialExposed => finding.with_severity(level.finding_severity()),
                    _ => finding,
                }),
        );
    }
    findings.sort_by_key(|finding| std::cmp::Reverse(finding.severity));
    let mut credentials: Vec<ScanCredential> = found
        .into_iter()
        .map(|credential| ScanCredential {
            severity: credential_severity(&credential),
            credential: credential.public,
        })
        .collect();
    credentials.sort_by_key(|credential| std::cmp::Reverse(credential.severity));
    ScanOutput {
        credentials,
        findings,
        discovery: stats,
    }
}

/// The severity of a credential: its rule's, raised by its value (a superuser login) and by
/// its scope (high when it can destroy anything). A declared credential without a rule of its
/// kind starts at medium.
fn credential_severity(credential: &AnalysedCredential) -> CredentialSeverity {
    let public = &credential.public;
    let rule_severity = rules::rules()
        .get(&public.kind)
        .map_or(CredentialSeverity::Medium, |rule| rule.severity);
    let from_value = match &credential.secret {
        Some(secret) => severity::assess(&public.family, rule_severity, secret.expose()),
        None => rule_severity,
    };
    let destroys = public
        .capabilities
        .iter()
        .any(|capability| capability.action == Action::Destroy);
    if destroys {
        from_value.max(CredentialSeverity::High)
    } else {
        from_value
    }
}
