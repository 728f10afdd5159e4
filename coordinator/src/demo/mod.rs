//! `lifeboat-coordinator demo`: the whole story on one machine, with nothing but the built
//! binaries and the installed PostgreSQL. A coordinator on its embedded SQLite (in this process)
//! with a webhook "ticket system"; a production PostgreSQL with a rental business, fresh backups
//! beside its data directory, a 92-day-old good backup on another volume, and an over-scoped
//! Railway token lying in an unrelated file; a real `lifeboat-agent` enrolled over mutual TLS.
//! The drill says NOT RECOVERABLE with its reasons and a ticket opens; an AI coding agent's
//! `volumeDelete` through Lifeboat's Railway gate is refused; the fixes are applied; the next
//! drill says RECOVERABLE, the ticket is resolved, and the same call goes through. Leaves nothing
//! running unless asked.
//!
//! # Layout
//!
//! - [`production`]: the throw-away production cluster and its backups.
//! - [`railway`]: a Railway-like API, and the AI agent's one call.
//! - [`sink`]: the local webhook receiver standing in for Jira or PagerDuty.

pub mod production;
pub mod railway;
pub mod sink;

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
use crate::store::{Store, VerdictRecord};

/// Options of `demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Directory for the demo's state (default: a fresh temporary directory, removed at the end).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Where the "offsite" backup lives: another volume than the demo directory (default: a
    /// directory under /dev/shm, a separate tmpfs on Linux).
    #[arg(long)]
    pub offsite_dir: Option<PathBuf>,
    /// Keep the coordinator, its status page and the agent running until Ctrl-C.
    #[arg(long)]
    pub keep_serving: bool,
}

const ENVIRONMENT: &str = "pocketos-prod";
const ASSET: &str = "rentals-db";
/// The Railway volume rentals-db and its fresh dumps live on.
const VOLUME: &str = "vol-7f3a";

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

/// A directory removed on drop (the offsite one, outside the demo directory).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _removed = std::fs::remove_dir_all(&self.0);
    }
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
    let started = std::time::Instant::now();
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
    // Servers running as another user (postgres, lifeboat-sandbox) must traverse it.
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let offsite = args
        .offsite_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("/dev/shm/lifeboat-demo-{}", std::process::id())));
    std::fs::create_dir_all(&offsite).with_context(|| format!("create {}", offsite.display()))?;
    std::fs::set_permissions(&offsite, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let _offsite_cleanup = RemoveOnDrop(offsite.clone());

    let shutdown = CancellationToken::new();
    let outcome = story(&args, &dir, &offsite, &agent_binary, shutdown.clone()).await;
    shutdown.cancel();
    let verdicts = outcome?;
    println!(
        "\nDemo finished in {:.0} s: {ASSET} went NOT RECOVERABLE → ticket → volumeDelete refused → fixed → RECOVERABLE → resolved → volumeDelete allowed \
         ({} flips). Nothing is left running.",
        started.elapsed().as_secs_f64(),
        verdicts
    );
    Ok(ExitCode::SUCCESS)
}

