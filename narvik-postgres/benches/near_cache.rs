//! The near cache on Postgres: a warm cached `validate_session` against the store's raw
//! `SELECT ... WHERE id = $1` at 64 tasks, revocation latency from one app instance to another
//! (the trigger's `NOTIFY` to the other instance's `LISTEN`), and the hit rate with 1% writes;
//! measured side by side in one run by narvik-bench's near cache bench, which prints the
//! `RESULT near_cache store=postgres ...` line.
//!
//! ```sh
//! cargo bench -p narvik-postgres --bench near_cache   # NARVIK_BENCH_SECS=4 by default
//! ```
//!
//! Server: `NARVIK_TEST_POSTGRES_URL`, else `postgres://postgres@127.0.0.1:5432/test`; the
//! bench works in a schema of its own, `narvik_near_bench`, dropped before and after.

use std::sync::Arc;

use narvik_bench::{near_cache, Op, Run};
use narvik_postgres::sqlx::postgres::PgPoolOptions;
use narvik_postgres::sqlx::{self, AssertSqlSafe, PgPool, Row};
use narvik_postgres::PostgresStore;

const SCHEMA: &str = "narvik_near_bench";
const POOL_SIZE: u32 = 16;

async fn pool(url: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(POOL_SIZE)
        .min_connections(POOL_SIZE)
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("no Postgres at {url}: {e}; set NARVIK_TEST_POSTGRES_URL"))
}

async fn drop_schema(pool: &PgPool) {
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS \"{SCHEMA}\" CASCADE"
    )))
    .execute(pool)
    .await
    .expect("drop the bench schema");
}

#[tokio::main]
async fn main() {
    let url = std::env::var("NARVIK_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let admin = pool(&url).await;
    drop_schema(&admin).await;
    // Two app instances: two pools, two listeners.
    let instance = || async {
        let store = PostgresStore::builder(pool(&url).await)
            .schema(SCHEMA)
            .build()
            .expect("a valid schema name");
        store.migrate().await.expect("migrate");
        store
    };
    let (a, b) = (instance().await, instance().await);
    let select: Arc<str> = a
        .statements()
        .into_iter()
        .find(|(name, _)| *name == "fetch_session")
        .map(|(_, sql)| sql.into())
        .expect("the fetch statement");
    let raw_pool = pool(&url).await;
    near_cache::run(
        Run::from_env(0.5, 4.0),
        "postgres",
        Arc::new(a),
        Arc::new(b),
        "raw SELECT of the session's row (sqlx 0.9 pool of 16)",
        move |ids| -> Op {
            Arc::new(move |i| {
                let (pool, ids, select) = (raw_pool.clone(), ids.clone(), select.clone());
                Box::pin(async move {
                    let row = sqlx::query(AssertSqlSafe(select))
                        .bind(&ids[i % ids.len()])
                        .fetch_optional(&pool)
                        .await
                        .expect("raw select")
                        .expect("a seeded row");
                    let _: serde_json::Value = row.try_get("data").expect("data");
                })
            })
        },
    )
    .await;
    drop_schema(&admin).await;
}
