//! narvik-mysql against a raw query and against tower-sessions' sqlx store, side by side in one
//! run on one server.
//!
//! `cargo bench -p narvik-mysql` (server: `NARVIK_TEST_MYSQL_URL`, else
//! `mysql://root@127.0.0.1:3306/test`; `NARVIK_BENCH_SECS` sets the measured seconds per row,
//! default 3). Client and server share the machine: compare ratios within one run, never
//! absolute figures across machines or runs.
//!
//! Rows:
//! - `raw select`: the store's own `SELECT ... WHERE id = ?` on a sqlx 0.9 pool of 16, the
//!   floor for any session lookup;
//! - `narvik validate_session`: token parse + SHA-256 + the store's fetch, pool of 16;
//! - `narvik create_session` (one INSERT) vs `tower-sessions create` (BEGIN, an existence check,
//!   an upsert, COMMIT; sqlx 0.8, pool of 16);
//! - `fetch_sessions_for_user` (a user with 10 sessions) and the expired purge (10,000 expired
//!   rows) on tables of 10^5 and 10^6 rows: the time should follow the rows touched.
//!
//! The kinds of work take turns in short slices (`INTERLEAVE.rounds` rounds), so that a slow moment of the
//! shared machine is spread over all of them instead of landing on one. The last line is
//! `RESULT mysql ...` with the ratios.

use std::sync::Arc;
use std::time::{Duration, Instant};

use narvik_bench::{
    load_average, print_scaling_header, print_table, ratio, scaling_row, seed_sessions,
    validate_op, Interleave, Op, Run, EXPIRED, NARVIK_CREATE, RAW_SELECT, SESSIONS, TOWER_CREATE,
    VALIDATE,
};
use narvik_core::Narvik;
use narvik_mysql::sqlx::mysql::MySqlPoolOptions;
use narvik_mysql::sqlx::{self, AssertSqlSafe, MySqlPool, Row};
use narvik_mysql::MySqlStore;
use tower_sessions_sqlx_store::sqlx as sqlx08;
use tower_sessions_sqlx_store::MySqlStore as TowerMySqlStore;

const POOL_SIZE: u32 = 16;
const INTERLEAVE: Interleave = Interleave {
    rounds: 6,
    warm_up_tasks: POOL_SIZE as usize,
    warm_up: Duration::from_millis(300),
};

async fn pool(url: &str) -> MySqlPool {
    MySqlPoolOptions::new()
        .max_connections(POOL_SIZE)
        .min_connections(POOL_SIZE)
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("no MySQL at {url}: {e}; set NARVIK_TEST_MYSQL_URL"))
}

async fn tower_store(url: &str, database: &str) -> TowerMySqlStore {
    let pool = sqlx08::mysql::MySqlPoolOptions::new()
        .max_connections(POOL_SIZE)
        .min_connections(POOL_SIZE)
        .connect(url)
        .await
        .expect("sqlx 0.8 pool");
    TowerMySqlStore::new(pool)
        .with_schema_name(database)
        .expect("schema")
        .with_table_name("narvik_bench_tower_sessions")
        .expect("table")
}

async fn store(url: &str, table: &str) -> MySqlStore {
    let pool = MySqlStore::pool_options()
        .max_connections(POOL_SIZE)
        .min_connections(POOL_SIZE)
        .connect(url)
        .await
        .expect("pool");
    let store = MySqlStore::builder(pool)
        .table(table)
        .build()
        .expect("valid table name");
    store.migrate().await.expect("migrate");
    store
}

async fn drop_table(pool: &MySqlPool, table: &str) {
    for name in [table.to_owned(), format!("{table}_migrations")] {
        sqlx::raw_sql(AssertSqlSafe(format!("DROP TABLE IF EXISTS `{name}`")))
            .execute(pool)
            .await
            .expect("drop bench table");
    }
}

/// Fills `store`'s table in SQL: 10 sessions per user, the first `expired` rows expired.
async fn fill(store: &MySqlStore, rows: i64, expired: i64) {
    let table = format!("`{}`", store.config().table());
    let digits = "(SELECT 0 d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL \
                  SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL \
                  SELECT 8 UNION ALL SELECT 9)";
    // 10^5 numbers per statement; run it rows / 10^5 times with an offset.
    for chunk in 0..rows / 100_000 {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {table} (id, user_id, expires_at, created_at, data)
             SELECT SHA2(n, 256), CONCAT('user-', n DIV 10),
                    IF(n < ?, UTC_TIMESTAMP(3) - INTERVAL 1 DAY, UTC_TIMESTAMP(3) + INTERVAL 1 DAY),
                    UTC_TIMESTAMP(3), '{{\"theme\":\"dark\"}}'
             FROM (SELECT ? + a.d + 10*b.d + 100*c.d + 1000*e.d + 10000*f.d AS n
                   FROM {digits} a, {digits} b, {digits} c, {digits} e, {digits} f) numbers"
        )))
        .bind(expired)
        .bind(chunk * 100_000)
        .execute(store.pool())
        .await
        .expect("fill");
    }
    sqlx::query(AssertSqlSafe(format!("ANALYZE TABLE {table}")))
        .execute(store.pool())
        .await
        .expect("analyze");
}

