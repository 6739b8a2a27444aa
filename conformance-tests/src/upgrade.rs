//! What a store owes the records it stored before per-session lifetimes and data versions
//! existed: after its migration (a new schema, a new encoding), such a record reads back whole,
//! as the engine's default lifetime and version 0, and then works like any other.

use narvik_core::{SessionData, SessionRecord, SessionStore};
use time::{Duration, OffsetDateTime};

use crate::harness::must;

/// Checks a record the store's previous version wrote, after the store's migration: `old` is
/// the record as it was written (with `lifetime: None` and `data_version: 0`). A store's own
/// test writes it the old way (raw SQL, raw bytes, a raw document), migrates, then calls this.
///
/// It must fetch exactly as `old`; its data then updates from version 0 to 1 once (a second
/// update at version 0 changes nothing); it extends like any other record, keeping the new
/// data and version; and the per-user listing, where the store has one, shows it.
pub async fn assert_record_from_before_lifetimes_upgrades(
    store: &dyn SessionStore,
    old: &SessionRecord,
) {
    assert_eq!(
        old.lifetime, None,
        "a record from before lifetimes has none"
    );
    assert_eq!(old.data_version, 0, "a record from before versions is at 0");
    let fetched = must(store.fetch_session(&old.id).await, "fetch_session")
        .unwrap_or_else(|| panic!("the record {} from before the migration is missing", old.id));
    assert_eq!(
        &fetched, old,
        "the record from before the migration, read back"
    );

    let now = OffsetDateTime::now_utc();
    let new_data = SessionData::from(serde_json::json!({ "upgraded": true }));
    assert!(
        must(
            store.update_session_data(&fetched, &new_data, now).await,
            "update_session_data at version 0"
        ),
        "a data update of the old record at version 0 must apply"
    );
    assert!(
        !must(
            store.update_session_data(&fetched, &new_data, now).await,
            "update_session_data at the stale version 0"
        ),
        "a second update at version 0 must change nothing"
    );
    let updated = SessionRecord {
        data: new_data,
        data_version: 1,
        ..old.clone()
    };
    let stored = must(store.fetch_session(&old.id).await, "fetch_session")
        .unwrap_or_else(|| panic!("the record {} is gone after its data update", old.id));
    assert_eq!(stored, updated, "the old record after its data update");

    let extended_to = old.expires_at + Duration::hours(2);
    must(
        store.update_session_expiry(&old.id, extended_to).await,
        "update_session_expiry",
    );
    let extended = SessionRecord {
        expires_at: extended_to,
        ..updated
    };
    let stored = must(store.fetch_session(&old.id).await, "fetch_session")
        .unwrap_or_else(|| panic!("the record {} is gone after its extension", old.id));
    assert_eq!(stored, extended, "the old record after its extension");

    if store.capabilities().fetch_sessions_for_user {
        let listed = must(
            store.fetch_sessions_for_user(&old.user_id, now).await,
            "fetch_sessions_for_user",
        );
        assert_eq!(
            listed,
            std::slice::from_ref(&extended),
            "the old record's user lists it"
        );
    }
}
