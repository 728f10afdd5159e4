//! The agent configuration file (`agent.toml`, `docs/agent-config.md`): the contract users write.
//!
//! Parse, don't validate: every value with a fixed set of meanings becomes a typed value while
//! the file is read (a check is exactly one [`CheckKind`], `pick` a [`Pick`], a schedule 5 cron
//! fields, durations within their bounds), with `deny_unknown_fields`; any error names the file,
//! the line and the key, and the command exits 2. `${VAR}` in string values is read from the
//! agent's environment while parsing, so a missing variable is reported at its line like any
//! other error. References between sections (a backup's or test's `asset`) are checked after
//! parsing, with the span of the offending value.
//!
//! `[agent] coordinator` and `identity_dir` are needed by `run` only: `check` works without them.

mod check;
mod pick;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use lifeboat_shared::config_file::{self, ConfigError};
use lifeboat_shared::durations::HumanDuration;
pub use lifeboat_shared::env_string::{EnvString, expand};
use lifeboat_shared::protocol::{
    AssetDecl, BackupDecl, Inventory, Location, MAX_INVENTORY_ITEMS, MAX_OBJECTIVE_SECONDS, MAX_TEST_TIMEOUT_SECONDS,
    TestDecl,
};
use lifeboat_shared::telemetry::TelemetryConfig;
use serde::{Deserialize, Deserializer};
use toml::Spanned;

pub use check::{CheckKind, CheckSpec, Tolerance};
pub use pick::{Pick, PickError};

/// Where the agent keeps its state when `work_dir` is not given.
const DEFAULT_WORK_DIR: &str = "/var/lib/lifeboat-agent/work";
/// The longest a restore test may be given.
const MAX_TIMEOUT_SECS: u64 = MAX_TEST_TIMEOUT_SECONDS;
/// The longest RPO, RTO, test interval, retention or keep-on-failure.
const MAX_PERIOD_SECS: u64 = 10 * 365 * 86_400;
/// The shortest and longest posture scan interval.
const SCAN_INTERVAL_SECS: std::ops::RangeInclusive<u64> = 1..=30 * 86_400;

/// The whole agent configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    pub agent: AgentSection,
    #[serde(default)]
    pub asset: Vec<AssetConfig>,
    #[serde(default)]
    pub backup: Vec<BackupConfig>,
    #[serde(default)]
    pub test: Vec<TestConfig>,
    #[serde(default)]
    pub credential: Vec<CredentialConfig>,
    #[serde(default)]
    pub scan: ScanConfig,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// The file this was loaded from and its text, for errors found after loading.
    #[serde(skip)]
    pub source: Option<(PathBuf, String)>,
}

/// `[agent]`: how to reach the coordinator and where the agent keeps its state.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    /// `https://host:port` of the coordinator (`run` only).
    #[serde(default)]
    pub coordinator: Option<String>,
    /// key.pem (0600), cert.pem, ca.pem (`run` only).
    #[serde(default)]
    pub identity_dir: Option<PathBuf>,
    /// Sandboxes, the result spool and the posture state live here.
    #[serde(default = "default_work_dir")]
    pub work_dir: PathBuf,
    /// Shown in `agents list`; defaults to the hostname.
    #[serde(default)]
    pub name: Option<String>,
}

/// What kind of thing an asset is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AssetKind {
    Postgres,
    Sqlite,
    Files,
}

impl AssetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Sqlite => "sqlite",
            Self::Files => "files",
        }
    }
}

/// `[[asset]]`: something whose data must survive.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetConfig {
    pub name: Spanned<String>,
    pub kind: AssetKind,
    /// Connection URL (PostgreSQL) — opened read-only.
    #[serde(default)]
    pub url: Option<EnvString>,
    /// Path (SQLite file, files directory).
    #[serde(default)]
    pub path: Option<EnvString>,
    #[serde(default)]
    pub location: Location,
    /// At most a century, like `rto` and `test_interval` (the protocol's bound).
    #[serde(default = "default_rpo", deserialize_with = "objective")]
    pub rpo: HumanDuration,
    #[serde(default = "default_rto", deserialize_with = "objective")]
    pub rto: HumanDuration,
    /// How often a restore test must pass (default 24 h).
    #[serde(default = "default_test_interval", deserialize_with = "objective")]
    pub test_interval: HumanDuration,
    /// `table.column` whose newest value gives the real data age of a restore.
    #[serde(default)]
    pub freshness: Option<String>,
}

