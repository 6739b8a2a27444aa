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
//! The kinds of work take turns in short slices (`ROUNDS` rounds), so that a slow moment of the
//! shared machine is spread over all of them instead of landing on one. The last line is
//! `RESULT mysql ...` with the ratios.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use narvik_core::{Narvik, SessionStore};
use narvik_mysql::sqlx::mysql::MySqlPoolOptions;
use narvik_mysql::sqlx::{self, AssertSqlSafe, MySqlPool, Row};
use narvik_mysql::MySqlStore;
use time::OffsetDateTime;
use tower_sessions_core::session::{Id, Record};
use tower_sessions_core::SessionStore as TowerSessionStore;
use tower_sessions_sqlx_store::sqlx as sqlx08;
use tower_sessions_sqlx_store::MySqlStore as TowerMySqlStore;

const POOL_SIZE: u32 = 16;
const SESSIONS: usize = 2_000;
const ROUNDS: u32 = 6;
/// Expired rows in each scaling table.
const EXPIRED: i64 = 10_000;

type Op = Arc<dyn Fn(usize) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

struct Measured {
    name: &'static str,
    tasks: usize,
    ops: usize,
    elapsed: Duration,
}

impl Measured {
    fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
}

async fn run_slice(
    op: &Op,
    tasks: usize,
    slice: Duration,
    counter: &Arc<AtomicUsize>,
    into: &mut Measured,
) {
    let start = Instant::now();
    let deadline = start + slice;
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let op = op.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut done = 0;
                while Instant::now() < deadline {
                    op(counter.fetch_add(1, Ordering::Relaxed)).await;
                    done += 1;
                }
                done
            })
        })
        .collect();
    for handle in handles {
        into.ops += handle.await.expect("bench task");
    }
    into.elapsed += start.elapsed();
}

/// Measures each `(name, op)` at each task count, interleaved in rounds.
async fn compare(ops: &[(&'static str, Op)], task_counts: &[usize], secs: f64) -> Vec<Measured> {
    let mut results: Vec<Measured> = Vec::new();
    for &tasks in task_counts {
        for (name, _) in ops {
            results.push(Measured {
                name,
                tasks,
                ops: 0,
                elapsed: Duration::ZERO,
            });
        }
    }
    let slice = Duration::from_secs_f64(secs / f64::from(ROUNDS));
    let counters: Vec<_> = ops.iter().map(|_| Arc::new(AtomicUsize::new(0))).collect();
    for ((_, op), counter) in ops.iter().zip(&counters) {
        let mut scratch = Measured {
            name: "",
            tasks: 0,
            ops: 0,
            elapsed: Duration::ZERO,
        };
        run_slice(
            op,
            POOL_SIZE as usize,
            Duration::from_millis(300),
            counter,
            &mut scratch,
        )
        .await;
    }
    for _ in 0..ROUNDS {
        let mut index = 0;
        for &tasks in task_counts {
            for ((_, op), counter) in ops.iter().zip(&counters) {
                run_slice(op, tasks, slice, counter, &mut results[index]).await;
                index += 1;
            }
        }
    }
    results
}

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

fn print_table(title: &str, rows: &[Measured], baseline: &str) {
    println!("\n{title}\n");
    println!("| operation | tasks | ops/s | µs/op per task | vs {baseline} |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for row in rows {
        let micros = row.elapsed.as_secs_f64() * 1e6 * row.tasks as f64 / row.ops.max(1) as f64;
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.2}x |",
            row.name,
            row.tasks,
            row.ops_per_sec(),
            micros,
            ratio(rows, row.name, baseline, row.tasks)
        );
    }
}

fn ratio(rows: &[Measured], name: &str, baseline: &str, tasks: usize) -> f64 {
    let find = |n: &str| {
        rows.iter()
            .find(|r| r.name == n && r.tasks == tasks)
            .map_or(f64::NAN, Measured::ops_per_sec)
    };
    find(name) / find(baseline)
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
    println!("\nScaling: cost follows the rows touched, not the table\n");
    println!("| table rows | fill s | fetch_sessions_for_user (10 rows) µs | expired purge (10,000 rows) ms | purged |");
    println!("| ---: | ---: | ---: | ---: | ---: |");
    let mut figures = Vec::new();
    for rows in [100_000_i64, 1_000_000] {
        let table = format!("narvik_bench_scale_{rows}");
        drop_table(admin, &table).await;
        let store = store(url, &table).await;
        let started = Instant::now();
        fill(&store, rows, EXPIRED).await;
        let fill_secs = started.elapsed().as_secs_f64();

        let first_live_user = EXPIRED / 10;
        let live_users = rows / 10 - first_live_user;
        let calls = 2_000;
        let mut found = 0;
        let now = OffsetDateTime::now_utc();
        let started = Instant::now();
        for call in 0..calls {
            let user = format!("user-{}", first_live_user + (call * 7_919) % live_users);
            found += store
                .fetch_sessions_for_user(&user, now)
                .await
                .expect("fetch")
                .len();
        }
        let fetch_micros = started.elapsed().as_secs_f64() * 1e6 / calls as f64;
        assert_eq!(
            found,
            calls as usize * 10,
            "every user has 10 live sessions"
        );

        let started = Instant::now();
        let purged = store
            .delete_all_expired_sessions(OffsetDateTime::now_utc())
            .await
            .expect("purge");
        let purge_millis = started.elapsed().as_secs_f64() * 1e3;
        println!("| {rows} | {fill_secs:.1} | {fetch_micros:.0} | {purge_millis:.0} | {purged} |");
        assert_eq!(purged, EXPIRED as u64);
        figures.push((rows, fetch_micros, purge_millis));
        store.pool().close().await;
        drop_table(admin, &table).await;
    }
    figures
}

