//! The `lifeboat-coordinator` command line. Each command has `--help`; the ones
//! that print data take `--output json`.

use std::path::PathBuf;
use std::process::ExitCode;

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
    /// The verdict of every asset; exit 0 when every asset is recoverable, 1 otherwise.
    Posture {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long)]
        environment: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Recent runs (scheduled and manual), newest due first.
    Runs {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long)]
        asset: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Open findings, worst first.
    Findings {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long)]
        environment: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Queues a restore test of ASSET now; a connected agent runs it within seconds.
    RunNow {
        #[command(flatten)]
        config: ConfigArg,
        asset: String,
        #[arg(long)]
        environment: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Overrides an asset's test centrally: its schedule, timeout, or pauses it. The agents'
    /// inventory stays the default; `--clear` returns to it.
    Schedule {
        #[command(flatten)]
        config: ConfigArg,
        asset: String,
        #[arg(long)]
        environment: Option<String>,
        /// 5-field cron, UTC.
        #[arg(long)]
        cron: Option<String>,
        #[arg(long)]
        timeout: Option<HumanDuration>,
        /// Stop scheduling it (runs can still be started with run-now).
        #[arg(long)]
        pause: bool,
        /// Remove every override.
        #[arg(long, conflicts_with_all = ["cron", "timeout", "pause"])]
        clear: bool,
    },
    /// Silences messages about an environment and/or asset until a time.
    Silence {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long)]
        environment: Option<String>,
        #[arg(long)]
        asset: Option<String>,
        /// How long, e.g. 2h.
        #[arg(long = "for")]
        duration: HumanDuration,
        #[arg(long)]
        reason: String,
    },
    /// Exports and verifies the hash-chained evidence log.
    #[command(subcommand)]
    Evidence(EvidenceCommand),
    /// Creates operator API tokens (for /api/v1/…).
    #[command(subcommand)]
    OperatorToken(OperatorTokenCommand),
    /// The whole story on one machine: a production database, its backups, an agent, the
    /// drills, a ticket, the fixes, the resolve.
    Demo(crate::demo::DemoArgs),
    /// The guard in front of destructive calls: ask it, or run the Railway gate.
    #[command(subcommand)]
    Guard(GuardCommand),
    /// The MCP server for AI agents on stdin/stdout (tools: check_destructive_operation,
    /// recovery_status, list_assets).
    Mcp(ConfigArg),
}

