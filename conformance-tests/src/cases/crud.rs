//! Save, fetch, update and delete of single records: insert-only, exact round trip, no
//! resurrection, idempotent delete.

use std::sync::Arc;

use narvik_core::{Error, SessionStore};
use serde_json::json;
use time::Duration;

use crate::harness::{
    assert_absent, assert_stored, assert_user_lists, live_record, must, random_session_id,
    random_user_id,
};
use crate::Capabilities;

/// Every field comes back as saved: id, user id, both timestamps to the millisecond, data as
/// equal JSON.
pub async fn save_then_fetch_round_trips_every_field(
    store: Arc<dyn SessionStore>,
    _capabilities: Capabilities,
) {
    let mut record = live_record(
        &random_user_id("round-trip"),
        json!({ "theme": "dark", "visits": 3, "ratio": 0.25, "tags": ["a", "b"] }),
    );
    // A millisecond part that is neither zero nor a multiple of ten catches stores that keep
    // seconds or centiseconds only.
    record.expires_at += Duration::milliseconds(123);
    record.created_at += Duration::milliseconds(987);
    must(store.save_session(&record).await, "save_session");
    assert_stored(store.as_ref(), &record, "fetch after save").await;
}

/// Fetching an id that was never saved is `Ok(None)`.
pub async fn fetch_unknown_id_is_none(store: Arc<dyn SessionStore>, _capabilities: Capabilities) {
    assert_absent(
        store.as_ref(),
        &random_session_id(),
        "fetch of an unknown id",
    )
    .await;
}

/// A second save under an existing id fails with [`Error::DuplicateId`] and leaves the
/// original untouched (never an upsert).
pub async fn save_duplicate_id_is_typed_error_and_keeps_original(
    store: Arc<dyn SessionStore>,
    _capabilities: Capabilities,
) {
    let original = live_record(&random_user_id("original"), json!({ "who": "original" }));
    must(store.save_session(&original).await, "save_session");
    let mut intruder = live_record(&random_user_id("intruder"), json!({ "who": "intruder" }));
    intruder.id.clone_from(&original.id);
    intruder.expires_at += Duration::days(5);
    match store.save_session(&intruder).await {
        Err(Error::DuplicateId) => {}
        other => panic!("saving an existing id must fail with Error::DuplicateId, got {other:?}"),
    }
    assert_stored(
        store.as_ref(),
        &original,
        "the original after a duplicate save",
    )
    .await;
}

/// `update_session_expiry` changes the expiry and nothing else.
pub async fn update_expiry_changes_only_expiry(
    store: Arc<dyn SessionStore>,
    _capabilities: Capabilities,
) {
    let record = live_record(
        &random_user_id("update"),
        json!({ "keep": ["me", { "as": "is" }] }),
    );
    must(store.save_session(&record).await, "save_session");
    let mut expected = record.clone();
    expected.expires_at = record.expires_at + Duration::days(7) + Duration::milliseconds(321);
    must(
        store
            .update_session_expiry(&record.id, expected.expires_at)
            .await,
        "update_session_expiry",
    );
    assert_stored(store.as_ref(), &expected, "the record after an update").await;
}

/// An updated record stays fetchable, whether its expiry moves later or earlier (but still in
/// the future): a store with a native TTL must move the TTL with it.
pub async fn update_expiry_keeps_record_fetchable(
    store: Arc<dyn SessionStore>,
    _capabilities: Capabilities,
) {
    let mut record = live_record(&random_user_id("refresh"), json!(null));
    must(store.save_session(&record).await, "save_session");
    for shift in [Duration::days(20), Duration::days(-21) + Duration::hours(1)] {
        record.expires_at += shift;
        must(
            store
                .update_session_expiry(&record.id, record.expires_at)
                .await,
            "update_session_expiry",
        );
        assert_stored(store.as_ref(), &record, "the record after an update").await;
    }
}

/// Updating an id that was never saved succeeds and creates nothing.
pub async fn update_expiry_on_unknown_id_creates_nothing(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    let id = random_session_id();
    let user_id = random_user_id("ghost");
    let expires_at = crate::harness::now_ms() + Duration::days(2);
    must(
        store.update_session_expiry(&id, expires_at).await,
        "update_session_expiry of an unknown id",
    );
    assert_absent(store.as_ref(), &id, "fetch after updating an unknown id").await;
    assert_user_lists(
        store.as_ref(),
        capabilities,
        &user_id,
        &[],
        "the user listing after an update of an unknown id",
    )
    .await;
}

