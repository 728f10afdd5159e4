//! A value given to a secret-looking name, found on one line whatever the syntax: the key is
//! any name token (`DB_PASSWORD`, `"password"`, `spring.datasource.password`, `--password`,
//! `$dbPass`, `<password>`), followed by a separator (`=`, `:`, `:=`, `=>`, `==`, `,` after a
//! quoted key, a `: Type =` annotation, `(` of a setter, `>` of an XML element) and a value
//! (quoted, unquoted up to the end of the token, or an environment lookup's fallback literal).

use super::Format;
use super::names::{NameSpec, words};
use super::values::is_literal_secret;

/// `[rule.assignment]` of the rule file: which key names hold a secret and how short a value
/// may be.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignmentSpec {
    #[serde(flatten)]
    pub names: NameSpec,
    /// Shortest value reported (passwords are often 7 or 8 characters).
    pub min_length: usize,
}

/// A value found on a line: its byte range in the line and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assigned {
    pub start: usize,
    pub end: usize,
    pub value: String,
}

/// Calls that read the environment or a config store; a literal after them on the same line is
/// their fallback value (`os.getenv("X", "fallback")`, `getenv("X") or "fallback"`).
const LOOKUPS: &[&str] = &[
    "getenv",
    "environ",
    "env(",
    "env.",
    "env[",
    "env::var",
    "env.fetch",
    "getordefault",
    "config(",
    "config.get",
    "settings.get",
];

impl AssignmentSpec {
    /// Every secret value assigned on `line`.
    pub fn find_in_line(&self, line: &[u8], format: Format) -> Vec<Assigned> {
        let mut found = Vec::new();
        let mut index = 0;
        while index < line.len() {
            if !is_key_byte(line[index]) {
                index += 1;
                continue;
            }
            let key_start = index;
            while index < line.len() && is_key_byte(line[index]) {
                index += 1;
            }
            if let Some(assigned) = self.assigned_to_key(line, key_start, index, format) {
                index = index.max(assigned.end);
                found.push(assigned);
            }
        }
        found
    }

    /// The secret value assigned to the key `line[key.0..key.1]` (see [`key_around`]), if any.
    pub fn find_at(&self, line: &[u8], key: (usize, usize), format: Format) -> Option<Assigned> {
        self.assigned_to_key(line, key.0, key.1, format)
    }

    fn assigned_to_key(&self, line: &[u8], key_start: usize, key_end: usize, format: Format) -> Option<Assigned> {
        let key_bytes = &line[key_start..key_end];
        if !self.names.may_match(key_bytes) || !self.names.matches(&words(&String::from_utf8_lossy(key_bytes))) {
            return None;
        }
        let assigned = value_after_key(line, key_start, key_end)?;
        is_literal_secret(&assigned.value, assigned.quoted, format, self.min_length).then_some(Assigned {
            start: assigned.start,
            end: assigned.end,
            value: assigned.value,
        })
    }
}

/// The key token (a run of key bytes) holding the first key byte of `line[from..to]` (a keyword
/// hit, which may start with a quote or another non-key byte).
pub fn key_around(line: &[u8], from: usize, to: usize) -> Option<(usize, usize)> {
    let at = from
        + line
            .get(from..to.min(line.len()))?
            .iter()
            .position(|&b| is_key_byte(b))?;
    let start = line[..at].iter().rposition(|&b| !is_key_byte(b)).map_or(0, |p| p + 1);
    let end = line[at..]
        .iter()
        .position(|&b| !is_key_byte(b))
        .map_or(line.len(), |p| at + p);
    Some((start, end))
}

fn is_key_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-' | b'$')
}

/// A candidate value and whether it was quoted.
struct Candidate {
    start: usize,
    end: usize,
    value: String,
    quoted: bool,
}

/// The value after the key at `key_start..key_end`, if the key is followed by one.
fn value_after_key(line: &[u8], key_start: usize, key_end: usize) -> Option<Candidate> {
    let before = &line[..key_start];
    let key_quote = before.last().copied().filter(|b| matches!(b, b'"' | b'\''));
    let mut index = key_end;
    if let Some(quote) = key_quote {
        if line.get(index) != Some(&quote) {
            return None;
        }
        index += 1;
        if is_attribute_name(&before[..before.len() - 1]) {
            return attribute_value(line, index);
        }
    }
    if before.last() == Some(&b'<') && line.get(index) == Some(&b'>') {
        let start = index + 1;
        let end = start + line[start..].iter().position(|&b| b == b'<')?;
        return Some(candidate(line, start, end, true));
    }
    if line.get(index) == Some(&b']') {
        index += 1;
    }
    index = skip_spaces(line, index);
    let separator_end = separator_end(line, index, key_quote.is_some(), before)?;
    let value_start = skip_spaces(line, separator_end);
    let value = literal_at(line, value_start)?;
    if value.quoted || !is_lookup(&value.value) {
        return Some(value);
    }
    fallback_literal(line, value_start)
}

