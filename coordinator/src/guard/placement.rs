//! Where every asset and its backups live, as far as the coordinator knows: the locations the
//! agents' inventories declare, widened by what their latest posture scans detected (the
//! effective location of the asset and of each backup source, and which sources share the
//! asset's volume or host — the part of the blast-radius graph a destroyed resource takes along).
//!
//! Built from store rows by [`Placement::build`] (pure), and asked one question:
//! [`Placement::exposures`] — which assets have their data or backups on a resource.

use std::collections::BTreeMap;

use lifeboat_shared::protocol::{Inventory, Location};
use serde_json::Value;

use super::resources::Resource;
use crate::store::AssetKey;

/// Default test interval and RPO when an inventory does not say (`docs/verdict.md`).
const DEFAULT_INTERVAL_SECONDS: i64 = 24 * 3600;

/// One backup source of an asset.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlacedBackup {
    pub name: String,
    /// Declared, and detected by the latest posture scan.
    pub locations: Vec<Location>,
    /// On the asset's own volume or host (posture scan): whatever destroys the asset's volume
    /// or host destroys these backups too.
    pub with_asset: bool,
}

/// One asset: where it and its backups live, and its objectives.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlacedAsset {
    pub environment: String,
    pub asset: String,
    pub locations: Vec<Location>,
    pub rpo_seconds: Option<i64>,
    pub interval_seconds: i64,
    pub backups: Vec<PlacedBackup>,
}

impl PlacedAsset {
    pub fn key(&self) -> AssetKey {
        (self.environment.clone(), self.asset.clone())
    }
}

/// What of one asset lies on a resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Exposure<'a> {
    pub asset: &'a PlacedAsset,
    /// The asset's own data is on it (or it is the asset).
    pub data: bool,
    /// Backup sources on it, by name.
    pub backups: Vec<String>,
}

/// The places of every asset the agents declare.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Placement {
    pub assets: Vec<PlacedAsset>,
}

/// The latest posture scan's view of one asset: its effective location and its sources'.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PosturePlaces {
    pub asset: Option<Location>,
    /// (backup, effective location, shares the asset's volume or host).
    pub sources: Vec<(String, Option<Location>, bool)>,
}

