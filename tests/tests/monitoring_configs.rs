//! The Prometheus rules and the Grafana dashboard shipped in deploy/ parse, have the shape their
//! consumers need, and name only metrics a real coordinator's `/metrics` exposes — so renaming a
//! metric without updating them fails here, not in production on the bad day.

mod http_fixture;

use std::collections::BTreeSet;
use std::path::PathBuf;

use http_fixture::Server;
use lifeboat_coordinator::http::record_run;
use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;

fn deploy_file(path: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy").join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()))
}

/// Every `lifeboat_…` identifier in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("lifeboat_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

fn rule_exprs() -> Vec<(String, String)> {
    let rules: Yaml = serde_yaml_ng::from_str(&deploy_file("prometheus/lifeboat-rules.yml")).expect("rules are YAML");
    let groups = rules["groups"].as_sequence().expect("groups");
    assert!(!groups.is_empty());
    let mut exprs = Vec::new();
    for group in groups {
        assert!(group["name"].as_str().is_some(), "every group has a name");
        for rule in group["rules"].as_sequence().expect("rules") {
            let alert = rule["alert"].as_str().expect("every rule is an alert").to_owned();
            let expr = rule["expr"].as_str().expect("every rule has an expr").to_owned();
            assert!(rule["labels"]["severity"].as_str().is_some(), "{alert} has a severity");
            assert!(
                rule["annotations"]["summary"].as_str().is_some(),
                "{alert} has a summary"
            );
            exprs.push((alert, expr));
        }
    }
    exprs
}

fn dashboard_exprs() -> Vec<String> {
    let dashboard: Json =
        serde_json::from_str(&deploy_file("grafana/lifeboat-dashboard.json")).expect("dashboard is JSON");
    assert!(dashboard["title"].as_str().is_some());
    assert!(dashboard["uid"].as_str().is_some());
    let panels = dashboard["panels"].as_array().expect("panels");
    let ids: BTreeSet<i64> = panels.iter().filter_map(|panel| panel["id"].as_i64()).collect();
    assert_eq!(ids.len(), panels.len(), "panel ids are present and unique");
    let mut exprs = Vec::new();
    for panel in panels {
        let title = panel["title"].as_str().expect("panel title");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title} has a query");
        for target in targets {
            exprs.push(target["expr"].as_str().expect("expr").to_owned());
        }
    }
    exprs
}

#[test]
fn rules_cover_the_promised_alerts() {
    let alerts: BTreeSet<String> = rule_exprs().into_iter().map(|(alert, _)| alert).collect();
    for expected in [
        "LifeboatAssetNotRecoverable",
        "LifeboatAgentDisconnected",
        "LifeboatOutboxGrowing",
        "LifeboatRestoreSlowerThanRto",
    ] {
        assert!(alerts.contains(expected), "{expected} missing: {alerts:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_and_dashboard_name_only_exposed_metrics() {
    let server = Server::sqlite().await;
    record_run("passed", 30.0);
    let scrape = reqwest::Client::new()
        .get(server.url("/metrics"))
        .bearer_auth(&server.token)
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body");
    let exposed = metric_names(&scrape);

    let mut referenced = BTreeSet::new();
    for (_, expr) in rule_exprs() {
        referenced.extend(metric_names(&expr));
    }
    for expr in dashboard_exprs() {
        referenced.extend(metric_names(&expr));
    }
    assert!(referenced.len() >= 8, "{referenced:?}");
    let missing: Vec<&String> = referenced.difference(&exposed).collect();
    assert!(missing.is_empty(), "not exposed by /metrics: {missing:?}\n{scrape}");
    server.stop().await;
}
