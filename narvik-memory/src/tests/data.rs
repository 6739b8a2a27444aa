//! Session data: kept as its JSON text, and replaced only at the version it was read at, never
//! on a missing or expired record.

use std::sync::Arc;

use narvik_core::{SessionData, SessionStore};
use serde_json::json;
use time::Duration;

use super::{ids, live, record, wall_now};
use crate::MemoryStore;

#[tokio::test]
async fn data_update_replaces_the_data_and_bumps_the_version_only() {
    let store = MemoryStore::with_shards(1);
    let now = wall_now();
    let long_user = "ü".repeat(100);
    let mut saved = record("a", &long_user, now + Duration::hours(1));
    saved.lifetime = Some(Duration::days(30));
    store.save_session(&saved).await.expect("save");
    let new_data: SessionData = json!({ "cart": [1, 2, 3], "text": "a longer value ü" }).into();
    assert!(store
        .update_session_data(&saved, &new_data, now)
        .await
        .expect("update"));
    let fetched = live(&store, "a").await;
    let mut expected = saved.clone();
    expected.data = new_data.clone();
    expected.data_version = 1;
    assert_eq!(fetched, expected);
    // The same read version again: stale, nothing changes.
    let other: SessionData = json!("other").into();
    assert!(!store
        .update_session_data(&saved, &other, now)
        .await
        .expect("stale"));
    assert_eq!(
        store.fetch_session("a").await.expect("fetch"),
        Some(expected.clone())
    );
    // From the new version, to `null` data: succeeds again.
    assert!(store
        .update_session_data(&fetched, &SessionData::default(), now)
        .await
        .expect("update"));
    let fetched = live(&store, "a").await;
    assert_eq!(fetched.data_version, 2);
    assert_eq!(fetched.data.to_json_text().expect("json"), "null");
    // Expiry, lifetime and the user index are untouched.
    assert_eq!(fetched.expires_at, saved.expires_at);
    assert_eq!(fetched.lifetime, saved.lifetime);
    assert_eq!(
        ids(&store
            .fetch_sessions_for_user(&long_user, now)
            .await
            .expect("list")),
        ["a"]
    );
    assert_eq!(store.purge_expired_at(now + Duration::minutes(59)), 0);
    assert_eq!(store.purge_expired_at(now + Duration::hours(1)), 1);
    store.assert_consistent();
}

#[tokio::test]
async fn data_update_never_creates_nor_revives() {
    let store = MemoryStore::new();
    let now = wall_now();
    let data: SessionData = json!({ "x": 1 }).into();
    // Missing.
    let ghost = record("ghost", "alice", now + Duration::hours(1));
    assert!(!store
        .update_session_data(&ghost, &data, now)
        .await
        .expect("missing"));
    assert_eq!(store.len(), 0);
    // Expired exactly at `now`, and past it; live one millisecond before.
    let saved = record("a", "alice", now + Duration::minutes(1));
    store.save_session(&saved).await.expect("save");
    let at_expiry = saved.expires_at;
    assert!(!store
        .update_session_data(&saved, &data, at_expiry)
        .await
        .expect("expired at now"));
    assert!(!store
        .update_session_data(&saved, &data, at_expiry + Duration::hours(1))
        .await
        .expect("expired"));
    let raw = live(&store, "a").await;
    assert_eq!(raw, saved, "a refused update changes nothing");
    assert!(store
        .update_session_data(&saved, &data, at_expiry - Duration::milliseconds(1))
        .await
        .expect("live"));
    // Deleted.
    store.delete_session("a").await.expect("delete");
    let mut read = saved.clone();
    read.data_version = 1;
    assert!(!store
        .update_session_data(&read, &data, now)
        .await
        .expect("deleted"));
    assert!(store.is_empty());
    // The last version cannot be bumped: refused, not wrapped.
    let mut top = record("top", "alice", now + Duration::hours(1));
    top.data_version = u64::MAX;
    store.save_session(&top).await.expect("save");
    assert!(!store
        .update_session_data(&top, &data, now)
        .await
        .expect("top"));
    store.assert_consistent();
}

#[tokio::test]
async fn concurrent_data_updates_at_one_version_have_one_winner() {
    let store = Arc::new(MemoryStore::new());
    let now = wall_now();
    let saved = record("a", "alice", now + Duration::hours(1));
    store.save_session(&saved).await.expect("save");
    let tasks: Vec<_> = (0..16)
        .map(|n| {
            let (store, saved) = (Arc::clone(&store), saved.clone());
            tokio::spawn(async move {
                let data: SessionData = json!({ "winner": n }).into();
                store
                    .update_session_data(&saved, &data, now)
                    .await
                    .expect("update")
                    .then_some(n)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        winners.extend(task.await.expect("task"));
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let fetched = live(&store, "a").await;
    assert_eq!(fetched.data_version, 1);
    assert_eq!(
        fetched.data.to_value().expect("json").into_owned(),
        json!({ "winner": winners[0] })
    );
}

/// Data is kept as its compact JSON text and handed out as text (the engine decodes the
/// application's type straight from it); `null` is kept as nothing and handed out shared; text
/// a caller saved as it was is returned as it was.
#[tokio::test]
async fn data_is_kept_as_compact_json_text() {
    let store = MemoryStore::new();
    let later = wall_now() + Duration::hours(1);
    let value = json!({ "b": [1, -2.5, null, "ü\"\\"], "a": { "n": u64::MAX, "f": 0.1 } });
    let mut saved = record("value", "alice", later);
    saved.data = value.clone().into();
    store.save_session(&saved).await.expect("save");
    let fetched = live(&store, "value").await;
    assert!(
        matches!(
            fetched.data.to_json_text(),
            Ok(std::borrow::Cow::Borrowed(_))
        ),
        "handed out as text, not as a parsed tree"
    );
    assert_eq!(
        fetched.data.to_json_text().expect("text"),
        serde_json::to_string(&value).expect("json")
    );
    assert_eq!(fetched.data, value);

    let mut null = record("null", "alice", later);
    null.data = SessionData::default();
    store.save_session(&null).await.expect("save");
    let fetched = live(&store, "null").await;
    assert_eq!(fetched.data, serde_json::Value::Null);
    assert_eq!(fetched.data.decode::<()>().ok(), Some(()));

    let spaced = r#"{ "kept" : "as it was" }"#;
    let mut text = record("text", "alice", later);
    text.data = SessionData::from_json_text(spaced);
    store.save_session(&text).await.expect("save");
    let fetched = live(&store, "text").await;
    assert_eq!(fetched.data.to_json_text().expect("text"), spaced);
    store.assert_consistent();
}