/// Where an asset's backups live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupKind {
    PgDumpDir,
    PgBasebackupDir,
    SqliteDir,
    Restic,
    FilesDir,
}

impl BackupKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PgDumpDir => "pg_dump_dir",
            Self::PgBasebackupDir => "pg_basebackup_dir",
            Self::SqliteDir => "sqlite_dir",
            Self::Restic => "restic",
            Self::FilesDir => "files_dir",
        }
    }
}

/// `[[backup]]`: a backup source of an asset.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {
    pub name: Spanned<String>,
    pub asset: Spanned<String>,
    pub kind: BackupKind,
    /// Directory (or restic repository path).
    pub path: EnvString,
    /// restic: environment variable holding the repository password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// restic: file holding the repository password.
    #[serde(default)]
    pub password_file: Option<EnvString>,
    #[serde(default)]
    pub location: Location,
    /// Recovery points older than this may disappear without it being reported.
    #[serde(default, deserialize_with = "optional_period")]
    pub retention: Option<HumanDuration>,
}

/// `[[test]]`: a restore test plan. An asset may have several; every one of them runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestConfig {
    pub asset: Spanned<String>,
    /// 5-field cron or a macro (`@daily`), UTC; written out to 5 fields when loaded.
    pub schedule: Spanned<String>,
    /// `latest` or `random_within:30d`.
    #[serde(default)]
    pub pick: Pick,
    /// 1 s to 7 days (the protocol's bound).
    #[serde(default = "default_timeout", deserialize_with = "test_timeout")]
    pub timeout: HumanDuration,
    /// Keep a failed sandbox this long for inspection.
    #[serde(default, deserialize_with = "optional_period")]
    pub keep_on_failure: Option<HumanDuration>,
    #[serde(default)]
    pub check: Vec<CheckSpec>,
}

/// `[[credential]]`: a declared credential.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialConfig {
    pub name: String,
    pub kind: String,
    #[serde(default)]
    pub token_type: Option<String>,
    #[serde(default)]
    pub purpose: Option<String>,
    #[serde(default)]
    pub value: Option<EnvString>,
    /// The account (Railway account/workspace/project, AWS account id, Kubernetes cluster) the
    /// credential belongs to; unknown means it may reach any.
    #[serde(default)]
    pub account: Option<String>,
    /// aws: an IAM policy document or a `get-account-authorization-details` export;
    /// kubernetes: RBAC manifests (YAML or JSON).
    #[serde(default)]
    pub policy: Option<EnvString>,
    /// The principal in `policy`: an IAM user/role ARN or name, a `namespace/name` service account.
    #[serde(default)]
    pub subject: Option<String>,
}

/// `[scan]`: credential discovery paths.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanConfig {
    #[serde(default)]
    pub paths: Vec<PathBuf>,
    /// How often the daemon runs a posture scan (inventory, locations, credentials; no restore);
    /// 1 s to 30 days.
    #[serde(default = "default_scan_interval", deserialize_with = "scan_interval")]
    pub interval: HumanDuration,
    /// Scan the agent's own environment variables (default on).
    #[serde(default = "default_true")]
    pub environment: bool,
    /// Scan the CLI credential stores (`~/.aws/credentials`, kubeconfig, …) of this home
    /// directory; default `$HOME`.
    #[serde(default)]
    pub home: Option<PathBuf>,
}

impl Default for ScanConfig {
    fn default() -> Self {
        Self {
            paths: Vec::new(),
            interval: default_scan_interval(),
            environment: true,
            home: None,
        }
    }
}

fn default_scan_interval() -> HumanDuration {
    HumanDuration::from_secs(300)
}
fn default_true() -> bool {
    true
}

