//! The coordinator configuration file (`coordinator.toml`, DESIGN.md §7).
//!
//! Parsed and validated before any port is bound: an error names the file, line and field.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use lifeboat_shared::config_file::{self, ConfigError};
use lifeboat_shared::durations::HumanDuration;
use lifeboat_shared::telemetry::TelemetryConfig;
use serde::Deserialize;

/// The whole coordinator configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// gRPC address agents connect to (mutual TLS).
    pub listen: SocketAddr,
    /// HTTP address for the API, status page and /metrics.
    #[serde(default = "default_http_listen")]
    pub http_listen: SocketAddr,
    /// Holds the CA (unless configured elsewhere) and the default SQLite store.
    pub data_dir: PathBuf,
    /// Names and addresses agents use to reach this coordinator; all go into the server certificate.
    pub server_names: Vec<String>,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub ca: CaConfig,
    #[serde(default)]
    pub agents: AgentsConfig,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    #[serde(default)]
    pub schedule: ScheduleConfig,
    #[serde(default)]
    pub alerts: AlertsConfig,
    /// Jira projects, PagerDuty services and webhooks messages can go to.
    #[serde(default)]
    pub channel: Vec<crate::escalation::channels::ChannelConfig>,
    /// Which flips go to which channels.
    #[serde(default)]
    pub route: Vec<RouteConfig>,
    /// How long shutdown waits for in-flight work before giving up.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace: HumanDuration,
    /// The guard in front of destructive calls (`guard check`, the Railway gate, MCP).
    #[serde(default)]
    pub guard: GuardConfig,
}

/// `[database]`: where the store lives.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite:///path/lifeboat.db` (default: `<data_dir>/lifeboat.db`) or `postgres://…`.
    pub url: Option<String>,
}

/// `[ca]`: an operator-provided CA; generated in `data_dir` on first start when absent.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaConfig {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// `[agents]`: agent identities and liveness.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentsConfig {
    /// Lifetime of agent certificates; agents renew at 2/3 of it.
    #[serde(default = "default_certificate_ttl")]
    pub certificate_ttl: HumanDuration,
    /// How often agents send heartbeats (announced to them in Welcome).
    #[serde(default = "default_heartbeat_interval")]
    pub heartbeat_interval: HumanDuration,
    /// How often in-memory last-seen times are written to the store.
    #[serde(default = "default_last_seen_flush")]
    pub last_seen_flush: HumanDuration,
    /// An agent silent for longer than this is shown as disconnected.
    #[serde(default = "default_offline_after")]
    pub offline_after: HumanDuration,
}

impl Default for AgentsConfig {
    fn default() -> Self {
        Self {
            certificate_ttl: default_certificate_ttl(),
            heartbeat_interval: default_heartbeat_interval(),
            last_seen_flush: default_last_seen_flush(),
            offline_after: default_offline_after(),
        }
    }
}

/// `[schedule]`: how due runs are materialised and leased.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Start times are spread over this window after the cron time (a fixed offset per test,
    /// so that a thousand tests at `0 3 * * *` do not start in the same second).
    #[serde(default = "default_jitter")]
    pub jitter: HumanDuration,
    /// A run not started this long after its due time is missed (and reported by the
    /// dead-man's switch), not started late.
    #[serde(default = "default_start_deadline")]
    pub start_deadline: HumanDuration,
    /// Leases of one run before it is given up.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Added to a run's timeout for its lease; an agent disconnected for this long loses its
    /// leases.
    #[serde(default = "default_lease_grace")]
    pub lease_grace: HumanDuration,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            jitter: default_jitter(),
            start_deadline: default_start_deadline(),
            max_attempts: default_max_attempts(),
            lease_grace: default_lease_grace(),
        }
    }
}

