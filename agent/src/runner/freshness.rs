//! The real data loss of a restore: with `freshness = "table.column"`, the newest value of that
//! column in the restored copy, against production's newest (read-only). A fresh dump of a
//! replica that stopped replaying three days ago restores fine and is three days of loss; this is
//! how Lifeboat tells.
//!
//! Loss = production's newest − the copy's newest; when production does not answer, now − the
//! copy's newest (everything since is lost). Values are read as Unix seconds: PostgreSQL
//! timestamps and dates, SQLite text timestamps or Unix numbers.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::checks::{Production, Target, production_scalar};
use super::{psql, sqlite_cli};
use crate::config::AssetConfig;
use crate::verdict::{DataLoss, RunReport};

/// Measures the data age and loss of a restored copy into `run` (nothing without `freshness`).
pub async fn measure(
    run: &mut RunReport,
    asset: &AssetConfig,
    target: &Target,
    production: Option<&Production>,
    timeout: Duration,
) {
    let Some((table, column)) = asset
        .freshness
        .as_deref()
        .and_then(|freshness| freshness.rsplit_once('.'))
    else {
        return;
    };
    let Some(restored_newest) = newest_in_copy(target, table, column, timeout).await else {
        return;
    };
    let now = Utc::now();
    run.data_age_seconds = Some((now - restored_newest).num_seconds().max(0));
    let production_newest = match production {
        Some(production) => newest_in_production(production, table, column, timeout).await,
        None => None,
    };
    let until = production_newest.unwrap_or(now);
    run.data_loss = Some(DataLoss {
        restored_newest,
        production_newest,
        seconds: (until - restored_newest).num_seconds().max(0),
    });
}

fn postgres_sql(table: &str, column: &str) -> String {
    format!(
        "select extract(epoch from max({}))::bigint from {}",
        psql::quote_identifier(column),
        psql::quote_identifier(table)
    )
}

fn sqlite_sql(table: &str, column: &str) -> String {
    let column = psql::quote_identifier(column);
    format!(
        "select coalesce(cast(strftime('%s', max({column})) as integer), cast(max({column}) as integer)) from {}",
        psql::quote_identifier(table)
    )
}

async fn newest_in_copy(target: &Target, table: &str, column: &str, timeout: Duration) -> Option<DateTime<Utc>> {
    let value = match target {
        Target::Postgres { connection, .. } => connection
            .scalar(&postgres_sql(table, column), timeout)
            .await
            .ok()
            .flatten(),
        Target::Sqlite { path, jail } => sqlite_cli::scalar(jail, path, &sqlite_sql(table, column), timeout)
            .await
            .ok()
            .flatten(),
        Target::Files { .. } => None,
    };
    from_unix(value?)
}

async fn newest_in_production(
    production: &Production,
    table: &str,
    column: &str,
    timeout: Duration,
) -> Option<DateTime<Utc>> {
    let sql = match production {
        Production::Postgres(_) => postgres_sql(table, column),
        Production::Sqlite(_) => sqlite_sql(table, column),
    };
    from_unix(production_scalar(production, &sql, timeout).await.ok().flatten()?)
}

fn from_unix(value: String) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(value.trim().parse::<i64>().ok()?, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_unix_seconds() {
        assert_eq!(
            from_unix("1764806400".into()).map(|at| at.to_rfc3339()),
            Some("2025-12-04T00:00:00+00:00".into())
        );
        assert_eq!(from_unix(String::new()), None);
        assert!(postgres_sql("public.bookings", "created_at").contains("\"public\".\"bookings\""));
    }
}
