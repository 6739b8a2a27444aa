//! Many tasks at once: no lost writes, exactly one winner of a duplicate race, no resurrection
//! by a racing extension, and an exact final state after a mixed stress run.

use std::collections::HashMap;
use std::sync::Arc;

use narvik_core::{Error, SessionRecord, SessionStore};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use time::Duration;

use crate::harness::{
    assert_absent, assert_same_record, assert_same_set, assert_stored, assert_user_lists, join_all,
    live_record, must, now_ms, race, random_session_id, random_user_id, save_all,
};
use crate::Capabilities;

/// Tasks in the concurrent cases.
const TASKS: usize = 20;

/// Checks that the store holds exactly `records` for `user_id`: by the user listing when the
/// store has one, else by fetching every id from [`TASKS`] tasks.
async fn assert_user_holds(
    store: &Arc<dyn SessionStore>,
    capabilities: Capabilities,
    user_id: &str,
    records: Vec<SessionRecord>,
    context: &'static str,
) {
    if capabilities.fetch_sessions_for_user {
        let listed = must(
            store.fetch_sessions_for_user(user_id).await,
            "fetch_sessions_for_user",
        );
        assert_same_set(listed, &records, context);
        return;
    }
    let chunk = records.len().div_ceil(TASKS).max(1);
    let handles = records
        .chunks(chunk)
        .map(|part| {
            let part = part.to_vec();
            let store = Arc::clone(store);
            tokio::spawn(async move {
                for record in &part {
                    assert_stored(store.as_ref(), record, context).await;
                }
            })
        })
        .collect();
    join_all(handles).await;
}

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
    let mut total = 0;
    for (user_id, records) in batches {
        total += records.len();
        assert_user_holds(
            &store,
            capabilities,
            &user_id,
            records,
            "a record saved concurrently",
        )
        .await;
    }
    assert_eq!(total, TASKS * PER_TASK);
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
    const ROUNDS: usize = 200;
    let user_id = random_user_id("racing");
    for round in 0..ROUNDS {
        let record = live_record(&user_id, json!({ "round": round }));
        must(store.save_session(&record).await, "save_session");
        let shared = Arc::clone(&store);
        let id = record.id.clone();
        let extended_to = record.expires_at + Duration::days(1);
        let outcomes = race(2, move |task| {
            let store = Arc::clone(&shared);
            let id = id.clone();
            async move {
                // Alternate who is spawned first so both orders get their chance.
                if (task + round) % 2 == 0 {
                    store.delete_session(&id).await
                } else {
                    store.update_session_expiry(&id, extended_to).await
                }
            }
        })
        .await;
        for outcome in outcomes {
            must(outcome, "delete_session or update_session_expiry");
        }
        assert_absent(
            store.as_ref(),
            &record.id,
            &format!("round {round}: a delete raced an update"),
        )
        .await;
    }
    assert_user_lists(
        store.as_ref(),
        capabilities,
        &user_id,
        &[],
        "the user listing after delete raced update",
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

/// One operation of the stress case.
#[derive(Debug, Clone, Copy)]
enum Op {
    Save,
    Update,
    Delete,
    Fetch,
}

/// 20 tasks run 500 random operations each (save, update, delete, fetch; 10,000 in all), each
/// task on its own ids so that its model of the store is exact; every answer matches the
/// model, and so does the final state.
pub async fn mixed_stress_10000_ops_exact_state(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    const OPS_PER_TASK: usize = 500;
    const IDS_PER_TASK: usize = 25;
    let seed: u64 = rand::random();
    let shared = Arc::clone(&store);
    let models = race(TASKS, move |task| {
        let store = Arc::clone(&shared);
        async move {
            let mut rng = StdRng::seed_from_u64(seed ^ (task as u64).wrapping_mul(0x9e37_79b9));
            let user_id = random_user_id(&format!("stress{task}"));
            let ids: Vec<String> = (0..IDS_PER_TASK).map(|_| random_session_id()).collect();
            let mut model: HashMap<String, SessionRecord> = HashMap::new();
            let base = now_ms() + Duration::days(2);
            for step in 0..OPS_PER_TASK {
                let id = &ids[rng.random_range(0..IDS_PER_TASK)];
                let op = [Op::Save, Op::Update, Op::Delete, Op::Fetch][rng.random_range(0..4)];
                let expires_at = base + Duration::milliseconds(rng.random_range(0..86_400_000));
                let context = format!("stress task {task} step {step} ({op:?}, seed {seed})");
                match op {
                    Op::Save => {
                        let mut record =
                            live_record(&user_id, json!({ "task": task, "step": step }));
                        record.id.clone_from(id);
                        record.expires_at = expires_at;
                        match (store.save_session(&record).await, model.contains_key(id)) {
                            (Ok(()), false) => {
                                model.insert(id.clone(), record);
                            }
                            (Err(Error::DuplicateId), true) => {}
                            (outcome, exists) => panic!(
                                "{context}: save answered {outcome:?} where the id {} exist",
                                if exists { "did" } else { "did not" }
                            ),
                        }
                    }
                    Op::Update => {
                        must(
                            store.update_session_expiry(id, expires_at).await,
                            "update_session_expiry",
                        );
                        if let Some(record) = model.get_mut(id) {
                            record.expires_at = expires_at;
                        }
                    }
                    Op::Delete => {
                        must(store.delete_session(id).await, "delete_session");
                        model.remove(id);
                    }
                    Op::Fetch => {
                        let fetched = must(store.fetch_session(id).await, "fetch_session");
                        match model.get(id) {
                            Some(expected) => {
                                assert_same_record(fetched.as_ref(), expected, &context)
                            }
                            None => assert!(
                                fetched.is_none(),
                                "{context}: fetched a record the model does not hold: {fetched:?}"
                            ),
                        }
                    }
                }
            }
            (user_id, ids, model)
        }
    })
    .await;
    for (user_id, ids, model) in models {
        for id in &ids {
            match model.get(id) {
                Some(expected) => assert_stored(store.as_ref(), expected, "final state").await,
                None => assert_absent(store.as_ref(), id, "final state").await,
            }
        }
        let expected: Vec<SessionRecord> = model.into_values().collect();
        assert_user_lists(
            store.as_ref(),
            capabilities,
            &user_id,
            &expected,
            "final listing of a stress task's user",
        )
        .await;
    }
}
