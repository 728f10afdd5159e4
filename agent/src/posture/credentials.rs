//! Every credential the agent knows of — found in the `[scan]` paths, its own environment and
//! the CLI credential stores of its user, declared in `[[credential]]`, and Lifeboat's own
//! production connections — merged by fingerprint, analysed for scope, and turned into the
//! `credential.*` and `agent.self_scope` findings.
//!
//! A declared credential with a `value` is matched with copies found on disk by fingerprint, so
//! "declared for custom domains" and "lying in plain text in domains.env" become one credential.
//!
//! Found credentials are analysed offline only: they are never used. The one live analysis (a
//! read-only login to read a PostgreSQL role's privileges) is for credentials the config declares
//! (`[[credential]]` or an asset's own `url`), and only against the hosts of declared assets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lifeboat_shared::findings::{Finding, FindingKind, Severity};
use lifeboat_shared::protocol::Location;
use serde::Serialize;
use serde_json::json;

use crate::config::{AgentConfig, AssetConfig, AssetKind, CredentialConfig};
use crate::credentials::scanner::{self, ScanOptions, Sighting, SightingSource};
use crate::credentials::scope::{self, Action, Capability, Hits};
use crate::credentials::{FingerprintKey, Secret, stores};

/// Where a credential was seen: never its value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Seen {
    /// `file`, `environment`, `credential_store`, `declared` or `lifeboat`.
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variable: Option<String>,
}

impl Seen {
    /// Whether the value sits in plain text in a file (`credential.exposed`).
    pub fn in_a_file(&self) -> bool {
        self.source == "file" || self.source == "credential_store"
    }
}

/// What may be shown of a credential: the `scan` output and the evidence of
/// findings. It never holds the value.
#[derive(Debug, Clone, Serialize)]
pub struct PublicCredential {
    /// The rule that found it (`railway_token`) or the declared kind.
    pub kind: String,
    pub label: String,
    pub family: String,
    pub fingerprint: String,
    pub preview: String,
    /// Declared name, when the credential is declared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// First place it was found (`path`, `line` in the `scan` output).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    pub sightings: Vec<Seen>,
    pub capabilities: Vec<Capability>,
    /// How the scope was worked out, or why it could not be.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub analysis: Option<String>,
    /// Lifeboat's own production credential (audited for `agent.self_scope`).
    pub lifeboat_own: bool,
}

/// A credential with its value, which stays in this process.
#[derive(Debug, Clone)]
pub struct AnalysedCredential {
    pub public: PublicCredential,
    pub secret: Option<Secret>,
    /// Railway token type / account, from the declaration.
    declared: Option<CredentialConfig>,
}

impl AnalysedCredential {
    /// A credential known only by what may be shown of it (tests, coordinator-side views).
    pub fn from_public(public: PublicCredential) -> Self {
        Self {
            public,
            secret: None,
            declared: None,
        }
    }

    /// Whether this credential can destroy what lives at `location` and holds `what`.
    pub fn destroys(&self, location: &Location, what: Hits) -> bool {
        self.public
            .capabilities
            .iter()
            .any(|capability| capability.destroys(location, what))
    }

    /// The grants that let it destroy, for evidence.
    pub fn destroy_reasons(&self) -> Vec<String> {
        self.public
            .capabilities
            .iter()
            .filter(|capability| capability.action == Action::Destroy)
            .map(|capability| {
                format!(
                    "{} ({} in {})",
                    capability.via,
                    capability.resource,
                    selector_text(capability)
                )
            })
            .collect()
    }

    /// `railway-domains-token (Railway token, …WXYZ)`.
    pub fn describe(&self) -> String {
        match &self.public.name {
            Some(name) => format!("{name} ({}, {})", self.public.label, self.public.preview),
            None => format!("{} {}", self.public.label, self.public.preview),
        }
    }

