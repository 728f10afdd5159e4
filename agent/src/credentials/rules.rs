//! The credential rule set: `agent/rules/credentials.toml` (our own rules, kept as data),
//! compiled once into a keyword [prefilter](super::prefilter) and one matcher per rule: a regex,
//! or an [assignment](super::structured::assignment) spec (which key names hold a secret, in
//! any config format or language).
//!
//! How a text is searched is in [`matching`](super::matching). Every candidate goes through the
//! placeholder, entropy and shape filters ([`filters`](super::filters)), and where matches of two
//! rules overlap the lower `priority` one is dropped (a GitHub token inside a URL is reported as
//! a GitHub token, not also as "URL with password"). Each rule carries the
//! [severity](super::severity) of what its credential can destroy.
//!
//! The rule file documents its own fields; [`RuleSet::load`] validates them, and the unit tests
//! run every rule's examples and counter-examples.

use std::collections::HashSet;
use std::path::Path;
use std::sync::LazyLock;

use regex::bytes::Regex;
use serde::Deserialize;

use super::matching;
use super::prefilter::Prefilter;
use super::secret::Secret;
use super::severity::CredentialSeverity;
use super::structured::Format;
use super::structured::assignment::AssignmentSpec;

/// The rule file compiled into the agent.
const RULES_TOML: &str = include_str!("../../rules/credentials.toml");

/// Bytes before a keyword hit that a rule's regex sees, unless the rule says otherwise.
const DEFAULT_WINDOW_BEFORE: usize = 256;
/// Bytes after a keyword hit that a rule's regex sees, unless the rule says otherwise.
const DEFAULT_WINDOW_AFTER: usize = 512;

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
    severity: CredentialSeverity,
    keywords: Vec<String>,
    #[serde(default)]
    pattern: Option<String>,
    #[serde(default)]
    assignment: Option<AssignmentSpec>,
    #[serde(default)]
    decode: Option<Decode>,
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

/// How a captured value is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decode {
    /// base64 of `user:password` (docker auths, `Authorization: Basic`): the password is the
    /// secret, reported as the specific kind when another rule recognises it.
    BasicAuth,
}

/// How a rule recognises its credential.
#[derive(Debug)]
pub enum Matcher {
    /// A regex with a `secret` group, run on windows around keyword hits.
    Regex(Regex),
    /// A value assigned to a secret-looking name, on the lines of keyword hits.
    Assignment(AssignmentSpec),
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
    /// What the credential can destroy, before the value is looked at.
    pub severity: CredentialSeverity,
    /// Lowercase literals of the prefilter.
    pub keywords: Vec<String>,
    /// Where matches of two rules overlap, the lower priority is dropped.
    pub priority: i32,
    pub examples: Vec<Example>,
    pub counter_examples: Vec<String>,
    pub(super) matcher: Matcher,
    pub(super) decode: Option<Decode>,
    pub(super) min_entropy: Option<f64>,
    pub(super) require_digit_or_symbol: bool,
    pub(super) window_before: usize,
    pub(super) window_after: usize,
}

impl Rule {
    /// The pattern source (empty for an assignment rule), for diagnostics.
    pub fn pattern(&self) -> &str {
        match &self.matcher {
            Matcher::Regex(regex) => regex.as_str(),
            Matcher::Assignment(_) => "",
        }
    }
}

/// A credential found in a text by one rule.
#[derive(Debug, Clone)]
pub struct Match<'r> {
    pub rule: &'r Rule,
    pub secret: Secret,
    /// The rule's severity, raised where the value says more (a superuser login).
    pub severity: CredentialSeverity,
    /// 1-based line of the first byte of the secret.
    pub line: u32,
    /// Byte offset of the secret in the text.
    pub offset: usize,
    /// Byte offset just past the secret's text: `secret` may differ from `text[offset..end]`
    /// (an `@` escaped in a URL's password, a value decoded from base64).
    pub end: usize,
}

/// What is known about the text being searched, from its file name.
#[derive(Debug, Clone, Copy, Default)]
pub struct Source {
    /// Code or configuration: decides whether an unquoted value can be a secret.
    pub format: Format,
    /// A libpq password file: every line is a login.
    pub pgpass: bool,
}

impl Source {
    /// What the name of `path` says about its text.
    pub fn of_path(path: &Path) -> Self {
        Self {
            format: Format::of_path(path),
            pgpass: path
                .file_name()
                .and_then(|name| name.to_str())
                .is_some_and(super::structured::decode::is_pgpass_name),
        }
    }
}

