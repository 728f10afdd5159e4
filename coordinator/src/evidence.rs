//! Exporting the evidence log for auditors, and verifying an export without the database.
//!
//! `evidence export --since 90d --out DIR` writes three files:
//!
//! - `evidence.jsonl`: one line per record, in chain order: `seq`, `recorded_at`, `environment`,
//!   `asset`, `record` (the hashed canonical JSON, byte for byte), `prev_hash`, `hash`;
//! - `manifest.json`: where the exported stretch of the chain starts (`first_seq` and its
//!   `first_prev_hash`, the anchor) and ends (`last_seq`, `last_hash`), how many records it
//!   holds, when and from when it was exported, and the SHA-256 of `evidence.jsonl`;
//! - `report.html`: the same runs for a human, self-contained (inline CSS, no script, no
//!   external asset), with the anchor and head hashes and how to check them.
//!
//! `evidence verify DIR` recomputes every hash from the anchor ([`verify`]), so an edited,
//! removed, reordered or inserted record, or an edited manifest, is reported with the first seq
//! where the chain breaks. The manifest is not signed: someone who rewrites the whole export
//! consistently is caught only by comparing its hashes with another copy (a previous export's
//! head, or the coordinator's current chain), which the report explains.

mod report;

use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::store::{EvidenceRecord, GENESIS_HASH, Store, StoreError, chain_hash};

/// The records, one JSON object per line.
pub const EVIDENCE_FILE: &str = "evidence.jsonl";
/// What the export covers, and the checksum of [`EVIDENCE_FILE`].
pub const MANIFEST_FILE: &str = "manifest.json";
/// The human-readable report.
pub const REPORT_FILE: &str = "report.html";
/// The `format` of manifests this version writes and verifies.
const MANIFEST_FORMAT: &str = "lifeboat-evidence/1";

/// An export or verification that could not be carried out (as opposed to a verification that
/// ran and found the evidence broken, which is a [`VerifyReport`]).
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("stored evidence record {seq} is not JSON: {reason}")]
    Corrupt { seq: u64, reason: String },
    #[error("cannot encode {0} as JSON")]
    Encode(String),
}

impl EvidenceError {
    fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> EvidenceError {
        let path = path.to_path_buf();
        move |source| EvidenceError::Io { action, path, source }
    }
}

/// `manifest.json`: what an export covers, for [`verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Names this layout, so a later one can be told apart.
    pub format: String,
    /// The first exported seq; `None` when nothing was recorded since `since`.
    pub first_seq: Option<u64>,
    /// The `prev_hash` of the first exported record: the anchor the chain is recomputed from.
    /// It equals the `last_hash` of the export before, if that one ended right before this one.
    /// With nothing exported, the hash of the newest record (or the genesis hash).
    pub first_prev_hash: String,
    pub last_seq: Option<u64>,
    /// The hash of the last exported record: the head, to compare with later exports.
    pub last_hash: String,
    pub count: u64,
    pub exported_at: DateTime<Utc>,
    pub since: DateTime<Utc>,
    /// SHA-256 of `evidence.jsonl`, hex.
    pub evidence_sha256: String,
}

/// What [`export`] wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportSummary {
    pub dir: PathBuf,
    pub files: Vec<String>,
    pub count: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub first_prev_hash: String,
    pub last_hash: String,
    pub since: DateTime<Utc>,
    pub exported_at: DateTime<Utc>,
}

impl ExportSummary {
    /// Returns the summary as text for a terminal.
    pub fn render(&self) -> String {
        let dir = self.dir.display();
        let range = match (self.first_seq, self.last_seq) {
            (Some(first), Some(last)) => format!(" (seq {first}..{last})"),
            _ => String::new(),
        };
        let since = self.since.to_rfc3339_opts(SecondsFormat::Secs, true);
        let mut text = format!(
            "exported {} evidence record{}{range} recorded since {since} to {dir}\n",
            self.count,
            plural(self.count)
        );
        text.push_str(&format!(
            "  anchor (prev_hash of the first record): {}\n",
            self.first_prev_hash
        ));
        text.push_str(&format!(
            "  head   (hash of the last record):       {}\n",
            self.last_hash
        ));
        text.push_str(&format!("  files: {}\n", self.files.join(", ")));
        text.push_str(&format!("verify with: lifeboat-coordinator evidence verify {dir}\n"));
        text
    }
}

