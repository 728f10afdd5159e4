//! What the guard is asked about: a **resource** (`railway volume vol-7f3a`, `s3 bucket b`,
//! `aws rds-instance x`, `postgres database rentals`, `lifeboat asset rentals-db`) and an
//! **operation** on it (`delete`, `wipe`, `restore-over`, `detach`), and which places — the
//! locations of assets and backups — a resource covers.
//!
//! Matching is deliberately generous: ids compare without regard to case, and a location that
//! names no provider still matches on its volume, host or bucket. Matching too much only makes
//! the guard check more assets; matching too little would let a destructive call through.

use std::fmt;

use lifeboat_shared::protocol::{Location, MAX_NAME_LEN};
use serde::{Deserialize, Serialize};

/// A resource or operation the guard cannot work with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    #[error("{field} is empty")]
    Empty { field: &'static str },
    #[error("{field} is longer than {MAX_NAME_LEN} bytes")]
    TooLong { field: &'static str },
    #[error("{field} {value:?} may only hold letters, digits, '-', '_' and '.'")]
    BadName { field: &'static str, value: String },
    #[error("{field} contains control characters")]
    Control { field: &'static str },
    #[error("resource {0:?} is not KIND:ID (e.g. volume:vol-7f3a)")]
    NotKindId(String),
    #[error("operation {0:?} is not one of delete, wipe, restore-over, detach")]
    UnknownOperation(String),
}

/// What a destructive call does to a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Operation {
    /// The resource and everything on it is gone.
    Delete,
    /// The resource stays, its contents are erased.
    Wipe,
    /// Something is restored over the resource: what is on it now is overwritten.
    RestoreOver,
    /// The resource is taken away from what uses it (a volume from its service).
    Detach,
}

impl Operation {
    /// Every operation, for help texts and tool descriptions.
    pub const ALL: [Operation; 4] = [Self::Delete, Self::Wipe, Self::RestoreOver, Self::Detach];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delete => "delete",
            Self::Wipe => "wipe",
            Self::RestoreOver => "restore-over",
            Self::Detach => "detach",
        }
    }

    /// Parses `delete`, `wipe`, `restore-over` (or `restore_over`), `detach`, in any case.
    pub fn parse(text: &str) -> Result<Self, ResourceError> {
        let normalised = text.trim().to_ascii_lowercase().replace('_', "-");
        Self::ALL
            .into_iter()
            .find(|operation| operation.as_str() == normalised)
            .ok_or_else(|| ResourceError::UnknownOperation(text.chars().take(64).collect()))
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Operation {
    type Err = ResourceError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

/// A resource a destructive call names: provider, kind and id, as the provider calls them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Resource {
    /// `railway`, `aws`, `s3`, `postgres`, `lifeboat`, … (lowercase).
    pub provider: String,
    /// `volume`, `bucket`, `host`, `rds-instance`, `database`, `asset`, … (lowercase).
    pub kind: String,
    /// The provider's id, as given.
    pub id: String,
}

/// Which field of a location (or which asset) a resource kind names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// An asset by name: `asset`, or a database whose asset has its name.
    Asset,
    Volume,
    Host,
    Bucket,
    Account,
    Region,
}

/// Providers whose resources are not in a cloud account: they are matched by name, never
/// compared with a location's provider.
const NAME_ONLY_PROVIDERS: [&str; 5] = ["lifeboat", "postgres", "mysql", "sqlite", "files"];

fn target(kind: &str) -> Option<Target> {
    Some(match kind {
        "asset" | "database" | "db" => Target::Asset,
        "volume" | "volume-instance" | "disk" => Target::Volume,
        "host" | "server" | "instance" | "vm" | "machine" | "rds-instance" | "db-instance" | "cluster" => Target::Host,
        "bucket" => Target::Bucket,
        "account" | "workspace" => Target::Account,
        "region" => Target::Region,
        _ => return None,
    })
}

fn checked<'a>(field: &'static str, value: &'a str) -> Result<&'a str, ResourceError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(ResourceError::Empty { field });
    }
    if value.len() > MAX_NAME_LEN {
        return Err(ResourceError::TooLong { field });
    }
    if value.chars().any(char::is_control) {
        return Err(ResourceError::Control { field });
    }
    Ok(value)
}

fn word(field: &'static str, value: &str) -> Result<String, ResourceError> {
    let value = checked(field, value)?;
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(ResourceError::BadName {
            field,
            value: value.chars().take(64).collect(),
        });
    }
    Ok(value.to_ascii_lowercase())
}

impl Resource {
    /// Builds a resource, validating each part (provider and kind are lowercased).
    pub fn new(provider: &str, kind: &str, id: &str) -> Result<Self, ResourceError> {
        Ok(Self {
            provider: word("provider", provider)?,
            kind: word("resource kind", kind)?,
            id: checked("resource id", id)?.to_owned(),
        })
    }

    /// Builds a resource from `--provider P --resource KIND:ID`.
    pub fn parse(provider: &str, kind_and_id: &str) -> Result<Self, ResourceError> {
        let (kind, id) = kind_and_id
            .split_once(':')
            .ok_or_else(|| ResourceError::NotKindId(kind_and_id.chars().take(64).collect()))?;
        Self::new(provider, kind, id)
    }

