//! The second wall around secrets (they never leave the environment): whatever leaves the agent —
//! results with their findings, evidence and detail, the inventory, the Hello, progress messages,
//! log lines, and the output of `check` and `scan` — goes through one [`Scrubber`] first, so a
//! secret that got into a message (a hostile backup's error quoting a key file, a tool echoing its
//! environment) still does not leave.
//!
//! One pass over the original text finds:
//!
//! - PEM blocks (private keys and anything else armoured), also when their END line is missing;
//! - values secret because of where they come from ([`known`]): the agent's environment values
//!   that look secret, declared credentials and passwords, the lines of the agent's own key;
//! - credentials the rule set recognises ([`crate::credentials::rules`]);
//! - passwords of URLs and connection strings ([`crate::credentials::redact`]).
//!
//! A credential becomes `[fp:… preview]`: its keyed fingerprint, the one it is reported under
//! elsewhere, and its redacted preview; a PEM block becomes `[fp:… PEM PRIVATE KEY]`; a password
//! `***`. Overlapping finds are merged, so no piece of a secret survives between two of them.
//! Only then is every field cut to its protocol limit ([`bound`]), so a cut cannot split a secret
//! out of sight of the rules.
//!
//! # Layout
//!
//! - [`known`]: which values are secret because of where they come from.
//! - [`bound`]: cutting text and JSON to the protocol's limits, with a visible marker.

pub mod bound;
pub mod known;

use std::borrow::Cow;
use std::cmp::Reverse;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use lifeboat_shared::findings::Finding;
use lifeboat_shared::protocol::{
    Hello, Inventory, Location, MAX_DETAIL_LEN, MAX_FINDINGS, MAX_INVENTORY_ITEMS, MAX_NAME_LEN, MAX_TEXT_LEN,
    RunProgress, RunResult,
};
use lifeboat_shared::telemetry::LineFilter;
use serde_json::Value;

use crate::config::AgentConfig;
use crate::credentials::redact::{self, REDACTED};
use crate::credentials::rules::rules;
use crate::credentials::{FingerprintKey, Secret};

/// The start of a PEM block.
const PEM_BEGIN: &str = "-----BEGIN ";
/// Longest PEM label taken for one (`ENCRYPTED PRIVATE KEY`, `OPENSSH PRIVATE KEY`, …).
const PEM_MAX_LABEL: usize = 64;

/// Cuts secrets out of everything that leaves the agent, and bounds it to the protocol.
pub struct Scrubber {
    /// The agent's fingerprint key, so a cut secret is named as its credential is elsewhere.
    key: FingerprintKey,
    /// Values cut wherever they appear; `known_matcher` finds them, leftmost-longest.
    known: Vec<Secret>,
    known_matcher: Option<AhoCorasick>,
}

impl fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scrubber").field("known", &self.known.len()).finish()
    }
}

/// One secret found in a text: where, and what replaces it.
#[derive(Debug)]
struct Find {
    span: Range<usize>,
    /// Among finds of the same span, the lowest rank's replacement is used.
    rank: u8,
    replacement: String,
}

impl Scrubber {
    /// A scrubber that also cuts the `known` values wherever they appear.
    pub fn new(key: FingerprintKey, known: Vec<Secret>) -> Self {
        let mut known = known;
        known.sort_by(|a, b| a.expose().cmp(b.expose()));
        known.dedup();
        let known_matcher = if known.is_empty() {
            None
        } else {
            AhoCorasickBuilder::new()
                .match_kind(MatchKind::LeftmostLongest)
                .build(known.iter().map(Secret::expose))
                .inspect_err(|err| tracing::warn!(error = %err, "cannot match the agent's known secrets"))
                .ok()
        };
        Self {
            key,
            known,
            known_matcher,
        }
    }

    /// The scrubber of an agent with this config: the environment's secret-looking values, the
    /// declared secrets and the agent's private key are known.
    pub fn for_agent(config: &AgentConfig, key: FingerprintKey) -> Self {
        let mut known = known::environment_secrets(std::env::vars(), &crate::capabilities::hostname());
        known.extend(known::declared_secrets(config));
        if let Some(identity_dir) = &config.agent.identity_dir {
            known.extend(known::identity_key_secrets(identity_dir));
        }
        Self::new(key, known)
    }