impl PosturePlaces {
    /// Reads the places out of a posture result's `detail` (the agent's `posture` section);
    /// whatever does not parse is left out: the declared locations still count.
    pub fn from_detail(detail: &Value) -> Self {
        let posture = &detail["posture"];
        let location = |place: &Value| serde_json::from_value::<Location>(place["effective"].clone()).ok();
        let sources = posture["sources"]
            .as_array()
            .map(|sources| {
                sources
                    .iter()
                    .filter_map(|source| {
                        let name = source["backup"].as_str()?.to_owned();
                        let shares = source["safety"]["shares"].as_str();
                        Some((
                            name,
                            location(&source["place"]),
                            matches!(shares, Some("volume" | "host")),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            asset: location(&posture["place"]),
            sources,
        }
    }
}

fn push_unique(locations: &mut Vec<Location>, location: Location) {
    if location != Location::default() && !locations.contains(&location) {
        locations.push(location);
    }
}

impl Placement {
    /// Builds the placement from every agent's inventory (environment, inventory) and the latest
    /// posture places per asset. Several agents of one environment declaring the same asset
    /// add up; the strictest objectives win.
    pub fn build(inventories: &[(String, Inventory)], posture: &BTreeMap<AssetKey, PosturePlaces>) -> Self {
        let mut assets: BTreeMap<AssetKey, PlacedAsset> = BTreeMap::new();
        for (environment, inventory) in inventories {
            for declared in &inventory.assets {
                let key = (environment.clone(), declared.name.clone());
                let asset = assets.entry(key).or_insert_with(|| PlacedAsset {
                    environment: environment.clone(),
                    asset: declared.name.clone(),
                    interval_seconds: i64::MAX,
                    ..PlacedAsset::default()
                });
                push_unique(&mut asset.locations, declared.location.clone());
                let rpo = i64::try_from(declared.rpo_seconds).unwrap_or(i64::MAX);
                if rpo > 0 {
                    asset.rpo_seconds = Some(asset.rpo_seconds.map_or(rpo, |known| known.min(rpo)));
                }
                let interval = match i64::try_from(declared.test_interval_seconds).unwrap_or(i64::MAX) {
                    0 => DEFAULT_INTERVAL_SECONDS,
                    seconds => seconds,
                };
                asset.interval_seconds = asset.interval_seconds.min(interval);
            }
            for backup in &inventory.backups {
                let Some(asset) = assets.get_mut(&(environment.clone(), backup.asset.clone())) else {
                    continue;
                };
                let index = match asset.backups.iter().position(|known| known.name == backup.name) {
                    Some(index) => index,
                    None => {
                        asset.backups.push(PlacedBackup {
                            name: backup.name.clone(),
                            ..PlacedBackup::default()
                        });
                        asset.backups.len() - 1
                    }
                };
                push_unique(&mut asset.backups[index].locations, backup.location.clone());
            }
        }
        for (key, places) in posture {
            let Some(asset) = assets.get_mut(key) else { continue };
            if let Some(location) = &places.asset {
                push_unique(&mut asset.locations, location.clone());
            }
            for (name, location, with_asset) in &places.sources {
                let Some(backup) = asset.backups.iter_mut().find(|backup| &backup.name == name) else {
                    continue;
                };
                if let Some(location) = location {
                    push_unique(&mut backup.locations, location.clone());
                }
                backup.with_asset |= *with_asset;
            }
        }
        Self {
            assets: assets.into_values().collect(),
        }
    }

    /// Every asset whose data or backups lie on `resource`, by environment and name.
    pub fn exposures(&self, resource: &Resource) -> Vec<Exposure<'_>> {
        let mut exposures = Vec::new();
        for asset in &self.assets {
            let named = resource.names_asset(&asset.asset);
            let placed_on = asset.locations.iter().any(|location| resource.covers(location));
            let backups: Vec<String> = asset
                .backups
                .iter()
                .filter(|backup| {
                    backup.locations.iter().any(|location| resource.covers(location))
                        || (placed_on && backup.with_asset)
                })
                .map(|backup| backup.name.clone())
                .collect();
            if named || placed_on || !backups.is_empty() {
                exposures.push(Exposure {
                    asset,
                    data: named || placed_on,
                    backups,
                });
            }
        }
        exposures
    }
}

#[cfg(test)]
mod tests {
    use lifeboat_shared::protocol::{AssetDecl, BackupDecl};
    use serde_json::json;

    use super::*;

    fn at(provider: &str, volume: Option<&str>) -> Location {
        Location {
            provider: Some(provider.into()),
            volume: volume.map(str::to_owned),
            ..Location::default()
        }
    }

    fn inventory() -> Inventory {
        Inventory {
            assets: vec![AssetDecl {
                name: "rentals-db".into(),
                kind: "postgres".into(),
                rpo_seconds: 86_400,
                rto_seconds: 1800,
                location: at("railway", Some("vol-7f3a")),
                test_interval_seconds: 0,
            }],
            backups: vec![
                BackupDecl {
                    name: "volume-dumps".into(),
                    asset: "rentals-db".into(),
                    kind: "pg_dump_dir".into(),
                    location: at("railway", None),
                },
                BackupDecl {
                    name: "offsite".into(),
                    asset: "rentals-db".into(),
                    kind: "pg_dump_dir".into(),
                    location: at("hetzner", Some("nas-1")),
                },
            ],
            tests: Vec::new(),
        }
    }

    #[test]
    fn backups_on_the_assets_own_volume_go_with_it() {
        let detail = json!({"posture": {
        "place": {"effective": {"provider": "railway", "volume": "vol-7f3a", "host": "db-1"}},
        "sources": [
            {"backup": "volume-dumps", "place": {"effective": {"provider": "railway", "volume": "device 8:1"}},
             "safety": {"shares": "volume", "safe": false}},
            {"backup": "offsite", "place": {"effective": {"provider": "hetzner", "volume": "nas-1"}},
             "safety": {"safe": true}},
            {"backup": "not-declared", "place": {}, "safety": {}}
        ]}});
        let posture = BTreeMap::from([(
            ("prod".to_owned(), "rentals-db".to_owned()),
            PosturePlaces::from_detail(&detail),
        )]);
        let placement = Placement::build(&[("prod".into(), inventory())], &posture);
        assert_eq!(placement.assets.len(), 1);
        assert_eq!(placement.assets[0].interval_seconds, DEFAULT_INTERVAL_SECONDS);
        let volume = Resource::parse("railway", "volume:vol-7f3a").expect("valid");
        let exposed = placement.exposures(&volume);
        assert_eq!(exposed.len(), 1);
        assert!(exposed[0].data);
        assert_eq!(exposed[0].backups, ["volume-dumps"]);

        let nas = Resource::parse("hetzner", "volume:nas-1").expect("valid");
        let exposed = placement.exposures(&nas);
        assert!(!exposed[0].data);
        assert_eq!(exposed[0].backups, ["offsite"]);

        let host = Resource::parse("railway", "host:db-1").expect("valid");
        assert_eq!(placement.exposures(&host)[0].backups, ["volume-dumps"]);

        // Dropping the database leaves the dump files where they are.
        let database = Resource::parse("postgres", "database:rentals-db").expect("valid");
        let exposed = placement.exposures(&database);
        assert!(exposed[0].data && exposed[0].backups.is_empty());

        assert!(
            placement
                .exposures(&Resource::parse("railway", "volume:vol-9").expect("valid"))
                .is_empty()
        );
    }

    #[test]
    fn without_a_posture_scan_the_declared_locations_count() {
        let placement = Placement::build(&[("prod".into(), inventory())], &BTreeMap::new());
        let volume = Resource::parse("railway", "volume:vol-7f3a").expect("valid");
        let exposed = placement.exposures(&volume);
        assert!(exposed[0].data);
        assert!(exposed[0].backups.is_empty(), "nothing says the dumps share the volume");
        assert_eq!(PosturePlaces::from_detail(&json!(null)), PosturePlaces::default());
    }
}
