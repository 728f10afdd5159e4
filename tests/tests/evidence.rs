//! The evidence log end to end, against both engines: append results, export a folder, verify
//! it without the database, and catch every kind of tampering; on both engines, two `Store`s on
//! one database (two coordinator replicas) appending at once keep one linear chain.
//!
//! Each test is an `async fn(TestDb)` run once per engine, in module `sqlite` and `postgres`,
//! as in `store.rs` (`both_engines!`).

use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use lifeboat_coordinator::evidence::{self, EVIDENCE_FILE, MANIFEST_FILE, REPORT_FILE, VerifyReport};
use lifeboat_coordinator::store::{EvidenceRecord, GENESIS_HASH, ResultRow, Store, chain_hash};
use lifeboat_shared::findings::{Finding, FindingKind};
use lifeboat_shared::ids::{AgentId, Environment, ResultId};
use lifeboat_shared::protocol::{Outcome, ResultKind, RunResult};
use lifeboat_tests::store_db::TestDb;
use serde_json::{Value, json};
use tempfile::TempDir;

lifeboat_tests::both_engines! {
    restore_results_are_appended_once_in_order,
    export_verifies_and_tampering_is_caught,
    export_since_starts_at_an_anchor_inside_the_chain,
    replicas_appending_at_once_keep_one_chain,
}

// ---------------------------------------------------------------------------------------------
// Fixtures

fn restore(asset: &str, outcome: Outcome) -> RunResult {
    let finished_at = Utc::now();
    let failed = outcome != Outcome::Passed;
    RunResult {
        result_id: ResultId::new(),
        kind: ResultKind::Restore,
        run_id: None,
        asset: asset.to_owned(),
        backup: "nightly".to_owned(),
        recovery_point: "2026-11-01T02:00:00Z".to_owned(),
        outcome,
        started_at: finished_at - Duration::seconds(90),
        finished_at,
        restore_seconds: 81.25,
        rto_seconds: 90.0 + 1.0 / 3.0,
        recovery_point_age_seconds: 7200,
        findings: if failed {
            vec![Finding::new(
                FindingKind::RestoreCheckFailed,
                asset,
                "check <orders> failed: expected 1, got 0",
            )]
        } else {
            Vec::new()
        },
        detail: json!({"recoverable": !failed, "runs": [{
            "backup": "nightly",
            "recovery_point": "2026-11-01T02:00:00Z",
            "runbook": ["pg_restore --dbname=\"${URL}\" nightly/2026-11-01.dump"],
            "checks": [{"name": "orders", "kind": "sql", "passed": !failed, "message": "expected 1, got 0"}],
        }]}),
    }
}

fn posture(asset: &str) -> RunResult {
    RunResult {
        kind: ResultKind::Posture,
        detail: json!({"posture": {}}),
        ..restore(asset, Outcome::Passed)
    }
}

fn rows(results: &[RunResult]) -> Vec<ResultRow> {
    let agent_id = AgentId::new();
    results
        .iter()
        .map(|result| ResultRow {
            agent_id,
            environment: Environment::parse("pocketos-prod").expect("environment"),
            result: result.clone(),
            received_at: Utc::now(),
        })
        .collect()
}

fn epoch() -> DateTime<Utc> {
    DateTime::UNIX_EPOCH
}

/// Asserts `records` are one chain: seq without gaps, each `prev_hash` the hash before, each
/// hash recomputable from its record.
fn assert_linear(records: &[EvidenceRecord], first_prev_hash: &str) {
    let mut prev_hash = first_prev_hash.to_owned();
    let first_seq = records.first().map_or(1, |record| record.seq);
    for (index, record) in records.iter().enumerate() {
        assert_eq!(record.seq, first_seq + index as u64, "seq without gaps");
        assert_eq!(
            record.prev_hash, prev_hash,
            "seq {} links to the record before",
            record.seq
        );
        assert_eq!(
            record.hash,
            chain_hash(&record.prev_hash, &record.record),
            "seq {}",
            record.seq
        );
        prev_hash = record.hash.clone();
    }
}

async fn export(store: &Store, since: DateTime<Utc>) -> TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let summary = evidence::export(store, since, dir.path()).await.expect("export");
    assert!(summary.render().contains("evidence verify"));
    dir
}

/// Copies an export into a fresh folder, to tamper with.
fn copy_export(from: &Path) -> TempDir {
    let to = tempfile::tempdir().expect("temp dir");
    for name in [EVIDENCE_FILE, MANIFEST_FILE, REPORT_FILE] {
        std::fs::copy(from.join(name), to.path().join(name)).expect("copy");
    }
    to
}

fn edit_lines(dir: &Path, edit: impl FnOnce(&mut Vec<String>)) {
    let path = dir.join(EVIDENCE_FILE);
    let text = std::fs::read_to_string(&path).expect("read");
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    edit(&mut lines);
    std::fs::write(&path, lines.iter().map(|line| format!("{line}\n")).collect::<String>()).expect("write");
}

