//! Tests of PostgreSQL sandboxes against the real binaries of this machine, in real jails.

use std::time::Duration;

use sqlx::Row as _;

use super::*;
use crate::procfs;
use crate::sandbox::janitor;

/// The highest installed major: tests use the real binaries of this machine.
fn installed_major() -> u32 {
    crate::capabilities::postgres_majors()
        .last()
        .copied()
        .expect("these tests need PostgreSQL server binaries under /usr/lib/postgresql (apt-get install postgresql)")
}

/// A work directory as a test gets it from `tempfile` (mode 0700): the sandbox root lets the
/// sandbox user through.
fn work_dir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("lb-").tempdir().unwrap()
}

/// Whether any process still runs from the sandbox's data directory.
fn assert_server_gone(data_dir: &Path) {
    assert!(
        procfs::processes_mentioning(data_dir).is_empty(),
        "a process still serves {}",
        data_dir.display()
    );
}

#[test]
fn pick_major_prefers_the_lowest_compatible_and_names_both_versions_otherwise() {
    assert_eq!(pick_major(Some(13), &[12, 14, 16]).unwrap(), 14);
    assert_eq!(pick_major(Some(14), &[12, 14, 16]).unwrap(), 14);
    assert_eq!(pick_major(None, &[12, 16, 14]).unwrap(), 16);

    let err = pick_major(Some(17), &[16, 15]).unwrap_err();
    assert!(matches!(&err, SandboxError::NoCompatibleMajor { needed: 17, installed } if installed == &[15, 16]));
    let message = err.to_string();
    assert!(
        message.contains("postgresql 17") && message.contains("15, 16"),
        "{message}"
    );

    assert!(matches!(
        pick_major(Some(15), &[]),
        Err(SandboxError::NoPostgresInstalled)
    ));
    assert!(matches!(pick_major(None, &[]), Err(SandboxError::NoPostgresInstalled)));
}

#[test]
fn identifiers_are_quoted_and_passwords_need_no_quoting() {
    assert_eq!(quote_identifier("we\"ird"), "\"we\"\"ird\"");
    let password = random_password();
    assert_eq!(password.len(), PASSWORD_LEN);
    assert!(password.chars().all(|c| c.is_ascii_alphanumeric()));
}

#[tokio::test]
async fn a_major_that_is_not_installed_is_refused_without_leaving_anything() {
    let work_dir = work_dir();
    let root = SandboxRoot::in_work_dir(work_dir.path()).unwrap();
    let err = root.create_postgres(RunId::new(), 99).await.unwrap_err();
    assert!(
        matches!(err, SandboxError::MajorNotInstalled { major: 99, .. }),
        "{err}"
    );
    let left: Vec<_> = fs::read_dir(root.dir())
        .unwrap()
        .flatten()
        .filter(|entry| entry.file_name() != crate::sandbox::JAIL_DIR)
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn a_sandbox_runs_jailed_as_the_sandbox_user_and_accepts_only_its_password_on_its_socket() {
    let work_dir = work_dir();
    let root = SandboxRoot::in_work_dir(work_dir.path()).unwrap();
    let sandbox = root.create_postgres(RunId::new(), installed_major()).await.unwrap();
    let dir = sandbox.sandbox().dir().to_owned();
    let data_dir = sandbox.data_dir().to_owned();
    let socket_dir = sandbox.socket_dir().to_owned();
    assert!(
        !dir.join(PRIVATE_DIR).join("pwfile").exists(),
        "the password file outlived initdb"
    );
    assert!(socket_dir.join(".s.PGSQL.5432").exists());
    assert!(socket_dir.as_os_str().len() < 60, "{}", socket_dir.display());
    assert!(!format!("{sandbox:?}").contains(sandbox.password()));

    // The postmaster runs as the sandbox user, never as the agent's.
    let postmaster = procfs::processes_mentioning(&data_dir)
        .into_iter()
        .find(|process| procfs::read_stat(process.pid).is_ok_and(|stat| stat.name == "postgres"))
        .expect("a running postmaster");
    let status = fs::read_to_string(format!("/proc/{}/status", postmaster.pid)).unwrap();
    let uid_line = status.lines().find(|line| line.starts_with("Uid:")).unwrap().to_owned();
    let sandbox_uid = sandbox.sandbox().jail_user().uid().to_string();
    assert!(
        uid_line.split_whitespace().skip(1).all(|uid| uid == sandbox_uid),
        "{uid_line}"
    );

    let mut connection = sandbox.connect("postgres").await.unwrap();
    let listen: String = sqlx::query("SHOW listen_addresses")
        .fetch_one(&mut connection)
        .await
        .unwrap()
        .get(0);
    assert_eq!(listen, "", "the sandbox listens on TCP");
    let rules_without_password: i64 =
        sqlx::query("SELECT count(*) FROM pg_hba_file_rules WHERE auth_method <> 'scram-sha-256'")
            .fetch_one(&mut connection)
            .await
            .unwrap()
            .get(0);
    assert_eq!(rules_without_password, 0, "every pg_hba rule must require a password");
    connection.close().await.unwrap();

    // A wrong password does not work.
    let wrong = sandbox.connect_options("postgres").password("not-the-password");
    assert!(PgConnection::connect_with(&wrong).await.is_err());

    sandbox.create_database("restored db").await.unwrap();
    let mut restored = sandbox.connect("restored db").await.unwrap();
    let one: i32 = sqlx::query("SELECT 1").fetch_one(&mut restored).await.unwrap().get(0);
    assert_eq!(one, 1);
    restored.close().await.unwrap();
    let env = sandbox.env("restored db");
    assert!(env.contains(&("PGPASSWORD".to_owned(), sandbox.password().to_owned())));

    assert_eq!(sandbox.cleanup(false, None).await.unwrap(), CleanupOutcome::Removed);
    assert!(!dir.exists());
    assert!(!socket_dir.exists());
    assert_server_gone(&data_dir);
}

#[tokio::test]
async fn what_a_restore_makes_the_server_run_is_seen_contained_and_killed() {
    let work_dir = work_dir();
    let secret = work_dir.path().join("key.pem");
    fs::write(&secret, "-----BEGIN PRIVATE KEY-----\n").unwrap();
    let root = SandboxRoot::in_work_dir(work_dir.path()).unwrap();
    let sandbox = root.create_postgres(RunId::new(), installed_major()).await.unwrap();
    let data_dir = sandbox.data_dir().to_owned();
    let mut connection = sandbox.connect("postgres").await.unwrap();

    // The agent's files are not there to read.
    let read = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT pg_read_file('{}')",
        secret.display()
    )))
    .fetch_one(&mut connection)
    .await;
    let err = read.unwrap_err().to_string();
    assert!(err.contains("No such file"), "{err}");

    // A program started through the shell is the tripwire, seen by the watcher.
    // A duration no other process on this machine sleeps for.
    let sleeper = format!("sleep 300.{}", std::process::id());
    let copied = sqlx::query(sqlx::AssertSqlSafe(format!(
        "COPY (SELECT 1) TO PROGRAM 'setsid {sleeper} &'"
    )))
    .execute(&mut connection)
    .await;
    assert!(copied.is_err(), "the shell ran");
    let strays = sandbox.sandbox().strays();
    assert!(
        strays.iter().any(|stray| stray.command_line.contains(&sleeper)),
        "{strays:?}"
    );
    let _closed = connection.close().await;
    sandbox.cleanup(false, None).await.unwrap();
    assert_server_gone(&data_dir);
    let sleepers: Vec<_> = procfs::all_processes()
        .into_iter()
        .filter(|(pid, _)| procfs::command_line(*pid).contains(&sleeper))
        .collect();
    assert!(sleepers.is_empty(), "{sleepers:?}");
}

