//! A fresh, migrated coordinator store on either engine, and the macro that runs one
//! `async fn(TestDb)` against both: in module `sqlite` (a file in a temporary directory) and in
//! module `postgres` (a database on a throw-away cluster of its own).

use lifeboat_coordinator::store::Store;
use tempfile::TempDir;

use crate::postgres::PgCluster;

/// A fresh, migrated database and what keeps it alive. Fields drop in order: the pool first.
pub struct TestDb {
    pub store: Store,
    pub url: String,
    _sqlite_dir: Option<TempDir>,
    _cluster: Option<PgCluster>,
}

impl TestDb {
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("coordinator.db").display());
        let store = Store::connect(&url).await.expect("open sqlite store");
        assert_eq!(store.engine_name(), "sqlite");
        TestDb {
            store,
            url,
            _sqlite_dir: Some(dir),
            _cluster: None,
        }
    }

    pub async fn postgres() -> TestDb {
        let cluster = PgCluster::start().await.expect("start postgres");
        cluster.create_database("lifeboat").await.expect("create database");
        let url = cluster.url("lifeboat");
        let store = Store::connect(&url).await.expect("open postgres store");
        assert_eq!(store.engine_name(), "postgres");
        TestDb {
            store,
            url,
            _sqlite_dir: None,
            _cluster: Some(cluster),
        }
    }
}

/// `both_engines! { test_a, test_b }` runs each `async fn(TestDb)` once per engine, so
/// `cargo nextest run --test X sqlite::` or `postgres::` selects one.
#[macro_export]
macro_rules! both_engines {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::store_db::TestDb::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::store_db::TestDb::postgres().await).await;
                }
            )*
        }
    };
}
