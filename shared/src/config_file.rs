//! Loading TOML configuration files with errors an operator can act on: every error names the
//! file, the line and column, and the field. Validation that serde cannot express (references
//! between sections, ranges) reports through [`ConfigError::at`] with the span of the value.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A configuration error, located in its file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {field}{message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        /// `field `name`: ` when the field is known, empty otherwise.
        field: String,
        message: String,
    },
}

impl ConfigError {
    /// Builds an error located at `span` (byte offsets into `text`) for `field`.
    pub fn at(path: &Path, text: &str, span: Option<Range<usize>>, field: &str, message: impl Into<String>) -> Self {
        let (line, column) = span.map_or((0, 0), |span| line_and_column(text, span.start));
        let field = if field.is_empty() {
            String::new()
        } else {
            format!("field `{field}`: ")
        };
        Self::Invalid {
            path: path.to_owned(),
            line,
            column,
            field,
            message: message.into(),
        }
    }

    /// The line of the error (1-based), if located.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Invalid { line, .. } if *line > 0 => Some(*line),
            _ => None,
        }
    }
}

/// Reads and parses a TOML config file.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<(T, String), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let value = parse(path, &text)?;
    Ok((value, text))
}

/// Parses TOML text that was read from `path` (the path is only used in messages).
pub fn parse<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|err| {
        let span = err.span();
        let field = span.clone().map(|span| field_at(text, span.start)).unwrap_or_default();
        ConfigError::at(
            path,
            text,
            span,
            &field,
            err.message().trim_end_matches('\n').to_owned(),
        )
    })
}

/// Deserialises a value and refuses one outside `min..=max`, so the error carries the value's
/// line and field like any other parse error. Used through small named functions in
/// `#[serde(deserialize_with = "…")]`, one per range:
///
/// ```ignore
/// fn heartbeat<'de, D: Deserializer<'de>>(d: D) -> Result<HumanDuration, D::Error> {
///     config_file::within(d, HumanDuration::from_secs(1), HumanDuration::from_secs(3_600))
/// }
/// ```
pub fn within<'de, D, T>(deserializer: D, min: T, max: T) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de> + PartialOrd + std::fmt::Display,
{
    let value = T::deserialize(deserializer)?;
    if value < min || value > max {
        return Err(serde::de::Error::custom(format!(
            "{value} is out of range: expected {min} to {max}"
        )));
    }
    Ok(value)
}

/// [`within`] for an optional value.
pub fn within_optional<'de, D, T>(deserializer: D, min: T, max: T) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de> + PartialOrd + std::fmt::Display,
{
    // TOML has no null: the function only runs for a present key, and an absent one stays `None`
    // through `#[serde(default)]`.
    within(deserializer, min, max).map(Some)
}

/// Returns 1-based line and column of byte `offset` in `text`.
pub fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
    (line, column)
}

/// Best effort: the key written on the line that holds `offset` (`key = value` or `[table]`).
fn field_at(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |nl| nl + 1);
    let end = text[offset..].find('\n').map_or(text.len(), |nl| offset + nl);
    let line = text[start..end].trim();
    if let Some((key, _)) = line.split_once('=') {
        return key.trim().trim_matches('"').to_owned();
    }
    line.trim_matches(|c| c == '[' || c == ']').trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        listen: std::net::SocketAddr,
        ttl: crate::durations::HumanDuration,
    }

    #[test]
    fn unknown_field_names_file_line_and_field() {
        let text = "listen = \"127.0.0.1:1\"\nttl = \"1h\"\nlistne = \"x\"\n";
        let err = parse::<Sample>(Path::new("c.toml"), text).expect_err("must fail");
        let message = err.to_string();
        assert!(message.starts_with("c.toml:3:"), "{message}");
        assert!(message.contains("listne"), "{message}");
        assert_eq!(err.line(), Some(3));
    }

    #[test]
    fn bad_value_names_its_field() {
        let text = "listen = \"127.0.0.1:1\"\nttl = \"ten minutes\"\n";
        let err = parse::<Sample>(Path::new("c.toml"), text).expect_err("must fail");
        let message = err.to_string();
        assert!(message.starts_with("c.toml:2:"), "{message}");
        assert!(message.contains("field `ttl`"), "{message}");
        assert!(message.contains("invalid duration"), "{message}");
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Ranged {
        #[serde(deserialize_with = "beat")]
        beat: crate::durations::HumanDuration,
        #[serde(default, deserialize_with = "tries")]
        tries: Option<u32>,
    }

    fn beat<'de, D: serde::Deserializer<'de>>(d: D) -> Result<crate::durations::HumanDuration, D::Error> {
        use crate::durations::HumanDuration;
        within(d, HumanDuration::from_secs(1), HumanDuration::from_secs(3_600))
    }

    fn tries<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
        within_optional(d, 1, 10)
    }

    #[test]
    fn out_of_range_values_name_file_line_and_field() {
        let ok = parse::<Ranged>(Path::new("c.toml"), "beat = \"15s\"\n").expect("in range");
        assert_eq!((ok.beat.as_secs(), ok.tries), (15, None));
        let err = parse::<Ranged>(Path::new("c.toml"), "tries = 3\nbeat = \"2d\"\n").expect_err("too long");
        let message = err.to_string();
        assert!(message.starts_with("c.toml:2:"), "{message}");
        assert!(
            message.contains("field `beat`") && message.contains("2d is out of range"),
            "{message}"
        );
        let err = parse::<Ranged>(Path::new("c.toml"), "beat = \"1s\"\ntries = 0\n").expect_err("too few");
        assert!(err.to_string().starts_with("c.toml:2:"), "{err}");
        assert!(err.to_string().contains("field `tries`"), "{err}");
    }

    #[test]
    fn line_and_column_are_one_based() {
        assert_eq!(line_and_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_and_column("ab\ncd", 4), (2, 2));
    }
}
