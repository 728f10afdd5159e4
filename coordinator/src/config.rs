//! The coordinator configuration file (`coordinator.toml`, `docs/coordinator-config.md`).
//!
//! Parsed and validated before any port is bound: an error names the file, line and field.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use lifeboat_shared::config_file::{self, ConfigError};
use lifeboat_shared::durations::HumanDuration;
use lifeboat_shared::protocol::MAX_INVENTORY_ITEMS;
use lifeboat_shared::telemetry::TelemetryConfig;
use serde::{Deserialize, Deserializer};

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
    /// Connection caps, timeouts and per-agent quotas.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Serve the status page, asset pages and `/metrics` without a login. Off by default: they
    /// name every asset and what is wrong with it. `/healthz` and `/readyz` are always open.
    #[serde(default)]
    pub public_status: bool,
    /// How long shutdown waits for in-flight work before giving up (1 s to 1 h).
    #[serde(default = "default_shutdown_grace", deserialize_with = "shutdown_grace")]
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
    /// Lifetime of agent certificates (30 s to 30 days); agents renew at 2/3 of it.
    #[serde(default = "default_certificate_ttl", deserialize_with = "certificate_ttl")]
    pub certificate_ttl: HumanDuration,
    /// How often agents send heartbeats (announced to them in Welcome; 1 s to 1 h).
    #[serde(default = "default_heartbeat_interval", deserialize_with = "second_to_hour")]
    pub heartbeat_interval: HumanDuration,
    /// How often in-memory last-seen times are written to the store (1 s to 1 h).
    #[serde(default = "default_last_seen_flush", deserialize_with = "second_to_hour")]
    pub last_seen_flush: HumanDuration,
    /// An agent silent for longer than this is shown as disconnected (1 s to 30 days).
    #[serde(default = "default_offline_after", deserialize_with = "second_to_month")]
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
    /// At most a day.
    #[serde(default = "default_jitter", deserialize_with = "zero_to_day")]
    pub jitter: HumanDuration,
    /// A run not started this long after its due time is missed (and reported by the
    /// dead-man's switch), not started late. 1 s to 30 days.
    #[serde(default = "default_start_deadline", deserialize_with = "second_to_month")]
    pub start_deadline: HumanDuration,
    /// Leases of one run before it is given up (1 to 100).
    #[serde(default = "default_max_attempts", deserialize_with = "max_attempts")]
    pub max_attempts: u32,
    /// Added to a run's timeout for its lease; an agent disconnected for this long loses its
    /// leases. At most a day.
    #[serde(default = "default_lease_grace", deserialize_with = "zero_to_day")]
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
    /// An agent silent this long is lost (`agent.lost`); 1 s to 30 days.
    #[serde(default = "default_agent_lost_after", deserialize_with = "second_to_month")]
    pub agent_lost_after: HumanDuration,
    /// How often every verdict is re-evaluated (overdue tests, lost agents, reminders); 1 s to
    /// 1 h.
    #[serde(default = "default_evaluate_every", deserialize_with = "second_to_hour")]
    pub evaluate_every: HumanDuration,
    /// The status page's public URL, linked from tickets.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Reminders (Jira comments, PagerDuty re-triggers) per open ticket at most (0 to 1,000).
    #[serde(default = "default_max_reminders", deserialize_with = "max_reminders")]
    pub max_reminders: u32,
    /// The longest wait between two delivery attempts of a message (exponential backoff with
    /// jitter from 1 s up to this; a later `Retry-After` wins). 1 s to 1 day.
    #[serde(default = "default_retry_max_delay", deserialize_with = "second_to_day")]
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
    /// Wait this long before sending a trigger: a flip back within it sends nothing. At most a
    /// day.
    #[serde(default, deserialize_with = "optional_zero_to_day")]
    pub group_wait: Option<HumanDuration>,
    /// Remind while still not recoverable, this often (1 min to 30 days).
    #[serde(default, deserialize_with = "optional_reminder_interval")]
    pub repeat_interval: Option<HumanDuration>,
}

