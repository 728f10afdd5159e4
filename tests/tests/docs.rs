//! The reference in `docs/` stays true to the code:
//!
//! - every table and key of the example configs, and every field of the config structs the
//!   loaders deserialise, is named in `docs/agent-config.md` or `docs/coordinator-config.md` (a
//!   new key cannot ship undocumented, even one the examples leave out);
//! - every finding kind of the catalogue is in `docs/findings.md`, with its default severity;
//! - no tracked file cites a design document the repository does not contain.

use std::path::{Path, PathBuf};

use lifeboat_shared::findings::FindingKind;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

fn read(relative: &str) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()))
}

/// Tables whose keys are names the operator chooses (`[guard.environments.pocketos-staging]`):
/// the docs name such a key `NAME`.
const NAMED_TABLES: &[&str] = &["guard.environments"];

/// Whether `doc` names the dotted `path` as code: the path itself (`` `agent.work_dir` ``), as a
/// table (`` `[agent]` ``, `` `[[asset]]` ``), as the prefix of a documented key
/// (`` `asset.location.provider` `` names `asset.location`), or by a dotted tail of at least two
/// parts (`` `location.provider` `` names `backup.location.provider`).
fn documented(doc: &str, path: &str) -> bool {
    let mut forms = vec![
        format!("`{path}`"),
        format!("`[{path}]`"),
        format!("`[[{path}]]`"),
        format!("`{path}."),
    ];
    let parts: Vec<&str> = path.split('.').collect();
    for start in 1..parts.len().saturating_sub(1) {
        forms.push(format!("`{}`", parts[start..].join(".")));
    }
    forms.iter().any(|form| doc.contains(form.as_str()))
}

/// Every table and key of a TOML document, as dotted paths (arrays of tables and inline tables
/// included; keys of [`NAMED_TABLES`] written `NAME`).
fn paths(prefix: &str, table: &toml::Table, out: &mut Vec<String>) {
    for (key, value) in table {
        let key = if NAMED_TABLES.contains(&prefix) {
            "NAME"
        } else {
            key.as_str()
        };
        let path = if prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{prefix}.{key}")
        };
        out.push(path.clone());
        match value {
            toml::Value::Table(inner) => paths(&path, inner, out),
            toml::Value::Array(items) => {
                for item in items {
                    if let toml::Value::Table(inner) = item {
                        paths(&path, inner, out);
                    }
                }
            }
            _ => {}
        }
    }
}

fn example_paths(name: &str) -> Vec<String> {
    let text = read(&format!("deploy/examples/{name}"));
    let table: toml::Table = text
        .parse()
        .unwrap_or_else(|err| panic!("deploy/examples/{name} is not TOML: {err}"));
    let mut out = Vec::new();
    paths("", &table, &mut out);
    out.sort();
    out.dedup();
    out
}

/// The fields of `struct name` in a Rust source file, as serde reads them (fields marked
/// `#[serde(skip)]` left out). Panics when the struct is not there, so a moved struct is noticed.
fn struct_fields(file: &str, name: &str) -> Vec<String> {
    let source = read(file);
    let start = source
        .find(&format!("struct {name} {{"))
        .unwrap_or_else(|| panic!("{file} has no `struct {name}`: update tests/tests/docs.rs"));
    let body = &source[start..];
    let body = &body[body.find('{').expect("brace") + 1..body.find("\n}").expect("the end of the struct")];
    let field = regex::Regex::new(r"^\s*(?:pub(?:\([a-z]+\))?\s+)?([a-z_][a-z0-9_]*)\s*:").expect("regex");
    let mut fields = Vec::new();
    let mut skip = false;
    for line in body.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("#[serde(")
            && trimmed
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .any(|word| word == "skip" || word == "skip_deserializing")
        {
            skip = true;
            continue;
        }
        if trimmed.starts_with("//") || trimmed.starts_with("#[") {
            continue;
        }
        if let Some(captures) = field.captures(line) {
            if !skip {
                fields.push(captures[1].to_owned());
            }
            skip = false;
        }
    }
    assert!(!fields.is_empty(), "no fields found in {file} `struct {name}`");
    fields
}

