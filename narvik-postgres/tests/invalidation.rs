//! Pushed invalidations on the real server: migration 3's trigger and the store's listener.
//!
//! Two stores on two pools over one fresh table play two app instances, A and B: A (or a
//! plain connection, as another tool) writes, B's subscription must hear of it. Every listener
//! gets an `application_name` of its own, so a test can find and terminate exactly its own
//! listener while other tests run.
//!
//! Where a test shows that a write sends *nothing*, it waits 300 ms and then proves it with a
//! sentinel: a delete committed after the write must be the first thing heard, since the
//! server delivers notifications in commit order.
//!
//! Run with `--nocapture` to read the `invalidation figures:` lines quoted in the README.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use narvik_conformance::harness::{live_record, random_suffix, random_user_id};
use narvik_core::invalidation::{Invalidation, InvalidationSubscription};
use narvik_core::{SessionRecord, SessionStore};
use narvik_postgres::sqlx::{self, AssertSqlSafe, Connection, PgConnection, PgPool};
use narvik_postgres::PostgresStore;
use serde_json::json;
use time::OffsetDateTime;

/// How long a change may take to reach the other instance here: the brief's bound, far above
/// what a loopback server needs.
const PROPAGATION: Duration = Duration::from_secs(2);

/// How long a first subscription may take to be healthy (a connection, `LISTEN`, one query).
const FIRST_SUBSCRIPTION: Duration = Duration::from_secs(5);

/// How long a write that must send nothing is watched before the sentinel.
const QUIET: Duration = Duration::from_millis(300);

/// Two app instances on one fresh table, and B's listener's `application_name`.
struct Instances {
    a: PostgresStore,
    b: PostgresStore,
    listener_name: String,
}

impl Instances {
    async fn new() -> Self {
        let schema = common::fresh_schema();
        let a = common::store_in(common::pool_named(&schema).await, &schema).await;
        let (b, listener_name) = instance_on(&schema, "narvik_sessions").await;
        Self {
            a,
            b,
            listener_name,
        }
    }

    fn table(&self) -> String {
        qualified(&self.a)
    }
}

/// A second store on `schema`.`table` (already migrated) with a pool of its own and a
/// listener named uniquely.
async fn instance_on(schema: &str, table: &str) -> (PostgresStore, String) {
    let listener_name = format!("narvik_test_listener_{}", random_suffix());
    let store = PostgresStore::builder(common::pool_named(&format!("{schema}_b")).await)
        .schema(schema)
        .table(table)
        .listener_application_name(&listener_name)
        .build()
        .expect("valid names");
    (store, listener_name)
}

fn qualified(store: &PostgresStore) -> String {
    format!(
        "\"{}\".\"{}\"",
        store.config().schema(),
        store.config().table()
    )
}

/// A plain connection to the test server: another tool (psql, a batch job).
async fn another_tool() -> PgConnection {
    PgConnection::connect(&common::database_url())
        .await
        .expect("a plain connection")
}

/// A subscription of `store` once its channel is healthy.
async fn healthy_subscription(store: &PostgresStore) -> InvalidationSubscription {
    let mut subscription = store
        .subscribe_invalidations()
        .expect("the store pushes invalidations");
    wait_until_subscribed(&mut subscription, FIRST_SUBSCRIPTION).await;
    subscription
}

async fn wait_until_subscribed(subscription: &mut InvalidationSubscription, bound: Duration) {
    // Nothing else may come first: before it is subscribed the listener hears nothing.
    match tokio::time::timeout(bound, subscription.recv()).await {
        Ok(Invalidation::Subscribed { .. }) => {}
        Ok(other) => panic!("before Subscribed: {other:?}"),
        Err(_) => panic!("the channel was not healthy within {bound:?}"),
    }
    assert!(subscription.is_healthy());
}

/// Receives until every id of `expected` arrived (within [`PROPAGATION`]); returns every id
/// received and in how many messages.
async fn receive_ids(
    subscription: &mut InvalidationSubscription,
    expected: &[String],
) -> (HashSet<String>, usize) {
    let started = Instant::now();
    let mut seen = HashSet::new();
    let mut messages = 0;
    while !expected.iter().all(|id| seen.contains(id)) {
        let left = PROPAGATION.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, subscription.recv()).await {
            Ok(Invalidation::Sessions(ids)) => {
                messages += 1;
                seen.extend(ids);
            }
            Ok(other) => panic!("expected session ids, got {other:?}"),
            Err(_) => panic!(
                "within {PROPAGATION:?} only {} of {} ids arrived",
                expected.iter().filter(|id| seen.contains(*id)).count(),
                expected.len()
            ),
        }
    }
    (seen, messages)
}