    /// The scrubber of a command without a config: the environment's secret-looking values.
    pub fn for_environment(key: FingerprintKey) -> Self {
        Self::new(
            key,
            known::environment_secrets(std::env::vars(), &crate::capabilities::hostname()),
        )
    }

    /// Returns `text` with every secret in it replaced.
    pub fn text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let finds = self.finds(text);
        if finds.is_empty() {
            return Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len());
        let mut copied = 0;
        for find in finds {
            out.push_str(&text[copied..find.span.start]);
            out.push_str(&find.replacement);
            copied = find.span.end;
        }
        out.push_str(&text[copied..]);
        Cow::Owned(out)
    }

    /// Scrubs `text`, replaces the control characters the protocol refuses and cuts it to `max`
    /// bytes.
    pub fn bounded(&self, text: &str, max: usize) -> String {
        let scrubbed = self.text(text);
        let clean = bound::without_controls(&scrubbed);
        bound::cut(&clean, max).into_owned()
    }

    /// Scrubs every string (and key) of a JSON document, cutting each string to `MAX_TEXT_LEN`.
    pub fn json(&self, mut value: Value) -> Value {
        self.scrub_value(&mut value);
        value
    }

    /// [`Scrubber::json`], then shrinks the document to `MAX_DETAIL_LEN` as a whole.
    pub fn detail(&self, value: Value) -> Value {
        let mut value = self.json(value);
        bound::bound_json(&mut value, MAX_DETAIL_LEN);
        value
    }

    fn scrub_value(&self, value: &mut Value) {
        match value {
            Value::String(text) => {
                let bounded = self.bounded(text, MAX_TEXT_LEN);
                if bounded != *text {
                    *text = bounded;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|item| self.scrub_value(item)),
            Value::Object(fields) => {
                for (name, mut field) in std::mem::take(fields) {
                    self.scrub_value(&mut field);
                    fields.insert(self.bounded(&name, MAX_TEXT_LEN), field);
                }
            }
            _ => {}
        }
    }

    /// A finding with its texts scrubbed and bounded.
    pub fn finding(&self, finding: Finding) -> Finding {
        Finding {
            kind: finding.kind,
            severity: finding.severity,
            subject: self.bounded(&finding.subject, MAX_NAME_LEN),
            message: self.bounded(&finding.message, MAX_TEXT_LEN),
            evidence: self.detail(finding.evidence),
            remediation: self.bounded(&finding.remediation, MAX_TEXT_LEN),
        }
    }

    /// A result as it may be spooled and sent: every text scrubbed and bounded, at most
    /// `MAX_FINDINGS` findings (the worst, as they come sorted).
    pub fn result(&self, result: RunResult) -> RunResult {
        let mut findings = result.findings;
        if findings.len() > MAX_FINDINGS {
            tracing::warn!(
                findings = findings.len(),
                kept = MAX_FINDINGS,
                asset = %result.asset,
                "result has more findings than the protocol allows; the rest are dropped"
            );
            findings.truncate(MAX_FINDINGS);
        }
        RunResult {
            asset: self.bounded(&result.asset, MAX_NAME_LEN),
            backup: self.bounded(&result.backup, MAX_NAME_LEN),
            recovery_point: self.bounded(&result.recovery_point, MAX_TEXT_LEN),
            findings: findings.into_iter().map(|finding| self.finding(finding)).collect(),
            detail: self.detail(result.detail),
            ..result
        }
    }

    /// The inventory as it may be sent.
    pub fn inventory(&self, inventory: Inventory) -> Inventory {
        let name = |text: String| self.bounded(&text, MAX_NAME_LEN);
        let mut inventory = inventory;
        inventory.assets.truncate(MAX_INVENTORY_ITEMS);
        inventory.backups.truncate(MAX_INVENTORY_ITEMS);
        inventory.tests.truncate(MAX_INVENTORY_ITEMS);
        for asset in &mut inventory.assets {
            asset.name = name(std::mem::take(&mut asset.name));
            asset.kind = name(std::mem::take(&mut asset.kind));
            self.location(&mut asset.location);
        }
        for backup in &mut inventory.backups {
            backup.name = name(std::mem::take(&mut backup.name));
            backup.asset = name(std::mem::take(&mut backup.asset));
            backup.kind = name(std::mem::take(&mut backup.kind));
            self.location(&mut backup.location);
        }
        for test in &mut inventory.tests {
            test.asset = name(std::mem::take(&mut test.asset));
            test.schedule = name(std::mem::take(&mut test.schedule));
            test.pick = name(std::mem::take(&mut test.pick));
            test.checks.truncate(MAX_INVENTORY_ITEMS);
            test.checks = std::mem::take(&mut test.checks).into_iter().map(name).collect();
        }
        inventory
    }

    fn location(&self, location: &mut Location) {
        let fields = [
            &mut location.provider,
            &mut location.account,
            &mut location.region,
            &mut location.host,
            &mut location.volume,
        ];
        for value in fields.into_iter().flatten() {
            *value = self.bounded(value, MAX_NAME_LEN);
        }
    }

    /// A progress message as it may be sent.
    pub fn progress(&self, progress: RunProgress) -> RunProgress {
        RunProgress {
            phase: self.bounded(&progress.phase, MAX_NAME_LEN),
            ..progress
        }
    }

    /// The Hello as it may be sent.
    pub fn hello(&self, hello: Hello) -> Hello {
        let mut hello = hello;
        hello.agent_version = self.bounded(&hello.agent_version, MAX_NAME_LEN);
        hello.hostname = self.bounded(&hello.hostname, MAX_NAME_LEN);
        hello.capabilities.features = std::mem::take(&mut hello.capabilities.features)
            .into_iter()
            .map(|feature| self.bounded(&feature, MAX_NAME_LEN))
            .collect();
        hello
    }

    /// A filter for the log writer: each formatted line is scrubbed before it is written.
    pub fn line_filter(self: &Arc<Self>) -> LineFilter {
        let scrubber = Arc::clone(self);
        Arc::new(move |line: &str| scrubber.text(line).into_owned())
    }

    /// Every secret in `text`, merged where they overlap, in order.
    fn finds(&self, text: &str) -> Vec<Find> {
        let mut finds = self.pem_finds(text);
        if let Some(matcher) = &self.known_matcher {
            for hit in matcher.find_iter(text) {
                let secret = &self.known[hit.pattern().as_usize()];
                finds.push(Find {
                    span: hit.range(),
                    rank: 2,
                    replacement: self.marker(secret, &secret.preview()),
                });
            }
        }
        for found in rules().find(text.as_bytes()) {
            finds.extend(self.rule_finds(text, found.offset..found.end, &found.secret));
        }
        for span in redact::password_spans(text) {
            finds.push(Find {
                span,
                rank: 3,
                replacement: REDACTED.to_owned(),
            });
        }
        merge(finds)
    }

    /// A credential of the rule set found at `offset`: a URL with a password keeps its scheme,
    /// user and host and loses the password (`postgres://app:[fp:… T…x]@db/rentals`); anything
    /// else goes whole. The fingerprint is always the whole credential's, as it is reported.
    fn rule_finds(&self, text: &str, span: std::ops::Range<usize>, secret: &Secret) -> Vec<Find> {
        let start = bound::floor_char_boundary(text, span.start);
        let end = ceil_char_boundary(text, span.end.max(span.start));
        // The text as written: the secret may be normalised (an `@` escaped in a password).
        let value = text.get(start..end).unwrap_or_default();
        let passwords = redact::password_spans(value);
        if passwords.is_empty() {
            return vec![Find {
                span: start..end,
                rank: 1,
                replacement: self.marker(secret, &crate::credentials::filters::redacted_preview(secret)),
            }];
        }
        passwords
            .into_iter()
            .map(|password| Find {
                span: start + password.start..start + password.end,
                rank: 1,
                replacement: self.marker(secret, &Secret::new(&value[password]).preview()),
            })
            .collect()
    }

    /// `[fp:… preview]`.
    fn marker(&self, secret: &Secret, preview: &str) -> String {
        format!("[{} {preview}]", self.key.fingerprint(secret))
    }

    /// PEM blocks, from `-----BEGIN LABEL-----` to `-----END LABEL-----`, or to the end of the
    /// armour after it when the END line is missing (a block cut short by whoever quoted it).
    fn pem_finds(&self, text: &str) -> Vec<Find> {
        let mut finds = Vec::new();
        let mut from = 0;
        while let Some(found) = text[from..].find(PEM_BEGIN) {
            let start = from + found;
            let label_start = start + PEM_BEGIN.len();
            from = label_start;
            let Some(label_end) = text[label_start..]
                .find("-----")
                .map(|end| label_start + end)
                .filter(|&end| end - label_start <= PEM_MAX_LABEL)
            else {
                continue;
            };
            let label = &text[label_start..label_end];
            if !label
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == ' ')
            {
                continue;
            }
            let body_start = label_end + "-----".len();
            let end_line = format!("-----END {label}-----");
            let end = match text[body_start..].find(&end_line) {
                Some(end) => body_start + end + end_line.len(),
                None => body_start + armour_len(&text[body_start..]),
            };
            finds.push(Find {
                span: start..end,
                rank: 0,
                replacement: format!(
                    "[{} PEM {label}]",
                    self.key.fingerprint(&Secret::new(&text[start..end]))
                ),
            });
            from = end;
        }
        finds
    }
}