/// Whether `before` (the text up to a quoted key) ends with `key=`, `name=` or `id=`: the key
/// is an attribute value and the secret is in the element's `value` (`<add key="DbPassword"
/// value="…"/>`, `<entry key="password">…</entry>`).
fn is_attribute_name(before: &[u8]) -> bool {
    let trimmed = trim_end(before);
    let Some(without_equals) = trimmed.strip_suffix(b"=") else {
        return false;
    };
    let name = trim_end(without_equals);
    [&b"key"[..], b"name", b"id"].iter().any(|attribute| {
        name.len() >= attribute.len() && name[name.len() - attribute.len()..].eq_ignore_ascii_case(attribute)
    })
}

fn attribute_value(line: &[u8], from: usize) -> Option<Candidate> {
    let rest = &line[from..];
    let tag_end = rest.iter().position(|&b| b == b'>').unwrap_or(rest.len());
    let lower: Vec<u8> = rest[..tag_end].to_ascii_lowercase();
    if let Some(position) = find(&lower, b"value=") {
        let start = from + position + b"value=".len();
        return literal_at(line, start).filter(|value| value.quoted);
    }
    // `<entry key="password">value</entry>`: the element's text.
    if tag_end < rest.len() && rest[..tag_end].last() != Some(&b'/') {
        let start = from + tag_end + 1;
        let end = start + line[start..].iter().position(|&b| b == b'<')?;
        return Some(candidate(line, start, end, true));
    }
    None
}

/// The end of the separator at `index` (after an optional `: Type` annotation).
fn separator_end(line: &[u8], index: usize, key_quoted: bool, before: &[u8]) -> Option<usize> {
    if is_define(before) && matches!(line.get(index), Some(b'"' | b'\'')) {
        return Some(index);
    }
    let rest = &line[index..];
    for separator in [&b":="[..], b"=>", b"===", b"!==", b"==", b"!="] {
        if rest.starts_with(separator) {
            return Some(index + separator.len());
        }
    }
    match rest.first() {
        Some(b'=') => Some(index + 1),
        Some(b':') => Some(type_annotation_end(line, index + 1).unwrap_or(index + 1)),
        Some(b',') if key_quoted => Some(index + 1),
        Some(b'(') if matches!(line.get(skip_spaces(line, index + 1)), Some(b'"' | b'\'')) => Some(index + 1),
        _ => None,
    }
}

/// After `:` of `password: String = "…"` / `password: &str = "…"`: the end of `= `.
fn type_annotation_end(line: &[u8], from: usize) -> Option<usize> {
    let start = skip_spaces(line, from);
    let mut index = start;
    while index < line.len() && (line[index].is_ascii_alphanumeric() || b"_&<>[]?'".contains(&line[index])) {
        index += 1;
    }
    if index == start || !line[start].is_ascii_alphabetic() && line[start] != b'&' {
        return None;
    }
    let equals = skip_spaces(line, index);
    (line.get(equals) == Some(&b'=') && line.get(equals + 1) != Some(&b'=')).then_some(equals + 1)
}

/// `#define NAME "value"` and `define NAME value`.
fn is_define(before: &[u8]) -> bool {
    let trimmed = trim_end(before).to_ascii_lowercase();
    trimmed.ends_with(b"#define") || trimmed == b"define"
}

/// The literal starting at `start`: quoted (to the closing quote) or a bare token.
fn literal_at(line: &[u8], start: usize) -> Option<Candidate> {
    let first = *line.get(start)?;
    if matches!(first, b'"' | b'\'' | b'`') {
        let mut index = start + 1;
        while index < line.len() && line[index] != first {
            index += if line[index] == b'\\' { 2 } else { 1 };
        }
        let end = index.min(line.len());
        return (index < line.len()).then(|| candidate(line, start + 1, end, true));
    }
    let end = start
        + line[start..]
            .iter()
            .position(|&b| b.is_ascii_whitespace() || b",;'\"`<>".contains(&b))
            .unwrap_or(line.len() - start);
    // A trailing `)` closes a call around the assignment (`connect(password=x)`).
    let end = if line[start..end].contains(&b'(') {
        end
    } else {
        start + line[start..end].iter().position(|&b| b == b')').unwrap_or(end - start)
    };
    (end > start).then(|| candidate(line, start, end, false))
}

fn candidate(line: &[u8], start: usize, end: usize, quoted: bool) -> Candidate {
    Candidate {
        start,
        end,
        value: String::from_utf8_lossy(&line[start..end]).trim().to_owned(),
        quoted,
    }
}

fn is_lookup(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    lower.starts_with("${") || LOOKUPS.iter().any(|lookup| lower.contains(lookup))
}

