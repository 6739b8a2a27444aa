//! The test harness: finds a Postgres server and hands out stores in fresh schemas.
//!
//! Where the server comes from, in order:
//! 1. `NARVIK_TEST_POSTGRES_URL`;
//! 2. with `NARVIK_TEST_CONTAINERS=1` and a reachable Docker engine, a reusable testcontainers
//!    Postgres named `narvik-test-postgres` (kept running between runs; `docker rm -f
//!    narvik-test-postgres` removes it);
//! 3. the local default, `postgres://postgres@127.0.0.1:5432/test`.
//!
//! If none answers, every test that needs the server panics with how to provide one: a missing
//! server is never a skip.
//!
//! Every store lives in its own schema `narvik_test_<owner>_<case>`. `<owner>` names this test
//! process, which keeps one connection open with `application_name = narvik_test_owner_<owner>`
//! for as long as it runs; at start-up the harness drops every test schema whose owner has no
//! such connection left, so crashed or finished runs never fill the database, and a run going
//! on in parallel (another test binary, another developer) is never disturbed.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::sync::{mpsc, OnceLock};
use std::time::Duration;

use narvik_conformance::harness::random_suffix;
use narvik_postgres::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use narvik_postgres::sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use narvik_postgres::PostgresStore;

/// The address of the Postgres this machine runs for tests (see scripts/servers/postgres.sh).
pub const LOCAL_DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Connections per test store: parallel cases each hold a pool, and Postgres' default
/// `max_connections` is 100.
const POOL_SIZE: u32 = 4;

const HOW_TO_PROVIDE: &str = "set NARVIK_TEST_POSTGRES_URL=postgres://USER@HOST:PORT/DB, run \
     scripts/test.sh (it starts or installs a local Postgres), or set NARVIK_TEST_CONTAINERS=1 \
     with a reachable Docker engine";

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
        .name("narvik-postgres-test-harness".into())
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
                let connection = PgConnectOptions::from_url(
                    &url.parse().map_err(|e| format!("bad URL {url:?}: {e}"))?,
                )
                .map_err(|e| format!("bad URL {url:?}: {e}"))?
                .application_name(&format!("narvik_test_owner_{owner}"))
                .connect()
                .await
                .map_err(|e| format!("cannot connect to {url}: {e}"))?;
                drop_orphaned_schemas(&url).await;
                Ok::<_, String>((url, owner, connection))
            });
            match owner_connection {
                Ok((url, owner, connection)) => {
                    let _ = sender.send(Ok(Harness { url, owner }));
                    // Parked, not dropped: the open connection is this process's claim on its
                    // schemas. It closes when the process exits.
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
            panic!("no Postgres for the tests: {message}. To provide one, {HOW_TO_PROVIDE}.")
        }
        Err(_) => panic!("the Postgres test harness thread died; {HOW_TO_PROVIDE}."),
    }
}

async fn resolve_url() -> Result<String, String> {
    if let Ok(url) = std::env::var("NARVIK_TEST_POSTGRES_URL") {
        if !url.is_empty() {
            return Ok(url);
        }
    }
    if containers_requested() {
        match container_url().await {
            Ok(url) => return Ok(url),
            Err(error) => eprintln!(
                "narvik-postgres tests: no Docker Postgres ({error}); trying {LOCAL_DEFAULT_URL}"
            ),
        }
    }
    let reachable = tokio::time::timeout(
        Duration::from_secs(5),
        PgConnection::connect(LOCAL_DEFAULT_URL),
    )
    .await;
    match reachable {
        Ok(Ok(connection)) => {
            let _ = connection.close().await;
            Ok(LOCAL_DEFAULT_URL.to_owned())
        }
        Ok(Err(error)) => Err(format!(
            "NARVIK_TEST_POSTGRES_URL is unset and {LOCAL_DEFAULT_URL} refused: {error}"
        )),
        Err(_) => Err(format!(
            "NARVIK_TEST_POSTGRES_URL is unset and {LOCAL_DEFAULT_URL} did not answer in 5 s"
        )),
    }
}

/// Whether the run asks for a testcontainers server (`NARVIK_TEST_CONTAINERS=1`): opt-in, so
/// that a machine with Docker still tests against its local server by default.
fn containers_requested() -> bool {
    std::env::var_os("NARVIK_TEST_CONTAINERS").is_some_and(|value| value == "1")
}

/// Starts (or reuses) a Postgres container. Reusable: the Rust test harness has no global
/// teardown, so a container per process would be left behind by every run; one named,
/// reused container is left behind once.
async fn container_url() -> Result<String, String> {
    use testcontainers::{runners::AsyncRunner, ImageExt, ReuseDirective};
    use testcontainers_modules::postgres::Postgres;

    let container = Postgres::default()
        .with_db_name("test")
        .with_host_auth()
        .with_tag("15-alpine")
        .with_container_name("narvik-test-postgres")
        .with_reuse(ReuseDirective::Always)
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let host = container.get_host().await.map_err(|e| e.to_string())?;
    let port = container
        .get_host_port_ipv4(5432)
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!("postgres://postgres@{host}:{port}/test"))
}

/// Drops the test schemas of processes that are gone. Best effort: a failure here leaves
/// schemas for the next run, it never fails a test.
async fn drop_orphaned_schemas(url: &str) {
    let result: Result<(), narvik_postgres::sqlx::Error> = async {
        let mut connection = PgConnection::connect(url).await?;
        let orphans: Vec<String> = narvik_postgres::sqlx::query_scalar(
            r"SELECT nspname FROM pg_namespace n
              WHERE nspname ~ '^narvik_test_[0-9a-f]{16}_[0-9a-f]+$'
                AND NOT EXISTS (
                  SELECT 1 FROM pg_stat_activity a
                  WHERE a.application_name = 'narvik_test_owner_' || split_part(n.nspname, '_', 3))",
        )
        .fetch_all(&mut connection)
        .await?;
        for schema in orphans {
            // The name matched the pattern above: letters, digits and `_` only.
            let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
            if let Err(error) = narvik_postgres::sqlx::raw_sql(narvik_postgres::sqlx::AssertSqlSafe(drop))
                .execute(&mut connection)
                .await
            {
                eprintln!("narvik-postgres tests: could not drop {schema}: {error}");
            }
        }
        connection.close().await
    }
    .await;
    if let Err(error) = result {
        eprintln!("narvik-postgres tests: leftover test schemas not cleaned: {error}");
    }
}

/// A fresh schema name owned by this process.
pub fn fresh_schema() -> String {
    format!("narvik_test_{}_{}", harness().owner, random_suffix())
}

/// A small pool to the test server whose connections carry `application_name`, so a test can
/// find (and terminate) exactly its own backends.
pub async fn pool_named(application_name: &str) -> PgPool {
    let options: PgConnectOptions = database_url()
        .parse()
        .unwrap_or_else(|e| panic!("NARVIK_TEST_POSTGRES_URL does not parse: {e}"));
    PgPoolOptions::new()
        .max_connections(POOL_SIZE)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(options.application_name(application_name))
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test Postgres: {e}. {HOW_TO_PROVIDE}."))
}

/// A migrated store in a fresh schema of its own.
pub async fn fresh_store() -> PostgresStore {
    let schema = fresh_schema();
    let pool = pool_named(&schema).await;
    store_in(pool, &schema).await
}

/// A migrated store on `pool` in `schema`.
pub async fn store_in(pool: PgPool, schema: &str) -> PostgresStore {
    let store = PostgresStore::builder(pool)
        .schema(schema)
        .build()
        .expect("test schema names are valid identifiers");
    store.migrate().await.expect("migrate the test schema");
    store
}
