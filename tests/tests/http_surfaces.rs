//! The coordinator's HTTP surfaces over a seeded store, through the real router on
//! 127.0.0.1:0: the JSON API's contracts and its bearer-token guard, the status page (every
//! asset with its verdict, escaping of a hostile asset name) behind its login form, `/metrics`,
//! `/healthz`, `/readyz`. The API and the status page also run on PostgreSQL, whose keyed
//! queries differ.

mod http_fixture;

use chrono::{Duration, Utc};
use http_fixture::{EXPOSED_FIX, EXPOSED_MESSAGE, HOSTILE, STALE_FIX, STALE_MESSAGE, Server};
use lifeboat_coordinator::http::{asset_path, record_run};
use reqwest::StatusCode;
use serde_json::Value;

fn client() -> reqwest::Client {
    reqwest::Client::builder().build().expect("client")
}

/// GETs `path` with the server's operator token; returns the status and the JSON body.
async fn api(server: &Server, path: &str) -> (StatusCode, Value) {
    let response = client()
        .get(server.url(path))
        .bearer_auth(&server.token)
        .send()
        .await
        .expect("request");
    let status = response.status();
    let body = response.json().await.expect("json body");
    (status, body)
}

/// GETs `path` with the session `cookie` (`None`: as a stranger); returns the status and body.
async fn page(server: &Server, cookie: Option<&str>, path: &str) -> (StatusCode, String) {
    let mut request = client().get(server.url(path));
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    (status, response.text().await.expect("body"))
}

