//! The store's declaration ([`SessionStore::capabilities`]) is what it does: a call declared
//! present works, a call declared absent answers the typed unsupported error naming it.

use std::sync::Arc;

use narvik_core::{OptionalOperation, SessionStore};
use serde_json::json;

use crate::harness::{assert_stored, declared_absent, live_record, must, now_ms, random_user_id};
use crate::Capabilities;

/// For each of the four optional calls: declared present, it answers `Ok` on a fresh user or
/// a namespace without expired records (an empty listing, a delete of nobody, a purge of 0, a
/// data update of a record never saved answering `false`)
/// and leaves the one live session there untouched; declared absent, it answers `Error::Unsupported` naming exactly that call.
///
/// Catches a store that declares a call it does not serve (the trait's default body answering
/// `Unsupported`, or an error), and one that serves a call it declares absent: the engine
/// then refuses settings that would work, or accepts settings that fail at the first sign-in.
pub async fn declared_capabilities_match_the_calls(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    // A bystander, so that a declared call answering Ok by doing something drastic shows.
    let bystander = live_record(&random_user_id("bystander"), json!({ "stay": true }));
    must(store.save_session(&bystander).await, "save_session");
    for operation in [
        OptionalOperation::FetchSessionsForUser,
        OptionalOperation::DeleteSessionsForUser,
        OptionalOperation::DeleteAllExpiredSessions,
        OptionalOperation::UpdateSessionData,
    ] {
        if declared_absent(store.as_ref(), capabilities, operation).await {
            continue;
        }
        let nobody = random_user_id("fresh");
        match operation {
            OptionalOperation::FetchSessionsForUser => {
                let listed = must(
                    store.fetch_sessions_for_user(&nobody, now_ms()).await,
                    "fetch_sessions_for_user, declared present, on a fresh user",
                );
                assert!(
                    listed.is_empty(),
                    "a fresh user's listing must be empty, got {listed:?}"
                );
            }
            OptionalOperation::DeleteSessionsForUser => must(
                store.delete_sessions_for_user(&nobody).await,
                "delete_sessions_for_user, declared present, on a fresh user",
            ),
            OptionalOperation::DeleteAllExpiredSessions => {
                let counted = must(
                    store.delete_all_expired_sessions(now_ms()).await,
                    "delete_all_expired_sessions, declared present, with nothing expired",
                );
                assert_eq!(
                    counted, 0,
                    "a purge of a namespace holding one live session counted {counted}"
                );
            }
            OptionalOperation::UpdateSessionData => {
                let never_saved = live_record(&nobody, json!({ "saved": false }));
                let data = narvik_core::SessionData::from(json!({ "changed": true }));
                let changed = must(
                    store
                        .update_session_data(&never_saved, &data, now_ms())
                        .await,
                    "update_session_data, declared present, of a record never saved",
                );
                assert!(
                    !changed,
                    "a data update of a record never saved must answer Ok(false)"
                );
            }
            other => panic!("this suite does not know the optional operation `{other}`"),
        }
    }
    assert_stored(
        store.as_ref(),
        &bystander,
        "a bystander after the declared optional calls",
    )
    .await;
}

/// The store's name (the `store` field of the engine's per-call spans) is not empty, holds no
/// control character (it goes into log lines as it is), and is the same on every call.
///
/// Catches a name built per call from changing state, and one that breaks a log line.
pub async fn the_store_names_itself(store: Arc<dyn SessionStore>, _capabilities: Capabilities) {
    let name = store.store_name();
    assert!(!name.is_empty(), "store_name must not be empty");
    assert!(
        !name.chars().any(char::is_control),
        "store_name {name:?} holds a control character"
    );
    assert_eq!(
        store.store_name(),
        name,
        "store_name must be the same on every call"
    );
}
