//! The credential rule set: `agent/rules/credentials.toml` (our own rules, kept as data),
//! compiled once into an Aho-Corasick keyword prefilter and one regex per rule.
//!
//! Matching a text is two passes. The keyword automaton (ASCII case-insensitive) runs over all
//! of it; only a window of bytes around each keyword hit is then handed to the regexes of the
//! rules that own the keyword. A region without any keyword is never regex-matched, which is
//! what makes scanning whole trees cheap. Every candidate then goes through the placeholder,
//! entropy and shape filters ([`is_placeholder`], `min_entropy`, `require_digit_or_symbol`),
//! and where matches of two rules overlap the lower `priority` one is dropped (a GitHub token
//! inside a URL is reported as a GitHub token, not also as "URL with password").
//!
//! The rule file documents its own fields; [`RuleSet::load`] validates them.

use std::collections::HashSet;
use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use regex::bytes::Regex;
use serde::Deserialize;

use super::secret::Secret;

/// The rule file compiled into the agent.
const RULES_TOML: &str = include_str!("../../rules/credentials.toml");

/// Bytes before a keyword hit that a rule's regex sees, unless the rule says otherwise.
const DEFAULT_WINDOW_BEFORE: usize = 256;
/// Bytes after a keyword hit that a rule's regex sees, unless the rule says otherwise.
const DEFAULT_WINDOW_AFTER: usize = 512;
/// How far a window is stretched to reach a line boundary (regexes anchor on lines and words);
/// kept short because the regex pass costs per byte of window, and hot keywords (`password`,
/// `://`) open thousands of windows per megabyte of source code.
const LINE_STRETCH: usize = 128;

/// Names of the capture group holding the value; `secret2` exists because a regex cannot
/// repeat a group name across alternatives.
const SECRET_GROUPS: [&str; 2] = ["secret", "secret2"];

/// Why the rule file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("rule file is not valid toml: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("rule {id}: {problem}")]
    Invalid { id: String, problem: String },
    #[error("keyword automaton: {0}")]
    Keywords(#[from] aho_corasick::BuildError),
}

impl RuleError {
    fn invalid(id: &str, problem: impl Into<String>) -> Self {
        Self::Invalid {
            id: id.to_owned(),
            problem: problem.into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    rule: Vec<RuleSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    id: String,
    label: String,
    family: String,
    keywords: Vec<String>,
    pattern: String,
    #[serde(default)]
    min_entropy: Option<f64>,
    #[serde(default)]
    require_digit_or_symbol: bool,
    #[serde(default)]
    priority: i32,
    #[serde(default)]
    window_before: Option<usize>,
    #[serde(default)]
    window_after: Option<usize>,
    examples: Vec<Example>,
    counter_examples: Vec<String>,
}

/// A text the rule must find, with the secret it must capture (a unit test in data).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Example {
    pub text: String,
    pub secret: String,
}

/// One kind of credential, compiled.
#[derive(Debug)]
pub struct Rule {
    /// Stable id, the `kind` of a sighting (`railway_token`).
    pub id: String,
    /// What a human calls it ("Railway token").
    pub label: String,
    /// Which scope analyser applies (`railway`, `aws`, `kubernetes`, `postgres`, …).
    pub family: String,
    /// Lowercase literals of the prefilter.
    pub keywords: Vec<String>,
    /// Where matches of two rules overlap, the lower priority is dropped.
    pub priority: i32,
    pub examples: Vec<Example>,
    pub counter_examples: Vec<String>,
    regex: Regex,
    min_entropy: Option<f64>,
    require_digit_or_symbol: bool,
    window_before: usize,
    window_after: usize,
}

impl Rule {
    /// The pattern source, for diagnostics.
    pub fn pattern(&self) -> &str {
        self.regex.as_str()
    }
}

/// A credential found in a text by one rule.
#[derive(Debug, Clone)]
pub struct Match<'r> {
    pub rule: &'r Rule,
    pub secret: Secret,
    /// 1-based line of the first byte of the secret.
    pub line: u32,
    /// Byte offset of the secret in the text.
    pub offset: usize,
}

