//! `update_session_data` racing itself, a delete and an extension: no update is lost, no
//! record comes back, and both an update and an extension keep their effect.

use std::collections::BTreeSet;
use std::sync::Arc;

use narvik_core::{SessionData, SessionStore};
use serde_json::{json, Value};
use time::Duration;

use super::{absent, json_of, updated};
use crate::harness::{
    assert_stored, live_record, must, now_ms, race, race_delete_against, random_user_id,
};
use crate::Capabilities;

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