/// (source file, struct, the dotted prefix its fields have in the config file).
const AGENT_STRUCTS: &[(&str, &str, &str)] = &[
    ("agent/src/config/mod.rs", "AgentConfig", ""),
    ("agent/src/config/mod.rs", "AgentSection", "agent"),
    ("agent/src/config/mod.rs", "AssetConfig", "asset"),
    ("agent/src/config/mod.rs", "BackupConfig", "backup"),
    ("agent/src/config/mod.rs", "TestConfig", "test"),
    ("agent/src/config/mod.rs", "CredentialConfig", "credential"),
    ("agent/src/config/mod.rs", "ScanConfig", "scan"),
    ("agent/src/config/check.rs", "RawCheck", "test.check"),
    ("agent/src/config/check.rs", "RawRowCounts", "test.check.row_counts"),
    ("shared/src/telemetry.rs", "TelemetryConfig", "telemetry"),
    ("shared/src/protocol/inventory.rs", "Location", "asset.location"),
    ("shared/src/protocol/inventory.rs", "Location", "backup.location"),
];

const COORDINATOR_STRUCTS: &[(&str, &str, &str)] = &[
    ("coordinator/src/config.rs", "Config", ""),
    ("coordinator/src/config.rs", "DatabaseConfig", "database"),
    ("coordinator/src/config.rs", "CaConfig", "ca"),
    ("coordinator/src/config.rs", "AgentsConfig", "agents"),
    ("coordinator/src/config.rs", "ScheduleConfig", "schedule"),
    ("coordinator/src/config.rs", "AlertsConfig", "alerts"),
    ("coordinator/src/config.rs", "RouteConfig", "route"),
    ("coordinator/src/config.rs", "LimitsConfig", "limits"),
    ("coordinator/src/config.rs", "GuardConfig", "guard"),
    (
        "coordinator/src/config.rs",
        "GuardEnvironmentConfig",
        "guard.environments.NAME",
    ),
    ("coordinator/src/escalation/channels.rs", "JiraConfig", "channel"),
    ("coordinator/src/escalation/channels.rs", "PagerDutyConfig", "channel"),
    ("coordinator/src/escalation/channels.rs", "WebhookConfig", "channel"),
    ("shared/src/telemetry.rs", "TelemetryConfig", "telemetry"),
];

fn struct_paths(structs: &[(&str, &str, &str)]) -> Vec<String> {
    let mut out = Vec::new();
    for (file, name, prefix) in structs {
        for field in struct_fields(file, name) {
            out.push(if prefix.is_empty() {
                field
            } else {
                format!("{prefix}.{field}")
            });
        }
    }
    out.sort();
    out.dedup();
    out
}

fn assert_documented(doc_file: &str, what: &str, paths: &[String]) {
    let doc = read(doc_file);
    let missing: Vec<&String> = paths.iter().filter(|path| !documented(&doc, path)).collect();
    assert!(
        missing.is_empty(),
        "{doc_file} does not name these {what}: {missing:?}\n(document each as `dotted.key` in a table row)"
    );
}

#[test]
fn every_key_of_the_agent_example_is_documented() {
    let paths = example_paths("agent.toml");
    for expected in ["agent.work_dir", "test.pick", "test.check.sql", "asset.location.volume"] {
        assert!(
            paths.contains(&expected.to_owned()),
            "{expected} not found in {paths:?}"
        );
    }
    assert_documented("docs/agent-config.md", "keys of deploy/examples/agent.toml", &paths);
}

