//! Session lookups at 10^3 and 10^6 sessions, and memory per session, in one run.
//!
//! Throughput rows (64 tokio tasks on a multi-thread runtime, every lookup hits an existing
//! session, each task walks the keys in a shuffled order from its own starting point):
//!
//! (a) raw: SHA-256 of the token + `RwLock<HashMap>` lookup + clone of a byte record, 10^3
//! (b) tower-sessions 0.15 `MemoryStore::load`, 10^3
//! (c) tower-sessions-moka-store 0.15 `load` (through tower-sessions-core 0.14's trait), 10^3
//! (d) `Narvik::validate_session` over narvik-memory, 10^3
//! (e) the same, 10^6
//! (f) narvik-memory `fetch_session` alone, 10^3
//! (g) the same, 10^6
//! (i) (a) at 10^6: what a plain map loses to the same growth, for reference
//! (h) (b) and then the typed data decoded from the loaded map, as an application of
//!     tower-sessions gets it: the same work as (d) minus the token check and hash
//!
//! Every session is created through the engine (`create_session`), one user per session, with
//! ~200 bytes of JSON data, and is in the first half of its life (no extension writes). The
//! rows run in interleaved rounds and keep their best, so load from elsewhere on a shared
//! machine hurts every row alike.
//!
//! Memory: a child process (this binary again) reads its resident set size from
//! `/proc/self/status`, creates 10^6 sessions through the engine, reads it again and reports
//! the difference per session; once with `()` data and once with the ~200-byte data. A fresh
//! process per figure, so memory freed by an earlier fill cannot hide a later one's.
//!
//! `cargo bench -p narvik-memory --bench validate`. Knobs: `NARVIK_BENCH_SECS` (per row and
//! round, default 1), `NARVIK_BENCH_ROUNDS` (default 3), `NARVIK_BENCH_BATCH` (lookups per
//! scheduling turn, default 1), `NARVIK_BENCH_LARGE` (default 1,000,000), `NARVIK_BENCH_ROWS`
//! (e.g. `deg`, rows to run). The last line is
//! `RESULT memory_scale validate_1e6_vs_1e3=<x> bytes_per_session_empty=<n> bytes_per_session_200b=<m>`.
//! Compare ratios within one run only: the machine may be shared.

use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use narvik_core::token::session_id_from_token;
use narvik_core::{Narvik, SessionStore, SessionToken};
use narvik_memory::MemoryStore;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

const TASKS: usize = 64;
const SMALL: usize = 1_000;
/// Set in a child process: which memory figure to measure (`empty` or `200b`).
const PROBE_VAR: &str = "NARVIK_BENCH_PROBE";

/// The additional data of every session: about 200 bytes of JSON, different per session.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Data {
    theme: String,
    locale: String,
    tz: String,
    roles: Vec<String>,
    csrf: String,
    cart: Vec<u32>,
    last_ip: String,
    beta: bool,
}

fn data(n: usize) -> Data {
    Data {
        theme: "dark".into(),
        locale: "nb-NO".into(),
        tz: "Europe/Oslo".into(),
        roles: vec!["reader".into(), "editor".into(), "billing".into()],
        csrf: format!(
            "{:043x}",
            (n as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)
        ),
        cart: vec![(n % 9_973) as u32, 120_044, 7, 31_337],
        last_ip: format!("10.{}.{}.{}", n % 250, (n / 250) % 250, n % 7),
        beta: n.is_multiple_of(2),
    }
}

fn json_len(n: usize) -> usize {
    serde_json::to_vec(&data(n)).map_or(0, |json| json.len())
}

fn tower_data(n: usize) -> HashMap<String, serde_json::Value> {
    let mut map: HashMap<String, serde_json::Value> = match serde_json::to_value(data(n)) {
        Ok(serde_json::Value::Object(fields)) => fields.into_iter().collect(),
        _ => HashMap::new(),
    };
    map.insert("user_id".to_owned(), serde_json::json!(format!("user-{n}")));
    map
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// A small deterministic generator for the shuffles, so runs visit keys alike.
struct SplitMix(u64);

impl SplitMix {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) % n as u64) as usize
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// Fixed-width keys (tokens or ids) in one contiguous buffer, in shuffled order: a lookup
/// starts from a key in cache-friendly memory, like a token just parsed from a request, and
/// walking them in order visits the sessions in an order unrelated to their creation.
struct Keys {
    width: usize,
    bytes: Vec<u8>,
}