/// `[limits]`: what one client may cost the coordinator. Connections beyond the caps are
/// refused (the caps are lowered to fit the open-files limit at start); a result or inventory
/// beyond an agent's quota is refused on its own, with the session kept up.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Agent (gRPC) connections at once, authenticated or not.
    #[serde(default = "default_max_connections", deserialize_with = "max_connections")]
    pub max_connections: u32,
    /// Of those, connections without a client certificate: TLS handshakes in progress and
    /// enrollments. Each may live 30 s at most, so strangers cannot crowd out agents.
    #[serde(default = "default_max_anonymous_connections", deserialize_with = "max_connections")]
    pub max_anonymous_connections: u32,
    /// HTTP connections at once (status page, API, metrics). When full, the oldest connection
    /// that has not yet sent a request is closed to make room.
    #[serde(default = "default_max_http_connections", deserialize_with = "max_connections")]
    pub max_http_connections: u32,
    /// Longest an HTTP client may take to send a request's headers (1 s to 10 min).
    #[serde(default = "default_http_header_timeout", deserialize_with = "http_header_timeout")]
    pub http_header_timeout: HumanDuration,
    /// Longest an HTTP request may take to be answered (1 s to 1 h).
    #[serde(default = "default_http_request_timeout", deserialize_with = "second_to_hour")]
    pub http_request_timeout: HumanDuration,
    /// Results one agent may send per minute (a burst of a minute's worth, then evenly); more
    /// are refused for a while, not lost: the agent keeps them and sends them again.
    #[serde(default = "default_results_per_minute", deserialize_with = "per_minute")]
    pub results_per_minute: u32,
    /// Largest inventory one agent may send, encoded (1 KiB to 4 MiB).
    #[serde(default = "default_max_inventory_bytes", deserialize_with = "max_inventory_bytes")]
    pub max_inventory_bytes: u32,
    /// Most tests one agent's inventory may declare.
    #[serde(default = "default_max_tests", deserialize_with = "max_tests")]
    pub max_tests: u32,
    /// Runs the tests an agent declared may start per minute; due runs beyond it wait for the
    /// next minute.
    #[serde(default = "default_runs_per_minute", deserialize_with = "per_minute")]
    pub runs_per_minute: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_connections: default_max_connections(),
            max_anonymous_connections: default_max_anonymous_connections(),
            max_http_connections: default_max_http_connections(),
            http_header_timeout: default_http_header_timeout(),
            http_request_timeout: default_http_request_timeout(),
            results_per_minute: default_results_per_minute(),
            max_inventory_bytes: default_max_inventory_bytes(),
            max_tests: default_max_tests(),
            runs_per_minute: default_runs_per_minute(),
        }
    }
}

fn default_max_connections() -> u32 {
    20_000
}
fn default_max_anonymous_connections() -> u32 {
    1_024
}
fn default_max_http_connections() -> u32 {
    1_024
}
fn default_http_header_timeout() -> HumanDuration {
    HumanDuration::from_secs(10)
}
fn default_http_request_timeout() -> HumanDuration {
    HumanDuration::from_secs(30)
}
fn default_results_per_minute() -> u32 {
    600
}
fn default_max_inventory_bytes() -> u32 {
    1024 * 1024
}
fn default_max_tests() -> u32 {
    1_000
}
fn default_runs_per_minute() -> u32 {
    60
}

// Ranges, one function per kind of value (serde's `deserialize_with` takes a path). Every bound
// keeps the value usable in `Duration`, chrono and interval arithmetic without overflow.