/// The story; returns the number of flips it saw.
async fn story(
    args: &DemoArgs,
    dir: &Path,
    offsite: &Path,
    agent_binary: &Path,
    shutdown: CancellationToken,
) -> anyhow::Result<usize> {
    step("production: a PostgreSQL cluster with a rental business (2,000 customers, 50,000 bookings)");
    let production = production::Production::start(&dir.join("production")).await?;
    production.load_rentals().await?;
    let fresh = dir.join("production").join("backups");
    std::fs::create_dir_all(&fresh)?;
    production.dump("rentals", &fresh.join("rentals-latest.dump")).await?;
    let offsite_dumps = offsite.join("rentals");
    std::fs::create_dir_all(&offsite_dumps)?;
    std::fs::set_permissions(&offsite_dumps, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    production
        .dump_dated("rentals", &offsite_dumps.join("rentals-august.sql"), 92)
        .await?;
    let app = dir.join("srv-app");
    std::fs::create_dir_all(app.join("scripts"))?;
    let token = uuid::Uuid::new_v4().to_string();
    let domains_env = app.join("scripts").join("domains.env");
    std::fs::write(
        &domains_env,
        format!("# custom domains for the storefront\nDOMAIN=rentals.example.com\nRAILWAY_TOKEN={token}\n"),
    )?;
    println!(
        "    data directory and fresh dumps: {} (one volume)",
        dir.join("production").display()
    );
    println!(
        "    a good dump from 92 days ago:    {} (another volume)",
        offsite_dumps.display()
    );
    println!(
        "    a Railway account token made to \"manage custom domains\", lying in {}",
        domains_env.display()
    );

    step("coordinator: embedded SQLite, agents over mutual TLS, a webhook ticket system, a status page");
    let secret = uuid::Uuid::new_v4().simple().to_string();
    let sink = sink::WebhookSink::start(&secret, shutdown.clone()).await?;
    let listener = TcpListener::bind("127.0.0.1:0").await.context("bind a loopback port")?;
    let http = TcpListener::bind("127.0.0.1:0").await.context("bind a loopback port")?;
    let address = listener.local_addr()?;
    let status_url = format!("http://{}", http.local_addr()?);
    let config_path = dir.join("coordinator.toml");
    let config_text = format!(
        r#"listen = "{address}"
http_listen = "127.0.0.1:0"
data_dir = "{data}"
server_names = ["127.0.0.1", "localhost"]
# The demo serves on loopback only: its status page needs no login.
public_status = true

[agents]
heartbeat_interval = "2s"
last_seen_flush = "1s"

[alerts]
evaluate_every = "2s"
public_url = "{status_url}"

[[channel]]
name = "tickets"
kind = "webhook"
url = "{sink}"
secret = "{secret}"

[[route]]
channels = ["tickets"]
min_severity = "high"
"#,
        data = dir.join("coordinator").display(),
        sink = sink.url,
    );
    std::fs::write(&config_path, &config_text).with_context(|| format!("write {}", config_path.display()))?;
    let config = Config::parse(&config_path, &config_text)?;
    let coordinator = Coordinator::prepare(config.clone()).await?;
    let store = coordinator.store().clone();
    let ca = coordinator.ca().clone();
    let server = tokio::spawn(coordinator.serve_with_http(listener, Some(http), shutdown.clone()));
    println!("    agents connect to {address}; status page: {status_url}/");

    let url = config.public_url();
    let join = admin::create_token(
        &store,
        &ca,
        &url,
        Environment::parse(ENVIRONMENT)?,
        Duration::from_secs(600),
        1,
    )
    .await?;
    let agent_dir = dir.join("agent");
    let mut agent = start_agent(
        agent_binary,
        &agent_dir,
        &url,
        &join,
        &production,
        &fresh,
        &offsite_dumps,
        &app,
        &token,
    )
    .await?;
    wait_for(
        &store,
        Duration::from_secs(30),
        "the agent to connect and report its inventory",
        |store| async move { Ok(!store.tests().await?.is_empty()) },
    )
    .await
    .map_err(|err| with_log(err, &agent_dir))?;

    step("drill 1: restore-test the backups, scan for credentials, judge");
    crate::reports::run_now(&store, &config, ASSET, Some(ENVIRONMENT), chrono::Utc::now()).await?;
    let verdict = wait_for_verdict(&store, false)
        .await
        .map_err(|err| with_log(err, &agent_dir))?;
    print_verdict(&verdict);
    wait_for_ticket(&sink, "trigger").await?;

    let gate = start_gate(&store, &config, shutdown.clone()).await?;
    step("an AI coding agent calls Railway's volumeDelete — through Lifeboat's Railway gate");
    agent_call(&gate, false).await?;

    step("the fixes: a fresh dump on the offsite volume; the token removed from the file");
    production
        .dump("rentals", &offsite_dumps.join("rentals-today.dump"))
        .await?;
    std::fs::write(
        &domains_env,
        "# custom domains for the storefront\nDOMAIN=rentals.example.com\n",
    )?;
    println!("    (a real fix also revokes the token and replaces it with a project token)");

    step("drill 2");
    crate::reports::run_now(
        &store,
        &config,
        ASSET,
        Some(ENVIRONMENT),
        chrono::Utc::now() + chrono::Duration::milliseconds(1),
    )
    .await?;
    let verdict = wait_for_verdict(&store, true)
        .await
        .map_err(|err| with_log(err, &agent_dir))?;
    print_verdict(&verdict);
    wait_for_ticket(&sink, "resolve").await?;
    step("the same volumeDelete, now that rentals-db can be recovered from outside the volume");
    agent_call(&gate, true).await?;
    let flips = store.flips(Some(ENVIRONMENT), Some(ASSET), 10).await?.len();
    println!(
        "\n    Status page: {status_url}/    API: {status_url}/api/v1/verdicts (operator-token create)    metrics: {status_url}/metrics"
    );

    if args.keep_serving {
        println!("\nServing until Ctrl-C. State in {}", dir.display());
        let stop = lifeboat_shared::shutdown::on_signals()?;
        stop.cancelled().await;
    }
    let _killed = agent.kill().await;
    shutdown.cancel();
    match server.await {
        Ok(served) => served.context("coordinator")?,
        Err(err) => bail!("coordinator task failed: {err}"),
    }
    production.stop().await;
    Ok(flips)
}

#[allow(clippy::too_many_arguments)]
async fn start_agent(
    agent_binary: &Path,
    agent_dir: &Path,
    url: &str,
    join: &admin::CreatedToken,
    production: &production::Production,
    fresh: &Path,
    offsite: &Path,
    app: &Path,
    token: &str,
) -> anyhow::Result<tokio::process::Child> {
    step("agent: enrolls (its key never leaves it), then connects out over mutual TLS");
    // Sandbox servers run as the lifeboat-sandbox user when the agent runs as root: they must
    // be able to traverse to the work directory.
    for path in [agent_dir.to_owned(), agent_dir.join("work")] {
        std::fs::create_dir_all(&path)?;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    }
    let identity_dir = agent_dir.join("identity");
    let enroll = Command::new(agent_binary)
        .args([
            "enroll",
            "--coordinator",
            url,
            "--token",
            &join.token,
            "--ca-pin",
            &join.ca_pin,
        ])
        .arg("--identity-dir")
        .arg(&identity_dir)
        .args(["--name", "pocketos-prod-1"])
        .output()
        .await
        .context("run lifeboat-agent enroll")?;
    if !enroll.status.success() {
        bail!("enroll failed: {}", String::from_utf8_lossy(&enroll.stderr));
    }
    print!("    {}", String::from_utf8_lossy(&enroll.stdout));
    let agent_config = agent_dir.join("agent.toml");
    std::fs::write(
        &agent_config,
        format!(
            r#"[agent]
coordinator = "{url}"
identity_dir = "{identity}"
work_dir = "{work}"
name = "pocketos-prod-1"

[[asset]]
name = "{ASSET}"
kind = "postgres"
url = "{production_url}"
location = {{ provider = "railway", account = "pocketos", region = "us-west1", volume = "{VOLUME}" }}
rpo = "24h"
rto = "30m"

[[backup]]
name = "rentals-volume-dumps"
asset = "{ASSET}"
kind = "pg_dump_dir"
path = "{fresh}"
location = {{ provider = "railway", account = "pocketos", volume = "{VOLUME}" }}

[[backup]]
name = "rentals-offsite"
asset = "{ASSET}"
kind = "pg_dump_dir"
path = "{offsite}"
location = {{ provider = "hetzner", account = "pocketos-backups", host = "backup-nas" }}

[[test]]
asset = "{ASSET}"
schedule = "0 3 * * *"
timeout = "10m"

  [[test.check]]
  name = "bookings exist"
  sql = "select count(*) > 1000 from bookings"

  [[test.check]]
  name = "row counts match production"
  row_counts = {{ tables = ["bookings", "customers"] }}

[[credential]]
name = "railway-domains-token"
kind = "railway"
token_type = "account"
account = "pocketos"
purpose = "manage custom domains"
value = "${{RAILWAY_TOKEN}}"

[scan]
paths = ["{app}"]
interval = "1h"
"#,
            identity = identity_dir.display(),
            work = agent_dir.join("work").display(),
            production_url = production.reader_url("rentals"),
            fresh = fresh.display(),
            offsite = offsite.display(),
            app = app.display(),
        ),
    )?;
    let log = std::fs::File::create(agent_dir.join("agent.log"))?;
    Command::new(agent_binary)
        .arg("run")
        .arg("--config")
        .arg(&agent_config)
        .env("RAILWAY_TOKEN", token)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("start lifeboat-agent run")
}

/// Lifeboat's Railway gate in front of the demo's Railway, and the AI agent's operator token.
struct DemoGate {
    url: String,
    agent_token: String,
    railway: railway::RailwayStub,
}

async fn start_gate(store: &Store, config: &Config, shutdown: CancellationToken) -> anyhow::Result<DemoGate> {
    let railway_token = uuid::Uuid::new_v4().simple().to_string();
    let railway = railway::RailwayStub::start(&railway_token, shutdown.clone()).await?;
    let guard = crate::guard::Guard::new(store.clone(), config);
    let gate = crate::guard::proxy::Gate::new(
        guard,
        railway.url.clone(),
        crate::guard::proxy::UpstreamToken::new(railway_token),
        Environment::parse(ENVIRONMENT)?,
    )?;
    let listener = TcpListener::bind("127.0.0.1:0").await.context("bind a loopback port")?;
    let url = format!("http://{}/graphql/v2", listener.local_addr()?);
    tokio::spawn(crate::guard::proxy::serve(listener, gate, shutdown));
    let agent_token = store.create_operator_token("ai-coding-agent", None).await?;
    println!(
        "\n    Railway gate: {url} (only the gate holds Railway's token; the agent has an operator token of its own)"
    );
    Ok(DemoGate {
        url,
        agent_token,
        railway,
    })
}

/// The agent's `volumeDelete` of rentals-db's volume; fails the demo if the answer is not `expect_allowed`.
async fn agent_call(gate: &DemoGate, expect_allowed: bool) -> anyhow::Result<()> {
    let (allowed, answer) = railway::agent_deletes_volume(&gate.url, &gate.agent_token, VOLUME).await?;
    if allowed {
        println!(
            "\n    ALLOWED: the gate forwarded it; Railway deleted {}",
            gate.railway.deleted().join(", ")
        );
    } else {
        println!("\n    REFUSED, nothing reached Railway:");
        for part in answer.split(" | ") {
            println!("      {part}");
        }
    }
    if allowed != expect_allowed {
        bail!("the gate answered {answer}, expected allowed = {expect_allowed}");
    }
    Ok(())
}

fn with_log(err: anyhow::Error, agent_dir: &Path) -> anyhow::Error {
    let log = std::fs::read_to_string(agent_dir.join("agent.log")).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(30).collect();
    err.context(format!(
        "the agent's log ends with:\n{}",
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    ))
}

async fn wait_for<F, Fut>(store: &Store, timeout: Duration, what: &str, mut done: F) -> anyhow::Result<()>
where
    F: FnMut(Store) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if done(store.clone()).await? {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!("timed out after {timeout:?} waiting for {what}")
}

async fn wait_for_verdict(store: &Store, recoverable: bool) -> anyhow::Result<VerdictRecord> {
    let what = if recoverable { "RECOVERABLE" } else { "NOT RECOVERABLE" };
    wait_for(
        store,
        Duration::from_secs(90),
        &format!("the verdict {what}"),
        |store| async move {
            Ok(store
                .verdict(ENVIRONMENT, ASSET)
                .await?
                .is_some_and(|verdict| verdict.recoverable == recoverable))
        },
    )
    .await?;
    store
        .verdict(ENVIRONMENT, ASSET)
        .await?
        .context("the verdict disappeared")
}

async fn wait_for_ticket(sink: &sink::WebhookSink, event: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        if let Some(received) = sink.received().into_iter().find(|received| received.event == event) {
            println!(
                "\n    [ticket system, signature verified] {}: {}",
                if event == "resolve" {
                    "TICKET RESOLVED"
                } else {
                    "TICKET OPENED"
                },
                received.body["summary"].as_str().unwrap_or("")
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("no {event} reached the ticket system within 30 s")
}

fn print_verdict(verdict: &VerdictRecord) {
    println!(
        "\n    {ASSET}: {}",
        if verdict.recoverable {
            "RECOVERABLE"
        } else {
            "NOT RECOVERABLE"
        }
    );
    for finding in &verdict.reasons {
        println!(
            "      {} {}: {}",
            finding.severity.as_str().to_uppercase(),
            finding.kind,
            finding.message
        );
    }
}
