//! The calls over many records (per-user deletion, the purge) racing saves and each other.

use std::sync::Arc;

use narvik_core::{SessionRecord, SessionStore};
use serde_json::json;

use crate::harness::{
    assert_all_absent, assert_all_stored, assert_same_record, assert_same_set, assert_user_lists,
    declared_absent, expired_record, ids_of, list_at, live_record, must, now_ms, race,
    random_user_id, save_all, save_concurrently, wait_until_expired, BULK_TASKS,
};
use crate::{Capabilities, ExpiredCount};

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
