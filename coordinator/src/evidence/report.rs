//! `report.html`: the exported evidence for a human reader, in one self-contained file.
//!
//! An auditor opens it offline: the CSS is inline, there is no script and no external asset.
//! It shows, per environment and asset, every run (date, backup and recovery point, outcome,
//! restore time against the RTO, recovery point age against the RPO, failed checks, findings),
//! a summary table, the guard's decisions (who asked to destroy what, and the answer), and the
//! chain's anchor and head with how to verify them. Every piece of text
//! from a record goes through [`escape`]. The report is a reading aid: `evidence.jsonl` and the
//! manifest are what [`super::verify`] checks.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{EVIDENCE_FILE, EvidenceError, MANIFEST_FILE, Manifest};
use crate::store::EvidenceRecord;

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:72rem;\
padding:0 1rem;color:#1b1f24;line-height:1.4}\
h1{font-size:1.6rem}h2{font-size:1.3rem;margin-top:2.2rem;border-bottom:1px solid #ccd}h3{font-size:1.1rem}\
table{border-collapse:collapse;width:100%;margin:.6rem 0 1.2rem;font-size:.9rem}\
th,td{border:1px solid #ccd;padding:.3rem .5rem;text-align:left;vertical-align:top}th{background:#f0f2f5}\
code,.hash{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85em;word-break:break-all}\
.passed{color:#0a6b2c;font-weight:600}.failed{color:#b00020;font-weight:600}.over{color:#b00020}\
.muted{color:#5b6470}ul{margin:.2rem 0;padding-left:1.2rem}dt{font-weight:600}dd{margin:0 0 .6rem 0}\
@media print{body{margin:0;max-width:none}h2{break-before:auto}tr{break-inside:avoid}}";

/// Returns `text` with the five HTML-significant characters escaped, safe in element content
/// and in quoted attribute values.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// One exported run: its place in the chain and its record.
struct Run<'a> {
    seq: u64,
    hash: &'a str,
    record: Value,
}

impl Run<'_> {
    fn text(&self, field: &str) -> &str {
        self.record.get(field).and_then(Value::as_str).unwrap_or("")
    }

    fn number(&self, field: &str) -> Option<f64> {
        self.record.get(field).and_then(Value::as_f64)
    }

    fn objective(&self, field: &str) -> Option<f64> {
        self.record.get("objectives")?.get(field)?.as_f64()
    }

    fn passed(&self) -> bool {
        self.text("outcome") == "passed"
    }

    fn finished_at(&self) -> &str {
        self.text("finished_at")
    }
}

/// Renders the report for `records` (in chain order), exported as `manifest` says.
pub(super) fn render(records: &[EvidenceRecord], manifest: &Manifest) -> Result<String, EvidenceError> {
    let mut by_asset: BTreeMap<(&str, &str), Vec<Run<'_>>> = BTreeMap::new();
    let mut decisions: Vec<Run<'_>> = Vec::new();
    for record in records {
        let parsed: Value = serde_json::from_str(&record.record).map_err(|err| EvidenceError::Corrupt {
            seq: record.seq,
            reason: err.to_string(),
        })?;
        if parsed.get("kind").and_then(Value::as_str) == Some("guard_decision") {
            decisions.push(Run {
                seq: record.seq,
                hash: &record.hash,
                record: parsed,
            });
            continue;
        }
        by_asset
            .entry((record.environment.as_str(), record.asset.as_str()))
            .or_default()
            .push(Run {
                seq: record.seq,
                hash: &record.hash,
                record: parsed,
            });
    }

    let mut html = String::new();
    html.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    html.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    html.push_str("<title>Lifeboat recovery evidence</title>\n");
    let _ = writeln!(html, "<style>{STYLE}</style>\n</head>\n<body>");
    html.push_str("<h1>Lifeboat recovery evidence</h1>\n");
    let _ = writeln!(
        html,
        "<p>Every restore test and guard decision recorded from {} to {}: {} record{} (UTC times). Each run was \
         restored from a real backup into a throw-away sandbox and checked; each record is chained by hash to the \
         one before.</p>",
        escape(&display_time(manifest.since)),
        escape(&display_time(manifest.exported_at)),
        manifest.count,
        if manifest.count == 1 { "" } else { "s" },
    );

    render_summary(&mut html, &by_asset);
    let mut current_environment = None;
    for ((environment, asset), runs) in &by_asset {
        if current_environment != Some(*environment) {
            let _ = writeln!(html, "<h2>Environment {}</h2>", escape(environment));
            current_environment = Some(*environment);
        }
        render_asset(&mut html, asset, runs);
    }
    render_decisions(&mut html, &decisions);
    render_chain(&mut html, manifest);
    html.push_str("</body>\n</html>\n");
    Ok(html)
}

fn render_summary(html: &mut String, by_asset: &BTreeMap<(&str, &str), Vec<Run<'_>>>) {
    html.push_str("<h2>Summary</h2>\n");
    if by_asset.is_empty() {
        html.push_str("<p>No restore test was recorded in this period.</p>\n");
        return;
    }
    html.push_str(
        "<table>\n<thead><tr><th>Environment</th><th>Asset</th><th>Runs</th><th>Passed</th><th>Failed</th>\
         <th>Last pass</th><th>Latest outcome</th></tr></thead>\n<tbody>\n",
    );
    for ((environment, asset), runs) in by_asset {
        let passes = runs.iter().filter(|run| run.passed()).count();
        let last_pass = runs
            .iter()
            .filter(|run| run.passed())
            .map(Run::finished_at)
            .max()
            .map_or_else(
                || "<span class=\"failed\">never</span>".to_owned(),
                |at| escape(&display_text_time(at)),
            );
        let latest = runs
            .iter()
            .max_by(|a, b| a.finished_at().cmp(b.finished_at()).then(a.seq.cmp(&b.seq)));
        let latest = latest.map_or_else(String::new, outcome_badge);
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{passes}</td><td>{}</td><td>{last_pass}</td><td>{latest}</td></tr>",
            escape(environment),
            escape(asset),
            runs.len(),
            runs.len() - passes,
        );
    }
    html.push_str("</tbody>\n</table>\n");
}

fn outcome_badge(run: &Run<'_>) -> String {
    let class = if run.passed() { "passed" } else { "failed" };
    format!("<span class=\"{class}\">{}</span>", escape(run.text("outcome")))
}

fn render_asset(html: &mut String, asset: &str, runs: &[Run<'_>]) {
    let _ = writeln!(html, "<h3>Asset {}</h3>", escape(asset));
    html.push_str(
        "<table>\n<thead><tr><th>Finished</th><th>Backup / recovery point</th><th>Outcome</th>\
         <th>Restore time vs RTO</th><th>Recovery point age vs RPO</th><th>Failed checks and findings</th>\
         <th>Seq / hash</th></tr></thead>\n<tbody>\n",
    );
    for run in runs {
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{}<br><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}<br><span class=\"hash\" title=\"{}\">{}…</span></td></tr>",
            escape(&display_text_time(run.finished_at())),
            escape(run.text("backup")),
            escape(run.text("recovery_point")),
            outcome_badge(run),
            restore_cell(run),
            age_cell(run),
            problems_cell(run),
            run.seq,
            escape(run.hash),
            escape(run.hash.get(..16).unwrap_or(run.hash)),
        );
    }
    html.push_str("</tbody>\n</table>\n");
}