fn assert_json_error(body: &Value) {
    assert!(
        body["error"].as_str().is_some_and(|error| !error.is_empty()),
        "expected a JSON error, got {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_refuses_requests_without_a_valid_operator_token() {
    let server = Server::sqlite().await;
    let url = server.url("/api/v1/verdicts");

    let missing = client().get(&url).send().await.expect("request");
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert!(missing.headers().contains_key("www-authenticate"));
    assert_json_error(&missing.json().await.expect("json"));

    for header in [
        "Bearer lbo_not-a-real-token",
        "Bearer",
        "Basic YWRtaW46YWRtaW4=",
        "lbo_raw-token",
    ] {
        let refused = client()
            .get(&url)
            .header("authorization", header)
            .send()
            .await
            .expect("request");
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "{header}");
        assert_json_error(&refused.json().await.expect("json"));
    }

    // Unknown API routes need a token too (they do not reveal what exists).
    let unknown = client().get(server.url("/api/v1/nope")).send().await.expect("request");
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    let (status, body) = api(&server, "/api/v1/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_json_error(&body);

    // Expired and revoked tokens stop working.
    let expired = server
        .store
        .create_operator_token("old", Some(Utc::now() - Duration::seconds(1)))
        .await
        .expect("token");
    let revoked = server.store.create_operator_token("gone", None).await.expect("token");
    let before = client().get(&url).bearer_auth(&revoked).send().await.expect("request");
    assert_eq!(before.status(), StatusCode::OK);
    assert_eq!(server.store.revoke_operator_token("gone").await.expect("revoke"), 1);
    for token in [expired, revoked] {
        let refused = client().get(&url).bearer_auth(&token).send().await.expect("request");
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_answers_the_documented_contracts() {
    let server = Server::sqlite().await;
    check_api_contracts(&server).await;
    server.stop().await;
}

async fn check_api_contracts(server: &Server) {
    // Verdicts: reasons, backup age vs RPO, restore time vs RTO.
    let (status, body) = api(server, "/api/v1/verdicts").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["recoverable"], false);
    let verdicts = body["verdicts"].as_array().expect("verdicts");
    assert_eq!(verdicts.len(), 4);
    let rentals = verdicts
        .iter()
        .find(|v| v["asset"] == "rentals-db")
        .expect("rentals-db");
    assert_eq!(rentals["environment"], "prod");
    assert_eq!(rentals["recoverable"], false);
    assert_eq!(rentals["worst_reason"], STALE_MESSAGE);
    assert_eq!(rentals["reasons"][0]["kind"], "backup.stale");
    assert_eq!(rentals["reasons"][0]["remediation"], STALE_FIX);
    assert_eq!(rentals["rpo_seconds"], 86_400);
    assert!(rentals["backup_age_seconds"].as_i64().expect("age") >= 92 * 86_400);
    assert_eq!(rentals["backup_within_rpo"], false);
    assert_eq!(rentals["restore_seconds"], 2_820.0);
    assert_eq!(rentals["rto_seconds"], 1_800);
    assert_eq!(rentals["restore_within_rto"], false);
    assert!(rentals["since"].as_str().is_some());
    assert_eq!(rentals["url"], "/assets/prod/rentals-db");
    let uploads = verdicts.iter().find(|v| v["asset"] == "uploads").expect("uploads");
    assert_eq!(uploads["recoverable"], true);
    assert_eq!(uploads["backup_within_rpo"], true);
    assert_eq!(uploads["restore_within_rto"], true);

    let (status, body) = api(server, "/api/v1/verdicts?environment=staging").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["recoverable"], true);
    assert_eq!(body["verdicts"].as_array().expect("verdicts").len(), 1);

    // Environments and the organisation.
    let (status, body) = api(server, "/api/v1/environments").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["recoverable"], false);
    assert_eq!(body["assets"], 4);
    assert_eq!(body["not_recoverable"], 2);
    let environments = body["environments"].as_array().expect("environments");
    assert_eq!(environments.len(), 2);
    assert_eq!(environments[0]["environment"], "prod");
    assert_eq!(environments[0]["recoverable"], false);
    assert_eq!(environments[0]["not_recoverable"], 2);
    assert_eq!(environments[1]["environment"], "staging");
    assert_eq!(environments[1]["recoverable"], true);

    // Assets: the test and the verdict together.
    let (status, body) = api(server, "/api/v1/assets").await;
    assert_eq!(status, StatusCode::OK);
    let assets = body["assets"].as_array().expect("assets");
    assert_eq!(assets.len(), 4);
    let rentals = assets.iter().find(|a| a["asset"] == "rentals-db").expect("rentals-db");
    assert_eq!(rentals["schedule"], "0 */6 * * *");
    assert_eq!(rentals["recoverable"], false);
    assert_eq!(rentals["rto_seconds"], 1_800);

    // Runs.
    let (status, body) = api(server, "/api/v1/runs?asset=rentals-db&limit=5").await;
    assert_eq!(status, StatusCode::OK);
    let runs = body["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["state"], "queued");
    assert_eq!(runs[0]["asset"], "rentals-db");

    // Findings: the verdict's reasons plus the latest posture scan, worst first, with remediation.
    let (status, body) = api(server, "/api/v1/findings?environment=prod").await;
    assert_eq!(status, StatusCode::OK);
    let findings = body["findings"].as_array().expect("findings");
    let kinds: Vec<&str> = findings.iter().filter_map(|f| f["kind"].as_str()).collect();
    assert_eq!(kinds.len(), 3, "{kinds:?}");
    assert!(kinds.contains(&"backup.stale") && kinds.contains(&"restore.timed_out"));
    assert_eq!(kinds[2], "credential.exposed", "high after the criticals");
    let exposed = &findings[2];
    assert_eq!(exposed["asset"], "rentals-db");
    assert_eq!(exposed["message"], EXPOSED_MESSAGE);
    assert_eq!(exposed["remediation"], EXPOSED_FIX);
    assert_eq!(exposed["evidence"]["line"], 3);
    let (_, staging) = api(server, "/api/v1/findings?environment=staging").await;
    assert_eq!(staging["findings"].as_array().expect("findings").len(), 0);

    // Agents.
    let (status, body) = api(server, "/api/v1/agents").await;
    assert_eq!(status, StatusCode::OK);
    let agents = body["agents"].as_array().expect("agents");
    assert_eq!(agents.len(), 2);
    assert_eq!(agents[0]["name"], "prod-1");
    assert_eq!(agents[0]["connected"], true);
    assert_eq!(agents[1]["connected"], false);

    // Flips, newest first, limited.
    let (status, body) = api(server, "/api/v1/flips?limit=1").await;
    assert_eq!(status, StatusCode::OK);
    let flips = body["flips"].as_array().expect("flips");
    assert_eq!(flips.len(), 1);
    assert_eq!(flips[0]["asset"], HOSTILE);
    assert_eq!(flips[0]["recoverable"], false);
    let (_, body) = api(server, "/api/v1/flips").await;
    assert_eq!(body["flips"].as_array().expect("flips").len(), 2);

    // Bad queries are 400 with a JSON error.
    for path in [
        "/api/v1/flips?limit=0",
        "/api/v1/flips?limit=100000",
        "/api/v1/runs?limit=ten",
        "/api/v1/runs?limit=-1",
        "/api/v1/verdicts?environment=NOT%20VALID",
        "/api/v1/verdicts?envirnoment=prod",
        "/api/v1/agents?page=2",
    ] {
        let (status, body) = api(server, path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_json_error(&body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_shows_every_asset_with_its_verdict_and_escapes_names() {
    let server = Server::sqlite().await;
    check_status_pages(&server).await;
    server.stop().await;
}

async fn check_status_pages(server: &Server) {
    let session = server.login().await;
    let cookie = Some(session.as_str());
    let response = client()
        .get(server.url("/"))
        .header("cookie", &session)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert!(
        headers["content-type"].to_str().expect("type").starts_with("text/html"),
        "{headers:?}"
    );
    assert!(
        headers["content-security-policy"]
            .to_str()
            .expect("csp")
            .contains("default-src 'none'")
    );
    let html = response.text().await.expect("body");

    assert!(html.contains("<meta name=\"viewport\""));
    assert!(
        !html.contains("<script"),
        "the page has no script, and the hostile name is escaped"
    );
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("<h1>Not recoverable</h1>"), "organisation verdict first");
    assert!(html.contains("2 of 4 assets cannot be recovered right now"));
    // Not-recoverable assets in full: worst reason, meters, findings with remediation.
    assert!(html.contains("rentals-db"));
    assert!(html.contains(&escape(STALE_MESSAGE)));
    assert!(html.contains(&escape(STALE_FIX)), "remediation, escaped");
    assert!(
        html.contains(&escape(EXPOSED_FIX)),
        "posture findings are open findings too"
    );
    assert!(html.contains("class=\"spark\""), "restore-time sparkline");
    assert!(html.contains("class=\"rto\""), "with the RTO line");
    assert!(html.contains("class=\"bar\""), "backup-age bar");
    assert!(html.contains("Give the restore more time &lt;b&gt;or&lt;/b&gt; a faster disk."));
    // Recoverable assets summarised, with links to their pages.
    assert!(html.contains("href=\"/assets/prod/uploads\""));
    assert!(html.contains("href=\"/assets/staging/app-db\""));
    assert!(html.contains(&format!("href=\"{}\"", asset_path("prod", HOSTILE))));
    // Not recoverable environments first.
    let prod = html.find("id=\"env-prod\"").expect("prod section");
    let staging = html.find("id=\"env-staging\"").expect("staging section");
    assert!(prod < staging);
    assert!(html.contains("Recent flips"));

    // The detail page of the hostile asset, through its percent-encoded path.
    let (status, detail) = page(server, cookie, &asset_path("prod", HOSTILE)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!detail.contains("<script"));
    assert!(detail.contains("<h1>&lt;script&gt;alert(1)&lt;/script&gt;</h1>"));
    assert!(detail.contains("timed out"));

    let (status, detail) = page(server, cookie, "/assets/prod/rentals-db").await;
    assert_eq!(status, StatusCode::OK);
    assert!(detail.contains(&escape(STALE_FIX)));
    assert!(detail.contains("Runbook of the last passing restore"));
    assert!(detail.contains("pg_restore --dbname=&quot;${SANDBOX_URL}&quot;"));
    assert!(detail.contains("Recent restore tests"));
    assert!(detail.contains("0 */6 * * *"));

    let (status, missing) = page(server, cookie, "/assets/prod/no-such-asset").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(missing.contains("<html"));
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_probes_answer() {
    let server = Server::sqlite().await;
    record_run("passed", 42.0);
    record_run("failed", 4_000.0);

    let response = client()
        .get(server.url("/metrics"))
        .bearer_auth(&server.token)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("type")
            .starts_with("text/plain")
    );
    let text = response.text().await.expect("body");
    for name in [
        "lifeboat_asset_recoverable{",
        "lifeboat_backup_age_seconds{",
        "lifeboat_restore_seconds{",
        "lifeboat_rto_seconds{",
        "lifeboat_rpo_seconds{",
        "lifeboat_agent_connected{",
        "lifeboat_connected_agents 1",
        "lifeboat_outbox_depth 0",
        "lifeboat_runs_total{outcome=\"passed\"}",
        "lifeboat_restore_duration_seconds_bucket{le=\"60\"}",
        "lifeboat_restore_duration_seconds_count",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    assert!(text.contains("lifeboat_asset_recoverable{environment=\"prod\",asset=\"rentals-db\"} 0"));
    assert!(text.contains("lifeboat_asset_recoverable{environment=\"staging\",asset=\"app-db\"} 1"));

    // The probes need no login.
    let (status, body) = page(&server, None, "/healthz").await;
    assert_eq!((status, body.trim()), (StatusCode::OK, "ok"));
    let (status, _) = page(&server, None, "/readyz").await;
    assert_eq!(status, StatusCode::OK);

    // Not ready once the store stops answering; still alive.
    server.store.close().await;
    let (status, _) = page(&server, None, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, _) = page(&server, None, "/healthz").await;
    assert_eq!(status, StatusCode::OK);
    server.stop().await;
}

/// The status page, asset pages and `/metrics` are closed to strangers: a page answers 401 with
/// a login form a person can use, `/metrics` a bearer challenge. The form opens a session (an
/// HttpOnly, SameSite=Strict cookie, Secure behind HTTPS) that ends with logout or with its
/// token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_needs_a_login_and_the_form_opens_a_session() {
    let server = Server::sqlite().await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");

    for path in ["/", "/assets/prod/rentals-db"] {
        let (status, html) = page(&server, None, path).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert!(html.contains("<form method=\"post\" action=\"/login\">"), "{html}");
        assert!(html.contains(&format!("name=\"next\" value=\"{path}\"")), "{html}");
        assert!(
            !html.contains(STALE_MESSAGE) && !html.contains("Not recoverable"),
            "nothing leaks"
        );
    }
    let metrics = client().get(server.url("/metrics")).send().await.expect("request");
    assert_eq!(metrics.status(), StatusCode::UNAUTHORIZED);
    assert!(metrics.headers().contains_key("www-authenticate"));
    let (status, login) = page(&server, None, "/login").await;
    assert_eq!(status, StatusCode::OK);
    assert!(login.contains("type=\"password\"") && !login.contains("<script"));

    // A wrong token, and a form posted from another site, are refused.
    let post = |body: String, origin: Option<&'static str>| {
        let mut request = no_redirects
            .post(server.url("/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    let wrong = post("token=lbo_wrong&next=%2F".into(), None).await.expect("login");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.text().await.expect("body").contains("not valid"));
    let forged = post(format!("token={}&next=%2F", server.token), Some("https://evil.example"))
        .await
        .expect("login");
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);

    // The right token: back where the visitor wanted to go, with a strict session cookie.
    let origin = server.base.clone();
    let response = no_redirects
        .post(server.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", origin)
        .body(format!("token={}&next=%2Fassets%2Fprod%2Fuploads", server.token))
        .send()
        .await
        .expect("login");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/assets/prod/uploads");
    let set_cookie = response.headers()["set-cookie"].to_str().expect("cookie").to_owned();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"),
        "{set_cookie}"
    );
    assert!(!set_cookie.contains("Secure"), "plain HTTP: {set_cookie}");
    let cookie = set_cookie.split(';').next().expect("pair").to_owned();
    let (status, html) = page(&server, Some(&cookie), "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("2 of 4 assets cannot be recovered right now"));
    assert!(html.contains("action=\"/logout\""), "a logout button");

    // Behind an HTTPS proxy the cookie is Secure.
    let behind_tls = no_redirects
        .post(server.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-forwarded-proto", "https")
        .body(format!("token={}&next=%2F", server.token))
        .send()
        .await
        .expect("login");
    assert!(
        behind_tls.headers()["set-cookie"]
            .to_str()
            .expect("cookie")
            .contains("; Secure")
    );

    // A bearer token works too (Prometheus, scripts).
    let scrape = client()
        .get(server.url("/metrics"))
        .bearer_auth(&server.token)
        .send()
        .await
        .expect("request");
    assert_eq!(scrape.status(), StatusCode::OK);

    // Logout ends the session and clears the cookie.
    let logout = no_redirects
        .post(server.url("/logout"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("logout");
    assert_eq!(logout.status(), StatusCode::SEE_OTHER);
    assert_eq!(logout.headers()["location"], "/login");
    assert!(
        logout.headers()["set-cookie"]
            .to_str()
            .expect("cookie")
            .contains("Max-Age=0")
    );
    let (status, _) = page(&server, Some(&cookie), "/").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A session ends with its token.
    let cookie = server.login().await;
    assert_eq!(page(&server, Some(&cookie), "/").await.0, StatusCode::OK);
    server.store.revoke_operator_token("ci").await.expect("revoke");
    assert_eq!(page(&server, Some(&cookie), "/").await.0, StatusCode::UNAUTHORIZED);
    server.stop().await;
}

/// `public_status = true` opens the status page and `/metrics`, never the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_status_opens_the_pages_but_not_the_api() {
    let server = Server::sqlite_public().await;
    let (status, html) = page(&server, None, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("2 of 4 assets cannot be recovered right now"));
    assert_eq!(page(&server, None, "/assets/prod/rentals-db").await.0, StatusCode::OK);
    assert_eq!(page(&server, None, "/metrics").await.0, StatusCode::OK);
    let api = client()
        .get(server.url("/api/v1/verdicts"))
        .send()
        .await
        .expect("request");
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_and_status_page_work_on_postgres() {
    let server = Server::postgres().await;
    let missing = client()
        .get(server.url("/api/v1/verdicts"))
        .send()
        .await
        .expect("request");
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    check_api_contracts(&server).await;
    check_status_pages(&server).await;
    server.stop().await;
}
