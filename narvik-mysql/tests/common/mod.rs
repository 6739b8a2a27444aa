//! The test harness: finds a MySQL / MariaDB server and hands out stores in fresh tables.
//!
//! Where the server comes from: `NARVIK_TEST_MYSQL_URL`, else the local default,
//! `mysql://root@127.0.0.1:3306/test` (scripts/servers/mariadb.sh starts or installs it). If
//! neither answers, every test that needs the server panics with how to provide one: a missing
//! server is never a skip.
//!
//! Every store gets its own table `narvik_test_<owner>_<case>` (and its bookkeeping table
//! beside it). `<owner>` names this test process, which holds the named lock
//! `narvik_test_owner_<owner>` on a connection of its own for as long as it runs; at start-up
//! the harness drops every test table whose owner's lock is free, so crashed or finished runs
//! never fill the database, and a run going on in parallel is never disturbed.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::sync::{mpsc, OnceLock};
use std::time::Duration;

use narvik_conformance::harness::random_suffix;
use narvik_mysql::sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use narvik_mysql::sqlx::{self, Connection, MySqlConnection, MySqlPool};
use narvik_mysql::MySqlStore;

/// The address of the server this machine runs for tests (see scripts/servers/mariadb.sh).
pub const LOCAL_DEFAULT_URL: &str = "mysql://root@127.0.0.1:3306/test";

/// Connections per test store: parallel cases each hold a pool, and the server's default
/// `max_connections` is 151.
const POOL_SIZE: u32 = 3;

const HOW_TO_PROVIDE: &str = "set NARVIK_TEST_MYSQL_URL=mysql://USER@HOST:PORT/DB, or run \
     scripts/test.sh (it starts or installs a local MariaDB)";

struct Harness {
    url: String,
    owner: String,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(start_harness)
}

/// The URL of the test server (resolved once per test process).
pub fn database_url() -> String {
    harness().url.clone()
}

/// Runs the harness on a thread of its own, with its own runtime, that lives as long as the
/// process: the owner connection must outlive every test's runtime.
fn start_harness() -> Harness {
    let (sender, receiver) = mpsc::channel();
    std::thread::Builder::new()
        .name("narvik-mysql-test-harness".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    let _ = sender.send(Err(format!("no tokio runtime: {error}")));
                    return;
                }
            };
            let owner_connection = runtime.block_on(async {
                let url = resolve_url().await?;
                let owner = random_suffix();
                let mut connection = MySqlConnection::connect(&url)
                    .await
                    .map_err(|e| format!("cannot connect to {url}: {e}"))?;
                let locked: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, 0)")
                    .bind(format!("narvik_test_owner_{owner}"))
                    .fetch_one(&mut connection)
                    .await
                    .map_err(|e| format!("GET_LOCK on {url}: {e}"))?;
                if locked != Some(1) {
                    return Err(format!("the owner lock of {owner} is taken"));
                }
                drop_orphaned_tables(&url).await;
                Ok::<_, String>((url, owner, connection))
            });
            match owner_connection {
                Ok((url, owner, connection)) => {
                    let _ = sender.send(Ok(Harness { url, owner }));
                    // Parked, not dropped: the open connection holds this process's lock, its
                    // claim on its tables. It closes when the process exits.
                    let _keep = (runtime, connection);
                    loop {
                        std::thread::park();
                    }
                }
                Err(message) => {
                    let _ = sender.send(Err(message));
                }
            }
        })
        .expect("spawn the harness thread");
    match receiver.recv() {
        Ok(Ok(harness)) => harness,
        Ok(Err(message)) => {
            panic!("no MySQL for the tests: {message}. To provide one, {HOW_TO_PROVIDE}.")
        }
        Err(_) => panic!("the MySQL test harness thread died; {HOW_TO_PROVIDE}."),
    }
}

async fn resolve_url() -> Result<String, String> {
    if let Ok(url) = std::env::var("NARVIK_TEST_MYSQL_URL") {
        if !url.is_empty() {
            return Ok(url);
        }
    }
    let reachable = tokio::time::timeout(
        Duration::from_secs(5),
        MySqlConnection::connect(LOCAL_DEFAULT_URL),
    )
    .await;
    match reachable {
        Ok(Ok(connection)) => {
            let _ = connection.close().await;
            Ok(LOCAL_DEFAULT_URL.to_owned())
        }
        Ok(Err(error)) => Err(format!(
            "NARVIK_TEST_MYSQL_URL is unset and {LOCAL_DEFAULT_URL} refused: {error}"
        )),
        Err(_) => Err(format!(
            "NARVIK_TEST_MYSQL_URL is unset and {LOCAL_DEFAULT_URL} did not answer in 5 s"
        )),
    }
}

/// Drops the test tables of processes that are gone. Best effort: a failure here leaves tables
/// for the next run, it never fails a test.
async fn drop_orphaned_tables(url: &str) {
    let result: Result<(), sqlx::Error> = async {
        let mut connection = MySqlConnection::connect(url).await?;
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT CAST(table_name AS CHAR) FROM information_schema.tables \
             WHERE table_schema = DATABASE() AND table_name LIKE 'narvik\\_test\\_%'",
        )
        .fetch_all(&mut connection)
        .await?;
        for table in tables {
            // narvik_test_<owner>_<case>[_migrations]
            let Some(owner) = table.split('_').nth(2) else {
                continue;
            };
            let free: Option<i64> = sqlx::query_scalar("SELECT IS_FREE_LOCK(?)")
                .bind(format!("narvik_test_owner_{owner}"))
                .fetch_one(&mut connection)
                .await?;
            if free != Some(1)
                || !table
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                continue;
            }
            let drop = format!("DROP TABLE IF EXISTS `{table}`");
            if let Err(error) = sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
                .execute(&mut connection)
                .await
            {
                eprintln!("narvik-mysql tests: could not drop {table}: {error}");
            }
        }
        connection.close().await
    }
    .await;
    if let Err(error) = result {
        eprintln!("narvik-mysql tests: leftover test tables not cleaned: {error}");
    }
}

/// A fresh table name owned by this process.
pub fn fresh_table() -> String {
    format!("narvik_test_{}_{}", harness().owner, random_suffix())
}

/// A small pool to the test server, with the store's connection settings.
pub async fn pool() -> MySqlPool {
    let options: MySqlConnectOptions = database_url()
        .parse()
        .unwrap_or_else(|e| panic!("NARVIK_TEST_MYSQL_URL does not parse: {e}"));
    MySqlStore::pool_options()
        .max_connections(POOL_SIZE)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(options)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test MySQL: {e}. {HOW_TO_PROVIDE}."))
}

/// A plain pool (sqlx's settings, no store) for administrative statements in tests.
pub async fn admin_pool() -> MySqlPool {
    MySqlPoolOptions::new()
        .max_connections(2)
        .connect(&database_url())
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test MySQL: {e}. {HOW_TO_PROVIDE}."))
}

/// A migrated store in a fresh table of its own.
pub async fn fresh_store() -> MySqlStore {
    store_in(pool().await, &fresh_table()).await
}

/// A migrated store on `pool` in `table`.
pub async fn store_in(pool: MySqlPool, table: &str) -> MySqlStore {
    let store = MySqlStore::builder(pool)
        .table(table)
        .build()
        .expect("test table names are valid identifiers");
    store.migrate().await.expect("migrate the test table");
    store
}
