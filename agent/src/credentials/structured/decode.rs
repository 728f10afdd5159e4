//! Values a format says are encoded, decoded so the rules see the secret itself:
//!
//! - Kubernetes `kind: Secret` manifests (YAML or JSON, several documents per file): every
//!   `data:` value is base64; each is handed back as `KEY=decoded` with where it sits.
//! - `user:password` in base64 (docker `auths.*.auth`, `Authorization: Basic …`): the password.
//! - `.pgpass` lines (`host:port:database:user:password`): the
//!   `postgresql://user:password@host:port/database` URL the PostgreSQL analyser connects with.

use std::sync::LazyLock;

use aho_corasick::AhoCorasick;
use serde_yaml_ng::Value;

/// One decoded `data:` entry of a Kubernetes Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedEntry {
    /// The entry's key (`POSTGRES_PASSWORD`, `.dockerconfigjson`).
    pub key: String,
    /// The decoded value (lossy UTF-8).
    pub value: String,
    /// Byte range of the encoded value in the text.
    pub start: usize,
    pub end: usize,
}

/// Whether `text` may hold a Kubernetes Secret (a cheap test before parsing).
pub fn may_hold_kubernetes_secret(text: &[u8]) -> bool {
    static MARKERS: LazyLock<Option<AhoCorasick>> = LazyLock::new(|| {
        AhoCorasick::new([
            "kind: Secret",
            "\"kind\": \"Secret\"",
            "\"kind\":\"Secret\"",
            "kind: \"Secret\"",
        ])
        .ok()
    });
    MARKERS.as_ref().is_some_and(|markers| markers.is_match(text))
}

/// Every `data:` entry of every Kubernetes Secret in `text`, decoded. A document that does not
/// parse is skipped (the line rules still see it).
pub fn kubernetes_secret_entries(text: &[u8]) -> Vec<DecodedEntry> {
    let text = String::from_utf8_lossy(text);
    let mut entries = Vec::new();
    for (offset, document) in documents(&text) {
        let Ok(value) = serde_yaml_ng::from_str::<Value>(document) else {
            continue;
        };
        let is_secret = value.get("kind").and_then(Value::as_str) == Some("Secret");
        let Some(data) = value.get("data").and_then(Value::as_mapping).filter(|_| is_secret) else {
            continue;
        };
        let mut search_from = 0;
        for (key, encoded) in data {
            let (Some(key), Some(encoded)) = (key.as_str(), encoded.as_str()) else {
                continue;
            };
            let encoded = encoded.trim();
            let (Some(decoded), Some(position)) = (decode_base64(encoded), document[search_from..].find(encoded))
            else {
                continue;
            };
            let start = search_from + position;
            search_from = start + encoded.len();
            entries.push(DecodedEntry {
                key: key.to_owned(),
                value: String::from_utf8_lossy(&decoded).into_owned(),
                start: offset + start,
                end: offset + start + encoded.len(),
            });
        }
    }
    entries
}

/// The YAML documents of `text` (split at `---` lines), each with its byte offset.
fn documents(text: &str) -> Vec<(usize, &str)> {
    let mut documents = Vec::new();
    let mut start = 0;
    let mut line_start = 0;
    for line in text.split_inclusive('\n') {
        if line.starts_with("---") && line_start > start {
            documents.push((start, &text[start..line_start]));
            start = line_start + line.len();
        } else if line.starts_with("---") {
            start = line_start + line.len();
        }
        line_start += line.len();
    }
    if start < text.len() {
        documents.push((start, &text[start..]));
    }
    documents
}

/// The password of a base64 `user:password` (docker auths, HTTP Basic), if it decodes to one.
pub fn basic_auth_password(encoded: &str) -> Option<String> {
    let decoded = decode_base64(encoded)?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (_user, password) = decoded.split_once(':')?;
    (!password.is_empty() && !password.contains(['\n', '\0'])).then(|| password.to_owned())
}

/// Whether a file name is a libpq password file (`.pgpass`, `pgpass.conf`, `*.pgpass`).
pub fn is_pgpass_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower == ".pgpass" || lower == "pgpass.conf" || lower.ends_with(".pgpass")
}

/// One `.pgpass` entry as a connection URL, with its 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgpassEntry {
    pub line: usize,
    pub url: String,
    /// The password as written (for the placeholder filter).
    pub password: String,
}