/// The outcome of [`verify`]: whether the chain holds, and if not, where it first breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub dir: PathBuf,
    /// True when every record, the manifest and the checksum agree.
    pub verified: bool,
    /// Records whose hash was recomputed and matched, up to the first break.
    pub records_checked: u64,
    /// From the manifest (when it could be read).
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub first_prev_hash: Option<String>,
    pub last_hash: Option<String>,
    /// The first seq at which the chain breaks, when the break is at a record.
    pub broken_seq: Option<u64>,
    /// What is wrong, in plain words; `None` when verified.
    pub problem: Option<String>,
}

impl VerifyReport {
    /// Returns the report as text for a terminal.
    pub fn render(&self) -> String {
        let dir = self.dir.display();
        match &self.problem {
            None => {
                let range = match (self.first_seq, self.last_seq) {
                    (Some(first), Some(last)) => format!(", seq {first}..{last}"),
                    _ => String::new(),
                };
                format!(
                    "evidence in {dir} verified: {} record{}{range}, chain intact\n  anchor: {}\n  head:   {}\n",
                    self.records_checked,
                    plural(self.records_checked),
                    self.first_prev_hash.as_deref().unwrap_or("-"),
                    self.last_hash.as_deref().unwrap_or("-"),
                )
            }
            Some(problem) => {
                let at = self.broken_seq.map(|seq| format!(" at seq {seq}")).unwrap_or_default();
                format!(
                    "evidence in {dir} NOT verified: broken{at}: {problem}\n  ({} record{} checked before the break)\n",
                    self.records_checked,
                    plural(self.records_checked)
                )
            }
        }
    }
}

fn plural(count: u64) -> &'static str {
    if count == 1 { "" } else { "s" }
}

/// One line of `evidence.jsonl`, as written. `record` is written verbatim: its bytes are the
/// ones that were hashed.
#[derive(Serialize)]
struct EvidenceLine<'a> {
    seq: u64,
    recorded_at: String,
    environment: &'a str,
    asset: &'a str,
    record: &'a RawValue,
    prev_hash: &'a str,
    hash: &'a str,
}

/// One line of `evidence.jsonl`, as read back; `record` keeps the exact bytes of the file.
#[derive(Deserialize)]
struct ParsedLine {
    seq: u64,
    recorded_at: DateTime<Utc>,
    environment: String,
    asset: String,
    record: Box<RawValue>,
    prev_hash: String,
    hash: String,
}

/// Formats a time as records do: RFC 3339, UTC, milliseconds.
fn line_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Returns the contents of `evidence.jsonl` for `records`.
fn evidence_lines(records: &[EvidenceRecord]) -> Result<String, EvidenceError> {
    let mut out = String::new();
    for record in records {
        let raw = RawValue::from_string(record.record.clone()).map_err(|err| EvidenceError::Corrupt {
            seq: record.seq,
            reason: err.to_string(),
        })?;
        let line = EvidenceLine {
            seq: record.seq,
            recorded_at: line_time(record.recorded_at),
            environment: record.environment.as_str(),
            asset: &record.asset,
            record: &raw,
            prev_hash: &record.prev_hash,
            hash: &record.hash,
        };
        let text = serde_json::to_string(&line)
            .map_err(|err| EvidenceError::Encode(format!("evidence record {}: {err}", record.seq)))?;
        out.push_str(&text);
        out.push('\n');
    }
    Ok(out)
}

/// The contents of an export, before they are written.
struct ExportFiles {
    lines: String,
    manifest: Manifest,
    html: String,
}