/// Saves and deletes a sentinel session on `store`, then receives until its id arrives:
/// returns whatever came before it (the server delivers in commit order, so anything a write
/// committed earlier announced is in there).
async fn before_a_sentinel(
    store: &PostgresStore,
    subscription: &mut InvalidationSubscription,
) -> Vec<Invalidation> {
    let sentinel = live_record(&random_user_id("sentinel"), json!({}));
    store.save_session(&sentinel).await.expect("save sentinel");
    store
        .delete_session(&sentinel.id)
        .await
        .expect("delete sentinel");
    let started = Instant::now();
    let mut before = Vec::new();
    loop {
        let left = PROPAGATION.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, subscription.recv()).await {
            Ok(Invalidation::Sessions(ids)) if ids == [sentinel.id.clone()] => return before,
            Ok(other) => before.push(other),
            Err(_) => panic!("the sentinel's delete did not arrive within {PROPAGATION:?}"),
        }
    }
}

/// Asserts that nothing arrives before a sentinel's delete: `what` was announced otherwise.
async fn assert_nothing_before_a_sentinel(
    store: &PostgresStore,
    subscription: &mut InvalidationSubscription,
    what: &str,
) {
    let before = before_a_sentinel(store, subscription).await;
    assert!(before.is_empty(), "{what}: {before:?}");
}

/// Asserts that nothing arrives for [`QUIET`], and that nothing came before a sentinel.
async fn assert_nothing_sent(store: &PostgresStore, subscription: &mut InvalidationSubscription) {
    if let Ok(message) = tokio::time::timeout(QUIET, subscription.recv()).await {
        panic!("expected nothing, got {message:?}");
    }
    assert_nothing_before_a_sentinel(store, subscription, "announced").await;
}

async fn saved(store: &PostgresStore, user_id: &str) -> SessionRecord {
    let record = live_record(user_id, json!({"n": 1}));
    store.save_session(&record).await.expect("save");
    record
}

