//! narvik-postgres against a raw query and against tower-sessions' sqlx store, side by side in
//! one run on one server.
//!
//! `cargo bench -p narvik-postgres` (server: `NARVIK_TEST_POSTGRES_URL`, else
//! `postgres://postgres@127.0.0.1:5432/test`; `NARVIK_BENCH_SECS` sets the measured seconds per
//! row, default 3). Client and server share the machine: compare ratios within one run, never
//! absolute figures across machines or runs.
//!
//! Rows:
//! - `raw select`: `SELECT id, user_id, expires_at, created_at, data FROM t WHERE id = $1` on a
//!   sqlx 0.9 pool of 16, the floor for any session lookup;
//! - `narvik validate_session`: token parse + SHA-256 + the store's fetch, pool of 16;
//! - `tower-sessions load`: `PostgresStore::load` (sqlx 0.8, pool of 16);
//! - `narvik create_session` (one INSERT) vs `tower-sessions create` (BEGIN, an existence check,
//!   an upsert, COMMIT), once as configured and once with `synchronous_commit = off` on both
//!   pools, which takes the WAL flush wait out and leaves round trips and server work;
//! - `fetch_sessions_for_user` (a user with 10 sessions) and the expired purge (10,000 expired
//!   rows) on tables of 10^5 and 10^6 rows: the time should follow the rows touched.
//!
//! The kinds of work take turns in short slices (`INTERLEAVE.rounds` rounds), so that a slow moment of the
//! shared machine is spread over all of them instead of landing on one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use narvik_bench::{
    load_average, print_scaling_header, print_table, scaling_row, seed_sessions, Interleave, Op,
    Run, EXPIRED, RAW_SELECT, SESSIONS, TOWER_CREATE,
};
use narvik_core::Narvik;
use narvik_postgres::sqlx::postgres::PgPoolOptions;
use narvik_postgres::sqlx::{self, AssertSqlSafe, PgPool, Row};
use narvik_postgres::PostgresStore;
use tower_sessions_sqlx_store::sqlx as sqlx08;
use tower_sessions_sqlx_store::PostgresStore as TowerPostgresStore;

const POOL_SIZE: u32 = 16;
const INTERLEAVE: Interleave = Interleave {
    rounds: 6,
    warm_up_tasks: POOL_SIZE as usize,
    warm_up: Duration::from_millis(300),
};

async fn pool(url: &str) -> PgPool {
    pool_with(url, Commit::Synchronous).await
}

/// How the pool's sessions commit. `Asynchronous` (`synchronous_commit = off`) takes the WAL
/// flush out of every write, leaving round trips and server work: on a machine whose disk is
/// shared with builds, the flush wait otherwise drowns everything else in a create.
#[derive(Clone, Copy)]
enum Commit {
    Synchronous,
    Asynchronous,
}

impl Commit {
    fn setting(self) -> &'static str {
        match self {
            Self::Synchronous => "on",
            Self::Asynchronous => "off",
        }
    }
}

async fn pool_with(url: &str, commit: Commit) -> PgPool {
    let options: sqlx::postgres::PgConnectOptions =
        url.parse().unwrap_or_else(|e| panic!("bad URL {url}: {e}"));
    PgPoolOptions::new()
        .max_connections(POOL_SIZE)
        .min_connections(POOL_SIZE)
        .connect_with(options.options([("synchronous_commit", commit.setting())]))
        .await
        .unwrap_or_else(|e| panic!("no Postgres at {url}: {e}; set NARVIK_TEST_POSTGRES_URL"))
}

async fn tower_store(url: &str, schema: &str, commit: Commit) -> TowerPostgresStore {
    let options: sqlx08::postgres::PgConnectOptions = url.parse().expect("sqlx 0.8 URL");
    let pool = sqlx08::postgres::PgPoolOptions::new()
        .max_connections(POOL_SIZE)
        .min_connections(POOL_SIZE)
        .connect_with(options.options([("synchronous_commit", commit.setting())]))
        .await
        .expect("sqlx 0.8 pool");
    TowerPostgresStore::new(pool)
        .with_schema_name(schema)
        .expect("schema")
        .with_table_name("tower_sessions")
        .expect("table")
}

async fn store(url: &str, schema: &str) -> PostgresStore {
    let store = PostgresStore::builder(pool(url).await)
        .schema(schema)
        .build()
        .expect("valid schema name");
    store.migrate().await.expect("migrate");
    store
}

async fn drop_schema(pool: &PgPool, schema: &str) {
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
    )))
    .execute(pool)
    .await
    .expect("drop bench schema");
}

