//! The guard where destructive calls are made, besides the Railway gate: `guard check` (exit
//! 0 allowed, 1 refused, 2 error; JSON), a running coordinator's `POST /api/v1/guard/check` and
//! its MCP server over streamable HTTP (both behind operator tokens, naming the caller), the MCP
//! server on stdio (`lifeboat-coordinator mcp`) driven by the official MCP Python SDK as an AI
//! agent would, and the "Guard decisions" sections of the status page and the asset page.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use lifeboat_coordinator::config::Config;
use lifeboat_coordinator::server::Coordinator;
use lifeboat_coordinator::store::Store;
use lifeboat_tests::guard_world::{ASSET, ENV, apply_fixes, crate_file, python, seed_incident};
use lifeboat_tests::processes::{binary, run};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;
use tokio_util::sync::CancellationToken;

/// A config on `data_dir` (SQLite there) and the store it names, seeded with the incident.
async fn world(dir: &Path) -> (PathBuf, Config, Store, lifeboat_shared::ids::AgentId) {
    let data_dir = dir.join("coordinator");
    std::fs::create_dir_all(&data_dir).expect("data dir");
    let path = dir.join("coordinator.toml");
    let text = format!(
        "listen = \"127.0.0.1:7443\"\nhttp_listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nserver_names = [\"127.0.0.1\"]\n",
        data_dir.display()
    );
    std::fs::write(&path, &text).expect("config");
    let config = Config::parse(&path, &text).expect("config");
    let store = Store::connect(&config.database_url()).await.expect("store");
    let agent = seed_incident(&store).await;
    (path, config, store, agent)
}