/// Restore time and measured RTO, against the RTO objective when the test plan was known.
fn restore_cell(run: &Run<'_>) -> String {
    let restore = run.number("restore_seconds").map_or_else(|| "—".to_owned(), seconds);
    let measured = run.number("rto_seconds");
    let mut cell = format!("restore {}", escape(&restore));
    if let Some(measured) = measured {
        let _ = write!(cell, "<br>until checks passed {}", escape(&seconds(measured)));
    }
    match (measured, run.objective("rto_seconds")) {
        (Some(measured), Some(objective)) => {
            let class = if measured <= objective { "muted" } else { "over" };
            let _ = write!(
                cell,
                "<br><span class=\"{class}\">RTO {}</span>",
                escape(&seconds(objective))
            );
        }
        _ => cell.push_str("<br><span class=\"muted\">RTO not recorded</span>"),
    }
    cell
}

/// Recovery point age against the RPO, when the test plan was known.
fn age_cell(run: &Run<'_>) -> String {
    let Some(age) = run.number("recovery_point_age_seconds") else {
        return "—".to_owned();
    };
    let mut cell = escape(&seconds(age));
    match run.objective("rpo_seconds") {
        Some(objective) => {
            let class = if age <= objective { "muted" } else { "over" };
            let _ = write!(
                cell,
                "<br><span class=\"{class}\">RPO {}</span>",
                escape(&seconds(objective))
            );
        }
        None => cell.push_str("<br><span class=\"muted\">RPO not recorded</span>"),
    }
    cell
}