/// Every entry of a `.pgpass` text (`hostname:port:database:username:password`, `\:` and `\\`
/// escaped, `*` a wildcard) as a `postgresql://` URL.
pub fn pgpass_entries(text: &str) -> Vec<PgpassEntry> {
    let mut entries = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let fields = split_pgpass_line(line);
        let [host, port, database, user, password] = fields.as_slice() else {
            continue;
        };
        if password.is_empty() {
            continue;
        }
        let host = if host == "*" { "localhost" } else { host.as_str() };
        let port = if port == "*" { "5432" } else { port.as_str() };
        let database = if database == "*" {
            String::new()
        } else {
            format!("/{}", percent_encode(database))
        };
        entries.push(PgpassEntry {
            line: index + 1,
            url: format!(
                "postgresql://{}:{}@{host}:{port}{database}",
                percent_encode(user),
                percent_encode(password)
            ),
            password: password.clone(),
        });
    }
    entries
}

fn split_pgpass_line(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        let field = match c {
            ':' if fields.len() < 5 => {
                fields.push(String::new());
                continue;
            }
            '\\' => match chars.next() {
                Some(escaped) => escaped,
                None => continue,
            },
            other => other,
        };
        if let Some(last) = fields.last_mut() {
            last.push(field);
        }
    }
    fields
}

/// Percent-encodes everything but RFC 3986 unreserved characters (for URL user and password).
pub fn percent_encode(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Standard or URL-safe base64 (padding optional); `None` for anything else.
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let mut bits: u32 = 0;
    let mut bit_count = 0;
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for byte in text.trim().trim_end_matches('=').bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(value);
        bit_count += 6;
        if bit_count >= 8 {
            bit_count -= 8;
            out.push(u8::try_from((bits >> bit_count) & 0xff).ok()?);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_secret_data_is_decoded_with_its_place() {
        let text = "apiVersion: v1\nkind: ConfigMap\ndata:\n  a: YWRtaW4=\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ntype: Opaque\ndata:\n  username: YWRtaW4=\n  POSTGRES_PASSWORD: VHIwdWI0ZG9yLTl4\n";
        assert!(may_hold_kubernetes_secret(text.as_bytes()));
        let entries = kubernetes_secret_entries(text.as_bytes());
        let decoded: Vec<(&str, &str)> = entries
            .iter()
            .map(|entry| (entry.key.as_str(), entry.value.as_str()))
            .collect();
        assert_eq!(decoded, [("username", "admin"), ("POSTGRES_PASSWORD", "Tr0ub4dor-9x")]);
        assert_eq!(&text[entries[1].start..entries[1].end], "VHIwdWI0ZG9yLTl4");
        assert!(entries[0].start > text.find("kind: Secret").expect("secret"));
    }

    #[test]
    fn json_secrets_and_broken_documents() {
        let json = r#"{"apiVersion": "v1", "kind": "Secret", "data": {"token": "czNjcjN0LXRva2Vu"}}"#;
        assert_eq!(kubernetes_secret_entries(json.as_bytes())[0].value, "s3cr3t-token");
        assert!(kubernetes_secret_entries(b"kind: Secret\ndata: [unclosed\n").is_empty());
    }

    #[test]
    fn basic_auth_and_pgpass() {
        assert_eq!(
            basic_auth_password("dXNlcjpwQHNzOndvcmQ=").as_deref(),
            Some("p@ss:word")
        );
        assert_eq!(basic_auth_password("bm9jb2xvbg=="), None);
        let entries = pgpass_entries("# c\ndb:5432:rentals:app:Tr0ub4dor\\:9x\n*:*:*:backup:w9Kd2xPq7Lm\n");
        assert_eq!(entries[0].url, "postgresql://app:Tr0ub4dor%3A9x@db:5432/rentals");
        assert_eq!(entries[0].line, 2);
        assert_eq!(entries[1].url, "postgresql://backup:w9Kd2xPq7Lm@localhost:5432");
        assert!(is_pgpass_name(".pgpass") && is_pgpass_name("pgpass.conf") && !is_pgpass_name("pgpass.md"));
        assert_eq!(
            split_pgpass_line(r"h:5432:d:u:p\:a\\ss:more"),
            vec!["h", "5432", "d", "u", r"p:a\ss:more"]
        );
        assert_eq!(decode_base64("not base64!"), None);
        assert_eq!(percent_encode("a:b@c/d"), "a%3Ab%40c%2Fd");
    }
}