/// All rules and the keyword automaton over them.
#[derive(Debug)]
pub struct RuleSet {
    rules: Vec<Rule>,
    keywords: AhoCorasick,
    /// For each keyword pattern of `keywords`, the rules that own it.
    owners: Vec<Vec<usize>>,
}

static RULES: LazyLock<RuleSet> =
    LazyLock::new(|| RuleSet::load(RULES_TOML).expect("agent/rules/credentials.toml is validated by unit tests"));

/// The compiled rule set of `agent/rules/credentials.toml`.
pub fn rules() -> &'static RuleSet {
    &RULES
}

impl RuleSet {
    /// Parses and compiles a rule file, checking every id, keyword and regex.
    pub fn load(toml_text: &str) -> Result<Self, RuleError> {
        let file: RuleFile = toml::from_str(toml_text)?;
        let mut rules = Vec::with_capacity(file.rule.len());
        let mut ids = HashSet::new();
        let mut keyword_index: Vec<String> = Vec::new();
        let mut owners: Vec<Vec<usize>> = Vec::new();
        for spec in file.rule {
            let id = spec.id.clone();
            if !ids.insert(id.clone()) {
                return Err(RuleError::invalid(&id, "duplicate id"));
            }
            if id.is_empty()
                || !id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                return Err(RuleError::invalid(&id, "id must be snake_case"));
            }
            if spec.keywords.is_empty() {
                return Err(RuleError::invalid(&id, "no keywords"));
            }
            if spec.examples.is_empty() || spec.counter_examples.is_empty() {
                return Err(RuleError::invalid(
                    &id,
                    "needs at least one example and one counter-example",
                ));
            }
            // Bytes, not Unicode: `\b`, `\s` and `[^…]` are ASCII/byte-wise, which keeps the
            // regexes on the fast DFA engines and works the same on non-UTF-8 text.
            let regex = regex::bytes::RegexBuilder::new(&spec.pattern)
                .unicode(false)
                .build()
                .map_err(|err| RuleError::invalid(&id, err.to_string()))?;
            if !regex.capture_names().flatten().any(|name| name == "secret") {
                return Err(RuleError::invalid(&id, "pattern has no `secret` group"));
            }
            let rule_index = rules.len();
            for keyword in &spec.keywords {
                if keyword.is_empty() || keyword.chars().any(|c| c.is_ascii_uppercase()) {
                    return Err(RuleError::invalid(
                        &id,
                        format!("keyword {keyword:?} must be non-empty lowercase"),
                    ));
                }
                match keyword_index.iter().position(|known| known == keyword) {
                    Some(position) => owners[position].push(rule_index),
                    None => {
                        keyword_index.push(keyword.clone());
                        owners.push(vec![rule_index]);
                    }
                }
            }
            rules.push(Rule {
                id: spec.id,
                label: spec.label,
                family: spec.family,
                keywords: spec.keywords,
                priority: spec.priority,
                examples: spec.examples,
                counter_examples: spec.counter_examples,
                regex,
                min_entropy: spec.min_entropy,
                require_digit_or_symbol: spec.require_digit_or_symbol,
                window_before: spec.window_before.unwrap_or(DEFAULT_WINDOW_BEFORE),
                window_after: spec.window_after.unwrap_or(DEFAULT_WINDOW_AFTER),
            });
        }
        // A full DFA: about twice the throughput of the default NFA for ~160 case-insensitive
        // keywords (no SIMD prefilter applies to that many), for a few MB of memory.
        let keywords = AhoCorasickBuilder::new()
            .kind(Some(AhoCorasickKind::DFA))
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(&keyword_index)?;
        Ok(Self {
            rules,
            keywords,
            owners,
        })
    }

    /// Every rule, in file order.
    pub fn iter(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter()
    }

    /// The number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether the set has no rules (never true for the built-in set).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rule with this id.
    pub fn get(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|rule| rule.id == id)
    }

    /// Whether `text` contains any keyword at all (a cheap "nothing to see here").
    pub fn has_keyword(&self, text: &[u8]) -> bool {
        self.keywords.is_match(text)
    }

    /// Finds every credential in `text`, in order of offset; identical (rule, line, secret)
    /// matches are reported once.
    pub fn find(&self, text: &[u8]) -> Vec<Match<'_>> {
        let windows = self.candidate_windows(text);
        let mut found: Vec<Found> = Vec::new();
        for (rule_index, rule_windows) in windows.iter().enumerate() {
            let rule = &self.rules[rule_index];
            for &(start, end) in rule_windows {
                collect_matches(rule_index, rule, text, start, end, &mut found);
            }
        }
        if found.is_empty() {
            return Vec::new();
        }
        drop_overlapped_by_higher_priority(&mut found, &self.rules);
        found.sort_by_key(|hit| (hit.start, hit.rule));

        let mut matches: Vec<Match<'_>> = Vec::with_capacity(found.len());
        let mut seen: HashSet<(usize, u32, String)> = HashSet::new();
        let mut line = 1u32;
        let mut line_counted_to = 0usize;
        for hit in found {
            line += count_newlines(&text[line_counted_to..hit.start]);
            line_counted_to = hit.start;
            if seen.insert((hit.rule, line, hit.value.clone())) {
                matches.push(Match {
                    rule: &self.rules[hit.rule],
                    secret: Secret::new(hit.value),
                    line,
                    offset: hit.start,
                });
            }
        }
        matches
    }

    /// Per rule, the merged byte windows around its keyword hits.
    fn candidate_windows(&self, text: &[u8]) -> Vec<Vec<(usize, usize)>> {
        let mut windows: Vec<Vec<(usize, usize)>> = vec![Vec::new(); self.rules.len()];
        for hit in self.keywords.find_overlapping_iter(text) {
            for &rule_index in &self.owners[hit.pattern().as_usize()] {
                let rule = &self.rules[rule_index];
                let start = line_start(text, hit.start().saturating_sub(rule.window_before));
                let end = line_end(text, (hit.end() + rule.window_after).min(text.len()));
                let rule_windows = &mut windows[rule_index];
                match rule_windows.last_mut() {
                    Some(last) if start <= last.1 => {
                        last.0 = last.0.min(start);
                        last.1 = last.1.max(end);
                    }
                    _ => rule_windows.push((start, end)),
                }
            }
        }
        windows
    }
}