fn verify_fails(dir: &Path) -> VerifyReport {
    let report = evidence::verify(dir).expect("verify runs");
    assert!(!report.verified, "tampering went unnoticed");
    assert!(report.problem.is_some());
    report
}

// ---------------------------------------------------------------------------------------------
// Tests

async fn restore_results_are_appended_once_in_order(db: TestDb) {
    let store = &db.store;
    assert_eq!(store.evidence_head().await.expect("head"), None);

    let first = restore("orders", Outcome::Passed);
    let second = restore("billing", Outcome::Failed);
    let batch = rows(&[first.clone(), posture("orders"), second.clone(), first.clone()]);
    assert_eq!(
        store.append_evidence(&batch).await.expect("append"),
        2,
        "posture and duplicate skipped"
    );
    assert_eq!(
        store.append_evidence(&batch).await.expect("resend"),
        0,
        "a resent batch appends nothing"
    );
    assert_eq!(
        store
            .append_evidence(&rows(&[posture("orders")]))
            .await
            .expect("posture only"),
        0
    );

    let records = store.evidence_since(epoch()).await.expect("read");
    assert_eq!(records.len(), 2);
    assert_linear(&records, GENESIS_HASH);
    assert_eq!(
        records.iter().map(|record| record.result_id).collect::<Vec<_>>(),
        [first.result_id, second.result_id],
        "in result order"
    );
    let head = store.evidence_head().await.expect("head").expect("not empty");
    assert_eq!((head.seq, head.hash.as_str()), (2, records[1].hash.as_str()));

    let record: Value = serde_json::from_str(&records[1].record).expect("record is JSON");
    assert_eq!(record["result_id"], second.result_id.to_string());
    assert_eq!(record["environment"], "pocketos-prod");
    assert_eq!(record["asset"], "billing");
    assert_eq!(record["outcome"], "failed");
    // Floats are kept exactly as written (serde_json's default parser may be off by an ulp, which
    // is why verification hashes the record's bytes rather than a re-serialisation).
    assert!(
        records[1]
            .record
            .contains(&format!("\"rto_seconds\":{}", 90.0 + 1.0 / 3.0))
    );
    assert_eq!(record["findings"][0]["kind"], "restore.check_failed");
    assert!(
        record["findings"][0].get("evidence").is_none(),
        "only what an auditor reads"
    );
    assert_eq!(record["checks"][0]["passed"], false);
    assert_eq!(
        record["runbook"][0],
        "pg_restore --dbname=\"${URL}\" nightly/2026-11-01.dump"
    );
    assert!(
        records[1].record.starts_with("{\"agent_id\":\""),
        "canonical: sorted keys, no whitespace"
    );

    // Appending continues the chain.
    store
        .append_evidence(&rows(&[restore("orders", Outcome::Passed)]))
        .await
        .expect("append");
    let records = store.evidence_since(epoch()).await.expect("read");
    assert_eq!(records.len(), 3);
    assert_linear(&records, GENESIS_HASH);
}

async fn export_verifies_and_tampering_is_caught(db: TestDb) {
    let store = &db.store;
    let results: Vec<RunResult> = (0..6)
        .map(|i| {
            let asset = if i % 2 == 0 { "orders<db>" } else { "billing" };
            restore(asset, if i == 2 { Outcome::Failed } else { Outcome::Passed })
        })
        .collect();
    let mut batch = rows(&results);
    batch.extend(rows(&[posture("orders<db>")]));
    assert_eq!(store.append_evidence(&batch).await.expect("append"), 6);
    store.append_evidence(&batch).await.expect("duplicates appended twice");

    let exported = export(store, epoch()).await;
    let report = evidence::verify(exported.path()).expect("verify");
    assert!(report.verified, "{}", report.render());
    assert_eq!(report.records_checked, 6);
    assert_eq!((report.first_seq, report.last_seq), (Some(1), Some(6)));
    assert_eq!(report.first_prev_hash.as_deref(), Some(GENESIS_HASH));
    let head = store.evidence_head().await.expect("head").expect("not empty");
    assert_eq!(report.last_hash.as_deref(), Some(head.hash.as_str()));
    let json = serde_json::to_value(&report).expect("report serialises");
    assert_eq!(json["verified"], true);

    let html = std::fs::read_to_string(exported.path().join(REPORT_FILE)).expect("report");
    assert!(html.contains("Asset orders&lt;db&gt;"), "asset names are escaped");
    assert!(
        html.contains("check &lt;orders&gt; failed"),
        "finding messages are escaped"
    );
    assert!(!html.contains("<script") && !html.contains("src=") && !html.contains("href="));
    assert!(html.contains(&head.hash));

    // One byte of one record.
    let edited = copy_export(exported.path());
    edit_lines(edited.path(), |lines| {
        assert!(lines[2].contains("\"outcome\":\"failed\""));
        lines[2] = lines[2].replace("\"outcome\":\"failed\"", "\"outcome\":\"passed\"");
    });
    let report = verify_fails(edited.path());
    assert_eq!(report.broken_seq, Some(3), "{}", report.render());
    assert!(report.render().contains("seq 3"));

    // One line removed.
    let removed = copy_export(exported.path());
    edit_lines(removed.path(), |lines| {
        lines.remove(3);
    });
    let report = verify_fails(removed.path());
    assert_eq!(report.broken_seq, Some(4), "{}", report.render());

    // Two lines swapped.
    let reordered = copy_export(exported.path());
    edit_lines(reordered.path(), |lines| lines.swap(1, 2));
    let report = verify_fails(reordered.path());
    assert_eq!(report.broken_seq, Some(2), "{}", report.render());

    // The manifest: count, head, checksum.
    for (field, value) in [
        ("count", json!(5)),
        ("last_hash", json!(GENESIS_HASH)),
        ("evidence_sha256", json!("ab".repeat(32))),
    ] {
        let manifested = copy_export(exported.path());
        let path = manifested.path().join(MANIFEST_FILE);
        let mut manifest: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        manifest[field] = value;
        std::fs::write(&path, manifest.to_string()).expect("write");
        let report = verify_fails(manifested.path());
        assert!(
            report
                .problem
                .as_deref()
                .is_some_and(|problem| problem.contains(MANIFEST_FILE)),
            "{field}"
        );
    }

    // The untouched export still verifies: nothing above wrote to it.
    assert!(evidence::verify(exported.path()).expect("verify").verified);
}

