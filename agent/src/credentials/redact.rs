//! Passwords out of connection strings written anywhere in a text: `scheme://user:password@host`
//! (the password may hold an unescaped `@`), `?password=` / `&password=` in URL queries, libpq's
//! `password=` keyword and `…password: value` / `"…password": "value"` as configs and debug output
//! write them. What stays (scheme, user, host, database) says where a credential leads; the
//! password becomes [`REDACTED`].
//!
//! The agent's one URL redactor: PostgreSQL previews and error messages use it directly, and the
//! scrubber of everything that leaves the agent ([`crate::scrub`]) takes its spans.

use std::ops::Range;

/// What a password is replaced by.
pub const REDACTED: &str = "***";

/// Returns `text` with every password of a connection string replaced by [`REDACTED`].
pub fn redact_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for span in password_spans(text) {
        out.push_str(&text[copied..span.start]);
        out.push_str(REDACTED);
        copied = span.end;
    }
    out.push_str(&text[copied..]);
    out
}

/// Byte ranges of the passwords in `text`, in order and not overlapping; each starts and ends on
/// a character boundary.
pub fn password_spans(text: &str) -> Vec<Range<usize>> {
    let mut spans = url_password_spans(text);
    spans.extend(keyword_password_spans(text));
    spans.sort_by_key(|span| (span.start, std::cmp::Reverse(span.end)));
    let mut merged: Vec<Range<usize>> = Vec::with_capacity(spans.len());
    for span in spans {
        match merged.last_mut() {
            Some(last) if span.start < last.end => last.end = last.end.max(span.end),
            _ => merged.push(span),
        }
    }
    merged
}

/// Whether a value is no password to cut: empty, already redacted (by us or as a preview), so a
/// second pass leaves it, or a reference to one (`${RESTIC_PASSWORD}`, `$PGPASSWORD`), as
/// runbooks write them.
fn not_a_password(value: &str) -> bool {
    value.is_empty() || value == REDACTED || value.contains('…') || value.starts_with("[fp:") || value.starts_with('$')
}

