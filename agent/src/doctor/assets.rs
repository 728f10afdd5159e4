//! Read-only access to each asset's production side: a PostgreSQL asset through the same
//! read-only connection drills use (every transaction read-only), a SQLite file or a files
//! directory opened for reading. Nothing is ever written.

use std::io::Read as _;
use std::path::Path;
use std::time::Duration;

use super::Check;
use crate::config::{AgentConfig, AssetConfig, AssetKind};
use crate::runner::psql::Connection;

const GROUP: &str = "assets";
/// How long the production query may take (connecting included).
const QUERY_TIMEOUT: Duration = Duration::from_secs(15);
/// The first bytes of every SQLite database file.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Checks every `[[asset]]`, concurrently.
pub async fn check(config: &AgentConfig) -> Vec<Check> {
    futures::future::join_all(config.asset.iter().map(asset)).await
}

async fn asset(asset: &AssetConfig) -> Check {
    let subject = format!("{} ({})", asset.name.get_ref(), asset.kind.as_str());
    match asset.kind {
        AssetKind::Postgres => match &asset.url {
            Some(url) => postgres(subject, &url.value).await,
            None => undeclared(subject, "url"),
        },
        AssetKind::Sqlite => match &asset.path {
            Some(path) => sqlite(subject, Path::new(&path.value)),
            None => undeclared(subject, "path"),
        },
        AssetKind::Files => match &asset.path {
            Some(path) => files(subject, Path::new(&path.value)),
            None => undeclared(subject, "path"),
        },
    }
}

fn undeclared(subject: String, field: &str) -> Check {
    Check::ok(
        GROUP,
        subject,
        format!("no `{field}` declared: drills do not compare the restore with production"),
    )
}

async fn postgres(subject: String, url: &str) -> Check {
    let connection = Connection::production(url);
    let sql = "select current_setting('transaction_read_only'), current_user, current_setting('server_version')";
    match connection.query(sql, QUERY_TIMEOUT).await {
        Ok(rows) => match rows.first().map(Vec::as_slice) {
            Some([read_only, user, version]) if read_only == "on" => Check::ok(
                GROUP,
                subject,
                format!("connected read-only as {user} to PostgreSQL {version}"),
            ),
            Some([read_only, ..]) => Check::fail(
                GROUP,
                subject,
                format!("connected, but transaction_read_only is {read_only}: production must be opened read-only"),
            ),
            _ => Check::fail(GROUP, subject, "connected, but the server answered nothing"),
        },
        Err(err) => Check::fail(GROUP, subject, format!("cannot connect read-only: {err}")),
    }
}

fn sqlite(subject: String, path: &Path) -> Check {
    let mut header = [0_u8; 16];
    let read = std::fs::File::open(path).and_then(|mut file| file.read_exact(&mut header));
    match read {
        Ok(()) if &header == SQLITE_MAGIC => Check::ok(GROUP, subject, format!("{} opens for reading", path.display())),
        Ok(()) => Check::fail(GROUP, subject, format!("{} is not a SQLite database", path.display())),
        Err(err) => Check::fail(GROUP, subject, format!("cannot read {}: {err}", path.display())),
    }
}

fn files(subject: String, path: &Path) -> Check {
    match std::fs::read_dir(path) {
        Ok(entries) => Check::ok(
            GROUP,
            subject,
            format!("{} lists for reading ({} entries)", path.display(), entries.count()),
        ),
        Err(err) => Check::fail(GROUP, subject, format!("cannot list {}: {err}", path.display())),
    }
}