/// The length of the PEM armour (base64, headers, line breaks — also written as `\n`, as in a
/// JSON log line) at the start of `text`.
fn armour_len(text: &str) -> usize {
    let bytes = text.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' | b'=' | b':' | b',' | b'-' => index += 1,
            b'\n' | b'\r' | b' ' | b'\t' => index += 1,
            b'\\' if matches!(bytes.get(index + 1), Some(b'n' | b'r')) => index += 2,
            _ => break,
        }
    }
    index
}

/// Sorts finds and merges overlapping ones into the first (longest, lowest rank) of them.
fn merge(mut finds: Vec<Find>) -> Vec<Find> {
    finds.sort_by_key(|find| (find.span.start, Reverse(find.span.end), find.rank));
    let mut merged: Vec<Find> = Vec::with_capacity(finds.len());
    for find in finds {
        match merged.last_mut() {
            Some(last) if find.span.start < last.span.end => last.span.end = last.span.end.max(find.span.end),
            _ => merged.push(find),
        }
    }
    merged
}

fn ceil_char_boundary(text: &str, index: usize) -> usize {
    let mut index = index.min(text.len());
    while !text.is_char_boundary(index) {
        index += 1;
    }
    index
}

#[cfg(test)]
mod tests {
    use lifeboat_shared::findings::FindingKind;
    use lifeboat_shared::protocol::Outcome;
    use serde_json::json;