    /// `railway volume vol-7f3a`.
    pub fn label(&self) -> String {
        format!("{} {} {}", self.provider, self.kind, self.id)
    }

    /// Whether Lifeboat knows this kind of resource at all (an unknown kind covers nothing).
    pub fn kind_is_known(&self) -> bool {
        target(&self.kind).is_some()
    }

    /// Whether the resource is the asset itself (by name).
    pub fn names_asset(&self, asset: &str) -> bool {
        target(&self.kind) == Some(Target::Asset) && self.id.eq_ignore_ascii_case(asset)
    }

    /// Whether `location` lies on this resource.
    pub fn covers(&self, location: &Location) -> bool {
        let Some(target) = target(&self.kind) else {
            return false;
        };
        if target == Target::Asset {
            return false;
        }
        let provider_differs = location.provider.as_deref().is_some_and(|provider| {
            !NAME_ONLY_PROVIDERS.contains(&self.provider.as_str()) && !provider.eq_ignore_ascii_case(&self.provider)
        });
        // Object-store buckets are named by the store ("s3", "gcs"), whatever account provider a
        // location declares; hosts and volumes have ids specific enough on their own.
        if provider_differs && matches!(target, Target::Account | Target::Region) {
            return false;
        }
        let same = |value: &Option<String>| {
            value
                .as_deref()
                .is_some_and(|value| value.eq_ignore_ascii_case(&self.id))
        };
        match target {
            Target::Asset => false,
            Target::Volume => !provider_differs && same(&location.volume),
            Target::Host => location.host.as_deref().is_some_and(|host| {
                host.eq_ignore_ascii_case(&self.id)
                    || host
                        .to_ascii_lowercase()
                        .starts_with(&format!("{}.", self.id.to_ascii_lowercase()))
            }),
            Target::Bucket => location.volume.as_deref().is_some_and(|volume| {
                let volume = volume.to_ascii_lowercase();
                let id = self.id.to_ascii_lowercase();
                volume == id || volume == format!("bucket {id}") || volume == format!("device bucket {id}")
            }),
            Target::Account => same(&location.account),
            Target::Region => same(&location.region),
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(provider: Option<&str>, volume: Option<&str>, host: Option<&str>) -> Location {
        Location {
            provider: provider.map(str::to_owned),
            account: Some("pocketos".into()),
            region: Some("us-west1".into()),
            host: host.map(str::to_owned),
            volume: volume.map(str::to_owned),
        }
    }

    #[test]
    fn resources_parse_from_the_command_line_and_refuse_nonsense() {
        let volume = Resource::parse("Railway", "volume:vol-7f3a").expect("valid");
        assert_eq!(volume.label(), "railway volume vol-7f3a");
        assert!(matches!(
            Resource::parse("railway", "vol-7f3a"),
            Err(ResourceError::NotKindId(_))
        ));
        assert!(Resource::parse("rail way", "volume:x").is_err());
        assert!(Resource::parse("railway", "volume:").is_err());
        assert!(Resource::parse("railway", "volume:a\u{7}b").is_err());
        assert!(Resource::parse("railway", &format!("volume:{}", "x".repeat(300))).is_err());
        assert_eq!(Operation::parse("Restore_Over"), Ok(Operation::RestoreOver));
        assert!(Operation::parse("drop").is_err());
    }

    #[test]
    fn a_volume_covers_locations_on_it_whatever_the_case() {
        let volume = Resource::parse("railway", "volume:VOL-7F3A").expect("valid");
        assert!(volume.covers(&location(Some("railway"), Some("vol-7f3a"), None)));
        assert!(volume.covers(&location(None, Some("vol-7f3a"), None)));
        assert!(!volume.covers(&location(Some("hetzner"), Some("vol-7f3a"), None)));
        assert!(!volume.covers(&location(Some("railway"), Some("vol-8"), None)));
    }

    #[test]
    fn hosts_buckets_accounts_and_assets_match_their_own_fields() {
        let rds = Resource::parse("aws", "rds-instance:rentals").expect("valid");
        assert!(rds.covers(&location(
            Some("aws"),
            None,
            Some("rentals.abc123.us-east-1.rds.amazonaws.com")
        )));
        assert!(!rds.covers(&location(
            Some("aws"),
            None,
            Some("rentals-replica.abc123.rds.amazonaws.com")
        )));
        let bucket = Resource::parse("s3", "bucket:rentals-backups").expect("valid");
        assert!(bucket.covers(&location(Some("aws"), Some("device bucket rentals-backups"), None)));
        assert!(bucket.covers(&location(None, Some("rentals-backups"), None)));
        let account = Resource::parse("railway", "account:pocketos").expect("valid");
        assert!(account.covers(&location(Some("railway"), None, None)));
        assert!(!account.covers(&location(Some("hetzner"), None, None)));
        let asset = Resource::parse("postgres", "database:rentals-db").expect("valid");
        assert!(asset.names_asset("rentals-db") && !asset.names_asset("rentals"));
        assert!(!asset.covers(&location(None, Some("rentals-db"), None)));
        let project = Resource::parse("railway", "project:p-1").expect("valid");
        assert!(!project.kind_is_known());
        assert!(!project.covers(&location(Some("railway"), None, None)));
    }
}
