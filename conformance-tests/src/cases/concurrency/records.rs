//! Races over single records: concurrent saves (distinct ids, one id), and expiry updates
//! racing deletes or each other.

use std::sync::Arc;

use narvik_core::{Error, SessionRecord, SessionStore};
use serde_json::json;
use time::Duration;

use super::{assert_user_holds, TASKS};
use crate::harness::{
    assert_same_record, assert_stored, live_record, must, now_ms, race, race_delete_against,
    random_session_id, random_user_id, save_all,
};
use crate::Capabilities;

/// 20 tasks each save 500 distinct records at once; all 10,000 land, none lost or doubled.
pub async fn concurrent_saves_of_distinct_ids_all_land(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    const PER_TASK: usize = 500;
    let batches: Vec<(String, Vec<SessionRecord>)> = (0..TASKS)
        .map(|task| {
            let user_id = random_user_id(&format!("saver{task}"));
            let records = (0..PER_TASK)
                .map(|n| live_record(&user_id, json!({ "task": task, "n": n })))
                .collect();
            (user_id, records)
        })
        .collect();
    let saving = batches.clone();
    let shared = Arc::clone(&store);
    race(TASKS, move |task| {
        let store = Arc::clone(&shared);
        let records = saving[task].1.clone();
        async move { save_all(store.as_ref(), &records).await }
    })
    .await;
    let mut held = 0;
    for (user_id, records) in batches {
        held += assert_user_holds(
            &store,
            capabilities,
            &user_id,
            records,
            "a record saved concurrently",
        )
        .await;
    }
    assert_eq!(
        held,
        TASKS * PER_TASK,
        "the store holds {held} of the {} records saved concurrently",
        TASKS * PER_TASK
    );
}

/// 20 tasks save the same id at once: exactly one succeeds, every other gets
/// [`Error::DuplicateId`], and the stored record is the winner's.
pub async fn concurrent_saves_of_same_id_exactly_one_wins(
    store: Arc<dyn SessionStore>,
    _capabilities: Capabilities,
) {
    let id = random_session_id();
    let contenders: Vec<SessionRecord> = (0..TASKS)
        .map(|task| {
            let mut record = live_record(
                &random_user_id(&format!("contender{task}")),
                json!({ "task": task }),
            );
            record.id.clone_from(&id);
            record.expires_at += Duration::minutes(i64::try_from(task).unwrap_or(0));
            record
        })
        .collect();
    let racing = contenders.clone();
    let shared = Arc::clone(&store);
    let outcomes = race(TASKS, move |task| {
        let store = Arc::clone(&shared);
        let record = racing[task].clone();
        async move { store.save_session(&record).await }
    })
    .await;
    let mut winners = Vec::new();
    for (task, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            Ok(()) => winners.push(task),
            Err(Error::DuplicateId) => {}
            Err(other) => panic!("a losing save must fail with Error::DuplicateId, got {other:?}"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one of {TASKS} concurrent saves of one id must succeed; these did: {winners:?}"
    );
    assert_stored(
        store.as_ref(),
        &contenders[winners[0]],
        "the winner of a concurrent save",
    )
    .await;
}

/// A delete and an expiry update of the same record, started together, 200 times: whichever
/// runs first, the record is gone afterwards.
pub async fn delete_racing_update_never_resurrects(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    race_delete_against(
        &store,
        capabilities,
        &random_user_id("racing"),
        200,
        "update_session_expiry",
        |store, record, _| async move {
            let extended_to = record.expires_at + Duration::days(1);
            store.update_session_expiry(&record.id, extended_to).await
        },
    )
    .await;
}

/// A delete and an extension through `update_record_expiry` (the call the engine extends
/// through, with the whole record in hand) of the same record, started together, 200 times:
/// whichever runs first, the record is gone afterwards and its user lists nothing.
///
/// Catches a store that extends by writing the record it was handed back (`SET` without
/// `XX`, an upsert, a check-then-write with a yield between the check and the write), so an
/// extension landing after a logout re-creates the session.
pub async fn update_record_expiry_racing_delete_never_resurrects(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    race_delete_against(
        &store,
        capabilities,
        &random_user_id("record-racing"),
        200,
        "update_record_expiry",
        |store, record, _| async move {
            let extended_to = record.expires_at + Duration::days(1);
            store.update_record_expiry(&record, extended_to).await
        },
    )
    .await;
}

/// 20 tasks update one record's expiry at once, 10 times over: the stored expiry is always
/// one of the values written in that round, and nothing else changes.
pub async fn concurrent_updates_keep_a_valid_expiry(
    store: Arc<dyn SessionStore>,
    _capabilities: Capabilities,
) {
    let mut record = live_record(&random_user_id("contested"), json!({ "keep": "me" }));
    must(store.save_session(&record).await, "save_session");
    let base = now_ms() + Duration::days(1);
    for round in 0..10_i64 {
        let written: Vec<time::OffsetDateTime> = (0..TASKS)
            .map(|task| {
                let task = i64::try_from(task).unwrap_or(0);
                base + Duration::minutes(round * 100 + task) + Duration::milliseconds(task * 7 + 1)
            })
            .collect();
        let shared = Arc::clone(&store);
        let id = record.id.clone();
        let values = written.clone();
        let outcomes = race(TASKS, move |task| {
            let store = Arc::clone(&shared);
            let id = id.clone();
            let expires_at = values[task];
            async move { store.update_session_expiry(&id, expires_at).await }
        })
        .await;
        for outcome in outcomes {
            must(outcome, "update_session_expiry");
        }
        let fetched = must(store.fetch_session(&record.id).await, "fetch_session");
        let Some(fetched) = fetched else {
            panic!("round {round}: concurrent updates lost the record");
        };
        assert!(
            written.contains(&fetched.expires_at),
            "round {round}: the stored expiry {} is none of the values written",
            fetched.expires_at
        );
        record.expires_at = fetched.expires_at;
        assert_same_record(Some(&fetched), &record, "after concurrent updates");
    }
}
