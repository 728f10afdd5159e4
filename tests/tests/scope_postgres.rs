//! The PostgreSQL role analyser (`credentials::scope::postgres`) against a real cluster: the real
//! Supabase role setup (tests/fixtures/supabase-postgres, PostgreSQL License), where the login
//! role `authenticator` is NOINHERIT but a member of the superuser `supabase_admin`, plus small
//! hand-made roles. The server logs every statement: the tests assert the analysis only reads.

use std::path::Path;

use lifeboat_agent::credentials::scope::postgres::{RoleScope, analyze};
use lifeboat_agent::credentials::scope::{Action, Hits};
use lifeboat_tests::postgres::PgCluster;

const SUPABASE_INITIAL_SCHEMA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/supabase-postgres/00000000000000-initial-schema.sql"
);

/// A password every test role gets (TCP logins use scram-sha-256).
const ROLE_PASSWORD: &str = "role-pw-7c1e";

/// Returns a URL of `database` that logs in as `role` with [`ROLE_PASSWORD`].
fn role_url(cluster: &PgCluster, role: &str, database: &str) -> String {
    format!(
        "postgres://{role}:{ROLE_PASSWORD}@127.0.0.1:{}/{database}",
        cluster.port()
    )
}

/// Starts a cluster that logs every statement with its application name.
async fn logging_cluster() -> PgCluster {
    let cluster = PgCluster::start().await.expect("cluster");
    for sql in [
        "ALTER SYSTEM SET log_statement = 'all'",
        "ALTER SYSTEM SET log_line_prefix = 'app=%a '",
        "SELECT pg_reload_conf()",
    ] {
        cluster.psql("postgres", sql).await.expect(sql);
    }
    cluster
}

/// Loads the Supabase role setup into database `postgres`.
async fn load_supabase(cluster: &PgCluster) {
    // Preamble, not part of the copied file: the Supabase image creates `postgres` and
    // `supabase_admin` before its init scripts run (the script `alter`s them), so create them here.
    cluster
        .psql(
            "postgres",
            "CREATE ROLE postgres LOGIN; CREATE ROLE supabase_admin LOGIN",
        )
        .await
        .expect("preamble roles");
    // ON_ERROR_STOP off: `create extension pgjwt` needs an extension vanilla PostgreSQL 15 lacks;
    // every other statement of the file applies (asserted through the roles below).
    let output = tokio::process::Command::new(cluster.bin_dir().join("psql"))
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=0",
            "-d",
            &cluster.url("postgres"),
            "-f",
        ])
        .arg(Path::new(SUPABASE_INITIAL_SCHEMA))
        .output()
        .await
        .expect("run psql");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for line in stderr.lines().filter(|line| line.contains("ERROR")) {
        assert!(
            line.contains("pgjwt"),
            "unexpected error loading the Supabase roles: {line}"
        );
    }
    let roles = cluster
        .psql(
            "postgres",
            "SELECT string_agg(rolname || ':' || rolsuper || ':' || rolinherit || ':' || rolcanlogin, ',' ORDER BY rolname) \
             FROM pg_roles WHERE rolname IN ('authenticator', 'supabase_admin', 'anon', 'service_role')",
        )
        .await
        .expect("roles");
    assert_eq!(
        roles,
        "anon:false:false:false,authenticator:false:false:true,service_role:false:false:false,supabase_admin:true:true:true"
    );
    // Supabase gives its login roles passwords at deploy time; so do we.
    for role in ["authenticator", "supabase_read_only_user"] {
        cluster
            .psql("postgres", &format!("ALTER ROLE {role} PASSWORD '{ROLE_PASSWORD}'"))
            .await
            .expect("password");
    }
}

/// Counts that any write would change: roles, relations, databases, committed transactions
/// that wrote (`pg_stat_database` is per-database and lags; relation and role counts do not).
async fn catalogue_counts(cluster: &PgCluster) -> String {
    cluster
        .psql(
            "postgres",
            "SELECT (SELECT count(*) FROM pg_roles) || '/' || (SELECT count(*) FROM pg_class) || '/' || \
             (SELECT count(*) FROM pg_database) || '/' || (SELECT count(*) FROM pg_auth_members)",
        )
        .await
        .expect("counts")
}