fn problems_cell(run: &Run<'_>) -> String {
    let mut items = Vec::new();
    for check in run.record.get("checks").and_then(Value::as_array).into_iter().flatten() {
        if check.get("passed").and_then(Value::as_bool) == Some(false) {
            let name = check.get("name").and_then(Value::as_str).unwrap_or("check");
            let message = check.get("message").and_then(Value::as_str).unwrap_or("");
            items.push(format!(
                "<li><span class=\"failed\">check failed</span> {}: {}</li>",
                escape(name),
                escape(message)
            ));
        }
    }
    for finding in run
        .record
        .get("findings")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let field = |name: &str| finding.get(name).and_then(Value::as_str).unwrap_or("").to_owned();
        items.push(format!(
            "<li>[{}] <code>{}</code> {}: {}</li>",
            escape(&field("severity")),
            escape(&field("kind")),
            escape(&field("subject")),
            escape(&field("message"))
        ));
    }
    if items.is_empty() {
        return "<span class=\"muted\">none</span>".to_owned();
    }
    format!("<ul>{}</ul>", items.concat())
}

/// The guard's answers to "may I destroy this now?": who asked, what, allowed or refused, why.
fn render_decisions(html: &mut String, decisions: &[Run<'_>]) {
    if decisions.is_empty() {
        return;
    }
    html.push_str(
        "<h2>Guard decisions</h2>\n<table>\n<thead><tr><th>Decided</th><th>Environment</th><th>Who asked</th>\
         <th>What</th><th>Answer</th><th>Why</th><th>Seq / hash</th></tr></thead>\n<tbody>\n",
    );
    for decision in decisions {
        let record = &decision.record;
        let resource = &record["resource"];
        let what = format!(
            "{} {} {} {}",
            decision.text("operation"),
            resource["provider"].as_str().unwrap_or(""),
            resource["kind"].as_str().unwrap_or(""),
            resource["id"].as_str().unwrap_or("")
        );
        let allowed = record["allowed"].as_bool() == Some(true);
        let reasons: Vec<String> = record["reasons"]
            .as_array()
            .map(|reasons| {
                reasons
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|reason| format!("<li>{}</li>", escape(reason)))
                    .collect()
            })
            .unwrap_or_default();
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{} ({})</td><td>{}</td><td><span class=\"{}\">{}</span></td>\
             <td><ul>{}</ul></td><td>{}<br><span class=\"hash\" title=\"{}\">{}…</span></td></tr>",
            escape(&display_text_time(decision.text("decided_at"))),
            escape(decision.text("environment")),
            escape(decision.text("caller")),
            escape(decision.text("surface")),
            escape(&what),
            if allowed { "passed" } else { "failed" },
            if allowed { "allowed" } else { "refused" },
            reasons.concat(),
            decision.seq,
            escape(decision.hash),
            escape(decision.hash.get(..16).unwrap_or(decision.hash)),
        );
    }
    html.push_str("</tbody>\n</table>\n");
}

fn render_chain(html: &mut String, manifest: &Manifest) {
    html.push_str("<h2>Hash chain</h2>\n<dl>\n");
    let range = match (manifest.first_seq, manifest.last_seq) {
        (Some(first), Some(last)) => format!("seq {first} to {last} ({} records)", manifest.count),
        _ => "no records".to_owned(),
    };
    let _ = writeln!(html, "<dt>Exported</dt><dd>{}</dd>", escape(&range));
    let _ = writeln!(
        html,
        "<dt>Anchor (prev_hash of the first record)</dt><dd class=\"hash\">{}</dd>",
        escape(&manifest.first_prev_hash)
    );
    let _ = writeln!(
        html,
        "<dt>Head (hash of the last record)</dt><dd class=\"hash\">{}</dd>",
        escape(&manifest.last_hash)
    );
    let _ = writeln!(
        html,
        "<dt>SHA-256 of {EVIDENCE_FILE}</dt><dd class=\"hash\">{}</dd>",
        escape(&manifest.evidence_sha256)
    );
    html.push_str("</dl>\n<h3>How to verify</h3>\n<ol>\n");
    let _ = writeln!(
        html,
        "<li>Run <code>lifeboat-coordinator evidence verify DIR</code> on this folder. It needs no database and \
         reports the first record where the chain breaks.</li>"
    );
    let _ = writeln!(
        html,
        "<li>Or by hand: each line of <code>{EVIDENCE_FILE}</code> holds <code>seq</code>, <code>prev_hash</code>, \
         <code>hash</code> and <code>record</code>. With <code>record</code> taken byte for byte as it appears in \
         the line, <code>hash</code> must equal the hex SHA-256 of <code>prev_hash</code>, a newline, and \
         <code>record</code>. The first <code>prev_hash</code> is the anchor above; every other one is the \
         <code>hash</code> of the line before; <code>seq</code> counts up by one.</li>"
    );
    let _ = writeln!(
        html,
        "<li>The anchor must equal the head of the previous export (when that one ended right before this one \
         started; the first record ever has 64 zeros), and the head must appear in the coordinator's chain or in a \
         later export: <code>{MANIFEST_FILE}</code> is not signed, so these comparisons with another copy are \
         what prove the whole folder was not rewritten.</li>"
    );
    html.push_str("</ol>\n");
}