    use super::*;

    const AWS_KEY_ID: &str = "AKIAUJZDEGXDNCF32EPF";
    const GITHUB_TOKEN: &str = "ghp_TWmE4lBYOvfZ8UzDzV8fUkkibjL5DZPjN0ME";
    const PEM_BODY: [&str; 3] = [
        "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgVb3Kq8yPzT1mWcX4",
        "oN2sR7dLfE0uJhA9iGkQpZt5xYvhRANCAAT8w3LqWm2Kz7cD1rXyF6oP4sN9tHbV",
        "eU8jQ2aLkZr5TgY1nMd3WcX7pQ==",
    ];

    fn scrubber_with(known: Vec<Secret>) -> (Scrubber, FingerprintKey) {
        let key = FingerprintKey::random();
        (Scrubber::new(key.clone(), known), key)
    }

    fn fingerprint(key: &FingerprintKey, value: &str) -> String {
        key.fingerprint(&Secret::new(value))
    }

    #[test]
    fn a_pem_private_key_is_cut_whole_even_without_its_end_line() {
        let (scrubber, _) = scrubber_with(Vec::new());
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            PEM_BODY.join("\n")
        );
        let error = format!("ERROR:  invalid input syntax for type integer: \"{pem}\"\nLINE 1: select 1");
        let scrubbed = scrubber.text(&error);
        assert!(PEM_BODY.iter().all(|line| !scrubbed.contains(line)), "{scrubbed}");
        assert!(scrubbed.starts_with("ERROR:  invalid input syntax for type integer: \"[fp:"));
        assert!(
            scrubbed.contains(" PEM PRIVATE KEY]\n\"\nLINE 1: select 1"),
            "{scrubbed}"
        );

        // Quoted without its END line, or inside a JSON log line with `\n` escapes.
        for cut_short in [
            format!(
                "ERROR: \"-----BEGIN EC PRIVATE KEY-----\n{}\n{}\" at line 3",
                PEM_BODY[0], PEM_BODY[1]
            ),
            format!(
                r#"{{"error":"-----BEGIN EC PRIVATE KEY-----\n{}\n{}\"}}"#,
                PEM_BODY[0], PEM_BODY[1]
            ),
        ] {
            let scrubbed = scrubber.text(&cut_short);
            assert!(PEM_BODY.iter().all(|line| !scrubbed.contains(line)), "{scrubbed}");
            assert!(scrubbed.contains(" PEM EC PRIVATE KEY]"), "{scrubbed}");
            assert!(
                scrubbed.ends_with("\" at line 3") || scrubbed.ends_with(r#"\"}"#),
                "{scrubbed}"
            );
        }
    }

