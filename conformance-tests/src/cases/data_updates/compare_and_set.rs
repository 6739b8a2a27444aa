//! The store's `update_session_data` alone: it replaces the data and bumps the version only
//! at the version read, on a live record, and touches nothing else.

use std::sync::Arc;

use narvik_core::{SessionRecord, SessionStore};
use serde_json::json;
use time::Duration;

use super::{absent, assert_update_answers, json_of, updated};
use crate::harness::{
    assert_absent, assert_stored, assert_user_lists, expired_record, live_record, must, now_ms,
    random_user_id, wait_until_expired,
};
use crate::Capabilities;

/// An update at the stored version replaces the data and bumps the version by one, twice in
/// a row, and changes nothing else: not the expiry (even when the handed record carries an
/// older one), not the lifetime, user or creation time.
///
/// Catches a store that does not bump the version, writes the handed record back whole (its
/// stale expiry with it), or drops the lifetime on update.
pub async fn update_data_replaces_data_and_bumps_version(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    if absent(&store, capabilities).await {
        return;
    }
    let user_id = random_user_id("data-update");
    let mut record = live_record(&user_id, json!({ "step": 0 }));
    record.lifetime = Some(Duration::hours(5) + Duration::milliseconds(17));
    must(store.save_session(&record).await, "save_session");
    // The expiry moves after the handle was read: the update must keep the stored one.
    let extended = record.expires_at + Duration::hours(1);
    must(
        store.update_record_expiry(&record, extended).await,
        "update_record_expiry",
    );
    let first = json!({ "step": 1, "cart": [1, 2] });
    assert_update_answers(
        store.as_ref(),
        (&record, first.clone(), now_ms()),
        true,
        "an update at the stored version of a live record",
    )
    .await;
    let mut expected = updated(&record, &first);
    expected.expires_at = extended;
    assert_stored(store.as_ref(), &expected, "a record after one data update").await;

    let second = json!({ "step": 2 });
    assert_update_answers(
        store.as_ref(),
        (&expected, second.clone(), now_ms()),
        true,
        "a second update at the new version",
    )
    .await;
    let expected = updated(&expected, &second);
    assert_eq!(expected.data_version, 2);
    assert_stored(store.as_ref(), &expected, "a record after two data updates").await;
    assert_user_lists(
        store.as_ref(),
        capabilities,
        &user_id,
        std::slice::from_ref(&expected),
        "the user listing after two data updates",
    )
    .await;
}

/// An update from a version the store has moved past (or never reached) answers `Ok(false)`
/// and changes nothing.
///
/// Catches a store that ignores the version (last write wins, losing the other update).
pub async fn update_data_on_stale_version_changes_nothing(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    if absent(&store, capabilities).await {
        return;
    }
    let record = live_record(&random_user_id("stale"), json!({ "v": 0 }));
    must(store.save_session(&record).await, "save_session");
    let winner = json!({ "v": "winner" });
    assert_update_answers(
        store.as_ref(),
        (&record, winner.clone(), now_ms()),
        true,
        "the first update at version 0",
    )
    .await;
    let expected = updated(&record, &winner);
    for (handle_version, label) in [(0, "stale"), (5, "ahead")] {
        let handle = SessionRecord {
            data_version: handle_version,
            ..record.clone()
        };
        assert_update_answers(
            store.as_ref(),
            (&handle, json!({ "v": label }), now_ms()),
            false,
            &format!("an update from version {handle_version} of a record at version 1"),
        )
        .await;
        assert_stored(
            store.as_ref(),
            &expected,
            &format!("a record after an update from the {label} version {handle_version}"),
        )
        .await;
    }
}

/// An update of a record never saved, or saved and deleted, answers `Ok(false)` and leaves
/// nothing behind: no record, no listing entry.
///
/// Catches an upsert (`SET` / `INSERT ... ON CONFLICT DO UPDATE` / `update_one` with `upsert`).
pub async fn update_data_on_missing_or_deleted_record_creates_nothing(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    if absent(&store, capabilities).await {
        return;
    }
    let user_id = random_user_id("data-ghost");
    let never_saved = live_record(&user_id, json!({ "saved": false }));
    let deleted = live_record(&user_id, json!({ "saved": true }));
    must(store.save_session(&deleted).await, "save_session");
    must(store.delete_session(&deleted.id).await, "delete_session");
    for (record, label) in [(&never_saved, "never saved"), (&deleted, "deleted")] {
        assert_update_answers(
            store.as_ref(),
            (record, json!({ "ghost": 1 }), now_ms()),
            false,
            &format!("an update of a {label} record"),
        )
        .await;
        assert_absent(
            store.as_ref(),
            &record.id,
            &format!("a {label} record after a data update"),
        )
        .await;
    }
    assert_user_lists(
        store.as_ref(),
        capabilities,
        &user_id,
        &[],
        "the user listing after data updates of missing records",
    )
    .await;
}