/// Fills `store`'s table with `rows` rows in SQL: 10 sessions per user, the first `expired`
/// rows expired (the oldest sessions, as in life: they sit together at the start of the heap,
/// so both table sizes purge the same number of pages), then VACUUM ANALYZE.
async fn fill(store: &PostgresStore, rows: i64, expired: i64) {
    let table = format!(
        "\"{}\".\"{}\"",
        store.config().schema(),
        store.config().table()
    );
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {table} (id, user_id, expires_at, created_at, data)
         SELECT md5(i::text), 'user-' || (i / 10), \
                CASE WHEN i < $2 THEN now() - interval '1 day' ELSE now() + interval '1 day' END, \
                now(), '{{\"theme\": \"dark\"}}'::jsonb
         FROM generate_series(0, $1 - 1) AS i"
    )))
    .bind(rows)
    .bind(expired)
    .execute(store.pool())
    .await
    .expect("fill");
    sqlx::query(AssertSqlSafe(format!("VACUUM ANALYZE {table}")))
        .execute(store.pool())
        .await
        .expect("analyze");
}

async fn scaling(url: &str, admin: &PgPool) {
    print_scaling_header();
    for rows in [100_000_i64, 1_000_000] {
        let schema = format!("narvik_bench_scale_{rows}");
        drop_schema(admin, &schema).await;
        let store = store(url, &schema).await;
        let started = Instant::now();
        fill(&store, rows, EXPIRED).await;
        scaling_row(&store, rows, started.elapsed().as_secs_f64()).await;
        store.pool().close().await;
        drop_schema(admin, &schema).await;
    }
}

#[tokio::main]
async fn main() {
    let Run { smoke, secs } = Run::from_env(0.3, 3.0);
    let url = std::env::var("NARVIK_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let admin = pool(&url).await;
    let schema = "narvik_bench";
    drop_schema(&admin, schema).await;

    // --- lookups: raw select vs validate_session vs tower-sessions load ---
    let narvik_store = store(&url, schema).await;
    let narvik: Narvik<serde_json::Value> = Narvik::new(Arc::new(narvik_store.clone()));
    let (ids, tokens) = seed_sessions(&narvik).await;

    let raw_pool = pool(&url).await;
    let select = narvik_store
        .statements()
        .into_iter()
        .find(|(name, _)| *name == "fetch_session")
        .map(|(_, sql)| sql.to_owned())
        .expect("fetch statement");
    let raw: Op = {
        let ids = ids.clone();
        let select: Arc<str> = select.into();
        Arc::new(move |i| {
            let (pool, ids, select) = (raw_pool.clone(), ids.clone(), select.clone());
            Box::pin(async move {
                let row = sqlx::query(AssertSqlSafe(select))
                    .bind(&ids[i % ids.len()])
                    .fetch_optional(&pool)
                    .await
                    .expect("raw select")
                    .expect("row");
                let _: serde_json::Value = row.try_get("data").expect("data");
            })
        })
    };
    let tower = tower_store(&url, schema, Commit::Synchronous).await;
    tower.migrate().await.expect("tower migrate");
    let lookups = INTERLEAVE
        .lookups(
            raw,
            (narvik, narvik_store.clone()),
            (ids, tokens),
            tower.clone(),
            &[1, 64],
            secs,
        )
        .await;

    // --- creates: one INSERT vs check-then-upsert in a transaction ---
    let creates = INTERLEAVE
        .creates(narvik_store.clone(), tower, &[1, 64], secs)
        .await;
    let narvik_async = PostgresStore::builder(pool_with(&url, Commit::Asynchronous).await)
        .schema(schema)
        .build()
        .expect("valid schema name");
    let tower_async = tower_store(&url, schema, Commit::Asynchronous).await;
    let creates_async = INTERLEAVE
        .creates(narvik_async.clone(), tower_async, &[1, 64], secs)
        .await;

    // What decides the create rows: every autocommit INSERT waits for its WAL flush, so on a
    // busy disk that wait, not the round trips, is most of a create.
    let settings: Vec<String> = sqlx::query_scalar(
        "SELECT name || '=' || setting FROM pg_settings \
         WHERE name IN ('server_version', 'synchronous_commit', 'fsync', 'shared_buffers') ORDER BY name",
    )
    .fetch_all(&admin)
    .await
    .expect("settings");
    println!(
        "\nserver: {}; machine load average: {}",
        settings.join(", "),
        load_average()
    );
    println!("\nnarvik-postgres benchmark ({secs} s per row, pools of {POOL_SIZE}, {SESSIONS} sessions per store)");
    print_table("Lookups", &lookups, RAW_SELECT);
    print_table("Creates", &creates, TOWER_CREATE);
    print_table(
        "Creates, synchronous_commit = off on both pools (round trips and server work only)",
        &creates_async,
        TOWER_CREATE,
    );
    narvik_async.pool().close().await;
    narvik_store.pool().close().await;
    drop_schema(&admin, schema).await;

    if smoke {
        println!("\n(smoke run: scaling rows skipped; run `cargo bench` for them)");
    } else {
        scaling(&url, &admin).await;
    }
}