/// `[alerts]`: the dead-man's switch and escalation timing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// An agent silent this long is lost (`agent.lost`).
    #[serde(default = "default_agent_lost_after")]
    pub agent_lost_after: HumanDuration,
    /// How often every verdict is re-evaluated (overdue tests, lost agents, reminders).
    #[serde(default = "default_evaluate_every")]
    pub evaluate_every: HumanDuration,
    /// The status page's public URL, linked from tickets.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Reminders (Jira comments, PagerDuty re-triggers) per open ticket at most.
    #[serde(default = "default_max_reminders")]
    pub max_reminders: u32,
    /// The longest wait between two delivery attempts of a message (exponential backoff with
    /// jitter from 1 s up to this; a later `Retry-After` wins).
    #[serde(default = "default_retry_max_delay")]
    pub retry_max_delay: HumanDuration,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            agent_lost_after: default_agent_lost_after(),
            evaluate_every: default_evaluate_every(),
            public_url: None,
            max_reminders: default_max_reminders(),
            retry_max_delay: default_retry_max_delay(),
        }
    }
}

/// `[[route]]`: which flips go to which channels.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Environment globs (`pocketos-*`); default every environment.
    #[serde(default = "default_all")]
    pub environments: Vec<String>,
    /// Only flips whose worst reason is at least this severe.
    #[serde(default = "default_min_severity")]
    pub min_severity: lifeboat_shared::findings::Severity,
    /// Channel names (`[[channel]] name`).
    pub channels: Vec<String>,
    /// Wait this long before sending a trigger: a flip back within it sends nothing.
    #[serde(default)]
    pub group_wait: Option<HumanDuration>,
    /// Remind while still not recoverable, this often.
    #[serde(default)]
    pub repeat_interval: Option<HumanDuration>,
}

/// `[guard]`: the gate in front of destructive calls.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardConfig {
    /// The Railway API token `guard proxy` forwards with, as a `${VAR}` reference: only the
    /// proxy's environment holds it (expanded when the proxy starts, never by other commands).
    #[serde(default)]
    pub upstream_token: Option<String>,
    /// Or a file holding the token (read when the proxy starts).
    #[serde(default)]
    pub upstream_token_file: Option<PathBuf>,
    /// What a resource no inventory knows gets, unless its environment says otherwise.
    #[serde(default)]
    pub unknown_resources: UnknownResources,
    /// Per-environment settings: `[guard.environments.pocketos-staging]`.
    #[serde(default)]
    pub environments: std::collections::BTreeMap<String, GuardEnvironmentConfig>,
    /// GraphQL mutations that are neither known safe nor known destructive and may pass the
    /// Railway gate anyway (every other unknown mutation is refused).
    #[serde(default)]
    pub allow_mutations: Vec<String>,
}

/// `[guard.environments.NAME]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardEnvironmentConfig {
    pub unknown_resources: UnknownResources,
}

/// What the guard answers for a resource that no inventory puts an asset or backup on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownResources {
    /// Refused: Lifeboat cannot tell what would be lost.
    #[default]
    Refuse,
    /// Allowed: the environment holds nothing Lifeboat protects outside its inventories.
    Allow,
}

impl GuardConfig {
    /// The unknown-resource policy of `environment`.
    pub fn unknown_resources_in(&self, environment: &str) -> UnknownResources {
        self.environments
            .get(environment)
            .map_or(self.unknown_resources, |settings| settings.unknown_resources)
    }

    fn validate(
        &self,
        path: &Path,
        text: &str,
        span_of: impl Fn(&str) -> Option<std::ops::Range<usize>>,
    ) -> Result<(), ConfigError> {
        if let Some(template) = &self.upstream_token {
            if self.upstream_token_file.is_some() {
                return Err(ConfigError::at(
                    path,
                    text,
                    span_of("upstream_token"),
                    "guard.upstream_token",
                    "set upstream_token or upstream_token_file, not both",
                ));
            }
            if !template.contains("${") {
                return Err(ConfigError::at(
                    path,
                    text,
                    span_of("upstream_token"),
                    "guard.upstream_token",
                    "write a ${VARIABLE} reference (or use upstream_token_file): the token itself does not belong in a config file",
                ));
            }
        }
        if let Some(name) = self
            .environments
            .keys()
            .find(|name| lifeboat_shared::ids::Environment::parse(name).is_err())
        {
            return Err(ConfigError::at(
                path,
                text,
                span_of(name),
                "guard.environments",
                format!("{name:?} is not a valid environment name"),
            ));
        }
        for mutation in &self.allow_mutations {
            if let Err(problem) = crate::guard::graphql::allowable(mutation) {
                return Err(ConfigError::at(
                    path,
                    text,
                    span_of(mutation),
                    "guard.allow_mutations",
                    problem,
                ));
            }
        }
        Ok(())
    }
}

