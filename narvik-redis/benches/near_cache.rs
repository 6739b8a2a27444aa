//! The near cache on Redis: a warm cached `validate_session` (sessions carrying a small typed
//! struct, as an application's do) against a raw `GET` of the same records at 64 tasks,
//! revocation latency from one app instance to another (client tracking pushes), and the hit
//! rate with 1% writes; measured side by side in one run by narvik-bench's near cache bench,
//! which prints the `RESULT near_cache store=redis ...` line.
//!
//! ```sh
//! cargo bench -p narvik-redis --bench near_cache         # NARVIK_BENCH_SECS=4 by default
//! ```

use std::sync::Arc;

use narvik_bench::{near_cache, Op, Run};
use narvik_redis::RedisStore;
use redis::AsyncCommands;

#[tokio::main]
async fn main() {
    let url = std::env::var("NARVIK_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let prefix = format!("narvik-redis-near-bench:{:016x}", rand::random::<u64>());
    let instance = || async {
        RedisStore::builder()
            .prefix(&prefix)
            .connect(url.as_str())
            .await
            .expect("connect narvik-redis")
    };
    let (a, b) = (instance().await, instance().await);
    let raw = redis::Client::open(url.as_str())
        .expect("URL")
        .get_multiplexed_async_connection()
        .await
        .expect("connect raw");
    let record_prefix = format!("{prefix}:s:");
    near_cache::run(
        Run::from_env(0.5, 4.0),
        "redis",
        Arc::new(a),
        Arc::new(b),
        "raw GET of the session's record (redis MultiplexedConnection)",
        move |ids| -> Op {
            Arc::new(move |i| {
                let mut raw = raw.clone();
                let key = format!("{record_prefix}{}", ids[i % ids.len()]);
                Box::pin(async move {
                    let value: Option<Vec<u8>> = raw.get(&key).await.expect("GET");
                    assert!(value.is_some(), "a seeded record");
                })
            })
        },
    )
    .await;
}
