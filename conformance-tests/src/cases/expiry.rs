//! Expired records: counted deletion of exactly the expired ones, and an expired record is
//! never taken for a live one.
//!
//! The counting cases rely on the factory's fresh namespace: they count what the namespace
//! holds.
//!
//! One file per theme: the purge and its count (`purge`), expired records never taken for live
//! ones by fetch, save and the expiry updates (`expired_records`), and listing and purge cutting
//! off at the `now` they are given (`given_now`). All of them are re-exported here, so a case
//! is `cases::expiry::NAME` whichever file holds it.

mod expired_records;
mod given_now;
mod purge;

use std::sync::Arc;

use narvik_core::{ManualClock, Narvik, OptionalOperation, SessionStore, SessionToken};

use crate::harness::{assert_absent, engine_with, must, now_ms};
use crate::{Capabilities, ExpiredCount};

pub use expired_records::{
    extension_moves_the_stores_own_expiry, fetch_of_expired_record, save_already_expired_record,
    update_expiry_on_expired_record_does_nothing, update_record_expiry_follows_the_same_rules,
};
pub use given_now::{
    delete_expired_cuts_off_at_the_given_now, fetch_for_user_filters_on_the_given_now,
};
pub use purge::{
    delete_expired_never_counts_live_records, delete_expired_on_empty_store_is_zero,
    delete_expired_removes_exactly_the_expired, delete_expired_returns_the_count,
};

const DELETE_EXPIRED: OptionalOperation = OptionalOperation::DeleteAllExpiredSessions;

async fn delete_expired(store: &dyn SessionStore) -> u64 {
    must(
        store.delete_all_expired_sessions(now_ms()).await,
        "delete_all_expired_sessions",
    )
}

/// Asserts a count against the number of expired records the namespace held.
#[track_caller]
fn assert_count(capabilities: Capabilities, counted: u64, expired: usize, context: &str) {
    let expired = u64::try_from(expired).unwrap_or(u64::MAX);
    match capabilities.expired_count {
        ExpiredCount::Exact => assert_eq!(
            counted, expired,
            "{context}: delete_all_expired_sessions must return exactly the number it deleted"
        ),
        ExpiredCount::AtMost => assert!(
            counted <= expired,
            "{context}: delete_all_expired_sessions counted {counted}, but only {expired} \
             records had expired (a live record or a record counted twice?)"
        ),
    }
}

/// Engine over `store` whose clock reads the wall clock's now.
fn engine(store: &Arc<dyn SessionStore>) -> Narvik<serde_json::Value> {
    engine_with(
        Arc::clone(store),
        &Arc::new(ManualClock::starting_now()),
        |builder| builder,
    )
}

/// Asserts that the engine does not accept `token`, whose record has expired, and that the
/// record is gone afterwards.
async fn assert_engine_rejects(store: &Arc<dyn SessionStore>, token: &SessionToken, context: &str) {
    let validated = must(
        engine(store).validate_session(token.as_str()).await,
        "validate_session",
    );
    assert!(
        validated.is_none(),
        "{context}: the engine took an expired record for live: {validated:?}"
    );
    assert_absent(store.as_ref(), &token.session_id(), context).await;
}
