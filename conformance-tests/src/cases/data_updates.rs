//! The optional `update_session_data`: a compare-and-set of a record's additional data on its
//! `data_version`, live at the engine's `now`, that never creates, revives or touches
//! anything else, and never loses a racing update, delete or extension.

use std::collections::BTreeSet;
use std::sync::Arc;

use narvik_core::{
    Error, ManualClock, Narvik, OptionalOperation, SessionData, SessionRecord, SessionStore,
};
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};

use crate::harness::{
    assert_absent, assert_stored, assert_user_lists, declared_absent, engine_with, expired_record,
    live_record, must, now_ms, race, race_delete_against, random_user_id, wait_until_expired,
};
use crate::Capabilities;

/// Whether the case has nothing more to check: the store declares the call absent (and
/// answered the typed `Unsupported`, asserted).
async fn absent(store: &Arc<dyn SessionStore>, capabilities: Capabilities) -> bool {
    declared_absent(
        store.as_ref(),
        capabilities,
        OptionalOperation::UpdateSessionData,
    )
    .await
}

/// `record` as it is after a successful update to `data`.
fn updated(record: &SessionRecord, data: &Value) -> SessionRecord {
    SessionRecord {
        data: data.clone().into(),
        data_version: record.data_version + 1,
        ..record.clone()
    }
}

/// Asks the store to update `record`'s data to `data` at `now`, and asserts that it answers
/// `expected`; `what` names the update in the failure's message.
async fn assert_update_answers(
    store: &dyn SessionStore,
    (record, data, now): (&SessionRecord, Value, OffsetDateTime),
    expected: bool,
    what: &str,
) {
    let answer = must(
        store
            .update_session_data(record, &SessionData::from(data), now)
            .await,
        &format!("update_session_data: {what}"),
    );
    assert_eq!(answer, expected, "{what} must answer Ok({expected})");
}

/// The record's data as JSON.
fn json_of(record: &SessionRecord) -> Value {
    must(record.data.to_value(), "SessionData::to_value").into_owned()
}

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

/// 20 tasks each append their own tag to one session's list, each by fetch, change and
/// compare-and-set until it wins (bounded tries). Every task wins (each loss means another
/// won, so none can lose 200 times), and the final list holds every tag exactly once, at
/// version 20.
///
/// Catches a compare and a write that are not one atomic step (two updates read at one
/// version both succeed, one append is lost) and a version that does not move.
pub async fn concurrent_data_updates_never_lose_one(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    const TASKS: usize = 20;
    const TRIES: usize = 200;
    if absent(&store, capabilities).await {
        return;
    }
    let record = live_record(&random_user_id("data-crowd"), json!({ "tags": [] }));
    must(store.save_session(&record).await, "save_session");
    let shared = Arc::clone(&store);
    let id = record.id.clone();
    let outcomes = race(TASKS, move |task| {
        let store = Arc::clone(&shared);
        let id = id.clone();
        async move {
            let tag = format!("task-{task}");
            for _ in 0..TRIES {
                let current = must(store.fetch_session(&id).await, "fetch_session")
                    .expect("the session is live and nobody deletes it");
                let mut data = json_of(&current);
                data["tags"]
                    .as_array_mut()
                    .expect("the tags are a list")
                    .push(Value::String(tag.clone()));
                let won = must(
                    store
                        .update_session_data(&current, &SessionData::from(data), now_ms())
                        .await,
                    "update_session_data",
                );
                if won {
                    return Some(tag);
                }
            }
            None
        }
    })
    .await;
    let winners: Vec<String> = outcomes.iter().flatten().cloned().collect();
    let gave_up = TASKS - winners.len();
    assert_eq!(
        gave_up, 0,
        "{gave_up} of {TASKS} tasks lost {TRIES} compare-and-sets in a row, though each loss \
         means another task won"
    );
    let stored = must(store.fetch_session(&record.id).await, "fetch_session")
        .expect("the session is still there");
    let tags: Vec<String> = json_of(&stored)["tags"]
        .as_array()
        .expect("the tags are a list")
        .iter()
        .map(|tag| tag.as_str().unwrap_or_default().to_owned())
        .collect();
    let unique: BTreeSet<&String> = tags.iter().collect();
    assert_eq!(unique.len(), tags.len(), "a tag appears twice: {tags:?}");
    let expected: BTreeSet<&String> = winners.iter().collect();
    assert_eq!(
        unique, expected,
        "the final list must hold exactly the tags of the tasks that won (a lost update)"
    );
    assert_eq!(
        stored.data_version,
        u64::try_from(winners.len()).expect("fits"),
        "the data version must count the successful updates"
    );
}