    /// ` (found in /srv/app/domains.env line 3)` or empty.
    pub fn found_where(&self) -> String {
        let files: Vec<String> = self
            .public
            .sightings
            .iter()
            .filter(|seen| seen.source != "declared" && seen.source != "lifeboat")
            .map(|seen| match (&seen.path, seen.line, &seen.variable) {
                (Some(path), Some(line), _) => format!("{} line {line}", path.display()),
                (Some(path), None, _) => path.display().to_string(),
                (None, _, Some(variable)) => format!("the agent's environment ({variable})"),
                _ => seen.source.clone(),
            })
            .collect();
        if files.is_empty() {
            String::new()
        } else {
            format!(" (found in {})", files.join(", "))
        }
    }
}

fn selector_text(capability: &Capability) -> String {
    let selector = &capability.selector;
    let parts: Vec<String> = [
        ("provider", &selector.provider),
        ("account", &selector.account),
        ("region", &selector.region),
        ("host", &selector.host),
        ("volume", &selector.volume),
    ]
    .iter()
    .filter_map(|(name, value)| value.as_ref().map(|value| format!("{name} {value}")))
    .collect();
    if parts.is_empty() {
        "anywhere".to_owned()
    } else {
        parts.join(", ")
    }
}

/// What the credential discovery looked at.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DiscoveryStats {
    pub files_scanned: u64,
    pub bytes_scanned: u64,
    pub skipped: usize,
    /// Paths that could not be read, with the reason.
    pub problems: Vec<String>,
}

/// Where to look.
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    pub paths: Vec<PathBuf>,
    /// Scan the agent's environment variables.
    pub environment: bool,
    /// Scan the CLI credential stores in this home directory.
    pub home: Option<PathBuf>,
}

impl Discovery {
    /// What the daemon and `check` look at: `[scan]` paths, the environment, `$HOME`.
    pub fn from_config(config: &AgentConfig) -> Self {
        Self {
            paths: config.scan.paths.clone(),
            environment: config.scan.environment,
            home: config
                .scan
                .home
                .clone()
                .or_else(|| std::env::var_os("HOME").map(PathBuf::from)),
        }
    }
}