impl Keys {
    fn new(width: usize, mut keys: Vec<String>, seed: u64) -> Self {
        SplitMix(seed).shuffle(&mut keys);
        let mut bytes = Vec::with_capacity(width * keys.len());
        for key in &keys {
            assert_eq!(key.len(), width);
            bytes.extend_from_slice(key.as_bytes());
        }
        Self { width, bytes }
    }

    fn len(&self) -> usize {
        self.bytes.len() / self.width
    }

    fn get(&self, i: usize) -> &str {
        std::str::from_utf8(&self.bytes[i * self.width..(i + 1) * self.width]).expect("ASCII key")
    }
}

/// Runs `$body` (an expression that may use the per-task clone `$state` and the key index
/// `$key`) from 64 tasks for `$secs` seconds, each task walking the `$n` shuffled keys in order
/// from its own starting point, and evaluates to operations per second. A macro, so that the
/// state is cloned once per task rather than once per operation.
macro_rules! measure {
    ($secs:expr, $n:expr, $shared:expr, |$state:ident, $key:ident| $body:expr) => {{
        let (batch, n) = (env("NARVIK_BENCH_BATCH", 1usize).max(1), $n);
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let ($state, stop) = ($shared.clone(), Arc::clone(&stop));
                tokio::spawn(async move {
                    let mut done = 0u64;
                    let mut $key = task * n / TASKS;
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..batch {
                            $key = if $key + 1 == n { 0 } else { $key + 1 };
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

/// Resident memory of this process in bytes (`VmRSS` of `/proc/self/status`).
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse::<u64>().ok())
        .expect("a VmRSS line")
        * 1024
}

/// Creates `n` sessions through `narvik` (users `user-<i>`, data from `make`) from a few
/// tasks, and returns their tokens if `keep` says so.
async fn create<D, F>(narvik: &Narvik<D>, n: usize, make: F, keep: bool) -> Vec<String>
where
    D: Serialize + serde::de::DeserializeOwned + Send + 'static,
    F: Fn(usize) -> D + Copy + Send + Sync + 'static,
{
    const FILLERS: usize = 4;
    let tasks: Vec<_> = (0..FILLERS)
        .map(|filler| {
            let narvik = narvik.clone();
            tokio::spawn(async move {
                let mut tokens = Vec::new();
                for i in (filler..n).step_by(FILLERS) {
                    let created = narvik
                        .create_session(&format!("user-{i}"), make(i))
                        .await
                        .expect("create");
                    if keep {
                        tokens.push(created.token.as_str().to_owned());
                    }
                }
                tokens
            })
        })
        .collect();
    let mut tokens = Vec::with_capacity(if keep { n } else { 0 });
    for task in tasks {
        tokens.extend(task.await.expect("filler"));
    }
    tokens
}

/// The child's side of a memory figure: resident bytes per session after creating `n`.
async fn probe(kind: &str, n: usize) {
    let store = Arc::new(MemoryStore::new());
    let before = resident_bytes();
    match kind {
        "empty" => {
            let narvik: Narvik<()> = Narvik::new(store.clone());
            create(&narvik, n, |_| (), false).await;
        }
        _ => {
            let narvik: Narvik<Data> = Narvik::new(store.clone());
            create(&narvik, n, data, false).await;
        }
    }
    let after = resident_bytes();
    assert_eq!(store.len(), n);
    println!("PROBE {}", (after.saturating_sub(before)) as f64 / n as f64);
}

/// Runs this binary as a memory probe and returns its bytes per session.
fn bytes_per_session(kind: &str, n: usize) -> f64 {
    let exe = std::env::current_exe().expect("the bench's own path");
    let output = Command::new(exe)
        .env(PROBE_VAR, kind)
        .env("NARVIK_BENCH_LARGE", n.to_string())
        .output()
        .expect("run the memory probe");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "memory probe failed: {stdout}");
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("PROBE "))
        .and_then(|value| value.trim_end().parse().ok())
        .expect("a PROBE line")
}

/// The raw baseline: id -> serialised record, and the tokens to look up.
type RawMap = (RwLock<HashMap<String, Vec<u8>>>, Keys);

/// Every store under test.
struct Subjects {
    large: usize,
    raw: [Arc<RawMap>; 2],
    tower: Arc<(
        tower_sessions::MemoryStore,
        Vec<tower_sessions::session::Id>,
    )>,
    moka: Arc<(
        tower_sessions_moka_store::MokaStore,
        Vec<tower_sessions_core::session::Id>,
    )>,
    /// Engine and tokens, 10^3 and 10^6 sessions.
    narvik: [Arc<(Narvik<Data>, Keys)>; 2],
    /// Store and session ids, 10^3 and 10^6 sessions.
    memory: [Arc<(Arc<MemoryStore>, Keys)>; 2],
}

async fn narvik_subject(
    n: usize,
    seed: u64,
) -> (Arc<(Narvik<Data>, Keys)>, Arc<(Arc<MemoryStore>, Keys)>) {
    let store = Arc::new(MemoryStore::new());
    let narvik: Narvik<Data> = Narvik::new(store.clone());
    let tokens = create(&narvik, n, data, true).await;
    let ids = tokens.iter().map(|t| session_id_from_token(t)).collect();
    (
        Arc::new((narvik, Keys::new(32, tokens, seed))),
        Arc::new((store, Keys::new(64, ids, seed))),
    )
}

/// The raw baseline with `n` sessions.
fn raw_subject(n: usize, seed: u64) -> Arc<RawMap> {
    let tokens: Vec<String> = (0..n)
        .map(|_| {
            SessionToken::generate()
                .expect("OS randomness")
                .as_str()
                .to_owned()
        })
        .collect();
    let map = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let bytes = serde_json::to_vec(&data(i)).expect("json");
            (session_id_from_token(t), bytes)
        })
        .collect();
    Arc::new((RwLock::new(map), Keys::new(32, tokens, seed)))
}

