//! Found credentials are never used: `lifeboat-agent scan` over a tree holding
//! working PostgreSQL URLs — in an app's config and in vendored code — reports them by
//! fingerprint and preview with "scope unknown", and the server they name, which logs every
//! connection, sees no attempt at all. With a config, the credentials it declares for the host
//! of a declared asset are still analysed live (read-only), and only those.

use std::path::Path;

use lifeboat_tests::agent_check::agent_config;
use lifeboat_tests::postgres::PgCluster;
use lifeboat_tests::processes;
use serde_json::Value;

/// The password of the role whose URL lies in the scanned tree: it works, so a login would succeed.
const FOUND_PASSWORD: &str = "found-Pw-8d2e1c";
/// The password of the role a config declares.
const DECLARED_PASSWORD: &str = "declared-Pw-41b7";

/// A cluster that logs every connection, with a role `intruder` (found) and `auditor`
/// (declared), both able to log in.
async fn connection_logging_cluster() -> PgCluster {
    let cluster = PgCluster::start().await.expect("cluster");
    for sql in [
        format!("CREATE ROLE intruder LOGIN PASSWORD '{FOUND_PASSWORD}'"),
        format!("CREATE ROLE vendored LOGIN PASSWORD '{FOUND_PASSWORD}'"),
        format!("CREATE ROLE auditor LOGIN PASSWORD '{DECLARED_PASSWORD}'"),
        "ALTER SYSTEM SET log_connections = on".to_owned(),
        "SELECT pg_reload_conf()".to_owned(),
    ] {
        cluster.psql("postgres", &sql).await.expect(&sql);
    }
    cluster
}

/// A tree with a found URL in an app's config and another in vendored code.
fn tree_with_found_urls(dir: &Path, port: u16) -> std::path::PathBuf {
    let tree = dir.join("srv");
    let config = tree.join("app/config");
    let vendored = tree.join("app/vendor/github.com/acme/dbkit");
    std::fs::create_dir_all(&config).expect("mkdir");
    std::fs::create_dir_all(&vendored).expect("mkdir");
    std::fs::write(
        config.join("database.yml"),
        format!("production:\n  url: postgres://intruder:{FOUND_PASSWORD}@127.0.0.1:{port}/postgres\n"),
    )
    .expect("write");
    std::fs::write(
        vendored.join("README.md"),
        format!("Try it: `dbkit --url postgresql://vendored:{FOUND_PASSWORD}@127.0.0.1:{port}/postgres`\n"),
    )
    .expect("write");
    tree
}

/// What the server logged from byte `from` on.
fn log_since(cluster: &PgCluster, from: usize) -> String {
    let log = std::fs::read_to_string(cluster.log_path()).expect("server log");
    log.get(from..).unwrap_or_default().to_owned()
}

fn log_len(cluster: &PgCluster) -> usize {
    std::fs::metadata(cluster.log_path()).map_or(0, |metadata| metadata.len() as usize)
}

async fn scan(args: &[&str]) -> Value {
    let mut full = vec!["scan", "--output", "json"];
    full.extend_from_slice(args);
    let (code, stdout, stderr) = processes::run("lifeboat-agent", &full).await.expect("run scan");
    assert!(code == 0 || code == 1, "scan exited {code}: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|err| panic!("scan output is not JSON ({err}): {stdout}\n{stderr}"))
}

fn credentials(output: &Value) -> &[Value] {
    output["credentials"].as_array().map(Vec::as_slice).unwrap_or_default()
}

/// The credential whose preview names `user`.
fn credential_of<'a>(output: &'a Value, user: &str) -> &'a Value {
    credentials(output)
        .iter()
        .find(|credential| {
            credential["preview"]
                .as_str()
                .is_some_and(|preview| preview.contains(&format!("//{user}:")))
        })
        .unwrap_or_else(|| panic!("no credential of {user} in {output:#}"))
}

fn assert_found_but_unused(output: &Value, user: &str) {
    let credential = credential_of(output, user);
    assert!(
        credential["fingerprint"]
            .as_str()
            .is_some_and(|fp| fp.starts_with("fp:")),
        "{credential:#}"
    );
    assert!(
        credential["analysis"]
            .as_str()
            .is_some_and(|analysis| analysis.contains("scope unknown") && analysis.contains("[[credential]]")),
        "{credential:#}"
    );
    assert_eq!(credential["capabilities"], serde_json::json!([]), "{credential:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_reports_found_postgres_urls_without_ever_logging_in() {
    let cluster = connection_logging_cluster().await;
    let dir = tempfile::tempdir().expect("dir");
    let tree = tree_with_found_urls(dir.path(), cluster.port());
    let before = log_len(&cluster);

    let output = scan(&[&tree.display().to_string()]).await;

    for user in ["intruder", "vendored"] {
        assert_found_but_unused(&output, user);
    }
    let everything = output.to_string();
    assert!(!everything.contains(FOUND_PASSWORD), "{everything}");
    assert!(
        output["findings"]
            .as_array()
            .is_some_and(|findings| findings.iter().any(|finding| finding["kind"] == "credential.exposed")),
        "{output:#}"
    );
    let log = log_since(&cluster, before);
    assert!(!log.contains("connection received"), "the scan connected:\n{log}");
    assert!(!log.contains("intruder") && !log.contains("vendored"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_config_only_declared_credentials_for_declared_hosts_are_analysed_live() {
    let cluster = connection_logging_cluster().await;
    let dir = tempfile::tempdir().expect("dir");
    let tree = tree_with_found_urls(dir.path(), cluster.port());
    let port = cluster.port();
    let config = agent_config(
        dir.path(),
        &format!(
            r#"
[[asset]]
name = "rentals-db"
kind = "postgres"
url = "{asset_url}"

[[credential]]
name = "reporting"
kind = "postgres"
purpose = "read reports"
value = "postgres://auditor:{DECLARED_PASSWORD}@127.0.0.1:{port}/postgres"

[[credential]]
name = "elsewhere"
kind = "postgres"
purpose = "read reports"
value = "postgres://auditor:{DECLARED_PASSWORD}@127.0.0.2:{port}/postgres"

[scan]
paths = ["{tree}"]
"#,
            asset_url = cluster.url("postgres"),
            tree = tree.display(),
        ),
    );
    let before = log_len(&cluster);

    let output = scan(&["--config", &config.display().to_string()]).await;

    for user in ["intruder", "vendored"] {
        assert_found_but_unused(&output, user);
    }
    let named = |name: &str| {
        credentials(&output)
            .iter()
            .find(|credential| credential["name"] == name)
            .unwrap_or_else(|| panic!("no credential {name} in {output:#}"))
            .clone()
    };
    let declared = named("reporting");
    assert!(
        declared["analysis"]
            .as_str()
            .is_some_and(|analysis| analysis.starts_with("live catalogue of role auditor")),
        "{declared:#}"
    );
    let elsewhere = named("elsewhere");
    assert!(
        elsewhere["analysis"]
            .as_str()
            .is_some_and(|analysis| analysis.contains("127.0.0.2 is not the host of a declared asset")),
        "{elsewhere:#}"
    );
    let everything = output.to_string();
    assert!(!everything.contains(FOUND_PASSWORD) && !everything.contains(DECLARED_PASSWORD));

    let log = log_since(&cluster, before);
    assert!(log.contains("connection authorized: user=auditor"), "{log}");
    assert!(!log.contains("intruder") && !log.contains("vendored"), "{log}");
}