/// The statements the agent sent, from the server log.
fn agent_statements(cluster: &PgCluster) -> Vec<String> {
    let log = std::fs::read_to_string(cluster.log_path()).unwrap_or_default();
    log.lines()
        .filter(|line| line.starts_with("app=lifeboat-agent ") && line.contains("statement:"))
        .map(str::to_owned)
        .collect()
}

fn destroys(scope: &RoleScope, resource: &str) -> bool {
    scope
        .capabilities
        .iter()
        .any(|capability| capability.action == Action::Destroy && capability.resource == resource)
}

#[tokio::test]
async fn supabase_authenticator_can_set_role_to_a_superuser() {
    let cluster = logging_cluster().await;
    load_supabase(&cluster).await;

    let scope = analyze(&role_url(&cluster, "authenticator", "postgres"))
        .await
        .expect("analyze authenticator");
    assert_eq!(scope.role, "authenticator");
    assert!(scope.superuser, "{scope:#?}");
    assert!(
        scope
            .via
            .contains(&"supabase_admin ← authenticator (SET ROLE)".to_owned()),
        "{:?}",
        scope.via
    );
    assert!(
        scope
            .via
            .contains(&"service_role ← authenticator (SET ROLE)".to_owned())
    );
    let cluster_capability = scope
        .capabilities
        .iter()
        .find(|capability| capability.resource == "cluster")
        .expect("cluster capability");
    assert_eq!(cluster_capability.action, Action::Destroy);
    assert_eq!(cluster_capability.selector.host.as_deref(), Some("127.0.0.1"));
    assert!(
        cluster_capability
            .via
            .contains("supabase_admin ← authenticator (SET ROLE)")
    );
    assert!(
        scope
            .capabilities
            .iter()
            .any(|capability| capability.resource == "files on the database host"
                && capability.action == Action::Destroy
                && capability.hits == Hits::Both)
    );
    // The facts say why: NOINHERIT, so nothing is inherited, yet SET ROLE reaches supabase_admin.
    assert_eq!(scope.facts["attributes"]["inherit"], serde_json::json!(false));
    assert_eq!(scope.facts["attributes"]["superuser"], serde_json::json!(false));

    // The read-only user of the same setup reads everything and destroys nothing.
    let reader = analyze(&role_url(&cluster, "supabase_read_only_user", "postgres"))
        .await
        .expect("analyze supabase_read_only_user");
    assert!(!reader.superuser);
    assert!(!reader.is_destructive(), "{reader:#?}");
    assert!(!reader.capabilities.iter().any(|capability| capability.writes()));
    assert!(
        reader
            .via
            .contains(&"pg_read_all_data ← supabase_read_only_user (inherited)".to_owned())
    );

    // Nothing but the catalogue query reached the server.
    let statements = agent_statements(&cluster);
    assert_eq!(statements.len(), 2, "{statements:#?}");
    assert!(
        statements
            .iter()
            .all(|line| line.contains("statement: with recursive reach"))
    );
}

