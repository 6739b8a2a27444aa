//! The machinery the stores' benches share, so that a change to how the benches measure
//! lands in all of them at once: interleaved timing slices, the ratio tables, the session
//! workloads on a narvik store, the same workloads on a tower-sessions store, and the near
//! cache bench of the stores that push invalidations ([`near_cache`]).
//!
//! Each bench keeps what is its own: its SQL, how it builds its pools and peers, and its
//! `RESULT` line.

#![forbid(unsafe_code)]

pub mod near_cache;
mod workloads;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use narvik_core::{Narvik, SessionStore};
use tower_sessions_core::SessionStore as TowerSessionStore;

pub use workloads::{
    fetch_op, narvik_create_op, print_scaling_header, scaling_row, seed_sessions,
    seed_sessions_with, seed_tower, tower_create_op, tower_load_op, tower_record, validate_op,
};

/// Sessions each bench creates in each store before measuring lookups.
pub const SESSIONS: usize = 2_000;
/// Expired rows in each scaling table.
pub const EXPIRED: i64 = 10_000;

/// Row name of the bench's own raw query, the floor for any session lookup.
pub const RAW_SELECT: &str = "raw select";
/// Row name of [`validate_op`].
pub const VALIDATE: &str = "narvik validate_session";
/// Row name of [`narvik_create_op`].
pub const NARVIK_CREATE: &str = "narvik create_session";
/// Row name of [`tower_create_op`], the baseline of the create tables.
pub const TOWER_CREATE: &str = "tower-sessions create";

/// One measured operation: called with a running call number, so that each call can pick its
/// own session out of a seeded set.
pub type Op = Arc<dyn Fn(usize) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// What a bench was started with: `cargo bench` passes `--bench`, `cargo test --benches` does
/// not and runs the bench as a smoke test whose figures are not worth reading.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    /// True under `cargo test --benches`: short slices, no scaling rows.
    pub smoke: bool,
    /// Measured seconds per row: `NARVIK_BENCH_SECS`, else the default for the kind of run.
    pub secs: f64,
}

impl Run {
    /// Reads the arguments and `NARVIK_BENCH_SECS`, with `smoke_secs` or `bench_secs` as the
    /// default.
    pub fn from_env(smoke_secs: f64, bench_secs: f64) -> Self {
        let smoke = !std::env::args().any(|arg| arg == "--bench");
        let secs = std::env::var("NARVIK_BENCH_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(if smoke { smoke_secs } else { bench_secs });
        Self { smoke, secs }
    }
}

/// How the kinds of work take turns: in `rounds` short slices each, so that a slow moment of a
/// shared machine is spread over all of them instead of landing on one, after a warm-up
/// (connections, prepared statements) outside the measurement.
#[derive(Debug, Clone, Copy)]
pub struct Interleave {
    /// Slices per row.
    pub rounds: u32,
    /// Tasks of each op's warm-up.
    pub warm_up_tasks: usize,
    /// Length of each op's warm-up.
    pub warm_up: Duration,
}

/// The calls one op completed at one task count, and the time they took.
#[derive(Debug)]
pub struct Measured {
    /// The op's row name.
    pub name: &'static str,
    /// Tasks calling the op at once.
    pub tasks: usize,
    /// Calls completed over all slices.
    pub ops: usize,
    /// Wall time over all slices.
    pub elapsed: Duration,
}

impl Measured {
    fn empty(name: &'static str, tasks: usize) -> Self {
        Self {
            name,
            tasks,
            ops: 0,
            elapsed: Duration::ZERO,
        }
    }

    /// Calls per second over all tasks.
    pub fn ops_per_sec(&self) -> f64 {
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
                // The clock is read every 16 calls: reading it costs as much as a cached
                // validation, and the fastest rows would pay it most.
                while Instant::now() < deadline {
                    for _ in 0..16 {
                        op(counter.fetch_add(1, Ordering::Relaxed)).await;
                    }
                    done += 16;
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

impl Interleave {
    /// Measures each `(name, op)` at each task count for `secs` in all, interleaved in rounds.
    pub async fn compare(
        &self,
        ops: &[(&'static str, Op)],
        task_counts: &[usize],
        secs: f64,
    ) -> Vec<Measured> {
        let mut results: Vec<Measured> = Vec::new();
        for &tasks in task_counts {
            for (name, _) in ops {
                results.push(Measured::empty(name, tasks));
            }
        }
        let slice = Duration::from_secs_f64(secs / f64::from(self.rounds));
        let counters: Vec<_> = ops.iter().map(|_| Arc::new(AtomicUsize::new(0))).collect();
        for ((_, op), counter) in ops.iter().zip(&counters) {
            let mut scratch = Measured::empty("", 0);
            run_slice(op, self.warm_up_tasks, self.warm_up, counter, &mut scratch).await;
        }
        for _ in 0..self.rounds {
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
}

impl Interleave {
    /// The lookup rows: `raw` (the bench's own query on the seeded `ids`), the store's
    /// `fetch_session`, `Narvik::validate_session` on the seeded `tokens`, and tower-sessions'
    /// `load` on [`SESSIONS`] records created in `tower` for it.
    pub async fn lookups<S, T>(
        &self,
        raw: Op,
        (narvik, store): (Narvik<serde_json::Value>, S),
        (ids, tokens): (Arc<Vec<String>>, Arc<Vec<String>>),
        tower: T,
        task_counts: &[usize],
        secs: f64,
    ) -> Vec<Measured>
    where
        S: SessionStore + Clone,
        T: TowerSessionStore + Clone,
    {
        let tower_ids = seed_tower(&tower).await;
        self.compare(
            &[
                (RAW_SELECT, raw),
                ("narvik store fetch_session", fetch_op(store, ids)),
                (VALIDATE, validate_op(narvik, tokens)),
                ("tower-sessions load", tower_load_op(tower, tower_ids)),
            ],
            task_counts,
            secs,
        )
        .await
    }

    /// The create rows: `Narvik::create_session` on `store` against tower-sessions' `create`.
    pub async fn creates<S, T>(
        &self,
        store: S,
        tower: T,
        task_counts: &[usize],
        secs: f64,
    ) -> Vec<Measured>
    where
        S: SessionStore,
        T: TowerSessionStore + Clone,
    {
        self.compare(
            &[
                (NARVIK_CREATE, narvik_create_op(store)),
                (TOWER_CREATE, tower_create_op(tower)),
            ],
            task_counts,
            secs,
        )
        .await
    }
}

/// Throughput of row `name` over row `baseline` at `tasks` tasks (NaN when either is missing).
pub fn ratio(rows: &[Measured], name: &str, baseline: &str, tasks: usize) -> f64 {
    let find = |n: &str| {
        rows.iter()
            .find(|r| r.name == n && r.tasks == tasks)
            .map_or(f64::NAN, Measured::ops_per_sec)
    };
    find(name) / find(baseline)
}

/// Prints `rows` as a markdown table, each against `baseline` at the same task count.
pub fn print_table(title: &str, rows: &[Measured], baseline: &str) {
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

/// The machine's 1, 5 and 15 minute load averages (empty where `/proc/loadavg` is missing):
/// client and server share the machine, so the figures are only read beside it.
pub fn load_average() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    load.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
