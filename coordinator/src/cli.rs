//! The `lifeboat-coordinator` command line (DESIGN.md §7). Each command has `--help`; the ones
//! that print data take `--output json`.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use lifeboat_shared::durations::HumanDuration;
use lifeboat_shared::ids::{AgentId, Environment};
use lifeboat_shared::telemetry;

use crate::admin;
use crate::ca::CertificateAuthority;
use crate::config::Config;
use crate::store::Store;

/// Lifeboat coordinator: enrolls agents, schedules recovery drills, keeps the verdicts.
#[derive(Debug, Parser)]
#[command(name = "lifeboat-coordinator", version)]
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

/// The coordinator config file, shared by every command that acts on the store.
#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// Path to coordinator.toml.
    #[arg(
        long,
        env = "LIFEBOAT_COORDINATOR_CONFIG",
        default_value = "/etc/lifeboat/coordinator.toml"
    )]
    pub config: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the coordinator server.
    Serve(ConfigArg),
    /// Manages join tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Lists and revokes agents.
    #[command(subcommand)]
    Agents(AgentsCommand),
    /// Starts a coordinator and one enrolled agent on this machine and shows them connected.
    Demo(crate::demo::DemoArgs),
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Creates a join token; prints it, the CA pin and the enroll command.
    Create {
        #[command(flatten)]
        config: ConfigArg,
        /// Environment the enrolled agent will belong to (fixed in its certificate).
        #[arg(long)]
        environment: Environment,
        /// How long the token can be used.
        #[arg(long, default_value = "1h")]
        ttl: HumanDuration,
        /// How many agents may enroll with it.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        uses: u32,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum AgentsCommand {
    /// Lists enrolled agents with their connection state.
    List {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Revokes an agent: its live session is cut and it can neither reconnect nor renew.
    Revoke {
        #[command(flatten)]
        config: ConfigArg,
        agent_id: AgentId,
    },
}

fn load_config(arg: &ConfigArg) -> anyhow::Result<Config> {
    Ok(Config::load(&arg.config)?)
}

async fn open_store(config: &Config) -> anyhow::Result<Store> {
    Store::connect(&config.database_url()).await.context("open the store")
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Command::Serve(arg) => {
            // Parse and validate before binding anything or touching the store.
            let config = load_config(&arg)?;
            let _telemetry = telemetry::init("lifeboat-coordinator", &config.telemetry)?;
            let shutdown = lifeboat_shared::shutdown::on_signals().context("install signal handlers")?;
            crate::server::run(config, shutdown).await?;
        }
        Command::Token(TokenCommand::Create {
            config,
            environment,
            ttl,
            uses,
            output,
        }) => {
            let config = load_config(&config)?;
            std::fs::create_dir_all(&config.data_dir)
                .with_context(|| format!("create data directory {}", config.data_dir.display()))?;
            let ca = CertificateAuthority::load_or_create(&config.data_dir, &config.ca).context("load the CA")?;
            let store = open_store(&config).await?;
            let created = admin::create_token(&store, &ca, &config.public_url(), environment, ttl.into(), uses).await?;
            store.close().await;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&created)?),
                Output::Text => {
                    println!("token:       {}", created.token);
                    println!("ca pin:      {}", created.ca_pin);
                    println!("environment: {}", created.environment);
                    println!(
                        "expires at:  {} ({} use(s))",
                        created.expires_at.to_rfc3339(),
                        created.uses
                    );
                    println!();
                    println!("On the agent's machine, run:");
                    println!("  {}", created.enroll_command);
                }
            }
        }
        Command::Agents(AgentsCommand::List { config, output }) => {
            let config = load_config(&config)?;
            let store = open_store(&config).await?;
            let agents = admin::list_agents(&store, config.agents.offline_after.into()).await?;
            store.close().await;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&agents)?),
                Output::Text => print!("{}", admin::agents_table(&agents)),
            }
        }
        Command::Agents(AgentsCommand::Revoke { config, agent_id }) => {
            let config = load_config(&config)?;
            let store = open_store(&config).await?;
            store.revoke_agent(agent_id, chrono::Utc::now()).await?;
            store.close().await;
            println!("revoked agent {agent_id}; its session is cut within seconds and it can no longer connect");
        }
        Command::Demo(args) => return crate::demo::run(args).await,
    }
    Ok(std::process::ExitCode::SUCCESS)
}