/// An extension that arrives after a logout does not bring the session back.
pub async fn update_expiry_after_delete_creates_nothing(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    let record = live_record(&random_user_id("logout"), json!({ "a": 1 }));
    must(store.save_session(&record).await, "save_session");
    must(store.delete_session(&record.id).await, "delete_session");
    must(
        store
            .update_session_expiry(&record.id, record.expires_at + Duration::days(1))
            .await,
        "update_session_expiry after delete",
    );
    assert_absent(store.as_ref(), &record.id, "fetch after delete then update").await;
    assert_user_lists(
        store.as_ref(),
        capabilities,
        &record.user_id,
        &[],
        "the user listing after delete then update",
    )
    .await;
}

/// A deleted record is gone, from fetch and from its user's listing.
pub async fn delete_removes_record(store: Arc<dyn SessionStore>, capabilities: Capabilities) {
    let record = live_record(&random_user_id("delete"), json!({}));
    must(store.save_session(&record).await, "save_session");
    must(store.delete_session(&record.id).await, "delete_session");
    assert_absent(store.as_ref(), &record.id, "fetch after delete").await;
    let context = "the user listing after delete";
    assert_user_lists(store.as_ref(), capabilities, &record.user_id, &[], context).await;
}

/// Deleting an unknown id, or the same id twice, succeeds.
pub async fn delete_is_idempotent(store: Arc<dyn SessionStore>, _capabilities: Capabilities) {
    must(
        store.delete_session(&random_session_id()).await,
        "delete_session of an unknown id",
    );
    let record = live_record(&random_user_id("twice"), json!({}));
    must(store.save_session(&record).await, "save_session");
    must(
        store.delete_session(&record.id).await,
        "first delete_session",
    );
    must(
        store.delete_session(&record.id).await,
        "second delete_session",
    );
    assert_absent(store.as_ref(), &record.id, "fetch after two deletes").await;
}

/// Deleting one record leaves the others, including the same user's, untouched.
pub async fn delete_leaves_other_records(store: Arc<dyn SessionStore>, capabilities: Capabilities) {
    let user_id = random_user_id("neighbours");
    let doomed = live_record(&user_id, json!({ "n": 0 }));
    let same_user = live_record(&user_id, json!({ "n": 1 }));
    let other_user = live_record(&random_user_id("other"), json!({ "n": 2 }));
    for record in [&doomed, &same_user, &other_user] {
        must(store.save_session(record).await, "save_session");
    }
    must(store.delete_session(&doomed.id).await, "delete_session");
    assert_absent(store.as_ref(), &doomed.id, "the deleted record").await;
    assert_stored(store.as_ref(), &same_user, "the same user's other record").await;
    assert_stored(store.as_ref(), &other_user, "another user's record").await;
    let context = "the user listing after deleting one of two sessions";
    let expected = std::slice::from_ref(&same_user);
    assert_user_lists(store.as_ref(), capabilities, &user_id, expected, context).await;
}

/// A record's own lifetime (an odd millisecond count: 3 days and 1,234 ms) and its data
/// version come back exactly as saved, from fetch and from the user listing.
///
/// Catches a store that drops the lifetime or the version, keeps the lifetime in whole
/// seconds, or resets the version to 0 at save.
pub async fn save_then_fetch_round_trips_lifetime_and_data_version(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    let user_id = random_user_id("own-lifetime");
    let mut record = live_record(&user_id, json!({ "remember_me": true }));
    record.lifetime = Some(Duration::days(3) + Duration::milliseconds(1_234));
    record.data_version = 7;
    must(store.save_session(&record).await, "save_session");
    assert_stored(
        store.as_ref(),
        &record,
        "a record with its own lifetime and data version 7",
    )
    .await;
    assert_user_lists(
        store.as_ref(),
        capabilities,
        &user_id,
        std::slice::from_ref(&record),
        "the listing of a record with its own lifetime and data version 7",
    )
    .await;
}