#[tokio::test(flavor = "multi_thread")]
async fn a_logout_on_one_instance_reaches_the_other() {
    let run = Instances::new().await;
    let record = saved(&run.a, &random_user_id("logout")).await;
    let mut subscription = healthy_subscription(&run.b).await;
    run.a
        .delete_session(&record.id)
        .await
        .expect("delete_session");
    let returned = Instant::now();
    let (seen, _) = receive_ids(&mut subscription, std::slice::from_ref(&record.id)).await;
    let took = returned.elapsed();
    assert_eq!(seen, HashSet::from([record.id]));
    eprintln!(
        "invalidation figures: a logout on A received by B {} µs after delete_session returned",
        took.as_micros()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_per_user_delete_sends_every_id_of_that_user_only() {
    let run = Instances::new().await;
    let user = random_user_id("per-user");
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(saved(&run.a, &user).await.id);
    }
    let bystander = saved(&run.a, &random_user_id("bystander")).await;
    let mut subscription = healthy_subscription(&run.b).await;
    run.a
        .delete_sessions_for_user(&user)
        .await
        .expect("delete_sessions_for_user");
    let (seen, messages) = receive_ids(&mut subscription, &ids).await;
    assert_eq!(seen, ids.iter().cloned().collect(), "only that user's ids");
    assert_eq!(messages, 1, "one statement, one payload");
    assert!(!seen.contains(&bystander.id));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_data_update_is_pushed() {
    let run = Instances::new().await;
    let record = saved(&run.a, &random_user_id("data")).await;
    let mut subscription = healthy_subscription(&run.b).await;
    let updated = run
        .a
        .update_session_data(&record, &json!({"n": 2}).into(), OffsetDateTime::now_utc())
        .await
        .expect("update_session_data");
    assert!(updated);
    receive_ids(&mut subscription, &[record.id]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_purge_sends_the_expired_ids_in_a_few_payloads() {
    let run = Instances::new().await;
    let table = run.table();
    let mut tool = another_tool().await;
    // 5,000 expired sessions among 500 live ones, written in SQL (fast).
    let expired: Vec<String> = sqlx::query_scalar::<_, Option<String>>(AssertSqlSafe(format!(
        "INSERT INTO {table} (id, user_id, expires_at, created_at, data) \
         SELECT encode(sha256(convert_to('{run_id}' || i || '-' || (i <= 5000), 'UTF8')), 'hex'), \
                'user-' || (i % 97), \
                CASE WHEN i <= 5000 THEN now() - interval '1 hour' ELSE now() + interval '1 day' END, \
                now() - interval '2 hours', jsonb_build_object('i', i) \
         FROM generate_series(1, 5500) AS i \
         RETURNING CASE WHEN expires_at < now() THEN id END",
        run_id = random_suffix()
    )))
    .fetch_all(&mut tool)
    .await
    .expect("fill")
    .into_iter()
    .flatten()
    .collect();
    assert_eq!(expired.len(), 5000);

    let mut subscription = healthy_subscription(&run.b).await;
    let purged = run
        .a
        .delete_all_expired_sessions(OffsetDateTime::now_utc())
        .await
        .expect("purge");
    assert_eq!(purged, 5000);
    let (seen, messages) = receive_ids(&mut subscription, &expired).await;
    assert_eq!(seen.len(), 5000);
    // 64 hex characters and a comma per id, in payloads of at most 7899 bytes.
    assert!(
        (42..=60).contains(&messages),
        "{messages} NOTIFYs for 5,000 ids"
    );
    assert_nothing_before_a_sentinel(&run.a, &mut subscription, "a live session was announced")
        .await;
    eprintln!("invalidation figures: a purge of 5,000 among 500 live sent {messages} NOTIFYs");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_writes_of_another_tool_are_pushed() {
    let run = Instances::new().await;
    let table = run.table();
    let user = random_user_id("psql");
    let first = saved(&run.a, &user).await;
    let second = saved(&run.a, &user).await;
    let changed = saved(&run.a, &random_user_id("psql-update")).await;
    let mut subscription = healthy_subscription(&run.b).await;
    let mut tool = another_tool().await;

    sqlx::query(AssertSqlSafe(format!(
        "DELETE FROM {table} WHERE user_id = $1"
    )))
    .bind(&user)
    .execute(&mut tool)
    .await
    .expect("a DELETE in SQL");
    receive_ids(&mut subscription, &[first.id, second.id]).await;

    sqlx::query(AssertSqlSafe(format!(
        "UPDATE {table} SET data = '{{\"admin\": true}}' WHERE id = $1"
    )))
    .bind(&changed.id)
    .execute(&mut tool)
    .await
    .expect("an UPDATE in SQL");
    receive_ids(&mut subscription, &[changed.id]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delete_in_a_replica_session_is_pushed_too() {
    // A logical-replication apply worker writes with `session_replication_role = replica`,
    // where ordinary triggers do not fire; the invalidation triggers are ENABLE ALWAYS.
    let run = Instances::new().await;
    let record = saved(&run.a, &random_user_id("replica")).await;
    let mut subscription = healthy_subscription(&run.b).await;
    let mut tool = another_tool().await;
    sqlx::raw_sql("SET session_replication_role = replica")
        .execute(&mut tool)
        .await
        .expect("a replica session (the test server's user is a superuser)");
    sqlx::query(AssertSqlSafe(format!(
        "DELETE FROM {} WHERE id = $1",
        run.table()
    )))
    .bind(&record.id)
    .execute(&mut tool)
    .await
    .expect("delete");
    receive_ids(&mut subscription, &[record.id]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_truncate_is_everything() {
    let run = Instances::new().await;
    saved(&run.a, &random_user_id("truncate")).await;
    let mut subscription = healthy_subscription(&run.b).await;
    let mut tool = another_tool().await;
    sqlx::raw_sql(AssertSqlSafe(format!("TRUNCATE {}", run.table())))
        .execute(&mut tool)
        .await
        .expect("TRUNCATE");
    let message = tokio::time::timeout(PROPAGATION, subscription.recv())
        .await
        .expect("a message within the bound");
    assert_eq!(message, Invalidation::Everything);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_extension_sends_nothing_and_a_shortened_expiry_is_pushed() {
    let run = Instances::new().await;
    let record = saved(&run.a, &random_user_id("extend")).await;
    let mut subscription = healthy_subscription(&run.b).await;

    run.a
        .update_session_expiry(&record.id, record.expires_at + time::Duration::hours(1))
        .await
        .expect("extend");
    assert_eq!(
        run.a
            .fetch_session(&record.id)
            .await
            .expect("fetch")
            .map(|stored| stored.expires_at),
        Some(record.expires_at + time::Duration::hours(1)),
        "the extension was made"
    );
    assert_nothing_sent(&run.a, &mut subscription).await;

    run.a
        .update_session_expiry(&record.id, record.expires_at - time::Duration::hours(1))
        .await
        .expect("shorten");
    receive_ids(&mut subscription, &[record.id]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_to_any_column_but_a_later_expiry_is_pushed() {
    let run = Instances::new().await;
    let table = run.table();
    let mut tool = another_tool().await;
    // The columns the trigger compares. A migration that adds one must extend the trigger,
    // and this list.
    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns \
         WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
    )
    .bind(run.a.config().schema().as_str())
    .bind(run.a.config().table().as_str())
    .fetch_all(&mut tool)
    .await
    .expect("catalog");
    assert_eq!(
        columns,
        [
            "id",
            "user_id",
            "expires_at",
            "created_at",
            "data",
            "lifetime_ms",
            "data_version"
        ]
    );
    let mut subscription = healthy_subscription(&run.b).await;
    for assignment in [
        "user_id = user_id || '-2'",
        "created_at = created_at - interval '1 ms'",
        "data = '{\"n\": 1, \"m\": 2}'",
        "lifetime_ms = 60000",
        "data_version = data_version + 1",
        // Unchanged values in every column but a later expiry: still an extension.
    ] {
        let record = saved(&run.a, &random_user_id("column")).await;
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE {table} SET {assignment}, expires_at = expires_at + interval '1 hour' \
             WHERE id = $1"
        )))
        .bind(&record.id)
        .execute(&mut tool)
        .await
        .expect("update one column");
        let (seen, _) = receive_ids(&mut subscription, std::slice::from_ref(&record.id)).await;
        assert_eq!(seen, HashSet::from([record.id]), "{assignment}");
    }

    let record = saved(&run.a, &random_user_id("same")).await;
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE {table} SET user_id = user_id, data = data, expires_at = expires_at \
         WHERE id = $1"
    )))
    .bind(&record.id)
    .execute(&mut tool)
    .await
    .expect("an update that changes nothing");
    assert_nothing_sent(&run.a, &mut subscription).await;

    // A new id: the cached old one is gone, and the new one is announced too.
    let record = saved(&run.a, &random_user_id("renamed")).await;
    let renamed = format!("{}-renamed", record.id);
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE {table} SET id = $2 WHERE id = $1"
    )))
    .bind(&record.id)
    .bind(&renamed)
    .execute(&mut tool)
    .await
    .expect("rename");
    let (seen, _) = receive_ids(&mut subscription, &[record.id.clone(), renamed.clone()]).await;
    assert_eq!(seen, HashSet::from([record.id, renamed]));
}

#[tokio::test(flavor = "multi_thread")]
async fn ids_of_any_shape_arrive_whole_and_an_id_too_long_for_a_payload_is_everything() {
    let run = Instances::new().await;
    let odd: Vec<String> = [
        "",
        "*",
        ",",
        "a,b",
        "50%",
        "%41",
        "has space",
        "quote'\"",
        "Åsa\u{1F600}",
        "line\nbreak",
        "\u{2000}__Host-x",
    ]
    .iter()
    .map(|id| (*id).to_owned())
    .chain([
        "k".repeat(1024),
        "é,".repeat(512), // 1.5 KiB of UTF-8 holding commas: hex, over 1000 bytes, alone
        "x".repeat(5000), // over 1000 bytes: a payload of its own
    ])
    .collect();
    for id in &odd {
        let record = SessionRecord {
            id: id.clone(),
            ..live_record("odd", json!({}))
        };
        run.a.save_session(&record).await.expect("save odd id");
    }
    let mut subscription = healthy_subscription(&run.b).await;
    let mut tool = another_tool().await;
    sqlx::query(AssertSqlSafe(format!(
        "DELETE FROM {} WHERE id = ANY($1)",
        run.table()
    )))
    .bind(&odd)
    .execute(&mut tool)
    .await
    .expect("delete the odd ids");
    let (seen, _) = receive_ids(&mut subscription, &odd).await;
    assert_eq!(seen, odd.iter().cloned().collect());

    // 10,000 bytes cannot be sent in a payload: everything is flushed instead.
    let huge = SessionRecord {
        id: "y".repeat(10_000),
        ..live_record("odd", json!({}))
    };
    run.a.save_session(&huge).await.expect("save a huge id");
    run.a.delete_session(&huge.id).await.expect("delete it");
    let message = tokio::time::timeout(PROPAGATION, subscription.recv())
        .await
        .expect("a message within the bound");
    assert_eq!(message, Invalidation::Everything);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_notify_the_listener_cannot_read_is_everything() {
    let run = Instances::new().await;
    let mut subscription = healthy_subscription(&run.b).await;
    let mut tool = another_tool().await;
    for payload in ["", "not,,ours", "%zz"] {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(run.b.invalidation_channel())
            .bind(payload)
            .execute(&mut tool)
            .await
            .expect("NOTIFY");
        let message = tokio::time::timeout(PROPAGATION, subscription.recv())
            .await
            .expect("a message within the bound");
        assert_eq!(message, Invalidation::Everything, "{payload:?}");
    }
    assert!(subscription.is_healthy(), "a bad payload is not a loss");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_tables_do_not_hear_each_other() {
    let run = Instances::new().await;
    let schema = run.a.config().schema().as_str().to_owned();
    let other = PostgresStore::builder(run.a.pool().clone())
        .schema(&schema)
        .table("other_sessions")
        .build()
        .expect("valid");
    other.migrate().await.expect("migrate the second table");
    assert_ne!(other.invalidation_channel(), run.a.invalidation_channel());
    let (other_b, _) = instance_on(&schema, "other_sessions").await;

    let mut on_main = healthy_subscription(&run.b).await;
    let mut on_other = healthy_subscription(&other_b).await;
    let record = saved(&other, &random_user_id("other-table")).await;
    other.delete_session(&record.id).await.expect("delete");
    receive_ids(&mut on_other, &[record.id]).await;
    assert_nothing_before_a_sentinel(
        &run.a,
        &mut on_main,
        "the main table's channel heard the other table",
    )
    .await;
}

/// Terminates the listener's backend; returns how many were terminated.
async fn terminate_listener(admin: &PgPool, listener_name: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1) AS t",
    )
    .bind(listener_name)
    .fetch_one(admin)
    .await
    .expect("terminate")
}

async fn listener_backends(admin: &PgPool, listener_name: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
        .bind(listener_name)
        .fetch_one(admin)
        .await
        .expect("pg_stat_activity")
}

async fn admin_pool() -> PgPool {
    common::pool_named("narvik_test_admin").await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_terminated_listener_is_lost_then_subscribed_again_and_hears_the_next_delete() {
    let run = Instances::new().await;
    let admin = admin_pool().await;
    let mut subscription = healthy_subscription(&run.b).await;
    let (epoch, _) = subscription.state();
    assert_eq!(terminate_listener(&admin, &run.listener_name).await, 1);

    let lost = tokio::time::timeout(PROPAGATION, subscription.recv())
        .await
        .expect("told within the bound");
    assert_eq!(lost, Invalidation::Lost);
    // The loss ended the epoch, whether or not the listener (which waits 50 ms before it
    // reconnects) is back already on a machine that delayed this task.
    assert!(subscription.state().0 > epoch, "the loss ended the epoch");

    let started = Instant::now();
    match tokio::time::timeout(PROPAGATION, subscription.recv()).await {
        Ok(Invalidation::Subscribed { epoch: new }) => assert!(new > epoch, "{new} <= {epoch}"),
        other => panic!("not subscribed again within {PROPAGATION:?}: {other:?}"),
    }
    assert!(subscription.is_healthy());
    eprintln!(
        "invalidation figures: resubscribed {} ms after the loss was reported",
        started.elapsed().as_millis()
    );
    assert_eq!(listener_backends(&admin, &run.listener_name).await, 1);

    let record = saved(&run.a, &random_user_id("after")).await;
    run.a.delete_session(&record.id).await.expect("delete");
    receive_ids(&mut subscription, &[record.id]).await;
}

/// Polls until no backend carries `listener_name`; returns how long it took.
async fn wait_until_gone(admin: &PgPool, listener_name: &str, bound: Duration) -> Duration {
    let started = Instant::now();
    while listener_backends(admin, listener_name).await > 0 {
        assert!(
            started.elapsed() < bound,
            "the listener's connection is still open after {bound:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_listener_stops_when_the_store_is_dropped_with_a_subscription_left() {
    let Instances {
        a: _a,
        b,
        listener_name,
    } = Instances::new().await;
    let admin = admin_pool().await;
    let clone = b.clone();
    let mut subscription = healthy_subscription(&b).await;
    let second = clone.subscribe_invalidations().expect("pushes");
    assert!(
        second.is_healthy(),
        "a second subscription shares the channel"
    );
    assert_eq!(
        listener_backends(&admin, &listener_name).await,
        1,
        "one listener per store, however many subscriptions"
    );
    drop(second);
    // Every clone of the store is gone, a subscription is left: the listener stops anyway,
    // and the subscription hears that the channel is lost.
    drop((b, clone));
    let took = wait_until_gone(&admin, &listener_name, Duration::from_secs(3)).await;
    assert_eq!(
        tokio::time::timeout(PROPAGATION, subscription.recv())
            .await
            .expect("told within the bound"),
        Invalidation::Lost
    );
    assert!(!subscription.is_healthy());
    eprintln!(
        "invalidation figures: listener connection closed {} ms after the store was dropped",
        took.as_millis()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_listener_stops_with_the_last_subscription_and_starts_again_with_the_next() {
    let run = Instances::new().await;
    let admin = admin_pool().await;
    let subscription = healthy_subscription(&run.b).await;
    drop(subscription);
    // Noticed at the next wake-up, at most a quarter of a second later.
    let took = wait_until_gone(&admin, &run.listener_name, Duration::from_secs(3)).await;
    eprintln!(
        "invalidation figures: listener connection closed {} ms after the last subscription \
         was dropped",
        took.as_millis()
    );

    let mut subscription = healthy_subscription(&run.b).await;
    assert_eq!(listener_backends(&admin, &run.listener_name).await, 1);
    let record = saved(&run.a, &random_user_id("restarted")).await;
    run.a.delete_session(&record.id).await.expect("delete");
    receive_ids(&mut subscription, &[record.id]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disabled_trigger_makes_the_channel_unhealthy_until_it_is_enabled() {
    let run = Instances::new().await;
    let mut subscription = healthy_subscription(&run.b).await;
    let mut tool = another_tool().await;
    let table = run.table();
    sqlx::raw_sql(AssertSqlSafe(format!(
        "ALTER TABLE {table} DISABLE TRIGGER narvik_invalidate_delete"
    )))
    .execute(&mut tool)
    .await
    .expect("disable");
    // Found by the next heartbeat: at most one interval of silence and one round trip.
    let started = Instant::now();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(3), subscription.recv())
            .await
            .expect("told within the bound"),
        Invalidation::Lost
    );
    assert!(!subscription.is_healthy());
    eprintln!(
        "invalidation figures: a disabled trigger was noticed after {} ms",
        started.elapsed().as_millis()
    );
    sqlx::raw_sql(AssertSqlSafe(format!(
        "ALTER TABLE {table} ENABLE TRIGGER narvik_invalidate_delete"
    )))
    .execute(&mut tool)
    .await
    .expect("enable");
    wait_until_subscribed(&mut subscription, Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_listener_on_a_table_without_the_trigger_is_never_healthy() {
    // A table created by hand from migrations 1 and 2 only (a deployment that skipped
    // migrate): the listener connects and listens, but hears nothing it could trust.
    let run = Instances::new().await;
    let mut tool = another_tool().await;
    for trigger in [
        "narvik_invalidate_delete",
        "narvik_invalidate_update",
        "narvik_invalidate_truncate",
    ] {
        sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP TRIGGER {trigger} ON {}",
            run.table()
        )))
        .execute(&mut tool)
        .await
        .expect("drop the trigger");
    }
    let mut subscription = run.b.subscribe_invalidations().expect("pushes");
    let admin = admin_pool().await;
    let started = Instant::now();
    while listener_backends(&admin, &run.listener_name).await == 0 {
        assert!(
            started.elapsed() < FIRST_SUBSCRIPTION,
            "no listener started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Two heartbeats' worth: still nothing, and never healthy.
    if let Ok(message) =
        tokio::time::timeout(Duration::from_millis(2500), subscription.recv()).await
    {
        panic!("a channel without its triggers said {message:?}");
    }
    assert!(!subscription.is_healthy());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_listener_connects_where_the_builder_says() {
    // The listener pointed at another database of the server (as it would be pointed past a
    // transaction pooler): it connects there, with its own name, and finds no table there to
    // trust.
    let schema = common::fresh_schema();
    let pool = common::pool_named(&schema).await;
    common::store_in(pool.clone(), &schema).await;
    let listener_name = format!("narvik_test_listener_{}", random_suffix());
    let elsewhere: sqlx::postgres::PgConnectOptions = common::database_url()
        .parse::<sqlx::postgres::PgConnectOptions>()
        .expect("the test URL parses")
        .database("postgres");
    let store = PostgresStore::builder(pool)
        .schema(&schema)
        .listener_application_name(&listener_name)
        .listener_connect_options(elsewhere)
        .build()
        .expect("valid");
    let mut subscription = store.subscribe_invalidations().expect("pushes");
    let admin = admin_pool().await;
    // Until its trigger check has been answered there.
    let started = Instant::now();
    let database = loop {
        let found: Option<String> = sqlx::query_scalar(
            "SELECT datname::text FROM pg_stat_activity WHERE application_name = $1 \
             AND state = 'idle' AND query LIKE '%pg_trigger%'",
        )
        .bind(&listener_name)
        .fetch_optional(&admin)
        .await
        .expect("pg_stat_activity");
        if let Some(database) = found {
            break database;
        }
        assert!(
            started.elapsed() < FIRST_SUBSCRIPTION,
            "no listener checked its triggers"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(database, "postgres");
    if let Ok(message) = tokio::time::timeout(QUIET, subscription.recv()).await {
        panic!("a listener without the table said {message:?}");
    }
    assert!(!subscription.is_healthy());
}

#[tokio::test(flavor = "multi_thread")]
async fn migration_3_upgrades_a_table_of_migration_2_and_its_old_rows_are_announced() {
    // The schema as narvik-postgres left it with migrations 1 and 2: table, indexes, columns,
    // and both bookkeeping rows with their checksums.
    let schema = common::fresh_schema();
    let pool = common::pool_named(&schema).await;
    let table = format!("\"{schema}\".\"narvik_sessions\"");
    // Versions as i64, as the store binds them: the bookkeeping insert below is the store's
    // own statement, prepared on a shared pool connection, so its parameter types must match.
    let templates = [
        (
            1_i64,
            "create sessions",
            include_str!("../migrations/0001_create_sessions.sql"),
        ),
        (
            2,
            "session lifetime and data version",
            include_str!("../migrations/0002_session_lifetime_and_data_version.sql"),
        ),
    ];
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE SCHEMA \"{schema}\";
         CREATE TABLE \"{schema}\".\"narvik_sessions_migrations\" (
            version     bigint      PRIMARY KEY,
            description text        NOT NULL,
            checksum    bytea       NOT NULL,
            applied_at  timestamptz NOT NULL DEFAULT now()
        )"
    )))
    .execute(&pool)
    .await
    .expect("schema and bookkeeping");
    for (version, description, template) in templates {
        let sql = template
            .replace("{{table}}", &table)
            .replace("{{user_id_index}}", "\"narvik_sessions_user_id_idx\"")
            .replace("{{expires_at_index}}", "\"narvik_sessions_expires_at_idx\"");
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&pool)
            .await
            .expect("an old migration by hand");
        use sha2::Digest as _;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO \"{schema}\".\"narvik_sessions_migrations\" \
             (version, description, checksum) VALUES ($1, $2, $3)"
        )))
        .bind(version)
        .bind(description)
        .bind(sha2::Sha256::digest(template.as_bytes()).to_vec())
        .execute(&pool)
        .await
        .expect("record it");
    }
    // A session written by the version before.
    let old = live_record(&random_user_id("old-row"), json!({"n": 1}));
    let before = PostgresStore::builder(pool.clone())
        .schema(&schema)
        .build()
        .expect("valid");
    before.save_session(&old).await.expect("an old row");

    // An instance that subscribes before the upgrade is not healthy: no trigger yet.
    let (b, _) = instance_on(&schema, "narvik_sessions").await;
    let mut subscription = b.subscribe_invalidations().expect("pushes");
    if let Ok(message) =
        tokio::time::timeout(Duration::from_millis(1500), subscription.recv()).await
    {
        panic!("before migration 3: {message:?}");
    }

    let store = common::store_in(pool.clone(), &schema).await;
    let versions: Vec<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT version FROM \"{schema}\".\"narvik_sessions_migrations\" ORDER BY version"
    )))
    .fetch_all(&pool)
    .await
    .expect("versions");
    assert_eq!(versions, [1, 2, 3], "only migration 3 was applied");
    assert_eq!(
        store.fetch_session(&old.id).await.expect("fetch"),
        Some(old.clone()),
        "the old row is untouched"
    );
    // The waiting listener finds the triggers at its next heartbeat.
    wait_until_subscribed(&mut subscription, Duration::from_secs(3)).await;
    store.delete_session(&old.id).await.expect("delete");
    receive_ids(&mut subscription, &[old.id]).await;
    // And migrating again changes nothing.
    store.migrate().await.expect("migrate again");
    let triggers: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relname = 'narvik_sessions' AND NOT t.tgisinternal",
    )
    .bind(&schema)
    .fetch_one(&pool)
    .await
    .expect("catalog");
    assert_eq!(triggers, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn near_caches_on_two_instances_see_each_others_revocations() {
    let run = Instances::new().await;
    let slowest = narvik_conformance::near_cache::revocations_reach_the_other_instance(
        Arc::new(run.a),
        Arc::new(run.b),
    )
    .await;
    eprintln!(
        "invalidation figures: slowest revocation seen by the other engine {} ms",
        slowest.as_millis()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_near_cache_whose_listener_is_terminated_is_bypassed_until_it_is_back() {
    let run = Instances::new().await;
    let admin = admin_pool().await;
    let listener_name = run.listener_name.clone();
    narvik_conformance::near_cache::a_broken_channel_is_bypassed_until_it_is_back(
        Arc::new(run.a),
        Arc::new(run.b),
        || async move {
            assert_eq!(terminate_listener(&admin, &listener_name).await, 1);
        },
    )
    .await;
}

/// Medians of a few timed runs.
fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

/// Writes 5,000 expired and 500 live sessions into `table` in SQL, and vacuums it, so that
/// every timed purge starts from the same table.
async fn fill_for_the_purge(tool: &mut PgConnection, table: &str) {
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {table} (id, user_id, expires_at, created_at, data) \
         SELECT encode(sha256(convert_to($1 || i, 'UTF8')), 'hex'), 'user-' || (i % 97), \
                CASE WHEN i <= 5000 THEN now() - interval '1 hour' \
                     ELSE now() + interval '1 day' END, \
                now() - interval '2 hours', jsonb_build_object('i', i) \
         FROM generate_series(1, 5500) AS i"
    )))
    .bind(random_suffix())
    .execute(&mut *tool)
    .await
    .expect("fill");
    sqlx::raw_sql(AssertSqlSafe(format!("VACUUM ANALYZE {table}")))
        .execute(&mut *tool)
        .await
        .expect("vacuum");
}