/// Characters that end a URL written in running text.
fn ends_url(c: char) -> bool {
    c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`')
}

/// The userinfo passwords of `scheme://user:password@host` URLs.
fn url_password_spans(text: &str) -> Vec<Range<usize>> {
    let mut spans = Vec::new();
    let mut search_from = 0;
    while let Some(found) = text[search_from..].find("://") {
        let separator = search_from + found;
        search_from = separator + 3;
        let scheme_start = text[..separator]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-')))
            .map_or(0, |position| position + 1);
        let scheme = &text[scheme_start..separator];
        if !scheme.starts_with(|c: char| c.is_ascii_alphabetic()) {
            continue;
        }
        let start = separator + 3;
        let token_end = text[start..].find(ends_url).map_or(text.len(), |end| start + end);
        let token = &text[start..token_end];
        let Some(at) = userinfo_end(token) else {
            continue;
        };
        let userinfo = &token[..at];
        let Some(colon) = userinfo.find(':') else {
            continue;
        };
        let password = &userinfo[colon + 1..];
        if !not_a_password(password) {
            spans.push(start + colon + 1..start + at);
        }
        search_from = start + at;
    }
    spans
}

/// The `@` that ends the userinfo of a URL's text after `scheme://`: the last one before the
/// path, or, when the password holds a `/`, `?` or `#` unescaped, the last one at all.
fn userinfo_end(token: &str) -> Option<usize> {
    let authority_end = token.find(['/', '?', '#']).unwrap_or(token.len());
    token[..authority_end].rfind('@').or_else(|| {
        let at = token.rfind('@')?;
        token[..at].contains(':').then_some(at)
    })
}

/// Values of keys ending in `password` or `passwd` (any case) followed by `=` or `:`.
fn keyword_password_spans(text: &str) -> Vec<Range<usize>> {
    let lower = text.to_ascii_lowercase();
    let mut spans = Vec::new();
    for keyword in ["password", "passwd"] {
        for (position, _) in lower.match_indices(keyword) {
            let key_start = lower[..position]
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                .map_or(0, |start| start + 1);
            let in_url_query = text[..key_start].ends_with(['?', '&']);
            if let Some(span) = keyword_value(text, position + keyword.len(), in_url_query) {
                spans.push(span);
            }
        }
    }
    spans
}

/// The value after a password key ending at `after_key`: `="x"`, `= x`, `": "x"`, `\":\"x\"`.
fn keyword_value(text: &str, after_key: usize, in_url_query: bool) -> Option<Range<usize>> {
    let rest = &text[after_key..];
    let rest_trimmed = rest
        .trim_start_matches(['\\', '"', '\''])
        .trim_start_matches([' ', '\t']);
    let separator = rest_trimmed.chars().next().filter(|c| matches!(c, '=' | ':'))?;
    let value_text = rest_trimmed[separator.len_utf8()..].trim_start_matches([' ', '\t']);
    let mut value_start = text.len() - value_text.len();
    let escaped_quote = value_text.starts_with("\\\"") || value_text.starts_with("\\'");
    if escaped_quote {
        value_start += 1;
    }
    let quote = text[value_start..].chars().next().filter(|c| matches!(c, '"' | '\''));
    let value_end = match quote {
        Some(quote) => {
            value_start += 1;
            let close = text[value_start..]
                .find(quote)
                .map_or(text.len(), |end| value_start + end);
            if escaped_quote && text[..close].ends_with('\\') {
                close - 1
            } else {
                close
            }
        }
        None => {
            let ends_value =
                |c: char| c.is_whitespace() || matches!(c, '"' | '\'') || (in_url_query && matches!(c, '&' | '#'));
            text[value_start..]
                .find(ends_value)
                .map_or(text.len(), |end| value_start + end)
        }
    };
    let value = text.get(value_start..value_end)?;
    (!not_a_password(value)).then_some(value_start..value_end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_passwords_are_replaced_and_the_rest_kept() {
        assert_eq!(
            redact_passwords("cannot connect to postgres://app:s3cret@db:5432/rentals: refused"),
            "cannot connect to postgres://app:***@db:5432/rentals: refused"
        );
        assert_eq!(
            redact_passwords("postgres://app:s3cr%40t@db/x"),
            "postgres://app:***@db/x"
        );
        assert_eq!(redact_passwords("redis://:tok3n@cache:6379"), "redis://:***@cache:6379");
        assert_eq!(redact_passwords("postgres://app@db/x"), "postgres://app@db/x");
        assert_eq!(redact_passwords("no url here"), "no url here");
        assert_eq!(redact_passwords("https://example.com/a@b"), "https://example.com/a@b");
    }

    #[test]
    fn an_unescaped_at_or_slash_in_the_password_is_cut_whole() {
        assert_eq!(
            redact_passwords("mongodb://u:p@ss!word9@host/db and more"),
            "mongodb://u:***@host/db and more"
        );
        assert_eq!(
            redact_passwords("postgres://u:ab/c+d@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
    }

    #[test]
    fn query_and_keyword_passwords_are_replaced() {
        assert_eq!(
            redact_passwords("postgres://app@db/x?sslmode=require&password=hunter2&x=1"),
            "postgres://app@db/x?sslmode=require&password=***&x=1"
        );
        assert_eq!(
            redact_passwords("host=db password=hunter2 user=app"),
            "host=db password=*** user=app"
        );
        assert_eq!(
            redact_passwords("host=db password='two words' user=app"),
            "host=db password='***' user=app"
        );
        assert_eq!(redact_passwords("PGPASSWORD=hunter22 psql"), "PGPASSWORD=*** psql");
        assert_eq!(
            redact_passwords(r#"{"db_password": "hunter2", "user": "app"}"#),
            r#"{"db_password": "***", "user": "app"}"#
        );
        assert_eq!(
            redact_passwords(r#"{"message":"config {\"password\":\"hunter2\"}"}"#),
            r#"{"message":"config {\"password\":\"***\"}"}"#
        );
        assert_eq!(
            redact_passwords("password authentication failed for user \"app\""),
            "password authentication failed for user \"app\""
        );
        // References to a password, as runbooks write them, stay.
        for runbook in [
            "RESTIC_PASSWORD=\"${RESTIC_PASSWORD}\" restic restore latest",
            "psql postgres://app:${DB_PASSWORD}@db/rentals",
            "PGPASSWORD=$PGPASSWORD pg_restore",
        ] {
            assert_eq!(redact_passwords(runbook), runbook);
        }
    }

    #[test]
    fn redacting_twice_changes_nothing_more() {
        for text in [
            "postgres://app:s3cret@db/x?password=y host=db password=z",
            "mongodb://u:p@ss@host/db",
            "key: [fp:00 AKI…EPF] password: [fp:11 h…2]",
        ] {
            let once = redact_passwords(text);
            assert_eq!(redact_passwords(&once), once);
        }
    }
}