/// Finds credentials, merges them with the declared ones and Lifeboat's own, and analyses them.
pub async fn discover_and_analyse(
    declared_credentials: &[CredentialConfig],
    assets: &[AssetConfig],
    discovery: &Discovery,
    key: &FingerprintKey,
) -> (Vec<AnalysedCredential>, DiscoveryStats) {
    let mut sightings: Vec<Sighting> = Vec::new();
    let mut stats = DiscoveryStats::default();
    let paths = discovery.paths.clone();
    let home = discovery.home.clone();
    let found = tokio::task::spawn_blocking(move || {
        let options = ScanOptions::default();
        let mut reports = Vec::new();
        if !paths.is_empty() {
            reports.push(scanner::scan_paths(&paths, &options));
        }
        if let Some(home) = home {
            reports.push(stores::scan_credential_stores(&home));
        }
        reports
    })
    .await
    .unwrap_or_default();
    for report in found {
        stats.files_scanned += report.files_scanned;
        stats.bytes_scanned += report.bytes_scanned;
        stats.skipped += report.skipped.len();
        stats
            .problems
            .extend(report.problems.iter().map(|problem| problem.to_string()));
        sightings.extend(report.sightings);
    }
    if discovery.environment {
        sightings.extend(stores::scan_environment(std::env::vars()));
    }

    let mut merged: BTreeMap<String, AnalysedCredential> = BTreeMap::new();
    for sighting in sightings {
        let fingerprint = key.fingerprint(&sighting.secret);
        let seen = seen_of(&sighting.source);
        let entry = merged.entry(fingerprint.clone()).or_insert_with(|| AnalysedCredential {
            public: PublicCredential {
                kind: sighting.rule_id.clone(),
                label: sighting.label.clone(),
                family: sighting.family.clone(),
                fingerprint,
                preview: sighting.preview(),
                name: None,
                purpose: None,
                path: None,
                line: None,
                sightings: Vec::new(),
                capabilities: Vec::new(),
                analysis: None,
                lifeboat_own: false,
            },
            secret: Some(sighting.secret.clone()),
            declared: None,
        });
        if !entry.public.sightings.contains(&seen) {
            entry.public.sightings.push(seen);
        }
    }
    for declared in declared_credentials {
        let secret = declared.value.as_ref().map(|value| Secret::new(value.value.clone()));
        let fingerprint = match &secret {
            Some(secret) => key.fingerprint(secret),
            None => format!("declared:{}", declared.name),
        };
        let entry = merged.entry(fingerprint.clone()).or_insert_with(|| AnalysedCredential {
            public: PublicCredential {
                kind: declared.kind.clone(),
                label: family_label(&declared.kind),
                family: declared.kind.clone(),
                fingerprint,
                preview: secret
                    .as_ref()
                    .map_or_else(|| "(no value declared)".to_owned(), Secret::preview),
                name: None,
                purpose: None,
                path: None,
                line: None,
                sightings: Vec::new(),
                capabilities: Vec::new(),
                analysis: None,
                lifeboat_own: false,
            },
            secret: secret.clone(),
            declared: None,
        });
        entry.public.name = Some(declared.name.clone());
        entry.public.purpose = declared.purpose.clone();
        entry.public.family = declared.kind.clone();
        entry.declared = Some(declared.clone());
        entry.public.sightings.push(Seen {
            source: "declared".into(),
            path: None,
            line: None,
            variable: None,
        });
    }
    for asset in assets.iter().filter(|asset| asset.kind == AssetKind::Postgres) {
        let Some(url) = &asset.url else { continue };
        let secret = Secret::new(url.value.clone());
        let fingerprint = key.fingerprint(&secret);
        let entry = merged.entry(fingerprint.clone()).or_insert_with(|| AnalysedCredential {
            public: PublicCredential {
                kind: "postgres_url".into(),
                label: "PostgreSQL connection URL".into(),
                family: "postgres".into(),
                fingerprint,
                preview: crate::credentials::redact::redact_passwords(&url.value),
                name: Some(format!("lifeboat ({})", asset.name.get_ref())),
                purpose: Some("read-only restore checks (Lifeboat)".into()),
                path: None,
                line: None,
                sightings: Vec::new(),
                capabilities: Vec::new(),
                analysis: None,
                lifeboat_own: true,
            },
            secret: Some(secret),
            declared: None,
        });
        entry.public.lifeboat_own = true;
        entry.public.sightings.push(Seen {
            source: "lifeboat".into(),
            path: None,
            line: None,
            variable: Some(url.template.clone()),
        });
    }

    let declared_hosts = declared_postgres_hosts(assets);
    let mut credentials: Vec<AnalysedCredential> = merged.into_values().collect();
    for credential in &mut credentials {
        credential.public.sightings.sort();
        if let Some(first) = credential.public.sightings.iter().find(|seen| seen.path.is_some()) {
            credential.public.path = first.path.clone();
            credential.public.line = first.line;
        }
        analyse(credential, &declared_hosts).await;
    }
    (credentials, stats)
}

fn seen_of(source: &SightingSource) -> Seen {
    match source {
        SightingSource::File { path, line } => Seen {
            source: "file".into(),
            path: Some(path.clone()),
            line: Some(*line),
            variable: None,
        },
        SightingSource::Environment { variable } => Seen {
            source: "environment".into(),
            path: None,
            line: None,
            variable: Some(variable.clone()),
        },
        SightingSource::CredentialStore { path, line } => Seen {
            source: "credential_store".into(),
            path: Some(path.clone()),
            line: Some(*line),
            variable: None,
        },
    }
}

fn family_label(kind: &str) -> String {
    match kind {
        "railway" => "Railway token",
        "aws" => "AWS credential",
        "kubernetes" => "Kubernetes credential",
        "postgres" => "PostgreSQL credential",
        _ => "credential",
    }
    .to_owned()
}

