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
//! The kinds of work take turns in short slices (`ROUNDS` rounds), so that a slow moment of the
//! shared machine is spread over all of them instead of landing on one.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use narvik_core::{Narvik, SessionStore};
use narvik_postgres::sqlx::postgres::PgPoolOptions;
use narvik_postgres::sqlx::{self, AssertSqlSafe, PgPool, Row};
use narvik_postgres::PostgresStore;
use time::OffsetDateTime;
use tower_sessions_core::session::{Id, Record};
use tower_sessions_core::SessionStore as TowerSessionStore;
use tower_sessions_sqlx_store::sqlx as sqlx08;
use tower_sessions_sqlx_store::PostgresStore as TowerPostgresStore;

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

/// Runs `op` from `tasks` tasks for `slice`, adding to `into`.
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
    // Warm up every op (connections, prepared statements) outside the measurement.
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

fn narvik_create_op(store: PostgresStore) -> Op {
    let narvik: Narvik<serde_json::Value> = Narvik::new(Arc::new(store));
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
}

fn tower_create_op(tower: TowerPostgresStore) -> Op {
    Arc::new(move |_| {
        let tower = tower.clone();
        Box::pin(async move {
            let mut record = tower_record();
            tower.create(&mut record).await.expect("tower create");
        })
    })
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

fn print_table(title: &str, rows: &[Measured], baseline: &str) {
    println!("\n{title}\n");
    println!("| operation | tasks | ops/s | µs/op per task | vs {baseline} |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for row in rows {
        let base = rows
            .iter()
            .find(|r| r.name == baseline && r.tasks == row.tasks)
            .map_or(f64::NAN, Measured::ops_per_sec);
        let micros = row.elapsed.as_secs_f64() * 1e6 * row.tasks as f64 / row.ops.max(1) as f64;
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.2}x |",
            row.name,
            row.tasks,
            row.ops_per_sec(),
            micros,
            row.ops_per_sec() / base
        );
    }
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
    println!("\nScaling: cost follows the rows touched, not the table\n");
    println!("| table rows | fill s | fetch_sessions_for_user (10 rows) µs | expired purge (10,000 rows) ms | purged |");
    println!("| ---: | ---: | ---: | ---: | ---: |");
    for rows in [100_000_i64, 1_000_000] {
        let schema = format!("narvik_bench_scale_{rows}");
        drop_schema(admin, &schema).await;
        let store = store(url, &schema).await;
        let started = Instant::now();
        fill(&store, rows, EXPIRED).await;
        let fill_secs = started.elapsed().as_secs_f64();

        // Users past the expired rows have 10 live sessions each.
        let first_live_user = EXPIRED / 10;
        let live_users = rows / 10 - first_live_user;
        let calls = 2_000;
        let mut found = 0;
        // The engine hands its clock down; a benchmark with no engine hands the wall clock.
        let now = OffsetDateTime::now_utc();
        let started = Instant::now();
        for call in 0..calls {
            // Spread over the table so the cache does not only hold one corner of it.
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
        store.pool().close().await;
        drop_schema(admin, &schema).await;
    }
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this as a smoke test with
    // no measurement worth reading, so keep it short there.
    let smoke = !std::env::args().any(|arg| arg == "--bench");
    let secs: f64 = std::env::var("NARVIK_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if smoke { 0.3 } else { 3.0 });
    let url = std::env::var("NARVIK_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let admin = pool(&url).await;
    let schema = "narvik_bench";
    drop_schema(&admin, schema).await;

    // --- lookups: raw select vs validate_session vs tower-sessions load ---
    let narvik_store = store(&url, schema).await;
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
    let validate: Op = {
        let tokens = tokens.clone();
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

    let fetch: Op = {
        let (store, ids) = (narvik_store.clone(), ids.clone());
        Arc::new(move |i| {
            let (store, ids) = (store.clone(), ids.clone());
            Box::pin(async move {
                let record = store
                    .fetch_session(&ids[i % ids.len()])
                    .await
                    .expect("fetch");
                assert!(record.is_some());
            })
        })
    };

    let tower = tower_store(&url, schema, Commit::Synchronous).await;
    tower.migrate().await.expect("tower migrate");
    let mut tower_ids = Vec::with_capacity(SESSIONS);
    for _ in 0..SESSIONS {
        let mut record = tower_record();
        tower.create(&mut record).await.expect("tower create");
        tower_ids.push(record.id);
    }
    let tower_ids = Arc::new(tower_ids);
    let tower_load: Op = {
        let tower = tower.clone();
        Arc::new(move |i| {
            let (tower, ids) = (tower.clone(), tower_ids.clone());
            Box::pin(async move {
                let record = tower.load(&ids[i % ids.len()]).await.expect("tower load");
                assert!(record.is_some());
            })
        })
    };

    let lookups = compare(
        &[
            ("raw select", raw),
            ("narvik store fetch_session", fetch),
            ("narvik validate_session", validate),
            ("tower-sessions load", tower_load),
        ],
        &[1, 64],
        secs,
    )
    .await;

    // --- creates: one INSERT vs check-then-upsert in a transaction ---
    let creates = compare(
        &[
            (
                "narvik create_session",
                narvik_create_op(narvik_store.clone()),
            ),
            ("tower-sessions create", tower_create_op(tower)),
        ],
        &[1, 64],
        secs,
    )
    .await;
    let narvik_async = PostgresStore::builder(pool_with(&url, Commit::Asynchronous).await)
        .schema(schema)
        .build()
        .expect("valid schema name");
    let tower_async = tower_store(&url, schema, Commit::Asynchronous).await;
    let creates_async = compare(
        &[
            (
                "narvik create_session",
                narvik_create_op(narvik_async.clone()),
            ),
            ("tower-sessions create", tower_create_op(tower_async)),
        ],
        &[1, 64],
        secs,
    )
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
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "\nserver: {}; machine load average: {}",
        settings.join(", "),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("\nnarvik-postgres benchmark ({secs} s per row, pools of {POOL_SIZE}, {SESSIONS} sessions per store)");
    print_table("Lookups", &lookups, "raw select");
    print_table("Creates", &creates, "tower-sessions create");
    print_table(
        "Creates, synchronous_commit = off on both pools (round trips and server work only)",
        &creates_async,
        "tower-sessions create",
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

fn tower_record() -> Record {
    let mut data = std::collections::HashMap::new();
    data.insert("theme".to_owned(), serde_json::json!("dark"));
    Record {
        id: Id::default(),
        data,
        expiry_date: OffsetDateTime::now_utc() + time::Duration::days(30),
    }
}