fn default_rpo() -> HumanDuration {
    HumanDuration::from_secs(24 * 3600)
}
fn default_rto() -> HumanDuration {
    HumanDuration::from_secs(3600)
}
fn default_test_interval() -> HumanDuration {
    HumanDuration::from_secs(24 * 3600)
}
fn default_timeout() -> HumanDuration {
    HumanDuration::from_secs(3600)
}
fn default_work_dir() -> PathBuf {
    PathBuf::from(DEFAULT_WORK_DIR)
}

/// A duration within `range` seconds, or an error naming the range.
fn bounded<'de, D: Deserializer<'de>>(
    deserializer: D,
    range: std::ops::RangeInclusive<u64>,
    what: &str,
) -> Result<HumanDuration, D::Error> {
    let duration = HumanDuration::deserialize(deserializer)?;
    if range.contains(&duration.as_secs()) {
        Ok(duration)
    } else {
        Err(serde::de::Error::custom(format!(
            "{what} must be between {} and {}, got {duration}",
            HumanDuration::from_secs(*range.start()),
            HumanDuration::from_secs(*range.end())
        )))
    }
}

fn period<'de, D: Deserializer<'de>>(deserializer: D) -> Result<HumanDuration, D::Error> {
    bounded(deserializer, 1..=MAX_PERIOD_SECS, "the duration")
}

/// An RPO, RTO or test interval: what the coordinator accepts in an inventory.
fn objective<'de, D: Deserializer<'de>>(deserializer: D) -> Result<HumanDuration, D::Error> {
    bounded(deserializer, 1..=MAX_OBJECTIVE_SECONDS, "the duration")
}

fn optional_period<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<HumanDuration>, D::Error> {
    period(deserializer).map(Some)
}

fn test_timeout<'de, D: Deserializer<'de>>(deserializer: D) -> Result<HumanDuration, D::Error> {
    bounded(deserializer, 1..=MAX_TIMEOUT_SECS, "timeout")
}

fn scan_interval<'de, D: Deserializer<'de>>(deserializer: D) -> Result<HumanDuration, D::Error> {
    bounded(deserializer, SCAN_INTERVAL_SECS, "interval")
}

