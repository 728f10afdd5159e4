//! Searching one text with the [rule set](super::rules::RuleSet).
//!
//! 1. The keyword [prefilter](super::prefilter) runs over all of the text; a region without any
//!    keyword is never looked at again, which is what makes scanning whole trees cheap.
//! 2. A regex rule sees a window of bytes around each of its keyword hits; an assignment rule
//!    sees the line of each hit.
//! 3. Values a format says are encoded are decoded first: a Kubernetes Secret's `data:` is
//!    searched as `KEY=decoded` lines, a base64 `user:password` gives its password, a `.pgpass`
//!    line its connection URL.
//! 4. Candidates pass the filters, overlaps go to the higher priority, and each match gets its
//!    line number and [severity](super::severity::assess).

use std::collections::HashSet;

use super::filters::{has_digit_or_symbol, is_placeholder, shannon_entropy};
use super::rules::{Decode, Match, Matcher, Rule, RuleSet, Source};
use super::secret::Secret;
use super::severity;
use super::structured::Format;
use super::structured::{assignment, decode};

/// How far a window is stretched to reach a line boundary (regexes anchor on lines and words);
/// kept short because the regex pass costs per byte of window, and hot keywords (`password`,
/// `://`) open thousands of windows per megabyte of source code.
const LINE_STRETCH: usize = 128;

/// The longest stretch of one line an assignment rule looks at around a keyword hit (minified
/// files have megabyte lines).
const ASSIGNMENT_REACH: usize = 1024;

/// Names of the capture group holding the value; `secret2` exists because a regex cannot
/// repeat a group name across alternatives (`secret3` likewise).
const SECRET_GROUPS: [&str; 3] = ["secret", "secret2", "secret3"];

/// A candidate before line numbers are known.
struct Found {
    rule: usize,
    start: usize,
    end: usize,
    value: String,
}

/// Every credential in `text`, in order of offset; identical (rule, line, secret) matches once.
pub fn find<'r>(set: &'r RuleSet, text: &[u8], source: Source) -> Vec<Match<'r>> {
    let mut found = search(set, text, source);
    if source.pgpass {
        found.extend(pgpass_logins(set, text));
    }
    if decode::may_hold_kubernetes_secret(text) {
        found.extend(kubernetes_secret_values(set, text));
    }
    if found.is_empty() {
        return Vec::new();
    }
    drop_overlapped_by_higher_priority(&mut found, &set.rules);
    found.sort_by_key(|hit| (hit.start, hit.rule));

    let mut matches: Vec<Match<'r>> = Vec::with_capacity(found.len());
    let mut seen: HashSet<(usize, u32, String)> = HashSet::new();
    let mut line = 1u32;
    let mut line_counted_to = 0usize;
    for hit in found {
        line += count_newlines(&text[line_counted_to..hit.start]);
        line_counted_to = hit.start;
        if seen.insert((hit.rule, line, hit.value.clone())) {
            let rule = &set.rules[hit.rule];
            matches.push(Match {
                rule,
                severity: severity::assess(&rule.family, rule.severity, &hit.value),
                secret: Secret::new(hit.value),
                line,
                offset: hit.start,
                end: hit.end,
            });
        }
    }
    matches
}

/// The candidates of every rule in `text`, before overlaps are resolved.
fn search(set: &RuleSet, text: &[u8], source: Source) -> Vec<Found> {
    let windows = candidate_windows(set, text);
    let mut found: Vec<Found> = Vec::new();
    for (rule_index, rule_windows) in windows.iter().enumerate() {
        let rule = &set.rules[rule_index];
        match &rule.matcher {
            Matcher::Regex(_) => {
                for &(start, end) in rule_windows {
                    collect_regex_matches(rule_index, rule, text, start, end, &mut found);
                }
            }
            Matcher::Assignment(spec) => {
                // Each window is one keyword hit: only the key holding it is looked at.
                let mut last_key = None;
                for &(hit_start, hit_end) in rule_windows {
                    let (start, end) = line_near(text, hit_start, hit_end);
                    let line = &text[start..end];
                    let Some(key) = assignment::key_around(line, hit_start - start, hit_end - start) else {
                        continue;
                    };
                    if Some((start, key)) == last_key {
                        continue;
                    }
                    last_key = Some((start, key));
                    if let Some(assigned) = spec.find_at(line, key, source.format) {
                        found.push(Found {
                            rule: rule_index,
                            start: start + assigned.start,
                            end: start + assigned.end,
                            value: assigned.value,
                        });
                    }
                }
            }
        }
    }
    decode_basic_auth(set, &mut found);
    found
}

/// Per rule, the byte ranges to look at: merged windows around a regex rule's keyword hits;
/// the hits themselves for an assignment rule.
fn candidate_windows(set: &RuleSet, text: &[u8]) -> Vec<Vec<(usize, usize)>> {
    let mut windows: Vec<Vec<(usize, usize)>> = vec![Vec::new(); set.rules.len()];
    set.prefilter.for_each_hit(text, |keyword, hit_start, hit_end| {
        for &rule_index in &set.owners[keyword] {
            let rule = &set.rules[rule_index];
            let rule_windows = &mut windows[rule_index];
            if let Matcher::Assignment(_) = rule.matcher {
                rule_windows.push((hit_start, hit_end));
                continue;
            }
            let start = line_start(text, hit_start.saturating_sub(rule.window_before), LINE_STRETCH);
            let end = line_end(text, (hit_end + rule.window_after).min(text.len()), LINE_STRETCH);
            match rule_windows.last_mut() {
                Some(last) if start <= last.1 => {
                    last.0 = last.0.min(start);
                    last.1 = last.1.max(end);
                }
                _ => rule_windows.push((start, end)),
            }
        }
    });
    windows
}