async fn timed_purge(store: &PostgresStore) -> Duration {
    let started = Instant::now();
    let purged = store
        .delete_all_expired_sessions(OffsetDateTime::now_utc())
        .await
        .expect("purge");
    let took = started.elapsed();
    assert_eq!(purged, 5000);
    took
}

#[tokio::test(flavor = "multi_thread")]
async fn what_the_trigger_costs_the_purge_and_an_extension() {
    // Figures for the README, not a pass/fail bound: timings on a shared machine are noisy.
    // The same table with its triggers disabled for the runs "without", alternating, and a
    // store on a pool of one connection, so that every timed call runs on a connection that
    // has run the trigger function before (Postgres compiles it once per connection).
    let run = Instances::new().await;
    let table = run.table();
    let mut tool = another_tool().await;
    let single = PostgresStore::builder(
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&common::database_url())
            .await
            .expect("a pool of one"),
    )
    .schema(run.a.config().schema().as_str())
    .build()
    .expect("valid");
    let mut subscription = healthy_subscription(&run.b).await;
    // Read and forgotten, so the hub's backlog never matters; aborted before the store goes.
    let drain = tokio::spawn(async move {
        loop {
            subscription.recv().await;
        }
    });
    let live = saved(&single, &random_user_id("cost")).await;

    // The first purge on a connection also compiles and plans the trigger function.
    fill_for_the_purge(&mut tool, &table).await;
    let first = timed_purge(&single).await;

    let mut purge = [Vec::new(), Vec::new()];
    let mut extend = [Vec::new(), Vec::new()];
    for round in 0..10_i64 {
        let with_trigger = round % 2 == 1;
        let action = if with_trigger { "ENABLE" } else { "DISABLE" };
        sqlx::raw_sql(AssertSqlSafe(format!(
            "ALTER TABLE {table} {action} TRIGGER USER"
        )))
        .execute(&mut tool)
        .await
        .expect("switch the triggers");
        fill_for_the_purge(&mut tool, &table).await;
        purge[usize::from(with_trigger)].push(timed_purge(&single).await);

        let started = Instant::now();
        for step in 1..=200 {
            single
                .update_session_expiry(
                    &live.id,
                    live.expires_at + time::Duration::milliseconds(round * 1000 + step),
                )
                .await
                .expect("extend");
        }
        extend[usize::from(with_trigger)].push(started.elapsed() / 200);
        sqlx::query(AssertSqlSafe(format!("DELETE FROM {table} WHERE id <> $1")))
            .bind(&live.id)
            .execute(&mut tool)
            .await
            .expect("clear the live rows");
    }
    drain.abort();
    let [purge_without, purge_with] = purge.map(median);
    let [extend_without, extend_with] = extend.map(median);
    let ms = |duration: Duration| duration.as_secs_f64() * 1e3;
    eprintln!(
        "invalidation figures: purge of 5,000 expired among 500 live: {:.1} ms without the \
         trigger, {:.1} ms with it (medians of 5 runs each); {:.1} ms for the first with it on \
         a connection",
        ms(purge_without),
        ms(purge_with),
        ms(first)
    );
    eprintln!(
        "invalidation figures: one extension (update_session_expiry, a round trip): {:.0} µs \
         without the trigger, {:.0} µs with it (medians of 5 runs of 200)",
        extend_without.as_secs_f64() * 1e6,
        extend_with.as_secs_f64() * 1e6
    );
}