/// Runs `mcp_client.py` with `calls` on stdin; returns its report.
async fn mcp_client(args: &[&str], calls: &Value) -> Value {
    let mut child = tokio::process::Command::new(python())
        .arg(crate_file("python/mcp_client.py"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the MCP client");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(calls.to_string().as_bytes())
        .await
        .expect("write calls");
    drop(stdin);
    let output = tokio::time::timeout(std::time::Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("the MCP client finished in time")
        .expect("output");
    assert!(
        output.status.success(),
        "mcp_client.py {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("report")
}

fn check_call(operation: &str) -> Value {
    json!({"tool": "check_destructive_operation", "arguments": {
        "environment": ENV, "provider": "railway", "resource": "volume:vol-7f3a", "operation": operation}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guard_check_answers_with_its_exit_code_and_json() {
    let dir = tempfile::tempdir().expect("dir");
    let (path, _config, store, agent) = world(dir.path()).await;
    let config = path.display().to_string();
    let args = |operation: &'static str| {
        vec![
            "guard".to_owned(),
            "check".into(),
            "--config".into(),
            config.clone(),
            "--environment".into(),
            ENV.into(),
            "--provider".into(),
            "railway".into(),
            "--resource".into(),
            "volume:vol-7f3a".into(),
            "--operation".into(),
            operation.into(),
            "--output".into(),
            "json".into(),
        ]
    };
    let run_with = |args: Vec<String>| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run("lifeboat-coordinator", &args).await.expect("run")
    };
    let (code, stdout, stderr) = run_with(args("delete")).await;
    assert_eq!(code, 1, "{stdout}{stderr}");
    let answer: Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(answer["allowed"], false);
    assert!(
        answer["reasons"][0]
            .as_str()
            .is_some_and(|reason| reason.contains("rentals-db")),
        "{answer}"
    );
    assert_eq!(answer["assets"][0]["asset"], ASSET);
    assert_eq!(answer["assets"][0]["recoverable"], false);
    assert!(answer["assets"][0].get("safe_point").is_some());
    assert!(
        answer["caller"]
            .as_str()
            .is_some_and(|caller| caller.starts_with("cli:"))
    );

    apply_fixes(&store, agent).await;
    let (code, stdout, stderr) = run_with(args("wipe")).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let answer: Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(answer["allowed"], true);
    assert_eq!(answer["assets"][0]["safe_point"]["backup"], "rentals-db-offsite");

    let (code, _, stderr) = run_with(args("drop")).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("drop"), "{stderr}");
    let mut bad = args("delete");
    bad[9] = "vol-7f3a".into();
    let (code, _, stderr) = run_with(bad).await;
    assert_eq!(code, 2);
    assert!(stderr.contains("KIND:ID"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mcp_server_on_stdio_answers_an_agent_before_it_destroys_anything() {
    let dir = tempfile::tempdir().expect("dir");
    let (path, _config, store, _agent) = world(dir.path()).await;
    let coordinator = binary("lifeboat-coordinator");
    let calls = json!([
        check_call("delete"),
        {"tool": "recovery_status", "arguments": {"environment": ENV}},
        {"tool": "list_assets", "arguments": {}},
        {"tool": "check_destructive_operation", "arguments": {
            "environment": ENV, "provider": "railway", "resource": "vol-7f3a", "operation": "delete"}},
    ]);
    let report = mcp_client(
        &[
            "stdio",
            coordinator.to_str().expect("path"),
            path.to_str().expect("path"),
        ],
        &calls,
    )
    .await;
    let tools: Vec<&str> = report["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|tool| tool["name"].as_str())
        .collect();
    assert_eq!(tools.len(), 3, "{tools:?}");
    for name in ["check_destructive_operation", "recovery_status", "list_assets"] {
        assert!(tools.contains(&name), "{tools:?}");
    }
    let check = &report["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .find(|tool| tool["name"] == "check_destructive_operation")
        .expect("check tool")["description"];
    assert!(
        check
            .as_str()
            .is_some_and(|text| text.contains("BEFORE any destructive")),
        "{check}"
    );
    assert!(
        report["instructions"]
            .as_str()
            .is_some_and(|text| text.contains("check_destructive_operation"))
    );

    let calls = report["calls"].as_array().expect("calls");
    assert_eq!(calls[0]["is_error"], false);
    let text = calls[0]["text"].as_str().expect("text");
    assert!(
        text.starts_with("REFUSED: do not delete railway volume vol-7f3a"),
        "{text}"
    );
    assert!(text.contains("92 days old"), "{text}");
    assert_eq!(calls[0]["structured"]["allowed"], false);
    assert_eq!(calls[1]["structured"]["recoverable"], false);
    assert_eq!(calls[1]["structured"]["assets"][0]["asset"], ASSET);
    let assets = calls[2]["structured"]["assets"].as_array().expect("assets");
    assert_eq!(assets.len(), 2);
    assert!(assets.iter().any(|asset| asset["locations"][0]["volume"] == "vol-7f3a"));
    assert_eq!(
        calls[3]["is_error"], true,
        "a resource that is not KIND:ID is the agent's error"
    );

    let decisions = store.guard_decisions(10).await.expect("decisions");
    assert_eq!(decisions.len(), 1);
    assert_eq!(
        (decisions[0].caller.as_str(), decisions[0].surface.as_str()),
        ("mcp:stdio", "mcp")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_coordinator_serves_the_guard_over_its_api_mcp_and_pages() {
    let dir = tempfile::tempdir().expect("dir");
    let (_path, config, store, agent) = world(dir.path()).await;
    let token = store.create_operator_token("ai-agent-7", None).await.expect("token");
    let coordinator = Coordinator::prepare(config).await.expect("prepare");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", http.local_addr().expect("address"));
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(coordinator.serve_with_http(listener, Some(http), shutdown.clone()));
    let client = reqwest::Client::new();

    // The API, named by the operator token.
    let body = json!({"environment": ENV, "provider": "railway", "resource": "volume:vol-7f3a", "operation": "delete"});
    let answer: Value = client
        .post(format!("{base}/api/v1/guard/check"))
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .expect("api")
        .json()
        .await
        .expect("json");
    assert_eq!(answer["allowed"], false, "{answer}");
    assert_eq!(answer["caller"], "ai-agent-7");
    let unauthenticated = client
        .post(format!("{base}/api/v1/guard/check"))
        .json(&body)
        .send()
        .await
        .expect("api");
    assert_eq!(unauthenticated.status(), 401);
    let bad = client
        .post(format!("{base}/api/v1/guard/check"))
        .bearer_auth(&token)
        .json(&json!({"environment": ENV, "provider": "railway", "resource": "volume:v", "operation": "melt"}))
        .send()
        .await
        .expect("api");
    assert_eq!(bad.status(), 400);

    // MCP over streamable HTTP, behind the same kind of token.
    apply_fixes(&store, agent).await;
    let report = mcp_client(
        &["http", &format!("{base}/mcp"), &token],
        &json!([check_call("detach")]),
    )
    .await;
    let call = &report["calls"][0];
    assert!(
        call["text"].as_str().is_some_and(|text| text.starts_with("ALLOWED")),
        "{call}"
    );
    assert_eq!(call["structured"]["caller"], "ai-agent-7");
    let refused = client
        .post(format!("{base}/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
        .send()
        .await
        .expect("mcp");
    assert_eq!(refused.status(), 401, "no token, no MCP");

    // Both pages (behind the operator token too) show who asked what, and the answer.
    let overview = client
        .get(format!("{base}/"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(overview.contains("Guard decisions"), "overview");
    assert!(overview.contains("ai-agent-7") && overview.contains("refused") && overview.contains("allowed"));
    let detail = client
        .get(format!("{base}/assets/{ENV}/{ASSET}"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(detail.contains("Guard decisions") && detail.contains("detach railway volume vol-7f3a"));

    shutdown.cancel();
    server.await.expect("join").expect("served");
}
