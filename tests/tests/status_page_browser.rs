//! The status page in a real browser: Debian's headless `chromium` meets the login form, logs in
//! with an operator token as a person would (fill the field, submit), then loads the overview
//! and an asset's page from the real router over a seeded store, and logs out; the test asserts
//! the browser reported nothing (no console message, no uncaught exception, no failed load, no
//! Content-Security-Policy violation) and that the rendered DOM shows the seeded verdicts.
//!
//! The browser is driven over the DevTools protocol on `--remote-debugging-pipe` (JSON messages
//! separated by NUL bytes; the browser reads fd 3 and writes fd 4, which a `sh` wrapper maps onto
//! our pipes). `--enable-logging=stderr` only shows `console.*` calls, not CSP violations or
//! failed loads; the protocol's `Log.entryAdded`, `Runtime.consoleAPICalled` and
//! `Runtime.exceptionThrown` events report all three. A negative control (a page that 404s)
//! proves the detection sees errors.
//!
//! Needs Debian's `chromium`, which `scripts/test` installs; without it the test fails and says
//! so (a test that skips itself proves nothing).

mod http_fixture;

use std::process::Stdio;
use std::time::Duration;

use http_fixture::{HOSTILE, STALE_MESSAGE, Server};
use lifeboat_coordinator::http::asset_path;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// Longest one protocol exchange (or a page load) may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// A headless Chromium driven over the DevTools pipe, attached to one page.
struct Browser {
    child: Child,
    to_browser: ChildStdin,
    from_browser: BufReader<ChildStdout>,
    next_id: u64,
    session: Option<String>,
    /// Problems the page reported (console messages, exceptions, log entries), in order.
    problems: Vec<String>,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn launch() -> Browser {
        assert!(
            which("chromium").is_some(),
            "chromium is not installed: run scripts/test (it installs it) or apt-get install -y chromium"
        );
        let profile = tempfile::tempdir().expect("profile dir");
        // fd 3 = our stdin pipe (commands), fd 4 = our stdout pipe (answers and events).
        let script = format!(
            "exec chromium --headless=new --no-sandbox --disable-gpu --no-first-run --no-default-browser-check \
             --disable-extensions --disable-background-networking --user-data-dir='{}' --remote-debugging-pipe \
             about:blank 3<&0 4>&1 0</dev/null 1>/dev/null",
            profile.path().display()
        );
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromium");
        let to_browser = child.stdin.take().expect("stdin");
        let from_browser = BufReader::new(child.stdout.take().expect("stdout"));
        let mut browser = Browser {
            child,
            to_browser,
            from_browser,
            next_id: 0,
            session: None,
            problems: Vec::new(),
            _profile: profile,
        };
        let target = browser.call("Target.createTarget", json!({"url": "about:blank"})).await;
        let target_id = target["targetId"].as_str().expect("target id").to_owned();
        let attached = browser
            .call("Target.attachToTarget", json!({"targetId": target_id, "flatten": true}))
            .await;
        browser.session = Some(attached["sessionId"].as_str().expect("session id").to_owned());
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            browser.call(domain, json!({})).await;
        }
        browser
    }

    /// Sends a command (to the page session once attached) and returns its result; events that
    /// arrive meanwhile are recorded.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = &self.session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).expect("encode");
        bytes.push(0);
        self.to_browser.write_all(&bytes).await.expect("write to chromium");
        self.to_browser.flush().await.expect("flush");
        loop {
            let reply = self.next_message().await;
            if reply["id"].as_u64() == Some(id) {
                assert!(reply.get("error").is_none(), "{method} failed: {reply}");
                return reply["result"].clone();
            }
        }
    }

    /// Reads one message, recording it when it is an event that reports a problem.
    async fn next_message(&mut self) -> Value {
        let mut buffer = Vec::new();
        let read = tokio::time::timeout(STEP_TIMEOUT, self.from_browser.read_until(0, &mut buffer))
            .await
            .expect("chromium answered in time")
            .expect("read from chromium");
        assert!(read > 0, "chromium closed the pipe");
        if buffer.last() == Some(&0) {
            buffer.pop();
        }
        let message: Value = serde_json::from_slice(&buffer).expect("a JSON message");
        self.record_problem(&message);
        message
    }

    fn record_problem(&mut self, message: &Value) {
        let params = &message["params"];
        let problem = match message["method"].as_str() {
            Some("Runtime.consoleAPICalled") => Some(format!("console.{}: {}", params["type"], params["args"])),
            Some("Runtime.exceptionThrown") => Some(format!("uncaught: {}", params["exceptionDetails"])),
            Some("Log.entryAdded") => Some(format!(
                "{} {} ({}): {}",
                params["entry"]["level"], params["entry"]["source"], params["entry"]["url"], params["entry"]["text"]
            )),
            _ => None,
        };
        if let Some(problem) = problem {
            self.problems.push(problem);
        }
    }

    /// Loads `url`, waits for its load event and a moment for late reports; returns the DOM.
    async fn load(&mut self, url: &str) -> String {
        self.problems.clear();
        self.call("Page.navigate", json!({"url": url})).await;
        self.wait_for_load().await;
        self.loaded_dom().await
    }

    /// Reads messages until the page's load event.
    async fn wait_for_load(&mut self) {
        loop {
            let message = self.next_message().await;
            if message["method"] == "Page.loadEventFired" {
                return;
            }
        }
    }

    /// After a load event: flushes late reports (raised during layout, they arrive after the
    /// event; a round trip brings them) and returns the DOM.
    async fn loaded_dom(&mut self) -> String {
        self.call("Runtime.evaluate", json!({"expression": "1", "returnByValue": true}))
            .await;
        let dom = self
            .call(
                "Runtime.evaluate",
                json!({"expression": "document.documentElement.outerHTML", "returnByValue": true}),
            )
            .await;
        dom["result"]["value"].as_str().expect("outerHTML").to_owned()
    }

    /// Runs `expression` in the page (as a person's typing and clicking would) and waits for the
    /// navigation it starts to load; returns the new DOM.
    async fn submit(&mut self, expression: &str) -> String {
        self.problems.clear();
        self.call("Runtime.evaluate", json!({"expression": expression})).await;
        self.wait_for_load().await;
        self.loaded_dom().await
    }

    /// The page's visible text.
    async fn text(&mut self) -> String {
        let text = self
            .call(
                "Runtime.evaluate",
                json!({"expression": "document.body.innerText", "returnByValue": true}),
            )
            .await;
        text["result"]["value"].as_str().expect("innerText").to_owned()
    }

    async fn close(mut self) {
        self.session = None;
        let _ = tokio::time::timeout(STEP_TIMEOUT, self.call("Browser.close", json!({}))).await;
        let _ = tokio::time::timeout(STEP_TIMEOUT, self.child.wait()).await;
    }
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_renders_in_chromium_without_console_errors() {
    let mut browser = Browser::launch().await;
    let server = Server::sqlite().await;

    // A stranger gets the login form (the 401 is the one problem reported).
    let dom = browser.load(&server.url("/")).await;
    assert!(dom.contains("action=\"/login\""), "no login form: {dom}");
    assert!(
        browser.problems.iter().all(|problem| problem.contains("401")),
        "the login form reported: {:#?}",
        browser.problems
    );
    // Typing the operator token and pressing the button opens the overview.
    let fill_and_submit = format!(
        "document.getElementById('token').value = '{}'; document.querySelector('form').submit();",
        server.token
    );
    let dom = browser.submit(&fill_and_submit).await;
    assert!(
        browser.problems.is_empty(),
        "the overview reported: {:#?}",
        browser.problems
    );
    let text = browser.text().await;
    assert!(text.contains("Not recoverable"), "{text}");
    assert!(text.contains("2 of 4 assets cannot be recovered right now"), "{text}");
    for asset in ["rentals-db", HOSTILE, "uploads", "app-db"] {
        assert!(
            dom.contains(&asset.replace('<', "&lt;").replace('>', "&gt;")),
            "{asset} missing"
        );
    }
    assert!(text.contains(STALE_MESSAGE), "the worst reason in plain words");
    assert!(text.contains(HOSTILE), "the hostile name is shown as text");
    // The hostile name did not become an element.
    let scripts = browser
        .call(
            "Runtime.evaluate",
            json!({"expression": "document.querySelectorAll('script').length", "returnByValue": true}),
        )
        .await;
    assert_eq!(scripts["result"]["value"], 0);
    assert!(dom.contains("<svg class=\"spark\""), "sparklines render as SVG");

    let dom = browser.load(&server.url(&asset_path("prod", "rentals-db"))).await;
    assert!(
        browser.problems.is_empty(),
        "the asset page reported: {:#?}",
        browser.problems
    );
    let text = browser.text().await;
    assert!(text.contains("Not recoverable"), "{text}");
    assert!(text.contains("Runbook of the last passing restore"), "{text}");
    assert!(dom.contains("class=\"rto\""), "the RTO line");

    // Negative control: a failed load is reported, so silence above means something.
    browser.load(&server.url("/assets/prod/no-such-asset")).await;
    assert!(
        browser.problems.iter().any(|problem| problem.contains("404")),
        "a 404 must be reported: {:#?}",
        browser.problems
    );

    // The logout button ends the session: back at the login page, and the overview is closed.
    browser.load(&server.url("/")).await;
    let dom = browser
        .submit("document.querySelector('form[action=\"/logout\"]').submit();")
        .await;
    assert!(browser.problems.is_empty(), "logout reported: {:#?}", browser.problems);
    assert!(dom.contains("action=\"/login\""), "not back at the login page: {dom}");
    let dom = browser.load(&server.url("/")).await;
    assert!(dom.contains("action=\"/login\"") && !dom.contains("Not recoverable"));

    browser.close().await;
    server.stop().await;
}

