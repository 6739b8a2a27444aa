//! `validate_session` through narvik-redis against the ways of reading one ~200-byte value
//! from Redis, side by side in one run: 64 concurrent tasks, each row for a fixed time, in many
//! short rounds of rotating order. A row's ratio to the raw `GET` is taken within each round and
//! the median over rounds is reported: on a shared machine the throughput drifts between rounds,
//! and within-round ratios cancel the drift. Figures are only comparable within one run.
//!
//! ```text
//! cargo bench -p narvik-redis --bench validate
//! NARVIK_BENCH_SECS=1 NARVIK_BENCH_ROUNDS=21 NARVIK_TEST_REDIS_URL=redis://host:6379 cargo bench -p narvik-redis --bench validate
//! NARVIK_BENCH_ONLY=raw,validate   # rows whose name contains one of these
//! NARVIK_BENCH_TASKS=1             # concurrency (default 64)
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use narvik_core::{Narvik, SessionStore as _};
use narvik_redis::redis::{self, AsyncCommands};
use narvik_redis::{deadpool_redis, RedisStore};
use serde::{Deserialize, Serialize};
use tower_sessions_core::SessionStore as _;
use tower_sessions_redis_store::fred::prelude::{
    ClientLike, Config as FredConfig, Pool as FredPool,
};

/// Concurrent tasks unless `NARVIK_BENCH_TASKS` says otherwise (the issue's figure).
const DEFAULT_TASKS: usize = 64;

type Op = Arc<dyn Fn(usize) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Additional data of a typical size: the stored record is about 200 bytes.
#[derive(Serialize, Deserialize, Clone)]
struct Data {
    theme: String,
    locale: String,
    csrf: String,
    roles: Vec<String>,
}

fn data() -> Data {
    Data {
        theme: "dark".into(),
        locale: "nb-NO".into(),
        csrf: "q4bX9vT2lM8sR1kP0wZ7yC3dF6hJ5nA2".into(),
        roles: vec![
            "reader".into(),
            "editor".into(),
            "billing-admin".into(),
            "support".into(),
        ],
    }
}

/// CPU seconds (user + system) this process has used so far, from `/proc/self/stat`
/// (Linux; 0 elsewhere, which shows as a zero column).
fn client_cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name, which is in parentheses: utime and stime are 14 and 15.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|field| field.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Linux reports in USER_HZ, 100 per second on every mainstream configuration.
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds the Redis server has used so far (`INFO cpu`).
async fn server_cpu_secs(raw: &mut redis::aio::MultiplexedConnection) -> f64 {
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .query_async(raw)
        .await
        .expect("INFO cpu");
    info.lines()
        .filter_map(|line| line.split_once(':'))
        .filter(|(name, _)| *name == "used_cpu_user" || *name == "used_cpu_sys")
        .filter_map(|(_, value)| value.trim().parse::<f64>().ok())
        .sum()
}

/// One row's figures in one round.
#[derive(Clone, Copy)]
struct Sample {
    ops_per_sec: f64,
    /// CPU microseconds per operation in this process (client, runtime, driver).
    client_us: f64,
    /// CPU microseconds per operation in the Redis server.
    server_us: f64,
    /// Throughput relative to the first row (raw `GET`) in the same round.
    vs_baseline: f64,
}

/// Runs `op` on `tasks` tasks for `duration`, with the CPU both sides spent on it.
async fn measure_cpu(
    op: &Op,
    tasks: usize,
    duration: Duration,
    raw: &mut redis::aio::MultiplexedConnection,
) -> Sample {
    let server_before = server_cpu_secs(raw).await;
    let client_before = client_cpu_secs();
    let start = Instant::now();
    let ops_per_sec = measure(op, tasks, duration).await;
    let ops = ops_per_sec * start.elapsed().as_secs_f64();
    let client = client_cpu_secs() - client_before;
    let server = server_cpu_secs(raw).await - server_before;
    Sample {
        ops_per_sec,
        client_us: client * 1e6 / ops,
        server_us: server * 1e6 / ops,
        vs_baseline: 1.0,
    }
}

