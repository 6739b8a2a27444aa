//! Session lookup throughput, side by side in one run: 64 tokio tasks on a multi-thread
//! runtime, 10,000 stored sessions, every lookup hits an existing session.
//!
//! (a) raw: SHA-256 of the token + `RwLock<HashMap>` lookup + clone of a byte record
//! (b) tower-sessions 0.15 `MemoryStore::load`
//! (c) tower-sessions-moka-store 0.15 `load` (through tower-sessions-core 0.14's trait)
//! (d) `Narvik::validate_session` over narvik-memory (sessions in the first half of their life,
//!     so no extension writes)
//! (e) narvik-memory `fetch_session` alone, for reference
//!
//! `cargo bench -p narvik-memory --bench validate`. Each row runs `NARVIK_BENCH_ROUNDS` times
//! (default 3) for `NARVIK_BENCH_SECS` seconds (default 1), interleaved, and keeps its best.
//! `NARVIK_BENCH_ROWS=de` runs only some rows (for profiling one of them).
//! Compare ratios within one run only: the machine may be shared.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use narvik_core::token::session_id_from_token;
use narvik_core::{Narvik, SessionStore, SessionToken};
use narvik_memory::MemoryStore;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

const TASKS: usize = 64;
const SESSIONS: usize = 10_000;

/// The additional data every store carries, the same shape in each.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Data {
    theme: String,
    roles: Vec<String>,
}

fn data() -> Data {
    Data {
        theme: "dark".into(),
        roles: vec!["reader".into(), "editor".into()],
    }
}

fn tower_data(user: usize) -> HashMap<String, serde_json::Value> {
    let mut map = HashMap::new();
    map.insert(
        "user_id".to_owned(),
        serde_json::json!(format!("user-{user}")),
    );
    map.insert("theme".to_owned(), serde_json::json!("dark"));
    map.insert("roles".to_owned(), serde_json::json!(["reader", "editor"]));
    map
}

/// Runs `$body` (an expression that may use the per-task clone `$state` and the key index
/// `$key`) from 64 tasks for `$secs` seconds, `$key` walking the 10,000 keys in a different order
/// per task, and evaluates to operations per second. A macro, so that the state is cloned once
/// per task rather than once per operation.
macro_rules! measure {
    ($secs:expr, $shared:expr, |$state:ident, $key:ident| $body:expr) => {{
        let batch = batch();
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let ($state, stop) = ($shared.clone(), Arc::clone(&stop));
                tokio::spawn(async move {
                    let mut done = 0u64;
                    let mut $key = task * 157;
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..batch {
                            $key = ($key + 7_919) % SESSIONS;
                            $body;
                        }
                        done += batch as u64;
                        tokio::task::yield_now().await;
                    }
                    done
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_secs_f64($secs)).await;
        stop.store(true, Ordering::Relaxed);
        let mut total = 0;
        for task in tasks {
            total += task.await.expect("bench task");
        }
        total as f64 / started.elapsed().as_secs_f64()
    }};
}

/// Lookups a task makes before it yields (`NARVIK_BENCH_BATCH`, default 1: one lookup per
/// scheduling turn, as a request handler that awaits its socket between requests).
fn batch() -> usize {
    std::env::var("NARVIK_BENCH_BATCH")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1)
}

fn main() {
    let secs: f64 = std::env::var("NARVIK_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let rounds: usize = std::env::var("NARVIK_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1);
    let rows = std::env::var("NARVIK_BENCH_ROWS").unwrap_or_else(|_| "abcde".to_owned());
    runtime.block_on(run(secs, rounds, &rows));
}

/// Fixed-width keys (tokens or ids) in one contiguous buffer, as the tower-sessions ids (`i128`)
/// are: a lookup starts from a key in cache-friendly memory, like a token just parsed from a
/// request, instead of chasing a pointer to a separate `String` per key.
struct Keys {
    width: usize,
    bytes: Vec<u8>,
}

impl Keys {
    fn new<'a>(width: usize, keys: impl IntoIterator<Item = &'a str>) -> Self {
        let mut bytes = Vec::with_capacity(width * SESSIONS);
        for key in keys {
            assert_eq!(key.len(), width);
            bytes.extend_from_slice(key.as_bytes());
        }
        Self { width, bytes }
    }

    fn get(&self, i: usize) -> &str {
        std::str::from_utf8(&self.bytes[i * self.width..(i + 1) * self.width]).expect("ASCII key")
    }
}

/// The raw baseline: id -> serialised record, and the tokens to look up.
type RawMap = (RwLock<HashMap<String, Vec<u8>>>, Keys);

/// Every store under test, filled with the same 10,000 sessions.
struct Subjects {
    raw: Arc<RawMap>,
    tower: Arc<(
        tower_sessions::MemoryStore,
        Vec<tower_sessions::session::Id>,
    )>,
    moka: Arc<(
        tower_sessions_moka_store::MokaStore,
        Vec<tower_sessions_core::session::Id>,
    )>,
    narvik: Arc<(Narvik<Data>, Keys)>,
    memory: Arc<(Arc<MemoryStore>, Keys)>,
}