/// A candidate before line numbers are known.
struct Found {
    rule: usize,
    start: usize,
    end: usize,
    value: String,
}

fn collect_matches(rule_index: usize, rule: &Rule, text: &[u8], start: usize, end: usize, found: &mut Vec<Found>) {
    let window = &text[start..end];
    for captures in rule.regex.captures_iter(window) {
        let Some(secret) = SECRET_GROUPS.iter().find_map(|name| captures.name(name)) else {
            continue;
        };
        let value = String::from_utf8_lossy(secret.as_bytes()).into_owned();
        let checked = match captures.name("password") {
            Some(password) => String::from_utf8_lossy(password.as_bytes()).into_owned(),
            None => value.clone(),
        };
        if !passes_filters(rule, &checked) {
            continue;
        }
        let absolute = start + secret.start();
        if found
            .iter()
            .any(|other| other.rule == rule_index && other.start == absolute)
        {
            continue;
        }
        found.push(Found {
            rule: rule_index,
            start: absolute,
            end: start + secret.end(),
            value,
        });
    }
}

fn passes_filters(rule: &Rule, checked: &str) -> bool {
    if is_placeholder(checked) {
        return false;
    }
    if let Some(min_entropy) = rule.min_entropy
        && shannon_entropy(checked) < min_entropy
    {
        return false;
    }
    if rule.require_digit_or_symbol && !has_digit_or_symbol(checked) {
        return false;
    }
    true
}

/// Drops every match that overlaps a match of a rule with a higher priority.
fn drop_overlapped_by_higher_priority(found: &mut Vec<Found>, rules: &[Rule]) {
    if found.len() < 2 {
        return;
    }
    let spans: Vec<(usize, usize, i32)> = found
        .iter()
        .map(|hit| (hit.start, hit.end, rules[hit.rule].priority))
        .collect();
    found.retain(|hit| {
        let priority = rules[hit.rule].priority;
        !spans
            .iter()
            .any(|&(start, end, other)| other > priority && start < hit.end && hit.start < end)
    });
}