/// Runs `op` on `tasks` tasks for `duration`; returns operations per second.
async fn measure(op: &Op, tasks: usize, duration: Duration) -> f64 {
    let start = Instant::now();
    let deadline = start + duration;
    let handles: Vec<_> = (0..tasks)
        .map(|task| {
            let op = Arc::clone(op);
            tokio::spawn(async move {
                let mut done = 0_u64;
                while Instant::now() < deadline {
                    op(task).await;
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut total = 0;
    for task in handles {
        total += task.await.expect("bench task");
    }
    total as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let url = std::env::var("NARVIK_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let secs: f64 = std::env::var("NARVIK_BENCH_SECS")
        .ok()
        .and_then(|secs| secs.parse().ok())
        .unwrap_or(0.5);
    let duration = Duration::from_secs_f64(secs);
    // Rounds in rotating order (NARVIK_BENCH_ROUNDS, default 15).
    let rounds: usize = std::env::var("NARVIK_BENCH_ROUNDS")
        .ok()
        .and_then(|rounds| rounds.parse().ok())
        .filter(|rounds| *rounds > 0)
        .unwrap_or(15);
    let tasks: usize = std::env::var("NARVIK_BENCH_TASKS")
        .ok()
        .and_then(|tasks| tasks.parse().ok())
        .filter(|tasks| *tasks > 0)
        .unwrap_or(DEFAULT_TASKS);
    let prefix = format!("narvik-redis-bench:{:016x}", rand::random::<u64>());

    // narvik: one session per task, fresh (no extension during the run).
    let store = RedisStore::builder()
        .prefix(&prefix)
        .connect(url.as_str())
        .await
        .expect("connect narvik-redis");
    let narvik: Narvik<Data> = Narvik::new(Arc::new(store.clone()));
    let mut tokens = Vec::new();
    for task in 0..tasks {
        let created = narvik
            .create_session(&format!("user-{task}"), data())
            .await
            .expect("create session");
        tokens.push(created.token.as_str().to_owned());
    }
    let tokens = Arc::new(tokens);
    let mut raw = redis::Client::open(url.as_str())
        .expect("URL")
        .get_multiplexed_async_connection()
        .await
        .expect("connect raw");
    let first_id = narvik_core::SessionToken::parse(&tokens[0])
        .expect("token")
        .session_id();
    let record_key = format!("{prefix}:s:{first_id}");
    let record_len: usize = raw.strlen(&record_key).await.expect("STRLEN");
    // The data JSON follows the 42-byte header and the user id (see src/record.rs).
    let json_offset = 42 + "user-0".len();

    // Raw reads: one key holding a value of the same size.
    let raw_key = format!("{prefix}:raw");
    let _: () = raw
        .pset_ex(&raw_key, vec![b'x'; record_len], 600_000)
        .await
        .expect("SET raw");
    let manager = redis::Client::open(url.as_str())
        .expect("URL")
        .get_connection_manager()
        .await
        .expect("connect manager");
    let pool = deadpool_redis::Config::from_url(url.as_str())
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))
        .expect("deadpool");
    let pooled_store = RedisStore::builder()
        .prefix(&prefix)
        .from_pool(pool.clone())
        .expect("narvik-redis from the pool");
    let pooled_narvik: Narvik<Data> = Narvik::new(Arc::new(pooled_store));

    // tower-sessions-redis-store 0.16 on a fred pool, through tower-sessions-core 0.14.
    let fred = FredPool::new(
        FredConfig::from_url(&url).expect("fred URL"),
        None,
        None,
        None,
        6,
    )
    .expect("fred pool");
    let _connection = fred.connect();
    fred.wait_for_connect().await.expect("fred connect");
    let tower_store = tower_sessions_redis_store::RedisStore::new(fred.clone());
    let tower_data: HashMap<String, serde_json::Value> = serde_json::from_value(
        serde_json::json!({ "user_id": "user-0", "data": serde_json::to_value(data()).expect("json") }),
    )
    .expect("map");
    let mut tower_record = tower_sessions_core::session::Record {
        id: tower_sessions_core::session::Id::default(),
        data: tower_data,
        expiry_date: time::OffsetDateTime::now_utc() + Duration::from_secs(600),
    };
    tower_store
        .create(&mut tower_record)
        .await
        .expect("tower create");
    let tower_id = tower_record.id;

    let rows: Vec<(&str, Op)> = vec![
        ("redis `MultiplexedConnection` GET (raw)", {
            let raw = raw.clone();
            let key = raw_key.clone();
            Arc::new(move |_| {
                let mut raw = raw.clone();
                let key = key.clone();
                Box::pin(async move {
                    let value: Option<Vec<u8>> = raw.get(&key).await.expect("GET");
                    assert!(value.is_some());
                })
            })
        }),
        (
            "raw GET of a narvik record + data JSON -> serde_json::Value",
            {
                let raw = raw.clone();
                let key = record_key.clone();
                Arc::new(move |_| {
                    let mut raw = raw.clone();
                    let key = key.clone();
                    Box::pin(async move {
                        let value: Vec<u8> = raw.get(&key).await.expect("GET");
                        let data: serde_json::Value =
                            serde_json::from_slice(&value[json_offset..]).expect("JSON");
                        std::hint::black_box(data);
                    })
                })
            },
        ),
        ("raw GET of a narvik record + data JSON -> Data (typed)", {
            let raw = raw.clone();
            let key = record_key.clone();
            Arc::new(move |_| {
                let mut raw = raw.clone();
                let key = key.clone();
                Box::pin(async move {
                    let value: Vec<u8> = raw.get(&key).await.expect("GET");
                    let data: Data = serde_json::from_slice(&value[json_offset..]).expect("JSON");
                    std::hint::black_box(data);
                })
            })
        }),
        (
            "floor: SHA-256 of the token + raw GET of its record + typed decode",
            {
                // The least any validation does: hash the token to its id, read the record,
                // decode the data. What narvik adds on top is the gap to this row.
                let raw = raw.clone();
                let tokens = Arc::clone(&tokens);
                // Where each task's data JSON starts: after the header and its user id.
                let offsets: Arc<Vec<usize>> = Arc::new(
                    (0..tokens.len())
                        .map(|task| 42 + format!("user-{task}").len())
                        .collect(),
                );
                let record_prefix = format!("{prefix}:s:");
                Arc::new(move |task| {
                    let mut raw = raw.clone();
                    let offset = offsets[task];
                    let key = format!(
                        "{record_prefix}{}",
                        narvik_core::token::session_id_from_token(&tokens[task])
                    );
                    Box::pin(async move {
                        let value: Vec<u8> = raw.get(&key).await.expect("GET");
                        let data: Data = serde_json::from_slice(&value[offset..]).expect("JSON");
                        std::hint::black_box(data);
                    })
                })
            },
        ),
        ("redis `ConnectionManager` GET (raw)", {
            let manager = manager.clone();
            let key = raw_key.clone();
            Arc::new(move |_| {
                let mut manager = manager.clone();
                let key = key.clone();
                Box::pin(async move {
                    let value: Option<Vec<u8>> = manager.get(&key).await.expect("GET");
                    assert!(value.is_some());
                })
            })
        }),
        ("deadpool-redis `pool.get()` per GET", {
            let pool = pool.clone();
            let key = raw_key.clone();
            Arc::new(move |_| {
                let pool = pool.clone();
                let key = key.clone();
                Box::pin(async move {
                    let mut conn = pool.get().await.expect("checkout");
                    let value: Option<Vec<u8>> = conn.get(&key).await.expect("GET");
                    assert!(value.is_some());
                })
            })
        }),
        ("narvik-redis `validate_session`", {
            let narvik = narvik.clone();
            let tokens = Arc::clone(&tokens);
            Arc::new(move |task| {
                let narvik = narvik.clone();
                let tokens = Arc::clone(&tokens);
                Box::pin(async move {
                    let session = narvik
                        .validate_session(&tokens[task])
                        .await
                        .expect("validate");
                    assert!(session.is_some_and(|session| !session.extended));
                })
            })
        }),
        ("narvik-redis `fetch_session` (store alone, no engine)", {
            let store = store.clone();
            let ids: Arc<Vec<String>> = Arc::new(
                tokens
                    .iter()
                    .map(|token| {
                        narvik_core::SessionToken::parse(token)
                            .expect("token")
                            .session_id()
                    })
                    .collect(),
            );
            Arc::new(move |task| {
                let store = store.clone();
                let ids = Arc::clone(&ids);
                Box::pin(async move {
                    let record = store.fetch_session(&ids[task]).await.expect("fetch");
                    assert!(record.is_some());
                })
            })
        }),
        ("narvik-redis on a deadpool pool: `validate_session`", {
            let narvik = pooled_narvik.clone();
            let tokens = Arc::clone(&tokens);
            Arc::new(move |task| {
                let narvik = narvik.clone();
                let tokens = Arc::clone(&tokens);
                Box::pin(async move {
                    let session = narvik
                        .validate_session(&tokens[task])
                        .await
                        .expect("validate");
                    assert!(session.is_some());
                })
            })
        }),
        (
            "tower-sessions-redis-store 0.16 `load` (fred 10 pool of 6)",
            {
                let store = tower_store.clone();
                Arc::new(move |_| {
                    let store = store.clone();
                    Box::pin(async move {
                        let record = store.load(&tower_id).await.expect("load");
                        assert!(record.is_some());
                    })
                })
            },
        ),
    ];

    // NARVIK_BENCH_ONLY=a,b keeps the rows whose name contains one of them (for profiling).
    let only = std::env::var("NARVIK_BENCH_ONLY").unwrap_or_default();
    let rows: Vec<(&str, Op)> = rows
        .into_iter()
        .filter(|(name, _)| only.split(',').any(|part| name.contains(part)))
        .collect();
    // NARVIK_BENCH_SEQUENTIAL=N: run each kept row N times on one task instead, for counting
    // instructions per operation under callgrind (the difference of two N cancels the set-up).
    if let Some(count) = std::env::var("NARVIK_BENCH_SEQUENTIAL")
        .ok()
        .and_then(|count| count.parse::<usize>().ok())
    {
        for (_, op) in &rows {
            for _ in 0..count {
                op(0).await;
            }
        }
    } else {
        report(&rows, tasks, duration, rounds, &mut raw, record_len).await;
    }

    // Leave nothing behind (everything carries a TTL anyway).
    for task in 0..tasks {
        store
            .delete_sessions_for_user(&format!("user-{task}"))
            .await
            .expect("cleanup");
    }
    let _: () = raw.del(&raw_key).await.expect("cleanup raw");
    tower_store.delete(&tower_id).await.expect("cleanup tower");
}

/// Measures every row in rounds of rotating order and prints the table.
async fn report(
    rows: &[(&str, Op)],
    tasks: usize,
    duration: Duration,
    rounds: usize,
    raw: &mut redis::aio::MultiplexedConnection,
    record_len: usize,
) {
    // Warm-up, then rounds in rotating order; medians count.
    for (_, op) in rows {
        measure(op, tasks, Duration::from_millis(300)).await;
    }
    let mut results = vec![Vec::new(); rows.len()];
    for round in 0..rounds {
        // Each round starts at a different row, so no row always follows the same neighbour.
        let mut this_round = vec![None; rows.len()];
        for step in 0..rows.len() {
            let row = (round + step) % rows.len();
            this_round[row] = Some(measure_cpu(&rows[row].1, tasks, duration, raw).await);
        }
        let this_round: Vec<Sample> = this_round.into_iter().flatten().collect();
        let baseline = this_round[0].ops_per_sec;
        for (row, mut sample) in this_round.into_iter().enumerate() {
            sample.vs_baseline = sample.ops_per_sec / baseline;
            results[row].push(sample);
        }
    }
    let median = |samples: &Vec<Sample>, field: fn(&Sample) -> f64| {
        let mut sorted: Vec<f64> = samples.iter().map(field).collect();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    };
    println!(
        "\n{tasks} tasks, {record_len}-byte value, {} s per row, {rounds} rounds in rotating order (medians; the ratio is taken within each round)\n",
        duration.as_secs_f64()
    );
    println!(
        "| way to read one session | ops/s | vs raw GET | client CPU µs/op | Redis CPU µs/op |"
    );
    println!("| --- | ---: | ---: | ---: | ---: |");
    for ((name, _), samples) in rows.iter().zip(&results) {
        let ops = median(samples, |sample| sample.ops_per_sec);
        let ratio = median(samples, |sample| sample.vs_baseline);
        let client = median(samples, |sample| sample.client_us);
        let server = median(samples, |sample| sample.server_us);
        println!("| {name} | {ops:.0} | {ratio:.2}x | {client:.2} | {server:.2} |");
    }
}
