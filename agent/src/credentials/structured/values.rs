//! Whether the value given to a secret-looking name is a literal secret: not code (an
//! identifier, a constant, a call, a dotted path), not a reference (`$VAR`, `${VAR}`, `%VAR%`,
//! a file path, a URL without credentials) and not a placeholder.

use super::super::filters::{is_placeholder, shannon_entropy};
use super::Format;

/// Longest value considered (longer ones are blobs, certificates or data).
const MAX_LENGTH: usize = 256;

/// Whether `value` is a literal secret of at least `min_length` characters. `quoted` says it
/// was written between quotes (then it is a string literal even in code).
pub fn is_literal_secret(value: &str, quoted: bool, format: Format, min_length: usize) -> bool {
    let length = value.chars().count();
    if length < min_length || length > MAX_LENGTH || value.chars().any(char::is_whitespace) {
        return false;
    }
    if is_placeholder(value) || is_reference(value) || is_code_like(value, quoted) {
        return false;
    }
    if !quoted && format != Format::Config && is_identifier(value) {
        return false;
    }
    if is_letters_only(value) && length < 12 {
        return false;
    }
    let classes = character_classes(value);
    if classes >= 2 {
        return shannon_entropy(value) >= 2.0;
    }
    length >= 16 && shannon_entropy(value) >= 3.0
}

/// `$VAR`, `${VAR}`, `%VAR%`, `{{ var }}`, `#{var}`, `@var`, YAML aliases and tags, paths,
/// URLs without a password, and file names of key material.
fn is_reference(value: &str) -> bool {
    let first = value.chars().next().unwrap_or(' ');
    if matches!(first, '$' | '%' | '&' | '*' | '!' | '@' | '#' | '<' | '/' | '~' | '\\') {
        return true;
    }
    if value.starts_with("./") || value.starts_with("../") || value.get(1..3) == Some(":\\") {
        return true;
    }
    if value.contains("{{") || value.contains("#{") || value.contains("${") {
        return true;
    }
    if let Some((scheme, _)) = value.split_once("://") {
        return scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+');
    }
    let lower = value.to_ascii_lowercase();
    [
        ".pem", ".key", ".crt", ".txt", ".json", ".yaml", ".yml", ".p12", ".pfx", ".jks", ".env",
    ]
    .iter()
    .any(|extension| lower.ends_with(extension))
}

/// Calls, indexing, member access on identifiers and constants: `os.environ["X"]`,
/// `config.db.password`, `MLKEM_SHARED_SECRET_BYTES`, `Settings::PASSWORD`. Brackets only
/// count outside quotes: a quoted password may well contain them.
fn is_code_like(value: &str, quoted: bool) -> bool {
    let expression = value.contains(['(', ')', '[', ']', '{', '}', ';']) || value.contains("->");
    if (!quoted && expression) || value.contains("::") {
        return true;
    }
    let is_constant = value.contains('_')
        && value
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        && value.bytes().next().is_some_and(|b| b.is_ascii_uppercase());
    let parts: Vec<&str> = value.split('.').collect();
    let is_dotted_path = parts.len() >= 2 && parts.iter().all(|part| is_identifier(part) && !part.is_empty());
    is_constant || is_dotted_path
}

/// Letters, digits and `_`, starting with a letter or `_`, with no digit: a variable name.
fn is_identifier(value: &str) -> bool {
    let mut bytes = value.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !value.bytes().any(|b| b.is_ascii_digit())
}

fn is_letters_only(value: &str) -> bool {
    value.bytes().all(|b| b.is_ascii_alphabetic())
}

/// How many of lowercase, uppercase, digits and symbols appear.
fn character_classes(value: &str) -> usize {
    let bytes = value.as_bytes();
    [
        bytes.iter().any(u8::is_ascii_lowercase),
        bytes.iter().any(u8::is_ascii_uppercase),
        bytes.iter().any(u8::is_ascii_digit),
        bytes.iter().any(|b| !b.is_ascii_alphanumeric()),
    ]
    .into_iter()
    .filter(|&present| present)
    .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_secrets_pass() {
        for value in [
            "hunter22",
            "Tr0ub4dor",
            "s3cr3t!!",
            "k9#mQ2",
            "6fb1cff7690db9ac066cadbbde8e3c07",
        ] {
            assert!(is_literal_secret(value, true, Format::Code, 6), "{value}");
        }
        assert!(is_literal_secret("Xk2mQ9", false, Format::Config, 6));
    }

    #[test]
    fn code_references_and_placeholders_do_not() {
        for value in [
            "MLKEM_SHARED_SECRET_BYTES",
            "self.password",
            "config.db.password",
            "${DB_PASSWORD}",
            "$DB_PASSWORD",
            "%DB_PASSWORD%",
            "{{ .Values.password }}",
            "/run/secrets/db_password",
            "secrets/db.txt",
            "https://vault.internal/v1/secret",
            "changeme",
            "password123",
            "Settings::PASSWORD",
            "short",
            "aaaaaaaa1",
        ] {
            assert!(!is_literal_secret(value, true, Format::Code, 6), "{value}");
        }
        assert!(!is_literal_secret("passwordInput", false, Format::Code, 6));
        assert!(!is_literal_secret("dbPassword", false, Format::Unknown, 6));
        assert!(!is_literal_secret("os.environ[\"X\"]", false, Format::Code, 6));
        assert!(is_literal_secret("k(3]x!9{q", true, Format::Code, 6));
    }
}
