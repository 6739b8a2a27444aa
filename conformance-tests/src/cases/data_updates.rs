//! The optional `update_session_data`: a compare-and-set of a record's additional data on its
//! `data_version`, live at the engine's `now`, that never creates, revives or touches
//! anything else, and never loses a racing update, delete or extension.
//!
//! One file per theme: the store's call alone (`compare_and_set`), the call racing others
//! (`races`), and the engine's update over it (`through_engine`). All of them are re-exported
//! here, so a case is `cases::data_updates::NAME` whichever file holds it.

mod compare_and_set;
mod races;
mod through_engine;

use std::sync::Arc;

use narvik_core::{OptionalOperation, SessionData, SessionRecord, SessionStore};
use serde_json::Value;
use time::OffsetDateTime;

use crate::harness::{declared_absent, must};
use crate::Capabilities;

pub use compare_and_set::{
    update_data_leaves_other_records, update_data_on_missing_or_deleted_record_creates_nothing,
    update_data_on_record_expired_at_now_does_nothing,
    update_data_on_stale_version_changes_nothing, update_data_replaces_data_and_bumps_version,
};
pub use races::{
    concurrent_data_updates_never_lose_one, data_update_racing_delete_never_resurrects,
    data_update_racing_extension_keeps_both,
};
pub use through_engine::{
    engine_data_update_after_invalidate_is_none, engine_data_updates_are_never_lost,
    own_lifetime_session_slides_by_its_own_lifetime,
};

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