fn duration_within<'de, D: Deserializer<'de>>(deserializer: D, min: u64, max: u64) -> Result<HumanDuration, D::Error> {
    config_file::within(
        deserializer,
        HumanDuration::from_secs(min),
        HumanDuration::from_secs(max),
    )
}
fn certificate_ttl<'de, D: Deserializer<'de>>(d: D) -> Result<HumanDuration, D::Error> {
    duration_within(d, 30, 30 * DAY)
}
fn second_to_hour<'de, D: Deserializer<'de>>(d: D) -> Result<HumanDuration, D::Error> {
    duration_within(d, 1, HOUR)
}
fn second_to_day<'de, D: Deserializer<'de>>(d: D) -> Result<HumanDuration, D::Error> {
    duration_within(d, 1, DAY)
}
fn second_to_month<'de, D: Deserializer<'de>>(d: D) -> Result<HumanDuration, D::Error> {
    duration_within(d, 1, 30 * DAY)
}
fn zero_to_day<'de, D: Deserializer<'de>>(d: D) -> Result<HumanDuration, D::Error> {
    duration_within(d, 0, DAY)
}
fn shutdown_grace<'de, D: Deserializer<'de>>(d: D) -> Result<HumanDuration, D::Error> {
    duration_within(d, 1, HOUR)
}
fn http_header_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<HumanDuration, D::Error> {
    duration_within(d, 1, 10 * 60)
}
fn optional_zero_to_day<'de, D: Deserializer<'de>>(d: D) -> Result<Option<HumanDuration>, D::Error> {
    config_file::within_optional(d, HumanDuration::from_secs(0), HumanDuration::from_secs(DAY))
}
fn optional_reminder_interval<'de, D: Deserializer<'de>>(d: D) -> Result<Option<HumanDuration>, D::Error> {
    config_file::within_optional(d, HumanDuration::from_secs(60), HumanDuration::from_secs(30 * DAY))
}
fn max_attempts<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    config_file::within(d, 1, 100)
}
fn max_reminders<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    config_file::within(d, 0, 1_000)
}
fn max_connections<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    config_file::within(d, 1, 1_000_000)
}
fn per_minute<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    config_file::within(d, 1, 1_000_000)
}
fn max_inventory_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    config_file::within(d, 1_024, 4 * 1024 * 1024)
}
fn max_tests<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    config_file::within(d, 1, MAX_INVENTORY_ITEMS as u32)
}

const HOUR: u64 = 3_600;
const DAY: u64 = 86_400;

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
        let span_of = |key: &str| key_span(text, key);
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
        self.validate_channels(path, text)?;
        if self.limits.max_anonymous_connections > self.limits.max_connections {
            return Err(ConfigError::at(
                path,
                text,
                span_of("max_anonymous_connections"),
                "limits.max_anonymous_connections",
                "cannot exceed limits.max_connections",
            ));
        }
        Ok(())
    }

    /// Channel names are unique and each channel is usable; routes name existing channels.
    fn validate_channels(&self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let span_of = |key: &str| key_span(text, key);
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

/// The span of `key = ` in `text`, else of the first `key`.
fn key_span(text: &str, key: &str) -> Option<std::ops::Range<usize>> {
    text.find(&format!("{key} ="))
        .or_else(|| text.find(key))
        .map(|start| start..start + key.len())
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

    #[test]
    fn values_that_would_break_a_background_task_are_refused_at_their_line() {
        // Each of these once parsed, then overflowed chrono or tokio arithmetic in a task.
        let cases = [
            ("[schedule]\nlease_grace = \"100000000000d\"", "lease_grace"),
            ("[schedule]\nstart_deadline = \"0s\"", "start_deadline"),
            ("[schedule]\nmax_attempts = 0", "max_attempts"),
            ("[alerts]\nevaluate_every = \"0s\"", "evaluate_every"),
            ("[agents]\nlast_seen_flush = \"0s\"", "last_seen_flush"),
            ("[agents]\nheartbeat_interval = \"200000d\"", "heartbeat_interval"),
            ("[limits]\nresults_per_minute = 0", "results_per_minute"),
            ("[limits]\nhttp_header_timeout = \"1d\"", "http_header_timeout"),
            ("[[route]]\nchannels = []\nrepeat_interval = \"1s\"", "repeat_interval"),
        ];
        for (section, key) in cases {
            let text = format!("{MINIMAL}{section}\n");
            let line = text.lines().position(|line| line.starts_with(key)).expect("key line") + 1;
            let message = parse(&text).expect_err(key).to_string();
            assert!(
                message.starts_with(&format!("coordinator.toml:{line}:")),
                "{key}: {message}"
            );
            assert!(message.contains(key), "{key}: {message}");
        }
        let text = format!("{MINIMAL}[limits]\nmax_connections = 10\nmax_anonymous_connections = 20\n");
        let message = parse(&text).expect_err("anonymous above total").to_string();
        assert!(message.contains("limits.max_anonymous_connections"), "{message}");
    }

    #[test]
    fn the_status_page_needs_a_login_unless_public_status_is_set() {
        assert!(!parse(MINIMAL).expect("valid").public_status);
        let text = MINIMAL.replace("[database]", "public_status = true\n[database]");
        assert!(parse(&text).expect("valid").public_status);
        let limits = parse(MINIMAL).expect("valid").limits;
        assert_eq!(limits.results_per_minute, 600);
        assert_eq!(limits.max_tests, 1_000);
    }
}