async fn fill(large: usize) -> Subjects {
    let expiry = OffsetDateTime::now_utc() + time::Duration::days(30);

    let tower = tower_sessions::MemoryStore::default();
    let mut tower_ids = Vec::with_capacity(SMALL);
    for n in 0..SMALL {
        use tower_sessions::SessionStore as _;
        let mut record = tower_sessions::session::Record {
            id: tower_sessions::session::Id::default(),
            data: tower_data(n),
            expiry_date: expiry,
        };
        tower.create(&mut record).await.expect("create");
        tower_ids.push(record.id);
    }
    SplitMix(1).shuffle(&mut tower_ids);

    let moka = tower_sessions_moka_store::MokaStore::new(Some(2 * SMALL as u64));
    let mut moka_ids = Vec::with_capacity(SMALL);
    for n in 0..SMALL {
        use tower_sessions_core::SessionStore as _;
        let mut record = tower_sessions_core::session::Record {
            id: tower_sessions_core::session::Id::default(),
            data: tower_data(n),
            expiry_date: expiry,
        };
        moka.create(&mut record).await.expect("create");
        moka_ids.push(record.id);
    }
    SplitMix(2).shuffle(&mut moka_ids);

    let (narvik_small, memory_small) = narvik_subject(SMALL, 3).await;
    let (narvik_large, memory_large) = narvik_subject(large, 4).await;

    Subjects {
        large,
        raw: [raw_subject(SMALL, 5), raw_subject(large, 6)],
        tower: Arc::new((tower, tower_ids)),
        moka: Arc::new((moka, moka_ids)),
        narvik: [narvik_small, narvik_large],
        memory: [memory_small, memory_large],
    }
}

