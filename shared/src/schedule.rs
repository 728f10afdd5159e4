//! Test schedules: 5-field cron expressions in UTC, and the usual macros (`@hourly`, `@daily`,
//! `@weekly`, `@monthly`, `@yearly`), which are written out as the 5 fields they stand for.
//!
//! Seconds and year fields are refused: they make operators' schedules ambiguous. Both binaries
//! parse schedules here, so an agent's config and the coordinator's overrides accept the same.

use std::str::FromStr as _;

/// A schedule that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid schedule {expression:?}: {reason}")]
pub struct ScheduleError {
    pub expression: String,
    pub reason: String,
}

/// The macros and the fields they stand for.
const MACROS: [(&str, &str); 7] = [
    ("@hourly", "0 * * * *"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@weekly", "0 0 * * 0"),
    ("@monthly", "0 0 1 * *"),
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
];

/// Returns the 5-field form of `expression` (a macro written out), after checking it parses.
pub fn normalize(expression: &str) -> Result<String, ScheduleError> {
    let trimmed = expression.trim();
    let fields = MACROS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(trimmed))
        .map_or(trimmed, |(_, fields)| fields);
    parse(fields)?;
    Ok(fields.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Parses a 5-field cron expression (or a macro).
pub fn parse(expression: &str) -> Result<croner::Cron, ScheduleError> {
    let error = |reason: String| ScheduleError {
        expression: expression.chars().take(100).collect(),
        reason,
    };
    let trimmed = expression.trim();
    if let Some((_, fields)) = MACROS.iter().find(|(name, _)| name.eq_ignore_ascii_case(trimmed)) {
        return parse(fields);
    }
    if trimmed.starts_with('@') {
        return Err(error(format!(
            "unknown macro; use one of {} or 5 cron fields",
            MACROS.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ")
        )));
    }
    let fields = trimmed.split_whitespace().count();
    if fields != 5 {
        return Err(error(format!(
            "expected 5 fields (minute hour day month weekday, UTC) or a macro such as @daily, got {fields} fields"
        )));
    }
    croner::Cron::from_str(trimmed).map_err(|err| error(err.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macros_are_written_out_and_fields_are_counted() {
        assert_eq!(normalize("@daily").unwrap(), "0 0 * * *");
        assert_eq!(normalize(" @Hourly ").unwrap(), "0 * * * *");
        assert_eq!(normalize("0  */6 * * *").unwrap(), "0 */6 * * *");
        assert!(normalize("@fortnightly").unwrap_err().reason.contains("@daily"));
        assert!(normalize("0 0 */6 * * *").unwrap_err().reason.contains("got 6 fields"));
        assert!(normalize("61 * * * *").is_err());
        assert!(parse("@weekly").is_ok());
    }
}