#[tokio::test]
async fn cancelling_the_creation_leaves_nothing_behind() {
    let work_dir = work_dir();
    let root = SandboxRoot::in_work_dir(work_dir.path()).unwrap();
    // Cancel during initdb, then (probably) during the server's start; wherever it lands,
    // nothing may survive the dropped future.
    for delay in [Duration::from_millis(150), Duration::from_millis(900)] {
        let run_id = RunId::new();
        let data_dir = root.dir().join(format!("{run_id}-postgres")).join(DATA_DIR);
        let created = tokio::time::timeout(delay, root.create_postgres(run_id, installed_major())).await;
        drop(created);
        assert!(!data_dir.exists(), "left behind after {delay:?}");
        assert_server_gone(&data_dir);
    }
}

#[tokio::test]
async fn dropping_a_sandbox_stops_and_removes_it() {
    let work_dir = work_dir();
    let root = SandboxRoot::in_work_dir(work_dir.path()).unwrap();
    let sandbox = root.create_postgres(RunId::new(), installed_major()).await.unwrap();
    let dir = sandbox.sandbox().dir().to_owned();
    let data_dir = sandbox.data_dir().to_owned();
    assert!(!procfs::processes_mentioning(&data_dir).is_empty());
    drop(sandbox);
    assert!(!dir.exists());
    assert_server_gone(&data_dir);
}

#[tokio::test]
async fn a_kept_sandbox_is_stopped_and_the_janitor_removes_it_after_its_ttl() {
    let work_dir = work_dir();
    let root = SandboxRoot::in_work_dir(work_dir.path()).unwrap();
    let sandbox = root.create_postgres(RunId::new(), installed_major()).await.unwrap();
    let password = sandbox.password().to_owned();
    let dir = sandbox.sandbox().dir().to_owned();
    let data_dir = sandbox.data_dir().to_owned();

    let outcome = sandbox.cleanup(true, Some(Duration::from_secs(3600))).await.unwrap();
    let CleanupOutcome::Kept {
        dir: kept_dir,
        keep_until,
    } = outcome
    else {
        panic!("expected the sandbox to be kept, got {outcome:?}");
    };
    assert_eq!(kept_dir, dir);
    assert!(data_dir.join("PG_VERSION").exists());
    assert_eq!(fs::read_to_string(dir.join(PASSWORD_FILE)).unwrap().trim(), password);
    assert_eq!(
        crate::sandbox::SandboxMarker::read(&dir).unwrap().keep_until,
        Some(keep_until)
    );
    assert_server_gone(&data_dir);

    // Before the TTL, even with its owner alive, the janitor keeps it; after, it removes it.
    let report = janitor::sweep(&root, keep_until - chrono::TimeDelta::minutes(1));
    assert!(report.removed.is_empty() && report.failed.is_empty(), "{report:?}");
    assert!(dir.exists());
    let report = janitor::sweep(&root, keep_until + chrono::TimeDelta::minutes(1));
    assert_eq!(report.removed, vec![dir.clone()], "{report:?}");
    assert!(!dir.exists());
}