/// Builds the files of an export of `records`; `head_hash` is the newest hash in the store, which
/// anchors an empty export.
fn prepare_export(
    records: &[EvidenceRecord],
    head_hash: Option<String>,
    since: DateTime<Utc>,
    exported_at: DateTime<Utc>,
) -> Result<ExportFiles, EvidenceError> {
    let lines = evidence_lines(records)?;
    let (first_prev_hash, last_hash) = match (records.first(), records.last()) {
        (Some(first), Some(last)) => (first.prev_hash.clone(), last.hash.clone()),
        _ => {
            let head_hash = head_hash.unwrap_or_else(|| GENESIS_HASH.to_owned());
            (head_hash.clone(), head_hash)
        }
    };
    let manifest = Manifest {
        format: MANIFEST_FORMAT.to_owned(),
        first_seq: records.first().map(|record| record.seq),
        first_prev_hash,
        last_seq: records.last().map(|record| record.seq),
        last_hash,
        count: records.len() as u64,
        exported_at,
        since,
        evidence_sha256: sha256_hex(lines.as_bytes()),
    };
    let html = report::render(records, &manifest)?;
    Ok(ExportFiles { lines, manifest, html })
}

/// Exports every record from the first one recorded at or after `since` into `out` (created if
/// missing; files of an earlier export there are replaced), and returns what was written.
///
/// The manifest is written last, so a folder with a manifest holds a complete export.
pub async fn export(store: &Store, since: DateTime<Utc>, out: &Path) -> Result<ExportSummary, EvidenceError> {
    // Read before the records: with nothing recorded since `since`, the manifest still says
    // where the chain stood.
    let head = store.evidence_head().await?;
    let records = store.evidence_since(since).await?;
    let exported_at = Utc::now();
    let head_hash = head.map(|head| head.hash);
    let ExportFiles { lines, manifest, html } = prepare_export(&records, head_hash, since, exported_at)?;
    let manifest_text =
        serde_json::to_string_pretty(&manifest).map_err(|err| EvidenceError::Encode(format!("the manifest: {err}")))?;

    tokio::fs::create_dir_all(out)
        .await
        .map_err(EvidenceError::io("create", out))?;
    for (name, contents) in [
        (EVIDENCE_FILE, lines),
        (REPORT_FILE, html),
        (MANIFEST_FILE, manifest_text + "\n"),
    ] {
        let path = out.join(name);
        tokio::fs::write(&path, contents)
            .await
            .map_err(EvidenceError::io("write", &path))?;
    }

    Ok(ExportSummary {
        dir: out.to_path_buf(),
        files: vec![
            EVIDENCE_FILE.to_owned(),
            MANIFEST_FILE.to_owned(),
            REPORT_FILE.to_owned(),
        ],
        count: manifest.count,
        first_seq: manifest.first_seq,
        last_seq: manifest.last_seq,
        first_prev_hash: manifest.first_prev_hash,
        last_hash: manifest.last_hash,
        since,
        exported_at,
    })
}

/// Where and why a chain check failed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Broken {
    seq: Option<u64>,
    problem: String,
}

impl Broken {
    fn at(seq: u64, problem: impl Into<String>) -> Self {
        Self {
            seq: Some(seq),
            problem: problem.into(),
        }
    }

    fn file(problem: impl Into<String>) -> Self {
        Self {
            seq: None,
            problem: problem.into(),
        }
    }
}

/// Checks an exported folder: recomputes every hash from the manifest's anchor, then compares
/// the manifest's count, head and checksum with the file. Needs no database.
///
/// Returns `Err` only when the files cannot be read; tampering is a report with `verified: false`.
pub fn verify(dir: &Path) -> Result<VerifyReport, EvidenceError> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let evidence_path = dir.join(EVIDENCE_FILE);
    let manifest_bytes = std::fs::read(&manifest_path).map_err(EvidenceError::io("read", &manifest_path))?;
    let evidence_bytes = std::fs::read(&evidence_path).map_err(EvidenceError::io("read", &evidence_path))?;

    let mut report = VerifyReport {
        dir: dir.to_path_buf(),
        verified: false,
        records_checked: 0,
        first_seq: None,
        last_seq: None,
        first_prev_hash: None,
        last_hash: None,
        broken_seq: None,
        problem: None,
    };
    let manifest: Manifest = match serde_json::from_slice(&manifest_bytes) {
        Ok(manifest) => manifest,
        Err(err) => {
            report.problem = Some(format!("{MANIFEST_FILE} is not a valid manifest: {err}"));
            return Ok(report);
        }
    };
    report.first_seq = manifest.first_seq;
    report.last_seq = manifest.last_seq;
    report.first_prev_hash = Some(manifest.first_prev_hash.clone());
    report.last_hash = Some(manifest.last_hash.clone());

    let (checked, outcome) = check_export(&manifest, &evidence_bytes);
    report.records_checked = checked;
    match outcome {
        Ok(()) => report.verified = true,
        Err(broken) => {
            report.broken_seq = broken.seq;
            report.problem = Some(broken.problem);
        }
    }
    Ok(report)
}

