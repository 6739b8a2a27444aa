//! The server crashes mid-run (kill -9) under a concurrent writer and comes back on the same
//! storage: operations fail with the typed unavailable error while it is gone, and the same
//! store recovers with every session it acknowledged intact (the default write concern waits
//! for the journal).
//!
//! The test owns its server (common::own_server: its own port and storage directory, run by
//! narvik-faults' `ServerProcess`), so crashing it disturbs no other test. The store is built
//! with the defaults: no timeouts or write concern of the test's own.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::own_server::OwnServer;
use narvik_conformance::harness::record_expiring_in;
use narvik_core::{Error, SessionRecord, SessionStore};
use narvik_faults::{assert_unavailable_within, recover_within, Bounds};
use narvik_mongo::{MongoStore, MongoStoreConfig};
use serde_json::json;
use time::OffsetDateTime;

fn record(id: String, user_id: &str) -> SessionRecord {
    let data = json!({"id": id, "n": [1, 2.5, u64::MAX]});
    SessionRecord {
        id,
        ..record_expiring_in(user_id, time::Duration::hours(1), data)
    }
}

/// While the server is down every call fails within the connect bound (plus the margin).
fn down_limit() -> Duration {
    let bounds = Bounds::default();
    bounds.connect + bounds.margin
}

#[tokio::test(flavor = "multi_thread")]
async fn server_crash_mid_run_fails_typed_and_recovers_with_data_intact() {
    let mut server = OwnServer::start("restart");
    let store = MongoStore::connect(
        &server.url(common::TEST_DATABASE),
        &MongoStoreConfig::default().collection("restart"),
    )
    .await
    .expect("connect");
    store.ensure_indexes().await.expect("indexes");

    let before: Vec<SessionRecord> = (0..20)
        .map(|i| {
            record(
                format!("before-{i:02}"),
                if i % 2 == 0 { "ann" } else { "ben" },
            )
        })
        .collect();
    for saved in &before {
        store
            .save_session(saved)
            .await
            .expect("save before the crash");
    }

    // A writer keeps saving while the server crashes: what it saw acknowledged must survive,
    // and everything else must fail typed.
    let stop_writing = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn({
        let store = store.clone();
        let stop_writing = stop_writing.clone();
        async move {
            let (mut acknowledged, mut failures) = (Vec::new(), Vec::new());
            let mut i = 0;
            while !stop_writing.load(Ordering::Relaxed) {
                let saved = record(format!("during-{i:05}"), "cid");
                match store.save_session(&saved).await {
                    Ok(()) => acknowledged.push(saved),
                    Err(error) => failures.push(error),
                }
                i += 1;
            }
            (acknowledged, failures)
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::block_in_place(|| server.process.kill());

    let limit = down_limit();
    assert_unavailable_within("fetch_session", limit, store.fetch_session("before-00")).await;
    assert_unavailable_within(
        "save_session",
        limit,
        store.save_session(&record("down".into(), "ann")),
    )
    .await;
    assert_unavailable_within(
        "update_session_expiry",
        limit,
        store.update_session_expiry("before-00", OffsetDateTime::now_utc()),
    )
    .await;
    assert_unavailable_within("delete_session", limit, store.delete_session("before-01")).await;
    assert_unavailable_within(
        "fetch_sessions_for_user",
        limit,
        store.fetch_sessions_for_user("ann", OffsetDateTime::now_utc()),
    )
    .await;
    assert_unavailable_within(
        "delete_sessions_for_user",
        limit,
        store.delete_sessions_for_user("ben"),
    )
    .await;
    assert_unavailable_within(
        "delete_all_expired_sessions",
        limit,
        store.delete_all_expired_sessions(OffsetDateTime::now_utc()),
    )
    .await;

    stop_writing.store(true, Ordering::Relaxed);
    let (acknowledged, failures) = writer.await.expect("writer task");
    assert!(
        !acknowledged.is_empty(),
        "the writer saved nothing before the crash"
    );
    assert!(
        !failures.is_empty(),
        "the writer never saw the server go away"
    );
    for failure in &failures {
        assert!(
            matches!(failure, Error::Unavailable { .. }),
            "writer saw {failure:?}"
        );
    }

    // The same store, with the same client, recovers on its own once the server is back.
    let since = tokio::task::block_in_place(|| server.process.start_again());
    let bounds = Bounds::default();
    recover_within(
        "fetch_session after the restart",
        since,
        bounds.recover + bounds.margin,
        || store.fetch_session("before-00"),
    )
    .await;
    for saved in before.iter().chain(&acknowledged) {
        assert_eq!(
            store
                .fetch_session(&saved.id)
                .await
                .expect("fetch after restart")
                .as_ref(),
            Some(saved),
            "{} was acknowledged before the crash",
            saved.id
        );
    }
    assert_eq!(
        store
            .fetch_sessions_for_user("ann", OffsetDateTime::now_utc())
            .await
            .expect("list")
            .len(),
        10
    );
    assert_eq!(store.fetch_session("down").await.expect("fetch"), None);
    store
        .save_session(&record("after".into(), "ann"))
        .await
        .expect("save after restart");
    store
        .delete_sessions_for_user("ben")
        .await
        .expect("delete after restart");
    assert!(store
        .fetch_sessions_for_user("ben", OffsetDateTime::now_utc())
        .await
        .expect("list")
        .is_empty());
}
