//! The blast radius (`docs/verdict.md`): a graph credential → can destroy → asset or backup
//! source, and the two questions asked of it. Is a recovery point **safe** — not on the asset's
//! volume or host, and no single credential can destroy both the asset and it? And is there one
//! credential whose single bad call would leave no recovery point within the RPO
//! (`blast_radius.shared`)?

use chrono::{DateTime, Utc};
use lifeboat_shared::findings::{Finding, FindingKind};
use serde::Serialize;
use serde_json::json;

use crate::credentials::scope::Hits;
use crate::posture::credentials::AnalysedCredential;
use crate::posture::locations::{self, Placed, Shared};
use lifeboat_shared::durations::human;

/// One backup source as the blast-radius analysis sees it.
#[derive(Debug, Clone)]
pub struct SourceView<'a> {
    pub name: &'a str,
    pub place: &'a Placed,
    /// Creation times of its recovery points (any order).
    pub points: Vec<DateTime<Utc>>,
}

/// Why a backup source is or is not outside the asset's blast radius.
#[derive(Debug, Clone, Serialize)]
pub struct Safety {
    pub backup: String,
    /// The worst failure domain it shares with the asset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shares: Option<Shared>,
    /// Fingerprints of credentials that can destroy both the asset and this source.
    pub destroyed_with_asset_by: Vec<String>,
    pub safe: bool,
}

/// Whether `source` lies outside `asset`'s blast radius.
pub fn safety(asset: &Placed, source: &SourceView<'_>, credentials: &[AnalysedCredential]) -> Safety {
    let shares = locations::shared(asset, source.place);
    let destroyed_with_asset_by: Vec<String> = credentials
        .iter()
        .filter(|credential| {
            credential.destroys(&asset.effective, Hits::Data)
                && credential.destroys(&source.place.effective, Hits::Backups)
        })
        .map(|credential| credential.public.fingerprint.clone())
        .collect();
    Safety {
        backup: source.name.to_owned(),
        safe: !shares.is_some_and(Shared::same_machine) && destroyed_with_asset_by.is_empty(),
        shares,
        destroyed_with_asset_by,
    }
}

/// One edge of the graph, for evidence: `credential` can destroy `target`.
#[derive(Debug, Clone, Serialize)]
pub struct Edge {
    pub credential: String,
    pub target: String,
}

