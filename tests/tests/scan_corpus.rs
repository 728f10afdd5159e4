//! Credential discovery against data it was not written for, and against trees built to break
//! it.
//!
//! (a) Recall and precision of our rules (agent/rules/credentials.toml) on the labelled
//! examples of the noseyparker project (tests/fixtures/secret-scanning, Apache-2.0, copied
//! unchanged; their rules were not copied). Each example is a short text labelled `positive`
//! (a credential of the kind the noseyparker rule targets) or `negative` (must not match that
//! rule). We count a positive as found when any of our rules finds anything in it, and a
//! negative as a false alarm when any of our rules does. Some negatives of one noseyparker
//! rule are real credentials of another kind (an `xoxp-` token is a negative for their "bot
//! token" rule and a positive for their "user token" rule): a negative whose exact text is
//! also labelled positive elsewhere is counted apart ("contradicted").
//!
//! Measured on 2026-12-04 (430 positives; 143 negatives of which 21 contradicted): recall
//! 0.665, precision 0.960 (before issue 12: 0.442 and 0.969). The floors below sit a little
//! under the measurement so a rule tweak does not fail the build but a regression does. The
//! rules were written for credential families from vendors' token formats, not fitted to these
//! examples. Most remaining misses are on purpose: resource names rather than credentials
//! (ARNs, bucket names), and documentation placeholders our filters drop
//! (`postgresql://user:secret@localhost`, `Password=myPassword;`, `00aaaa…`); the rest are
//! services without a rule (Kerberos, VMware, TrueNAS, ThingsBoard, Gradle, Twitch).
//!
//! (b) Recall and precision per line on our own labelled tree (tests/fixtures/scan-corpus,
//! written for Lifeboat with random values): every labelled line must have a finding (recall)
//! and every finding must fall on a labelled line (precision). It covers the formats
//! credentials are written in and the look-alikes that are not credentials; the floors make a
//! regression fail the build.
//!
//! (c) `scan` exits 1 at `--min-severity` (high by default): an AWS key or a private key fails a
//! CI gate, a Stripe test key alone does not unless the gate is `low`.
//!
//! (d) Robustness: huge, binary, ELF, symlink loops, dangling links, unreadable paths, FIFOs,
//! git-ignored `.env` files and non-UTF-8 text: nothing panics or hangs, the planted secrets
//! are found, the rest is reported as skipped or as problems.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use lifeboat_agent::credentials::rules::rules;
use lifeboat_agent::credentials::scanner::{ScanOptions, ScanReport, SightingSource, SkipReason, scan_paths};

/// Floor of recall: positives in which we find anything (measured 0.665 = 286/430). See the
/// module docs for why it is not higher.
const RECALL_FLOOR: f64 = 0.63;
/// Floor of precision: found positives / (found positives + uncontradicted negatives with a
/// finding) (measured 0.960: 12 false alarms in 122 negatives, most of them real-looking
/// secrets of another kind, e.g. an Auth0 client secret under a "not Auth0 credentials" label).
const PRECISION_FLOOR: f64 = 0.94;

/// Floors on our own labelled tree (measured 1.000 and 1.000 on 80 credential lines in 42 files).
const OWN_RECALL_FLOOR: f64 = 0.95;
const OWN_PRECISION_FLOOR: f64 = 0.95;

const OWN_CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/scan-corpus");

const EXAMPLES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/secret-scanning/labelled-examples.jsonl"
);

#[derive(Debug, serde::Deserialize)]
struct Labelled {
    rule_id: String,
    label: String,
    text: String,
}