/// The store judges liveness by the `now` it is handed: a record live by the wall clock but
/// expired at `now` (`expires_at <= now`, the boundary included) is not updated; one a
/// millisecond before its expiry at `now` is. A record expired by the wall clock (not yet
/// purged) is not updated either.
///
/// Catches a store that filters on its own clock, uses `>=` for `>`, or revives expired
/// records through a data update.
pub async fn update_data_on_record_expired_at_now_does_nothing(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    if absent(&store, capabilities).await {
        return;
    }
    let user_id = random_user_id("data-expired");
    let record = live_record(&user_id, json!({ "kept": true }));
    must(store.save_session(&record).await, "save_session");
    for (now, label) in [
        (record.expires_at + Duration::minutes(1), "a minute after"),
        (record.expires_at, "exactly at"),
    ] {
        assert_update_answers(
            store.as_ref(),
            (&record, json!({ "kept": false }), now),
            false,
            &format!("an update with `now` {label} the record's expiry"),
        )
        .await;
        assert_stored(
            store.as_ref(),
            &record,
            &format!("a record after an update with `now` {label} its expiry"),
        )
        .await;
    }
    let just_before = json!({ "kept": "just before" });
    assert_update_answers(
        store.as_ref(),
        (
            &record,
            just_before.clone(),
            record.expires_at - Duration::milliseconds(1),
        ),
        true,
        "an update with `now` a millisecond before the expiry",
    )
    .await;
    assert_stored(
        store.as_ref(),
        &updated(&record, &just_before),
        "a record updated a millisecond before its expiry",
    )
    .await;

    let expired = expired_record(capabilities, &user_id, 0, json!({ "dead": true }));
    must(
        store.save_session(&expired).await,
        "save_session of an expired record",
    );
    wait_until_expired(std::slice::from_ref(&expired)).await;
    assert_update_answers(
        store.as_ref(),
        (&expired, json!({ "dead": false }), now_ms()),
        false,
        "an update of an expired record",
    )
    .await;
    let fetched = must(store.fetch_session(&expired.id).await, "fetch_session");
    if let Some(fetched) = fetched {
        assert_eq!(
            (json_of(&fetched), fetched.data_version, fetched.expires_at),
            (json!({ "dead": true }), 0, expired.expires_at),
            "an expired record must not be changed by a data update"
        );
    }
}

/// An update touches its own record only: the same user's other session and another user's
/// session stay exactly as saved.
///
/// Catches an update keyed by user id, or one that rewrites every record of the user.
pub async fn update_data_leaves_other_records(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    if absent(&store, capabilities).await {
        return;
    }
    let user_id = random_user_id("data-neighbours");
    let target = live_record(&user_id, json!({ "who": "target" }));
    let sibling = live_record(&user_id, json!({ "who": "sibling" }));
    let stranger = live_record(
        &random_user_id("data-stranger"),
        json!({ "who": "stranger" }),
    );
    for record in [&target, &sibling, &stranger] {
        must(store.save_session(record).await, "save_session");
    }
    let new = json!({ "who": "updated" });
    assert_update_answers(
        store.as_ref(),
        (&target, new.clone(), now_ms()),
        true,
        "an update of a live record at its version",
    )
    .await;
    let target = updated(&target, &new);
    assert_stored(store.as_ref(), &target, "the updated record").await;
    assert_stored(store.as_ref(), &sibling, "the same user's other session").await;
    assert_stored(store.as_ref(), &stranger, "another user's session").await;
    assert_user_lists(
        store.as_ref(),
        capabilities,
        &user_id,
        &[target, sibling],
        "the user listing after a data update",
    )
    .await;
}