#[test]
fn every_key_of_the_coordinator_example_is_documented() {
    let paths = example_paths("coordinator.toml");
    for expected in [
        "listen",
        "limits.max_tests",
        "guard.environments.NAME.unknown_resources",
    ] {
        assert!(
            paths.contains(&expected.to_owned()),
            "{expected} not found in {paths:?}"
        );
    }
    assert_documented(
        "docs/coordinator-config.md",
        "keys of deploy/examples/coordinator.toml",
        &paths,
    );
}

#[test]
fn every_field_the_agent_config_reads_is_documented() {
    let paths = struct_paths(AGENT_STRUCTS);
    for expected in [
        "agent.name",
        "test.keep_on_failure",
        "test.check.expect_body",
        "scan.home",
    ] {
        assert!(
            paths.contains(&expected.to_owned()),
            "{expected} not found in {paths:?}"
        );
    }
    assert!(
        !paths.contains(&"source".to_owned()),
        "a #[serde(skip)] field is not a key"
    );
    assert_documented("docs/agent-config.md", "agent.toml keys the code reads", &paths);
}

#[test]
fn every_field_the_coordinator_config_reads_is_documented() {
    let mut paths = struct_paths(COORDINATOR_STRUCTS);
    // `[[channel]]` is an enum tagged by `kind`.
    paths.push("channel.kind".to_owned());
    for expected in [
        "public_status",
        "limits.runs_per_minute",
        "channel.routing_key",
        "guard.allow_mutations",
    ] {
        assert!(
            paths.contains(&expected.to_owned()),
            "{expected} not found in {paths:?}"
        );
    }
    assert_documented(
        "docs/coordinator-config.md",
        "coordinator.toml keys the code reads",
        &paths,
    );
}

#[test]
fn every_finding_kind_is_in_the_catalogue_with_its_default_severity() {
    let doc = read("docs/findings.md");
    assert!(FindingKind::ALL.len() >= 23, "the catalogue shrank?");
    let mut missing = Vec::new();
    for kind in FindingKind::ALL {
        let code = kind.code();
        let heading = format!("### `{code}`");
        let row = format!("| `{code}` | {} |", kind.default_severity().as_str());
        if !doc.contains(&heading) || !doc.contains(&row) {
            missing.push(format!("{code} ({})", kind.default_severity()));
        }
    }
    assert!(
        missing.is_empty(),
        "docs/findings.md needs a `### `kind`` section and a `| `kind` | severity |` summary row for: {missing:?}"
    );
}

#[test]
fn no_tracked_file_cites_an_outside_design_document() {
    // Spelled in two parts so that this file does not match itself.
    let needle = ["DESIGN", ".md"].concat();
    let output = std::process::Command::new("git")
        .arg("ls-files")
        .arg("-z")
        .current_dir(root())
        .output()
        .expect("run git ls-files");
    assert!(
        output.status.success(),
        "git ls-files failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let files: Vec<String> = output
        .stdout
        .split(|byte| *byte == 0)
        .filter(|name| !name.is_empty())
        .map(|name| String::from_utf8_lossy(name).into_owned())
        .collect();
    assert!(files.len() > 100, "git ls-files listed only {} files", files.len());
    let citing: Vec<&String> = files
        .iter()
        .filter(|file| {
            std::fs::read(root().join(file))
                .is_ok_and(|bytes| bytes.windows(needle.len()).any(|window| window == needle.as_bytes()))
        })
        .collect();
    assert!(
        citing.is_empty(),
        "these files cite {needle}, which is not in the repository; point them at docs/ instead: {citing:?}"
    );
}

#[test]
fn documented_accepts_the_forms_the_docs_use() {
    let doc =
        "| `agent.work_dir` | … `[[asset]]` … `location.provider` … `guard.environments.NAME.unknown_resources` |";
    assert!(documented(doc, "agent.work_dir"));
    assert!(documented(doc, "asset"));
    assert!(documented(doc, "backup.location.provider"));
    assert!(documented(doc, "guard.environments"));
    assert!(!documented(doc, "agent.name"));
    assert!(!documented(doc, "provider"), "a one-part tail is too loose");
}