fn display_time(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// Shows a record's RFC 3339 time as `2026-11-03 02:15 UTC`, or as written if it does not parse.
fn display_text_time(text: &str) -> String {
    DateTime::parse_from_rfc3339(text).map_or_else(|_| text.to_owned(), |time| display_time(time.with_timezone(&Utc)))
}

/// Formats a duration for people: `42.1 s`, `12 min 5 s`, `3 h 20 min`, `4 d 6 h`.
fn seconds(value: f64) -> String {
    if !value.is_finite() {
        return "—".to_owned();
    }
    if value < 60.0 {
        return format!("{value:.1} s");
    }
    // Whole seconds from here on; the fraction does not matter at this scale.
    let total = value.round() as u64;
    let (days, hours, minutes, secs) = (total / 86_400, total / 3_600 % 24, total / 60 % 60, total % 60);
    if days > 0 {
        format!("{days} d {hours} h")
    } else if hours > 0 {
        format!("{hours} h {minutes} min")
    } else {
        format!("{minutes} min {secs} s")
    }
}

#[cfg(test)]
mod tests {
    use lifeboat_shared::ids::{Environment, ResultId};
    use serde_json::json;

    use super::*;
    use crate::store::{GENESIS_HASH, canonical_json, chain_hash};

    #[test]
    fn escape_covers_every_html_significant_character() {
        assert_eq!(escape("a<b>&\"c\"'d'"), "a&lt;b&gt;&amp;&quot;c&quot;&#39;d&#39;");
        assert_eq!(escape("plain text é"), "plain text é");
        assert_eq!(escape("&amp;"), "&amp;amp;");
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(seconds(12.34), "12.3 s");
        assert_eq!(seconds(725.0), "12 min 5 s");
        assert_eq!(seconds(12_000.0), "3 h 20 min");
        assert_eq!(seconds(367_200.0), "4 d 6 h");
    }

    #[test]
    fn record_text_is_escaped_and_nothing_is_loaded_from_elsewhere() {
        let hostile = "<script>alert('x')</script>";
        let record = canonical_json(&json!({
            "environment": "prod", "asset": "orders<db>", "outcome": "failed",
            "backup": hostile, "recovery_point": "rp\"1", "finished_at": "2026-11-03T02:19:30.500Z",
            "restore_seconds": 4000.0, "rto_seconds": 4100.0, "recovery_point_age_seconds": 7200,
            "objectives": {"rpo_seconds": 3600, "rto_seconds": 3600},
            "checks": [{"name": "orders & items", "kind": "sql", "passed": false, "message": hostile}],
            "findings": [{"kind": "restore.check_failed", "severity": "critical", "subject": "orders",
                          "message": "a < b"}],
        }));
        let hash = chain_hash(GENESIS_HASH, &record);
        let records = [EvidenceRecord {
            seq: 1,
            recorded_at: Utc::now(),
            environment: Environment::parse("prod").expect("environment"),
            asset: "orders<db>".to_owned(),
            result_id: ResultId::new(),
            record,
            prev_hash: GENESIS_HASH.to_owned(),
            hash: hash.clone(),
        }];
        let manifest = Manifest {
            format: "lifeboat-evidence/1".to_owned(),
            first_seq: Some(1),
            first_prev_hash: GENESIS_HASH.to_owned(),
            last_seq: Some(1),
            last_hash: hash.clone(),
            count: 1,
            exported_at: Utc::now(),
            since: Utc::now(),
            evidence_sha256: "00".repeat(32),
        };
        let html = render(&records, &manifest).expect("render");
        assert!(!html.contains("<script"), "no script, hostile or not");
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
        assert!(html.contains("Asset orders&lt;db&gt;"));
        assert!(html.contains("orders &amp; items"));
        assert!(html.contains("a &lt; b"));
        assert!(html.contains(&hash), "the head hash is shown");
        assert!(
            html.contains("<span class=\"over\">RPO 1 h 0 min</span>"),
            "age over the RPO is marked"
        );
        assert!(
            html.contains("<span class=\"over\">RTO 1 h 0 min</span>"),
            "time over the RTO is marked"
        );
        assert!(!html.contains("src=") && !html.contains("href=") && !html.contains("@import"));
    }
}