/// (fetch µs, purge ms) per table size.
async fn scaling(url: &str, admin: &MySqlPool) -> Vec<(i64, f64, f64)> {
    print_scaling_header();
    let mut figures = Vec::new();
    for rows in [100_000_i64, 1_000_000] {
        let table = format!("narvik_bench_scale_{rows}");
        drop_table(admin, &table).await;
        let store = store(url, &table).await;
        let started = Instant::now();
        fill(&store, rows, EXPIRED).await;
        let (fetch_micros, purge_millis) =
            scaling_row(&store, rows, started.elapsed().as_secs_f64()).await;
        figures.push((rows, fetch_micros, purge_millis));
        store.pool().close().await;
        drop_table(admin, &table).await;
    }
    figures
}

#[tokio::main]
async fn main() {
    let Run { smoke, secs } = Run::from_env(0.3, 3.0);
    let url = std::env::var("NARVIK_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_owned());
    let admin = pool(&url).await;
    let database: String = sqlx::query_scalar("SELECT DATABASE()")
        .fetch_one(&admin)
        .await
        .expect("the URL names a database");
    let table = "narvik_bench";
    drop_table(&admin, table).await;
    drop_table(&admin, "narvik_bench_tower_sessions").await;

    let narvik_store = store(&url, table).await;
    let narvik: Narvik<serde_json::Value> = Narvik::new(Arc::new(narvik_store.clone()));
    let (ids, tokens) = seed_sessions(&narvik).await;

    let raw_pool = pool(&url).await;
    let select: Arc<str> = narvik_store
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
                let row = sqlx::query(AssertSqlSafe(select.to_string()))
                    .bind(ids[i % ids.len()].as_bytes())
                    .fetch_optional(&pool)
                    .await
                    .expect("raw select")
                    .expect("row");
                let _: String = row.try_get("data").expect("data");
            })
        })
    };
    let validate = validate_op(narvik, tokens);
    let lookups = INTERLEAVE
        .compare(&[(RAW_SELECT, raw), (VALIDATE, validate)], &[1, 64], secs)
        .await;

    let tower = tower_store(&url, &database).await;
    tower.migrate().await.expect("tower migrate");
    let creates = INTERLEAVE
        .creates(narvik_store.clone(), tower, &[1, 64], secs)
        .await;

    let version: String = sqlx::query_scalar(
        "SELECT CONCAT(VERSION(), ', innodb_flush_log_at_trx_commit=', \
         @@innodb_flush_log_at_trx_commit, ', sync_binlog=', @@sync_binlog, ', log_bin=', @@log_bin)",
    )
    .fetch_one(&admin)
    .await
    .expect("settings");
    println!(
        "\nserver: {version}; machine load average: {}",
        load_average()
    );
    println!("\nnarvik-mysql benchmark ({secs} s per row, pools of {POOL_SIZE}, {SESSIONS} sessions per store)");
    print_table("Lookups", &lookups, RAW_SELECT);
    print_table("Creates", &creates, TOWER_CREATE);
    narvik_store.pool().close().await;
    drop_table(&admin, table).await;
    drop_table(&admin, "narvik_bench_tower_sessions").await;

    let scale = if smoke {
        println!("\n(smoke run: scaling rows skipped; run `cargo bench` for them)");
        Vec::new()
    } else {
        scaling(&url, &admin).await
    };
    let mut result = format!(
        "RESULT mysql validate_vs_raw={:.2}x/{:.2}x create_vs_tower={:.2}x/{:.2}x (1/64 tasks)",
        ratio(&lookups, VALIDATE, RAW_SELECT, 1),
        ratio(&lookups, VALIDATE, RAW_SELECT, 64),
        ratio(&creates, NARVIK_CREATE, TOWER_CREATE, 1),
        ratio(&creates, NARVIK_CREATE, TOWER_CREATE, 64),
    );
    for (rows, fetch, purge) in scale {
        result.push_str(&format!(
            " rows={rows}: list={fetch:.0}us purge10k={purge:.0}ms"
        ));
    }
    println!("\n{result}");
}
