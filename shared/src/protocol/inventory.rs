//! The inventory: what an agent protects and tests, as declared in its configuration.

use lifeboat_proto::v1 as pb;
use serde::{Deserialize, Serialize};

use super::ProtocolError;
use super::bounds::{
    MAX_CHECKS, MAX_INVENTORY_ITEMS, MAX_OBJECTIVE_SECONDS, MAX_TEST_TIMEOUT_SECONDS, bounded_list, name,
    optional_name, whole_seconds,
};

/// A failure domain: where a thing lives, so that shared fates can be found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Location {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
}

/// One declared asset, as reported in an inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetDecl {
    pub name: String,
    pub kind: String,
    /// At most [`MAX_OBJECTIVE_SECONDS`].
    pub rpo_seconds: u64,
    /// At most [`MAX_OBJECTIVE_SECONDS`].
    pub rto_seconds: u64,
    pub location: Location,
    /// How often a restore test must pass; 0 means the default (24 h). At most
    /// [`MAX_OBJECTIVE_SECONDS`].
    #[serde(default)]
    pub test_interval_seconds: u64,
}

/// One declared backup source, as reported in an inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupDecl {
    pub name: String,
    pub asset: String,
    pub kind: String,
    pub location: Location,
}

/// One declared test plan, as reported in an inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestDecl {
    pub asset: String,
    pub schedule: String,
    pub pick: String,
    /// Between 1 s and [`MAX_TEST_TIMEOUT_SECONDS`].
    pub timeout_seconds: u64,
    pub checks: Vec<String>,
}

/// What an agent protects and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    pub assets: Vec<AssetDecl>,
    pub backups: Vec<BackupDecl>,
    pub tests: Vec<TestDecl>,
}

impl TryFrom<pb::Location> for Location {
    type Error = ProtocolError;

    fn try_from(location: pb::Location) -> Result<Self, Self::Error> {
        Ok(Self {
            provider: optional_name("location.provider", location.provider)?,
            account: optional_name("location.account", location.account)?,
            region: optional_name("location.region", location.region)?,
            host: optional_name("location.host", location.host)?,
            volume: optional_name("location.volume", location.volume)?,
        })
    }
}

impl From<Location> for pb::Location {
    fn from(location: Location) -> Self {
        Self {
            provider: location.provider.unwrap_or_default(),
            account: location.account.unwrap_or_default(),
            region: location.region.unwrap_or_default(),
            host: location.host.unwrap_or_default(),
            volume: location.volume.unwrap_or_default(),
        }
    }
}

fn objective(field: &'static str, value: u64) -> Result<u64, ProtocolError> {
    whole_seconds(field, value, 0, MAX_OBJECTIVE_SECONDS)
}

fn asset(asset: pb::AssetDecl) -> Result<AssetDecl, ProtocolError> {
    Ok(AssetDecl {
        name: name("asset.name", asset.name)?,
        kind: name("asset.kind", asset.kind)?,
        rpo_seconds: objective("asset.rpo_seconds", asset.rpo_seconds)?,
        rto_seconds: objective("asset.rto_seconds", asset.rto_seconds)?,
        location: asset.location.unwrap_or_default().try_into()?,
        test_interval_seconds: objective("asset.test_interval_seconds", asset.test_interval_seconds)?,
    })
}

fn test(test: pb::TestDecl) -> Result<TestDecl, ProtocolError> {
    Ok(TestDecl {
        asset: name("test.asset", test.asset)?,
        schedule: name("test.schedule", test.schedule)?,
        pick: name("test.pick", test.pick)?,
        timeout_seconds: whole_seconds(
            "test.timeout_seconds",
            test.timeout_seconds,
            1,
            MAX_TEST_TIMEOUT_SECONDS,
        )?,
        checks: bounded_list("test.checks", test.checks, MAX_CHECKS, |check| {
            name("test.check", check)
        })?,
    })
}

impl TryFrom<pb::Inventory> for Inventory {
    type Error = ProtocolError;

    fn try_from(inventory: pb::Inventory) -> Result<Self, Self::Error> {
        Ok(Self {
            assets: bounded_list("assets", inventory.assets, MAX_INVENTORY_ITEMS, asset)?,
            backups: bounded_list("backups", inventory.backups, MAX_INVENTORY_ITEMS, |backup| {
                Ok(BackupDecl {
                    name: name("backup.name", backup.name)?,
                    asset: name("backup.asset", backup.asset)?,
                    kind: name("backup.kind", backup.kind)?,
                    location: backup.location.unwrap_or_default().try_into()?,
                })
            })?,
            tests: bounded_list("tests", inventory.tests, MAX_INVENTORY_ITEMS, test)?,
        })
    }
}

impl From<Inventory> for pb::Inventory {
    fn from(inventory: Inventory) -> Self {
        Self {
            assets: inventory
                .assets
                .into_iter()
                .map(|asset| pb::AssetDecl {
                    name: asset.name,
                    kind: asset.kind,
                    rpo_seconds: asset.rpo_seconds,
                    rto_seconds: asset.rto_seconds,
                    location: Some(asset.location.into()),
                    test_interval_seconds: asset.test_interval_seconds,
                })
                .collect(),
            backups: inventory
                .backups
                .into_iter()
                .map(|backup| pb::BackupDecl {
                    name: backup.name,
                    asset: backup.asset,
                    kind: backup.kind,
                    location: Some(backup.location.into()),
                })
                .collect(),
            tests: inventory
                .tests
                .into_iter()
                .map(|test| pb::TestDecl {
                    asset: test.asset,
                    schedule: test.schedule,
                    pick: test.pick,
                    timeout_seconds: test.timeout_seconds,
                    checks: test.checks,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inventory(timeout_seconds: u64, rpo_seconds: u64) -> pb::Inventory {
        pb::Inventory::from(Inventory {
            assets: vec![AssetDecl {
                name: "db".into(),
                kind: "postgres".into(),
                rpo_seconds,
                rto_seconds: 1_800,
                location: Location::default(),
                test_interval_seconds: 0,
            }],
            backups: Vec::new(),
            tests: vec![TestDecl {
                asset: "db".into(),
                schedule: "0 3 * * *".into(),
                pick: "latest".into(),
                timeout_seconds,
                checks: vec!["rows".into()],
            }],
        })
    }

    #[test]
    fn numbers_beyond_their_bounds_are_rejected_by_field() {
        assert!(Inventory::try_from(inventory(3_600, 86_400)).is_ok());
        for (timeout, rpo, field) in [
            (1 << 62, 86_400, "test.timeout_seconds"),
            (10_000_000_000_000, 86_400, "test.timeout_seconds"),
            (0, 86_400, "test.timeout_seconds"),
            (3_600, u64::MAX, "asset.rpo_seconds"),
        ] {
            let err = Inventory::try_from(inventory(timeout, rpo)).expect_err(field);
            assert!(err.to_string().contains(field), "{field}: {err}");
        }
        assert!(Inventory::try_from(inventory(MAX_TEST_TIMEOUT_SECONDS, MAX_OBJECTIVE_SECONDS)).is_ok());
    }
}