fn default_jitter() -> HumanDuration {
    HumanDuration::from_secs(300)
}
fn default_start_deadline() -> HumanDuration {
    HumanDuration::from_secs(3600)
}
fn default_max_attempts() -> u32 {
    3
}
fn default_lease_grace() -> HumanDuration {
    HumanDuration::from_secs(120)
}
fn default_agent_lost_after() -> HumanDuration {
    HumanDuration::from_secs(900)
}
fn default_evaluate_every() -> HumanDuration {
    HumanDuration::from_secs(30)
}
fn default_max_reminders() -> u32 {
    5
}
fn default_retry_max_delay() -> HumanDuration {
    HumanDuration::from_secs(600)
}
fn default_all() -> Vec<String> {
    vec!["*".to_owned()]
}
fn default_min_severity() -> lifeboat_shared::findings::Severity {
    lifeboat_shared::findings::Severity::High
}

fn default_http_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_shutdown_grace() -> HumanDuration {
    HumanDuration::from_secs(10)
}
fn default_certificate_ttl() -> HumanDuration {
    HumanDuration::from_secs(24 * 3600)
}
fn default_heartbeat_interval() -> HumanDuration {
    HumanDuration::from_secs(15)
}
fn default_last_seen_flush() -> HumanDuration {
    HumanDuration::from_secs(5)
}
fn default_offline_after() -> HumanDuration {
    HumanDuration::from_secs(60)
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let (config, text): (Config, String) = config_file::load(path)?;
        config.validate(path, &text)?;
        Ok(config)
    }

    /// Parses and validates config text (for tests and `demo`).
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let config: Config = config_file::parse(path, text)?;
        config.validate(path, text)?;
        Ok(config)
    }

    fn validate(&self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let span_of = |key: &str| {
            text.find(&format!("{key} ="))
                .or_else(|| text.find(key))
                .map(|start| start..start + key.len())
        };
        if self.server_names.is_empty() {
            return Err(ConfigError::at(
                path,
                text,
                span_of("server_names"),
                "server_names",
                "list at least one name or address agents use to reach this coordinator",
            ));
        }
        if let Some(name) = self.server_names.iter().find(|name| !valid_server_name(name)) {
            return Err(ConfigError::at(
                path,
                text,
                span_of(name),
                "server_names",
                format!("{name:?} is neither a DNS name nor an IP address"),
            ));
        }
        if self.ca.cert.is_some() != self.ca.key.is_some() {
            return Err(ConfigError::at(
                path,
                text,
                span_of("[ca]"),
                "ca",
                "set both cert and key, or neither (a CA is then generated in data_dir)",
            ));
        }
        if let Some(url) = &self.database.url
            && !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Err(ConfigError::at(
                path,
                text,
                span_of("url"),
                "database.url",
                "expected sqlite:///path/to/lifeboat.db or postgres://user@host/db",
            ));
        }
        let ttl = self.agents.certificate_ttl.as_secs();
        if !(30..=30 * 86_400).contains(&ttl) {
            return Err(ConfigError::at(
                path,
                text,
                span_of("certificate_ttl"),
                "agents.certificate_ttl",
                "must be between 30s and 30d",
            ));
        }
        let mut names = std::collections::HashSet::new();
        for channel in &self.channel {
            if !names.insert(channel.name()) {
                return Err(ConfigError::at(
                    path,
                    text,
                    span_of(channel.name()),
                    "channel.name",
                    format!("{:?} is declared twice", channel.name()),
                ));
            }
            if let Err(err) = crate::escalation::channels::Channel::from_config(channel) {
                return Err(ConfigError::at(
                    path,
                    text,
                    span_of(channel.name()),
                    "channel",
                    err.to_string(),
                ));
            }
        }
        for route in &self.route {
            if let Some(unknown) = route.channels.iter().find(|name| !names.contains(name.as_str())) {
                return Err(ConfigError::at(
                    path,
                    text,
                    span_of(unknown),
                    "route.channels",
                    format!("no [[channel]] is named {unknown:?}"),
                ));
            }
        }
        self.guard.validate(path, text, span_of)?;
        if self.agents.heartbeat_interval.as_secs() == 0 {
            return Err(ConfigError::at(
                path,
                text,
                span_of("heartbeat_interval"),
                "agents.heartbeat_interval",
                "must be at least 1s",
            ));
        }
        Ok(())
    }

    /// The store URL: the configured one, or the SQLite file in `data_dir`.
    pub fn database_url(&self) -> String {
        self.database
            .url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("lifeboat.db").display()))
    }

    /// The URL agents use to reach this coordinator (first server name, gRPC port).
    pub fn public_url(&self) -> String {
        let host = self.server_names.first().map_or("localhost", String::as_str);
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        format!("https://{host}:{}", self.listen.port())
    }
}