/// The fallback of an environment lookup: `${VAR:-fallback}` / `${VAR:fallback}`, or the last
/// literal after a call that reads the environment, when it follows a `,`, `or`, `||` or `??`.
fn fallback_literal(line: &[u8], from: usize) -> Option<Candidate> {
    let rest = &line[from..];
    if rest.starts_with(b"${") {
        let close = rest.iter().position(|&b| b == b'}')?;
        let inner = &rest[2..close];
        let colon = inner.iter().position(|&b| b == b':')?;
        let mut start = colon + 1;
        if inner.get(start) == Some(&b'-') {
            start += 1;
        }
        return (start < inner.len()).then(|| candidate(line, from + 2 + start, from + 2 + inner.len(), true));
    }
    let statement_end = rest.iter().position(|&b| b == b';').unwrap_or(rest.len());
    let mut literals = Vec::new();
    let mut index = 0;
    while index < statement_end {
        if matches!(rest[index], b'"' | b'\'') {
            let literal = literal_at(line, from + index)?;
            index = literal.end - from + 1;
            literals.push(literal);
        } else {
            index += 1;
        }
    }
    let last = literals.pop()?;
    let between_start = literals.last().map_or(0, |previous| previous.end + 1 - from);
    let between = String::from_utf8_lossy(&rest[between_start..last.start - 1 - from]).to_ascii_lowercase();
    let joined = between.contains(',') || between.contains(" or ") || between.contains("||") || between.contains("??");
    (!literals.is_empty() || joined).then_some(last)
}

fn skip_spaces(line: &[u8], mut index: usize) -> usize {
    while index < line.len() && matches!(line[index], b' ' | b'\t') {
        index += 1;
    }
    index
}

fn trim_end(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |p| p + 1);
    &bytes[..end]
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> AssignmentSpec {
        AssignmentSpec {
            names: NameSpec {
                words: vec!["pass".into(), "pw".into(), "pwd".into()],
                suffixes: vec!["password".into(), "passwd".into()],
                meta_words: vec!["len".into(), "name".into(), "field".into()],
                ..NameSpec::default()
            },
            min_length: 6,
        }
    }

    fn values(line: &str, format: Format) -> Vec<String> {
        spec()
            .find_in_line(line.as_bytes(), format)
            .into_iter()
            .map(|found| {
                assert_eq!(&line[found.start..found.end], found.value, "range of {line}");
                found.value
            })
            .collect()
    }

    #[test]
    fn every_syntax_gives_the_value() {
        let cases = [
            ("DB_PASSWORD=Tr0ub4dor9", Format::Config),
            ("export DB_PASSWORD='Tr0ub4dor9'", Format::Config),
            ("  password: Tr0ub4dor9  # prod", Format::Config),
            ("\"password\": \"Tr0ub4dor9\",", Format::Config),
            ("spring.datasource.password=Tr0ub4dor9", Format::Config),
            ("password = \"Tr0ub4dor9\"", Format::Config),
            ("<password>Tr0ub4dor9</password>", Format::Config),
            ("<add key=\"SmtpPassword\" value=\"Tr0ub4dor9\" />", Format::Config),
            ("<entry key=\"db.password\">Tr0ub4dor9</entry>", Format::Config),
            ("define('DB_PASSWORD', 'Tr0ub4dor9');", Format::Code),
            ("$config['db_pass'] = \"Tr0ub4dor9\";", Format::Code),
            ("#define WIFI_PASS \"Tr0ub4dor9\"", Format::Code),
            ("val password: String = \"Tr0ub4dor9\"", Format::Code),
            ("let pw: &str = \"Tr0ub4dor9\";", Format::Code),
            ("pwd := \"Tr0ub4dor9\"", Format::Code),
            ("builder.password(\"Tr0ub4dor9\")", Format::Code),
            ("conn = connect(user=\"app\", password=\"Tr0ub4dor9\")", Format::Code),
            ("PASSWORD = os.getenv(\"DB_PASSWORD\", \"Tr0ub4dor9\")", Format::Code),
            ("password = getenv(\"DB_PASSWORD\") or \"Tr0ub4dor9\"", Format::Code),
            ("const pass = process.env.DB_PASS || 'Tr0ub4dor9';", Format::Code),
            ("password: ${DB_PASSWORD:Tr0ub4dor9}", Format::Config),
            ("if password == \"Tr0ub4dor9\":", Format::Code),
            ("mysql --password=Tr0ub4dor9 -u root", Format::Unknown),
        ];
        for (line, format) in cases {
            assert_eq!(values(line, format), ["Tr0ub4dor9"], "{line}");
        }
    }

    #[test]
    fn names_of_secrets_and_code_are_not_values() {
        let cases = [
            ("password_len = MAX_PASSWORD_LEN", Format::Code),
            ("password = request.form['password']", Format::Code),
            ("password = password_input", Format::Code),
            ("DB_PASSWORD=${DB_PASSWORD}", Format::Config),
            ("password = os.getenv(\"DB_PASSWORD\")", Format::Code),
            ("password_field = form.get(\"booking\")", Format::Code),
            ("\"Password is incorrect\"", Format::Code),
            ("getPassword()", Format::Code),
            ("<password></password>", Format::Config),
            ("password: changeme", Format::Config),
            ("compass = \"Tr0ub4dor9\"", Format::Code),
        ];
        for (line, format) in cases {
            assert!(values(line, format).is_empty(), "{line}: {:?}", values(line, format));
        }
    }
}
