//! Invalidations pushed through the change stream, between two app instances: two stores, each
//! on a client of its own, on one fresh collection. B subscribes; writes through A (and through
//! a third, plain client, as another tool) must reach B within the propagation bound.
//!
//! The loss cases (a server killed and restarted, a frozen server) and the listener's end run
//! against servers of their own (common::own_server), one at a time; the rest on the shared
//! test server.
//!
//! Run with `--nocapture` to read the `push figures:` lines quoted in the README.

mod common;

use std::time::{Duration, Instant};

use common::own_server::OwnServer;
use narvik_conformance::harness::{random_user_id, record_expiring_in};
use narvik_core::invalidation::{Invalidation, InvalidationSubscription};
use narvik_core::{SessionData, SessionRecord, SessionStore};
use narvik_faults::Bounds;
use narvik_mongo::mongodb::bson::{doc, Bson};
use narvik_mongo::mongodb::error::ErrorKind;
use narvik_mongo::mongodb::{Client, Database};
use narvik_mongo::{MongoStore, MongoStoreConfig};
use serde_json::json;
use time::OffsetDateTime;

/// How long a change may take to reach the other instance: far above what a loopback server
/// needs (a few milliseconds, see the figures), far below anything a user would notice.
const PUSH_WITHIN: Duration = Duration::from_secs(2);

/// How long the first subscription may take to open its stream on the shared server, which
/// the other tests of this binary load too.
const OPEN_WITHIN: Duration = Duration::from_secs(10);

/// From a server accepting connections again to the stream being open again: the listener's
/// longest pause between attempts (1 s), the driver noticing the server (its heartbeat, at least
/// 500 ms apart) and the open itself.
const BACK_WITHIN: Duration = Duration::from_secs(3);

fn live_record(user_id: &str) -> SessionRecord {
    record_expiring_in(
        user_id,
        time::Duration::hours(1),
        json!({ "theme": "dark" }),
    )
}

/// Saves `count` live sessions of `user_id` through `store`.
async fn saved(store: &MongoStore, user_id: &str, count: usize) -> Vec<SessionRecord> {
    let mut records = Vec::new();
    for _ in 0..count {
        let record = live_record(user_id);
        store.save_session(&record).await.expect("save");
        records.push(record);
    }
    records
}

/// A subscription on `store`, once its channel is healthy.
async fn subscribed(store: &MongoStore, within: Duration) -> InvalidationSubscription {
    let mut subscription = store
        .subscribe_invalidations()
        .expect("the store pushes invalidations");
    let took = wait_healthy(&mut subscription, within).await;
    eprintln!(
        "push figures: stream open (subscription to healthy) in {} ms",
        took.as_millis()
    );
    subscription
}

/// Waits until `subscription` is healthy, consuming what arrives meanwhile (a `Subscribed`).
async fn wait_healthy(subscription: &mut InvalidationSubscription, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if subscription.is_healthy() {
            return started.elapsed();
        }
        let left = within.saturating_sub(started.elapsed());
        assert!(
            !left.is_zero(),
            "the channel was not healthy within {within:?}"
        );
        let _ =
            tokio::time::timeout(left.min(Duration::from_millis(50)), subscription.recv()).await;
    }
}

/// The next message other than `Subscribed`, within `within`.
async fn next_message(
    subscription: &mut InvalidationSubscription,
    within: Duration,
) -> Invalidation {
    let started = Instant::now();
    loop {
        let left = within.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, subscription.recv()).await {
            Ok(Invalidation::Subscribed { .. }) => continue,
            Ok(message) => return message,
            Err(_) => panic!("no message within {within:?}"),
        }
    }
}

/// Receives until every id of `ids` was pushed, within [`PUSH_WITHIN`] of the call (made once
/// the write was acknowledged: on a loaded shared server the write itself may queue); panics on
/// anything but session messages, or on a pushed id outside `ids`. Returns how long it took
/// from `since`, when the write began.
async fn expect_pushed(
    subscription: &mut InvalidationSubscription,
    ids: &[&str],
    since: Instant,
    what: &str,
) -> Duration {
    let acknowledged = Instant::now();
    let mut missing: Vec<&str> = ids.to_vec();
    while !missing.is_empty() {
        let left = PUSH_WITHIN.saturating_sub(acknowledged.elapsed());
        match tokio::time::timeout(left, subscription.recv()).await {
            Ok(Invalidation::Sessions(pushed)) => {
                for id in &pushed {
                    assert!(
                        ids.contains(&id.as_str()),
                        "{what}: {id} was pushed, which it did not change (expected {ids:?})"
                    );
                    missing.retain(|missing| missing != id);
                }
            }
            Ok(Invalidation::Subscribed { .. }) => {}
            Ok(other) => panic!("{what}: {other:?} while waiting for {missing:?}"),
            Err(_) => panic!("{what}: {missing:?} not pushed within {PUSH_WITHIN:?}"),
        }
    }
    since.elapsed()
}

