//! The `lifeboat-agent` command line. Each command has `--help`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use lifeboat_shared::ids::Environment;
use lifeboat_shared::telemetry::{self, TelemetryConfig};
use lifeboat_shared::tls::CaPin;

use crate::config::AgentConfig;
use crate::credentials::CredentialSeverity;
use crate::enroll::{self, EnrollRequest};
use crate::scrub::Scrubber;

/// Lifeboat agent: restores backups into sandboxes and reports whether they recover.
#[derive(Debug, Parser)]
#[command(name = "lifeboat-agent", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Output format of commands that print data.
#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum Output {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Joins a coordinator with a join token; the key is generated here and never leaves.
    Enroll {
        /// Coordinator URL, e.g. https://lifeboat.example.com:7443.
        #[arg(long)]
        coordinator: String,
        /// Join token from `lifeboat-coordinator token create`.
        #[arg(long, env = "LIFEBOAT_JOIN_TOKEN", hide_env_values = true)]
        token: String,
        /// The coordinator CA pin printed with the token (sha256:...).
        #[arg(long, value_parser = parse_pin)]
        ca_pin: CaPin,
        /// Where key.pem (0600), cert.pem and ca.pem are written.
        #[arg(long, default_value = "/var/lib/lifeboat-agent/identity")]
        identity_dir: PathBuf,
        /// Name shown in `agents list` (default: hostname).
        #[arg(long)]
        name: Option<String>,
        /// Refuse the token unless it is for this environment.
        #[arg(long)]
        environment: Option<Environment>,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Runs every test once, locally, without a coordinator; exit 0 recoverable, 1 not, 2 error.
    Check {
        /// Path to agent.toml.
        #[arg(long, env = "LIFEBOAT_AGENT_CONFIG", default_value = "/etc/lifeboat/agent.toml")]
        config: PathBuf,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Credential discovery and scope only: finds secrets in PATHs (and, with --config, the
    /// declared credentials, the agent's environment and CLI credential stores), says what each
    /// can destroy and how severe that is. Exit 0 when nothing reaches --min-severity (high by
    /// default), 1 otherwise, 2 on error.
    Scan {
        /// Files or directories to scan (.gitignore is not honoured: .env files matter).
        paths: Vec<PathBuf>,
        /// An agent.toml: adds its declared credentials, `[scan]` settings and assets.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Also scan this process's environment and the CLI credential stores of $HOME.
        #[arg(long)]
        stores: bool,
        /// Exit 1 when a credential or finding of this severity or worse is found (a CI gate:
        /// `medium` or `low` is stricter, `critical` looser). Everything is reported either way.
        #[arg(long, value_enum, default_value_t = CredentialSeverity::High)]
        min_severity: CredentialSeverity,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Checks everything a drill needs on this machine (tools, the restore jail, state and
    /// identity, backup sources, assets read-only, the coordinator and the clock) without
    /// restoring anything; one line per check. Exit 0 when nothing failed, 1 otherwise.
    Doctor {
        /// Path to agent.toml.
        #[arg(long, env = "LIFEBOAT_AGENT_CONFIG", default_value = "/etc/lifeboat/agent.toml")]
        config: PathBuf,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Runs the agent daemon.
    Run {
        /// Path to agent.toml.
        #[arg(long, env = "LIFEBOAT_AGENT_CONFIG", default_value = "/etc/lifeboat/agent.toml")]
        config: PathBuf,
    },
    /// Inside a restore jail only: starts a `service` check's application, probes its URL and
    /// prints the verdict as JSON.
    #[command(hide = true)]
    ServiceProbe(crate::runner::service::ProbeArgs),
}

fn parse_pin(text: &str) -> Result<CaPin, String> {
    CaPin::parse(text).map_err(|err| err.to_string())
}

/// Runs a parsed command line. Exit codes: `check` 0 recoverable, 1 not; `scan` 1 when a
/// credential reaches `--min-severity`; `doctor` 1 when not ready; an error is 2 (in `main`).
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Enroll {
            coordinator,
            token,
            ca_pin,
            identity_dir,
            name,
            environment,
            output,
        } => {
            let _telemetry = telemetry::init("lifeboat-agent", &TelemetryConfig::default())?;
            let request = EnrollRequest {
                coordinator,
                token,
                ca_pin,
                name: name.unwrap_or_else(crate::capabilities::hostname),
                environment,
            };
            let enrolled = enroll::enroll_to_dir(&request, &identity_dir).await?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&enrolled)?),
                Output::Text => println!(
                    "enrolled as agent {} in environment {}; certificate valid until {}; identity in {}",
                    enrolled.agent_id,
                    enrolled.environment,
                    enrolled.not_after.to_rfc3339(),
                    identity_dir.display()
                ),
            }
        }
        Command::Check { config, output } => {
            let config = AgentConfig::load(&config)?;
            let scrubber = Arc::new(Scrubber::for_agent(&config, crate::posture::fingerprint_key(&config)));
            let mut telemetry_config = config.telemetry.clone();
            telemetry_config.log_filter.get_or_insert_with(|| "warn".to_owned());
            let _telemetry =
                telemetry::init_filtered("lifeboat-agent", &telemetry_config, Some(scrubber.line_filter()))?;
            let progress_scrubber = scrubber.clone();
            let runner = crate::runner::Runner::new(
                config,
                Box::new(move |progress: crate::runner::Progress| {
                    eprintln!(
                        "[{:>6.1}s] {}: {}",
                        progress.elapsed.as_secs_f64(),
                        progress_scrubber.text(&progress.asset),
                        progress_scrubber.text(&progress.phase)
                    );
                }),
            )?;
            let (assets, assessment) = runner.run_all().await;
            let report = crate::verdict::CheckOutput::new(assets, Some(&assessment));
            match output {
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&scrubber.json(serde_json::to_value(&report)?))?
                ),
                Output::Text => print!("{}", scrubber.text(&crate::verdict::render(&report))),
            }
            return Ok(if report.recoverable {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        Command::Scan {
            paths,
            config,
            stores,
            min_severity,
            output,
        } => {
            let config = config.map(|path| AgentConfig::load(&path)).transpose()?;
            let key = crate::scan::fingerprint_key(config.as_ref());
            let scrubber = Arc::new(match &config {
                Some(config) => Scrubber::for_agent(config, key.clone()),
                None => Scrubber::for_environment(key.clone()),
            });
            let _telemetry = telemetry::init_filtered(
                "lifeboat-agent",
                &TelemetryConfig::default(),
                Some(scrubber.line_filter()),
            )?;
            let report = crate::scan::run(paths, config.as_ref(), stores, &key).await;
            match output {
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&scrubber.json(serde_json::to_value(&report)?))?
                ),
                Output::Text => print!("{}", scrubber.text(&report.render())),
            }
            return Ok(if report.alarming(min_severity) {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            });
        }
        Command::Doctor { config, output } => {
            let config = AgentConfig::load(&config)?;
            // A throw-away fingerprint key: doctor leaves the agent's state as it found it.
            let scrubber = Arc::new(Scrubber::for_agent(
                &config,
                crate::credentials::FingerprintKey::random(),
            ));
            let mut telemetry_config = config.telemetry.clone();
            telemetry_config.log_filter.get_or_insert_with(|| "error".to_owned());
            let _telemetry =
                telemetry::init_filtered("lifeboat-agent", &telemetry_config, Some(scrubber.line_filter()))?;
            let report = crate::doctor::run(&config).await;
            match output {
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&scrubber.json(serde_json::to_value(&report)?))?
                ),
                Output::Text => print!("{}", scrubber.text(&report.render())),
            }
            return Ok(if report.ready {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        Command::ServiceProbe(args) => {
            let verdict = crate::runner::service::probe(&args).await;
            println!("{}", serde_json::to_string(&verdict)?);
        }
        Command::Run { config } => {
            let config = AgentConfig::load(&config)?;
            let scrubber = Arc::new(Scrubber::for_agent(&config, crate::posture::fingerprint_key(&config)));
            let _telemetry =
                telemetry::init_filtered("lifeboat-agent", &config.telemetry, Some(scrubber.line_filter()))?;
            let shutdown = lifeboat_shared::shutdown::on_signals().context("install signal handlers")?;
            crate::daemon::run(config, scrubber, shutdown).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