#[test]
fn recall_and_precision_on_noseyparker_labelled_examples() {
    let text = std::fs::read_to_string(EXAMPLES).expect("read labelled examples");
    let examples: Vec<Labelled> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).expect("parse jsonl line"))
        .collect();
    let positive_texts: HashSet<&str> = examples
        .iter()
        .filter(|example| example.label == "positive")
        .map(|example| example.text.as_str())
        .collect();

    let mut positives = 0usize;
    let mut found_positives = 0usize;
    let mut negatives = 0usize;
    let mut false_alarms = 0usize;
    let mut contradicted_negatives = 0usize;
    let mut contradicted_alarms = 0usize;
    let mut misses_by_family: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut alarms: Vec<String> = Vec::new();

    for example in &examples {
        let found = rules().find(example.text.as_bytes());
        let family = example.rule_id.split('.').nth(1).unwrap_or("?").to_owned();
        match example.label.as_str() {
            "positive" => {
                positives += 1;
                let entry = misses_by_family.entry(family).or_default();
                entry.1 += 1;
                if found.is_empty() {
                    entry.0 += 1;
                } else {
                    found_positives += 1;
                }
            }
            "negative" => {
                let contradicted = positive_texts.contains(example.text.as_str());
                if contradicted {
                    contradicted_negatives += 1;
                    contradicted_alarms += usize::from(!found.is_empty());
                    continue;
                }
                negatives += 1;
                if !found.is_empty() {
                    false_alarms += 1;
                    let ids: Vec<&str> = found.iter().map(|hit| hit.rule.id.as_str()).collect();
                    alarms.push(format!("{} matched by {:?}", example.rule_id, ids));
                }
            }
            other => panic!("unknown label {other}"),
        }
    }

    let recall = found_positives as f64 / positives as f64;
    let precision = found_positives as f64 / (found_positives + false_alarms) as f64;
    let clean_negatives = (negatives - false_alarms) as f64 / negatives as f64;
    println!(
        "noseyparker labelled examples: {positives} positive, {negatives} negative (+{contradicted_negatives} contradicted)"
    );
    println!("recall    {recall:.3} ({found_positives}/{positives} positives with a finding), floor {RECALL_FLOOR}");
    println!("precision {precision:.3} ({false_alarms} false alarms), floor {PRECISION_FLOOR}");
    println!(
        "negatives without a finding {clean_negatives:.3}; contradicted negatives with a finding: {contradicted_alarms}/{contradicted_negatives}"
    );
    println!("false alarms:");
    for alarm in &alarms {
        println!("  {alarm}");
    }
    println!("misses by noseyparker family (missed/total):");
    for (family, (missed, total)) in misses_by_family.iter().filter(|(_, (missed, _))| *missed > 0) {
        println!("  {family:<14} {missed}/{total}");
    }
    assert!(recall >= RECALL_FLOOR, "recall {recall:.3} fell below {RECALL_FLOOR}");
    assert!(
        precision >= PRECISION_FLOOR,
        "precision {precision:.3} fell below {PRECISION_FLOOR}"
    );
}

#[derive(Debug, serde::Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord, Clone)]
struct Label {
    path: String,
    line: u32,
}

#[test]
fn recall_and_precision_per_line_on_our_labelled_tree() {
    let tree = Path::new(OWN_CORPUS).join("tree");
    let labels: HashSet<Label> = std::fs::read_to_string(Path::new(OWN_CORPUS).join("labels.jsonl"))
        .expect("read labels")
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).expect("parse label"))
        .collect();
    let report = scan_paths(std::slice::from_ref(&tree), &ScanOptions::default());
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let mut found: BTreeMap<Label, Vec<String>> = BTreeMap::new();
    for sighting in &report.sightings {
        let SightingSource::File { path, line } = &sighting.source else {
            panic!("not a file: {:?}", sighting.source)
        };
        let path = path.strip_prefix(&tree).expect("under the tree").display().to_string();
        found
            .entry(Label { path, line: *line })
            .or_default()
            .push(format!("{} ({})", sighting.rule_id, sighting.severity));
    }
    let true_positives = labels.iter().filter(|label| found.contains_key(label)).count();
    let false_positives: Vec<_> = found.iter().filter(|(label, _)| !labels.contains(label)).collect();
    let mut missed: Vec<&Label> = labels.iter().filter(|label| !found.contains_key(label)).collect();
    missed.sort();
    let recall = true_positives as f64 / labels.len() as f64;
    let precision = true_positives as f64 / (true_positives + false_positives.len()) as f64;
    println!(
        "own corpus: {} labelled lines, recall {recall:.3}, precision {precision:.3}",
        labels.len()
    );
    for label in &missed {
        println!("  missed {}:{}", label.path, label.line);
    }
    for (label, rules) in &false_positives {
        println!("  false alarm {}:{} {rules:?}", label.path, label.line);
    }
    assert!(
        recall >= OWN_RECALL_FLOOR,
        "recall {recall:.3} fell below {OWN_RECALL_FLOOR}"
    );
    assert!(
        precision >= OWN_PRECISION_FLOOR,
        "precision {precision:.3} fell below {OWN_PRECISION_FLOOR}"
    );
}

/// Runs `lifeboat-agent scan` on one file holding `text`; returns the exit code and the JSON.
async fn scan_file(text: &str, extra: &[&str]) -> (i32, serde_json::Value) {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("found.env"), text).expect("write");
    let path = dir.path().display().to_string();
    let mut args = vec!["scan", path.as_str(), "--output", "json"];
    args.extend_from_slice(extra);
    let (code, stdout, stderr) = lifeboat_tests::processes::run("lifeboat-agent", &args)
        .await
        .expect("scan");
    let json = serde_json::from_str(&stdout).unwrap_or_else(|err| panic!("{err}: {stdout}\n{stderr}"));
    (code, json)
}

