//! What the conformance suite cannot see from the trait: migrations, identifiers, indexes in the
//! plans, error mapping, time bounds, recovery after the server drops our connections,
//! batching. (Faults of a whole server, frozen or killed, are in `faults.rs`, against a server
//! of the test's own.)

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use narvik_conformance::harness::record_expiring_in;
use narvik_core::deadline::{self, Bound};
use narvik_core::{Capabilities, Error, Narvik, SessionRecord, SessionStore};
use narvik_postgres::sqlx::{self, AssertSqlSafe, Connection, PgConnection, PgPool};
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
    assert_eq!(applied, 3, "migrations 1 to 3 recorded exactly once each");
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
            .fetch_sessions_for_user("user-7", now)
            .await
            .expect("fetch")
            .len(),
        100
    );
    assert_eq!(
        store.delete_all_expired_sessions(now).await.expect("purge"),
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
    let now = OffsetDateTime::now_utc();
    assert_eq!(
        store.delete_all_expired_sessions(now).await.expect("purge"),
        75
    );
    assert_eq!(
        store.delete_all_expired_sessions(now).await.expect("purge"),
        0
    );
    let mut live = 0;
    for user in 0..3 {
        live += store
            .fetch_sessions_for_user(&format!("user-{user}"), now)
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
    let now = OffsetDateTime::now_utc();
    let purges: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.delete_all_expired_sessions(now).await })
        })
        .collect();
    let mut total = 0;
    for purge in purges {
        total += purge.await.expect("task").expect("purge");
    }
    assert_eq!(total, 10_000);
}

/// Records of one user around the wall clock: one that expired an hour ago (kept: the store
/// keeps records saved already expired), two expiring in an hour, one in three days.
async fn records_around_the_wall_clock(store: &PostgresStore, user: &str) -> [SessionRecord; 4] {
    let records = [
        record("expired-1h-ago", user, -time::Duration::hours(1)),
        record("expires-in-1h-a", user, time::Duration::hours(1)),
        record("expires-in-1h-b", user, time::Duration::hours(1)),
        record("expires-in-3d", user, time::Duration::days(3)),
    ];
    for saved in &records {
        store.save_session(saved).await.expect("save");
    }
    records
}

