//! The engine's data updates over the store, and a session with a lifetime of its own.

use std::collections::BTreeSet;
use std::sync::Arc;

use narvik_core::{Error, ManualClock, Narvik, OptionalOperation, SessionStore};
use serde_json::{json, Value};
use time::Duration;

use super::json_of;
use crate::harness::{assert_absent, assert_stored, engine_with, must, race, random_user_id};
use crate::Capabilities;

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
