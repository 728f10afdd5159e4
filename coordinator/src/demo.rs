//! `lifeboat-coordinator demo`: the whole system on one machine, with nothing but the built
//! binaries. Starts a coordinator on its embedded SQLite default (in this process, on a free
//! loopback port), creates a join token, enrolls a real `lifeboat-agent` process over mutual TLS,
//! runs it, and shows it connected in `agents list`. Leaves nothing running unless asked to keep
//! serving.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use lifeboat_shared::ids::Environment;
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use crate::admin;
use crate::config::Config;
use crate::server::Coordinator;

/// Options of `demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Directory for the demo's coordinator and agent state (default: a fresh temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep the coordinator and agent running until Ctrl-C.
    #[arg(long)]
    pub keep_serving: bool,
}

const ENVIRONMENT: &str = "demo";

/// Finds a sibling binary (the agent is built next to the coordinator).
fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locate this executable")?;
    let path = exe.with_file_name(name);
    if !path.exists() {
        bail!(
            "{} not found next to {}: build both binaries with `cargo build --release --workspace`",
            name,
            exe.display()
        );
    }
    Ok(path)
}

fn step(text: &str) {
    println!("\n==> {text}");
}

/// Runs the demo.
pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let _telemetry = lifeboat_shared::telemetry::init(
        "lifeboat-coordinator",
        &lifeboat_shared::telemetry::TelemetryConfig {
            log_filter: Some("warn".into()),
            ..Default::default()
        },
    )?;
    let agent_binary = sibling_binary("lifeboat-agent")?;
    let temp;
    let dir = match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
            dir.clone()
        }
        None => {
            temp = tempfile::Builder::new().prefix("lifeboat-demo-").tempdir()?;
            temp.path().to_owned()
        }
    };

    step("starting a coordinator (embedded SQLite, mutual TLS on a free loopback port)");
    let listener = TcpListener::bind("127.0.0.1:0").await.context("bind a loopback port")?;
    let address = listener.local_addr()?;
    let config_path = dir.join("coordinator.toml");
    let config_text = format!(
        "listen = \"{address}\"\nhttp_listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nserver_names = [\"127.0.0.1\", \"localhost\"]\n\n[agents]\nheartbeat_interval = \"2s\"\nlast_seen_flush = \"1s\"\n",
        dir.join("coordinator").display()
    );
    std::fs::write(&config_path, &config_text).with_context(|| format!("write {}", config_path.display()))?;
    let config = Config::parse(&config_path, &config_text)?;
    let coordinator = Coordinator::prepare(config.clone()).await?;
    let store = coordinator.store().clone();
    let ca = coordinator.ca().clone();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(coordinator.serve(listener, shutdown.clone()));
    println!("    listening on {address}; state in {}", dir.display());

    step(&format!(
        "creating a single-use join token for environment {ENVIRONMENT:?}"
    ));
    let url = config.public_url();
    let token = admin::create_token(
        &store,
        &ca,
        &url,
        Environment::parse(ENVIRONMENT)?,
        Duration::from_secs(600),
        1,
    )
    .await?;
    println!("    CA pin: {}", token.ca_pin);

    let outcome = run_agent(&agent_binary, &dir, &url, &token, &config, &store, args.keep_serving).await;

    shutdown.cancel();
    match server.await {
        Ok(served) => served.context("coordinator")?,
        Err(err) => bail!("coordinator task failed: {err}"),
    }
    outcome?;
    println!("\nDemo finished: nothing is left running.");
    Ok(ExitCode::SUCCESS)
}

async fn run_agent(
    agent_binary: &Path,
    dir: &Path,
    url: &str,
    token: &admin::CreatedToken,
    config: &Config,
    store: &crate::store::Store,
    keep_serving: bool,
) -> anyhow::Result<()> {
    step("enrolling an agent: it generates its key locally and sends only a CSR");
    let identity_dir = dir.join("agent").join("identity");
    let enroll = Command::new(agent_binary)
        .args([
            "enroll",
            "--coordinator",
            url,
            "--token",
            &token.token,
            "--ca-pin",
            &token.ca_pin,
        ])
        .arg("--identity-dir")
        .arg(&identity_dir)
        .args(["--name", "demo-agent"])
        .output()
        .await
        .context("run lifeboat-agent enroll")?;
    if !enroll.status.success() {
        bail!("enroll failed: {}", String::from_utf8_lossy(&enroll.stderr));
    }
    print!("    {}", String::from_utf8_lossy(&enroll.stdout));

    step("starting the agent daemon (outbound mTLS session, heartbeats, durable spool)");
    let agent_config = dir.join("agent").join("agent.toml");
    std::fs::write(
        &agent_config,
        format!(
            "[agent]\ncoordinator = \"{url}\"\nidentity_dir = \"{}\"\nwork_dir = \"{}\"\nname = \"demo-agent\"\n",
            identity_dir.display(),
            dir.join("agent").join("work").display()
        ),
    )?;
    let log_path = dir.join("agent").join("agent.log");
    let log = std::fs::File::create(&log_path)?;
    let mut agent = Command::new(agent_binary)
        .arg("run")
        .arg("--config")
        .arg(&agent_config)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("start lifeboat-agent run")?;

    let offline_after = config.agents.offline_after.into();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let agents = loop {
        let agents = admin::list_agents(store, offline_after).await?;
        if agents.iter().any(|agent| agent.connected && agent.last_seen.is_some()) {
            break agents;
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "the agent did not connect within 30 s; its log:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    step("agents list");
    print!("{}", admin::agents_table(&agents));
    println!(
        "\n    The same, from another terminal while it runs:\n    lifeboat-coordinator agents list --config {}",
        dir.join("coordinator.toml").display()
    );

    if keep_serving {
        println!("\nServing until Ctrl-C.");
        let stop = lifeboat_shared::shutdown::on_signals()?;
        stop.cancelled().await;
    }

    step("stopping the agent (SIGTERM) and the coordinator");
    if let Some(pid) = agent.id().and_then(|id| i32::try_from(id).ok()) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
    }
    match tokio::time::timeout(Duration::from_secs(10), agent.wait()).await {
        Ok(Ok(status)) if status.success() => {}
        Ok(Ok(status)) => bail!("the agent exited with {status}"),
        _ => {
            agent.kill().await.ok();
            bail!("the agent did not stop within 10 s");
        }
    }
    Ok(())
}
