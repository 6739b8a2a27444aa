//! A NUL in a user id or a session id: stored byte for byte, or refused with `InvalidData`,
//! never cut or stripped into a twin's id.

use std::sync::Arc;

use narvik_core::{Error, SessionRecord, SessionStore};
use serde_json::json;
use time::Duration;

use super::{session_twins, DELETE, FETCH};
use crate::harness::{
    assert_absent, assert_same_set, assert_stored, declared_absent, list_at, live_record, must,
    now_ms, random_session_id, random_suffix,
};
use crate::Capabilities;

/// What a save answered for a record with a NUL in an id.
enum NulSave {
    Stored,
    Refused,
}

/// Saves a record with a NUL in an id: `Ok` (then it must fetch back byte for byte) or
/// `Err(InvalidData)` (then it must not be there). Anything else fails the case.
async fn save_with_nul(store: &dyn SessionStore, record: &SessionRecord, what: &str) -> NulSave {
    match store.save_session(record).await {
        Ok(()) => {
            assert_stored(
                store,
                record,
                &format!("a record with a NUL in its {what}, saved Ok"),
            )
            .await;
            NulSave::Stored
        }
        Err(Error::InvalidData(_)) => {
            // The store cannot hold the value, so it cannot have stored it: asked for the id,
            // it answers None (or, for an id it cannot even look up, the same typed refusal).
            match store.fetch_session(&record.id).await {
                Ok(None) | Err(Error::InvalidData(_)) => {}
                other => panic!(
                    "a save with a NUL in the {what} was refused with InvalidData, yet fetching \
                     its id answered {other:?}"
                ),
            }
            NulSave::Refused
        }
        Err(Error::DuplicateId) => panic!(
            "a save with a NUL in the {what} failed with DuplicateId: the store cut or stripped \
             the NUL and merged the id with a twin"
        ),
        Err(other) => panic!(
            "a save with a NUL in the {what} must be Ok (stored byte for byte) or \
             Err(Error::InvalidData), got {other:?}"
        ),
    }
}

/// User id `a\0b` and session id `x\0y` (each with a random part before them): the save is
/// either `Ok`, and the record round-trips byte for byte without touching its twins (`a`,
/// `ab`; `x`, `xy`), or `Err(InvalidData)` and nothing is stored or altered.
///
/// Catches an id cut at its NUL as a C string is (`a\0b` becomes `a`), and a NUL stripped
/// (`ab`): either merges the id with a twin, or stores an altered one.
pub async fn nul_in_ids_round_trips_or_is_invalid_data(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    let r = random_suffix();
    let nul_user = format!("{r}a\0b");
    let user_twins = [format!("{r}a"), format!("{r}ab")];
    let user_twin_records: Vec<SessionRecord> = user_twins
        .iter()
        .map(|user| live_record(user, json!({ "twin": user })))
        .collect();
    let base = random_session_id();
    let id_twins = [format!("{base}x"), format!("{base}xy")];
    let id_twin_records = session_twins(&id_twins, "nul-twin");
    for record in user_twin_records.iter().chain(&id_twin_records) {
        must(store.save_session(record).await, "save_session of a twin");
    }

    let with_nul_user = live_record(&nul_user, json!({ "nul": "user" }));
    let user_saved = save_with_nul(store.as_ref(), &with_nul_user, "user id").await;
    let mut with_nul_id = live_record(&format!("nul-id-{r}"), json!({ "nul": "id" }));
    with_nul_id.id = format!("{base}x\0y");
    let id_saved = save_with_nul(store.as_ref(), &with_nul_id, "session id").await;

    for record in user_twin_records.iter().chain(&id_twin_records) {
        assert_stored(store.as_ref(), record, "a twin of an id with a NUL").await;
    }
    if !declared_absent(store.as_ref(), capabilities, FETCH).await {
        for (twin, record) in user_twins.iter().zip(&user_twin_records) {
            assert_same_set(
                list_at(store.as_ref(), twin, now_ms()).await,
                std::slice::from_ref(record),
                &format!("the listing of {twin:?}, a twin of a user id with a NUL"),
            );
        }
        if let NulSave::Stored = user_saved {
            assert_same_set(
                list_at(store.as_ref(), &nul_user, now_ms()).await,
                std::slice::from_ref(&with_nul_user),
                "the listing of a user id with a NUL",
            );
        }
    }

    if let NulSave::Stored = id_saved {
        let mut extended = with_nul_id.clone();
        extended.expires_at += Duration::days(2);
        must(
            store
                .update_session_expiry(&with_nul_id.id, extended.expires_at)
                .await,
            "update_session_expiry of an id with a NUL",
        );
        assert_stored(
            store.as_ref(),
            &extended,
            "an id with a NUL after an update",
        )
        .await;
        must(
            store.delete_session(&with_nul_id.id).await,
            "delete_session of an id with a NUL",
        );
        assert_absent(store.as_ref(), &with_nul_id.id, "a deleted id with a NUL").await;
        for record in &id_twin_records {
            assert_stored(
                store.as_ref(),
                record,
                "a twin after updating and deleting an id with a NUL",
            )
            .await;
        }
    }
    if let NulSave::Stored = user_saved {
        if !declared_absent(store.as_ref(), capabilities, DELETE).await {
            must(
                store.delete_sessions_for_user(&nul_user).await,
                "delete_sessions_for_user of a user id with a NUL",
            );
            assert_absent(
                store.as_ref(),
                &with_nul_user.id,
                "a deleted session of a user id with a NUL",
            )
            .await;
            for record in &user_twin_records {
                assert_stored(
                    store.as_ref(),
                    record,
                    "a twin after deleting the sessions of a user id with a NUL",
                )
                .await;
            }
        }
    }
}
