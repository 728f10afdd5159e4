//! Running `lifeboat-agent check --output json` as a process against a written config, and
//! reading its report: the helpers the restore end-to-end tests share.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::processes;

/// Writes an agent config in `dir` with the given asset/backup/test sections; the agent's work
/// directory (and so its sandboxes) is `dir/agent-work`.
pub fn agent_config(dir: &Path, body: &str) -> PathBuf {
    let work = dir.join("agent-work");
    let config = dir.join(format!("agent-{}.toml", uuid::Uuid::new_v4()));
    std::fs::write(
        &config,
        format!(
            "[agent]\ncoordinator = \"https://127.0.0.1:1\"\nidentity_dir = \"{}\"\nwork_dir = \"{}\"\n\n{body}",
            dir.join("identity").display(),
            work.display()
        ),
    )
    .expect("write config");
    config
}

/// Runs `lifeboat-agent check --output json`; returns the exit code, the report and stderr.
pub async fn check(config: &Path) -> (i32, Value, String) {
    check_with_env(config, &[]).await
}

/// [`check`] with extra environment variables for the agent.
pub async fn check_with_env(config: &Path, env: &[(&str, &str)]) -> (i32, Value, String) {
    grant_backups_to_sandbox(config);
    check_as_is(config, env).await
}

/// [`check`] without [`grant_backups_to_sandbox`]: for tests of what the agent says when the
/// operator has not granted it.
///
/// Every run is watched by an [`ArgvWatch`](crate::argv_watch::ArgvWatch): no program the agent
/// starts may carry a password on its command line; the run panics if one does.
pub async fn check_as_is(config: &Path, env: &[(&str, &str)]) -> (i32, Value, String) {
    let watch = crate::argv_watch::ArgvWatch::start(Vec::new());
    let result = run_check(config, env).await;
    let leaked = watch.finish();
    assert!(leaked.is_empty(), "passwords on command lines: {leaked:#?}");
    result
}

async fn run_check(config: &Path, env: &[(&str, &str)]) -> (i32, Value, String) {
    let config = config.display().to_string();
    let (code, stdout, stderr) = processes::run_with_env(
        "lifeboat-agent",
        &["check", "--config", &config, "--output", "json"],
        env,
    )
    .await
    .expect("run check");
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (code, json, stderr)
}

/// Does what the README asks of an operator for every `[[backup]] path` of `config`: lets the
/// sandbox user read the backups (restores read them only as that user) — here with `chmod -R
/// o+rX` on the path and search permission on its ancestors.
pub fn grant_backups_to_sandbox(config: &Path) {
    let Ok(text) = std::fs::read_to_string(config) else {
        return;
    };
    let Ok(parsed) = text.parse::<toml::Table>() else {
        return;
    };
    let paths = parsed
        .get("backup")
        .and_then(toml::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|backup| backup.get("path").and_then(toml::Value::as_str));
    for path in paths {
        grant_sandbox_read(Path::new(path));
    }
}

/// Lets every user read `path` (recursively) and pass through its ancestors.
pub fn grant_sandbox_read(path: &Path) {
    let _ = std::process::Command::new("chmod")
        .args(["-R", "o+rX"])
        .arg(path)
        .status();
    for ancestor in path.ancestors().skip(1) {
        let _ = std::process::Command::new("chmod").arg("o+x").arg(ancestor).status();
    }
}

/// The report of asset `name`.
pub fn asset<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["assets"]
        .as_array()
        .and_then(|assets| assets.iter().find(|asset| asset["asset"] == name))
        .unwrap_or_else(|| panic!("no asset {name} in {report:#}"))
}

/// The kinds of an asset's findings, in order.
pub fn finding_kinds(asset: &Value) -> Vec<String> {
    asset["findings"]
        .as_array()
        .map(|findings| {
            findings
                .iter()
                .filter_map(|f| f["kind"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The sandboxes left in the agent work directory of a config written into `dir`.
pub fn sandboxes_left(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir.join("agent-work/sandboxes"))
        .map(|entries| {
            entries
                .flatten()
                .filter(|entry| !entry.file_name().to_string_lossy().starts_with('.'))
                .map(|entry| entry.path())
                .collect()
        })
        .unwrap_or_default()
}
