//! The assertions the cases share, each with a message that says which promise broke.

use std::collections::BTreeMap;
use std::sync::Arc;

use narvik_core::{SessionRecord, SessionStore};

use super::{in_parallel, live_record, must, now_ms, random_user_id, BULK_TASKS};
use crate::Capabilities;

/// Fetches every one of `records` from [`BULK_TASKS`] tasks and asserts the store holds each
/// exactly as given.
pub async fn assert_all_stored(
    store: &Arc<dyn SessionStore>,
    records: &[SessionRecord],
    context: &str,
) {
    in_parallel(store, records, BULK_TASKS, |store, part| {
        let context = context.to_owned();
        async move {
            for record in &part {
                assert_stored(store.as_ref(), record, &context).await;
            }
        }
    })
    .await;
}

/// Fetches every one of `ids` from [`BULK_TASKS`] tasks and asserts the store has none of them.
pub async fn assert_all_absent(store: &Arc<dyn SessionStore>, ids: &[String], context: &str) {
    in_parallel(store, ids, BULK_TASKS, |store, part| {
        let context = context.to_owned();
        async move {
            for id in &part {
                assert_absent(store.as_ref(), id, &context).await;
            }
        }
    })
    .await;
}

/// Asserts that the store holds exactly `expected` under its id.
#[track_caller]
pub fn assert_same_record(actual: Option<&SessionRecord>, expected: &SessionRecord, context: &str) {
    let Some(actual) = actual else {
        panic!("{context}: record {} is missing", expected.id);
    };
    assert_eq!(actual.id, expected.id, "{context}: id differs");
    assert_eq!(
        actual.user_id, expected.user_id,
        "{context}: user_id differs"
    );
    assert_eq!(
        actual.expires_at, expected.expires_at,
        "{context}: expires_at differs (it must round-trip to the millisecond)"
    );
    assert_eq!(
        actual.created_at, expected.created_at,
        "{context}: created_at differs (it must round-trip to the millisecond)"
    );
    assert_eq!(
        actual.data, expected.data,
        "{context}: data differs (it must round-trip as equal JSON, numbers keeping their kind)"
    );
    assert_eq!(
        actual.lifetime, expected.lifetime,
        "{context}: lifetime differs (the session's own lifetime must round-trip to the millisecond)"
    );
    assert_eq!(
        actual.data_version, expected.data_version,
        "{context}: data_version differs"
    );
}

/// Fetches `expected.id` and asserts the store returns exactly `expected`.
pub async fn assert_stored(store: &dyn SessionStore, expected: &SessionRecord, context: &str) {
    let fetched = must(store.fetch_session(&expected.id).await, "fetch_session");
    assert_same_record(fetched.as_ref(), expected, context);
}

/// Fetches `session_id` and asserts the store has no such record.
pub async fn assert_absent(store: &dyn SessionStore, session_id: &str, context: &str) {
    let fetched = must(store.fetch_session(session_id).await, "fetch_session");
    assert!(
        fetched.is_none(),
        "{context}: record {session_id} should not exist, but fetch_session returned {fetched:?}"
    );
}

/// Records keyed by id, for comparing listings whose order is unspecified.
pub fn by_id(records: impl IntoIterator<Item = SessionRecord>) -> BTreeMap<String, SessionRecord> {
    records
        .into_iter()
        .map(|record| (record.id.clone(), record))
        .collect()
}

/// Asserts that a listing holds exactly `expected` (every field), each once, in any order.
#[track_caller]
pub fn assert_same_set(actual: Vec<SessionRecord>, expected: &[SessionRecord], context: &str) {
    let actual_len = actual.len();
    let actual = by_id(actual);
    assert_eq!(
        actual.len(),
        actual_len,
        "{context}: the listing returned a session more than once"
    );
    let expected = by_id(expected.iter().cloned());
    let missing: Vec<&String> = expected
        .keys()
        .filter(|id| !actual.contains_key(*id))
        .collect();
    let extra: Vec<&SessionRecord> = actual
        .values()
        .filter(|record| !expected.contains_key(&record.id))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{context}: missing ids {missing:?}; unexpected records {extra:?}"
    );
    for (id, record) in &expected {
        assert_same_record(actual.get(id), record, context);
    }
}

/// When `capabilities` declare `operation` absent, calls it and asserts the typed
/// unsupported error, then returns true (the case has nothing more to check). Returns false
/// when the operation is declared present.
pub async fn declared_absent(
    store: &dyn SessionStore,
    capabilities: Capabilities,
    operation: narvik_core::OptionalOperation,
) -> bool {
    use narvik_core::OptionalOperation as Op;
    if capabilities.supports(operation) {
        return false;
    }
    let user_id = random_user_id("unsupported");
    match operation {
        Op::FetchSessionsForUser => {
            crate::assert_unsupported(
                store.fetch_sessions_for_user(&user_id, now_ms()).await,
                operation,
            );
        }
        Op::DeleteSessionsForUser => {
            crate::assert_unsupported(store.delete_sessions_for_user(&user_id).await, operation);
        }
        Op::DeleteAllExpiredSessions => {
            crate::assert_unsupported(store.delete_all_expired_sessions(now_ms()).await, operation);
        }
        Op::UpdateSessionData => {
            // A live record, so that only the missing call can explain an answer other
            // than `Ok(true)`; it must stay exactly as saved.
            let record = live_record(&user_id, serde_json::json!({ "before": true }));
            must(store.save_session(&record).await, "save_session");
            let data = narvik_core::SessionData::from(serde_json::json!({ "after": true }));
            crate::assert_unsupported(
                store.update_session_data(&record, &data, now_ms()).await,
                operation,
            );
            assert_stored(
                store,
                &record,
                "a record after an unsupported update_session_data",
            )
            .await;
        }
        other => panic!("this suite does not know the optional operation `{other}`"),
    }
    true
}

/// Asserts that `user_id`'s listing holds exactly `expected`, when the store declares the
/// listing; a store without it is checked by the other means of the calling case.
pub async fn assert_user_lists(
    store: &dyn SessionStore,
    capabilities: Capabilities,
    user_id: &str,
    expected: &[SessionRecord],
    context: &str,
) {
    if !capabilities.fetch_sessions_for_user {
        return;
    }
    let listed = must(
        store.fetch_sessions_for_user(user_id, now_ms()).await,
        "fetch_sessions_for_user",
    );
    assert_same_set(listed, expected, context);
}
