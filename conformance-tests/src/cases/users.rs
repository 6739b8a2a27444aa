//! The optional per-user calls: listing returns that user's live sessions only; deletion
//! removes that user's sessions and no one else's.
//!
//! On a store that declares a call absent, each case asserts the typed unsupported error.

use std::sync::Arc;

use narvik_core::{OptionalOperation, SessionRecord, SessionStore};
use serde_json::json;
use time::Duration;

use crate::harness::{
    assert_absent, assert_same_set, assert_stored, assert_user_lists, declared_absent,
    expired_record, live_record, must, now_ms, random_user_id, record_expiring_in, save_all,
    save_concurrently, wait_until_expired,
};
use crate::Capabilities;

const FETCH: OptionalOperation = OptionalOperation::FetchSessionsForUser;
const DELETE: OptionalOperation = OptionalOperation::DeleteSessionsForUser;

/// Lists `user_id`'s sessions, failing the case on an error.
async fn list(store: &dyn SessionStore, user_id: &str) -> Vec<SessionRecord> {
    must(
        store.fetch_sessions_for_user(user_id, now_ms()).await,
        "fetch_sessions_for_user",
    )
}

/// A user's listing holds exactly their sessions: not those of other users, nor of near-twin
/// user ids that share a prefix.
pub async fn fetch_for_user_returns_exactly_that_users_live_sessions(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    if declared_absent(store.as_ref(), capabilities, FETCH).await {
        return;
    }
    let alice = random_user_id("alice");
    let twins = [format!("{alice}x"), alice[..alice.len() - 1].to_owned()];
    let bob = random_user_id("bob");
    let alices: Vec<SessionRecord> = (0..3)
        .map(|n| live_record(&alice, json!({ "n": n })))
        .collect();
    let bobs: Vec<SessionRecord> = (0..2)
        .map(|n| live_record(&bob, json!({ "n": n })))
        .collect();
    let twin_records: Vec<SessionRecord> = twins
        .iter()
        .map(|twin| live_record(twin, json!(null)))
        .collect();
    save_all(store.as_ref(), &alices).await;
    save_all(store.as_ref(), &bobs).await;
    save_all(store.as_ref(), &twin_records).await;
    assert_same_set(
        list(store.as_ref(), &alice).await,
        &alices,
        "alice's listing",
    );
    assert_same_set(list(store.as_ref(), &bob).await, &bobs, "bob's listing");
    for (twin, record) in twins.iter().zip(&twin_records) {
        assert_same_set(
            list(store.as_ref(), twin).await,
            std::slice::from_ref(record),
            "a near-twin user id's listing",
        );
    }
}

/// Listed records equal the saved ones field by field (times to the millisecond, data as
/// JSON), including after an expiry update.
pub async fn fetch_for_user_records_equal_saved_ones(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    if declared_absent(store.as_ref(), capabilities, FETCH).await {
        return;
    }
    let user_id = random_user_id("full-records");
    let mut records = vec![
        record_expiring_in(
            &user_id,
            Duration::days(2) + Duration::milliseconds(7),
            json!({ "nested": { "list": [1, 2.5, "three", null] }, "unicode": "ünï😀" }),
        ),
        record_expiring_in(&user_id, Duration::hours(5), json!(null)),
        record_expiring_in(&user_id, Duration::minutes(30), json!([])),
    ];
    save_all(store.as_ref(), &records).await;
    records[1].expires_at += Duration::days(9) + Duration::milliseconds(999);
    must(
        store
            .update_session_expiry(&records[1].id, records[1].expires_at)
            .await,
        "update_session_expiry",
    );
    assert_same_set(
        list(store.as_ref(), &user_id).await,
        &records,
        "the user's listing",
    );
}

/// Expired sessions are not listed, even when the store still holds them.
pub async fn fetch_for_user_excludes_expired(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    if declared_absent(store.as_ref(), capabilities, FETCH).await {
        return;
    }
    let user_id = random_user_id("expiring");
    let live: Vec<SessionRecord> = (0..2)
        .map(|n| live_record(&user_id, json!({ "live": n })))
        .collect();
    let expired: Vec<SessionRecord> = (0..3)
        .map(|n| expired_record(capabilities, &user_id, n, json!({ "expired": n })))
        .collect();
    save_all(store.as_ref(), &expired).await;
    save_all(store.as_ref(), &live).await;
    wait_until_expired(&expired).await;
    assert_same_set(
        list(store.as_ref(), &user_id).await,
        &live,
        "a listing with expired sessions",
    );
}