fn valid_server_name(name: &str) -> bool {
    name.parse::<std::net::IpAddr>().is_ok() || rustls_pki_types::DnsName::try_from(name.to_owned()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("coordinator.toml"), text)
    }

    const MINIMAL: &str = r#"
listen       = "0.0.0.0:7443"
http_listen  = "127.0.0.1:8080"
data_dir     = "/var/lib/lifeboat"
server_names = ["lifeboat.example.com", "localhost", "127.0.0.1"]
[database]
url = "sqlite:///var/lib/lifeboat/lifeboat.db"
"#;

    #[test]
    fn design_example_parses() {
        let config = parse(MINIMAL).expect("valid");
        assert_eq!(config.agents.certificate_ttl, HumanDuration::from_secs(86_400));
        assert_eq!(config.public_url(), "https://lifeboat.example.com:7443");
    }

    #[test]
    fn guard_settings_are_checked_with_their_line() {
        let guarded = |section: &str| parse(&format!("{MINIMAL}[guard]\n{section}"));
        let config = guarded("upstream_token = \"${RAILWAY_TOKEN}\"\nunknown_resources = \"allow\"\n").expect("valid");
        assert_eq!(config.guard.unknown_resources_in("prod"), UnknownResources::Allow);
        assert_eq!(
            config.guard.upstream_token.as_deref(),
            Some("${RAILWAY_TOKEN}"),
            "expanded by the proxy only"
        );
        let cases = [
            (
                "upstream_token = \"rw_live_secret\"\n",
                "coordinator.toml:9:",
                "${VARIABLE}",
            ),
            (
                "allow_mutations = [\"volumeDelete\"]\n",
                "coordinator.toml:9:",
                "destroys data",
            ),
            (
                "unknown_resources = \"maybe\"\n",
                "coordinator.toml:9:",
                "unknown_resources",
            ),
            (
                "[guard.environments.\"Not An Env\"]\nunknown_resources = \"allow\"\n",
                "coordinator.toml:9:",
                "environment name",
            ),
        ];
        for (section, location, says) in cases {
            let message = guarded(section).expect_err(section).to_string();
            assert!(
                message.starts_with(location) && message.contains(says),
                "{section}: {message}"
            );
            assert!(!message.contains("rw_live_secret"), "{message}");
        }
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let text = MINIMAL.replace("[database]", "[agents]\ncertificate_ttl = \"soon\"\n[database]");
        let message = parse(&text).expect_err("invalid").to_string();
        assert!(message.starts_with("coordinator.toml:7:"), "{message}");
        assert!(message.contains("certificate_ttl"), "{message}");

        let text = MINIMAL.replace("sqlite:///var", "mysql://var");
        let message = parse(&text).expect_err("invalid").to_string();
        assert!(message.starts_with("coordinator.toml:7:"), "{message}");
        assert!(message.contains("database.url"), "{message}");

        let text = MINIMAL.replace("\"localhost\"", "\"bad name!\"");
        let message = parse(&text).expect_err("invalid").to_string();
        assert!(message.starts_with("coordinator.toml:5:"), "{message}");
    }
}
