//! Each backup source: reachable (its recovery points can be listed, as a drill lists them, but
//! without hashing them) and readable in place by the sandbox user.
//!
//! Readability is first judged from the mode bits ([`JailUser::may_read_tree`]); when they say
//! no, access control lists may still grant it, so a jail started as the sandbox user looks for
//! the first entry it cannot read, which decides.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;

use super::Check;
use crate::backups::{self, DiscoverOptions, SourceSpec};
use crate::config::{AgentConfig, BackupConfig};
use crate::jail::{JailContext, JailUser, Shells, StrayLog};

const GROUP: &str = "backups";
/// How long listing one source may take (a remote restic repository, a slow mount).
const LIST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the jailed search for an unreadable entry may take.
const FIND_TIMEOUT: Duration = Duration::from_secs(30);

/// Checks every `[[backup]]`, concurrently.
pub async fn check(config: &AgentConfig, user: Option<&JailUser>, context: Option<&JailContext>) -> Vec<Check> {
    let per_source = config.backup.iter().map(|backup| async move {
        let mut checks = vec![reachable(backup, context).await];
        let path = PathBuf::from(&backup.path.value);
        if path.is_absolute()
            && let Some(user) = user
        {
            checks.push(readable(backup, &path, user, context).await);
        }
        checks
    });
    futures::future::join_all(per_source)
        .await
        .into_iter()
        .flatten()
        .collect()
}

fn subject(backup: &BackupConfig) -> String {
    format!(
        "{} ({} {})",
        backup.name.get_ref(),
        backup.kind.as_str(),
        backup.path.value
    )
}

/// Lists the source's recovery points as a drill would, without checksums.
/// Listing runs in the doctor's trivial jail, as a drill's discovery does.
async fn reachable(backup: &BackupConfig, context: Option<&JailContext>) -> Check {
    let Some(context) = context else {
        return Check::fail(
            GROUP,
            subject(backup),
            "not listed: no jail could be started (see the jail checks)",
        );
    };
    let jail = context.jail(&StrayLog::default());
    let spec = SourceSpec {
        kind: backup.kind,
        path: PathBuf::from(&backup.path.value),
        restic_password: crate::runner::restic_password(backup),
        jail,
    };
    let listed = tokio::time::timeout(
        LIST_TIMEOUT,
        backups::discover_with(&spec, DiscoverOptions { checksums: false }),
    )
    .await;
    match listed {
        Err(_elapsed) => Check::fail(
            GROUP,
            subject(backup),
            format!("listing its recovery points took over {} s", LIST_TIMEOUT.as_secs()),
        ),
        Ok(Err(err)) => Check::fail(GROUP, subject(backup), err.to_string()),
        Ok(Ok(points)) => match points.first() {
            None => Check::warn(
                GROUP,
                subject(backup),
                "reachable, but holds no recovery point yet (a drill reports backup.missing)",
            ),
            Some(newest) => {
                let age = Utc::now() - newest.created_at;
                Check::ok(
                    GROUP,
                    subject(backup),
                    format!(
                        "reachable: {} recovery point(s), newest {} ({} h old)",
                        points.len(),
                        newest.id,
                        age.num_hours()
                    ),
                )
            }
        },
    }
}

/// Whether the sandbox user can read the whole source in place.
async fn readable(backup: &BackupConfig, path: &Path, user: &JailUser, context: Option<&JailContext>) -> Check {
    let subject = format!("{} read by {}", backup.name.get_ref(), user.name());
    if !path.exists() {
        return Check::fail(GROUP, subject, format!("{} does not exist", path.display()));
    }
    if user.may_read_tree(path) {
        return Check::ok(GROUP, subject, "the mode bits let it read every entry");
    }
    let Some(context) = context else {
        return Check::fail(GROUP, subject, user.unreadable(path, path).to_string());
    };
    match first_unreadable(context, path).await {
        Ok(None) => Check::ok(GROUP, subject, "access control lists let it read every entry"),
        Ok(Some(entry)) => Check::fail(GROUP, subject, user.unreadable(&entry, path).to_string()),
        Err(err) => Check::fail(GROUP, subject, err),
    }
}

/// Asks a jail started as the sandbox user for the first entry of `path` it cannot read.
async fn first_unreadable(context: &JailContext, path: &Path) -> Result<Option<PathBuf>, String> {
    let output = context
        .jail(&StrayLog::default())
        .shells(Shells::Real)
        .readable(path, path)
        .command("/usr/bin/find")
        .arg(path)
        .args([
            "(",
            "-type",
            "d",
            "!",
            "-executable",
            ")",
            "-print",
            "-quit",
            ",",
            "!",
            "-readable",
            "-print",
            "-quit",
        ])
        .output(FIND_TIMEOUT)
        .await
        .map_err(|err| err.to_string())?;
    Ok(output
        .stdout
        .lines()
        .next()
        .filter(|line| !line.is_empty())
        .map(PathBuf::from))
}
