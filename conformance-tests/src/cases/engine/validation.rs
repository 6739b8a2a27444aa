//! Validation: no write in the first half of the lifetime, extension in the second, death at
//! expiry, unknown tokens, and logout.

use std::sync::Arc;

use narvik_core::{SessionRecord, SessionStore, SessionToken};
use serde_json::{json, Value};
use time::Duration;

use super::{clock_now, create, engine, validate, LIFETIME};
use crate::harness::{
    assert_absent, assert_stored, live_record, must, random_user_id, CallCounts, SpyStore,
};
use crate::Capabilities;

/// A fresh session validates to itself, neither new nor extended.
pub async fn create_then_validate_returns_same_session_not_extended(
    store: Arc<dyn SessionStore>,
    _capabilities: Capabilities,
) {
    let (narvik, clock) = engine::<Value>(store);
    let created = create(
        &narvik,
        &random_user_id("validator"),
        json!({ "n": [1, 2] }),
    )
    .await;
    clock.advance(Duration::minutes(5));
    let Some(session) = validate(&narvik, &created.token).await else {
        panic!("a fresh session did not validate");
    };
    let mut expected = created.session.clone();
    expected.new = false;
    assert_eq!(session, expected, "validate returned a different session");
}

/// Validating in the first half of the lifetime writes nothing to the store.
pub async fn validate_in_first_half_does_not_write(
    store: Arc<dyn SessionStore>,
    _capabilities: Capabilities,
) {
    let spy = SpyStore::new(Arc::clone(&store));
    let (narvik, clock) = engine::<Value>(Arc::clone(&spy) as _);
    let created = create(&narvik, &random_user_id("idle"), json!(null)).await;
    // One millisecond before the half-way point.
    clock.advance(LIFETIME / 2 - Duration::milliseconds(1));
    let before = spy.calls();
    let Some(session) = validate(&narvik, &created.token).await else {
        panic!("a session in its first half did not validate");
    };
    let after = spy.calls();
    assert!(
        !session.extended,
        "a session in its first half was extended"
    );
    assert_eq!(session.expires_at, created.session.expires_at);
    assert_eq!(
        CallCounts {
            fetch_session: after.fetch_session,
            ..before
        },
        after,
        "validation in the first half called the store for more than one fetch"
    );
    let record = created.session.to_record().expect("JSON data");
    assert_stored(
        store.as_ref(),
        &record,
        "the record after a first-half validation",
    )
    .await;
}

/// From the half-way point on, validation extends the session to `now + lifetime`, stores
/// it, and says so with `extended`; the next validation does not extend again.
pub async fn validate_in_last_half_extends_to_now_plus_lifetime_and_sets_extended(
    store: Arc<dyn SessionStore>,
    _capabilities: Capabilities,
) {
    let (narvik, clock) = engine::<Value>(Arc::clone(&store));
    let created = create(&narvik, &random_user_id("active"), json!({ "k": "v" })).await;
    clock.advance(LIFETIME / 2);
    let now = clock_now(&clock);
    let Some(session) = validate(&narvik, &created.token).await else {
        panic!("a session in its last half did not validate");
    };
    assert!(
        session.extended,
        "a session at half its lifetime must be extended"
    );
    assert_eq!(
        session.expires_at,
        now + LIFETIME,
        "extension goes to now + lifetime"
    );
    let mut record = created.session.to_record().expect("JSON data");
    record.expires_at = now + LIFETIME;
    assert_stored(store.as_ref(), &record, "the record after an extension").await;

    clock.advance(Duration::minutes(1));
    let again = validate(&narvik, &created.token)
        .await
        .expect("still valid");
    assert!(
        !again.extended,
        "a just-extended session was extended again"
    );
    assert_eq!(again.expires_at, now + LIFETIME);
}

/// At `expires_at` the session is dead: validation answers `None` and deletes the record.
pub async fn validate_after_expiry_is_none_and_deletes(
    store: Arc<dyn SessionStore>,
    _capabilities: Capabilities,
) {
    let (narvik, clock) = engine::<Value>(Arc::clone(&store));
    let created = create(&narvik, &random_user_id("expired"), json!(null)).await;
    clock.advance(LIFETIME);
    assert!(
        validate(&narvik, &created.token).await.is_none(),
        "a session at its expiry must not validate"
    );
    assert_absent(
        store.as_ref(),
        &created.session.id,
        "an expired session after validation",
    )
    .await;
}

/// A well-formed token without a session is `None` and creates nothing, even next to
/// records whose ids are near twins of its id (upper-cased, one character short, one longer,
/// a trailing space), which stay as they were.
///
/// Catches a store whose fetch matches ids loosely (a case-insensitive key, a prefix or
/// `LIKE` match, a trimmed comparison) and so hands the engine a stranger's session.
pub async fn validate_unknown_token_is_none(
    store: Arc<dyn SessionStore>,
    _capabilities: Capabilities,
) {
    let (narvik, _clock) = engine::<Value>(Arc::clone(&store));
    let token = must(SessionToken::generate(), "SessionToken::generate");
    let id = token.session_id();
    let twins: Vec<SessionRecord> = [
        id.to_uppercase(),
        id[..id.len() - 1].to_owned(),
        format!("{id}0"),
        format!("{id} "),
    ]
    .into_iter()
    .map(|twin_id| {
        let mut record = live_record(&random_user_id("near-twin"), json!({ "twin": twin_id }));
        record.id = twin_id;
        record
    })
    .collect();
    for twin in &twins {
        must(
            store.save_session(twin).await,
            "save_session of a near-twin id",
        );
    }
    let validated = validate(&narvik, &token).await;
    assert!(
        validated.is_none(),
        "an unknown token validated to a session of a near-twin id: {validated:?}"
    );
    assert_absent(
        store.as_ref(),
        &token.session_id(),
        "after validating an unknown token",
    )
    .await;
    for twin in &twins {
        assert_stored(
            store.as_ref(),
            twin,
            "a near-twin id after validating an unknown token",
        )
        .await;
    }
}

/// After logout the token is dead and the record gone; a second logout succeeds.
pub async fn invalidate_then_validate_is_none(
    store: Arc<dyn SessionStore>,
    _capabilities: Capabilities,
) {
    let (narvik, _clock) = engine::<Value>(Arc::clone(&store));
    let created = create(&narvik, &random_user_id("leaver"), json!(null)).await;
    let id = &created.session.id;
    must(narvik.invalidate_session(id).await, "invalidate_session");
    assert!(
        validate(&narvik, &created.token).await.is_none(),
        "a logged-out token validated"
    );
    assert_absent(store.as_ref(), id, "after logout").await;
    must(
        narvik.invalidate_session(id).await,
        "a second invalidate_session",
    );
}