/// A data update racing a delete, 200 times with both orders: the record is gone afterwards,
/// every time.
///
/// Catches an update that reads, then writes the record back whole (a resurrection).
pub async fn data_update_racing_delete_never_resurrects(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    if absent(&store, capabilities).await {
        return;
    }
    race_delete_against(
        &store,
        capabilities,
        &random_user_id("data-racing-delete"),
        200,
        "update_session_data",
        |store, record, round| async move {
            let data = SessionData::from(json!({ "round": round, "updated": true }));
            store.update_session_data(&record, &data, now_ms()).await
        },
    )
    .await;
}

/// An extension (`update_record_expiry`) and a data update of one record, run together 50
/// times in both orders: afterwards the record has the new expiry and the new data.
///
/// Catches an update that reads the record and writes it back whole, losing the extension
/// (or an extension that loses the data).
pub async fn data_update_racing_extension_keeps_both(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    const ROUNDS: usize = 50;
    if absent(&store, capabilities).await {
        return;
    }
    let user_id = random_user_id("data-racing-extension");
    for round in 0..ROUNDS {
        let record = live_record(&user_id, json!({ "round": round }));
        must(store.save_session(&record).await, "save_session");
        let extended_to = record.expires_at + Duration::days(1);
        let new = json!({ "round": round, "updated": true });
        let shared = Arc::clone(&store);
        let handle = record.clone();
        let data = new.clone();
        let outcomes = race(2, move |task| {
            let store = Arc::clone(&shared);
            let handle = handle.clone();
            let data = SessionData::from(data.clone());
            async move {
                if (task + round) % 2 == 0 {
                    store
                        .update_record_expiry(&handle, extended_to)
                        .await
                        .map(|()| true)
                } else {
                    store.update_session_data(&handle, &data, now_ms()).await
                }
            }
        })
        .await;
        for outcome in outcomes {
            assert!(
                must(outcome, "update_record_expiry or update_session_data"),
                "round {round}: a data update of a live record at its version must answer Ok(true)"
            );
        }
        let mut expected = updated(&record, &new);
        expected.expires_at = extended_to;
        assert_stored(
            store.as_ref(),
            &expected,
            &format!("round {round}: an extension raced a data update"),
        )
        .await;
    }
}

/// An engine over `store` with the default 30-day lifetime and a [`ManualClock`].
fn engine_over(store: &Arc<dyn SessionStore>) -> (Narvik<Value>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::starting_now());
    let narvik = engine_with(Arc::clone(store), &clock, |builder| builder);
    (narvik, clock)
}

/// The engine's `update_session_data` changes the data through the store, bumps the version
/// and the store holds exactly that; a store declaring the call absent makes the engine
/// answer `Unsupported` naming it. 20 concurrent engine updates of one session: every `Ok`
/// is in the final data, once, and the version counts them (a `Conflict` after the engine's
/// retries is allowed, and its change is not there).
///
/// Catches a store whose compare-and-set lets two engine updates read at one version both
/// succeed (a lost update the engine cannot see).
pub async fn engine_data_updates_are_never_lost(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    const TASKS: usize = 20;
    let (narvik, _clock) = engine_over(&store);
    let created = must(
        narvik
            .create_session(&random_user_id("engine-data"), json!({ "tags": [] }))
            .await,
        "create_session",
    );
    let first = narvik
        .update_session_data(&created.session, |data: &mut Value| {
            data["first"] = json!(true);
        })
        .await;
    if !capabilities.update_session_data {
        crate::assert_unsupported(first, OptionalOperation::UpdateSessionData);
        return;
    }
    let Some(updated) = must(first, "Narvik::update_session_data") else {
        panic!("an update of a live session answered Ok(None)");
    };
    assert_eq!(updated.data, json!({ "tags": [], "first": true }));
    assert_eq!(updated.data_version, 1, "one update makes version 1");
    let mut expected = created.session.to_record().expect("JSON data");
    expected.data = updated.data.clone().into();
    expected.data_version = 1;
    assert_stored(
        store.as_ref(),
        &expected,
        "a record after an engine data update",
    )
    .await;

    let narvik = Arc::new(narvik);
    let session = Arc::new(updated);
    let outcomes = race(TASKS, move |task| {
        let narvik = Arc::clone(&narvik);
        let session = Arc::clone(&session);
        async move {
            let tag = format!("task-{task}");
            let answer = narvik
                .update_session_data(&session, |data: &mut Value| {
                    if let Some(tags) = data["tags"].as_array_mut() {
                        tags.push(Value::String(tag.clone()));
                    }
                })
                .await;
            match answer {
                Ok(Some(_)) => Some(tag),
                Err(Error::Conflict { .. }) => None,
                Ok(None) => panic!("a live session's update answered Ok(None)"),
                Err(other) => panic!("Narvik::update_session_data failed: {other:?}"),
            }
        }
    })
    .await;
    let winners: BTreeSet<String> = outcomes.into_iter().flatten().collect();
    let stored = must(
        store.fetch_session(&created.session.id).await,
        "fetch_session",
    )
    .expect("the session is still there");
    let tags: Vec<String> = json_of(&stored)["tags"]
        .as_array()
        .expect("the tags are a list")
        .iter()
        .map(|tag| tag.as_str().unwrap_or_default().to_owned())
        .collect();
    let unique: BTreeSet<String> = tags.iter().cloned().collect();
    assert_eq!(unique.len(), tags.len(), "a tag appears twice: {tags:?}");
    assert_eq!(
        unique, winners,
        "the final data must hold exactly the changes whose update answered Ok"
    );
    assert_eq!(
        stored.data_version,
        1 + u64::try_from(winners.len()).expect("fits"),
        "the version must count the successful updates"
    );
}