/// The servers Lifeboat may log in to: the hosts of the declared PostgreSQL assets' URLs
/// (lower case; `None` for the local socket).
fn declared_postgres_hosts(assets: &[AssetConfig]) -> Vec<Option<String>> {
    assets
        .iter()
        .filter(|asset| asset.kind == AssetKind::Postgres)
        .filter_map(|asset| asset.url.as_ref())
        .map(|url| scope::postgres::host_of(&url.value).map(|host| host.to_ascii_lowercase()))
        .collect()
}

/// Works out the capabilities of one credential from what is known about it.
async fn analyse(credential: &mut AnalysedCredential, declared_hosts: &[Option<String>]) {
    let declared = credential.declared.clone();
    match credential.public.family.as_str() {
        "railway" => {
            let token_type = declared
                .as_ref()
                .and_then(|declared| declared.token_type.as_deref())
                .and_then(scope::railway::TokenType::parse);
            let account = declared.as_ref().and_then(|declared| declared.account.as_deref());
            credential.public.capabilities = scope::railway::capabilities(token_type, account);
            credential.public.analysis = Some(match token_type {
                Some(token_type) => format!("declared Railway {} token", token_type.as_str()),
                None => "a Railway token of unknown type: assumed an account token (Railway tokens do not say)".into(),
            });
        }
        "postgres" => analyse_postgres(credential, declared_hosts).await,
        "aws" => {
            let Some(policy) = declared.as_ref().and_then(|declared| declared.policy.as_ref()) else {
                credential.public.analysis = Some(
                    "scope unknown offline: declare a [[credential]] with kind = \"aws\" and policy = the IAM policy \
                     or get-account-authorization-details export"
                        .into(),
                );
                return;
            };
            let subject = declared.as_ref().and_then(|declared| declared.subject.clone());
            let account = declared.as_ref().and_then(|declared| declared.account.clone());
            match aws_capabilities(Path::new(&policy.value), subject.as_deref(), account.as_deref()) {
                Ok((capabilities, note)) => {
                    credential.public.capabilities = capabilities;
                    credential.public.analysis = Some(note);
                }
                Err(err) => credential.public.analysis = Some(err),
            }
        }
        "kubernetes" => {
            let Some(policy) = declared.as_ref().and_then(|declared| declared.policy.as_ref()) else {
                credential.public.analysis = Some(
                    "scope unknown offline: declare a [[credential]] with kind = \"kubernetes\", policy = the RBAC \
                     manifests and subject = the service account"
                        .into(),
                );
                return;
            };
            let subject = declared.as_ref().and_then(|declared| declared.subject.clone());
            match kubernetes_capabilities(Path::new(&policy.value), subject.as_deref()) {
                Ok((capabilities, note)) => {
                    credential.public.capabilities = capabilities;
                    credential.public.analysis = Some(note);
                }
                Err(err) => credential.public.analysis = Some(err),
            }
        }
        _ => {}
    }
}

/// Reads the role of a declared PostgreSQL credential from the live catalogue, read-only, when
/// it leads to a declared asset's host; a found one is left unanalysed, never used.
async fn analyse_postgres(credential: &mut AnalysedCredential, declared_hosts: &[Option<String>]) {
    let declared = credential.declared.is_some() || credential.public.lifeboat_own;
    if !declared {
        credential.public.analysis = Some(
            "scope unknown offline: a found credential is never used to log in; declare it as a [[credential]] with \
             kind = \"postgres\" and value = its URL (for a declared asset's host) to analyse its role"
                .into(),
        );
        return;
    }
    let Some(secret) = credential.secret.clone() else {
        credential.public.analysis = Some("no value declared: cannot connect to analyse the role".into());
        return;
    };
    let host = scope::postgres::host_of(secret.expose()).map(|host| host.to_ascii_lowercase());
    if !declared_hosts.contains(&host) {
        credential.public.analysis = Some(format!(
            "scope unknown: {} is not the host of a declared asset, and Lifeboat logs in only to those",
            host.as_deref().unwrap_or("the local socket")
        ));
        return;
    }
    match tokio::time::timeout(Duration::from_secs(30), scope::postgres::analyze(secret.expose())).await {
        Ok(Ok(role)) => {
            credential.public.capabilities = localise(role.capabilities);
            credential.public.analysis = Some(format!(
                "live catalogue of role {}{}",
                role.role,
                if role.via.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", role.via.join("; "))
                }
            ));
        }
        Ok(Err(err)) => {
            credential.public.analysis = Some(format!("cannot analyse the role: {err}"));
        }
        Err(_) => credential.public.analysis = Some("the role analysis did not finish within 30 s".into()),
    }
}

