//! What the conformance suite cannot see from the trait: migrations, identifiers, indexes in the
//! plans, error mapping, recovery after the server drops our connections, batching.

mod common;

use std::sync::Arc;
use std::time::Duration;

use narvik_conformance::harness::record_expiring_in;
use narvik_core::{Error, ManualClock, Narvik, SessionRecord, SessionStore};
use narvik_postgres::sqlx::{self, AssertSqlSafe, PgPool};
use narvik_postgres::PostgresStore;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

fn record(id: &str, user_id: &str, expires_in: time::Duration) -> SessionRecord {
    SessionRecord {
        id: id.to_owned(),
        ..record_expiring_in(user_id, expires_in, serde_json::json!({"n": 1}))
    }
}

fn statement<'a>(store: &'a PostgresStore, call: &str) -> &'a str {
    store
        .statements()
        .into_iter()
        .find(|(name, _)| *name == call)
        .map(|(_, sql)| sql)
        .expect("the store has this call")
}

async fn admin_pool() -> PgPool {
    common::pool_named("narvik_test_admin").await
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_is_idempotent_and_safe_when_instances_start_at_once() {
    let schema = common::fresh_schema();
    let pool = common::pool_named(&schema).await;
    // Eight "instances" migrating the same, not yet existing, schema at the same moment.
    let mut starts = Vec::new();
    for _ in 0..8 {
        let store = PostgresStore::builder(pool.clone())
            .schema(&schema)
            .build()
            .expect("valid");
        starts.push(tokio::spawn(async move { store.migrate().await }));
    }
    for start in starts {
        start
            .await
            .expect("task")
            .expect("every concurrent migrate succeeds");
    }
    let store = common::store_in(pool.clone(), &schema).await; // and once more, later
    let applied: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT count(*) FROM \"{schema}\".\"narvik_sessions_migrations\""
    )))
    .fetch_one(&pool)
    .await
    .expect("bookkeeping table");
    assert_eq!(applied, 1, "migration 1 recorded exactly once");
    store
        .save_session(&record("a", "u", time::Duration::hours(1)))
        .await
        .expect("the migrated table takes records");
}

#[tokio::test(flavor = "multi_thread")]
async fn configured_names_keep_their_case_and_stay_in_their_schema() {
    let schema = common::fresh_schema();
    let pool = common::pool_named(&schema).await;
    let store = PostgresStore::builder(pool.clone())
        .schema(&schema)
        .table("Sessions_Of_App")
        .build()
        .expect("valid");
    store.migrate().await.expect("migrate");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = $1 ORDER BY 1",
    )
    .bind(&schema)
    .fetch_all(&pool)
    .await
    .expect("catalog");
    assert_eq!(tables, ["Sessions_Of_App", "Sessions_Of_App_migrations"]);
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE schemaname = $1 ORDER BY 1",
    )
    .bind(&schema)
    .fetch_all(&pool)
    .await
    .expect("catalog");
    assert_eq!(
        indexes,
        [
            "Sessions_Of_App_expires_at_idx",
            "Sessions_Of_App_migrations_pkey",
            "Sessions_Of_App_pkey",
            "Sessions_Of_App_user_id_idx"
        ]
    );
    store
        .save_session(&record("a", "u", time::Duration::hours(1)))
        .await
        .expect("save into the configured table");
    assert!(store.fetch_session("a").await.expect("fetch").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn names_that_are_not_plain_identifiers_never_reach_sql() {
    // A lazy pool to a closed port: if a name reached the server, the error would be
    // Unavailable, not InvalidConfiguration.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .connect_lazy("postgres://postgres@127.0.0.1:1/none")
        .expect("lazy pool");
    for (schema, table) in [
        ("public", "sessions\"; DROP TABLE users; --"),
        ("public; DROP SCHEMA x", "sessions"),
        ("", "sessions"),
        ("public", "has space"),
        ("public", "ünïcode"),
    ] {
        let built = PostgresStore::builder(pool.clone())
            .schema(schema)
            .table(table)
            .build();
        assert!(
            matches!(built, Err(Error::InvalidConfiguration(_))),
            "{schema:?}.{table:?} was accepted"
        );
    }
}

/// Fills a store's table in SQL (fast), then ANALYZEs it, so the planner sees a real table.
async fn fill(store: &PostgresStore, users: i64, per_user: i64, expired_every: i64) {
    let table = format!(
        "\"{}\".\"{}\"",
        store.config().schema(),
        store.config().table()
    );
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {table} (id, user_id, expires_at, created_at, data)
         SELECT md5(i::text), 'user-' || (i % $1), \
                CASE WHEN i % $2 = 0 THEN now() - interval '1 day' ELSE now() + interval '1 day' END, \
                now(), jsonb_build_object('i', i)
         FROM generate_series(1, $1 * $3) AS i"
    )))
    .bind(users)
    .bind(expired_every)
    .bind(per_user)
    .execute(store.pool())
    .await
    .expect("fill");
    sqlx::query(AssertSqlSafe(format!("ANALYZE {table}")))
        .execute(store.pool())
        .await
        .expect("analyze");
}