fn collect_regex_matches(
    rule_index: usize,
    rule: &Rule,
    text: &[u8],
    start: usize,
    end: usize,
    found: &mut Vec<Found>,
) {
    let Matcher::Regex(regex) = &rule.matcher else {
        return;
    };
    let window = &text[start..end];
    for captures in regex.captures_iter(window) {
        let Some(secret) = SECRET_GROUPS.iter().find_map(|name| captures.name(name)) else {
            continue;
        };
        let mut value = String::from_utf8_lossy(secret.as_bytes()).into_owned();
        let password = captures.name("password");
        let checked = match password {
            Some(password) => String::from_utf8_lossy(password.as_bytes()).into_owned(),
            None => value.clone(),
        };
        // A decoded value is filtered after decoding.
        if rule.decode.is_none() && !passes_filters(rule, &checked) {
            continue;
        }
        // An unescaped `@` in a URL's password is escaped, so that every reader of the URL
        // (psql, the host parser, previews) sees the host where it is.
        if let Some(password) = password.filter(|password| password.as_bytes().contains(&b'@')) {
            let (before, after) = (password.start() - secret.start(), password.end() - secret.start());
            value = format!("{}{}{}", &value[..before], checked.replace('@', "%40"), &value[after..]);
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

/// Whether `checked` passes `rule`'s placeholder, entropy and shape filters.
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

/// Replaces each base64 `user:password` candidate by its password, reported as the specific
/// kind when another rule recognises the password (a Docker Hub token in a docker auth).
fn decode_basic_auth(set: &RuleSet, found: &mut Vec<Found>) {
    found.retain_mut(|hit| {
        let rule = &set.rules[hit.rule];
        if rule.decode != Some(Decode::BasicAuth) {
            return true;
        }
        let Some(password) = decode::basic_auth_password(&hit.value) else {
            return false;
        };
        let specific = search(set, password.as_bytes(), Source::default())
            .into_iter()
            .filter(|inner| set.rules[inner.rule].priority >= 0 && inner.value == password)
            .map(|inner| inner.rule)
            .next();
        match specific {
            Some(specific) => hit.rule = specific,
            None if passes_filters(rule, &password) => {}
            None => return false,
        }
        hit.value = password;
        true
    });
}

/// Each `data:` value of a Kubernetes Secret, searched as `KEY=decoded` and reported where the
/// encoded value sits.
fn kubernetes_secret_values(set: &RuleSet, text: &[u8]) -> Vec<Found> {
    let mut found = Vec::new();
    for entry in decode::kubernetes_secret_entries(text) {
        let line = format!("{}={}", entry.key, entry.value);
        let source = Source {
            format: Format::Config,
            pgpass: false,
        };
        for inner in search(set, line.as_bytes(), source) {
            found.push(Found {
                rule: inner.rule,
                start: entry.start,
                end: entry.end,
                value: inner.value,
            });
        }
    }
    found
}

/// Each login of a `.pgpass` file, as the connection URL the PostgreSQL analyser uses.
fn pgpass_logins(set: &RuleSet, text: &[u8]) -> Vec<Found> {
    let Some(rule) = set.rules.iter().position(|rule| rule.id == "postgres_url") else {
        return Vec::new();
    };
    let text_str = String::from_utf8_lossy(text);
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(text_str.match_indices('\n').map(|(index, _)| index + 1))
        .collect();
    decode::pgpass_entries(&text_str)
        .into_iter()
        .filter(|entry| !is_placeholder(&entry.password))
        .map(|entry| {
            let start = line_starts.get(entry.line - 1).copied().unwrap_or(0);
            Found {
                rule,
                start,
                end: start + 1,
                value: entry.url,
            }
        })
        .collect()
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

/// The line around a keyword hit, at most [`ASSIGNMENT_REACH`] bytes on either side of it.
fn line_near(text: &[u8], hit_start: usize, hit_end: usize) -> (usize, usize) {
    let floor = hit_start.saturating_sub(ASSIGNMENT_REACH);
    let start = text[floor..hit_start]
        .iter()
        .rposition(|&byte| byte == b'\n')
        .map_or(floor, |position| floor + position + 1);
    let ceiling = (hit_end + ASSIGNMENT_REACH).min(text.len());
    let end = text[hit_end..ceiling]
        .iter()
        .position(|&byte| byte == b'\n')
        .map_or(ceiling, |position| hit_end + position);
    (start, end)
}

/// The start of the line holding `offset`, if it is at most `stretch` bytes back.
fn line_start(text: &[u8], offset: usize, stretch: usize) -> usize {
    let floor = offset.saturating_sub(stretch);
    match text[floor..offset].iter().rposition(|&byte| byte == b'\n') {
        Some(position) => floor + position + 1,
        None if floor == 0 => 0,
        None => offset,
    }
}

/// The end of the line holding `offset` (its newline excluded), if at most `stretch` on.
fn line_end(text: &[u8], offset: usize, stretch: usize) -> usize {
    let ceiling = (offset + stretch).min(text.len());
    match text[offset..ceiling].iter().position(|&byte| byte == b'\n') {
        Some(position) => offset + position,
        None if ceiling == text.len() => text.len(),
        None => offset,
    }
}