/// A PostgreSQL selector naming `localhost` means this host, which locations call by its name.
fn localise(capabilities: Vec<Capability>) -> Vec<Capability> {
    capabilities
        .into_iter()
        .map(|mut capability| {
            let host = capability.selector.host.as_deref();
            if host.is_none() || crate::posture::locations::is_local(host) {
                capability.selector.host = Some(crate::capabilities::hostname());
            }
            capability
        })
        .collect()
}

fn aws_capabilities(
    path: &Path,
    subject: Option<&str>,
    account: Option<&str>,
) -> Result<(Vec<Capability>, String), String> {
    let text = std::fs::read_to_string(path).map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    let document: serde_json::Value =
        serde_json::from_str(&text).map_err(|err| format!("{} is not JSON: {err}", path.display()))?;
    if document.get("UserDetailList").is_some() || document.get("RoleDetailList").is_some() {
        let principals = scope::aws::analyze_account(&document).map_err(|err| err.to_string())?;
        let subject = subject.ok_or("an account export needs subject = the principal's ARN")?;
        let principal = principals
            .into_iter()
            .find(|principal| principal.arn == subject || principal.arn.ends_with(&format!("/{subject}")))
            .ok_or_else(|| format!("{subject} is not in {}", path.display()))?;
        Ok((
            principal.capabilities,
            format!("IAM policies of {} in {}", principal.arn, path.display()),
        ))
    } else {
        let capabilities = scope::aws::analyze_policy(&document, account).map_err(|err| err.to_string())?;
        Ok((capabilities, format!("IAM policy document {}", path.display())))
    }
}

fn kubernetes_capabilities(path: &Path, subject: Option<&str>) -> Result<(Vec<Capability>, String), String> {
    let text = std::fs::read_to_string(path).map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    let subjects = scope::kubernetes::analyze_manifests(&text).map_err(|err| err.to_string())?;
    let subject = subject.ok_or("RBAC manifests need subject = the service account (namespace/name)")?;
    let found = subjects
        .into_iter()
        .find(|scope| scope.subject == subject || scope.subject.ends_with(&format!(" {subject}")))
        .ok_or_else(|| format!("{subject} is bound to nothing in {}", path.display()))?;
    Ok((
        found.capabilities,
        format!("RBAC bindings of {} in {}", found.subject, path.display()),
    ))
}

/// Words in a declared purpose that need destructive rights on data or backups.
const DESTRUCTIVE_PURPOSES: &[&str] = &[
    "admin",
    "backup",
    "restore",
    "delete",
    "destroy",
    "drop",
    "prune",
    "retention",
    "cleanup",
    "clean up",
    "migrat",
    "volume",
    "database",
    "disaster",
    "provision",
    "terraform",
    "infrastructure",
];