/// The auditor's `report.html` from `evidence export` opens offline (a `file://` URL, nothing
/// fetched) in Chromium with no console error, and shows the runs with their outcomes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_evidence_report_opens_offline_without_console_errors() {
    use lifeboat_coordinator::store::{ResultRow, Store};
    use lifeboat_shared::findings::{Finding, FindingKind, Severity};
    use lifeboat_shared::ids::{AgentId, Environment, ResultId};
    use lifeboat_shared::protocol::{Outcome, RunResult};

    let dir = tempfile::tempdir().expect("dir");
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("lifeboat.db").display()))
        .await
        .expect("store");
    let rows: Vec<ResultRow> = [("rentals-db", Outcome::Passed), ("uploads", Outcome::Failed)]
        .into_iter()
        .map(|(asset, outcome)| {
            let mut result = RunResult::for_test(asset, outcome);
            result.result_id = ResultId::new();
            result.backup = "nightly".into();
            result.recovery_point = format!("{asset}-2026-11-25.dump");
            result.rto_seconds = 42.0;
            if outcome == Outcome::Failed {
                result.findings.push(
                    Finding::new(FindingKind::RestoreCheckFailed, asset, "check \"files exist\" failed")
                        .with_severity(Severity::Critical),
                );
            }
            ResultRow {
                agent_id: AgentId::new(),
                environment: Environment::parse("prod").expect("env"),
                result,
                received_at: chrono::Utc::now(),
            }
        })
        .collect();
    store.insert_results(&rows).await.expect("results");
    store.append_evidence(&rows).await.expect("evidence");
    let out = dir.path().join("export");
    lifeboat_coordinator::evidence::export(&store, chrono::Utc::now() - chrono::Duration::days(90), &out)
        .await
        .expect("export");

    let mut browser = Browser::launch().await;
    let dom = browser
        .load(&format!("file://{}", out.join("report.html").display()))
        .await;
    assert!(
        browser.problems.is_empty(),
        "the report reported: {:#?}",
        browser.problems
    );
    let text = browser.text().await;
    for expected in ["rentals-db", "uploads", "rentals-db-2026-11-25.dump", "files exist"] {
        assert!(text.contains(expected), "{expected} missing from the report:\n{text}");
    }
    assert!(!dom.contains("<script"), "the report needs no script");
    browser.close().await;
}