/// The row names, with the large store's size as given.
fn names(large: &str) -> [String; 9] {
    [
        "(a) raw SHA-256 + RwLock<HashMap> + clone, 10^3".to_owned(),
        "(b) tower-sessions 0.15 MemoryStore::load, 10^3".to_owned(),
        "(c) tower-sessions-moka-store 0.15 load, 10^3".to_owned(),
        "(d) Narvik::validate_session, 10^3".to_owned(),
        format!("(e) Narvik::validate_session, {large}"),
        "(f) narvik-memory fetch_session, 10^3".to_owned(),
        format!("(g) narvik-memory fetch_session, {large}"),
        "(h) (b) + typed decode of the data, 10^3".to_owned(),
        format!("(i) raw SHA-256 + RwLock<HashMap> + clone, {large}"),
    ]
}

/// `10^6` for the default size, the number otherwise.
fn size_label(n: usize) -> String {
    match n {
        1_000_000 => "10^6".to_owned(),
        n => n.to_string(),
    }
}

/// One measurement of every selected row, in order (0 for a row left out).
async fn round(subjects: &Subjects, secs: f64, rows: &str) -> [f64; 9] {
    let mut got = [0.0; 9];
    for (size, (row, name)) in [(0, 'a'), (8, 'i')].into_iter().enumerate() {
        if rows.contains(name) {
            let subject = &subjects.raw[size];
            got[row] = measure!(secs, subject.1.len(), subject, |s, i| {
                let id = session_id_from_token(s.1.get(i));
                let record = s.0.read().expect("lock").get(&id).cloned();
                assert!(record.is_some());
            });
        }
    }
    if rows.contains('b') {
        got[1] = measure!(secs, SMALL, subjects.tower, |s, i| {
            use tower_sessions::SessionStore as _;
            assert!(s.0.load(&s.1[i]).await.expect("load").is_some());
        });
    }
    if rows.contains('c') {
        got[2] = measure!(secs, SMALL, subjects.moka, |s, i| {
            use tower_sessions_core::SessionStore as _;
            assert!(s.0.load(&s.1[i]).await.expect("load").is_some());
        });
    }
    for (size, (row, name)) in [(3, 'd'), (4, 'e')].into_iter().enumerate() {
        if rows.contains(name) {
            let subject = &subjects.narvik[size];
            got[row] = measure!(secs, subject.1.len(), subject, |s, i| {
                let session =
                    s.0.validate_session(s.1.get(i))
                        .await
                        .expect("validate")
                        .expect("a live session");
                assert!(!session.extended, "first half of the lifetime: no write");
            });
        }
    }
    for (size, (row, name)) in [(5, 'f'), (6, 'g')].into_iter().enumerate() {
        if rows.contains(name) {
            let subject = &subjects.memory[size];
            got[row] = measure!(secs, subject.1.len(), subject, |s, i| {
                assert!(s
                    .0
                    .fetch_session(s.1.get(i))
                    .await
                    .expect("fetch")
                    .is_some());
            });
        }
    }
    if rows.contains('h') {
        got[7] = measure!(secs, SMALL, subjects.tower, |s, i| {
            use tower_sessions::SessionStore as _;
            let record = s.0.load(&s.1[i]).await.expect("load").expect("live");
            let fields = serde::de::value::MapDeserializer::<_, serde_json::Error>::new(
                record.data.into_iter(),
            );
            std::hint::black_box(Data::deserialize(fields).expect("typed data"));
        });
    }
    got
}

/// p50 and p99 of one task validating `samples` sessions in shuffled order, in µs.
async fn latency(subject: &(Narvik<Data>, Keys), samples: usize) -> (f64, f64) {
    let n = subject.1.len();
    let mut times = Vec::with_capacity(samples);
    for i in 0..samples {
        let token = subject.1.get(i % n);
        let started = Instant::now();
        let session = subject.0.validate_session(token).await.expect("validate");
        times.push(started.elapsed());
        assert!(session.is_some());
    }
    times.sort_unstable();
    let at = |q: f64| times[((samples as f64 * q) as usize).min(samples - 1)].as_secs_f64() * 1e6;
    (at(0.50), at(0.99))
}

