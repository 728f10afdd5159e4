//! Backups an attacker planted, restored by the real agent: nothing they carry runs outside the
//! jail, no secret of the agent's environment or files is reachable, no process they start
//! survives, and the findings say `restore.hostile`.
//!
//! Each dump is made from a real production database whose index calls a function that, only
//! when it runs in a database called `restored` (the sandbox), tries `pg_read_file` on the agent's
//! private key and `COPY … TO PROGRAM` with `setsid sleep` and a file written to the host's
//! `/tmp`; a plain dump carries `\!` meta-commands; a base backup asks to preload a library it
//! carries; a tar archive has a `../` member and a device node; a restic snapshot holds a device
//! node.

use std::path::{Path, PathBuf};
use std::process::Command;

use lifeboat_tests::agent_check::{agent_config, asset, check_with_env, finding_kinds, sandboxes_left};
use lifeboat_tests::argv_watch::ArgvWatch;
use lifeboat_tests::postgres::PgCluster;
use lifeboat_tests::volume::OtherVolume;

/// The function a hostile dump's index calls: harmless in production, hostile in the sandbox.
fn hostile_schema(key_path: &Path, marker: &Path, sleeper: &str) -> String {
    format!(
        r#"
CREATE TABLE bookings (id int, created_at timestamptz DEFAULT now());
INSERT INTO bookings (id) SELECT g FROM generate_series(1, 3) g;
CREATE FUNCTION public.evil_inner() RETURNS void LANGUAGE plpgsql VOLATILE AS $f$
DECLARE key text;
BEGIN
  IF current_database() = 'restored' THEN
    BEGIN key := pg_read_file('{key}'); EXCEPTION WHEN OTHERS THEN key := NULL; END;
    BEGIN
      COPY (SELECT 1) TO PROGRAM 'touch {marker}; setsid {sleeper} > /dev/null 2>&1 &';
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
    IF key IS NOT NULL THEN RAISE EXCEPTION 'stolen: %', key; END IF;
  END IF;
END $f$;
-- An index needs an immutable function; it may call a volatile one all the same.
CREATE FUNCTION public.evil(x int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $f$
BEGIN
  PERFORM public.evil_inner();
  RETURN x;
END $f$;
CREATE INDEX bookings_evil ON bookings (evil(id));
"#,
        key = key_path.display(),
        marker = marker.display(),
    )
}

fn dump_asset(name: &str, url: &str, source: &Path) -> String {
    format!(
        r#"
[[asset]]
name = "{name}"
kind = "postgres"
url = "{url}"

[[backup]]
name = "{name}-dumps"
asset = "{name}"
kind = "pg_dump_dir"
path = "{}"
location = {{ host = "backup-nas" }}

[[test]]
asset = "{name}"
schedule = "0 * * * *"
timeout = "5m"

  [[test.check]]
  name = "bookings exist"
  sql = "select count(*) = 3 from bookings"
"#,
        source.display()
    )
}

fn files_asset(name: &str, kind: &str, source: &Path, extra: &str) -> String {
    format!(
        r#"
[[asset]]
name = "{name}"
kind = "files"

[[backup]]
name = "{name}-backups"
asset = "{name}"
kind = "{kind}"
path = "{}"
location = {{ host = "backup-nas" }}
{extra}

[[test]]
asset = "{name}"
schedule = "0 * * * *"
timeout = "5m"

  [[test.check]]
  name = "files were restored"
  integrity = true
"#,
        source.display()
    )
}

async fn pg_dump(cluster: &PgCluster, database: &str, args: &[&str], out: &Path) {
    std::fs::create_dir_all(out.parent().expect("parent")).expect("mkdir");
    let output = tokio::process::Command::new(cluster.bin_dir().join("pg_dump"))
        .args(args)
        .arg("-f")
        .arg(out)
        .arg(cluster.url(database))
        .output()
        .await
        .expect("pg_dump");
    assert!(
        output.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A tar archive, crafted with Python's tarfile: a normal file, a member that climbs out of the
/// restore directory, and a character device.
fn hostile_tar(path: &Path) {
    let script = r#"
import io, sys, tarfile
with tarfile.open(sys.argv[1], "w") as tar:
    for name, data in [("notes.txt", b"hello\n"), ("../../escaped-by-tar.txt", b"pwned\n")]:
        info = tarfile.TarInfo(name); info.size = len(data); tar.addfile(info, io.BytesIO(data))
    dev = tarfile.TarInfo("mem"); dev.type = tarfile.CHRTYPE; dev.devmajor = 1; dev.devminor = 1
    tar.addfile(dev)
"#;
    let status = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(path)
        .status()
        .expect("python3");
    assert!(status.success());
}

/// A restic repository whose only snapshot holds a device node (made with mknod: root).
fn hostile_restic(dir: &Path, password_file: &Path) -> PathBuf {
    let content = dir.join("restic-content");
    std::fs::create_dir_all(&content).expect("mkdir");
    std::fs::write(content.join("readme.txt"), "files\n").expect("write");
    let status = Command::new("mknod")
        .arg(content.join("mem"))
        .args(["c", "1", "1"])
        .status()
        .expect("mknod");
    assert!(status.success(), "mknod needs root (the tests run as root)");
    let repo = dir.join("restic-repo");
    for args in [
        vec!["init".to_owned()],
        vec!["backup".to_owned(), content.display().to_string()],
    ] {
        let output = Command::new("restic")
            .arg("--repo")
            .arg(&repo)
            .args(&args)
            .env("RESTIC_PASSWORD_FILE", password_file)
            .output()
            .expect("restic");
        assert!(
            output.status.success(),
            "restic {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    repo
}

/// Processes whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
                .map(|cmdline| String::from_utf8_lossy(&cmdline).replace('\0', " "))
                .filter(|cmdline| cmdline.contains(needle) && !cmdline.contains("cargo"))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_backups_are_contained_and_reported() {
    let cluster = PgCluster::start().await.expect("cluster");
    let volume = OtherVolume::mount(512).expect("mount another volume");
    let dir = tempfile::tempdir().expect("dir");
    let canary = format!("canary-{}", uuid::Uuid::new_v4().simple());
    let marker = PathBuf::from(format!("/tmp/lifeboat-pwned-{}", uuid::Uuid::new_v4().simple()));
    // A duration no other process on this machine sleeps for.
    let sleeper = format!("sleep 300.{}", std::process::id());

    // The agent's own secrets: its private key, and a secret in its environment.
    let identity = dir.path().join("identity");
    std::fs::create_dir_all(&identity).expect("mkdir");
    let key = identity.join("key.pem");
    std::fs::write(
        &key,
        format!("-----BEGIN PRIVATE KEY-----\n{canary}\n-----END PRIVATE KEY-----\n"),
    )
    .expect("key");

    cluster.create_database("hostile").await.expect("db");
    cluster
        .psql("hostile", &hostile_schema(&key, &marker, &sleeper))
        .await
        .expect("hostile schema");
    let url = cluster.url("hostile");
    let mut body = String::new();
    for (name, args, file) in [
        ("custom", vec!["-Fc"], "hostile.dump"),
        ("directory", vec!["-Fd"], "hostile.dir"),
        ("tar", vec!["-Ft"], "hostile.tar"),
    ] {
        let source = volume.dir(&format!("dumps-{name}"));
        pg_dump(&cluster, "hostile", &args, &source.join(file)).await;
        body.push_str(&dump_asset(&format!("hostile-{name}"), &url, &source));
    }
    // A plain dump with meta-commands appended, as an attacker would.
    let plain_source = volume.dir("dumps-plain");
    let plain = plain_source.join("hostile.sql");
    pg_dump(&cluster, "hostile", &["-Fp"], &plain).await;
    let mut text = std::fs::read_to_string(&plain).expect("read dump");
    text.push_str(&format!(
        "\n\\! touch {marker}; setsid {sleeper} > /dev/null 2>&1 &\n\\! cat {} > /tmp/lifeboat-stolen\n",
        key.display(),
        marker = marker.display()
    ));
    std::fs::write(&plain, text).expect("write dump");
    body.push_str(&dump_asset("hostile-plain", &url, &plain_source));

    let archives = volume.dir("archives");
    hostile_tar(&archives.join("uploads-2026-12-01.tar"));
    body.push_str(&files_asset("hostile-archive", "files_dir", &archives, ""));
    let password_file = dir.path().join("restic-password");
    std::fs::write(&password_file, "restic-test-password\n").expect("password");
    let repo = hostile_restic(volume.path(), &password_file);
    body.push_str(&files_asset(
        "hostile-restic",
        "restic",
        &repo,
        &format!("password_file = \"{}\"", password_file.display()),
    ));

    let config = agent_config(dir.path(), &body);
    let watch = ArgvWatch::start(vec![cluster.password().to_owned(), canary.clone()]);
    let (code, report, stderr) = check_with_env(&config, &[("LIFEBOAT_TEST_CANARY", canary.as_str())]).await;
    let leaked_argv = watch.finish();
    assert_eq!(code, 1, "{stderr}\n{report:#}");

    for name in [
        "hostile-custom",
        "hostile-directory",
        "hostile-tar",
        "hostile-plain",
        "hostile-archive",
        "hostile-restic",
    ] {
        let found = asset(&report, name);
        assert_eq!(found["recoverable"], false, "{found:#}");
        let kinds = finding_kinds(found);
        assert_eq!(
            kinds.first().map(String::as_str),
            Some("restore.hostile"),
            "{name}: {found:#}"
        );
    }
    let plain_finding = asset(&report, "hostile-plain")["findings"][0]["message"].to_string();
    assert!(plain_finding.contains("meta-command"), "{plain_finding}");
    let custom_finding = asset(&report, "hostile-custom")["findings"][0]["message"].to_string();
    assert!(custom_finding.contains(&sleeper), "{custom_finding}");
    let archive_finding = asset(&report, "hostile-archive")["findings"][0]["message"].to_string();
    assert!(
        archive_finding.contains("escaped-by-tar") && archive_finding.contains("device"),
        "{archive_finding}"
    );
    let restic_finding = asset(&report, "hostile-restic")["findings"][0]["message"].to_string();
    assert!(restic_finding.contains("device node"), "{restic_finding}");

    // Nothing ran outside the jail, nothing survives it, no secret came out of it.
    assert!(!marker.exists(), "a program of the backup wrote to the host's /tmp");
    assert!(!Path::new("/tmp/lifeboat-stolen").exists());
    assert!(!volume.path().join("escaped-by-tar.txt").exists());
    assert!(processes_with(&sleeper).is_empty(), "{:?}", processes_with(&sleeper));
    let everything = format!("{report}{stderr}");
    assert!(
        !everything.contains(&canary),
        "a secret of the agent reached its report"
    );
    assert!(!everything.contains("stolen:"), "the key was read");
    assert!(leaked_argv.is_empty(), "secrets on command lines: {leaked_argv:#?}");
    assert!(
        sandboxes_left(dir.path()).is_empty(),
        "{:?}",
        sandboxes_left(dir.path())
    );
}

/// A base backup whose configuration preloads a library it carries: the library never loads
/// (the backup's configuration is set aside), and the attempt is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_backup_that_preloads_its_own_library_is_hostile() {
    let cluster = PgCluster::start().await.expect("cluster");
    let volume = OtherVolume::mount(512).expect("mount another volume");
    let dir = tempfile::tempdir().expect("dir");
    // The attacker's change goes through production's own configuration, so the backup's
    // manifest is right about it: ALTER SYSTEM (which takes effect only at the next restart) and a
    // file in the data directory. Not a real library: loaded, it would stop the server.
    std::fs::write(cluster.data_dir().join("evil.so"), b"\x7fELF not really").expect("write");
    let _ = Command::new("chmod")
        .arg("0644")
        .arg(cluster.data_dir().join("evil.so"))
        .status();
    cluster
        .psql("postgres", "ALTER SYSTEM SET shared_preload_libraries = './evil.so'")
        .await
        .expect("alter system");
    let source = volume.dir("base");
    let backup = source.join("base-1");
    let output = tokio::process::Command::new(cluster.bin_dir().join("pg_basebackup"))
        .arg("-d")
        .arg(cluster.url("postgres"))
        .arg("-D")
        .arg(&backup)
        .args(["-Fp", "-X", "stream", "--checkpoint=fast"])
        .output()
        .await
        .expect("pg_basebackup");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        std::fs::read_to_string(backup.join("postgresql.auto.conf"))
            .unwrap_or_default()
            .contains("evil.so")
    );

    let body = format!(
        r#"
[[asset]]
name = "preload"
kind = "postgres"
url = "{}"

[[backup]]
name = "preload-base"
asset = "preload"
kind = "pg_basebackup_dir"
path = "{}"
location = {{ host = "backup-nas" }}

[[test]]
asset = "preload"
schedule = "0 * * * *"
timeout = "5m"

  [[test.check]]
  name = "answers"
  sql = "select 1 = 1"
"#,
        cluster.url("postgres"),
        source.display()
    );
    let config = agent_config(dir.path(), &body);
    let (code, report, stderr) = check_with_env(&config, &[]).await;
    assert_eq!(code, 1, "{stderr}\n{report:#}");
    let found = asset(&report, "preload");
    let kinds = finding_kinds(found);
    assert!(kinds.contains(&"restore.hostile".to_owned()), "{found:#}");
    let message = found["findings"][0]["message"].to_string();
    assert!(
        message.contains("evil.so") && message.contains("shared_preload_libraries"),
        "{message}"
    );
    // The library was never loaded: the restored server started, and its check ran.
    let run = &found["runs"][0];
    assert_eq!(run["checks"][0]["passed"], true, "{run:#}");
}
