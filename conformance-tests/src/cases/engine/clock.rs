//! One manual clock, and the engine's validation, listing and purge agreeing on its `now`.

use std::sync::Arc;

use narvik_core::{
    CreatedSession, ManualClock, Narvik, OptionalOperation, SessionRecord, SessionStore,
};
use serde_json::{json, Value};
use time::Duration;

use super::{create, validate};
use crate::harness::{
    assert_absent, assert_same_set, assert_stored, engine_with, must, random_user_id,
};
use crate::{assert_unsupported, Capabilities, ExpiredCount};

/// One `ManualClock`, three answers that agree. An engine with a one-hour lifetime and a
/// manual clock creates two batches of sessions. Before the clock moves, validation accepts
/// them, the engine's listing and the store's listing at the engine's `now` show them, and a
/// purge deletes none. After the clock moves two hours (the wall clock has not), validation
/// rejects the first batch, both listings are empty, and the engine's purge deletes the
/// second batch (counted exactly, or by the at-most rule), which is gone from the store after.
///
/// Catches a store that decides listing or purge by a clock of its own (the wall clock, the
/// server's `now()`, its native TTL) instead of the `now` the engine hands down: validation
/// would say "expired" while the listing still shows the sessions and the purge deletes 0.
pub async fn manual_clock_agrees_across_validation_listing_and_purge(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    let clock = Arc::new(ManualClock::starting_now());
    let lifetime = Duration::hours(1);
    let narvik: Narvik<Value> = engine_with(Arc::clone(&store), &clock, |builder| {
        builder.session_lifetime(lifetime)
    });
    let validated_user = random_user_id("clock-validated");
    let purged_user = random_user_id("clock-purged");
    let mut validated = Vec::new();
    for n in 0..3 {
        validated.push(create(&narvik, &validated_user, json!({ "validated": n })).await);
    }
    let mut purged = Vec::new();
    for n in 0..4 {
        purged.push(create(&narvik, &purged_user, json!({ "purged": n })).await);
    }
    let records = |batch: &[CreatedSession<Value>]| -> Vec<SessionRecord> {
        batch
            .iter()
            .map(|created| created.session.to_record().expect("JSON data"))
            .collect()
    };

    // Before the clock moves: all three agree the sessions are live.
    for created in validated.iter().chain(&purged) {
        assert!(
            validate(&narvik, &created.token).await.is_some(),
            "a fresh session did not validate"
        );
    }
    for (user, batch) in [(&validated_user, &validated), (&purged_user, &purged)] {
        assert_listing_at_engine_now(&store, &narvik, capabilities, user, &records(batch)).await;
    }
    if capabilities.delete_all_expired_sessions {
        let counted = must(
            narvik.delete_all_expired_sessions().await,
            "the engine's delete_all_expired_sessions",
        );
        assert_eq!(
            counted, 0,
            "a purge at the engine's now, before any session expired"
        );
        for record in records(&validated).iter().chain(&records(&purged)) {
            assert_stored(store.as_ref(), record, "a live session after a purge").await;
        }
    } else {
        assert_unsupported(
            narvik.delete_all_expired_sessions().await,
            OptionalOperation::DeleteAllExpiredSessions,
        );
    }

    clock.advance(lifetime * 2);
    for (user, _) in [(&validated_user, &validated), (&purged_user, &purged)] {
        assert_listing_at_engine_now(&store, &narvik, capabilities, user, &[]).await;
    }
    for created in &validated {
        assert!(
            validate(&narvik, &created.token).await.is_none(),
            "a session past its lifetime by the engine's clock validated"
        );
        assert_absent(
            store.as_ref(),
            &created.session.id,
            "a session the engine found expired",
        )
        .await;
    }
    if capabilities.delete_all_expired_sessions {
        let counted = must(
            narvik.delete_all_expired_sessions().await,
            "the engine's delete_all_expired_sessions",
        );
        let expired = u64::try_from(purged.len()).unwrap_or(u64::MAX);
        match capabilities.expired_count {
            ExpiredCount::Exact => assert_eq!(
                counted, expired,
                "the engine's purge, with its clock two hours ahead, must delete the {expired} \
                 sessions expired by that clock (the store must cut off on the `now` it is given)"
            ),
            ExpiredCount::AtMost => assert!(
                counted <= expired,
                "the engine's purge counted {counted} of {expired} expired sessions"
            ),
        }
        for created in &purged {
            assert_absent(
                store.as_ref(),
                &created.session.id,
                "a session expired by the engine's clock, after the engine's purge (live by \
                 the wall clock, so only a purge on the given `now` removes it)",
            )
            .await;
        }
    }
}

/// Asserts what the engine's listing and the store's own listing at the engine's `now` show
/// for `user`: exactly `expected`, or the typed unsupported error from both.
async fn assert_listing_at_engine_now(
    store: &Arc<dyn SessionStore>,
    narvik: &Narvik<Value>,
    capabilities: Capabilities,
    user: &str,
    expected: &[SessionRecord],
) {
    if !capabilities.fetch_sessions_for_user {
        assert_unsupported(
            narvik.fetch_sessions_for_user(user).await,
            OptionalOperation::FetchSessionsForUser,
        );
        assert_unsupported(
            store.fetch_sessions_for_user(user, narvik.now()).await,
            OptionalOperation::FetchSessionsForUser,
        );
        return;
    }
    let through_engine = must(
        narvik.fetch_sessions_for_user(user).await,
        "the engine's fetch_sessions_for_user",
    );
    let through_engine: Vec<SessionRecord> = through_engine
        .iter()
        .map(|session| session.to_record().expect("JSON data"))
        .collect();
    assert_same_set(
        through_engine,
        expected,
        "the engine's listing at its manual clock's now",
    );
    // The engine filters its listing again, so the store's own answer is asked for directly.
    assert_same_set(
        must(
            store.fetch_sessions_for_user(user, narvik.now()).await,
            "fetch_sessions_for_user at the engine's now",
        ),
        expected,
        "the store's listing at the engine's manual clock's now (a store must filter on the \
         `now` it is given)",
    );
}