#[tokio::test]
async fn scan_exits_1_on_high_or_critical_and_min_severity_moves_the_gate() {
    let aws =
        "aws_access_key_id = AKIAUJZDEGXDNCF32EPF\naws_secret_access_key = 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\n";
    let (code, json) = scan_file(aws, &[]).await;
    assert_eq!(code, 1, "{json:#}");
    let severities: Vec<&str> = json["credentials"]
        .as_array()
        .expect("credentials")
        .iter()
        .filter_map(|credential| credential["severity"].as_str())
        .collect();
    assert!(severities.contains(&"critical"), "{json:#}");

    let superuser = "DATABASE_URL=postgres://postgres:Tr0ub4dor-9x@db.internal:5432/rentals\n";
    let (code, json) = scan_file(superuser, &[]).await;
    assert_eq!(code, 1);
    assert_eq!(json["credentials"][0]["severity"], "critical", "{json:#}");
    let exposed = json["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|finding| finding["kind"] == "credential.exposed")
        .expect("an exposed finding");
    assert_eq!(exposed["severity"], "critical", "{json:#}");

    let test_key = "STRIPE_KEY=sk_test_NhFdnXsiVpzz63FfkCzJr4i0\n";
    let (code, json) = scan_file(test_key, &[]).await;
    assert_eq!(code, 0, "a test-mode key alone passes the default gate: {json:#}");
    assert_eq!(json["credentials"][0]["severity"], "low");
    let (code, _) = scan_file(test_key, &["--min-severity", "low"]).await;
    assert_eq!(code, 1, "a strict gate fails on it");
    let (code, _) = scan_file(aws, &["--min-severity", "critical"]).await;
    assert_eq!(code, 1, "the AWS secret key is critical");
    let (code, _) = scan_file(
        "GH_TOKEN=ghp_TWmE4lBYOvfZ8UzDzV8fUkkibjL5DZPjN0ME\n",
        &["--min-severity", "critical"],
    )
    .await;
    assert_eq!(code, 0, "a GitHub token is high, below a critical gate");
}

const PLANTED_NEAR_LIMIT: &str = "ghp_TWmE4lBYOvfZ8UzDzV8fUkkibjL5DZPjN0ME";
const PLANTED_ENV: &str = "6e8cd94e-7223-468a-a552-9b0566567bc4";
const PLANTED_LATIN1: &str = "2hpChYgCfrL1spNxnyVmihA+2O76UMFxFkM+R5Kj";

fn write(path: &Path, contents: &[u8]) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, contents).expect("write");
}

/// Deterministic pseudo-random bytes (xorshift), with NULs in them.
fn noise(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn scan_with_deadline(paths: Vec<PathBuf>, options: ScanOptions) -> ScanReport {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let report = scan_paths(&paths, &options);
        let _ = sender.send(report);
    });
    receiver
        .recv_timeout(Duration::from_secs(120))
        .expect("the scan finished (no hang on FIFOs or loops)")
}

