//! The guard end to end: "may I destroy this now?" over a real store (both engines) — refused
//! while rentals-db's only fresh backups are on the volume, allowed after the fixes; every
//! decision recorded with its evidence record (the exported chain still verifies) and a refusal's
//! `guard.refused` ticket in the outbox; unknown resources per the environment's policy. Then the
//! surfaces of a running coordinator: `guard check` (exit codes, JSON), `POST
//! /api/v1/guard/check` named by the operator token, and the "Guard decisions" sections of the
//! status page and the asset page.

use std::path::Path;

use chrono::{Duration, Utc};
use lifeboat_coordinator::config::Config;
use lifeboat_coordinator::guard::resources::{Operation, Resource};
use lifeboat_coordinator::guard::{Caller, CheckRequest, Guard, Surface};
use lifeboat_shared::ids::Environment;
use lifeboat_tests::both_engines;
use lifeboat_tests::guard_world::{ASSET, ENV, VOLUME, apply_fixes, seed_incident};
use lifeboat_tests::store_db::TestDb;

fn config(dir: &Path, extra: &str) -> Config {
    let text = format!(
        "listen = \"127.0.0.1:7443\"\ndata_dir = \"{}\"\nserver_names = [\"127.0.0.1\"]\n\
         [alerts]\npublic_url = \"https://lifeboat.example\"\n\
         [[channel]]\nname = \"tickets\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/hook\"\nsecret = \"s\"\n\
         [[route]]\nchannels = [\"tickets\"]\nmin_severity = \"high\"\n{extra}",
        dir.display()
    );
    Config::parse(&dir.join("coordinator.toml"), &text).expect("config")
}

fn volume_delete(id: &str) -> CheckRequest {
    CheckRequest {
        environment: Environment::parse(ENV).expect("env"),
        resource: Resource::parse("railway", &format!("volume:{id}")).expect("resource"),
        operation: Operation::Delete,
        action: Some("volumeDelete".into()),
    }
}

fn agent_caller() -> Caller {
    Caller {
        name: "ai-coding-agent".into(),
        surface: Surface::Api,
    }
}

async fn the_guard_refuses_until_the_fixes_and_records_every_decision(db: TestDb) {
    let dir = tempfile::tempdir().expect("dir");
    let store = db.store.clone();
    let agent = seed_incident(&store).await;
    let guard = Guard::new(store.clone(), &config(dir.path(), ""));

    let refused = guard
        .check(&volume_delete(VOLUME), &agent_caller())
        .await
        .expect("decide");
    let decision = &refused.decision;
    assert!(!decision.allowed, "{decision:?}");
    let reasons = decision.reasons.join("\n");
    assert!(
        reasons.contains(
            "rentals-db: its only backups within its RPO that passed a restore test are on railway volume vol-7f3a; \
             the newest backup elsewhere is 92 days old"
        ),
        "{reasons}"
    );
    assert!(
        reasons.contains("rentals-db is NOT RECOVERABLE: The newest recoverable backup"),
        "{reasons}"
    );
    assert_eq!(decision.assets.len(), 1, "analytics-db lives on another volume");
    assert_eq!(decision.assets[0].backups_on_resource, ["rentals-db-volume"]);

    // On record: the decision, the asset it weighed, a ticket.
    let recorded = store.guard_decisions(10).await.expect("decisions");
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].caller, "ai-coding-agent");
    assert!(!recorded[0].allowed);
    assert_eq!(
        store.guard_decisions_of(ENV, ASSET, 10).await.expect("of asset").len(),
        1
    );
    let now = Utc::now();
    let messages = store
        .claim_messages("test", now, now + Duration::minutes(1), 10)
        .await
        .expect("outbox");
    assert_eq!(messages.len(), 1, "one ticket to the one route's channel");
    let payload = &messages[0].payload;
    assert_eq!(payload["reasons"][0]["kind"], "guard.refused");
    assert_eq!(payload["reasons"][0]["severity"], "high");
    let summary = payload["summary"].as_str().expect("summary");
    assert!(
        summary.starts_with("destructive call refused: volumeDelete of railway volume vol-7f3a by ai-coding-agent"),
        "{summary}"
    );
    assert_eq!(
        payload["status_url"],
        "https://lifeboat.example/assets/pocketos-prod/rentals-db"
    );

    apply_fixes(&store, agent).await;
    let allowed = guard
        .check(&volume_delete(VOLUME), &agent_caller())
        .await
        .expect("decide");
    assert!(allowed.decision.allowed, "{:?}", allowed.decision.reasons);
    let point = allowed.decision.assets[0].safe_point.as_ref().expect("safe point");
    assert_eq!(point.backup, "rentals-db-offsite");

    // Unknown resources: refused by default, allowed where the environment says so.
    let unknown = guard
        .check(&volume_delete("vol-unknown"), &agent_caller())
        .await
        .expect("decide");
    assert!(!unknown.decision.allowed);
    assert!(unknown.decision.reasons[0].contains("not known to Lifeboat"));
    let lenient = Guard::new(
        store.clone(),
        &config(
            dir.path(),
            "[guard.environments.pocketos-prod]\nunknown_resources = \"allow\"\n",
        ),
    );
    assert!(
        lenient
            .check(&volume_delete("vol-unknown"), &agent_caller())
            .await
            .expect("decide")
            .decision
            .allowed
    );

    // Every decision is in the evidence chain, and the exported chain verifies.
    let out = dir.path().join("evidence");
    let summary = lifeboat_coordinator::evidence::export(&store, Utc::now() - Duration::hours(1), &out)
        .await
        .expect("export");
    assert!(summary.count >= 4, "{summary:?}");
    let lines = std::fs::read_to_string(out.join("evidence.jsonl")).expect("lines");
    let decisions: Vec<serde_json::Value> = lines
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("line"))
        .filter(|line| line["record"]["kind"] == "guard_decision")
        .collect();
    assert_eq!(decisions.len(), 4);
    assert_eq!(decisions[0]["record"]["caller"], "ai-coding-agent");
    assert_eq!(decisions[0]["record"]["allowed"], false);
    assert_eq!(decisions[1]["record"]["allowed"], true);
    let verified = lifeboat_coordinator::evidence::verify(&out).expect("verify");
    assert!(verified.verified, "{verified:?}");
    let report = std::fs::read_to_string(out.join("report.html")).expect("report");
    assert!(
        report.contains("Guard decisions"),
        "the report lists the decisions apart from the runs"
    );
}

both_engines! { the_guard_refuses_until_the_fixes_and_records_every_decision }
