//! The near cache bench every pushing store runs: warm cached validation against the store's
//! raw read, revocation latency from one instance to another, and the hit rate under a mix with
//! 1% writes. Each store's bench builds its two handles (two app instances on one server) and
//! its raw read, and calls [`run`]; the last line it prints is the store's `RESULT` line.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use narvik_core::{Narvik, NearCacheConfig, SessionStore};
use serde::{Deserialize, Serialize};

use crate::{
    load_average, print_table, ratio, seed_sessions_with, validate_op, Interleave, Op, Run,
};

/// Tasks of the throughput rows and of the mix, as the issue asks.
pub const TASKS: usize = 64;
/// Row name of the cached validation.
pub const CACHED_VALIDATE: &str = "narvik validate_session, near cache warm";
/// Row name of the uncached validation, for scale.
pub const PLAIN_VALIDATE: &str = "narvik validate_session, no cache";

/// The typed data every session carries, as an application's would (the Redis validate bench
/// uses the same shape).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Data {
    /// A preference.
    pub theme: String,
    /// Bumped by the mix's data updates.
    pub updates: u64,
}

fn data() -> Data {
    Data {
        theme: "dark".to_owned(),
        updates: 0,
    }
}

/// Runs the three measurements on `a` and `b` (two handles with their own connections on one
/// server) and prints `RESULT near_cache store=<store> hit_vs_raw=<x> revoke_p99_ms=<y>`.
/// `raw` makes the store's raw read of one seeded id (the `raw_name` row, the baseline).
pub async fn run(
    run: Run,
    store: &str,
    a: Arc<dyn SessionStore>,
    b: Arc<dyn SessionStore>,
    raw_name: &'static str,
    raw: impl FnOnce(Arc<Vec<String>>) -> Op,
) {
    let plain: Narvik<Data> = Narvik::new(Arc::clone(&b));
    let cached_a = cached(a).await;
    let cached_b = cached(b).await;
    let (ids, tokens) = seed_sessions_with(&plain, data).await;
    for token in tokens.iter() {
        cached_b
            .validate_session(token)
            .await
            .expect("validate")
            .expect("a seeded session is live");
    }

    let interleave = Interleave {
        rounds: if run.smoke { 2 } else { 6 },
        warm_up_tasks: TASKS,
        warm_up: Duration::from_millis(if run.smoke { 50 } else { 500 }),
    };
    let ops: Vec<(&'static str, Op)> = vec![
        (raw_name, raw(Arc::clone(&ids))),
        (
            CACHED_VALIDATE,
            validate_op(cached_b.clone(), Arc::clone(&tokens)),
        ),
        (PLAIN_VALIDATE, validate_op(plain, Arc::clone(&tokens))),
    ];
    let rows = interleave.compare(&ops, &[TASKS], run.secs).await;
    print_table(
        &format!(
            "near cache on {store}, {TASKS} tasks (load average {})",
            load_average()
        ),
        &rows,
        raw_name,
    );
    let hit_vs_raw = ratio(&rows, CACHED_VALIDATE, raw_name, TASKS);

    let samples = if run.smoke { 20 } else { 300 };
    let mut latencies = revocation_latencies(&cached_a, &cached_b, samples).await;
    latencies.sort();
    let p50 = percentile(&latencies, 50);
    let p99 = percentile(&latencies, 99);
    println!(
        "\nrevocation from A's invalidate_session returning to B rejecting, {samples} sessions: \
         p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        millis(p50),
        millis(p99),
        millis(latencies.last().copied().unwrap_or_default())
    );

    let hit_rate = mixed_hit_rate(&cached_a, &cached_b, &tokens, run.secs / 2.0).await;
    println!(
        "hit rate on B with 1% of the calls data updates on A, {TASKS} tasks: {:.1}%",
        hit_rate * 100.0
    );
    println!(
        "RESULT near_cache store={store} hit_vs_raw={hit_vs_raw:.1} revoke_p99_ms={:.2}",
        millis(p99)
    );
}

async fn cached(store: Arc<dyn SessionStore>) -> Narvik<Data> {
    let narvik = Narvik::builder(store)
        .near_cache(NearCacheConfig::pushed())
        .build()
        .expect("a store that pushes takes a pushed near cache");
    let started = Instant::now();
    while !narvik.near_cache_stats().is_some_and(|stats| stats.serving) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the push channel was not healthy within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    narvik
}

/// For each of `samples` fresh sessions cached on B: the time from A's `invalidate_session`
/// returning to B's first validation that rejects it.
async fn revocation_latencies(a: &Narvik<Data>, b: &Narvik<Data>, samples: usize) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(samples);
    for n in 0..samples {
        let created = a
            .create_session(&format!("revoked-{n}"), data())
            .await
            .expect("create");
        for _ in 0..2 {
            b.validate_token(&created.token)
                .await
                .expect("validate")
                .expect("live on B");
        }
        a.invalidate_session(&created.session.id)
            .await
            .expect("invalidate on A");
        let returned = Instant::now();
        loop {
            if b.validate_token(&created.token)
                .await
                .expect("validate")
                .is_none()
            {
                latencies.push(returned.elapsed());
                break;
            }
            assert!(
                returned.elapsed() < Duration::from_secs(5),
                "B still accepts a session revoked on A 5 s ago"
            );
            tokio::task::yield_now().await;
        }
    }
    latencies
}

/// B's hit rate while `TASKS` tasks validate seeded sessions on B and 1% of their calls
/// update a seeded session's data on A instead.
async fn mixed_hit_rate(
    a: &Narvik<Data>,
    b: &Narvik<Data>,
    tokens: &Arc<Vec<String>>,
    secs: f64,
) -> f64 {
    let before = b.near_cache_stats().expect("a near cache");
    let deadline = Instant::now() + Duration::from_secs_f64(secs.max(0.2));
    let calls = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (a, b, tokens, calls) = (a.clone(), b.clone(), Arc::clone(tokens), calls.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let n = calls.fetch_add(1, Ordering::Relaxed) as usize;
                    // 7919 is prime to the session count, so both the reads and the writes
                    // (every hundredth call, numbered apart) go round all the sessions.
                    let pick = if n % 100 == 99 { n / 100 } else { n };
                    let token = &tokens[pick.wrapping_mul(7919) % tokens.len()];
                    if n % 100 == 99 {
                        let Some(session) = a.validate_session(token).await.expect("validate")
                        else {
                            continue;
                        };
                        a.update_session_data(&session, |data| data.updates += 1)
                            .await
                            .expect("update");
                    } else {
                        b.validate_session(token).await.expect("validate");
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("mix task");
    }
    let after = b.near_cache_stats().expect("a near cache");
    let hits = (after.hits - before.hits) as f64;
    let misses = (after.misses - before.misses) as f64;
    hits / (hits + misses).max(1.0)
}

fn percentile(sorted: &[Duration], pct: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (sorted.len() * pct).div_ceil(100).max(1) - 1;
    sorted[rank.min(sorted.len() - 1)]
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}
