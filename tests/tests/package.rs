//! The Debian packages: `scripts/package` builds them (here from the debug build the suite
//! runs; the release build is the same script with the default profile), lintian accepts them,
//! and the agent's package installed with `apt-get install ./lifeboat-agent_….deb` on this
//! machine creates its users and state directory and runs `lifeboat-agent check` and `doctor`;
//! the coordinator's package installs and runs too. Both are removed again at the end.
//!
//! Installing is system-wide (the test runs as root, like CI): it refuses to run over an
//! installed Lifeboat package, and purges only what it installed.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(command: &mut Command) -> Output {
    let output = command.output().unwrap_or_else(|err| panic!("run {command:?}: {err}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The binaries' directory of the build this test belongs to (target/<profile>).
fn profile() -> &'static str {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    if dir.ends_with("release") { "release" } else { "dev" }
}

fn deb(dir: &Path, package: &str) -> PathBuf {
    std::fs::read_dir(dir)
        .expect("artifacts")
        .flatten()
        .map(|entry| entry.path())
        .find(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with(&format!("{package}_")) && name.ends_with(".deb"))
        })
        .unwrap_or_else(|| panic!("no {package} .deb in {}", dir.display()))
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).contains("install ok installed"))
}

/// Purges what this test installed, also when it fails half-way.
struct Installed(Vec<&'static str>);

impl Drop for Installed {
    fn drop(&mut self) {
        for package in &self.0 {
            let _ = Command::new("apt-get")
                .args(["purge", "-y", "-qq", package])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .output();
        }
    }
}

#[test]
fn packages_build_pass_lintian_install_and_run() {
    for package in ["lifeboat-agent", "lifeboat-coordinator"] {
        assert!(
            !installed(package),
            "{package} is installed on this machine: this test installs and purges it, so it refuses to run over a real installation"
        );
    }
    for dir in ["/var/lib/lifeboat-agent", "/var/lib/lifeboat"] {
        assert!(!Path::new(dir).exists(), "{dir} exists: this test would purge it");
    }
    let out = tempfile::tempdir().expect("tempdir");
    run(Command::new(workspace().join("scripts/package"))
        .args(["--no-build", "--profile", profile(), "--out"])
        .arg(out.path()));

    check_artifacts(out.path());
    let agent_deb = deb(out.path(), "lifeboat-agent");
    let coordinator_deb = deb(out.path(), "lifeboat-coordinator");
    check_agent_metadata(&agent_deb);

    let guard = Installed(vec!["lifeboat-agent", "lifeboat-coordinator"]);
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .arg(&agent_deb)
        .arg(&coordinator_deb)
        .env("DEBIAN_FRONTEND", "noninteractive"));
    check_installed_agent();
    check_installed_coordinator();
    drop(guard);
    assert!(!Path::new("/usr/bin/lifeboat-agent").exists());
    assert!(
        !Path::new("/var/lib/lifeboat-agent").exists(),
        "purge removes the agent's state"
    );
}

/// Stripped binaries with their debug info split off, checksums that verify.
fn check_artifacts(dir: &Path) {
    run(Command::new("sha256sum")
        .arg("--check")
        .arg("SHA256SUMS")
        .current_dir(dir));
    for binary in ["lifeboat-agent", "lifeboat-coordinator"] {
        let sections = text(&run(Command::new("readelf").arg("-S").arg(dir.join(binary))));
        assert!(!sections.contains(".debug_line"), "{binary} still carries debug info");
        assert!(
            sections.contains(".gnu_debuglink"),
            "{binary} does not name its debug file"
        );
        let debug = text(&run(Command::new("readelf")
            .arg("-S")
            .arg(dir.join("debug").join(format!("{binary}.debug")))));
        assert!(
            debug.contains(".debug_line"),
            "the split debug info of {binary} is empty"
        );
    }
    let ddebs = std::fs::read_dir(dir.join("debug"))
        .expect("debug dir")
        .flatten()
        .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "ddeb"))
        .count();
    assert_eq!(ddebs, 2, "one -dbgsym package per binary, kept apart from the release");
}