async fn listed_ids(store: &PostgresStore, user: &str, now: OffsetDateTime) -> Vec<String> {
    let mut ids: Vec<String> = store
        .fetch_sessions_for_user(user, now)
        .await
        .expect("fetch for user")
        .into_iter()
        .map(|listed| listed.id)
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn the_listing_filters_on_the_given_now_not_on_a_clock_of_its_own() {
    let store = common::fresh_store().await;
    records_around_the_wall_clock(&store, "u").await;
    let wall = OffsetDateTime::now_utc();
    assert_eq!(
        listed_ids(&store, "u", wall).await,
        ["expires-in-1h-a", "expires-in-1h-b", "expires-in-3d"]
    );
    assert_eq!(
        listed_ids(&store, "u", wall + time::Duration::hours(2)).await,
        ["expires-in-3d"]
    );
    // Two hours ago, the record that has expired by the wall clock was live.
    assert_eq!(
        listed_ids(&store, "u", wall - time::Duration::hours(2)).await,
        [
            "expired-1h-ago",
            "expires-in-1h-a",
            "expires-in-1h-b",
            "expires-in-3d"
        ]
    );
    assert!(listed_ids(&store, "u", wall + time::Duration::days(4))
        .await
        .is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_purge_cuts_off_at_the_given_now_not_at_a_clock_of_its_own() {
    let store = common::fresh_store().await;
    let [expired, soon_a, soon_b, later] = records_around_the_wall_clock(&store, "u").await;
    let wall = OffsetDateTime::now_utc();
    // Two hours ago nothing had expired, not even the record expired by the wall clock.
    assert_eq!(
        store
            .delete_all_expired_sessions(wall - time::Duration::hours(2))
            .await
            .expect("purge"),
        0
    );
    assert!(store
        .fetch_session(&expired.id)
        .await
        .expect("fetch")
        .is_some());
    // Two hours from now the three first ones have.
    let in_two_hours = wall + time::Duration::hours(2);
    assert_eq!(
        store
            .delete_all_expired_sessions(in_two_hours)
            .await
            .expect("purge"),
        3
    );
    for gone in [&expired, &soon_a, &soon_b] {
        assert!(
            store
                .fetch_session(&gone.id)
                .await
                .expect("fetch")
                .is_none(),
            "{} survived the purge",
            gone.id
        );
    }
    assert_eq!(
        store.fetch_session(&later.id).await.expect("fetch"),
        Some(later.clone())
    );
    assert_eq!(
        store
            .delete_all_expired_sessions(in_two_hours)
            .await
            .expect("purge"),
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_record_is_never_extended_back_to_life() {
    let store = common::fresh_store().await;
    let in_a_day = narvik_core::time_util::truncate_to_millis(
        OffsetDateTime::now_utc() + time::Duration::days(1),
    );

    // The control: a live record is extended.
    let live = record("live", "u", time::Duration::hours(1));
    store.save_session(&live).await.expect("save");
    store
        .update_session_expiry(&live.id, in_a_day)
        .await
        .expect("update");
    let extended = store.fetch_session(&live.id).await.expect("fetch");
    assert_eq!(extended.map(|r| r.expires_at), Some(in_a_day));

    // Saved already expired (and kept, as declared): neither update call revives it.
    let expired = record("expired", "u", -time::Duration::minutes(1));
    store.save_session(&expired).await.expect("save");
    store
        .update_session_expiry(&expired.id, in_a_day)
        .await
        .expect("update");
    store
        .update_record_expiry(&expired, in_a_day)
        .await
        .expect("update record");
    assert_eq!(
        store.fetch_session(&expired.id).await.expect("fetch"),
        Some(expired.clone()),
        "the expired record keeps its old expiry"
    );

    // Live when saved, expired (by the wall clock, not yet purged) when the update comes.
    let short = record("short", "u", time::Duration::milliseconds(300));
    store.save_session(&short).await.expect("save");
    narvik_conformance::harness::wait_until_expired(std::slice::from_ref(&short)).await;
    store
        .update_session_expiry(&short.id, in_a_day)
        .await
        .expect("update");
    assert_eq!(
        store.fetch_session(&short.id).await.expect("fetch"),
        Some(short.clone()),
        "the record that expired while stored keeps its old expiry"
    );

    let listed = listed_ids(&store, "u", OffsetDateTime::now_utc()).await;
    assert_eq!(listed, ["live"], "only the extended record is live");
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

/// A store whose pool points at a port nothing listens on: any call that reaches for the
/// server fails with `Unavailable`, so any other answer was given without a round trip.
fn store_without_a_server() -> PostgresStore {
    let url = format!("postgres://postgres@127.0.0.1:{}/test", closed_port());
    let options = PostgresStore::connect_options(&url).expect("a valid URL");
    PostgresStore::new(PostgresStore::pool_options().connect_lazy_with(options))
}

fn with_data(id: &str, user_id: &str, data: serde_json::Value) -> SessionRecord {
    SessionRecord {
        data: data.into(),
        ..record(id, user_id, time::Duration::hours(1))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn nul_in_an_id_is_invalid_data_found_before_any_round_trip() {
    let offline = store_without_a_server();
    for (id, user_id) in [("x\0y", "u"), ("x", "a\0b"), ("\0", "\0"), ("x\0", "u")] {
        let error = offline
            .save_session(&record(id, user_id, time::Duration::hours(1)))
            .await
            .expect_err("NUL cannot be stored in text");
        assert!(
            matches!(error, Error::InvalidData(_)),
            "{id:?}/{user_id:?}: {error:?}"
        );
    }
    // No record can have such an id, so the other calls answer at once, and succeed.
    let now = OffsetDateTime::now_utc();
    let nul_record = record("x\0y", "a\0b", time::Duration::hours(1));
    assert!(offline
        .fetch_session("x\0y")
        .await
        .expect("fetch")
        .is_none());
    offline
        .update_session_expiry("x\0y", now)
        .await
        .expect("update");
    offline
        .update_record_expiry(&nul_record, now)
        .await
        .expect("update record");
    offline.delete_session("x\0y").await.expect("delete");
    assert!(offline
        .fetch_sessions_for_user("a\0b", now)
        .await
        .expect("fetch for user")
        .is_empty());
    offline
        .delete_sessions_for_user("a\0b")
        .await
        .expect("delete for user");

    // On a real server: nothing stored, and the twins the server could confuse it with (if it
    // cut the string at the NUL) are untouched.
    let store = common::fresh_store().await;
    let x = record("x", "a", time::Duration::hours(1));
    let xy = record("xy", "ab", time::Duration::hours(1));
    store.save_session(&x).await.expect("save");
    store.save_session(&xy).await.expect("save");
    for refused in [
        record("x\0y", "a", time::Duration::hours(1)),
        record("z", "a\0b", time::Duration::hours(1)),
    ] {
        let error = store.save_session(&refused).await.expect_err("NUL");
        assert!(matches!(error, Error::InvalidData(_)), "{error:?}");
    }
    assert!(store.fetch_session("z").await.expect("fetch").is_none());
    assert_eq!(
        store.fetch_session("x").await.expect("fetch"),
        Some(x.clone())
    );
    assert_eq!(
        store.fetch_session("xy").await.expect("fetch"),
        Some(xy.clone())
    );
    assert_eq!(listed_ids(&store, "a", now).await, ["x"]);
    assert_eq!(listed_ids(&store, "ab", now).await, ["xy"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn data_jsonb_cannot_hold_is_invalid_data_and_nothing_is_stored() {
    let refused = [
        serde_json::json!({"s": "a\u{0}b"}),
        serde_json::json!({"key\u{0}": 1}),
        serde_json::json!({"deep": [[{"s": "\u{0}"}]]}),
        // numeric has no negative zero: -0.0 would read back as 0.0.
        serde_json::json!({"f": -0.0}),
        serde_json::json!([1, 2, -0.0]),
    ];
    let offline = store_without_a_server();
    let store = common::fresh_store().await;
    for (i, data) in refused.into_iter().enumerate() {
        let id = format!("refused-{i}");
        for on in [&offline, &store] {
            let error = on
                .save_session(&with_data(&id, "u", data.clone()))
                .await
                .expect_err("jsonb cannot hold it");
            assert!(matches!(error, Error::InvalidData(_)), "{data}: {error:?}");
        }
        assert!(store.fetch_session(&id).await.expect("fetch").is_none());
    }
    // What is close to them is kept exactly.
    let kept = serde_json::json!({
        "controls": "\u{1}\u{1f}\u{7f}\u{85}\u{2028}\r\t\n",
        "escaped": "\\u0000",
        "zero": 0.0,
        "negative": -0.5,
    });
    let saved = with_data("kept", "u", kept.clone());
    store.save_session(&saved).await.expect("save");
    let fetched = store
        .fetch_session("kept")
        .await
        .expect("fetch")
        .expect("present");
    assert_eq!(fetched.data, kept);
}

/// Compares two JSON values number by number: the same kind (integer or float) and, for
/// floats, the same bits (`==` would let `0.0` pass for `-0.0`).
fn assert_bit_exact(sent: &serde_json::Value, got: &serde_json::Value, path: &str) {
    use serde_json::Value;
    match (sent, got) {
        (Value::Number(sent), Value::Number(got)) => {
            assert_eq!(
                sent.is_f64(),
                got.is_f64(),
                "{path}: {sent} came back as {got}"
            );
            if sent.is_f64() {
                assert_eq!(
                    sent.as_f64().map(f64::to_bits),
                    got.as_f64().map(f64::to_bits),
                    "{path}: {sent} came back as {got}"
                );
            } else {
                assert_eq!(
                    (sent.as_i64(), sent.as_u64()),
                    (got.as_i64(), got.as_u64()),
                    "{path}: {sent} came back as {got}"
                );
            }
        }
        (Value::Array(sent), Value::Array(got)) => {
            assert_eq!(sent.len(), got.len(), "{path}");
            for (i, (sent, got)) in sent.iter().zip(got).enumerate() {
                assert_bit_exact(sent, got, &format!("{path}[{i}]"));
            }
        }
        (Value::Object(sent), Value::Object(got)) => {
            // As sets: jsonb keeps keys in its own order, and whether serde_json keeps insertion
            // order depends on its `preserve_order` feature, which other crates may switch on.
            assert_eq!(
                sent.keys().collect::<std::collections::BTreeSet<_>>(),
                got.keys().collect::<std::collections::BTreeSet<_>>(),
                "{path}"
            );
            for (key, sent) in sent {
                assert_bit_exact(sent, &got[key], &format!("{path}.{key}"));
            }
        }
        _ => assert_eq!(sent, got, "{path}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn numbers_come_back_from_jsonb_with_the_same_kind_and_bits() {
    let store = common::fresh_store().await;
    let two_53 = 9_007_199_254_740_992_i64;
    let floats = [
        0.1 + 0.2,
        1.0 / 3.0,
        1.000_000_000_000_000_2,
        5e-324,
        f64::MIN_POSITIVE,
        2.225_073_858_507_201_4e-308,
        f64::MAX,
        -f64::MAX,
        f64::EPSILON,
        1e300,
        -1e300,
        1e-300,
        // Whole floats serde_json writes with an exponent, which numeric would turn into
        // integers: 1e16 to u64::MAX comes back as a u64 unless written with a fraction.
        1e16,
        -1e16,
        1.5e17,
        1.234_567_890_123_456_7e18,
        9_223_372_036_854_775_807.0,
        -9_223_372_036_854_775_808.0,
        18_446_744_073_709_551_615.0,
        1e21,
        // Whole floats below 1e16, which serde_json writes with ".0".
        9_007_199_254_740_993.0,
        1e15,
        1.0,
        0.0,
        -1.0,
        1e-7,
        123_456.789,
    ];
    let integers = [
        two_53 + 1,
        -(two_53 + 1),
        i64::MAX - 1,
        i64::MIN + 1,
        i64::MAX,
        i64::MIN,
        0,
        -1,
    ];
    let unsigned = [u64::MAX, u64::MAX - 1, 1 << 63, 10_000_000_000_000_000];
    let data = serde_json::json!({
        "floats": floats,
        "integers": integers,
        "unsigned": unsigned,
        "nested": {"deep": [[1e16, u64::MAX, 5e-324]], "f64::MAX": f64::MAX},
    });
    let saved = with_data("numbers", "u", data.clone());
    store.save_session(&saved).await.expect("save");
    let fetched = store
        .fetch_session("numbers")
        .await
        .expect("fetch")
        .expect("present");
    let fetched = fetched.data.to_value().expect("JSON").into_owned();
    assert_bit_exact(&data, &fetched, "data");
    // And decoded into Rust numbers, as an application's typed data would be.
    let floats_back: Vec<f64> = serde_json::from_value(fetched["floats"].clone()).expect("floats");
    assert_eq!(
        floats_back.iter().map(|f| f.to_bits()).collect::<Vec<_>>(),
        floats.iter().map(|f| f.to_bits()).collect::<Vec<_>>()
    );
    let unsigned_back: Vec<u64> = serde_json::from_value(fetched["unsigned"].clone()).expect("u64");
    assert_eq!(unsigned_back, unsigned);

    // The data stays jsonb, readable in SQL as numbers.
    let kind: String = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT jsonb_typeof(data -> 'floats' -> 12) FROM \"{}\".\"{}\" WHERE id = 'numbers'",
        store.config().schema(),
        store.config().table()
    )))
    .fetch_one(store.pool())
    .await
    .expect("select");
    assert_eq!(kind, "number");
}

#[tokio::test(flavor = "multi_thread")]
async fn ids_and_their_indexes_compare_bytes_not_a_collation() {
    // A nondeterministic collation would make "Alice" equal "alice", or NFC equal NFD, in the
    // primary key and the user index. The columns and every index on them must use a
    // deterministic one (equality is then byte equality).
    let store = common::fresh_store().await;
    let table = format!(
        "\"{}\".\"{}\"",
        store.config().schema(),
        store.config().table()
    );
    let columns: Vec<(String, bool)> = sqlx::query_as(
        "SELECT a.attname::text, c.collisdeterministic FROM pg_attribute a \
         JOIN pg_collation c ON c.oid = a.attcollation \
         WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 ORDER BY a.attname",
    )
    .bind(&table)
    .fetch_all(store.pool())
    .await
    .expect("catalog");
    assert_eq!(
        columns,
        [("id".to_owned(), true), ("user_id".to_owned(), true)],
        "the collatable columns are id and user_id, deterministic"
    );
    let index_collations: Vec<(String, bool)> = sqlx::query_as(
        "SELECT ic.relname::text, c.collisdeterministic FROM pg_index i \
         JOIN pg_class ic ON ic.oid = i.indexrelid \
         CROSS JOIN LATERAL unnest(i.indcollation::oid[]) AS col(oid) \
         JOIN pg_collation c ON c.oid = col.oid \
         WHERE i.indrelid = to_regclass($1) ORDER BY 1",
    )
    .bind(&table)
    .fetch_all(store.pool())
    .await
    .expect("catalog");
    let table_name = store.config().table().to_string();
    assert_eq!(
        index_collations,
        [
            (format!("{table_name}_pkey"), true),
            (format!("{table_name}_user_id_idx"), true)
        ]
    );

    // And the twins stay apart.
    let now = OffsetDateTime::now_utc();
    let twins = ["Alice", "alice", "e\u{301}", "\u{e9}", " bob", "bob"];
    for (i, user_id) in twins.iter().enumerate() {
        store
            .save_session(&record(user_id, user_id, time::Duration::hours(1)))
            .await
            .unwrap_or_else(|e| panic!("save twin {i}: {e}"));
    }
    for user_id in twins {
        assert_eq!(listed_ids(&store, user_id, now).await, [user_id]);
        let fetched = store.fetch_session(user_id).await.expect("fetch");
        assert_eq!(fetched.map(|r| r.user_id), Some(user_id.to_owned()));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_declaration_is_all_and_pushed_invalidations() {
    // What the conformance suite checks this store against; each field is proved there and
    // in the tests above (expired records returned and kept, exact purge count), the pushed
    // invalidations in tests/invalidation.rs.
    let store = common::fresh_store().await;
    assert_eq!(
        store.capabilities(),
        Capabilities {
            pushes_invalidations: true,
            ..Capabilities::ALL
        }
    );
    let expired = record("expired", "u", -time::Duration::days(1));
    store.save_session(&expired).await.expect("save");
    assert_eq!(
        store.fetch_session("expired").await.expect("fetch"),
        Some(expired),
        "returned and kept, though saved already expired"
    );
    assert_eq!(
        store
            .delete_all_expired_sessions(OffsetDateTime::now_utc())
            .await
            .expect("purge"),
        1
    );
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
    let error = PostgresStore::connect(&url)
        .await
        .expect_err("nothing listens");
    assert!(matches!(error, Error::Unavailable { .. }), "{error:?}");
    let fault = deadline::fault_of(&error).expect("a store fault");
    assert_eq!(
        (fault.store(), fault.operation()),
        ("narvik-postgres", "connect")
    );
    assert_eq!(fault.bound(), Some(Bound::Connect), "{error}");

    // A store on a lazy pool fails each call the same way, naming the call.
    let store = store_without_a_server();
    let error = store.fetch_session("a").await.expect_err("nothing listens");
    assert!(matches!(error, Error::Unavailable { .. }), "{error:?}");
    let fault = deadline::fault_of(&error).expect("a store fault");
    assert_eq!(fault.operation(), "fetch_session");
    assert_eq!(fault.bound(), Some(Bound::Acquire), "{error}");
    assert!(
        std::error::Error::source(fault).is_some(),
        "the driver's error is kept"
    );
    let error = store
        .save_session(&record("a", "u", time::Duration::hours(1)))
        .await
        .expect_err("nothing listens");
    assert_eq!(
        deadline::fault_of(&error).map(|fault| fault.operation()),
        Some("save_session"),
        "{error:?}"
    );
}

/// `url` with one more query parameter.
fn with_parameter(url: &str, parameter: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{parameter}")
}

/// A migrated store in a fresh schema on a pool of `pool_options()` with `connect_options(url)`
/// (tagged with the schema as `application_name`), built with `configure`.
async fn bounded_store(
    url: &str,
    max_connections: u32,
    configure: impl FnOnce(
        narvik_postgres::PostgresStoreBuilder,
    ) -> narvik_postgres::PostgresStoreBuilder,
) -> (PostgresStore, String) {
    let schema = common::fresh_schema();
    let options = PostgresStore::connect_options(url)
        .expect("a valid URL")
        .application_name(&schema);
    let pool = PostgresStore::pool_options()
        .max_connections(max_connections)
        .connect_with(options)
        .await
        .expect("connect to the test server");
    let store = configure(PostgresStore::builder(pool).schema(&schema))
        .build()
        .expect("valid settings");
    store.migrate().await.expect("migrate");
    (store, schema)
}

/// Opens a transaction on its own connection that holds an exclusive lock on `schema`'s
/// session table, so that every statement of the store on it waits.
async fn lock_the_table(schema: &str) -> PgConnection {
    let mut admin = PgConnection::connect(&common::database_url())
        .await
        .expect("an admin connection");
    sqlx::raw_sql(AssertSqlSafe(format!(
        "BEGIN; LOCK TABLE \"{schema}\".narvik_sessions IN ACCESS EXCLUSIVE MODE"
    )))
    .execute(&mut admin)
    .await
    .expect("lock the table");
    admin
}

/// The pool's size once every connection is back in it and idle (sqlx returns a connection
/// from a task of its own, after testing it).
async fn settled_size(pool: &PgPool) -> u32 {
    let started = Instant::now();
    while usize::try_from(pool.size()).ok() != Some(pool.num_idle())
        && started.elapsed() < Duration::from_secs(2)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        usize::try_from(pool.size()).ok(),
        Some(pool.num_idle()),
        "connections still out of the pool"
    );
    pool.size()
}

/// The slack on every bound asserted here, as in the fault scenarios.
const MARGIN: Duration = Duration::from_millis(750);

#[tokio::test(flavor = "multi_thread")]
async fn connect_options_bound_statements_below_the_call_deadline_and_leave_durability_alone() {
    let url = common::database_url();
    let options = PostgresStore::connect_options(&url).expect("a valid URL");
    assert!(
        PostgresStore::DEFAULT_STATEMENT_TIMEOUT < PostgresStore::DEFAULT_CALL_TIMEOUT
            && PostgresStore::DEFAULT_ACQUIRE_TIMEOUT < PostgresStore::DEFAULT_CALL_TIMEOUT
    );
    assert!(
        !options
            .get_options()
            .unwrap_or_default()
            .contains("synchronous_commit"),
        "the store leaves synchronous_commit to the server"
    );
    let store = PostgresStore::new(
        PostgresStore::pool_options()
            .connect_with(options)
            .await
            .expect("connect"),
    );
    assert_eq!(
        (store.acquire_timeout(), store.call_timeout()),
        (Duration::from_secs(2), Duration::from_secs(5))
    );
    let shown: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(store.pool())
        .await
        .expect("show");
    assert_eq!(shown, "4s");

    // A URL that sets its own keeps it.
    let own =
        PostgresStore::connect_options(&with_parameter(&url, "options[statement_timeout]=1500ms"))
            .expect("a valid URL");
    let mut connection = PgConnection::connect_with(&own).await.expect("connect");
    let shown: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(&mut connection)
        .await
        .expect("show");
    assert_eq!(shown, "1500ms");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_waits_for_a_busy_pool_no_longer_than_its_acquire_timeout() {
    let limit = Duration::from_millis(300);
    let (store, _) = bounded_store(&common::database_url(), 1, |builder| {
        builder.acquire_timeout(limit)
    })
    .await;
    let held = store
        .pool()
        .acquire()
        .await
        .expect("the pool's only connection");
    let started = Instant::now();
    let error = store
        .fetch_session("a")
        .await
        .expect_err("the pool is busy");
    let elapsed = started.elapsed();
    assert_eq!(deadline::bound_hit(&error), Some(Bound::Acquire), "{error}");
    assert!(elapsed <= limit + MARGIN, "failed after {elapsed:?}");
    assert!(
        error.to_string().ends_with(
            "narvik-postgres fetch_session: no answer within 300ms (pool acquire timeout)"
        ),
        "{error}"
    );
    drop(held);
    assert!(store.fetch_session("a").await.expect("fetch").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_past_its_deadline_fails_naming_it_and_closes_its_connection() {
    let limit = Duration::from_millis(300);
    let (store, schema) = bounded_store(&common::database_url(), 4, |builder| {
        builder.call_timeout(limit)
    })
    .await;
    store
        .save_session(&record("a", "u", time::Duration::hours(1)))
        .await
        .expect("save");
    let admin = lock_the_table(&schema).await;
    let pooled = settled_size(store.pool()).await;
    let started = Instant::now();
    let error = store
        .fetch_session("a")
        .await
        .expect_err("the table is locked");
    let elapsed = started.elapsed();
    assert_eq!(deadline::bound_hit(&error), Some(Bound::Call), "{error}");
    assert!(elapsed <= limit + MARGIN, "failed after {elapsed:?}");
    assert!(
        error
            .to_string()
            .ends_with("narvik-postgres fetch_session: no answer within 300ms (call deadline)"),
        "{error}"
    );

    // The cut-off statement's connection is closed, not returned to the pool...
    let closing = Instant::now();
    while store.pool().size() >= pooled && closing.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        store.pool().size() < pooled,
        "the connection went back to the pool"
    );
    // ...and its backend ends once the lock is released.
    admin.close().await.expect("release the lock");
    let admin = admin_pool().await;
    let backends = || {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
        )
        .bind(&schema)
        .fetch_one(&admin)
    };
    let ending = Instant::now();
    while backends().await.expect("count") > i64::from(store.pool().size())
        && ending.elapsed() < Duration::from_secs(3)
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        backends().await.expect("count"),
        i64::from(store.pool().size()),
        "a backend outlived the connection the store closed"
    );
    assert!(store.fetch_session("a").await.expect("fetch").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_servers_statement_timeout_ends_a_wait_on_a_lock_and_keeps_the_connection() {
    let url = with_parameter(&common::database_url(), "options[statement_timeout]=300ms");
    let (store, schema) = bounded_store(&url, 4, |builder| builder).await;
    let admin = lock_the_table(&schema).await;
    let pooled = settled_size(store.pool()).await;
    let error = store
        .fetch_session("a")
        .await
        .expect_err("the table is locked");
    assert!(matches!(error, Error::Unavailable { .. }), "{error:?}");
    assert_eq!(deadline::bound_hit(&error), None, "{error}");
    assert!(
        error
            .to_string()
            .ends_with("narvik-postgres fetch_session: statement cancelled (statement_timeout)"),
        "{error}"
    );
    admin.close().await.expect("release the lock");
    // The server ended the statement cleanly: the connection goes back to the pool, and serves.
    assert_eq!(settled_size(store.pool()).await, pooled);
    assert!(store.fetch_session("a").await.expect("fetch").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_zero_timeout_is_a_configuration_error() {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .connect_lazy("postgres://postgres@127.0.0.1:1/none")
        .expect("lazy pool");
    for built in [
        PostgresStore::builder(pool.clone())
            .acquire_timeout(Duration::ZERO)
            .build(),
        PostgresStore::builder(pool.clone())
            .call_timeout(Duration::ZERO)
            .build(),
    ] {
        assert!(
            matches!(built, Err(Error::InvalidConfiguration(_))),
            "{built:?}"
        );
    }
    let store = PostgresStore::builder(pool)
        .acquire_timeout(Duration::from_millis(1500))
        .call_timeout(Duration::from_secs(3))
        .build()
        .expect("valid");
    assert_eq!(
        (store.acquire_timeout(), store.call_timeout()),
        (Duration::from_millis(1500), Duration::from_secs(3))
    );
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

#[tokio::test(flavor = "multi_thread")]
async fn statements_lists_every_call_the_store_runs() {
    let store = store_without_a_server();
    let calls: Vec<&str> = store.statements().iter().map(|(call, _)| *call).collect();
    assert_eq!(
        calls,
        [
            "save_session",
            "fetch_session",
            "update_session_expiry",
            "delete_session",
            "fetch_sessions_for_user",
            "delete_sessions_for_user",
            "delete_all_expired_sessions",
            "update_session_data",
        ]
    );
    let update = statement(&store, "update_session_data");
    assert!(
        update.starts_with("UPDATE ") && update.contains("data_version = $3"),
        "{update}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_row_from_before_migration_0002_reads_as_default_lifetime_and_version_0() {
    // The schema as narvik-postgres left it with only migration 1: its table and indexes, and
    // its bookkeeping row with migration 1's checksum (SHA-256 of its template, as the store
    // records it).
    let schema = common::fresh_schema();
    let pool = common::pool_named(&schema).await;
    let table = format!("\"{schema}\".\"narvik_sessions\"");
    let template = include_str!("../migrations/0001_create_sessions.sql");
    let migration_1 = template
        .replace("{{table}}", &table)
        .replace("{{user_id_index}}", "\"narvik_sessions_user_id_idx\"")
        .replace("{{expires_at_index}}", "\"narvik_sessions_expires_at_idx\"");
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE SCHEMA \"{schema}\"; {migration_1}"
    )))
    .execute(&pool)
    .await
    .expect("migration 1 by hand");
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE TABLE \"{schema}\".\"narvik_sessions_migrations\" (
            version     bigint      PRIMARY KEY,
            description text        NOT NULL,
            checksum    bytea       NOT NULL,
            applied_at  timestamptz NOT NULL DEFAULT now()
        )"
    )))
    .execute(&pool)
    .await
    .expect("bookkeeping");
    {
        use sha2::Digest as _;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO \"{schema}\".\"narvik_sessions_migrations\" \
             (version, description, checksum) VALUES (1, 'create sessions', $1)"
        )))
        .bind(sha2::Sha256::digest(template.as_bytes()).to_vec())
        .execute(&pool)
        .await
        .expect("record migration 1");
    }
    // A session written the old way: the five columns of migration 1.
    let user = narvik_conformance::harness::random_user_id("old-row");
    let id = narvik_conformance::harness::random_session_id();
    let created_at = narvik_conformance::harness::now_ms() - time::Duration::minutes(5);
    let expires_at = created_at + time::Duration::hours(1);
    let old_data = serde_json::json!({"n": 1, "cart": [1, 2.5, "x"], "who": {"name": "Åsa"}});
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {table} (id, user_id, expires_at, created_at, data) \
         VALUES ($1, $2, $3, $4, $5::jsonb)"
    )))
    .bind(&id)
    .bind(&user)
    .bind(expires_at)
    .bind(created_at)
    .bind(old_data.to_string())
    .execute(&pool)
    .await
    .expect("old row");

    // The new store brings the schema up to date and reads the old row with nothing lost.
    let store = common::store_in(pool.clone(), &schema).await;
    let versions: Vec<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT version FROM \"{schema}\".\"narvik_sessions_migrations\" ORDER BY version"
    )))
    .fetch_all(&pool)
    .await
    .expect("versions");
    assert_eq!(versions, [1, 2, 3], "migrations 2 and 3 were applied");
    let old = SessionRecord {
        id,
        user_id: user,
        expires_at,
        created_at,
        data: old_data.into(),
        lifetime: None,
        data_version: 0,
    };
    narvik_conformance::upgrade::assert_record_from_before_lifetimes_upgrades(&store, &old).await;
}
