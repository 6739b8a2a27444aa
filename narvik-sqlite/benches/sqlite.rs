//! narvik-sqlite against a raw query and against tower-sessions' sqlx SQLite store, side by
//! side in one run on one database file.
//!
//! `cargo bench -p narvik-sqlite` (`NARVIK_BENCH_SECS` sets the measured seconds per row,
//! default 2; the whole run takes about two minutes; `NARVIK_BENCH_WRITERS` sets narvik's write
//! pool, default 1 as `SqliteStore::open` builds it). The database files live in a temporary
//! directory on the machine's disk. Compare ratios within one run, never absolute figures
//! across machines or runs.
//!
//! Rows:
//! - `raw select`: the store's own `SELECT ... WHERE id = ?1` on a sqlx 0.9 pool of the same
//!   size and settings as the store's read pool, reading every column: the floor for any
//!   session lookup;
//! - `narvik validate_session`: token parse + SHA-256 + the store's fetch + decoding the data;
//! - `tower-sessions load` (sqlx 0.8, the same pool size and settings);
//! - `narvik create_session` (one INSERT, or a share of a grouped commit when creates
//!   overlap) vs `tower-sessions create` (BEGIN, INSERT OR ABORT, COMMIT), both on WAL with `busy_timeout`, once with `synchronous = FULL` (narvik's
//!   default: every commit waits for its fsync, on both) and once with `NORMAL` (no fsync per
//!   commit in WAL mode, which leaves the work each store does);
//! - `fetch_sessions_for_user` (a user with 10 sessions) and the expired purge (10,000 expired
//!   rows) on tables of 10^5 and 10^6 rows: the time should follow the rows touched.
//!
//! The kinds of work take turns in short slices (`INTERLEAVE.rounds` rounds), so that a slow moment of the
//! shared machine is spread over all of them instead of landing on one.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use narvik_bench::{
    load_average, print_scaling_header, print_table, ratio, scaling_row, seed_sessions, Interleave,
    Op, Run, EXPIRED, NARVIK_CREATE, RAW_SELECT, SESSIONS, TOWER_CREATE, VALIDATE,
};
use narvik_core::Narvik;
use narvik_sqlite::sqlx::sqlite::{SqlitePool, SqliteSynchronous};
use narvik_sqlite::sqlx::{self, AssertSqlSafe, Row};
use narvik_sqlite::SqliteStore;
use time::OffsetDateTime;
use tower_sessions_sqlx_store::sqlx as sqlx08;
use tower_sessions_sqlx_store::SqliteStore as TowerSqliteStore;

const INTERLEAVE: Interleave = Interleave {
    rounds: 5,
    warm_up_tasks: 4,
    warm_up: Duration::from_millis(200),
};
const READERS: u32 = SqliteStore::DEFAULT_READ_CONNECTIONS;

/// Connections of narvik's write pool: 1, as `SqliteStore::open` builds it, unless
/// `NARVIK_BENCH_WRITERS` says otherwise (to see what a larger write pool changes).
fn writers() -> u32 {
    std::env::var("NARVIK_BENCH_WRITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// A store on `path` as `SqliteStore::open` builds it, with `synchronous` instead of FULL.
async fn narvik_store(path: &Path, synchronous: SqliteSynchronous) -> SqliteStore {
    let options = SqliteStore::connect_options(path).synchronous(synchronous);
    let readers = SqliteStore::pool_options()
        .max_connections(READERS)
        .connect_with(options.clone())
        .await
        .expect("read pool");
    let writer = SqliteStore::pool_options()
        .max_connections(writers())
        .connect_with(options)
        .await
        .expect("write pool");
    let store = SqliteStore::builder(readers)
        .write_pool(writer)
        .build()
        .expect("store");
    store.migrate().await.expect("migrate");
    store
}

/// tower-sessions' store on the same file, with the same WAL, busy_timeout and synchronous
/// settings (sqlx 0.8's options), on a pool as large as narvik's read pool.
async fn tower_store(
    path: &Path,
    synchronous: sqlx08::sqlite::SqliteSynchronous,
) -> TowerSqliteStore {
    let options = sqlx08::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(sqlx08::sqlite::SqliteJournalMode::Wal)
        .busy_timeout(SqliteStore::DEFAULT_BUSY_TIMEOUT)
        .synchronous(synchronous);
    let pool = sqlx08::sqlite::SqlitePoolOptions::new()
        .max_connections(READERS)
        .connect_with(options)
        .await
        .expect("sqlx 0.8 pool");
    let store = TowerSqliteStore::new(pool);
    store.migrate().await.expect("tower migrate");
    store
}

/// Fills the table with `rows` rows in SQL: 10 sessions per user, the first `expired` rows
/// expired (the oldest sessions, as in life), then ANALYZE.
async fn fill(store: &SqliteStore, rows: i64, expired: i64) {
    let now = OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let day = 86_400_000_i64;
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?1)
         INSERT INTO narvik_sessions (id, user_id, expires_at, created_at, data)
         SELECT printf('%064x', i), 'user-' || (i / 10),
                CASE WHEN i < ?2 THEN ?3 - ?4 ELSE ?3 + ?4 END, ?3, '{\"theme\":\"dark\"}'
         FROM n",
    )
    .bind(rows)
    .bind(expired)
    .bind(now)
    .bind(day)
    .execute(store.write_pool())
    .await
    .expect("fill");
    sqlx::query("ANALYZE")
        .execute(store.write_pool())
        .await
        .expect("analyze");
}