#[derive(Debug, Subcommand)]
pub enum GuardCommand {
    /// May OPERATION be done to the resource now? Exit 0 allowed, 1 refused, 2 error. The
    /// decision is recorded in the evidence log.
    Check {
        #[command(flatten)]
        config: ConfigArg,
        /// The environment the operation runs in (its unknown-resource policy applies).
        #[arg(long)]
        environment: Environment,
        /// Who runs the resource: railway, aws, s3, postgres, lifeboat, …
        #[arg(long)]
        provider: String,
        /// KIND:ID, e.g. volume:vol-7f3a, bucket:b, rds-instance:x, database:rentals-db, asset:rentals-db.
        #[arg(long)]
        resource: String,
        /// delete, wipe, restore-over or detach.
        #[arg(long)]
        operation: crate::guard::resources::Operation,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// The Railway gate: a GraphQL endpoint that forwards to Railway with the token only it
    /// holds ([guard] upstream_token), refusing destructive calls the guard does not allow.
    Proxy {
        #[command(flatten)]
        config: ConfigArg,
        /// Address to listen on, e.g. 127.0.0.1:8787.
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// Railway's GraphQL endpoint, e.g. https://backboard.railway.com/graphql/v2.
        #[arg(long)]
        upstream: String,
        /// The environment the gate's decisions are made in.
        #[arg(long)]
        environment: Environment,
    },
}

#[derive(Debug, Subcommand)]
pub enum EvidenceCommand {
    /// Writes evidence.jsonl, manifest.json and report.html (for auditors) to DIR.
    Export {
        #[command(flatten)]
        config: ConfigArg,
        /// How far back, e.g. 90d.
        #[arg(long, default_value = "90d")]
        since: HumanDuration,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Checks an exported folder: every record, the chain and the manifest. Exit 1 if tampered.
    Verify {
        dir: PathBuf,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum OperatorTokenCommand {
    /// Creates a token for the JSON API; it is shown once and stored hashed.
    Create {
        #[command(flatten)]
        config: ConfigArg,
        /// Who or what uses it.
        #[arg(long)]
        name: String,
        /// Expiry (default: none).
        #[arg(long)]
        ttl: Option<HumanDuration>,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
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
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(arg) => serve(&arg).await?,
        Command::Token(TokenCommand::Create {
            config,
            environment,
            ttl,
            uses,
            output,
        }) => token_create(&config, environment, ttl, uses, output).await?,
        Command::Agents(AgentsCommand::List { config, output }) => agents_list(&config, output).await?,
        Command::Agents(AgentsCommand::Revoke { config, agent_id }) => agents_revoke(&config, agent_id).await?,
        Command::Posture {
            config,
            environment,
            output,
        } => return posture(&config, environment.as_deref(), output).await,
        Command::Runs {
            config,
            asset,
            limit,
            output,
        } => runs(&config, asset.as_deref(), limit, output).await?,
        Command::Findings {
            config,
            environment,
            output,
        } => findings(&config, environment.as_deref(), output).await?,
        Command::RunNow {
            config,
            asset,
            environment,
            output,
        } => run_now(&config, &asset, environment.as_deref(), output).await?,
        Command::Schedule {
            config,
            asset,
            environment,
            cron,
            timeout,
            pause,
            clear,
        } => {
            let schedule_override = crate::reports::ScheduleOverride {
                cron: if clear { None } else { cron },
                timeout_seconds: if clear {
                    None
                } else {
                    timeout.map(|timeout| timeout.as_secs() as i64)
                },
                paused: pause && !clear,
            };
            schedule(&config, &asset, environment.as_deref(), schedule_override).await?
        }
        Command::Silence {
            config,
            environment,
            asset,
            duration,
            reason,
        } => silence(&config, environment.as_deref(), asset.as_deref(), duration, &reason).await?,
        Command::Evidence(EvidenceCommand::Export {
            config,
            since,
            out,
            output,
        }) => evidence_export(&config, since, &out, output).await?,
        Command::Evidence(EvidenceCommand::Verify { dir, output }) => return evidence_verify(&dir, output),
        Command::OperatorToken(OperatorTokenCommand::Create {
            config,
            name,
            ttl,
            output,
        }) => operator_token_create(&config, &name, ttl, output).await?,
        Command::Demo(args) => return crate::demo::run(args).await,
        Command::Guard(GuardCommand::Check {
            config,
            environment,
            provider,
            resource,
            operation,
            output,
        }) => return guard_check(&config, environment, &provider, &resource, operation, output).await,
        Command::Guard(GuardCommand::Proxy {
            config,
            listen,
            upstream,
            environment,
        }) => guard_proxy(&config, listen, upstream, environment).await?,
        Command::Mcp(config) => mcp_stdio(&config).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `serve`: parses and validates the config before binding anything or touching the store.
async fn serve(arg: &ConfigArg) -> anyhow::Result<()> {
    let config = load_config(arg)?;
    let _telemetry = telemetry::init("lifeboat-coordinator", &config.telemetry)?;
    let shutdown = lifeboat_shared::shutdown::on_signals().context("install signal handlers")?;
    crate::server::run(config, shutdown).await
}

/// `token create`: prints the token, the CA pin and the command to paste on the agent's machine.
async fn token_create(
    arg: &ConfigArg,
    environment: Environment,
    ttl: HumanDuration,
    uses: u32,
    output: Output,
) -> anyhow::Result<()> {
    let config = load_config(arg)?;
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
    Ok(())
}

/// `agents list`.
async fn agents_list(arg: &ConfigArg, output: Output) -> anyhow::Result<()> {
    let config = load_config(arg)?;
    let store = open_store(&config).await?;
    let agents = admin::list_agents(&store, config.agents.offline_after.into()).await?;
    store.close().await;
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&agents)?),
        Output::Text => print!("{}", admin::agents_table(&agents)),
    }
    Ok(())
}

/// `agents revoke`.
async fn agents_revoke(arg: &ConfigArg, agent_id: AgentId) -> anyhow::Result<()> {
    let config = load_config(arg)?;
    let store = open_store(&config).await?;
    store.revoke_agent(agent_id, chrono::Utc::now()).await?;
    store.close().await;
    println!("revoked agent {agent_id}; its session is cut within seconds and it can no longer connect");
    Ok(())
}

/// `posture`: exit 0 when every asset is recoverable, 1 otherwise.
async fn posture(arg: &ConfigArg, environment: Option<&str>, output: Output) -> anyhow::Result<ExitCode> {
    let config = load_config(arg)?;
    let store = open_store(&config).await?;
    let report = crate::reports::posture(&store, environment).await?;
    store.close().await;
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Text => print!("{}", report.render()),
    }
    Ok(if report.recoverable {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `runs`.
async fn runs(arg: &ConfigArg, asset: Option<&str>, limit: u32, output: Output) -> anyhow::Result<()> {
    let config = load_config(arg)?;
    let store = open_store(&config).await?;
    let runs = store.runs(asset, limit.min(10_000)).await?;
    store.close().await;
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&runs)?),
        Output::Text => print!("{}", crate::reports::runs_table(&runs)),
    }
    Ok(())
}

/// `findings`.
async fn findings(arg: &ConfigArg, environment: Option<&str>, output: Output) -> anyhow::Result<()> {
    let config = load_config(arg)?;
    let store = open_store(&config).await?;
    let findings = crate::reports::findings(&store, environment).await?;
    store.close().await;
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&findings)?),
        Output::Text => print!("{}", crate::reports::findings_text(&findings)),
    }
    Ok(())
}