/// Every "can destroy" edge from `credentials` to the asset and its sources.
pub fn edges(
    asset_name: &str,
    asset: &Placed,
    sources: &[SourceView<'_>],
    credentials: &[AnalysedCredential],
) -> Vec<Edge> {
    let mut edges = Vec::new();
    for credential in credentials {
        if credential.destroys(&asset.effective, Hits::Data) {
            edges.push(Edge {
                credential: credential.public.fingerprint.clone(),
                target: format!("asset {asset_name}"),
            });
        }
        for source in sources {
            if credential.destroys(&source.place.effective, Hits::Backups) {
                edges.push(Edge {
                    credential: credential.public.fingerprint.clone(),
                    target: format!("backup {}", source.name),
                });
            }
        }
    }
    edges
}

/// `blast_radius.shared` for every credential that can destroy the asset and, with it, every
/// recovery point within the RPO: after its one bad call, the newest survivor is older than the
/// RPO, or there is none. Recovery points on the asset's own volume or host go with the asset.
pub fn shared_findings(
    asset_name: &str,
    asset: &Placed,
    rpo_seconds: u64,
    sources: &[SourceView<'_>],
    credentials: &[AnalysedCredential],
    now: DateTime<Utc>,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    if sources.iter().all(|source| source.points.is_empty()) {
        // No recovery point at all is `backup.missing`; there is no blast radius to share.
        return findings;
    }
    for credential in credentials {
        if !credential.destroys(&asset.effective, Hits::Data) {
            continue;
        }
        let mut destroyed = Vec::new();
        let mut survivor: Option<DateTime<Utc>> = None;
        for source in sources {
            let goes = credential.destroys(&source.place.effective, Hits::Backups)
                || locations::shared(asset, source.place).is_some_and(Shared::same_machine);
            if goes {
                destroyed.push(source.name);
            } else if let Some(newest) = source.points.iter().max() {
                survivor = survivor.max(Some(*newest));
            }
        }
        let survivor_age = survivor.map(|created| (now - created).num_seconds().max(0) as u64);
        if survivor_age.is_some_and(|age| age <= rpo_seconds) {
            continue;
        }
        let label = credential.describe();
        let found = credential.found_where();
        let message = match survivor_age {
            Some(age) => format!(
                "One credential can destroy {asset_name} and every backup of it newer than {}: {label}{found}.",
                human(age as f64)
            ),
            None => format!("One credential can destroy {asset_name} and every backup of it: {label}{found}."),
        };
        findings.push(
            Finding::new(FindingKind::BlastRadiusShared, asset_name, message)
                .with_evidence(json!({
                    "credential": credential.public.fingerprint,
                    "credential_kind": credential.public.kind,
                    "found": credential.public.sightings,
                    "destroys_backups": destroyed,
                    "newest_survivor_age_seconds": survivor_age,
                    "rpo_seconds": rpo_seconds,
                    "via": credential.destroy_reasons(),
                }))
                .with_remediation(format!(
                    "Keep a copy of {asset_name}'s backups where this credential cannot reach: another provider account \
                     or a bucket with object lock; replace the credential with one scoped to what it is for{}.",
                    if credential.public.sightings.is_empty() {
                        String::new()
                    } else {
                        ", and remove it from the files it was found in".to_owned()
                    }
                )),
        );
    }
    findings
}

#[cfg(test)]
mod tests {
    use lifeboat_shared::protocol::Location;

    use super::*;
    use crate::credentials::scope::railway::{TokenType, capabilities};
    use crate::posture::credentials::PublicCredential;
    use crate::posture::locations::Detected;

    fn railway_token() -> AnalysedCredential {
        AnalysedCredential::from_public(PublicCredential {
            kind: "railway_token".into(),
            label: "Railway token".into(),
            family: "railway".into(),
            fingerprint: "fp:railway".into(),
            preview: "1a2b…9f0e".into(),
            name: Some("railway-domains-token".into()),
            purpose: Some("manage custom domains".into()),
            path: None,
            line: None,
            sightings: Vec::new(),
            capabilities: capabilities(Some(TokenType::Account), Some("pocketos")),
            analysis: None,
            lifeboat_own: false,
        })
    }

    fn place(provider: &str, host: &str, device: &str) -> Placed {
        Placed::new(
            Location {
                provider: Some(provider.into()),
                account: Some("pocketos".into()),
                host: Some(host.into()),
                ..Location::default()
            },
            Detected {
                device: Some(device.into()),
                ..Detected::default()
            },
        )
    }

    #[test]
    fn a_point_on_the_same_volume_or_in_reach_of_one_credential_is_not_safe() {
        let asset = place("railway", "db-1", "8:1");
        let same_volume = place("railway", "db-1", "8:1");
        let same_account = place("railway", "db-2", "8:2");
        let offsite = place("hetzner", "nas", "9:1");
        let token = [railway_token()];
        let view = |name, place| SourceView {
            name,
            place,
            points: Vec::new(),
        };
        assert!(!safety(&asset, &view("volume", &same_volume), &[]).safe);
        let reach = safety(&asset, &view("account", &same_account), &token);
        assert!(!reach.safe);
        assert_eq!(reach.destroyed_with_asset_by, vec!["fp:railway".to_owned()]);
        assert!(
            safety(&asset, &view("account", &same_account), &[]).safe,
            "account alone is not the blast radius"
        );
        assert!(safety(&asset, &view("offsite", &offsite), &token).safe);
    }

    #[test]
    fn one_credential_that_leaves_nothing_within_the_rpo_shares_the_blast_radius() {
        let now = Utc::now();
        let asset = place("railway", "db-1", "8:1");
        let fresh = place("railway", "db-2", "8:2");
        let offsite = place("hetzner", "nas", "9:1");
        let token = [railway_token()];
        let sources = [
            SourceView {
                name: "fresh",
                place: &fresh,
                points: vec![now - chrono::Duration::hours(2)],
            },
            SourceView {
                name: "offsite",
                place: &offsite,
                points: vec![now - chrono::Duration::days(92)],
            },
        ];
        let findings = shared_findings("rentals-db", &asset, 86_400, &sources, &token, now);
        assert_eq!(findings.len(), 1);
        assert!(
            findings[0].message.contains("newer than 92 days"),
            "{}",
            findings[0].message
        );
        assert_eq!(findings[0].evidence["destroys_backups"], serde_json::json!(["fresh"]));

        // A fresh offsite point survives the bad call: nothing shared.
        let sources = [
            SourceView {
                name: "fresh",
                place: &fresh,
                points: vec![now - chrono::Duration::hours(2)],
            },
            SourceView {
                name: "offsite",
                place: &offsite,
                points: vec![now - chrono::Duration::hours(3)],
            },
        ];
        assert!(shared_findings("rentals-db", &asset, 86_400, &sources, &token, now).is_empty());
        assert_eq!(edges("rentals-db", &asset, &sources, &token).len(), 2);
    }
}