/// Returns how many records matched their hash, and the first break if any.
fn check_export(manifest: &Manifest, evidence: &[u8]) -> (u64, Result<(), Broken>) {
    if manifest.format != MANIFEST_FORMAT {
        let problem = format!(
            "{MANIFEST_FILE} has format {:?}, expected {MANIFEST_FORMAT:?}",
            manifest.format
        );
        return (0, Err(Broken::file(problem)));
    }
    let Ok(text) = std::str::from_utf8(evidence) else {
        return (0, Err(Broken::file(format!("{EVIDENCE_FILE} is not UTF-8 text"))));
    };
    let lines: Vec<Result<ParsedLine, serde_json::Error>> = text.lines().map(serde_json::from_str).collect();
    // Keeps every seq computed below (first + lines + 1 at most) within range.
    let last_possible_seq = manifest
        .first_seq
        .map(|first| first.checked_add(lines.len() as u64 + 1));
    if last_possible_seq == Some(None) {
        return (
            0,
            Err(Broken::file(format!("{MANIFEST_FILE} has an impossible first_seq"))),
        );
    }
    let mut checked = 0;
    let outcome =
        check_chain(manifest, &lines, &mut checked).and_then(|head| check_manifest(manifest, evidence, checked, &head));
    (checked, outcome)
}

/// Walks the lines from the anchor, counting the records that hold in `checked`; returns the
/// hash the chain ends at (the anchor when there are no lines).
fn check_chain(
    manifest: &Manifest,
    lines: &[Result<ParsedLine, serde_json::Error>],
    checked: &mut u64,
) -> Result<String, Broken> {
    let Some(first_seq) = manifest.first_seq else {
        return match lines.first() {
            None => Ok(manifest.first_prev_hash.clone()),
            Some(_) => Err(Broken::file(format!(
                "{MANIFEST_FILE} says nothing was exported, but {EVIDENCE_FILE} holds {} line{}",
                lines.len(),
                plural(lines.len() as u64)
            ))),
        };
    };
    let mut expected_prev_hash = manifest.first_prev_hash.as_str();
    for ((index, line), expected_seq) in lines.iter().enumerate().zip(first_seq..) {
        let line_number = index + 1;
        let line = line.as_ref().map_err(|err| {
            Broken::at(
                expected_seq,
                format!("line {line_number}, where seq {expected_seq} should be, is not a valid evidence line: {err}"),
            )
        })?;
        if line.seq != expected_seq {
            let appears_later = lines[index..]
                .iter()
                .any(|later| later.as_ref().is_ok_and(|later| later.seq == expected_seq));
            let problem = if line.seq < expected_seq {
                format!(
                    "line {line_number} holds seq {} where seq {expected_seq} should be: a record was \
                     inserted or duplicated",
                    line.seq
                )
            } else if appears_later {
                format!(
                    "line {line_number} holds seq {} where seq {expected_seq} should be: records were reordered",
                    line.seq
                )
            } else {
                let missing = if line.seq == expected_seq + 1 {
                    format!("seq {expected_seq} is missing")
                } else {
                    format!("seq {expected_seq}..{} are missing", line.seq - 1)
                };
                format!(
                    "{missing}: line {line_number} holds seq {}: records were removed",
                    line.seq
                )
            };
            return Err(Broken::at(expected_seq, problem));
        }
        let seq = line.seq;
        if line.prev_hash != expected_prev_hash {
            let problem = if seq == first_seq {
                format!("the prev_hash of seq {seq} is not the anchor in {MANIFEST_FILE} (first_prev_hash)")
            } else {
                format!(
                    "the prev_hash of seq {seq} is not the hash of seq {}: a record before it was rewritten, removed \
                     or inserted",
                    seq - 1
                )
            };
            return Err(Broken::at(seq, problem));
        }
        let record = line.record.get();
        if chain_hash(&line.prev_hash, record) != line.hash {
            return Err(Broken::at(
                seq,
                format!("the record of seq {seq} does not match its hash: it was edited after it was recorded"),
            ));
        }
        check_line_matches_record(line).map_err(|field| {
            Broken::at(
                seq,
                format!("the {field} of line {line_number} (seq {seq}) differs from the one in its hashed record"),
            )
        })?;
        *checked += 1;
        expected_prev_hash = &line.hash;
    }
    Ok(expected_prev_hash.to_owned())
}