/// The `credential.*` and `agent.self_scope` findings of one credential, given the protected
/// places it can destroy (assets and backup sources, by name).
pub fn findings(credential: &AnalysedCredential, destroys: &[String]) -> Vec<Finding> {
    let public = &credential.public;
    let subject = public
        .name
        .clone()
        .unwrap_or_else(|| format!("{} {}", public.label, public.preview));
    let mut findings = Vec::new();
    for seen in public.sightings.iter().filter(|seen| seen.in_a_file()) {
        let place = match (&seen.path, seen.line) {
            (Some(path), Some(line)) => format!("{} (line {line})", path.display()),
            (Some(path), None) => path.display().to_string(),
            _ => continue,
        };
        let severity = if destroys.is_empty() {
            Severity::Medium
        } else {
            Severity::High
        };
        findings.push(
            Finding::new(
                FindingKind::CredentialExposed,
                subject.as_str(),
                format!("A {} sits in plain text in {place}.", public.label),
            )
            .with_severity(severity)
            .with_evidence(json!({
                "fingerprint": public.fingerprint, "preview": public.preview, "kind": public.kind,
                "path": seen.path, "line": seen.line, "source": seen.source, "can_destroy": destroys,
            }))
            .with_remediation(format!(
                "Revoke this {} and issue a new one; keep it in a secret manager, not in {}. Anyone (or any agent) \
                 that can read that file can use it.",
                public.label,
                seen.path
                    .as_ref()
                    .map_or_else(String::new, |path| path.display().to_string())
            )),
        );
    }
    if destroys.is_empty() {
        return findings;
    }
    let reasons = credential.destroy_reasons();
    if public.lifeboat_own {
        findings.push(
            Finding::new(
                FindingKind::AgentSelfScope,
                subject.as_str(),
                format!(
                    "Lifeboat's own credential can destroy {}; it needs read-only access.",
                    destroys.join(", ")
                ),
            )
            .with_evidence(json!({"fingerprint": public.fingerprint, "via": reasons, "analysis": public.analysis}))
            .with_remediation(
                "Give Lifeboat a role that can only read: CREATE ROLE lifeboat LOGIN; GRANT pg_read_all_data, \
                 pg_read_all_settings TO lifeboat; — not an owner, not a superuser.",
            ),
        );
        return findings;
    }
    let reach = reasons.first().cloned().unwrap_or_default();
    findings.push(
        Finding::new(
            FindingKind::CredentialDestructiveScope,
            subject.as_str(),
            format!(
                "{subject} can destroy {} at any time: {}.",
                and_list(destroys),
                if reach.is_empty() {
                    public.label.clone()
                } else {
                    reach.clone()
                }
            ),
        )
        .with_evidence(json!({
            "fingerprint": public.fingerprint, "preview": public.preview, "via": reasons,
            "analysis": public.analysis, "found": public.sightings,
        }))
        .with_remediation(
            "Replace it with a credential scoped to what it is used for (a project token, a policy without \
             Delete* actions, a namespaced Role); keep at least one backup copy out of its reach.",
        ),
    );
    if let Some(purpose) = &public.purpose {
        let lower = purpose.to_ascii_lowercase();
        if !DESTRUCTIVE_PURPOSES.iter().any(|word| lower.contains(word)) {
            findings.push(
                Finding::new(
                    FindingKind::CredentialPurposeMismatch,
                    subject.as_str(),
                    format!(
                        "{subject} was made to \"{purpose}\" but can delete {}.",
                        public
                            .capabilities
                            .iter()
                            .filter(|capability| capability.action == Action::Destroy)
                            .map(|capability| plural(&capability.resource))
                            .collect::<std::collections::BTreeSet<_>>()
                            .into_iter()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
                .with_evidence(json!({"purpose": purpose, "fingerprint": public.fingerprint, "via": reasons}))
                .with_remediation(format!(
                    "Issue a credential that can only \"{purpose}\" (for Railway: a project token of the project whose \
                     domains it manages) and revoke this one."
                )),
            );
        }
    }
    findings
}

/// `a`, `a and b`, `a, b and c`.
fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn plural(resource: &str) -> String {
    if resource.ends_with('s') {
        resource.to_owned()
    } else {
        format!("{resource}s")
    }
}