fn count_newlines(bytes: &[u8]) -> u32 {
    let count = bytes.iter().filter(|&&byte| byte == b'\n').count();
    u32::try_from(count).unwrap_or(u32::MAX)
}

/// The start of the line holding `offset`, if it is at most [`LINE_STRETCH`] bytes back.
fn line_start(text: &[u8], offset: usize) -> usize {
    let floor = offset.saturating_sub(LINE_STRETCH);
    match text[floor..offset].iter().rposition(|&byte| byte == b'\n') {
        Some(position) => floor + position + 1,
        None if floor == 0 => 0,
        None => offset,
    }
}

/// The end of the line holding `offset` (its newline excluded), if at most [`LINE_STRETCH`] on.
fn line_end(text: &[u8], offset: usize) -> usize {
    let ceiling = (offset + LINE_STRETCH).min(text.len());
    match text[offset..ceiling].iter().position(|&byte| byte == b'\n') {
        Some(position) => offset + position,
        None if ceiling == text.len() => text.len(),
        None => offset,
    }
}

/// Substrings (lowercase) that mark a value as documentation or a template, not a credential.
const PLACEHOLDER_MARKERS: &[&str] = &[
    "example",
    "xxxx",
    "changeme",
    "change_me",
    "change-me",
    "change-this",
    "changethis",
    "placeholder",
    "your_",
    "your-",
    "yourkey",
    "yourtoken",
    "yourpass",
    "yoursecret",
    "insert_",
    "insert-",
    "replace_me",
    "replace-me",
    "replaceme",
    "redacted",
    "dummy",
    "sample",
    "fake",
    "****",
    "password",
    "omitted",
    "goes-here",
    "goes_here",
    "...",
    "…",
    "${",
    "{{",
    "}}",
    "$(",
    "%s",
    "%(",
    "<",
    ">",
];

/// Whole values (lowercase) that are names, not secrets.
const PLACEHOLDER_VALUES: &[&str] = &[
    "pass",
    "passwd",
    "pwd",
    "secret",
    "null",
    "none",
    "nil",
    "undefined",
    "true",
    "false",
    "string",
    "token",
    "apikey",
    "api_key",
    "test",
    "guest",
    "admin",
    "root",
    "user",
    "username",
    "default",
];

/// Whether `value` is a placeholder, a template or too regular to be a real secret: a marker
/// such as `example`, `xxxx`, `changeme`, `${VAR}`, `<...>`; one character making up half of
/// it; a run of six ascending characters (`abcdef`, `123456`); or letters and digits that
/// each count up (`a1b2c3d4e5f6g7h8`).
pub fn is_placeholder(value: &str) -> bool {
    let trimmed = value.trim();
    if trimmed.len() < 3 {
        return true;
    }
    let lower = trimmed.to_ascii_lowercase();
    if PLACEHOLDER_VALUES.contains(&lower.as_str()) {
        return true;
    }
    if PLACEHOLDER_MARKERS.iter().any(|marker| lower.contains(marker)) {
        return true;
    }
    if lower.starts_with('$') || (lower.starts_with('%') && lower.ends_with('%')) {
        return true;
    }
    let significant: Vec<u8> = lower
        .bytes()
        .filter(|byte| !matches!(byte, b'-' | b'_' | b'.' | b':'))
        .collect();
    if significant.is_empty() || dominant_byte_count(&significant) * 2 > significant.len() {
        return true;
    }
    if has_ascending_run(&significant, 6) {
        return true;
    }
    // `a1b2c3d4e5f6g7h8`: letters and digits each counting up.
    let letters: Vec<u8> = significant.iter().copied().filter(u8::is_ascii_alphabetic).collect();
    let digits: Vec<u8> = significant.iter().copied().filter(u8::is_ascii_digit).collect();
    has_ascending_run(&letters, 8) || has_ascending_run(&digits, 8)
}