    #[test]
    fn url_passwords_go_and_scheme_user_and_host_stay() {
        let (scrubber, key) = scrubber_with(Vec::new());
        let url = "postgres://app:p@ss!w0rd9@db.internal:5432/rentals";
        let scrubbed = scrubber
            .text(&format!("could not connect to {url} (connection refused)"))
            .into_owned();
        assert_eq!(
            scrubbed,
            format!(
                "could not connect to postgres://app:[{} p…9]@db.internal:5432/rentals (connection refused)",
                // The fingerprint `scan` reports: the URL with the `@` of its password escaped.
                fingerprint(&key, "postgres://app:p%40ss!w0rd9@db.internal:5432/rentals")
            )
        );
        // Passwords too weak for the rule set still go.
        assert_eq!(
            scrubber.text("postgres://app:changeme@db/x?password=pw1 failed"),
            "postgres://app:***@db/x?password=*** failed"
        );
        let scrubbed = scrubber.text("mongodb://u:p@ss@host/db");
        assert!(
            !scrubbed.contains("p@ss") && scrubbed.ends_with("]@host/db"),
            "{scrubbed}"
        );

        let scrubbed = scrubber.text("redis://default:hunter2@cache:6379/0 refused; amqp://svc:x@y/z");
        assert!(!scrubbed.contains("hunter2"), "{scrubbed}");
        assert!(scrubbed.contains("redis://default:"), "{scrubbed}");
        assert!(scrubbed.contains("@cache:6379/0 refused"), "{scrubbed}");
    }

    #[test]
    fn libpq_keyword_passwords_go() {
        let (scrubber, _) = scrubber_with(Vec::new());
        let scrubbed = scrubber.text("connection to \"host=db.internal user=app password=Pw1 dbname=rentals\" failed");
        assert_eq!(
            scrubbed,
            "connection to \"host=db.internal user=app password=*** dbname=rentals\" failed"
        );
        // A password the rule set recognises is named by its fingerprint instead.
        let scrubbed = scrubber.text("host=db.internal password=s3cr3t-Pw dbname=rentals");
        assert!(!scrubbed.contains("s3cr3t"), "{scrubbed}");
        assert!(scrubbed.starts_with("host=db.internal password=[fp:"), "{scrubbed}");
        assert!(scrubbed.ends_with("] dbname=rentals"), "{scrubbed}");
    }

    #[test]
    fn tokens_of_the_rule_set_become_their_fingerprint_and_preview() {
        let (scrubber, key) = scrubber_with(Vec::new());
        let text = format!("aws_access_key_id = {AWS_KEY_ID}\ngit push failed: remote rejected {GITHUB_TOKEN}");
        let scrubbed = scrubber.text(&text);
        assert!(
            !scrubbed.contains(AWS_KEY_ID) && !scrubbed.contains(GITHUB_TOKEN),
            "{scrubbed}"
        );
        assert!(
            scrubbed.contains(&format!("[{} AKI…EPF]", fingerprint(&key, AWS_KEY_ID))),
            "{scrubbed}"
        );
        assert!(
            scrubbed.contains(&format!("[{} ghp_…N0ME]", fingerprint(&key, GITHUB_TOKEN))),
            "{scrubbed}"
        );
        assert!(scrubbed.starts_with("aws_access_key_id = [fp:"));
    }

    #[test]
    fn secret_looking_environment_values_are_cut_and_settings_kept() {
        let environment = [
            ("BILLING_API_SECRET", "Zq81-canary-vX4Rt-0pL"),
            ("APP_ENV", "production"),
        ]
        .map(|(name, value)| (name.to_owned(), value.to_owned()));
        let (scrubber, key) = scrubber_with(known::environment_secrets(environment, "buildbox"));
        let scrubbed = scrubber.text("tool said: Zq81-canary-vX4Rt-0pL in production");
        assert_eq!(
            scrubbed,
            format!(
                "tool said: [{} Zq8…0pL] in production",
                fingerprint(&key, "Zq81-canary-vX4Rt-0pL")
            )
        );
    }

