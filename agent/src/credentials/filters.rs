//! The filters every candidate value passes before it is reported (placeholders, templates,
//! too-regular values, entropy, character classes), and the redacted preview of a found value
//! (a URL keeps everything but its password).

use super::secret::Secret;

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
    "postgres",
    "mysql",
    "redis",
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
    // What Lifeboat's own scrubber left in place of a secret (`[fp:… preview]`).
    if trimmed.starts_with("[fp:") {
        return true;
    }
    let lower = trimmed.to_ascii_lowercase();
    if PLACEHOLDER_VALUES.contains(&lower.as_str()) {
        return true;
    }
    if PLACEHOLDER_MARKERS.iter().any(|marker| lower.contains(marker)) {
        return true;
    }
    // `$VAR`, `${VAR}`, `$(cmd)`; not `$6$…` or `$2b$…` (password hashes start with a digit).
    let variable = lower
        .strip_prefix('$')
        .and_then(|rest| rest.bytes().next())
        .is_some_and(|next| next.is_ascii_alphabetic() || matches!(next, b'_' | b'{' | b'('));
    if variable || (lower.starts_with('%') && lower.ends_with('%')) || has_named_format(&lower) {
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

/// `%(name)s`: a Python format template (a random secret may well contain `%(` alone).
fn has_named_format(value: &str) -> bool {
    value.match_indices("%(").any(|(index, _)| {
        let rest = &value[index + 2..];
        rest.find(')')
            .is_some_and(|close| close > 0 && rest[..close].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
    })
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

pub(crate) fn has_digit_or_symbol(value: &str) -> bool {
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
            "%(password)s",
        ] {
            assert!(is_placeholder(value), "{value}");
        }
        for value in [
            "Tr0ub4dor-9x",
            "6e8cd94e-7223-468a-a552-9b0566567bc4",
            "w9Kd2xPq7Lm",
            "k2^xw!%(+=q9@vb7-Lm3",
        ] {
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