/// Returns (fetch µs at 10^5, at 10^6, purge ms at 10^5, at 10^6).
async fn scaling(dir: &Path) -> [f64; 4] {
    print_scaling_header();
    let mut figures = [0.0; 4];
    for (at, rows) in [100_000_i64, 1_000_000].into_iter().enumerate() {
        let store = narvik_store(
            &dir.join(format!("scale-{rows}.db")),
            SqliteSynchronous::Full,
        )
        .await;
        let started = Instant::now();
        fill(&store, rows, EXPIRED).await;
        let (fetch_micros, purge_millis) =
            scaling_row(&store, rows, started.elapsed().as_secs_f64()).await;
        figures[at] = fetch_micros;
        figures[2 + at] = purge_millis;
        store.close().await;
    }
    figures
}

#[tokio::main]
async fn main() {
    let Run { smoke, secs } = Run::from_env(0.2, 2.0);
    let dir = tempfile::Builder::new()
        .prefix("narvik-sqlite-bench")
        .tempdir_in(
            std::env::var_os("NARVIK_BENCH_DIR")
                .unwrap_or_else(|| std::env::temp_dir().into_os_string()),
        )
        .expect("bench directory");
    let path = dir.path().join("bench.db");

    // --- lookups ---
    let store = narvik_store(&path, SqliteSynchronous::Full).await;
    let narvik: Narvik<serde_json::Value> = Narvik::new(Arc::new(store.clone()));
    let (ids, tokens) = seed_sessions(&narvik).await;

    let raw_pool: SqlitePool = SqliteStore::pool_options()
        .max_connections(READERS)
        .connect_with(SqliteStore::connect_options(&path))
        .await
        .expect("raw pool");
    let select: Arc<str> = store
        .statements()
        .into_iter()
        .find(|(name, _)| *name == "fetch_session")
        .map(|(_, sql)| sql.into())
        .expect("fetch statement");
    let raw: Op = {
        let ids = ids.clone();
        Arc::new(move |i| {
            let (pool, ids, select) = (raw_pool.clone(), ids.clone(), select.clone());
            Box::pin(async move {
                let row = sqlx::query(AssertSqlSafe(select))
                    .bind(&ids[i % ids.len()])
                    .fetch_optional(&pool)
                    .await
                    .expect("raw select")
                    .expect("row");
                let _: (String, String, i64, i64, String) =
                    (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
            })
        })
    };
    let tower = tower_store(&path, sqlx08::sqlite::SqliteSynchronous::Full).await;
    let lookups = INTERLEAVE
        .lookups(
            raw,
            (narvik, store.clone()),
            (ids, tokens),
            tower.clone(),
            &[1, 8],
            secs,
        )
        .await;

    // --- creates ---
    let creates_full = INTERLEAVE
        .creates(store.clone(), tower.clone(), &[1, 8], secs)
        .await;
    let store_normal = narvik_store(&path, SqliteSynchronous::Normal).await;
    let tower_normal = tower_store(&path, sqlx08::sqlite::SqliteSynchronous::Normal).await;
    let creates_normal = INTERLEAVE
        .creates(store_normal.clone(), tower_normal, &[1, 8], secs)
        .await;

    let version: String = sqlx::query_scalar("SELECT sqlite_version()")
        .fetch_one(store.read_pool())
        .await
        .expect("version");
    println!(
        "\nSQLite {version}, WAL, busy_timeout 4 s, file in {}; machine load average: {}",
        dir.path().display(),
        load_average()
    );
    println!("\nnarvik-sqlite benchmark ({secs} s per row, read pools of {READERS}, narvik write pool of {}, {SESSIONS} sessions per store)", writers());
    print_table("Lookups", &lookups, RAW_SELECT);
    print_table(
        "Creates, synchronous = FULL on both (narvik's default)",
        &creates_full,
        TOWER_CREATE,
    );
    print_table(
        "Creates, synchronous = NORMAL on both (no fsync per commit)",
        &creates_normal,
        TOWER_CREATE,
    );
    store_normal.close().await;
    store.close().await;

    let validate_1 = ratio(&lookups, VALIDATE, RAW_SELECT, 1);
    let validate_8 = ratio(&lookups, VALIDATE, RAW_SELECT, 8);
    let create_full = ratio(&creates_full, NARVIK_CREATE, TOWER_CREATE, 1);
    let create_full_8 = ratio(&creates_full, NARVIK_CREATE, TOWER_CREATE, 8);
    let create_normal = ratio(&creates_normal, NARVIK_CREATE, TOWER_CREATE, 1);
    let create_normal_8 = ratio(&creates_normal, NARVIK_CREATE, TOWER_CREATE, 8);
    let scale = if smoke {
        println!("\n(smoke run: scaling rows skipped; run `cargo bench` for them)");
        None
    } else {
        Some(scaling(dir.path()).await)
    };
    let mut result = format!(
        "RESULT sqlite validate_vs_raw_1task={validate_1:.2} validate_vs_raw_8tasks={validate_8:.2} \
         create_vs_tower_full_1task={create_full:.2} create_vs_tower_full_8tasks={create_full_8:.2} \
         create_vs_tower_normal_1task={create_normal:.2} create_vs_tower_normal_8tasks={create_normal_8:.2}"
    );
    if let Some([fetch_5, fetch_6, purge_5, purge_6]) = scale {
        result.push_str(&format!(
            " list_1e6_vs_1e5={:.2} purge_1e6_vs_1e5={:.2}",
            fetch_6 / fetch_5,
            purge_6 / purge_5
        ));
    }
    println!("\n{result}");
}