/// The fields repeated outside the record (for readers of the file) must say what the hashed
/// record says; returns the name of the first that does not.
fn check_line_matches_record(line: &ParsedLine) -> Result<(), &'static str> {
    #[derive(Deserialize)]
    struct Repeated {
        environment: String,
        asset: String,
        recorded_at: DateTime<Utc>,
    }
    let repeated: Repeated = serde_json::from_str(line.record.get()).map_err(|_| "record")?;
    if repeated.environment != line.environment {
        return Err("environment");
    }
    if repeated.asset != line.asset {
        return Err("asset");
    }
    if repeated.recorded_at != line.recorded_at {
        return Err("recorded_at");
    }
    Ok(())
}

/// Compares the manifest's claims with an intact chain of `checked` records.
fn check_manifest(manifest: &Manifest, evidence: &[u8], checked: u64, head: &str) -> Result<(), Broken> {
    if checked != manifest.count {
        let problem = format!(
            "{MANIFEST_FILE} lists {} record{}, {EVIDENCE_FILE} holds {checked}",
            manifest.count,
            plural(manifest.count)
        );
        let first_missing = manifest.first_seq.map(|first| first + checked);
        return Err(match first_missing {
            Some(seq) if checked < manifest.count => Broken::at(seq, format!("{problem}: records were removed")),
            _ => Broken::file(problem),
        });
    }
    let last_seq = manifest
        .first_seq
        .and_then(|first| (checked > 0).then(|| first + checked - 1));
    if last_seq != manifest.last_seq {
        return Err(Broken::file(format!(
            "{MANIFEST_FILE} says the last seq is {}, {EVIDENCE_FILE} ends at {}",
            describe_seq(manifest.last_seq),
            describe_seq(last_seq)
        )));
    }
    if head != manifest.last_hash {
        return Err(Broken::file(format!(
            "the last hash in {EVIDENCE_FILE} is {head}, {MANIFEST_FILE} says {}",
            manifest.last_hash
        )));
    }
    if sha256_hex(evidence) != manifest.evidence_sha256 {
        return Err(Broken::file(format!(
            "{EVIDENCE_FILE} does not match the SHA-256 in {MANIFEST_FILE}"
        )));
    }
    Ok(())
}

fn describe_seq(seq: Option<u64>) -> String {
    seq.map_or_else(|| "none".to_owned(), |seq| seq.to_string())
}

#[cfg(test)]
mod tests {
    use lifeboat_shared::ids::{Environment, ResultId};
    use serde_json::json;