/// `run-now`.
async fn run_now(arg: &ConfigArg, asset: &str, environment: Option<&str>, output: Output) -> anyhow::Result<()> {
    let config = load_config(arg)?;
    let store = open_store(&config).await?;
    let run = crate::reports::run_now(&store, &config, asset, environment, chrono::Utc::now()).await;
    store.close().await;
    let run = run?;
    match output {
        Output::Json => println!(
            "{}",
            serde_json::json!({"environment": run.environment, "asset": run.asset, "due_at": run.due_at})
        ),
        Output::Text => println!(
            "queued a restore test of {}/{}; a connected agent of {} starts it within seconds",
            run.environment, run.asset, run.environment
        ),
    }
    Ok(())
}

/// `schedule`: a central override of an asset's test.
async fn schedule(
    arg: &ConfigArg,
    asset: &str,
    environment: Option<&str>,
    schedule_override: crate::reports::ScheduleOverride,
) -> anyhow::Result<()> {
    if let Some(cron) = &schedule_override.cron {
        crate::scheduler::parse_cron(cron).map_err(|err| anyhow::anyhow!("--cron: {err}"))?;
    }
    let config = load_config(arg)?;
    let store = open_store(&config).await?;
    let outcome = crate::reports::set_schedule(&store, asset, environment, schedule_override).await;
    store.close().await;
    let test = outcome?;
    println!(
        "{}/{}: {} (timeout {} s){}",
        test.environment,
        test.asset,
        test.effective_schedule(),
        test.effective_timeout_seconds(),
        if test.paused { ", paused" } else { "" }
    );
    Ok(())
}

/// `silence`.
async fn silence(
    arg: &ConfigArg,
    environment: Option<&str>,
    asset: Option<&str>,
    duration: HumanDuration,
    reason: &str,
) -> anyhow::Result<()> {
    let config = load_config(arg)?;
    let store = open_store(&config).await?;
    let now = chrono::Utc::now();
    let until = now + chrono::Duration::from_std(duration.into()).unwrap_or_default();
    let id = store.add_silence(environment, asset, until, reason, now).await?;
    store.close().await;
    println!("silence {id} until {}", until.to_rfc3339());
    Ok(())
}