impl AgentConfig {
    /// Reads, parses and validates an agent config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let (mut config, text): (AgentConfig, String) = config_file::load(path)?;
        config.validate(path, &text)?;
        config.source = Some((path.to_owned(), text));
        Ok(config)
    }

    /// Parses and validates config text.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let mut config: AgentConfig = config_file::parse(path, text)?;
        config.validate(path, text)?;
        config.source = Some((path.to_owned(), text.to_owned()));
        Ok(config)
    }

    /// The coordinator URL and identity directory the daemon needs; an error naming the file and
    /// the missing key when the config has none (`check` does not need them).
    pub fn daemon_settings(&self) -> Result<(String, PathBuf), ConfigError> {
        let (path, text) = self
            .source
            .clone()
            .unwrap_or_else(|| (PathBuf::from("agent.toml"), String::new()));
        let section = text.find("[agent]").map(|start| start..start + 7);
        let coordinator = self.agent.coordinator.clone().ok_or_else(|| {
            ConfigError::at(
                &path,
                &text,
                section.clone(),
                "agent.coordinator",
                "`lifeboat-agent run` needs the coordinator's https:// URL",
            )
        })?;
        let identity_dir = self.agent.identity_dir.clone().ok_or_else(|| {
            ConfigError::at(
                &path,
                &text,
                section,
                "agent.identity_dir",
                "`lifeboat-agent run` needs the directory enroll wrote the identity to",
            )
        })?;
        Ok((coordinator, identity_dir))
    }

    fn validate(&mut self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let mut assets = HashSet::new();
        for asset in &self.asset {
            if !assets.insert(asset.name.get_ref().as_str()) {
                return Err(ConfigError::at(
                    path,
                    text,
                    Some(asset.name.span()),
                    "asset.name",
                    "declared twice",
                ));
            }
        }
        let unknown = |name: &Spanned<String>, field: &str| {
            ConfigError::at(
                path,
                text,
                Some(name.span()),
                field,
                format!("no [[asset]] is named {:?}", name.get_ref()),
            )
        };
        let mut backups = HashSet::new();
        for backup in &self.backup {
            if !assets.contains(backup.asset.get_ref().as_str()) {
                return Err(unknown(&backup.asset, "backup.asset"));
            }
            if !backups.insert(backup.name.get_ref().as_str()) {
                return Err(ConfigError::at(
                    path,
                    text,
                    Some(backup.name.span()),
                    "backup.name",
                    "declared twice",
                ));
            }
        }
        self.check_counts(path, text)?;
        for test in &mut self.test {
            if !assets.contains(test.asset.get_ref().as_str()) {
                return Err(unknown(&test.asset, "test.asset"));
            }
            let span = test.schedule.span();
            match lifeboat_shared::schedule::normalize(test.schedule.get_ref()) {
                Ok(fields) => test.schedule = Spanned::new(span, fields),
                Err(err) => return Err(ConfigError::at(path, text, Some(span), "test.schedule", err.reason)),
            }
            let mut names = HashSet::new();
            if let Some(check) = test.check.iter().find(|check| !names.insert(check.name.as_str())) {
                return Err(ConfigError::at(
                    path,
                    text,
                    Some(test.asset.span()),
                    "test.check.name",
                    format!("two checks of this test are named {:?}", check.name),
                ));
            }
        }
        if let Some(coordinator) = &self.agent.coordinator
            && !coordinator.starts_with("https://")
        {
            return Err(ConfigError::at(
                path,
                text,
                text.find("coordinator").map(|start| start..start + 11),
                "agent.coordinator",
                "expected https://host:port",
            ));
        }
        Ok(())
    }

    /// Refuses more assets, backups or tests than an inventory may carry.
    fn check_counts(&self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let too_many = [
            (
                "asset",
                self.asset.get(MAX_INVENTORY_ITEMS).map(|asset| asset.name.span()),
            ),
            (
                "backup",
                self.backup.get(MAX_INVENTORY_ITEMS).map(|backup| backup.name.span()),
            ),
            ("test", self.test.get(MAX_INVENTORY_ITEMS).map(|test| test.asset.span())),
        ];
        match too_many
            .into_iter()
            .find_map(|(table, span)| span.map(|span| (table, span)))
        {
            Some((table, span)) => Err(ConfigError::at(
                path,
                text,
                Some(span),
                table,
                format!("at most {MAX_INVENTORY_ITEMS} [[{table}]] entries"),
            )),
            None => Ok(()),
        }
    }

    /// The tests of `asset`, in the order they are declared.
    pub fn tests_of<'a>(&'a self, asset: &'a str) -> impl Iterator<Item = &'a TestConfig> + 'a {
        self.test.iter().filter(move |test| test.asset.get_ref() == asset)
    }

    /// The inventory reported to the coordinator.
    pub fn inventory(&self) -> Inventory {
        Inventory {
            assets: self
                .asset
                .iter()
                .map(|asset| AssetDecl {
                    name: asset.name.get_ref().clone(),
                    kind: asset.kind.as_str().to_owned(),
                    rpo_seconds: asset.rpo.as_secs(),
                    rto_seconds: asset.rto.as_secs(),
                    location: asset.location.clone(),
                    test_interval_seconds: asset.test_interval.as_secs(),
                })
                .collect(),
            backups: self
                .backup
                .iter()
                .map(|backup| BackupDecl {
                    name: backup.name.get_ref().clone(),
                    asset: backup.asset.get_ref().clone(),
                    kind: backup.kind.as_str().to_owned(),
                    location: backup.location.clone(),
                })
                .collect(),
            // The coordinator schedules one run per asset, on its first test's schedule; the run
            // carries out every test of the asset, so their timeouts add up.
            tests: self
                .asset
                .iter()
                .filter_map(|asset| {
                    let tests: Vec<&TestConfig> = self.tests_of(asset.name.get_ref()).collect();
                    let first = tests.first()?;
                    Some(TestDecl {
                        asset: first.asset.get_ref().clone(),
                        schedule: first.schedule.get_ref().clone(),
                        pick: first.pick.to_string(),
                        timeout_seconds: tests
                            .iter()
                            .map(|test| test.timeout.as_secs())
                            .sum::<u64>()
                            .min(MAX_TIMEOUT_SECS),
                        checks: tests
                            .iter()
                            .flat_map(|test| test.check.iter().map(|check| check.name.clone()))
                            .collect(),
                    })
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DESIGN_EXAMPLE: &str = r#"
[agent]
coordinator  = "https://lifeboat.example.com:7443"
identity_dir = "/var/lib/lifeboat-agent/identity"
work_dir     = "/var/lib/lifeboat-agent/work"

[[asset]]
name = "rentals-db"
kind = "postgres"
url  = "postgres://lifeboat@db/rentals"
location = { provider = "railway", account = "pocketos", region = "us-west1", volume = "vol-7f3a" }
rpo = "24h"
rto = "30m"
freshness = "bookings.created_at"

[[backup]]
name  = "rentals-nightly"
asset = "rentals-db"
kind  = "pg_dump_dir"
path  = "/mnt/backups/rentals"
location = { provider = "railway", account = "pocketos", volume = "vol-7f3a" }

[[test]]
asset    = "rentals-db"
schedule = "0 */6 * * *"
pick     = "latest"
timeout  = "1h"

  [[test.check]]
  name = "recent bookings exist"
  sql  = "select count(*) > 0 from bookings where created_at > now() - interval '30 days'"

  [[test.check]]
  name = "row counts match production"
  row_counts = { tables = ["bookings", "customers"], tolerance = "5%" }

  [[test.check]]
  name = "app serves bookings"
  service = "./bin/rentals --port {port}"
  http    = "http://127.0.0.1:{port}/health"
  expect_status = 200

[[credential]]
name       = "railway-domains-token"
kind       = "railway"
token_type = "account"
purpose    = "manage custom domains"

[scan]
paths = ["/srv/app", "/home/deploy"]
"#;

    fn parse(text: &str) -> Result<AgentConfig, ConfigError> {
        AgentConfig::parse(Path::new("agent.toml"), text)
    }

    #[test]
    fn design_example_parses_into_an_inventory() {
        let config = parse(DESIGN_EXAMPLE).expect("valid");
        let inventory = config.inventory();
        assert_eq!(inventory.assets[0].rto_seconds, 1_800);
        assert_eq!(inventory.backups[0].kind, "pg_dump_dir");
        assert_eq!(inventory.tests[0].checks.len(), 3);
    }

    #[test]
    fn unknown_asset_reference_names_line_and_field() {
        let text = DESIGN_EXAMPLE.replace("asset    = \"rentals-db\"", "asset    = \"rentals\"");
        let message = parse(&text).expect_err("invalid").to_string();
        assert!(message.starts_with("agent.toml:24:"), "{message}");
        assert!(message.contains("test.asset"), "{message}");
    }

    #[test]
    fn unknown_field_and_bad_cron_are_located() {
        let text = DESIGN_EXAMPLE.replace("rpo = \"24h\"", "rpoo = \"24h\"");
        let message = parse(&text).expect_err("invalid").to_string();
        assert!(message.starts_with("agent.toml:12:"), "{message}");
        assert!(message.contains("rpoo"), "{message}");

        let text = DESIGN_EXAMPLE.replace("0 */6 * * *", "0 0 */6 * * *");
        let message = parse(&text).expect_err("invalid").to_string();
        assert!(message.contains("expected 5 fields"), "{message}");
    }

    #[test]
    fn typos_are_errors_at_their_line_not_silent_defaults() {
        let text = DESIGN_EXAMPLE.replace("pick     = \"latest\"", "pick     = \"newest\"");
        let message = parse(&text).expect_err("invalid").to_string();
        assert!(message.starts_with("agent.toml:26:"), "{message}");
        assert!(message.contains("invalid pick \"newest\""), "{message}");

        let text = DESIGN_EXAMPLE.replace(
            "  sql  = \"select count(*) > 0",
            "  command = \"true\"\n  sql  = \"select count(*) > 0",
        );
        let message = parse(&text).expect_err("invalid").to_string();
        assert!(
            message.contains("sql and command") && message.contains("exactly one kind"),
            "{message}"
        );
        assert!(message.starts_with("agent.toml:29:"), "{message}");

        let text = DESIGN_EXAMPLE.replace("timeout  = \"1h\"", "timeout  = \"400d\"");
        let message = parse(&text).expect_err("invalid").to_string();
        assert!(message.contains("timeout must be between"), "{message}");
    }

    #[test]
    fn check_needs_no_coordinator_and_macros_are_schedules() {
        let text = DESIGN_EXAMPLE
            .replace("coordinator  = \"https://lifeboat.example.com:7443\"\n", "")
            .replace("identity_dir = \"/var/lib/lifeboat-agent/identity\"\n", "")
            .replace("0 */6 * * *", "@daily");
        let config = parse(&text).expect("valid without a coordinator");
        assert_eq!(config.test[0].schedule.get_ref(), "0 0 * * *");
        let message = config.daemon_settings().expect_err("run needs them").to_string();
        assert!(message.contains("agent.coordinator"), "{message}");
    }

    #[test]
    fn every_test_of_an_asset_counts() {
        let second = "\n[[test]]\nasset = \"rentals-db\"\nschedule = \"@weekly\"\ntimeout = \"2h\"\n\n  [[test.check]]\n  name = \"deep\"\n  integrity = true\n";
        let text = DESIGN_EXAMPLE.replace("[[credential]]", &format!("{second}\n[[credential]]"));
        let config = parse(&text).expect("valid");
        assert_eq!(config.tests_of("rentals-db").count(), 2);
        let inventory = config.inventory();
        assert_eq!(inventory.tests.len(), 1, "one scheduled run per asset");
        assert_eq!(inventory.tests[0].timeout_seconds, 3 * 3_600);
        assert_eq!(inventory.tests[0].checks.len(), 4);
    }

    #[test]
    fn numbers_the_coordinator_would_refuse_are_refused_here_with_their_line() {
        let text = DESIGN_EXAMPLE.replace("timeout  = \"1h\"", "timeout  = \"8d\"");
        let message = parse(&text).expect_err("too long").to_string();
        assert!(message.starts_with("agent.toml:27:"), "{message}");
        assert!(
            message.contains("field `timeout`") && message.contains("must be between"),
            "{message}"
        );

        let text = DESIGN_EXAMPLE.replace("rpo = \"24h\"", "rpo = \"40000d\"");
        let message = parse(&text).expect_err("too long").to_string();
        assert!(message.starts_with("agent.toml:12:"), "{message}");
        assert!(message.contains("field `rpo`"), "{message}");

        let text = DESIGN_EXAMPLE.replace("timeout  = \"1h\"", "timeout  = \"7d\"");
        assert_eq!(
            parse(&text).expect("7 days is the bound").inventory().tests[0].timeout_seconds,
            MAX_TEST_TIMEOUT_SECONDS
        );
    }

    #[test]
    fn variables_expand_and_missing_ones_are_errors() {
        let env = |name: &str| (name == "DB_PASSWORD").then(|| "s3cret".to_owned());
        assert_eq!(
            expand("postgres://u:${DB_PASSWORD}@h/db", env).as_deref(),
            Ok("postgres://u:s3cret@h/db")
        );
        assert_eq!(expand("cost $$5", env).as_deref(), Ok("cost $5"));
        assert!(
            expand("${MISSING_VAR_FOR_TEST}", env)
                .expect_err("missing")
                .contains("MISSING_VAR_FOR_TEST")
        );
        assert!(expand("${unclosed", env).is_err());

        let text = DESIGN_EXAMPLE.replace(
            "postgres://lifeboat@db/rentals",
            "postgres://lifeboat:${LIFEBOAT_TEST_UNSET_VARIABLE}@db/rentals",
        );
        let message = parse(&text).expect_err("invalid").to_string();
        assert!(message.starts_with("agent.toml:10:"), "{message}");
        assert!(message.contains("LIFEBOAT_TEST_UNSET_VARIABLE"), "{message}");
    }
}
