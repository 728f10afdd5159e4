//! How bad a found credential is, judged by what it can destroy: a database superuser, a
//! platform or cloud management token, a secret manager's token is `critical`; a database
//! password, a source-hosting token, a private key is `high`; a messaging or AI key `medium`; a
//! read-only, publishable or test-mode key `low`.
//!
//! Every rule says its severity in `agent/rules/credentials.toml`; [`assess`] raises it where
//! the value itself says more (a connection string that logs in as `postgres`, `root` or `sa`
//! is a superuser). The scope analysers can only raise it further (`scan` and posture take the
//! maximum with what the analysis found).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The severity of one credential, lowest first (so `max` is the worse).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum CredentialSeverity {
    /// Read-only, publishable or test-mode keys: worth cleaning up, nothing to destroy.
    Low,
    /// Keys of services that hold no data of ours to destroy (chat, mail, AI, monitoring).
    #[default]
    Medium,
    /// Can write or delete data: database passwords, source hosting, private keys.
    High,
    /// Can destroy databases and their backups: superusers, platform, cloud and secret managers.
    Critical,
}

impl CredentialSeverity {
    /// Every level, lowest first.
    pub const ALL: [Self; 4] = [Self::Low, Self::Medium, Self::High, Self::Critical];

    /// `low`, `medium`, `high` or `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }

    /// The finding severity of the same weight (findings have no `low`: it is `info`).
    pub fn finding_severity(self) -> lifeboat_shared::findings::Severity {
        use lifeboat_shared::findings::Severity;
        match self {
            Self::Low => Severity::Info,
            Self::Medium => Severity::Medium,
            Self::High => Severity::High,
            Self::Critical => Severity::Critical,
        }
    }
}

impl fmt::Display for CredentialSeverity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A severity name that is not one of `low`, `medium`, `high`, `critical`.
#[derive(Debug, thiserror::Error)]
#[error("unknown severity {0:?} (expected low, medium, high or critical)")]
pub struct UnknownSeverity(String);

impl FromStr for CredentialSeverity {
    type Err = UnknownSeverity;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|level| level.as_str().eq_ignore_ascii_case(text.trim()))
            .ok_or_else(|| UnknownSeverity(text.to_owned()))
    }
}

/// Login names that are superusers by convention on the databases we know (PostgreSQL,
/// MySQL/MariaDB, SQL Server, Oracle, MongoDB, managed services' admin users).
const SUPERUSER_NAMES: &[&str] = &[
    "postgres",
    "root",
    "sa",
    "admin",
    "administrator",
    "system",
    "sys",
    "master",
    "doadmin",
    "avnadmin",
    "azure_superuser",
    "cloudsqlsuperuser",
    "supabase_admin",
    "elastic",
    "default",
];

/// Families whose credentials log in to a database server.
const DATABASE_FAMILIES: &[&str] = &[
    "postgres",
    "mysql",
    "mongodb",
    "redis",
    "sqlserver",
    "oracle",
    "database",
    "elasticsearch",
    "clickhouse",
];

/// The severity of a credential found by a rule of `family` with severity `rule_severity`,
/// raised to critical when the value logs in to a database as a superuser.
pub fn assess(family: &str, rule_severity: CredentialSeverity, value: &str) -> CredentialSeverity {
    if DATABASE_FAMILIES.contains(&family)
        && database_user(value).is_some_and(|user| SUPERUSER_NAMES.contains(&user.to_ascii_lowercase().as_str()))
    {
        return CredentialSeverity::Critical;
    }
    rule_severity
}

/// The login of a connection URL (`scheme://user:…@`), a keyword string (`user=… password=…`,
/// `User ID=…;Password=…`) or a `user:password` pair.
pub fn database_user(value: &str) -> Option<&str> {
    if let Some(scheme_end) = value.find("://") {
        let rest = &value[scheme_end + 3..];
        let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
        let userinfo = &authority[..authority.rfind('@')?];
        return Some(userinfo.split(':').next().unwrap_or(userinfo)).filter(|user| !user.is_empty());
    }
    let lower = value.to_ascii_lowercase();
    for key in ["user id=", "userid=", "uid=", "user=", "username="] {
        if let Some(position) = lower.find(key) {
            let start = position + key.len();
            let end = value[start..]
                .find([';', ' ', '&', '\'', '"'])
                .map_or(value.len(), |offset| start + offset);
            return Some(value[start..end].trim()).filter(|user| !user.is_empty());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_order_from_low_to_critical() {
        assert_eq!(
            "HIGH".parse::<CredentialSeverity>().ok(),
            Some(CredentialSeverity::High)
        );
        assert!("severe".parse::<CredentialSeverity>().is_err());
        assert!(CredentialSeverity::Critical > CredentialSeverity::High);
        assert!(CredentialSeverity::Low < CredentialSeverity::Medium);
    }

    #[test]
    fn database_superusers_are_critical() {
        let high = CredentialSeverity::High;
        assert_eq!(
            assess("postgres", high, "postgres://postgres:Tr0ub4dor@db/x"),
            CredentialSeverity::Critical
        );
        assert_eq!(
            assess("mysql", high, "mysql://root:p@ss@w0rd@db/x"),
            CredentialSeverity::Critical
        );
        assert_eq!(
            assess("sqlserver", high, "Server=db;User ID=sa;Password=Tr0ub4dor"),
            CredentialSeverity::Critical
        );
        assert_eq!(assess("postgres", high, "postgres://app:Tr0ub4dor@db/x"), high);
        assert_eq!(assess("github", high, "postgres://postgres:x@db"), high);
    }

    #[test]
    fn database_users_are_read_from_urls_and_keyword_strings() {
        assert_eq!(database_user("postgres://app:p@ss@db:5432/x"), Some("app"));
        assert_eq!(database_user("host=db user=backup password=x"), Some("backup"));
        assert_eq!(database_user("Server=x;UID=sa;PWD=y"), Some("sa"));
        assert_eq!(database_user("redis://:pw@cache"), None);
        assert_eq!(database_user("Tr0ub4dor"), None);
    }
}