fn dominant_byte_count(bytes: &[u8]) -> usize {
    let mut counts = [0usize; 256];
    for &byte in bytes {
        counts[usize::from(byte)] += 1;
    }
    counts.into_iter().max().unwrap_or(0)
}

fn has_ascending_run(bytes: &[u8], length: usize) -> bool {
    let mut run = 1;
    for pair in bytes.windows(2) {
        if pair[0].is_ascii_alphanumeric() && pair[1] == pair[0].wrapping_add(1) {
            run += 1;
            if run >= length {
                return true;
            }
        } else {
            run = 1;
        }
    }
    false
}

/// Shannon entropy of the characters of `value`, in bits per character.
pub fn shannon_entropy(value: &str) -> f64 {
    let bytes = value.as_bytes();
    if bytes.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &byte in bytes {
        counts[usize::from(byte)] += 1;
    }
    let total = bytes.len() as f64;
    counts
        .iter()
        .filter(|&&count| count > 0)
        .map(|&count| {
            let probability = f64::from(count) / total;
            -probability * probability.log2()
        })
        .sum()
}

fn has_digit_or_symbol(value: &str) -> bool {
    value
        .chars()
        .any(|c| c.is_ascii_digit() || (c.is_ascii_punctuation() && !matches!(c, '_' | '.' | '-')))
}

/// The preview of a secret that may be shown: for a URL with a password
/// (`postgres://app:s3cret@db:5432/rentals`) the URL with only the password replaced by its
/// own [`Secret::preview`] (`postgres://app:…@db:5432/rentals`), since user, host and database
/// say where the credential leads and are not secret; for anything else [`Secret::preview`].
pub fn redacted_preview(secret: &Secret) -> String {
    let value = secret.expose();
    if let Some((scheme_end, user_end, at)) = url_password_span(value) {
        let password = Secret::new(&value[user_end + 1..at]);
        return format!(
            "{}{}:{}{}",
            &value[..scheme_end],
            &value[scheme_end..user_end],
            password.preview(),
            &value[at..]
        );
    }
    secret.preview()
}

