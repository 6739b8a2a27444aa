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
    assert_absent, assert_all_absent, assert_all_stored, assert_same_record, assert_same_set,
    assert_stored, assert_user_lists, declared_absent, expired_record, ids_of, list_at,
    live_record, must, now_ms, race, race_delete_against, random_session_id, random_user_id,
    save_all, save_concurrently, wait_until_expired, BULK_TASKS,
};
use crate::{Capabilities, ExpiredCount};

/// Tasks in the concurrent cases.
const TASKS: usize = 20;

/// Checks that the store holds exactly `records` for `user_id`: by the user listing when the
/// store has one, else by fetching every id from [`BULK_TASKS`] tasks. Returns how many
/// records the store showed.
async fn assert_user_holds(
    store: &Arc<dyn SessionStore>,
    capabilities: Capabilities,
    user_id: &str,
    records: Vec<SessionRecord>,
    context: &'static str,
) -> usize {
    if capabilities.fetch_sessions_for_user {
        let listed = must(
            store.fetch_sessions_for_user(user_id, now_ms()).await,
            "fetch_sessions_for_user",
        );
        let shown = listed.len();
        assert_same_set(listed, &records, context);
        return shown;
    }
    assert_all_stored(store, &records, context).await;
    records.len()
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

/// `delete_sessions_for_user(u)` runs (five times over) while 16 tasks save sessions for
/// other users, near twins of `u` among them (`u` extended, truncated, upper-cased, with a
/// trailing space): every session of the others survives, every session `u` had before is
/// gone.
///
/// Catches a per-user delete that rewrites shared state from a snapshot (read everything,
/// drop `u`'s, write the rest back: a concurrent save is lost), that deletes by a pattern, or
/// whose index clean-up removes entries it did not read.
pub async fn delete_for_user_racing_saves_of_others_leaves_them(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    if declared_absent(
        store.as_ref(),
        capabilities,
        narvik_core::OptionalOperation::DeleteSessionsForUser,
    )
    .await
    {
        return;
    }
    const DELETES: usize = 5;
    const PER_SAVER: usize = 25;
    let doomed = random_user_id("doomed-racing");
    let before: Vec<SessionRecord> = (0..50)
        .map(|n| live_record(&doomed, json!({ "before": n })))
        .collect();
    crate::harness::save_concurrently(&store, before.clone(), BULK_TASKS).await;
    let mut others: Vec<String> = (0..BULK_TASKS - 4)
        .map(|n| random_user_id(&format!("neighbour{n}")))
        .collect();
    others.extend([
        format!("{doomed}x"),
        doomed[..doomed.len() - 1].to_owned(),
        doomed.to_uppercase(),
        format!("{doomed} "),
    ]);
    let batches: Vec<Vec<SessionRecord>> = others
        .iter()
        .map(|user| {
            (0..PER_SAVER)
                .map(|n| live_record(user, json!({ "other": user, "n": n })))
                .collect()
        })
        .collect();

    let shared = Arc::clone(&store);
    let saving = batches.clone();
    let doomed_id = doomed.clone();
    race(BULK_TASKS + DELETES, move |task| {
        let store = Arc::clone(&shared);
        let records = saving.get(task).cloned();
        let doomed = doomed_id.clone();
        async move {
            match records {
                Some(records) => save_all(store.as_ref(), &records).await,
                None => {
                    for _ in 0..4 {
                        must(
                            store.delete_sessions_for_user(&doomed).await,
                            "delete_sessions_for_user",
                        );
                        tokio::task::yield_now().await;
                    }
                }
            }
        }
    })
    .await;

    assert_all_absent(
        &store,
        &ids_of(&before),
        "a session the user had before their sessions were deleted",
    )
    .await;
    let all_others: Vec<SessionRecord> = batches.iter().flatten().cloned().collect();
    assert_all_stored(
        &store,
        &all_others,
        "another user's session saved while a per-user delete ran",
    )
    .await;
    for (user, records) in others.iter().zip(&batches) {
        let context = "the listing of a user whose sessions were saved during a per-user delete";
        assert_user_lists(store.as_ref(), capabilities, user, records, context).await;
    }
    assert_user_lists(
        store.as_ref(),
        capabilities,
        &doomed,
        &[],
        "the listing of the deleted user",
    )
    .await;
}

/// Sessions of one user are saved by 8 tasks while `delete_sessions_for_user` of that user
/// runs again and again: afterwards every session of the user that `fetch_session` still
/// returns is also in the user's listing (record and index agree), and one more
/// `delete_sessions_for_user` leaves none of them.
///
/// Catches a per-user delete that reads the index, deletes those records, then drops the whole
/// index (a session saved in between stays fetchable but is no longer listed, and no per-user
/// delete ever finds it again: an orphan that outlives "sign out everywhere").
pub async fn concurrent_save_and_delete_for_user_never_leaves_orphans(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    if declared_absent(
        store.as_ref(),
        capabilities,
        narvik_core::OptionalOperation::DeleteSessionsForUser,
    )
    .await
    {
        return;
    }
    const SAVERS: usize = 8;
    const PER_SAVER: usize = 60;
    const DELETERS: usize = 2;
    let user_id = random_user_id("orphans");
    let batches: Vec<Vec<SessionRecord>> = (0..SAVERS)
        .map(|task| {
            (0..PER_SAVER)
                .map(|n| live_record(&user_id, json!({ "task": task, "n": n })))
                .collect()
        })
        .collect();
    let shared = Arc::clone(&store);
    let saving = batches.clone();
    let deleted_user = user_id.clone();
    race(SAVERS + DELETERS, move |task| {
        let store = Arc::clone(&shared);
        let records = saving.get(task).cloned();
        let user_id = deleted_user.clone();
        async move {
            match records {
                Some(records) => {
                    for (n, record) in records.iter().enumerate() {
                        must(store.save_session(record).await, "save_session");
                        if n % 8 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                }
                None => {
                    for _ in 0..15 {
                        must(
                            store.delete_sessions_for_user(&user_id).await,
                            "delete_sessions_for_user",
                        );
                        tokio::task::yield_now().await;
                    }
                }
            }
        }
    })
    .await;

    let saved: Vec<SessionRecord> = batches.into_iter().flatten().collect();
    if capabilities.fetch_sessions_for_user {
        let mut survivors = Vec::new();
        for record in &saved {
            if let Some(found) = must(store.fetch_session(&record.id).await, "fetch_session") {
                assert_same_record(Some(&found), record, "a session that survived the deletes");
                survivors.push(found);
            }
        }
        assert_same_set(
            list_at(store.as_ref(), &user_id, now_ms()).await,
            &survivors,
            "the user's listing against the sessions fetch_session still returns (a session \
             that is fetched but not listed is an orphan no per-user delete will find)",
        );
    }
    must(
        store.delete_sessions_for_user(&user_id).await,
        "a final delete_sessions_for_user",
    );
    assert_all_absent(
        &store,
        &ids_of(&saved),
        "a session of the user after a final delete_sessions_for_user (an orphan of the \
         concurrent ones?)",
    )
    .await;
    assert_user_lists(
        store.as_ref(),
        capabilities,
        &user_id,
        &[],
        "the user's listing after a final delete_sessions_for_user",
    )
    .await;
}

/// Four purges started together over 200 expired records (and 20 live ones): together they
/// count each expired record at most once (exactly once in all on an exact-count store), every
/// expired one is gone, and no live one is touched.
///
/// Catches a purge that counts the expired records, then deletes them in a second step and
/// reports the earlier count: run at once, each purge counts the same records, and the counts
/// add up to more than were deleted.
pub async fn concurrent_purges_count_each_record_once(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    use narvik_core::OptionalOperation;
    if declared_absent(
        store.as_ref(),
        capabilities,
        OptionalOperation::DeleteAllExpiredSessions,
    )
    .await
    {
        return;
    }
    const EXPIRED: usize = 200;
    const PURGES: usize = 4;
    let user_id = random_user_id("purged-together");
    let expired: Vec<SessionRecord> = (0..EXPIRED)
        .map(|n| expired_record(capabilities, &user_id, n, json!({ "expired": n })))
        .collect();
    let live: Vec<SessionRecord> = (0..20)
        .map(|n| live_record(&user_id, json!({ "live": n })))
        .collect();
    save_concurrently(&store, expired.clone(), BULK_TASKS).await;
    save_concurrently(&store, live.clone(), BULK_TASKS).await;
    wait_until_expired(&expired).await;

    let counts = race(PURGES, |_| {
        let store = Arc::clone(&store);
        async move {
            must(
                store.delete_all_expired_sessions(now_ms()).await,
                "delete_all_expired_sessions",
            )
        }
    })
    .await;
    let total: u64 = counts.iter().sum();
    let expired_count = u64::try_from(EXPIRED).unwrap_or(u64::MAX);
    match capabilities.expired_count {
        ExpiredCount::Exact if capabilities.keeps_already_expired => assert_eq!(
            total, expired_count,
            "{PURGES} concurrent purges of {EXPIRED} expired records counted {counts:?}: each \
             record must be counted by exactly one of them"
        ),
        _ => assert!(
            total <= expired_count,
            "{PURGES} concurrent purges of {EXPIRED} expired records counted {counts:?}, \
             {total} in all: a record was counted by more than one purge"
        ),
    }
    assert_all_absent(
        &store,
        &ids_of(&expired),
        "an expired record after concurrent purges",
    )
    .await;
    assert_all_stored(&store, &live, "a live record after concurrent purges").await;
    let again = must(
        store.delete_all_expired_sessions(now_ms()).await,
        "delete_all_expired_sessions",
    );
    assert_eq!(
        again, 0,
        "a purge after the concurrent ones still found {again}"
    );
}