/// All rules and the keyword prefilter over them.
#[derive(Debug)]
pub struct RuleSet {
    pub(super) rules: Vec<Rule>,
    pub(super) prefilter: Prefilter,
    /// For each keyword of the prefilter, the rules that own it.
    pub(super) owners: Vec<Vec<usize>>,
}

static RULES: LazyLock<RuleSet> =
    LazyLock::new(|| RuleSet::load(RULES_TOML).expect("agent/rules/credentials.toml is validated by unit tests"));

/// The compiled rule set of `agent/rules/credentials.toml`.
pub fn rules() -> &'static RuleSet {
    &RULES
}

impl RuleSet {
    /// Parses and compiles a rule file, checking every id, keyword and pattern.
    pub fn load(toml_text: &str) -> Result<Self, RuleError> {
        let file: RuleFile = toml::from_str(toml_text)?;
        let mut rules = Vec::with_capacity(file.rule.len());
        let mut ids = HashSet::new();
        let mut keyword_index: Vec<String> = Vec::new();
        let mut owners: Vec<Vec<usize>> = Vec::new();
        for spec in file.rule {
            if !ids.insert(spec.id.clone()) {
                return Err(RuleError::invalid(&spec.id, "duplicate id"));
            }
            let rule_index = rules.len();
            for keyword in &spec.keywords {
                match keyword_index.iter().position(|known| known == keyword) {
                    Some(position) => owners[position].push(rule_index),
                    None => {
                        keyword_index.push(keyword.clone());
                        owners.push(vec![rule_index]);
                    }
                }
            }
            rules.push(compile(spec)?);
        }
        let prefilter = Prefilter::new(&keyword_index)?;
        Ok(Self {
            rules,
            prefilter,
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
        self.prefilter.is_match(text)
    }

    /// Finds every credential in `text` of unknown origin, in order of offset.
    pub fn find(&self, text: &[u8]) -> Vec<Match<'_>> {
        self.find_in(text, Source::default())
    }

    /// Finds every credential in `text` read from `source`, in order of offset; identical
    /// (rule, line, secret) matches are reported once.
    pub fn find_in(&self, text: &[u8], source: Source) -> Vec<Match<'_>> {
        matching::find(self, text, source)
    }
}

/// Checks one rule's fields and compiles its matcher.
fn compile(spec: RuleSpec) -> Result<Rule, RuleError> {
    let id = spec.id.as_str();
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(RuleError::invalid(id, "id must be snake_case"));
    }
    if spec.keywords.is_empty() {
        return Err(RuleError::invalid(id, "no keywords"));
    }
    if let Some(keyword) = spec
        .keywords
        .iter()
        .find(|keyword| keyword.is_empty() || keyword.chars().any(|c| c.is_ascii_uppercase()))
    {
        return Err(RuleError::invalid(
            id,
            format!("keyword {keyword:?} must be non-empty lowercase"),
        ));
    }
    if spec.examples.is_empty() || spec.counter_examples.is_empty() {
        return Err(RuleError::invalid(
            id,
            "needs at least one example and one counter-example",
        ));
    }
    let matcher = match (spec.pattern, spec.assignment) {
        (Some(pattern), None) => {
            // Bytes, not Unicode: `\b`, `\s` and `[^…]` are ASCII/byte-wise, which keeps the
            // regexes on the fast DFA engines and works the same on non-UTF-8 text.
            let regex = regex::bytes::RegexBuilder::new(&pattern)
                .unicode(false)
                .build()
                .map_err(|err| RuleError::invalid(id, err.to_string()))?;
            if !regex.capture_names().flatten().any(|name| name == "secret") {
                return Err(RuleError::invalid(id, "pattern has no `secret` group"));
            }
            Matcher::Regex(regex)
        }
        (None, Some(assignment)) => Matcher::Assignment(assignment),
        _ => {
            return Err(RuleError::invalid(
                id,
                "needs exactly one of `pattern` and `assignment`",
            ));
        }
    };
    Ok(Rule {
        id: spec.id,
        label: spec.label,
        family: spec.family,
        severity: spec.severity,
        keywords: spec.keywords,
        priority: spec.priority,
        examples: spec.examples,
        counter_examples: spec.counter_examples,
        matcher,
        decode: spec.decode,
        min_entropy: spec.min_entropy,
        require_digit_or_symbol: spec.require_digit_or_symbol,
        window_before: spec.window_before.unwrap_or(DEFAULT_WINDOW_BEFORE),
        window_after: spec.window_after.unwrap_or(DEFAULT_WINDOW_AFTER),
    })
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
            if let Matcher::Regex(regex) = &rule.matcher {
                assert!(
                    regex.capture_names().flatten().any(|name| name == "secret"),
                    "rule {}",
                    rule.id
                );
            }
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
severity = "low"
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
}