async fn fill() -> Subjects {
    let expiry = OffsetDateTime::now_utc() + time::Duration::days(30);

    let raw_tokens: Vec<String> = (0..SESSIONS)
        .map(|_| {
            SessionToken::generate()
                .expect("OS randomness")
                .as_str()
                .to_owned()
        })
        .collect();
    let record_bytes = serde_json::to_vec(&data()).expect("json");
    let raw_map = raw_tokens
        .iter()
        .map(|t| (session_id_from_token(t), record_bytes.clone()))
        .collect();

    let tower = tower_sessions::MemoryStore::default();
    let mut tower_ids = Vec::with_capacity(SESSIONS);
    for user in 0..SESSIONS {
        use tower_sessions::SessionStore as _;
        let mut record = tower_sessions::session::Record {
            id: tower_sessions::session::Id::default(),
            data: tower_data(user),
            expiry_date: expiry,
        };
        tower.create(&mut record).await.expect("create");
        tower_ids.push(record.id);
    }

    let moka = tower_sessions_moka_store::MokaStore::new(Some(2 * SESSIONS as u64));
    let mut moka_ids = Vec::with_capacity(SESSIONS);
    for user in 0..SESSIONS {
        use tower_sessions_core::SessionStore as _;
        let mut record = tower_sessions_core::session::Record {
            id: tower_sessions_core::session::Id::default(),
            data: tower_data(user),
            expiry_date: expiry,
        };
        moka.create(&mut record).await.expect("create");
        moka_ids.push(record.id);
    }

    let memory = Arc::new(MemoryStore::new());
    let narvik: Narvik<Data> = Narvik::new(memory.clone());
    let mut tokens = Vec::with_capacity(SESSIONS);
    let mut ids = Vec::with_capacity(SESSIONS);
    for user in 0..SESSIONS {
        let created = narvik
            .create_session(&format!("user-{user}"), data())
            .await
            .expect("create");
        tokens.push(created.token.as_str().to_owned());
        ids.push(created.session.id);
    }

    Subjects {
        raw: Arc::new((
            RwLock::new(raw_map),
            Keys::new(32, raw_tokens.iter().map(String::as_str)),
        )),
        tower: Arc::new((tower, tower_ids)),
        moka: Arc::new((moka, moka_ids)),
        narvik: Arc::new((narvik, Keys::new(32, tokens.iter().map(String::as_str)))),
        memory: Arc::new((memory, Keys::new(64, ids.iter().map(String::as_str)))),
    }
}

const NAMES: [&str; 5] = [
    "(a) raw SHA-256 + RwLock<HashMap> + clone",
    "(b) tower-sessions 0.15 MemoryStore::load",
    "(c) tower-sessions-moka-store 0.15 load",
    "(d) Narvik::validate_session, narvik-memory",
    "(e) narvik-memory fetch_session alone",
];

/// One measurement of every selected row, in order (0 for a row left out).
async fn round(subjects: &Subjects, secs: f64, rows: &str) -> [f64; 5] {
    let mut got = [0.0; 5];
    if rows.contains('a') {
        got[0] = measure!(secs, subjects.raw, |s, i| {
            let id = session_id_from_token(s.1.get(i));
            let record = s.0.read().expect("lock").get(&id).cloned();
            assert!(record.is_some());
        });
    }
    if rows.contains('b') {
        got[1] = measure!(secs, subjects.tower, |s, i| {
            use tower_sessions::SessionStore as _;
            assert!(s.0.load(&s.1[i]).await.expect("load").is_some());
        });
    }
    if rows.contains('c') {
        got[2] = measure!(secs, subjects.moka, |s, i| {
            use tower_sessions_core::SessionStore as _;
            assert!(s.0.load(&s.1[i]).await.expect("load").is_some());
        });
    }
    if rows.contains('d') {
        got[3] = measure!(secs, subjects.narvik, |s, i| {
            let session =
                s.0.validate_session(s.1.get(i))
                    .await
                    .expect("validate")
                    .expect("a live session");
            assert!(!session.extended, "first half of the lifetime: no write");
        });
    }
    if rows.contains('e') {
        got[4] = measure!(secs, subjects.memory, |s, i| {
            assert!(s
                .0
                .fetch_session(s.1.get(i))
                .await
                .expect("fetch")
                .is_some());
        });
    }
    got
}

async fn run(secs: f64, rounds: usize, rows: &str) {
    let subjects = fill().await;
    // Rows are measured in interleaved rounds and each keeps its best round, so a burst of load
    // from elsewhere on a shared machine hurts every row alike instead of one.
    let mut best = [0.0f64; 5];
    for _ in 0..rounds {
        let got = round(&subjects, secs, rows).await;
        for (best, got) in best.iter_mut().zip(got) {
            *best = best.max(got);
        }
    }

    let workers = std::thread::available_parallelism().map_or(0, usize::from);
    println!(
        "\n{TASKS} tasks, {SESSIONS} sessions, best of {rounds} rounds of {secs} s per row, \
         {workers} CPUs visible\n"
    );
    println!("| {:<46} | {:>12} | {:>8} |", "lookup", "ops/s", "vs (b)");
    println!("| {:-<46} | {:->12} | {:->8} |", "", "", "");
    for (name, ops) in NAMES.iter().zip(best) {
        println!("| {name:<46} | {ops:>12.0} | {:>7.2}x |", ops / best[1]);
    }
    let [_, b, c, d, _] = best;
    println!(
        "\n(d)/(b) = {:.2} (target >= 2.00): {}",
        d / b,
        if d >= 2.0 * b { "met" } else { "MISSED" }
    );
    println!(
        "(d)/(c) = {:.2} (target >= 1.00): {}",
        d / c,
        if d >= c { "met" } else { "MISSED" }
    );
}