fn tower_record() -> Record {
    let mut data = std::collections::HashMap::new();
    data.insert("theme".to_owned(), serde_json::json!("dark"));
    Record {
        id: Id::default(),
        data,
        expiry_date: OffsetDateTime::now_utc() + time::Duration::days(30),
    }
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this as a smoke test.
    let smoke = !std::env::args().any(|arg| arg == "--bench");
    let secs: f64 = std::env::var("NARVIK_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if smoke { 0.3 } else { 3.0 });
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
    let mut tokens = Vec::with_capacity(SESSIONS);
    let mut ids = Vec::with_capacity(SESSIONS);
    for i in 0..SESSIONS {
        let created = narvik
            .create_session(
                &format!("user-{}", i % 200),
                serde_json::json!({"theme": "dark"}),
            )
            .await
            .expect("create");
        ids.push(created.session.id.clone());
        tokens.push(created.token.as_str().to_owned());
    }
    let ids = Arc::new(ids);
    let tokens = Arc::new(tokens);

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
    let validate: Op = {
        let tokens = tokens.clone();
        let narvik = narvik.clone();
        Arc::new(move |i| {
            let (narvik, tokens) = (narvik.clone(), tokens.clone());
            Box::pin(async move {
                let session = narvik
                    .validate_session(&tokens[i % tokens.len()])
                    .await
                    .expect("validate");
                assert!(session.is_some_and(|s| !s.extended));
            })
        })
    };
    let lookups = compare(
        &[("raw select", raw), ("narvik validate_session", validate)],
        &[1, 64],
        secs,
    )
    .await;

    let tower = tower_store(&url, &database).await;
    tower.migrate().await.expect("tower migrate");
    let narvik_create: Op = {
        let narvik = narvik.clone();
        Arc::new(move |i| {
            let narvik = narvik.clone();
            Box::pin(async move {
                narvik
                    .create_session(
                        &format!("user-{}", i % 200),
                        serde_json::json!({"theme": "dark"}),
                    )
                    .await
                    .expect("narvik create");
            })
        })
    };
    let tower_create: Op = Arc::new(move |_| {
        let tower = tower.clone();
        Box::pin(async move {
            let mut record = tower_record();
            tower.create(&mut record).await.expect("tower create");
        })
    });
    let creates = compare(
        &[
            ("narvik create_session", narvik_create),
            ("tower-sessions create", tower_create),
        ],
        &[1, 64],
        secs,
    )
    .await;

    let version: String = sqlx::query_scalar(
        "SELECT CONCAT(VERSION(), ', innodb_flush_log_at_trx_commit=', \
         @@innodb_flush_log_at_trx_commit, ', sync_binlog=', @@sync_binlog, ', log_bin=', @@log_bin)",
    )
    .fetch_one(&admin)
    .await
    .expect("settings");
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "\nserver: {version}; machine load average: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("\nnarvik-mysql benchmark ({secs} s per row, pools of {POOL_SIZE}, {SESSIONS} sessions per store)");
    print_table("Lookups", &lookups, "raw select");
    print_table("Creates", &creates, "tower-sessions create");
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
        ratio(&lookups, "narvik validate_session", "raw select", 1),
        ratio(&lookups, "narvik validate_session", "raw select", 64),
        ratio(
            &creates,
            "narvik create_session",
            "tower-sessions create",
            1
        ),
        ratio(
            &creates,
            "narvik create_session",
            "tower-sessions create",
            64
        ),
    );
    for (rows, fetch, purge) in scale {
        result.push_str(&format!(
            " rows={rows}: list={fetch:.0}us purge10k={purge:.0}ms"
        ));
    }
    println!("\n{result}");
}