/// A user without sessions has an empty listing (not an error).
pub async fn fetch_for_user_unknown_user_is_empty(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    if declared_absent(store.as_ref(), capabilities, FETCH).await {
        return;
    }
    let someone = live_record(&random_user_id("someone"), json!(null));
    must(store.save_session(&someone).await, "save_session");
    let listed = list(store.as_ref(), &random_user_id("nobody")).await;
    assert!(
        listed.is_empty(),
        "an unknown user's listing must be empty, got {listed:?}"
    );
}

/// One user with 1,000 sessions gets all of them, each once.
pub async fn fetch_for_user_1000_sessions(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    if declared_absent(store.as_ref(), capabilities, FETCH).await {
        return;
    }
    let user_id = random_user_id("busy");
    let records: Vec<SessionRecord> = (0..1_000)
        .map(|n| live_record(&user_id, json!({ "n": n })))
        .collect();
    save_concurrently(&store, records.clone(), 8).await;
    assert_same_set(
        list(store.as_ref(), &user_id).await,
        &records,
        "a listing of 1,000 sessions",
    );
}

/// Deleting a user's sessions removes every one of them.
pub async fn delete_for_user_removes_all_of_them(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    if declared_absent(store.as_ref(), capabilities, DELETE).await {
        return;
    }
    let user_id = random_user_id("leaving");
    let records: Vec<SessionRecord> = (0..5)
        .map(|n| live_record(&user_id, json!({ "n": n })))
        .collect();
    save_all(store.as_ref(), &records).await;
    must(
        store.delete_sessions_for_user(&user_id).await,
        "delete_sessions_for_user",
    );
    for record in &records {
        assert_absent(store.as_ref(), &record.id, "a deleted user's session").await;
    }
    let context = "the listing of a user whose sessions were deleted";
    assert_user_lists(store.as_ref(), capabilities, &user_id, &[], context).await;
}

/// Deleting one user's sessions leaves other users' sessions, including near-twin user ids.
pub async fn delete_for_user_leaves_other_users(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    if declared_absent(store.as_ref(), capabilities, DELETE).await {
        return;
    }
    let doomed = random_user_id("doomed");
    let others = [
        random_user_id("bystander"),
        format!("{doomed}x"),
        doomed[..doomed.len() - 1].to_owned(),
        format!("x{doomed}"),
    ];
    let doomed_records: Vec<SessionRecord> =
        (0..3).map(|n| live_record(&doomed, json!(n))).collect();
    let other_records: Vec<SessionRecord> = others
        .iter()
        .map(|user| live_record(user, json!(user)))
        .collect();
    save_all(store.as_ref(), &doomed_records).await;
    save_all(store.as_ref(), &other_records).await;
    must(
        store.delete_sessions_for_user(&doomed).await,
        "delete_sessions_for_user",
    );
    for record in &doomed_records {
        assert_absent(store.as_ref(), &record.id, "a deleted user's session").await;
    }
    for record in &other_records {
        assert_stored(store.as_ref(), record, "another user's session").await;
    }
    for (user, record) in others.iter().zip(&other_records) {
        let expected = std::slice::from_ref(record);
        assert_user_lists(
            store.as_ref(),
            capabilities,
            user,
            expected,
            "another user's listing",
        )
        .await;
    }
}

/// Deleting the sessions of a user who has none succeeds and touches nothing else.
pub async fn delete_for_user_unknown_user_is_ok(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    if declared_absent(store.as_ref(), capabilities, DELETE).await {
        return;
    }
    let someone = live_record(&random_user_id("someone"), json!({ "stay": true }));
    must(store.save_session(&someone).await, "save_session");
    must(
        store
            .delete_sessions_for_user(&random_user_id("nobody"))
            .await,
        "delete_sessions_for_user of an unknown user",
    );
    assert_stored(store.as_ref(), &someone, "an unrelated session").await;
}