/// For `scheme://user:password@host…`: (end of `scheme://`, offset of the `:` before the
/// password, offset of the `@` after it).
fn url_password_span(value: &str) -> Option<(usize, usize, usize)> {
    let scheme_end = value.find("://")? + 3;
    if !value[..scheme_end - 3]
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'.' | b'-'))
    {
        return None;
    }
    let rest = &value[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let at = authority.rfind('@')?;
    let colon = authority[..at].find(':')?;
    Some((scheme_end, scheme_end + colon, scheme_end + at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets_of<'a>(set: &'a RuleSet, text: &str) -> Vec<(&'a str, String)> {
        set.find(text.as_bytes())
            .into_iter()
            .map(|found| (found.rule.id.as_str(), found.secret.expose().to_owned()))
            .collect()
    }

    #[test]
    fn rule_file_parses_and_every_regex_compiles_with_a_secret_group() {
        let set = RuleSet::load(RULES_TOML).expect("rule file loads");
        assert!(set.len() >= 45, "only {} rules", set.len());
        for rule in set.iter() {
            assert!(
                rule.regex.capture_names().flatten().any(|name| name == "secret"),
                "rule {}",
                rule.id
            );
        }
    }

    #[test]
    fn every_rule_matches_its_examples_and_not_its_counter_examples() {
        let set = rules();
        let mut failures = Vec::new();
        for rule in set.iter() {
            for example in &rule.examples {
                let found = secrets_of(set, &example.text);
                if !found
                    .iter()
                    .any(|(id, secret)| *id == rule.id && *secret == example.secret)
                {
                    failures.push(format!("{}: example {:?} gave {:?}", rule.id, example.text, found));
                }
            }
            for counter in &rule.counter_examples {
                let found = secrets_of(set, counter);
                if found.iter().any(|(id, _)| *id == rule.id) {
                    failures.push(format!("{}: counter-example {:?} matched", rule.id, counter));
                }
            }
        }
        assert!(
            failures.is_empty(),
            "{} failures:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }

    #[test]
    fn families_the_scope_analysers_key_on_exist() {
        let families: HashSet<&str> = rules().iter().map(|rule| rule.family.as_str()).collect();
        for family in ["railway", "aws", "kubernetes", "postgres"] {
            assert!(families.contains(family), "no rule of family {family}");
        }
    }

    #[test]
    fn invalid_rules_are_rejected() {
        let missing_group = r#"
[[rule]]
id = "x"
label = "X"
family = "generic"
keywords = ["x"]
pattern = 'x(?P<value>y)'
examples = [{ text = "xy", secret = "y" }]
counter_examples = ["x"]
"#;
        assert!(matches!(RuleSet::load(missing_group), Err(RuleError::Invalid { .. })));
        let bad_regex = missing_group.replace("x(?P<value>y)", "x(?P<secret>y");
        assert!(matches!(RuleSet::load(&bad_regex), Err(RuleError::Invalid { .. })));
        let upper_keyword = missing_group
            .replace("x(?P<value>y)", "x(?P<secret>y)")
            .replace("[\"x\"]", "[\"X\"]");
        assert!(matches!(RuleSet::load(&upper_keyword), Err(RuleError::Invalid { .. })));
    }

    #[test]
    fn lines_are_one_based_and_found_in_non_utf8_text() {
        let mut text = b"first line\n\xff\xfe binary-ish \xc3\n".to_vec();
        text.extend_from_slice(b"RAILWAY_TOKEN=6e8cd94e-7223-468a-a552-9b0566567bc4\n");
        let found = rules().find(&text);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].rule.id, "railway_token");
        assert_eq!(found[0].line, 3);
    }

    #[test]
    fn a_specific_rule_wins_over_a_generic_one_on_the_same_text() {
        let found = secrets_of(
            rules(),
            "url = https://x-access-token:ghs_TWmE4lBYOvfZ8UzDzV8fUkkibjL5DZPjN0ME@github.com/o/r",
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "github_server_to_server_token");
    }

    #[test]
    fn text_without_keywords_matches_nothing() {
        assert!(!rules().has_keyword(b"fn main() { println!(\"hello\"); }"));
        assert!(rules().find(b"fn main() { println!(\"hello\"); }").is_empty());
    }

    #[test]
    fn placeholders_are_recognised() {
        for value in [
            "YOUR_KEY_HERE",
            "${VAR}",
            "xxxxxxxx",
            "<token>",
            "changeme",
            "aaaaaaaaaaaa",
            "abcdef123",
            "EXAMPLEKEY",
        ] {
            assert!(is_placeholder(value), "{value}");
        }
        for value in ["Tr0ub4dor-9x", "6e8cd94e-7223-468a-a552-9b0566567bc4", "w9Kd2xPq7Lm"] {
            assert!(!is_placeholder(value), "{value}");
        }
    }

    #[test]
    fn entropy_of_uniform_and_random_strings() {
        assert!(shannon_entropy("aaaaaaaa") < 0.01);
        assert!((shannon_entropy("abcdabcd") - 2.0).abs() < 1e-9);
        assert!(shannon_entropy("2hpChYgCfrL1spNxnyVmihA+2O76UMFxFkM+R5Kj") > 4.5);
    }

    #[test]
    fn url_previews_hide_only_the_password() {
        let secret = Secret::new("postgres://app:Tr0ub4dor-9x@db:5432/rentals");
        assert_eq!(redacted_preview(&secret), "postgres://app:Tr…9x@db:5432/rentals");
        let short = Secret::new("postgres://app:s3cr3t@db:5432/rentals");
        assert_eq!(redacted_preview(&short), "postgres://app:s…t@db:5432/rentals");
        let tiny = Secret::new("redis://:abcd@cache:6379");
        assert_eq!(redacted_preview(&tiny), "redis://:…@cache:6379");
        assert_eq!(redacted_preview(&Secret::new("AKIAUJZDEGXDNCF32EPF")), "AKI…EPF");
        let at_in_password = Secret::new("mongodb://u:p@ss!word9@host/db");
        assert!(!redacted_preview(&at_in_password).contains("ss!wor"));
    }
}