#[test]
fn hostile_trees_neither_panic_nor_hang_and_planted_secrets_are_found() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("tree");
    const MIB: u64 = 1024 * 1024;
    let max_file_bytes = 10 * MIB + 4096;

    // Huge: 64 MiB, sparse. Skipped as too large (without reading it).
    let huge = root.join("var/huge.img");
    std::fs::create_dir_all(huge.parent().expect("parent")).expect("mkdir");
    std::fs::File::create(&huge)
        .expect("create")
        .set_len(64 * MIB)
        .expect("set_len");

    // Just under the limit: 10 MiB of text with a token on the last line.
    let mut near_limit = Vec::with_capacity((10 * MIB) as usize);
    let filler = b"2026-11-25T03:00:00Z INFO request served path=/api/bookings status=200 duration_ms=12\n";
    while near_limit.len() + filler.len() < (10 * MIB) as usize - 100 {
        near_limit.extend_from_slice(filler);
    }
    near_limit.extend_from_slice(format!("GITHUB_TOKEN={PLANTED_NEAR_LIMIT}\n").as_bytes());
    write(&root.join("var/log/app.log"), &near_limit);

    // Binary: random bytes with NULs and a token inside; an ELF executable.
    let mut random = noise(256 * 1024);
    random.extend_from_slice(format!("RAILWAY_TOKEN={PLANTED_ENV}\n").as_bytes());
    write(&root.join("bin/blob.dat"), &random);
    if Path::new("/bin/ls").exists() {
        std::fs::copy("/bin/ls", root.join("bin/ls")).expect("copy /bin/ls");
    }

    // A .gitignore that ignores .env: the .env is still scanned.
    write(&root.join("app/.gitignore"), b".env\n*.env\n");
    write(
        &root.join("app/.env"),
        format!("# local\nRAILWAY_TOKEN={PLANTED_ENV}\n").as_bytes(),
    );

    // Non-UTF-8 (Latin-1) text with a secret.
    let mut latin1 = b"# configuraci\xf3n de producci\xf3n \xa9 2026\n".to_vec();
    latin1.extend_from_slice(format!("aws_secret_access_key = {PLANTED_LATIN1}\n").as_bytes());
    write(&root.join("app/config/prod.ini"), &latin1);

    // Symlink loop, dangling symlink, FIFO.
    std::fs::create_dir_all(root.join("a")).expect("mkdir");
    std::os::unix::fs::symlink("..", root.join("a/link")).expect("symlink loop");
    std::os::unix::fs::symlink(root.join("does-not-exist"), root.join("dangling")).expect("dangling symlink");
    nix::unistd::mkfifo(&root.join("app/pipe"), nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");

    // Unreadable file and directory. As root, mode 000 does not stop reading: then the check
    // is carried by /proc/self/mem, a "regular file" that fails to read for everyone.
    let running_as_root = nix::unistd::geteuid().is_root();
    write(
        &root.join("locked/file.txt"),
        format!("RAILWAY_TOKEN={PLANTED_ENV}\n").as_bytes(),
    );
    write(&root.join("locked-dir/inner.txt"), b"nothing\n");
    set_mode(&root.join("locked/file.txt"), 0o000);
    set_mode(&root.join("locked-dir"), 0o000);

    let mut paths = vec![root.clone()];
    let proc_mem = PathBuf::from("/proc/self/mem");
    if proc_mem.exists() {
        paths.push(proc_mem.clone());
    }
    let report = scan_with_deadline(
        paths,
        ScanOptions {
            max_file_bytes,
            threads: 2,
        },
    );

    // Restore permissions so the temp dir can be removed.
    set_mode(&root.join("locked-dir"), 0o755);
    set_mode(&root.join("locked/file.txt"), 0o644);

    let found: Vec<(PathBuf, &str, &str)> = report
        .sightings
        .iter()
        .map(|sighting| match &sighting.source {
            SightingSource::File { path, .. } => (
                path.strip_prefix(&root).unwrap_or(path).to_path_buf(),
                sighting.rule_id.as_str(),
                sighting.secret.expose(),
            ),
            other => panic!("unexpected source {other:?}"),
        })
        .collect();
    println!(
        "sightings: {:?}",
        found.iter().map(|(path, rule, _)| (path, rule)).collect::<Vec<_>>()
    );
    println!("skipped: {:?}", report.skipped);
    println!("problems: {:?}", report.problems);

    let has = |path: &str, secret: &str| found.iter().any(|(p, _, s)| p == Path::new(path) && *s == secret);
    assert!(
        has("var/log/app.log", PLANTED_NEAR_LIMIT),
        "token at the end of a 10 MiB file"
    );
    assert!(has("app/.env", PLANTED_ENV), "git-ignored .env");
    assert!(has("app/config/prod.ini", PLANTED_LATIN1), "non-UTF-8 text");
    assert!(
        !found.iter().any(|(path, _, _)| path.starts_with("bin")),
        "binary files are not scanned"
    );

    let skipped = |path: &Path, reason: SkipReason| report.skipped.iter().any(|s| s.path == path && s.reason == reason);
    assert!(skipped(&huge, SkipReason::TooLarge), "64 MiB file skipped as too large");
    assert!(skipped(&root.join("bin/blob.dat"), SkipReason::Binary));
    if root.join("bin/ls").exists() {
        assert!(skipped(&root.join("bin/ls"), SkipReason::Binary));
    }
    assert!(skipped(&root.join("app/pipe"), SkipReason::NotARegularFile));

    let problem = |path: &Path| report.problems.iter().any(|problem| problem.path == path);
    if running_as_root {
        assert!(has("locked/file.txt", PLANTED_ENV), "root reads mode 000 files");
    } else {
        assert!(problem(&root.join("locked/file.txt")), "unreadable file is a problem");
        assert!(problem(&root.join("locked-dir")), "unreadable directory is a problem");
    }
    if proc_mem.exists() {
        assert!(problem(&proc_mem), "/proc/self/mem cannot be read and is a problem");
    }
    assert!(
        !report
            .problems
            .iter()
            .any(|problem| problem.path.starts_with(root.join("a/link"))),
        "loop not followed"
    );
    assert!(report.files_scanned >= 5, "{} files scanned", report.files_scanned);
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}