async fn run(secs: f64, rounds: usize, rows: &str, large: usize) {
    // Memory first, in child processes, before this process's own stores exist.
    let empty = bytes_per_session("empty", large);
    let with_data = bytes_per_session("200b", large);
    let json = (0..1_000).map(json_len).sum::<usize>() as f64 / 1_000.0;

    let started = Instant::now();
    let subjects = fill(large).await;
    let fill_secs = started.elapsed().as_secs_f64();
    let mut best = [0.0f64; 9];
    for _ in 0..rounds {
        let got = round(&subjects, secs, rows).await;
        for (best, got) in best.iter_mut().zip(got) {
            *best = best.max(got);
        }
    }
    let (p50_small, p99_small) = latency(&subjects.narvik[0], 200_000).await;
    let (p50_large, p99_large) = latency(&subjects.narvik[1], 200_000).await;

    let workers = std::thread::available_parallelism().map_or(0, usize::from);
    let large = size_label(subjects.large);
    println!(
        "\n{TASKS} tasks, 10^3 and {large} sessions (one user each, ~{json:.0} B of JSON data), \
         best of {rounds} rounds of {secs} s per row, {workers} CPUs visible, filled in \
         {fill_secs:.1} s\n",
    );
    println!("| {:<48} | {:>12} | {:>8} |", "lookup", "ops/s", "vs (b)");
    println!("| {:-<48} | {:->12} | {:->8} |", "", "", "");
    for (name, ops) in names(&large).iter().zip(best) {
        println!("| {name:<48} | {ops:>12.0} | {:>7.2}x |", ops / best[1]);
    }
    let [a, b, c, d, e, f, g, h, i] = best;
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    let scale = e / d;
    println!("\n| ratio | value | target | |");
    println!("| --- | ---: | ---: | --- |");
    println!(
        "| validate {large} / 10^3, (e)/(d) | {scale:.2} | >= 0.60 | {} |",
        verdict(scale >= 0.6)
    );
    println!(
        "| fetch_session {large} / 10^3, (g)/(f) | {:.2} | | |",
        g / f
    );
    println!("| raw map {large} / 10^3, (i)/(a) | {:.2} | | |", i / a);
    println!(
        "| validate 10^3 / tower-sessions MemoryStore::load, (d)/(b) | {:.2} | >= 2.00 | {} |",
        d / b,
        verdict(d >= 2.0 * b)
    );
    println!(
        "| validate 10^3 / moka store load, (d)/(c) | {:.2} | | |",
        d / c
    );
    println!(
        "| validate 10^3 / tower-sessions load + typed decode, (d)/(h) | {:.2} | | |",
        d / h
    );
    println!(
        "| p50 at 1 task, {large} / 10^3 | {:.2} ({p50_large:.2} / {p50_small:.2} µs) | | |",
        p50_large / p50_small
    );
    println!(
        "| p99 at 1 task, {large} / 10^3 | {:.2} ({p99_large:.2} / {p99_small:.2} µs) | | |",
        p99_large / p99_small
    );
    println!(
        "| resident bytes per session at {large}, `()` data | {empty:.0} | <= 250 | {} |",
        verdict(empty <= 250.0)
    );
    println!(
        "| resident bytes per session at {large}, ~{json:.0} B data | {with_data:.0} | <= {:.0} | {} |",
        json + 250.0,
        verdict(with_data <= json + 250.0)
    );
    println!(
        "| bytes per session beyond the data's JSON, ~{json:.0} B data | {:.0} | <= 250 | |",
        with_data - json
    );
    println!(
        "\nRESULT memory_scale validate_1e6_vs_1e3={scale:.2} bytes_per_session_empty={empty:.0} \
         bytes_per_session_200b={with_data:.0}"
    );
}

fn main() {
    let large: usize = env("NARVIK_BENCH_LARGE", 1_000_000usize).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Ok(kind) = std::env::var(PROBE_VAR) {
        runtime.block_on(probe(&kind, large));
        return;
    }
    let secs: f64 = env("NARVIK_BENCH_SECS", 1.0);
    let rounds: usize = env("NARVIK_BENCH_ROUNDS", 3usize).max(1);
    let rows = std::env::var("NARVIK_BENCH_ROWS").unwrap_or_else(|_| "abcdefghi".to_owned());
    runtime.block_on(run(secs, rounds, &rows, large));
}