fn check_agent_metadata(deb: &Path) {
    let field = |name: &str| text(&run(Command::new("dpkg-deb").arg("-f").arg(deb).arg(name)));
    let depends = field("Depends");
    for needed in [
        "bubblewrap",
        "postgresql",
        "postgresql-client",
        "restic",
        "sqlite3",
        "adduser",
    ] {
        assert!(
            depends
                .split(',')
                .any(|dependency| dependency.trim().starts_with(needed)),
            "Depends lacks {needed}: {depends}"
        );
    }
    assert!(field("Recommends").contains("mariadb-server"));
    let files = text(&run(Command::new("dpkg-deb").arg("-c").arg(deb)));
    for path in [
        "./usr/bin/lifeboat-agent",
        "lib/systemd/system/lifeboat-agent.service",
        "./etc/lifeboat/agent.toml.example",
    ] {
        assert!(files.contains(path), "the package lacks {path}:\n{files}");
    }
    let debug_files: Vec<&str> = files.lines().filter(|line| line.contains("/usr/lib/debug")).collect();
    assert!(debug_files.is_empty(), "debug info is shipped: {debug_files:?}");
}

fn check_installed_agent() {
    for user in ["lifeboat-agent", "lifeboat-sandbox"] {
        run(Command::new("getent").args(["passwd", user]));
    }
    let state = std::fs::metadata("/var/lib/lifeboat-agent").expect("state directory");
    assert_eq!(state.mode() & 0o7777, 0o711);
    let unit = std::fs::read_to_string("/lib/systemd/system/lifeboat-agent.service").expect("unit installed");
    assert!(unit.contains("ExecStart=/usr/bin/lifeboat-agent run"), "{unit}");
    run_check_with_installed_agent();
}

/// `lifeboat-agent check` and `doctor` of the installed binary on a SQLite asset.
fn run_check_with_installed_agent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let production = dir.path().join("app.sqlite");
    // Backups on another volume, as they must be to count.
    let volume = lifeboat_tests::volume::OtherVolume::mount(64).expect("mount another volume");
    let backups = volume.dir("backups");
    run(Command::new("sqlite3").arg(&production).arg(
        "create table orders(id integer primary key, total real); insert into orders(total) values (9.5), (12), (30.25);",
    ));
    std::fs::copy(&production, backups.join("app-nightly.sqlite")).expect("backup");
    let config = lifeboat_tests::agent_check::agent_config(
        dir.path(),
        &format!(
            r#"
[[asset]]
name = "app"
kind = "sqlite"
path = "{}"

[[backup]]
name = "app-nightly"
asset = "app"
kind = "sqlite_dir"
path = "{}"
# A mount of another machine's storage in production: a tmpfs here, declared as such.
location = {{ host = "backup-nas" }}

[[test]]
asset = "app"
schedule = "0 * * * *"

  [[test.check]]
  name = "three orders"
  sql = "select count(*) = 3 from orders"
"#,
            production.display(),
            backups.display()
        ),
    );
    lifeboat_tests::agent_check::grant_backups_to_sandbox(&config);
    let checked = Command::new("/usr/bin/lifeboat-agent")
        .args(["check", "--output", "json", "--config"])
        .arg(&config)
        .output()
        .expect("run the installed agent");
    let report: serde_json::Value = serde_json::from_slice(&checked.stdout).unwrap_or_default();
    assert_eq!(
        checked.status.code(),
        Some(0),
        "the installed agent's check:\n{report:#}\n{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    assert_eq!(report["recoverable"], true, "{report:#}");

    // Not enrolled: doctor fails on the identity and the coordinator, and passes the rest.
    let doctor = Command::new("/usr/bin/lifeboat-agent")
        .args(["doctor", "--output", "json", "--config"])
        .arg(&config)
        .output()
        .expect("run the installed agent's doctor");
    assert_eq!(doctor.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&doctor.stdout).expect("doctor JSON");
    let failed: Vec<&str> = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|check| check["status"] == "fail")
        .filter_map(|check| check["group"].as_str())
        .collect();
    assert_eq!(failed, ["state", "coordinator"], "{report:#}");
}

fn check_installed_coordinator() {
    run(Command::new("getent").args(["passwd", "lifeboat"]));
    let state = std::fs::metadata("/var/lib/lifeboat").expect("state directory");
    assert_eq!(state.mode() & 0o7777, 0o700);
    let help = text(&run(Command::new("/usr/bin/lifeboat-coordinator").arg("--help")));
    assert!(help.contains("serve"), "{help}");
    assert!(Path::new("/etc/lifeboat/coordinator.toml.example").exists());
}