/// The bind parameters of the statement under EXPLAIN.
enum Binds<'a> {
    UserAndNow(&'a str, OffsetDateTime),
    User(&'a str),
    NowAndLimit(OffsetDateTime, i64),
}

async fn explain(store: &PostgresStore, call: &str, binds: Binds<'_>) -> String {
    let sql = format!("EXPLAIN {}", statement(store, call));
    let query = sqlx::query_scalar::<_, String>(AssertSqlSafe(sql));
    let query = match binds {
        Binds::UserAndNow(user, now) => query.bind(user).bind(now),
        Binds::User(user) => query.bind(user),
        Binds::NowAndLimit(now, limit) => query.bind(now).bind(limit),
    };
    query
        .fetch_all(store.pool())
        .await
        .expect("explain")
        .join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_shows_the_per_user_calls_and_the_purge_use_their_indexes() {
    let store = common::fresh_store().await;
    // 50,000 rows, 500 users of 100 sessions, 1% expired: a table where a scan would lose.
    fill(&store, 500, 100, 100).await;
    let now = OffsetDateTime::now_utc();
    let table = store.config().table().to_string();

    for (call, binds, index) in [
        (
            "fetch_sessions_for_user",
            Binds::UserAndNow("user-7", now),
            "user_id_idx",
        ),
        (
            "delete_sessions_for_user",
            Binds::User("user-7"),
            "user_id_idx",
        ),
        (
            "delete_all_expired_sessions",
            Binds::NowAndLimit(now, 5_000),
            "expires_at_idx",
        ),
    ] {
        let plan = explain(&store, call, binds).await;
        assert!(
            plan.contains(&format!("{table}_{index}")),
            "{call} does not use {index}:\n{plan}"
        );
        assert!(
            !plan.contains("Seq Scan"),
            "{call} scans the table:\n{plan}"
        );
    }

    // And the calls themselves return what the plan promises.
    assert_eq!(
        store
            .fetch_sessions_for_user("user-7")
            .await
            .expect("fetch")
            .len(),
        100
    );
    assert_eq!(
        store.delete_all_expired_sessions().await.expect("purge"),
        500
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_purge_runs_in_bounded_batches_and_counts_them_all() {
    let schema = common::fresh_schema();
    let pool = common::pool_named(&schema).await;
    let store = PostgresStore::builder(pool)
        .schema(&schema)
        .purge_batch_size(7)
        .build()
        .expect("valid");
    store.migrate().await.expect("migrate");
    // 3 users x 50 rows, every other one expired: 75 expired, 75 live, 11 batches.
    fill(&store, 3, 50, 2).await;
    assert_eq!(
        store.delete_all_expired_sessions().await.expect("purge"),
        75
    );
    assert_eq!(store.delete_all_expired_sessions().await.expect("purge"), 0);
    let mut live = 0;
    for user in 0..3 {
        live += store
            .fetch_sessions_for_user(&format!("user-{user}"))
            .await
            .expect("fetch")
            .len();
    }
    assert_eq!(live, 75);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_purges_split_the_work_and_count_each_row_once() {
    let schema = common::fresh_schema();
    let pool = common::pool_named(&schema).await;
    let store = PostgresStore::builder(pool)
        .schema(&schema)
        .purge_batch_size(100)
        .build()
        .expect("valid");
    store.migrate().await.expect("migrate");
    fill(&store, 10, 2_000, 2).await; // 10,000 expired
    let purges: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.delete_all_expired_sessions().await })
        })
        .collect();
    let mut total = 0;
    for purge in purges {
        total += purge.await.expect("task").expect("purge");
    }
    assert_eq!(total, 10_000);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_live_filter_and_the_purge_use_the_configured_clock() {
    let schema = common::fresh_schema();
    let pool = common::pool_named(&schema).await;
    let clock = Arc::new(ManualClock::starting_now());
    let store = PostgresStore::builder(pool)
        .schema(&schema)
        .clock(clock.clone())
        .build()
        .expect("valid");
    store.migrate().await.expect("migrate");
    store
        .save_session(&record("a", "u", time::Duration::hours(1)))
        .await
        .expect("save");
    assert_eq!(
        store
            .fetch_sessions_for_user("u")
            .await
            .expect("fetch")
            .len(),
        1
    );
    assert_eq!(store.delete_all_expired_sessions().await.expect("purge"), 0);
    clock.advance(time::Duration::hours(2));
    assert!(store
        .fetch_sessions_for_user("u")
        .await
        .expect("fetch")
        .is_empty());
    assert_eq!(store.delete_all_expired_sessions().await.expect("purge"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn sub_millisecond_times_are_truncated_not_rounded_up() {
    let store = common::fresh_store().await;
    let base = narvik_core::time_util::truncate_to_millis(OffsetDateTime::now_utc());
    let mut saved = record("a", "u", time::Duration::hours(1));
    saved.expires_at = base + time::Duration::hours(1) + time::Duration::nanoseconds(999_999);
    saved.created_at = base + time::Duration::nanoseconds(999_600);
    store.save_session(&saved).await.expect("save");
    let fetched = store
        .fetch_session("a")
        .await
        .expect("fetch")
        .expect("present");
    assert_eq!(fetched.expires_at, base + time::Duration::hours(1));
    assert_eq!(fetched.created_at, base);
    store
        .update_session_expiry(
            "a",
            base + time::Duration::hours(2) + time::Duration::nanoseconds(999_999),
        )
        .await
        .expect("update");
    let fetched = store
        .fetch_session("a")
        .await
        .expect("fetch")
        .expect("present");
    assert_eq!(fetched.expires_at, base + time::Duration::hours(2));
}

#[tokio::test(flavor = "multi_thread")]
async fn values_postgres_cannot_store_are_invalid_data_not_unavailable() {
    let store = common::fresh_store().await;
    // text cannot hold NUL; jsonb cannot hold \u0000.
    let nul_user = record("a", "user\0x", time::Duration::hours(1));
    let error = store
        .save_session(&nul_user)
        .await
        .expect_err("NUL in text");
    assert!(matches!(error, Error::InvalidData(_)), "{error:?}");
    let mut nul_data = record("b", "u", time::Duration::hours(1));
    nul_data.data = serde_json::json!({"s": "a\u{0}b"}).into();
    let error = store
        .save_session(&nul_data)
        .await
        .expect_err("NUL in jsonb");
    assert!(matches!(error, Error::InvalidData(_)), "{error:?}");
    assert!(store.fetch_session("a").await.expect("fetch").is_none());
    assert!(store.fetch_session("b").await.expect("fetch").is_none());
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Visits {
    count: u32,
}

#[tokio::test(flavor = "multi_thread")]
async fn jsonb_that_no_longer_fits_the_type_is_a_corrupt_record() {
    let store = common::fresh_store().await;
    let narvik: Narvik<Visits> = Narvik::new(Arc::new(store.clone()));
    let created = narvik
        .create_session("alice", Visits { count: 1 })
        .await
        .expect("create");
    // Another release of the application wrote a different shape.
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE \"{}\".\"{}\" SET data = '{{\"count\": \"many\"}}'::jsonb WHERE id = $1",
        store.config().schema(),
        store.config().table()
    )))
    .bind(&created.session.id)
    .execute(store.pool())
    .await
    .expect("rewrite data");
    let error = narvik
        .validate_session(created.token.as_str())
        .await
        .expect_err("the data no longer fits Visits");
    assert!(matches!(error, Error::CorruptRecord { .. }), "{error:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_column_of_the_wrong_type_is_a_corrupt_record() {
    let store = common::fresh_store().await;
    store
        .save_session(&record("a", "u", time::Duration::hours(1)))
        .await
        .expect("save");
    sqlx::query(AssertSqlSafe(format!(
        "ALTER TABLE \"{}\".\"{}\" ALTER COLUMN data TYPE text",
        store.config().schema(),
        store.config().table()
    )))
    .execute(store.pool())
    .await
    .expect("alter");
    let error = store
        .fetch_session("a")
        .await
        .expect_err("text is not jsonb");
    assert!(matches!(error, Error::CorruptRecord { .. }), "{error:?}");
}

/// A port on this machine that nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_server_is_unavailable_with_its_cause() {
    let url = format!("postgres://postgres@127.0.0.1:{}/test", closed_port());
    // A pool with a short acquire timeout: `PostgresStore::connect` maps the same error, after
    // sqlx's default 30 s of connection retries.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy(&url)
        .expect("lazy pool");
    let store = PostgresStore::new(pool);
    let error = store.fetch_session("a").await.expect_err("nothing listens");
    assert!(matches!(error, Error::Unavailable { .. }), "{error:?}");
    assert!(
        std::error::Error::source(&error).is_some(),
        "the cause is kept"
    );
    let error = store
        .save_session(&record("a", "u", time::Duration::hours(1)))
        .await
        .expect_err("nothing listens");
    assert!(matches!(error, Error::Unavailable { .. }), "{error:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_store_recovers_when_the_server_drops_its_connections_mid_run() {
    let application_name = format!(
        "narvik_test_recover_{}",
        narvik_conformance::harness::random_suffix()
    );
    let pool = common::pool_named(&application_name).await;
    let store = common::store_in(pool, &common::fresh_schema()).await;
    let admin = admin_pool().await;

    // Four tasks of saves and fetches, running while the server kills our backends.
    let workers: Vec<_> = (0..4)
        .map(|worker| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for i in 0..150 {
                    let id = format!("w{worker}-{i}");
                    let saved = store
                        .save_session(&record(&id, "u", time::Duration::hours(1)))
                        .await;
                    let fetched = store.fetch_session(&id).await;
                    outcomes.push((id, saved, fetched));
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                outcomes
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut terminated = 0_i64;
    for _ in 0..3 {
        let killed: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = $1) AS t",
        )
        .bind(&application_name)
        .fetch_one(&admin)
        .await
        .expect("terminate");
        terminated += killed;
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert!(terminated > 0, "no backend of the store was terminated");

    for worker in workers {
        for (id, saved, fetched) in worker.await.expect("worker") {
            // Each call either worked or failed with the typed error; never garbage.
            if let Err(error) = &saved {
                assert!(matches!(error, Error::Unavailable { .. }), "{error:?}");
            }
            match &fetched {
                Ok(Some(found)) => assert_eq!(found.id, id),
                Ok(None) => assert!(saved.is_err(), "{id} saved but not found"),
                Err(error) => assert!(matches!(error, Error::Unavailable { .. }), "{error:?}"),
            }
        }
    }

    // And afterwards every call succeeds again.
    for i in 0..20 {
        let id = format!("after-{i}");
        store
            .save_session(&record(&id, "u", time::Duration::hours(1)))
            .await
            .expect("save after recovery");
        assert!(store
            .fetch_session(&id)
            .await
            .expect("fetch after recovery")
            .is_some());
    }
}
