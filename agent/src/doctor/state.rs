//! The agent's own state: `work_dir` (sandboxes, spool, fingerprint key) and the identity
//! (`key.pem` 0600 in a 0700 directory, a certificate valid now).

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use chrono::Utc;

use super::Check;
use crate::config::AgentConfig;
use crate::identity::{IdentityError, IdentityStore};

const GROUP: &str = "state";

/// Checks `work_dir` and the identity.
pub fn check(config: &AgentConfig) -> Vec<Check> {
    let mut checks = vec![work_dir(&config.agent.work_dir)];
    match &config.agent.identity_dir {
        Some(dir) => checks.extend(identity(dir)),
        None => checks.push(Check::ok(
            GROUP,
            "identity",
            "no identity_dir configured: `check` runs standalone (`run` needs one, written by `enroll`)",
        )),
    }
    checks
}

fn work_dir(dir: &Path) -> Check {
    let subject = format!("work_dir {}", dir.display());
    match std::fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => Check::fail(GROUP, subject, "exists but is not a directory"),
        Ok(meta) if meta.mode() & 0o022 != 0 => Check::fail(
            GROUP,
            subject,
            format!(
                "mode {:o} lets others write into it (sandboxes and the spool live there): chmod go-w {}",
                meta.mode() & 0o7777,
                dir.display()
            ),
        ),
        Ok(meta) => match writable(dir) {
            Ok(()) => Check::ok(
                GROUP,
                subject,
                format!("writable, mode {:o}, owner uid {}", meta.mode() & 0o7777, meta.uid()),
            ),
            Err(err) => Check::fail(GROUP, subject, format!("not writable by this user: {err}")),
        },
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            match dir.ancestors().skip(1).find(|ancestor| ancestor.is_dir()) {
                Some(parent) if writable(parent).is_ok() => Check::warn(
                    GROUP,
                    subject,
                    format!(
                        "does not exist yet; the agent creates it in {} at start",
                        parent.display()
                    ),
                ),
                Some(parent) => Check::fail(
                    GROUP,
                    subject,
                    format!("does not exist, and {} is not writable to create it", parent.display()),
                ),
                None => Check::fail(GROUP, subject, "does not exist"),
            }
        }
        Err(err) => Check::fail(GROUP, subject, format!("cannot inspect: {err}")),
    }
}

/// Whether this user may create a file in `dir` (tried with a file removed at once).
fn writable(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".doctor-write-{}", std::process::id()));
    std::fs::OpenOptions::new().write(true).create_new(true).open(&probe)?;
    std::fs::remove_file(&probe)
}

fn identity(dir: &Path) -> Vec<Check> {
    let mut checks = Vec::new();
    let subject = format!("identity {}", dir.display());
    match std::fs::metadata(dir) {
        Ok(meta) if meta.mode() & 0o077 != 0 => checks.push(Check::fail(
            GROUP,
            subject.clone(),
            format!(
                "mode {:o}: the identity directory must be private (chmod 700 {})",
                meta.mode() & 0o7777,
                dir.display()
            ),
        )),
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            checks.push(Check::fail(
                GROUP,
                subject,
                "does not exist: enroll first (lifeboat-agent enroll --coordinator … --token … --ca-pin …)",
            ));
            return checks;
        }
        Err(err) => {
            checks.push(Check::fail(GROUP, subject, format!("cannot inspect: {err}")));
            return checks;
        }
    }
    let key = dir.join("key.pem");
    if let Ok(meta) = std::fs::metadata(&key)
        && meta.mode() & 0o077 != 0
    {
        checks.push(Check::fail(
            GROUP,
            "key.pem",
            format!(
                "mode {:o}: the private key must be readable by the agent alone (chmod 600 {})",
                meta.mode() & 0o7777,
                key.display()
            ),
        ));
    }
    checks.push(certificate(dir));
    checks
}

fn certificate(dir: &Path) -> Check {
    let identity = match IdentityStore::Dir(dir.to_owned()).load() {
        Ok(identity) => identity,
        Err(err @ IdentityError::NotEnrolled(_)) => return Check::fail(GROUP, "certificate", err.to_string()),
        Err(err) => return Check::fail(GROUP, "certificate", format!("unusable identity: {err}")),
    };
    let now = Utc::now();
    let who = format!("agent {} in {}", identity.agent_id, identity.environment);
    if identity.not_before > now {
        return Check::fail(
            GROUP,
            "certificate",
            format!(
                "{who}: not valid before {}: this machine's clock is behind",
                identity.not_before.to_rfc3339()
            ),
        );
    }
    if let Err(err) = identity.ensure_valid() {
        return Check::fail(GROUP, "certificate", format!("{who}: {err}"));
    }
    if identity.renew_at() < now {
        return Check::warn(
            GROUP,
            "certificate",
            format!(
                "{who}: valid until {}, renewal is due (the running agent renews it)",
                identity.not_after.to_rfc3339()
            ),
        );
    }
    Check::ok(
        GROUP,
        "certificate",
        format!("{who}, valid until {}", identity.not_after.to_rfc3339()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn a_work_dir_others_may_write_fails() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        assert_eq!(work_dir(dir.path()).status, super::super::Status::Ok);
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let check = work_dir(dir.path());
        assert_eq!(check.status, super::super::Status::Fail);
        assert!(check.detail.contains("chmod go-w"), "{}", check.detail);
        assert_eq!(work_dir(&dir.path().join("new")).status, super::super::Status::Warn);
    }

    #[test]
    fn an_identity_others_may_read_fails_and_a_missing_one_asks_to_enroll() {
        let dir = tempfile::tempdir().unwrap();
        let missing = identity(&dir.path().join("identity"));
        assert!(missing[0].detail.contains("enroll first"), "{:?}", missing);
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let checks = identity(dir.path());
        assert!(checks[0].detail.contains("chmod 700"), "{checks:?}");
        assert!(checks.iter().all(|check| check.status == super::super::Status::Fail));
    }
}