/// `evidence export`.
async fn evidence_export(
    arg: &ConfigArg,
    since: HumanDuration,
    out: &std::path::Path,
    output: Output,
) -> anyhow::Result<()> {
    let config = load_config(arg)?;
    let store = open_store(&config).await?;
    let since = chrono::Utc::now() - chrono::Duration::from_std(since.into()).unwrap_or_default();
    let summary = crate::evidence::export(&store, since, out).await;
    store.close().await;
    let summary = summary?;
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&summary)?),
        Output::Text => print!("{}", summary.render()),
    }
    Ok(())
}

/// `evidence verify`: exit 1 when the export was tampered with.
fn evidence_verify(dir: &std::path::Path, output: Output) -> anyhow::Result<ExitCode> {
    let report = crate::evidence::verify(dir)?;
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Text => print!("{}", report.render()),
    }
    Ok(if report.verified {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `operator-token create`: the token is shown once.
async fn operator_token_create(
    arg: &ConfigArg,
    name: &str,
    ttl: Option<HumanDuration>,
    output: Output,
) -> anyhow::Result<()> {
    let config = load_config(arg)?;
    let store = open_store(&config).await?;
    let expires_at = ttl.map(|ttl| chrono::Utc::now() + chrono::Duration::from_std(ttl.into()).unwrap_or_default());
    let token = store.create_operator_token(name, expires_at).await;
    store.close().await;
    let token = token?;
    match output {
        Output::Json => println!(
            "{}",
            serde_json::json!({"name": name, "token": token, "expires_at": expires_at})
        ),
        Output::Text => {
            println!("token: {token}");
            println!("Use it as `Authorization: Bearer {token}`; it is not shown again.");
        }
    }
    Ok(())
}

/// `guard check`: asks the guard once, prints the decision; exit 0 allowed, 1 refused.
async fn guard_check(
    arg: &ConfigArg,
    environment: Environment,
    provider: &str,
    resource: &str,
    operation: crate::guard::resources::Operation,
    output: Output,
) -> anyhow::Result<ExitCode> {
    let resource = crate::guard::resources::Resource::parse(provider, resource)
        .map_err(|err| anyhow::anyhow!("--provider/--resource: {err}"))?;
    let config = load_config(arg)?;
    let store = open_store(&config).await?;
    let guard = crate::guard::Guard::new(store.clone(), &config);
    let caller = crate::guard::Caller {
        name: format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned())),
        surface: crate::guard::Surface::Cli,
    };
    let request = crate::guard::CheckRequest {
        environment,
        resource,
        operation,
        action: None,
    };
    let answer = guard.check(&request, &caller).await;
    store.close().await;
    let answer = answer?;
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&answer)?),
        Output::Text => print!("{}", crate::guard::render_answer(&answer)),
    }
    Ok(if answer.decision.allowed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `guard proxy`: serves the Railway gate until SIGINT/SIGTERM.
async fn guard_proxy(
    arg: &ConfigArg,
    listen: std::net::SocketAddr,
    upstream: String,
    environment: Environment,
) -> anyhow::Result<()> {
    let config = load_config(arg)?;
    // The token is read before anything is bound, and never printed.
    let token = crate::guard::upstream_token(&config.guard, &arg.config)?;
    let _telemetry = telemetry::init("lifeboat-coordinator", &config.telemetry)?;
    let shutdown = lifeboat_shared::shutdown::on_signals().context("install signal handlers")?;
    let store = open_store(&config).await?;
    let guard = crate::guard::Guard::new(store.clone(), &config);
    let gate = crate::guard::proxy::Gate::new(guard, upstream, token, environment)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("bind {listen}"))?;
    let served = crate::guard::proxy::serve(listener, gate, shutdown).await;
    store.close().await;
    served.context("serve the Railway gate")
}

/// `mcp`: the MCP server on stdin/stdout; logs go to stderr.
async fn mcp_stdio(arg: &ConfigArg) -> anyhow::Result<()> {
    let config = load_config(arg)?;
    let _telemetry = telemetry::init("lifeboat-coordinator", &config.telemetry)?;
    let store = open_store(&config).await?;
    let served = crate::guard::mcp::serve_stdio(crate::guard::Guard::new(store.clone(), &config)).await;
    store.close().await;
    served
}