/// The engine's update of an invalidated session answers `Ok(None)` and does not bring it
/// back.
///
/// Catches a store whose data update recreates a deleted record.
pub async fn engine_data_update_after_invalidate_is_none(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    let (narvik, _clock) = engine_over(&store);
    let created = must(
        narvik
            .create_session(&random_user_id("engine-gone"), json!({ "n": 0 }))
            .await,
        "create_session",
    );
    must(
        narvik.invalidate_session(&created.session.id).await,
        "invalidate_session",
    );
    let answer = narvik
        .update_session_data(&created.session, |data: &mut Value| {
            data["n"] = json!(1);
        })
        .await;
    if !capabilities.update_session_data {
        crate::assert_unsupported(answer, OptionalOperation::UpdateSessionData);
        return;
    }
    let answer = must(answer, "Narvik::update_session_data");
    assert!(
        answer.is_none(),
        "an update of an invalidated session must answer Ok(None), got {answer:?}"
    );
    assert_absent(
        store.as_ref(),
        &created.session.id,
        "an invalidated session after an engine data update",
    )
    .await;
    assert!(
        must(
            narvik.validate_session(created.token.as_str()).await,
            "validate_session"
        )
        .is_none(),
        "an invalidated session validated after a data update"
    );
}

/// A session created with its own 1-day lifetime in an engine whose default is 30 days: the
/// store keeps the lifetime, validation after 13 h extends it to exactly now + 1 day (in the
/// store too), and more than a day without use ends it.
///
/// Catches a store that drops or rounds the lifetime (the session then slides by 30 days).
pub async fn own_lifetime_session_slides_by_its_own_lifetime(
    store: Arc<dyn SessionStore>,
    _capabilities: Capabilities,
) {
    let own = Duration::days(1);
    let (narvik, clock) = engine_over(&store);
    let start = narvik_core::Clock::now(clock.as_ref());
    let created = must(
        narvik
            .create_session_with_lifetime(&random_user_id("remember-me"), json!({ "r": 1 }), own)
            .await,
        "create_session_with_lifetime",
    );
    assert_eq!(created.session.lifetime, Some(own));
    assert_eq!(created.session.expires_at, start + own);
    let record = created.session.to_record().expect("JSON data");
    assert_eq!(record.lifetime, Some(own));
    assert_stored(store.as_ref(), &record, "a session with its own lifetime").await;

    clock.advance(Duration::hours(13));
    let now = narvik_core::Clock::now(clock.as_ref());
    let Some(session) = must(
        narvik.validate_session(created.token.as_str()).await,
        "validate_session",
    ) else {
        panic!("a 1-day session did not validate after 13 h");
    };
    assert!(
        session.extended,
        "past half its own lifetime it is extended"
    );
    assert_eq!(
        session.expires_at,
        now + own,
        "it slides by its own lifetime, not the engine's"
    );
    let mut extended = record.clone();
    extended.expires_at = now + own;
    assert_stored(
        store.as_ref(),
        &extended,
        "the record after its own-lifetime extension",
    )
    .await;

    clock.advance(own + Duration::minutes(1));
    assert!(
        must(
            narvik.validate_session(created.token.as_str()).await,
            "validate_session"
        )
        .is_none(),
        "a 1-day session unused for more than a day must not validate"
    );
}
