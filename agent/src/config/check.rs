//! `[[test.check]]`: one business check against the restored sandbox, parsed into exactly one
//! kind when the config is loaded.
//!
//! A check is `sql` (with optional `min`/`max`), `row_counts`, `schema = true`, `transaction`,
//! `command`, `service` + `http` (with `expect_status`, `expect_body`), or `integrity = true`.
//! Setting two kinds, none, or a key of another kind (`min` on a `command`) is an error at the
//! check's line: a typo never silently turns one check into another.

use serde::Deserialize;

/// One check, typed.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawCheck")]
pub struct CheckSpec {
    pub name: String,
    pub kind: CheckKind,
    /// For `command` and `service`: host paths the program may read (its own files, a
    /// virtualenv), bound read-only into the sandbox's jail; it sees nothing else but `/usr`.
    pub paths: Vec<String>,
}

/// What a check does.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckKind {
    /// A query whose first value must be true, or a number within the bounds (non-zero when
    /// there are none).
    Sql {
        sql: String,
        min: Option<f64>,
        max: Option<f64>,
    },
    /// Row counts of the restored tables against production's (read-only).
    RowCounts { tables: Vec<String>, tolerance: Tolerance },
    /// The restored schema against production's: differences are drift.
    Schema,
    /// A write workflow in one transaction in the sandbox.
    Transaction { sql: String },
    /// A shell command (the operator's) that must exit 0.
    Command { command: String },
    /// The operator's application started against the sandbox, answering HTTP.
    Service {
        service: String,
        http: String,
        expect_status: u16,
        expect_body: Option<String>,
    },
    /// `pg_amcheck`, `PRAGMA integrity_check` or `restic check`, per asset kind.
    Integrity,
}

impl CheckKind {
    /// The kind's name, as in the config and the reports.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sql { .. } => "sql",
            Self::RowCounts { .. } => "row_counts",
            Self::Schema => "schema",
            Self::Transaction { .. } => "transaction",
            Self::Command { .. } => "command",
            Self::Service { .. } => "service",
            Self::Integrity => "integrity",
        }
    }
}

/// How far restored row counts may be from production's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tolerance {
    /// At most this many rows.
    Rows(f64),
    /// At most this fraction of production's rows (`5%` is 0.05).
    Fraction(f64),
}

impl Tolerance {
    /// How many rows of difference are allowed against `production` rows.
    pub fn allowed(self, production: i64) -> f64 {
        match self {
            Self::Rows(rows) => rows,
            Self::Fraction(fraction) => fraction * production.max(1) as f64,
        }
    }

    fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let invalid =
            || format!("invalid tolerance {text:?}: expected a number of rows (\"100\") or a percentage (\"5%\")");
        let (number, percent) = match text.strip_suffix('%') {
            Some(number) => (number.trim(), true),
            None => (text, false),
        };
        let value: f64 = number.parse().map_err(|_| invalid())?;
        if !value.is_finite() || value < 0.0 || (percent && value > 100.0) {
            return Err(invalid());
        }
        Ok(if percent {
            Self::Fraction(value / 100.0)
        } else {
            Self::Rows(value)
        })
    }
}

/// `row_counts = { tables = [...], tolerance = "5%" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRowCounts {
    tables: Vec<String>,
    #[serde(default)]
    tolerance: Option<String>,
}

/// The check as written, before it is known to be one kind.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    name: String,
    #[serde(default)]
    sql: Option<String>,
    #[serde(default)]
    row_counts: Option<RawRowCounts>,
    #[serde(default)]
    schema: Option<bool>,
    #[serde(default)]
    transaction: Option<String>,
    #[serde(default)]
    command: Option<String>,
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    http: Option<String>,
    #[serde(default)]
    expect_status: Option<u16>,
    #[serde(default)]
    expect_body: Option<String>,
    #[serde(default)]
    integrity: Option<bool>,
    #[serde(default)]
    min: Option<f64>,
    #[serde(default)]
    max: Option<f64>,
    #[serde(default)]
    paths: Vec<String>,
}

impl TryFrom<RawCheck> for CheckSpec {
    type Error = String;

