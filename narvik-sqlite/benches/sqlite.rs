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
//! - `narvik create_session` (one INSERT) vs `tower-sessions create` (BEGIN, INSERT OR ABORT,
//!   COMMIT), both on WAL with `busy_timeout`, once with `synchronous = FULL` (narvik's
//!   default: every commit waits for its fsync, on both) and once with `NORMAL` (no fsync per
//!   commit in WAL mode, which leaves the work each store does);
//! - `fetch_sessions_for_user` (a user with 10 sessions) and the expired purge (10,000 expired
//!   rows) on tables of 10^5 and 10^6 rows: the time should follow the rows touched.
//!
//! The kinds of work take turns in short slices (`ROUNDS` rounds), so that a slow moment of the
//! shared machine is spread over all of them instead of landing on one.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use narvik_core::{Narvik, SessionStore};
use narvik_sqlite::sqlx::sqlite::{SqlitePool, SqliteSynchronous};
use narvik_sqlite::sqlx::{self, AssertSqlSafe, Row};
use narvik_sqlite::SqliteStore;
use time::OffsetDateTime;
use tower_sessions_core::session::{Id, Record};
use tower_sessions_core::SessionStore as TowerSessionStore;
use tower_sessions_sqlx_store::sqlx as sqlx08;
use tower_sessions_sqlx_store::SqliteStore as TowerSqliteStore;

const SESSIONS: usize = 2_000;
const ROUNDS: u32 = 5;
/// Expired rows in each scaling table.
const EXPIRED: i64 = 10_000;
const READERS: u32 = SqliteStore::DEFAULT_READ_CONNECTIONS;

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
        run_slice(op, 4, Duration::from_millis(200), counter, &mut scratch).await;
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

fn ratio(rows: &[Measured], name: &str, baseline: &str, tasks: usize) -> f64 {
    let find = |n: &str| {
        rows.iter()
            .find(|r| r.name == n && r.tasks == tasks)
            .map_or(f64::NAN, Measured::ops_per_sec)
    };
    find(name) / find(baseline)
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

fn tower_record() -> Record {
    let mut data = std::collections::HashMap::new();
    data.insert("theme".to_owned(), serde_json::json!("dark"));
    Record {
        id: Id::default(),
        data,
        expiry_date: OffsetDateTime::now_utc() + time::Duration::days(30),
    }
}

fn narvik_create_op(store: SqliteStore) -> Op {
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

fn tower_create_op(tower: TowerSqliteStore) -> Op {
    Arc::new(move |_| {
        let tower = tower.clone();
        Box::pin(async move {
            let mut record = tower_record();
            tower.create(&mut record).await.expect("tower create");
        })
    })
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
    println!("\nScaling: cost follows the rows touched, not the table\n");
    println!("| table rows | fill s | fetch_sessions_for_user (10 rows) µs | expired purge (10,000 rows) ms | purged |");
    println!("| ---: | ---: | ---: | ---: | ---: |");
    let mut figures = [0.0; 4];
    for (at, rows) in [100_000_i64, 1_000_000].into_iter().enumerate() {
        let store = narvik_store(
            &dir.join(format!("scale-{rows}.db")),
            SqliteSynchronous::Full,
        )
        .await;
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
        figures[at] = fetch_micros;
        figures[2 + at] = purge_millis;
        store.close().await;
    }
    figures
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this as a smoke test.
    let smoke = !std::env::args().any(|arg| arg == "--bench");
    let secs: f64 = std::env::var("NARVIK_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if smoke { 0.2 } else { 2.0 });
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
    let (ids, tokens) = (Arc::new(ids), Arc::new(tokens));

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
        let (store, ids) = (store.clone(), ids.clone());
        Arc::new(move |i| {
            let (store, ids) = (store.clone(), ids.clone());
            Box::pin(async move {
                assert!(store
                    .fetch_session(&ids[i % ids.len()])
                    .await
                    .expect("fetch")
                    .is_some());
            })
        })
    };
    let tower = tower_store(&path, sqlx08::sqlite::SqliteSynchronous::Full).await;
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
                assert!(tower
                    .load(&ids[i % ids.len()])
                    .await
                    .expect("tower load")
                    .is_some());
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
        &[1, 8],
        secs,
    )
    .await;

    // --- creates ---
    let creates_full = compare(
        &[
            ("narvik create_session", narvik_create_op(store.clone())),
            ("tower-sessions create", tower_create_op(tower.clone())),
        ],
        &[1, 8],
        secs,
    )
    .await;
    let store_normal = narvik_store(&path, SqliteSynchronous::Normal).await;
    let tower_normal = tower_store(&path, sqlx08::sqlite::SqliteSynchronous::Normal).await;
    let creates_normal = compare(
        &[
            (
                "narvik create_session",
                narvik_create_op(store_normal.clone()),
            ),
            ("tower-sessions create", tower_create_op(tower_normal)),
        ],
        &[1, 8],
        secs,
    )
    .await;

    let version: String = sqlx::query_scalar("SELECT sqlite_version()")
        .fetch_one(store.read_pool())
        .await
        .expect("version");
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "\nSQLite {version}, WAL, busy_timeout 4 s, file in {}; machine load average: {}",
        dir.path().display(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("\nnarvik-sqlite benchmark ({secs} s per row, read pools of {READERS}, narvik write pool of {}, {SESSIONS} sessions per store)", writers());
    print_table("Lookups", &lookups, "raw select");
    print_table(
        "Creates, synchronous = FULL on both (narvik's default)",
        &creates_full,
        "tower-sessions create",
    );
    print_table(
        "Creates, synchronous = NORMAL on both (no fsync per commit)",
        &creates_normal,
        "tower-sessions create",
    );
    store_normal.close().await;
    store.close().await;

    let validate_1 = ratio(&lookups, "narvik validate_session", "raw select", 1);
    let validate_8 = ratio(&lookups, "narvik validate_session", "raw select", 8);
    let create_full = ratio(
        &creates_full,
        "narvik create_session",
        "tower-sessions create",
        1,
    );
    let create_full_8 = ratio(
        &creates_full,
        "narvik create_session",
        "tower-sessions create",
        8,
    );
    let create_normal = ratio(
        &creates_normal,
        "narvik create_session",
        "tower-sessions create",
        1,
    );
    let create_normal_8 = ratio(
        &creates_normal,
        "narvik create_session",
        "tower-sessions create",
        8,
    );
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