/// [`expect_pushed`], with the time it took in a `push figures:` line.
async fn expect_pushed_reported(
    subscription: &mut InvalidationSubscription,
    ids: &[&str],
    since: Instant,
    what: &str,
) {
    let took = expect_pushed(subscription, ids, since, what).await;
    eprintln!(
        "push figures: {what}: pushed {} ms after the write began",
        took.as_millis()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_logout_on_one_instance_reaches_the_other() {
    let (a, b, _) = common::two_instances().await;
    let [kept, gone]: [SessionRecord; 2] = saved(&a, &random_user_id("ann"), 2)
        .await
        .try_into()
        .expect("two sessions");
    let mut subscription = subscribed(&b, OPEN_WITHIN).await;
    // A save is not pushed (no cache holds a session before it exists): the first message is
    // the logout alone.
    a.save_session(&live_record("ben")).await.expect("save");
    let since = Instant::now();
    a.delete_session(&gone.id).await.expect("delete");
    expect_pushed_reported(&mut subscription, &[&gone.id], since, "delete_session").await;
    assert_eq!(
        b.fetch_session(&kept.id).await.expect("fetch").as_ref(),
        Some(&kept)
    );
}

/// Fifty logouts one after another, each pushed before the next: the propagation window,
/// from the write's acknowledgement to the push, as the README quotes it.
#[tokio::test(flavor = "multi_thread")]
async fn fifty_logouts_in_a_row_are_each_pushed() {
    let (a, b, _) = common::two_instances().await;
    let records = saved(&a, &random_user_id("ann"), 50).await;
    let mut subscription = subscribed(&b, OPEN_WITHIN).await;
    let (mut from_start, mut from_ack) = (Vec::new(), Vec::new());
    for record in &records {
        let since = Instant::now();
        a.delete_session(&record.id).await.expect("delete");
        let acknowledged = since.elapsed();
        let took = expect_pushed(&mut subscription, &[&record.id], since, "one of fifty").await;
        from_start.push(took);
        from_ack.push(took.saturating_sub(acknowledged));
    }
    from_start.sort();
    from_ack.sort();
    let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1000.0);
    eprintln!(
        "push figures: 50 logouts: push after the write began: median {} ms, max {} ms; \
         after it was acknowledged: median {} ms, max {} ms",
        ms(from_start[25]),
        ms(from_start[49]),
        ms(from_ack[25]),
        ms(from_ack[49])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_per_user_delete_reaches_the_other_instance() {
    let (a, b, _) = common::two_instances().await;
    let user = random_user_id("ann");
    let hers = saved(&a, &user, 3).await;
    saved(&a, &random_user_id("ben"), 1).await;
    let mut subscription = subscribed(&b, OPEN_WITHIN).await;
    let since = Instant::now();
    a.delete_sessions_for_user(&user).await.expect("delete");
    let ids: Vec<&str> = hers.iter().map(|record| record.id.as_str()).collect();
    expect_pushed_reported(&mut subscription, &ids, since, "delete_sessions_for_user").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_data_update_reaches_the_other_instance() {
    let (a, b, _) = common::two_instances().await;
    let [record]: [SessionRecord; 1] = saved(&a, &random_user_id("ann"), 1)
        .await
        .try_into()
        .expect("one session");
    let mut subscription = subscribed(&b, OPEN_WITHIN).await;
    let since = Instant::now();
    let data = SessionData::from(json!({ "theme": "light" }));
    assert!(a
        .update_session_data(&record, &data, OffsetDateTime::now_utc())
        .await
        .expect("update"));
    expect_pushed_reported(
        &mut subscription,
        &[&record.id],
        since,
        "update_session_data",
    )
    .await;
}

/// An update that only moves `expiresAt` is pushed as well: the event cannot tell an extension
/// from another client bringing the expiry forward (see the README).
#[tokio::test(flavor = "multi_thread")]
async fn an_extension_reaches_the_other_instance_too() {
    let (a, b, _) = common::two_instances().await;
    let [record]: [SessionRecord; 1] = saved(&a, &random_user_id("ann"), 1)
        .await
        .try_into()
        .expect("one session");
    let mut subscription = subscribed(&b, OPEN_WITHIN).await;
    let since = Instant::now();
    a.update_session_expiry(&record.id, record.expires_at + time::Duration::hours(1))
        .await
        .expect("extend");
    expect_pushed_reported(
        &mut subscription,
        &[&record.id],
        since,
        "update_session_expiry",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_purge_reaches_the_other_instance() {
    let (a, b, _) = common::two_instances().await;
    let user = random_user_id("ann");
    let mut expired = Vec::new();
    for _ in 0..3 {
        // Saved already expired: the store keeps it (`keeps_already_expired`) until a purge.
        let record = record_expiring_in(&user, time::Duration::minutes(-5), json!(null));
        a.save_session(&record).await.expect("save");
        expired.push(record);
    }
    saved(&a, &user, 1).await;
    let mut subscription = subscribed(&b, OPEN_WITHIN).await;
    let since = Instant::now();
    let purged = a
        .delete_all_expired_sessions(OffsetDateTime::now_utc())
        .await
        .expect("purge");
    let ids: Vec<&str> = expired.iter().map(|record| record.id.as_str()).collect();
    // The TTL monitor may have taken some first: those are pushed too, as its own deletes.
    assert!(purged <= 3, "{purged}");
    expect_pushed_reported(
        &mut subscription,
        &ids,
        since,
        "delete_all_expired_sessions",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delete_by_another_tool_reaches_the_subscriber() {
    let (a, b, other) = common::two_instances().await;
    let [record]: [SessionRecord; 1] = saved(&a, &random_user_id("ann"), 1)
        .await
        .try_into()
        .expect("one session");
    let mut subscription = subscribed(&b, OPEN_WITHIN).await;
    let since = Instant::now();
    let deleted = other
        .delete_one(doc! { "_id": &record.id })
        .await
        .expect("a raw delete");
    assert_eq!(deleted.deleted_count, 1);
    expect_pushed_reported(&mut subscription, &[&record.id], since, "a raw delete_one").await;
}

/// A dropped collection ends the stream (`drop`, then `invalidate`): every cache flushes, the
/// channel is lost for the moment it takes to open a new stream, and changes after that are
/// pushed again.
#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_collection_flushes_everything_and_the_stream_comes_back() {
    let (a, b, other) = common::two_instances().await;
    saved(&a, &random_user_id("ann"), 1).await;
    let mut subscription = subscribed(&b, OPEN_WITHIN).await;
    other.drop().await.expect("drop the collection");
    assert_eq!(
        next_message(&mut subscription, PUSH_WITHIN).await,
        Invalidation::Everything
    );
    assert_eq!(
        next_message(&mut subscription, PUSH_WITHIN).await,
        Invalidation::Lost
    );
    wait_healthy(&mut subscription, BACK_WITHIN).await;
    let [record]: [SessionRecord; 1] = saved(&a, &random_user_id("ann"), 1)
        .await
        .try_into()
        .expect("one session");
    let since = Instant::now();
    a.delete_session(&record.id).await.expect("delete");
    expect_pushed_reported(
        &mut subscription,
        &[&record.id],
        since,
        "delete after a drop",
    )
    .await;
}

/// The tests on servers of their own time their bounds on a two-core machine, next to a
/// Python server that keeps a core busy: one at a time within this binary.
async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    TURN.lock().await
}

/// A store as the README builds it (default bounds), on a server of the test's own.
async fn store_on(server: &OwnServer) -> MongoStore {
    let store = MongoStore::connect(
        &server.url("app"),
        &MongoStoreConfig::default().collection("sessions"),
    )
    .await
    .expect("connect to the test's own server");
    store
        .ensure_indexes()
        .await
        .expect("indexes on the test's own server");
    store
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_server_is_a_loss_and_the_stream_comes_back() {
    let _turn = one_at_a_time().await;
    let mut server = OwnServer::start("push-restart");
    let a = store_on(&server).await;
    let b = store_on(&server).await;
    let mut subscription = subscribed(&b, Bounds::default().call).await;

    let killed = Instant::now();
    tokio::task::block_in_place(|| server.process.kill());
    // The getMore in flight fails at once on the closed connection; a silent one would fail at
    // the answer bound (2 s).
    let bounds = Bounds::default();
    assert_eq!(
        next_message(&mut subscription, Duration::from_secs(2) + bounds.margin).await,
        Invalidation::Lost
    );
    let lost_after = killed.elapsed();
    assert!(!subscription.is_healthy());

    // Down for longer than the driver's server selection timeout, so that every attempt to
    // open the stream in between fails: none of them may turn the channel healthy.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        !subscription.is_healthy(),
        "healthy while the server is down"
    );
    let since = tokio::task::block_in_place(|| server.process.start_again());
    wait_healthy(&mut subscription, BACK_WITHIN + bounds.margin).await;
    let back_after = since.elapsed();

    let [record]: [SessionRecord; 1] = saved(&a, &random_user_id("ann"), 1)
        .await
        .try_into()
        .expect("one session");
    let deleted = Instant::now();
    a.delete_session(&record.id)
        .await
        .expect("delete after the restart");
    expect_pushed_reported(
        &mut subscription,
        &[&record.id],
        deleted,
        "delete after a restart",
    )
    .await;
    eprintln!(
        "push figures: kill -9: Lost after {} ms; healthy again {} ms after the port opened",
        lost_after.as_millis(),
        back_after.as_millis()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_server_is_a_loss_within_the_answer_bound() {
    let _turn = one_at_a_time().await;
    let server = OwnServer::start("push-freeze");
    let b = store_on(&server).await;
    let mut subscription = subscribed(&b, Bounds::default().call).await;

    let frozen = Instant::now();
    server.process.freeze();
    let bounds = Bounds::default();
    // A quiet stream answers every second; a frozen server answers nothing, and the listener
    // gives up on a getMore after 2 s.
    let message = next_message(&mut subscription, Duration::from_secs(2) + bounds.margin).await;
    let lost_after = frozen.elapsed();
    server.process.resume();
    assert_eq!(message, Invalidation::Lost);
    let resumed = Instant::now();
    wait_healthy(&mut subscription, Bounds::default().call + BACK_WITHIN).await;
    eprintln!(
        "push figures: SIGSTOP: Lost after {} ms; healthy again {} ms after SIGCONT",
        lost_after.as_millis(),
        resumed.elapsed().as_millis()
    );
}

/// `serverStatus` as another client sees it: the open cursors and the getMores served so far.
/// The server of the test's own has no other client with cursors.
async fn cursors_and_get_mores(admin: &Database) -> (i64, i64) {
    let status = admin
        .run_command(doc! { "serverStatus": 1 })
        .await
        .expect("serverStatus");
    let number = |value: Option<&Bson>| match value {
        Some(Bson::Int32(n)) => i64::from(*n),
        Some(Bson::Int64(n)) => *n,
        Some(Bson::Double(n)) => *n as i64,
        other => panic!("serverStatus: not a number: {other:?}"),
    };
    let open = status
        .get_document("metrics")
        .and_then(|metrics| metrics.get_document("cursor"))
        .and_then(|cursor| cursor.get_document("open"))
        .map(|open| number(open.get("total")))
        .expect("metrics.cursor.open");
    let get_mores = status
        .get_document("opcounters")
        .map(|counters| number(counters.get("getmore")))
        .expect("opcounters");
    (open, get_mores)
}

/// Waits until the server shows no open cursor, then checks that it serves no getMore for
/// `quiet`: nothing listens any more. Returns how long the cursor took to go.
async fn listener_gone(admin: &Database, within: Duration, quiet: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let (open, before) = cursors_and_get_mores(admin).await;
        if open == 0 {
            let gone = started.elapsed();
            tokio::time::sleep(quiet).await;
            let (open, after) = cursors_and_get_mores(admin).await;
            assert_eq!(open, 0, "a cursor was opened again");
            assert_eq!(
                before, after,
                "getMores went on after the listener should have stopped"
            );
            return gone;
        }
        assert!(
            started.elapsed() < within,
            "{open} cursor(s) still open after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The listener runs while someone listens: it stops (closing its cursor on the server, no
/// more getMores) when the last subscription goes, starts again with the next one, and stops
/// when the store goes, which the subscription still held sees as a loss.
#[tokio::test(flavor = "multi_thread")]
async fn the_listener_stops_with_its_last_subscription_and_with_the_store() {
    let _turn = one_at_a_time().await;
    let server = OwnServer::start("push-stop");
    let observer = Client::with_uri_str(server.url("admin"))
        .await
        .expect("an observing client");
    let admin = observer.database("admin");
    let store = store_on(&server).await;
    assert_eq!(
        cursors_and_get_mores(&admin).await.0,
        0,
        "no stream before a subscription"
    );

    let subscription = subscribed(&store, Bounds::default().call).await;
    let (open, before) = cursors_and_get_mores(&admin).await;
    assert_eq!(open, 1, "one change stream cursor");
    // A quiet stream asks again every second (two or three times in 2.5 s; one is proof
    // enough that it runs, on a loaded machine).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (_, after) = cursors_and_get_mores(&admin).await;
    assert!(after > before, "getMores {before} -> {after} in 2.5 s");
    eprintln!(
        "push figures: a quiet stream: {} getMores in 2.5 s",
        after - before
    );

    drop(subscription);
    let stopped = listener_gone(&admin, Duration::from_secs(3), Duration::from_millis(2500)).await;

    let mut subscription = subscribed(&store, Bounds::default().call).await;
    assert_eq!(
        cursors_and_get_mores(&admin).await.0,
        1,
        "the stream opened again"
    );
    drop(store);
    assert_eq!(
        next_message(&mut subscription, Duration::from_secs(1)).await,
        Invalidation::Lost,
        "a subscription outliving its store is told at once"
    );
    assert!(!subscription.is_healthy());
    let dropped = listener_gone(&admin, Duration::from_secs(3), Duration::from_millis(2500)).await;
    eprintln!(
        "push figures: cursor closed {} ms after the last subscription was dropped, {} ms after \
         the store was (each then no getMore for 2.5 s)",
        stopped.as_millis(),
        dropped.as_millis()
    );
}

/// Change streams need a replica set: a standalone server (SecantusDB with `--standalone`, as a
/// `mongod` without `--replSet`) refuses the stream, and the channel never turns healthy, so a
/// pushed near cache on it sends every validation to the store. The store itself works.
#[tokio::test(flavor = "multi_thread")]
async fn on_a_standalone_server_the_channel_never_turns_healthy() {
    let _turn = one_at_a_time().await;
    let server = OwnServer::start_with_args("push-standalone", &["--standalone"]);
    let store = store_on(&server).await;
    let mut subscription = store
        .subscribe_invalidations()
        .expect("the store pushes invalidations");
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        assert!(!subscription.is_healthy(), "healthy on a standalone server");
        let _ = tokio::time::timeout(Duration::from_millis(100), subscription.recv()).await;
    }
    let [record]: [SessionRecord; 1] = saved(&store, &random_user_id("ann"), 1)
        .await
        .try_into()
        .expect("one session");
    assert_eq!(
        store.fetch_session(&record.id).await.expect("fetch"),
        Some(record)
    );
    let refused = Client::with_uri_str(server.url("app"))
        .await
        .expect("a plain client")
        .database("app")
        .run_command(doc! {
            "aggregate": "sessions",
            "pipeline": [{ "$changeStream": {} }],
            "cursor": {},
        })
        .await
        .expect_err("a standalone server refuses a change stream");
    match refused.kind.as_ref() {
        ErrorKind::Command(command) => {
            assert_eq!(
                (command.code, command.code_name.as_str()),
                (40573, "IllegalOperation")
            );
            eprintln!("push figures: standalone server: {}", command.message);
        }
        other => panic!("not the standalone refusal: {other:?}"),
    }
}

/// The listener runs on the runtime of the first subscription. If that runtime ends while the
/// store lives on, the listener ends with it: the channel must then read as lost (never healthy
/// with nobody listening), and the next subscription starts a listener again.
#[test]
fn a_listener_whose_runtime_ends_leaves_the_channel_lost_until_the_next_subscription() {
    let main = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let (a, b, _) = main.block_on(common::two_instances());
    let short = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let first = short.block_on(subscribed(&b, OPEN_WITHIN));
    drop(short);
    assert!(!first.is_healthy(), "healthy with its listener gone");
    main.block_on(async {
        let mut again = subscribed(&b, OPEN_WITHIN).await;
        assert!(first.is_healthy(), "one hub for every subscription");
        let [record]: [SessionRecord; 1] = saved(&a, &random_user_id("ann"), 1)
            .await
            .try_into()
            .expect("one session");
        let since = Instant::now();
        a.delete_session(&record.id).await.expect("delete");
        expect_pushed_reported(
            &mut again,
            &[&record.id],
            since,
            "delete after a new runtime",
        )
        .await;
    });
}