    fn try_from(raw: RawCheck) -> Result<Self, String> {
        let name = raw.name.clone();
        let fail = |message: String| Err(format!("check {name:?}: {message}"));
        let set: Vec<&str> = [
            ("sql", raw.sql.is_some()),
            ("row_counts", raw.row_counts.is_some()),
            ("schema", raw.schema.is_some()),
            ("transaction", raw.transaction.is_some()),
            ("command", raw.command.is_some()),
            ("service", raw.service.is_some() || raw.http.is_some()),
            ("integrity", raw.integrity.is_some()),
        ]
        .into_iter()
        .filter_map(|(kind, present)| present.then_some(kind))
        .collect();
        let kind = match set.as_slice() {
            [one] => *one,
            [] => {
                return fail(
                    "sets no kind: give it one of sql, row_counts, schema, transaction, command, service + http, integrity"
                        .to_owned(),
                );
            }
            many => return fail(format!("sets {}: a check is exactly one kind", many.join(" and "))),
        };
        if kind != "sql" && (raw.min.is_some() || raw.max.is_some()) {
            return fail("min and max belong to sql checks".to_owned());
        }
        if kind != "service" && (raw.expect_status.is_some() || raw.expect_body.is_some()) {
            return fail("expect_status and expect_body belong to service checks".to_owned());
        }
        if !matches!(kind, "command" | "service") && !raw.paths.is_empty() {
            return fail("paths belongs to command and service checks".to_owned());
        }
        if let (Some(min), Some(max)) = (raw.min, raw.max)
            && min > max
        {
            return fail(format!("min ({min}) is above max ({max})"));
        }
        let kind = match kind {
            "sql" => CheckKind::Sql {
                sql: raw.sql.unwrap_or_default(),
                min: raw.min,
                max: raw.max,
            },
            "row_counts" => {
                let counts = raw.row_counts.unwrap_or(RawRowCounts {
                    tables: Vec::new(),
                    tolerance: None,
                });
                if counts.tables.is_empty() {
                    return fail("row_counts needs at least one table".to_owned());
                }
                let tolerance = match counts.tolerance.as_deref().map(Tolerance::parse).transpose() {
                    Ok(tolerance) => tolerance.unwrap_or(Tolerance::Rows(0.0)),
                    Err(err) => return fail(err),
                };
                CheckKind::RowCounts {
                    tables: counts.tables,
                    tolerance,
                }
            }
            "schema" if raw.schema == Some(true) => CheckKind::Schema,
            "integrity" if raw.integrity == Some(true) => CheckKind::Integrity,
            "schema" | "integrity" => return fail(format!("{kind} = false checks nothing: remove the check")),
            "transaction" => CheckKind::Transaction {
                sql: raw.transaction.unwrap_or_default(),
            },
            "command" => CheckKind::Command {
                command: raw.command.unwrap_or_default(),
            },
            _ => {
                let (Some(service), Some(http)) = (raw.service, raw.http) else {
                    return fail(
                        "a service check needs both service (the command starting the application) and http (the URL it must answer)"
                            .to_owned(),
                    );
                };
                if !http.starts_with("http://") {
                    return fail(format!("http {http:?}: only http:// URLs are supported"));
                }
                CheckKind::Service {
                    service,
                    http,
                    expect_status: raw.expect_status.unwrap_or(200),
                    expect_body: raw.expect_body,
                }
            }
        };
        Ok(Self {
            name: raw.name,
            kind,
            paths: raw.paths,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(toml: &str) -> Result<CheckSpec, String> {
        toml::from_str::<CheckSpec>(toml).map_err(|err| err.message().to_owned())
    }

    #[test]
    fn each_kind_parses_into_its_variant() {
        let sql = check("name = \"n\"\nsql = \"select 1\"\nmin = 1").unwrap();
        assert_eq!(
            sql.kind,
            CheckKind::Sql {
                sql: "select 1".into(),
                min: Some(1.0),
                max: None
            }
        );
        let counts = check("name = \"n\"\nrow_counts = { tables = [\"a\"], tolerance = \"5%\" }").unwrap();
        assert!(
            matches!(counts.kind, CheckKind::RowCounts { tolerance: Tolerance::Fraction(f), .. } if (f - 0.05).abs() < 1e-9)
        );
        let service = check("name = \"n\"\nservice = \"app {port}\"\nhttp = \"http://127.0.0.1:{port}/\"").unwrap();
        assert!(matches!(service.kind, CheckKind::Service { expect_status: 200, .. }));
        assert_eq!(
            check("name = \"n\"\nintegrity = true").unwrap().kind,
            CheckKind::Integrity
        );
    }

    #[test]
    fn conflicts_and_misplaced_keys_are_refused() {
        let both = check("name = \"n\"\nsql = \"select 1\"\ncommand = \"true\"").unwrap_err();
        assert!(
            both.contains("sql and command") && both.contains("exactly one kind"),
            "{both}"
        );
        assert!(check("name = \"n\"").unwrap_err().contains("sets no kind"));
        assert!(
            check("name = \"n\"\ncommand = \"true\"\nmin = 1")
                .unwrap_err()
                .contains("min and max")
        );
        assert!(
            check("name = \"n\"\nsql = \"x\"\npaths = [\"/srv\"]")
                .unwrap_err()
                .contains("paths")
        );
        assert!(
            check("name = \"n\"\nhttp = \"http://x/\"")
                .unwrap_err()
                .contains("both service")
        );
        assert!(
            check("name = \"n\"\nschema = false")
                .unwrap_err()
                .contains("checks nothing")
        );
        assert!(
            check("name = \"n\"\nrow_counts = { tables = [\"a\"], tolerance = \"lots\" }")
                .unwrap_err()
                .contains("invalid tolerance")
        );
        assert!(
            check("name = \"n\"\nsql = \"x\"\nmin = 5\nmax = 1")
                .unwrap_err()
                .contains("above max")
        );
    }

    #[test]
    fn tolerances_allow_rows_or_a_fraction() {
        assert_eq!(Tolerance::parse("100").unwrap().allowed(1_000), 100.0);
        assert_eq!(Tolerance::parse("5%").unwrap().allowed(1_000), 50.0);
        assert!(Tolerance::parse("-1").is_err());
        assert!(Tolerance::parse("150%").is_err());
    }
}