    use super::*;
    use crate::store::canonical_json;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).expect("time").with_timezone(&Utc)
    }

    /// A chain of `count` records from genesis, with floats that need exact round trips.
    fn chain(count: u64) -> Vec<EvidenceRecord> {
        let mut prev_hash = GENESIS_HASH.to_owned();
        (1..=count)
            .map(|seq| {
                let record = canonical_json(&json!({
                    "environment": "prod",
                    "asset": "orders",
                    "recorded_at": "2026-11-03T02:20:00.000Z",
                    "outcome": if seq % 2 == 0 { "failed" } else { "passed" },
                    "restore_seconds": 0.1 + seq as f64 / 3.0,
                    "note": format!("run {seq} <b>&'\"</b>"),
                }));
                let hash = chain_hash(&prev_hash, &record);
                EvidenceRecord {
                    seq,
                    recorded_at: at("2026-11-03T02:20:00Z"),
                    environment: Environment::parse("prod").expect("environment"),
                    asset: "orders".to_owned(),
                    result_id: ResultId::new(),
                    record,
                    prev_hash: std::mem::replace(&mut prev_hash, hash.clone()),
                    hash,
                }
            })
            .collect()
    }

    fn write_export(records: &[EvidenceRecord]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        let files =
            prepare_export(records, None, at("2026-08-05T00:00:00Z"), at("2026-11-03T03:00:00Z")).expect("prepare");
        std::fs::write(dir.path().join(EVIDENCE_FILE), files.lines).expect("write");
        std::fs::write(dir.path().join(REPORT_FILE), files.html).expect("write");
        let manifest = serde_json::to_string_pretty(&files.manifest).expect("manifest");
        std::fs::write(dir.path().join(MANIFEST_FILE), manifest).expect("write");
        dir
    }

    fn edit_lines(dir: &Path, edit: impl FnOnce(&mut Vec<String>)) {
        let path = dir.join(EVIDENCE_FILE);
        let mut lines: Vec<String> = std::fs::read_to_string(&path)
            .expect("read")
            .lines()
            .map(str::to_owned)
            .collect();
        edit(&mut lines);
        std::fs::write(&path, lines.iter().map(|line| format!("{line}\n")).collect::<String>()).expect("write");
    }

    fn edit_manifest(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
        let path = dir.join(MANIFEST_FILE);
        let mut manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        edit(&mut manifest);
        std::fs::write(&path, manifest.to_string()).expect("write");
    }

    fn broken(dir: &Path) -> (Option<u64>, String) {
        let report = verify(dir).expect("verify runs");
        assert!(!report.verified, "tampering went unnoticed");
        assert!(report.render().contains("NOT verified"));
        (report.broken_seq, report.problem.expect("a problem"))
    }

    #[test]
    fn an_intact_export_verifies() {
        let dir = write_export(&chain(5));
        let report = verify(dir.path()).expect("verify");
        assert!(report.verified, "{:?}", report.problem);
        assert_eq!(report.records_checked, 5);
        assert_eq!((report.first_seq, report.last_seq), (Some(1), Some(5)));
        assert_eq!(report.first_prev_hash.as_deref(), Some(GENESIS_HASH));
        assert!(report.render().contains("verified: 5 records, seq 1..5"));
    }

    #[test]
    fn a_stretch_from_the_middle_verifies_from_its_anchor() {
        let records = chain(6);
        let dir = write_export(&records[2..]);
        let report = verify(dir.path()).expect("verify");
        assert!(report.verified, "{:?}", report.problem);
        assert_eq!(report.first_seq, Some(3));
        assert_eq!(report.first_prev_hash.as_deref(), Some(records[1].hash.as_str()));
    }

    #[test]
    fn an_empty_export_verifies_and_is_anchored_at_the_head() {
        let dir = tempfile::tempdir().expect("temp dir");
        let head = chain(2)[1].hash.clone();
        let files = prepare_export(&[], Some(head.clone()), Utc::now(), Utc::now()).expect("prepare");
        assert_eq!(
            (
                files.manifest.first_prev_hash.as_str(),
                files.manifest.last_hash.as_str()
            ),
            (head.as_str(), head.as_str())
        );
        std::fs::write(dir.path().join(EVIDENCE_FILE), files.lines).expect("write");
        std::fs::write(
            dir.path().join(MANIFEST_FILE),
            serde_json::to_string(&files.manifest).expect("json"),
        )
        .expect("write");
        assert!(verify(dir.path()).expect("verify").verified);

        std::fs::write(dir.path().join(EVIDENCE_FILE), "{}\n").expect("write");
        assert!(broken(dir.path()).1.contains("says nothing was exported"));
    }

    #[test]
    fn an_edited_record_is_named_by_its_seq() {
        let dir = write_export(&chain(5));
        edit_lines(dir.path(), |lines| {
            lines[2] = lines[2].replace("\"outcome\":\"passed\"", "\"outcome\":\"failed\"")
        });
        let (seq, problem) = broken(dir.path());
        assert_eq!(seq, Some(3));
        assert!(problem.contains("does not match its hash"), "{problem}");
    }

    #[test]
    fn an_edited_record_with_a_recomputed_hash_breaks_the_next_link() {
        let dir = write_export(&chain(5));
        edit_lines(dir.path(), |lines| {
            let mut line: serde_json::Value = serde_json::from_str(&lines[1]).expect("json");
            let record = line["record"].to_string().replace("failed", "passed");
            line["hash"] = json!(chain_hash(line["prev_hash"].as_str().expect("prev"), &record));
            line["record"] = serde_json::from_str(&record).expect("json");
            lines[1] = line.to_string();
        });
        let (seq, problem) = broken(dir.path());
        assert_eq!(seq, Some(3));
        assert!(problem.contains("is not the hash of seq 2"), "{problem}");
    }

    #[test]
    fn removed_records_are_found_at_the_start_middle_and_end() {
        for (index, expected_seq) in [(0, 1), (2, 3), (4, 5)] {
            let dir = write_export(&chain(5));
            edit_lines(dir.path(), |lines| {
                lines.remove(index);
            });
            let (seq, problem) = broken(dir.path());
            assert_eq!(seq, Some(expected_seq), "removed line {index}: {problem}");
            assert!(problem.contains("removed"), "{problem}");
        }
    }

    #[test]
    fn reordered_and_inserted_records_are_found() {
        let dir = write_export(&chain(5));
        edit_lines(dir.path(), |lines| lines.swap(1, 2));
        let (seq, problem) = broken(dir.path());
        assert_eq!(seq, Some(2));
        assert!(problem.contains("reordered"), "{problem}");

        let dir = write_export(&chain(5));
        edit_lines(dir.path(), |lines| {
            let copy = lines[2].clone();
            lines.insert(3, copy);
        });
        let (seq, problem) = broken(dir.path());
        assert_eq!(seq, Some(4));
        assert!(problem.contains("inserted"), "{problem}");

        let dir = write_export(&chain(5));
        edit_lines(dir.path(), |lines| lines.insert(2, "not json".to_owned()));
        assert_eq!(broken(dir.path()).0, Some(3));
    }

    #[test]
    fn fields_outside_the_record_must_agree_with_it() {
        let dir = write_export(&chain(3));
        edit_lines(dir.path(), |lines| {
            lines[1] = lines[1].replacen("\"asset\":\"orders\"", "\"asset\":\"billing\"", 1)
        });
        let (seq, problem) = broken(dir.path());
        assert_eq!(seq, Some(2));
        assert!(problem.contains("asset"), "{problem}");
    }

    /// A named edit of a manifest.
    type ManifestEdit = (&'static str, fn(&mut serde_json::Value));

    #[test]
    fn edited_manifests_are_found() {
        let edits: [ManifestEdit; 6] = [
            ("count", |manifest| manifest["count"] = json!(6)),
            ("last hash", |manifest| manifest["last_hash"] = json!(GENESIS_HASH)),
            ("last seq", |manifest| manifest["last_seq"] = json!(4)),
            ("checksum", |manifest| manifest["evidence_sha256"] = json!(GENESIS_HASH)),
            ("anchor", |manifest| {
                manifest["first_prev_hash"] = json!("ab".repeat(32))
            }),
            ("first seq", |manifest| manifest["first_seq"] = json!(2)),
        ];
        for (what, edit) in edits {
            let dir = write_export(&chain(5));
            edit_manifest(dir.path(), edit);
            let report = verify(dir.path()).expect("verify");
            assert!(!report.verified, "edited {what} went unnoticed");
        }

        let dir = write_export(&chain(5));
        std::fs::write(dir.path().join(MANIFEST_FILE), "{").expect("write");
        let (seq, problem) = broken(dir.path());
        assert_eq!(seq, None);
        assert!(problem.contains("not a valid manifest"), "{problem}");
    }

    #[test]
    fn a_hostile_manifest_is_reported_not_a_panic() {
        let dir = write_export(&chain(3));
        edit_manifest(dir.path(), |manifest| manifest["first_seq"] = json!(u64::MAX));
        assert!(broken(dir.path()).1.contains("impossible first_seq"));
    }

    #[test]
    fn a_missing_file_is_an_error_not_a_verdict() {
        let dir = tempfile::tempdir().expect("temp dir");
        let err = verify(dir.path()).expect_err("nothing to read");
        assert!(err.to_string().contains(MANIFEST_FILE), "{err}");
    }
}