    #[test]
    fn evidence_is_scrubbed_all_the_way_down_and_keeps_its_shape() {
        let (scrubber, _) = scrubber_with(vec![Secret::new("declared-Pw-42")]);
        let finding = Finding::new(
            FindingKind::BackupUnrecoverable,
            "rentals-db",
            format!("restore failed: {GITHUB_TOKEN}"),
        )
        .with_evidence(json!({
            "failed": [{"backup": "nightly", "error": format!("FATAL: {AWS_KEY_ID}")}],
            "nested": {"deeper": [["postgres://u:pw12345x@h/db", 42, null, true]]},
            format!("GITHUB_TOKEN={GITHUB_TOKEN}"): "a key holding a secret",
            "declared": "password is declared-Pw-42",
        }))
        .with_remediation("rotate declared-Pw-42");
        let scrubbed = scrubber.finding(finding);
        let all = serde_json::to_string(&scrubbed).expect("json");
        for secret in [GITHUB_TOKEN, AWS_KEY_ID, "pw12345x", "declared-Pw-42"] {
            assert!(!all.contains(secret), "{secret} in {all}");
        }
        assert_eq!(scrubbed.evidence["failed"][0]["backup"], "nightly");
        assert!(
            scrubbed.evidence["failed"][0]["error"]
                .as_str()
                .is_some_and(|error| error.starts_with("FATAL: [fp:"))
        );
        assert_eq!(scrubbed.evidence["nested"]["deeper"][0][1], 42);
        assert!(
            scrubbed.evidence["nested"]["deeper"][0][0]
                .as_str()
                .is_some_and(|url| url.starts_with("postgres://u:[fp:") && url.ends_with(" p…x]@h/db"))
        );
        assert!(scrubbed.message.starts_with("restore failed: [fp:"));
        assert!(scrubbed.remediation.starts_with("rotate [fp:"));
    }

    #[test]
    fn fields_are_cut_to_the_protocol_on_character_boundaries_after_scrubbing() {
        let (scrubber, _) = scrubber_with(Vec::new());
        let mut result = RunResult::for_test(&"ü".repeat(200), Outcome::Failed);
        // A token straddling the limit: scrubbed first, so no piece of it survives the cut.
        let straddling = format!("{}{GITHUB_TOKEN}{}", "é".repeat(8_180), "é".repeat(1_000));
        result.findings = vec![Finding::new(FindingKind::BackupUnrecoverable, "db", straddling); MAX_FINDINGS + 5];
        result.detail = json!({"log": "\u{1b}[31mred\r"});
        let bounded = scrubber.result(result);
        assert!(bounded.asset.len() <= MAX_NAME_LEN, "{}", bounded.asset.len());
        assert!(bounded.asset.starts_with("üü") && bounded.asset.ends_with(" bytes]"));
        assert_eq!(bounded.findings.len(), MAX_FINDINGS);
        let message = &bounded.findings[0].message;
        assert!(message.len() <= MAX_TEXT_LEN, "{}", message.len());
        assert!(!message.contains("ghp_TWmE"), "{}", &message[16_300..]);
        assert!(message.ends_with(" bytes]"));
        assert_eq!(bounded.detail["log"], "\u{fffd}[31mred\u{fffd}");
        // What the agent sends, the coordinator accepts.
        let wire = lifeboat_proto::v1::RunResult::from(bounded);
        assert!(RunResult::try_from(wire).is_ok());
    }

    #[test]
    fn scrubbing_what_was_scrubbed_changes_nothing() {
        let (scrubber, _) = scrubber_with(vec![Secret::new("declared-Pw-42")]);
        let text = format!(
            "{GITHUB_TOKEN} postgres://app:Tr0ub4dor-9x@db:5432/rentals host=db password=hunter2 \
             declared-Pw-42 -----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----",
            PEM_BODY[0]
        );
        let once = scrubber.text(&text).into_owned();
        assert_eq!(scrubber.text(&once), once);
    }

    #[test]
    fn overlapping_finds_merge_so_nothing_between_them_survives() {
        let find = |span: Range<usize>, rank: u8| Find {
            span,
            rank,
            replacement: format!("<{rank}>"),
        };
        let merged = merge(vec![find(3..9, 5), find(0..5, 1), find(12..14, 2), find(0..5, 3)]);
        let spans: Vec<(Range<usize>, &str)> = merged
            .iter()
            .map(|find| (find.span.clone(), find.replacement.as_str()))
            .collect();
        assert_eq!(spans, [(0..9, "<1>"), (12..14, "<2>")]);
    }
}
