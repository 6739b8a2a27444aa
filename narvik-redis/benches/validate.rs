//! `validate_session` through narvik-redis against the ways of reading one ~200-byte value
//! from Redis, side by side in one run: 64 concurrent tasks, each row for a fixed time, two
//! alternating rounds. Figures are only comparable within one run.
//!
//! ```text
//! cargo bench -p narvik-redis --bench validate
//! NARVIK_BENCH_SECS=3 NARVIK_TEST_REDIS_URL=redis://host:6379 cargo bench -p narvik-redis --bench validate
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

const TASKS: usize = 64;

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

/// Runs `op` on 64 tasks for `duration`; returns operations per second.
async fn measure(op: &Op, duration: Duration) -> f64 {
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = (0..TASKS)
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
    for task in tasks {
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
        .unwrap_or(2.0);
    let duration = Duration::from_secs_f64(secs);
    let prefix = format!("narvik-redis-bench:{:016x}", rand::random::<u64>());

    // narvik: one session per task, fresh (no extension during the run).
    let store = RedisStore::builder()
        .prefix(&prefix)
        .connect(url.as_str())
        .await
        .expect("connect narvik-redis");
    let narvik: Narvik<Data> = Narvik::new(Arc::new(store.clone()));
    let mut tokens = Vec::new();
    for task in 0..TASKS {
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
        ("narvik-redis `validate_session`, deadpool backend", {
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
    // Warm-up, then rounds in rotating order (NARVIK_BENCH_ROUNDS, default 3); the median counts.
    for (_, op) in &rows {
        measure(op, Duration::from_millis(300)).await;
    }
    let rounds: usize = std::env::var("NARVIK_BENCH_ROUNDS")
        .ok()
        .and_then(|rounds| rounds.parse().ok())
        .unwrap_or(3);
    let mut results = vec![Vec::new(); rows.len()];
    for round in 0..rounds {
        // Each round starts at a different row, so no row always follows the same neighbour.
        for step in 0..rows.len() {
            let row = (round + step) % rows.len();
            results[row].push(measure(&rows[row].1, duration).await);
        }
    }
    let median = |samples: &Vec<f64>| {
        let mut sorted = samples.clone();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    };
    let baseline = median(&results[0]);
    println!(
        "\n{TASKS} tasks, {record_len}-byte value, {secs} s per row, {rounds} rounds in rotating order (median)\n"
    );
    println!("| way to read one session | ops/s | vs raw GET |");
    println!("| --- | ---: | ---: |");
    for ((name, _), samples) in rows.iter().zip(&results) {
        let ops = median(samples);
        println!("| {name} | {ops:.0} | {:.2}x |", ops / baseline);
    }

    // Leave nothing behind (everything carries a TTL anyway).
    for task in 0..TASKS {
        store
            .delete_sessions_for_user(&format!("user-{task}"))
            .await
            .expect("cleanup");
    }
    let _: () = raw.del(&raw_key).await.expect("cleanup raw");
    tower_store.delete(&tower_id).await.expect("cleanup tower");
}