#[tokio::test]
async fn ownership_grants_and_predefined_roles_are_told_apart() {
    let cluster = logging_cluster().await;
    cluster.create_database("rentals").await.expect("create database");
    cluster
        .psql(
            "rentals",
            &format!(
                "CREATE ROLE ro LOGIN PASSWORD '{ROLE_PASSWORD}';
                 CREATE ROLE table_owner LOGIN PASSWORD '{ROLE_PASSWORD}';
                 CREATE ROLE writer LOGIN PASSWORD '{ROLE_PASSWORD}';
                 GRANT pg_write_all_data TO writer;
                 CREATE TABLE bookings (id int PRIMARY KEY, created_at timestamptz);
                 CREATE TABLE customers (id int PRIMARY KEY);
                 CREATE TABLE ledger (id int PRIMARY KEY);
                 ALTER TABLE ledger OWNER TO table_owner;
                 REVOKE ALL ON ledger FROM table_owner;
                 GRANT SELECT ON bookings, customers TO ro;"
            ),
        )
        .await
        .expect("roles");

    // A plain read-only role reads and cannot write or destroy.
    let ro = analyze(&role_url(&cluster, "ro", "rentals")).await.expect("analyze ro");
    assert!(!ro.superuser);
    assert!(!ro.is_destructive(), "{ro:#?}");
    assert!(!ro.capabilities.iter().any(|capability| capability.writes()));
    let read = ro
        .capabilities
        .iter()
        .find(|capability| capability.action == Action::Read)
        .expect("read capability");
    assert_eq!(read.resource, "rows of 2 of 3 tables in database rentals");

    // The owner of a table can drop it, although it holds no grant on it.
    let owner = analyze(&role_url(&cluster, "table_owner", "rentals"))
        .await
        .expect("analyze table_owner");
    assert_eq!(owner.facts["table_privileges"]["delete"], serde_json::json!(0));
    assert!(destroys(&owner, "tables rentals.public"), "{owner:#?}");
    assert!(
        owner
            .capabilities
            .iter()
            .any(|capability| capability.via.contains("ledger"))
    );

    // A pg_write_all_data member can overwrite (and delete rows of) every table.
    let writer = analyze(&role_url(&cluster, "writer", "rentals"))
        .await
        .expect("analyze writer");
    assert!(!writer.superuser);
    let overwrite = writer
        .capabilities
        .iter()
        .find(|capability| capability.action == Action::Overwrite)
        .expect("overwrite capability");
    assert_eq!(overwrite.resource, "rows of 3 of 3 tables in database rentals");
    assert!(overwrite.via.contains("pg_write_all_data ← writer (inherited)"));
    assert!(writer.capabilities.iter().any(|capability| capability.writes()));
    assert!(!destroys(&writer, "cluster"));
}

#[tokio::test]
async fn a_wrong_password_is_a_clear_error_without_the_password() {
    let cluster = PgCluster::start().await.expect("cluster");
    let wrong_password = "not-the-password-93f1";
    let url = format!(
        "postgres://{}:{wrong_password}@127.0.0.1:{}/postgres",
        cluster.user(),
        cluster.port()
    );
    let error = analyze(&url).await.expect_err("wrong password").to_string();
    assert!(error.contains("password authentication failed"), "{error}");
    assert!(error.contains("postgres://lifeboat:***@127.0.0.1"), "{error}");
    assert!(!error.contains(wrong_password), "{error}");
}

#[tokio::test]
async fn analysing_a_superuser_changes_nothing() {
    let cluster = logging_cluster().await;
    cluster.create_database("rentals").await.expect("create database");
    cluster
        .psql(
            "rentals",
            "CREATE TABLE bookings (id int); INSERT INTO bookings VALUES (1)",
        )
        .await
        .expect("table");
    let before = catalogue_counts(&cluster).await;

    let scope = analyze(&cluster.url("rentals")).await.expect("analyze superuser");
    assert!(scope.superuser);
    assert!(destroys(&scope, "cluster"));
    assert!(destroys(&scope, "database rentals"));
    assert!(scope.via.is_empty(), "{:?}", scope.via);
    assert!(!format!("{scope:?}").contains(cluster.password()));

    assert_eq!(catalogue_counts(&cluster).await, before);
    // The agent's session was read-only, and it sent one statement: the catalogue query.
    let session = lifeboat_agent::runner::psql::Connection::production(&cluster.url("rentals"));
    let read_only = session
        .scalar("SHOW default_transaction_read_only", std::time::Duration::from_secs(10))
        .await
        .expect("show");
    assert_eq!(read_only.as_deref(), Some("on"));
    let statements = agent_statements(&cluster);
    assert_eq!(statements.len(), 2, "{statements:#?}");
    assert!(statements[0].contains("statement: with recursive reach"));
    assert!(statements[1].contains("statement: SHOW default_transaction_read_only"));
}
