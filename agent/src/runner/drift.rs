//! Drift, watched by default: at every good test the agent records production's shape — server
//! version, extensions, schema, roles and their table grants, key settings — read-only, and
//! reports what changed since the last good test as `drift.detected` (medium): "PostgreSQL 15.4
//! → 16.1; column public.bookings.deposit numeric added; role analyst added". A restore that
//! still passes is worth little if production no longer looks like what was restored.
//!
//! Shapes are kept in `<work_dir>/drift/<asset>.json` (the last good test's).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use lifeboat_shared::findings::{Finding, FindingKind};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::checks::{self, Production};

/// How many changes a finding's message names (the evidence has them all).
const MAX_NAMED: usize = 6;
/// Settings whose change is drift worth knowing about.
const KEY_SETTINGS: &str = "'max_connections','shared_buffers','wal_level','timezone','server_encoding',\
'lc_collate','default_transaction_isolation','synchronous_commit','max_wal_size','work_mem','archive_mode'";

/// Production's shape at one good test.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    pub recorded_at: Option<DateTime<Utc>>,
    pub version: String,
    pub extensions: BTreeSet<String>,
    pub schema: BTreeSet<String>,
    pub roles: BTreeSet<String>,
    pub grants: BTreeSet<String>,
    pub settings: BTreeMap<String, String>,
}

/// Reads production's shape, read-only; `None` when production does not answer.
pub async fn read(production: &Production, timeout: Duration) -> Option<Shape> {
    let schema = checks::production_schema(production, timeout).await.ok()?;
    let mut shape = Shape {
        recorded_at: Some(Utc::now()),
        schema,
        ..Shape::default()
    };
    match production {
        Production::Postgres(connection) => {
            let lines = |sql: &'static str| async move {
                connection
                    .query(sql, timeout)
                    .await
                    .map(|rows| {
                        rows.into_iter()
                            .filter_map(|row| row.into_iter().next())
                            .collect::<BTreeSet<_>>()
                    })
                    .unwrap_or_default()
            };
            shape.version = connection
                .scalar("show server_version", timeout)
                .await
                .ok()
                .flatten()
                .and_then(|version| version.split_whitespace().next().map(str::to_owned))
                .unwrap_or_default();
            shape.extensions = lines("select extname || ' ' || extversion from pg_extension").await;
            shape.roles = lines(
                "select rolname || case when rolsuper then ' (superuser)' else '' end \
                 || case when rolcanlogin then ' (login)' else '' end from pg_roles where rolname !~ '^pg_'",
            )
            .await;
            shape.grants = lines(
                "select grantee || ' ' || privilege_type || ' on ' || table_schema || '.' || table_name \
                 from information_schema.role_table_grants \
                 where table_schema not in ('pg_catalog', 'information_schema') limit 10000",
            )
            .await;
            let settings_sql = format!("select name, setting from pg_settings where name in ({KEY_SETTINGS})");
            shape.settings = connection
                .query(&settings_sql, timeout)
                .await
                .map(|rows| {
                    rows.into_iter()
                        .filter_map(|row| Some((row.first()?.clone(), row.get(1)?.clone())))
                        .collect()
                })
                .unwrap_or_default();
        }
        Production::Sqlite(_) => {
            shape.version = checks::production_scalar(production, "select sqlite_version()", timeout)
                .await
                .ok()
                .flatten()
                .unwrap_or_default();
        }
    }
    Some(shape)
}

/// What changed from `before` to `after`, in words.
pub fn changes(before: &Shape, after: &Shape) -> Vec<String> {
    let mut changes = Vec::new();
    if !before.version.is_empty() && before.version != after.version {
        changes.push(format!("server {} → {}", before.version, after.version));
    }
    let sets = [
        ("extension", &before.extensions, &after.extensions),
        ("", &before.schema, &after.schema),
        ("role", &before.roles, &after.roles),
        ("grant", &before.grants, &after.grants),
    ];
    for (what, old, new) in sets {
        let label = |line: &String| {
            if what.is_empty() {
                line.clone()
            } else {
                format!("{what} {line}")
            }
        };
        changes.extend(new.difference(old).map(|line| format!("{} added", label(line))));
        changes.extend(old.difference(new).map(|line| format!("{} removed", label(line))));
    }
    for (name, value) in &after.settings {
        match before.settings.get(name) {
            Some(old) if old != value => changes.push(format!("setting {name} {old} → {value}")),
            _ => {}
        }
    }
    changes
}

/// Compares production with the last good test's shape, records the new one, and returns the
/// `drift.detected` finding when something changed. The first good test only records.
pub async fn watch(work_dir: &Path, asset: &str, production: &Production, timeout: Duration) -> Option<Finding> {
    let current = read(production, timeout).await?;
    let path = shape_path(work_dir, asset);
    let previous: Option<Shape> = std::fs::read(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    if let Err(err) = save(&path, &current) {
        tracing::warn!(path = %path.display(), error = %err, "cannot record production's shape");
    }
    let previous = previous?;
    let changes = changes(&previous, &current);
    if changes.is_empty() {
        return None;
    }
    let since = previous
        .recorded_at
        .map_or_else(String::new, |at| format!(" ({})", at.format("%Y-%m-%d %H:%M")));
    let named: Vec<&str> = changes.iter().take(MAX_NAMED).map(String::as_str).collect();
    let more = changes.len().saturating_sub(MAX_NAMED);
    Some(
        Finding::new(
            FindingKind::DriftDetected,
            asset,
            format!(
                "Since the last passing test{since}: {}{}.",
                named.join("; "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ),
        )
        .with_evidence(json!({"changes": changes, "before": previous, "after": current}))
        .with_remediation(
            "Expected after a migration or an upgrade; otherwise find who changed production. Check that the backups \
             and their restore still match what production has become.",
        ),
    )
}

fn shape_path(work_dir: &Path, asset: &str) -> PathBuf {
    let safe: String = asset
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    work_dir.join("drift").join(format!("{safe}.json"))
}

fn save(path: &Path, shape: &Shape) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let temporary = path.with_extension("json.tmp");
    std::fs::write(
        &temporary,
        serde_json::to_vec_pretty(shape).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(&temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_name_versions_objects_roles_and_settings() {
        let before = Shape {
            version: "15.4".into(),
            extensions: ["plpgsql 1.0".to_owned()].into(),
            schema: ["table public.bookings".to_owned()].into(),
            roles: ["app (login)".to_owned()].into(),
            settings: [("max_connections".to_owned(), "100".to_owned())].into(),
            ..Shape::default()
        };
        let after = Shape {
            version: "16.1".into(),
            extensions: ["plpgsql 1.0".to_owned(), "pg_trgm 1.6".to_owned()].into(),
            schema: [
                "table public.bookings".to_owned(),
                "column public.bookings.deposit numeric".to_owned(),
            ]
            .into(),
            roles: ["app (login)".to_owned(), "analyst (login)".to_owned()].into(),
            settings: [("max_connections".to_owned(), "200".to_owned())].into(),
            ..Shape::default()
        };
        let found = changes(&before, &after);
        assert!(found.contains(&"server 15.4 → 16.1".to_owned()), "{found:?}");
        assert!(found.contains(&"extension pg_trgm 1.6 added".to_owned()), "{found:?}");
        assert!(
            found.contains(&"column public.bookings.deposit numeric added".to_owned()),
            "{found:?}"
        );
        assert!(found.contains(&"role analyst (login) added".to_owned()), "{found:?}");
        assert!(
            found.contains(&"setting max_connections 100 → 200".to_owned()),
            "{found:?}"
        );
        assert!(changes(&after, &after).is_empty());
    }
}