async fn export_since_starts_at_an_anchor_inside_the_chain(db: TestDb) {
    let store = &db.store;
    store
        .append_evidence(&rows(&[
            restore("orders", Outcome::Passed),
            restore("orders", Outcome::Passed),
        ]))
        .await
        .expect("append");
    let before = store.evidence_head().await.expect("head").expect("not empty");
    // recorded_at has millisecond precision: let the clock move on.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let since = Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    store
        .append_evidence(&rows(&[
            restore("orders", Outcome::Failed),
            restore("billing", Outcome::Passed),
        ]))
        .await
        .expect("append");

    let later = store.evidence_since(since).await.expect("read");
    assert_eq!(later.iter().map(|record| record.seq).collect::<Vec<_>>(), [3, 4]);
    assert_linear(&later, &before.hash);

    let exported = export(store, since).await;
    let report = evidence::verify(exported.path()).expect("verify");
    assert!(report.verified, "{}", report.render());
    assert_eq!(report.first_seq, Some(3));
    assert_eq!(
        report.first_prev_hash.as_deref(),
        Some(before.hash.as_str()),
        "anchored at seq 2"
    );

    // Nothing recorded since: an empty export, anchored at the head, verifies.
    let empty = export(store, Utc::now() + Duration::hours(1)).await;
    let report = evidence::verify(empty.path()).expect("verify");
    assert!(report.verified, "{}", report.render());
    assert_eq!(report.records_checked, 0);
    let head = store.evidence_head().await.expect("head").expect("not empty");
    assert_eq!(report.first_prev_hash.as_deref(), Some(head.hash.as_str()));
}

async fn replicas_appending_at_once_keep_one_chain(db: TestDb) {
    const PER_REPLICA: usize = 200;
    const BATCH: usize = 10;
    let replica_a = Store::connect(&db.url).await.expect("replica a");
    let replica_b = Store::connect(&db.url).await.expect("replica b");
    let results_a: Vec<RunResult> = (0..PER_REPLICA).map(|_| restore("orders", Outcome::Passed)).collect();
    let results_b: Vec<RunResult> = (0..PER_REPLICA).map(|_| restore("billing", Outcome::Passed)).collect();

    async fn append_all(store: Store, results: Vec<RunResult>) -> u64 {
        let mut appended = 0;
        for chunk in results.chunks(BATCH) {
            appended += store.append_evidence(&rows(chunk)).await.expect("append");
        }
        appended
    }
    let (appended_a, appended_b) = tokio::join!(
        tokio::spawn(append_all(replica_a.clone(), results_a)),
        tokio::spawn(append_all(replica_b.clone(), results_b)),
    );
    assert_eq!(appended_a.expect("task a"), PER_REPLICA as u64);
    assert_eq!(appended_b.expect("task b"), PER_REPLICA as u64);

    let records = db.store.evidence_since(epoch()).await.expect("read");
    assert_eq!(records.len(), 2 * PER_REPLICA);
    assert_linear(&records, GENESIS_HASH);
    let switches = records.windows(2).filter(|pair| pair[0].asset != pair[1].asset).count();
    tracing::info!(switches, "appends of the two replicas interleaved this often");

    let exported = export(&db.store, epoch()).await;
    let report = evidence::verify(exported.path()).expect("verify");
    assert!(report.verified, "{}", report.render());
    assert_eq!(report.records_checked, 2 * PER_REPLICA as u64);

    replica_a.close().await;
    replica_b.close().await;
}
