//! Sizes past the common page and batch limits: a per-user listing of 2,500 sessions, a
//! per-user delete of 1,500, one expired purge of 5,000 among live records.
//!
//! A store that pages its reads or batches its deletes (a `LIMIT 1000`, a cursor's first
//! batch, a `SCAN` without its continuation, a delete of the first N ids) passes every small
//! case and fails these. They save from [`BULK_TASKS`] concurrent
//! tasks so that slow servers get through them in seconds.

use std::sync::Arc;

use narvik_core::{OptionalOperation, SessionRecord, SessionStore};
use serde_json::json;
use time::Duration;

use crate::harness::{
    assert_all_absent, assert_all_stored, assert_same_set, assert_user_lists, declared_absent,
    expired_record, ids_of, list_at, live_record, must, now_ms, random_user_id, record_expiring_in,
    save_all, save_concurrently, save_expiring_soon, wait_until_expired, BULK_TASKS,
};
use crate::{Capabilities, ExpiredCount};

const FETCH: OptionalOperation = OptionalOperation::FetchSessionsForUser;
const DELETE: OptionalOperation = OptionalOperation::DeleteSessionsForUser;
const DELETE_EXPIRED: OptionalOperation = OptionalOperation::DeleteAllExpiredSessions;

/// One user with 2,500 live sessions (and a few expired ones of the same user, and a few of
/// another user) gets each live one exactly once, every field as saved.
///
/// Catches a listing that stops at a page or batch limit (1,000, 2,048), returns a record
/// twice across pages, or leaks the expired or the other user's sessions into a big result.
pub async fn fetch_for_user_2500_sessions(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    if declared_absent(store.as_ref(), capabilities, FETCH).await {
        return;
    }
    const COUNT: usize = 2_500;
    let user_id = random_user_id("crowded");
    let other = random_user_id("crowded-other");
    // Saved first, so that on a store that needs them to expire by its own clock the wait
    // overlaps the big save.
    let expired: Vec<SessionRecord> = (0..5)
        .map(|n| expired_record(capabilities, &user_id, n, json!({ "expired": n })))
        .collect();
    save_all(store.as_ref(), &expired).await;
    let records: Vec<SessionRecord> = (0..COUNT)
        .map(|n| live_record(&user_id, json!({ "n": n })))
        .collect();
    let others: Vec<SessionRecord> = (0..3)
        .map(|n| live_record(&other, json!({ "other": n })))
        .collect();
    save_all(store.as_ref(), &others).await;
    save_concurrently(&store, records.clone(), BULK_TASKS).await;
    wait_until_expired(&expired).await;

    let listed = list_at(store.as_ref(), &user_id, now_ms()).await;
    assert_eq!(
        listed.len(),
        COUNT,
        "a listing of {COUNT} live sessions of one user returned {} records",
        listed.len()
    );
    assert_same_set(listed, &records, "a listing of 2,500 sessions");
    assert_same_set(
        list_at(store.as_ref(), &other, now_ms()).await,
        &others,
        "another user's listing next to a user with 2,500 sessions",
    );
}

/// 1,500 sessions of one user go in one `delete_sessions_for_user` call: every one is gone,
/// and another user's sessions (including near-twin ids that extend, truncate or change the
/// case of the user id) are untouched.
///
/// Catches a delete that removes only the first page or batch (1,000 ids, one `SCAN` round),
/// or one that matches user ids loosely.
pub async fn delete_for_user_1500_sessions(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    if declared_absent(store.as_ref(), capabilities, DELETE).await {
        return;
    }
    const COUNT: usize = 1_500;
    let user_id = random_user_id("departing");
    let records: Vec<SessionRecord> = (0..COUNT)
        .map(|n| live_record(&user_id, json!({ "n": n })))
        .collect();
    let bystander_users = [
        random_user_id("staying"),
        format!("{user_id}x"),
        user_id[..user_id.len() - 1].to_owned(),
        format!("x{user_id}"),
        user_id.to_uppercase(),
        format!("{user_id} "),
    ];
    let bystanders: Vec<SessionRecord> = bystander_users
        .iter()
        .flat_map(|user| (0..2).map(move |n| live_record(user, json!({ "by": user, "n": n }))))
        .collect();
    save_all(store.as_ref(), &bystanders).await;
    save_concurrently(&store, records.clone(), BULK_TASKS).await;

    must(
        store.delete_sessions_for_user(&user_id).await,
        "delete_sessions_for_user of a user with 1,500 sessions",
    );
    assert_all_absent(
        &store,
        &ids_of(&records),
        "a session of a user whose 1,500 sessions were deleted in one call",
    )
    .await;
    assert_user_lists(
        store.as_ref(),
        capabilities,
        &user_id,
        &[],
        "the listing of a user whose 1,500 sessions were deleted",
    )
    .await;
    assert_all_stored(
        &store,
        &bystanders,
        "another user's session after a 1,500-session delete",
    )
    .await;
    for user in &bystander_users {
        let theirs: Vec<SessionRecord> = bystanders
            .iter()
            .filter(|record| &record.user_id == user)
            .cloned()
            .collect();
        assert_user_lists(
            store.as_ref(),
            capabilities,
            user,
            &theirs,
            "a near-twin user's listing after a 1,500-session delete",
        )
        .await;
    }
}

/// 5,000 expired records among 500 live ones (ten users, each with both): one purge call
/// deletes every expired one and no live one, the count is exact (or within the declared
/// at-most rule), and a second purge finds nothing.
///
/// Catches a purge that deletes one batch (`LIMIT 1000`, one `SCAN` round, a cursor's first
/// batch) and reports it as the whole, a count taken before a partial delete, or a cutoff that
/// reaches into records expiring in minutes.
///
/// On a store that does not keep records saved already expired, each record gets its short
/// expiry right before its own save, so a slow server still receives it live; a record whose
/// save returned only after its expiry may have been dropped, and an exact count then ranges
/// between the records surely stored and all of them.
pub async fn delete_expired_5000_among_live_counts_exactly(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    if declared_absent(store.as_ref(), capabilities, DELETE_EXPIRED).await {
        return;
    }
    const EXPIRED: usize = 5_000;
    const LIVE: usize = 500;
    const USERS: usize = 10;
    let users: Vec<String> = (0..USERS)
        .map(|n| random_user_id(&format!("purge{n}")))
        .collect();
    let live: Vec<SessionRecord> = (0..LIVE)
        .map(|n| {
            // A tenth expire within the hour: a cutoff that reaches past now takes them (an hour,
            // not minutes, so a slow server cannot outlast it).
            let expires_in = if n % 10 == 0 {
                Duration::hours(1)
            } else {
                Duration::days(3)
            };
            record_expiring_in(&users[n % USERS], expires_in, json!({ "live": n }))
        })
        .collect();
    let templates: Vec<SessionRecord> = (0..EXPIRED)
        .map(|n| expired_record(capabilities, &users[n % USERS], n, json!({ "expired": n })))
        .collect();

    save_concurrently(&store, live.clone(), BULK_TASKS).await;
    // (surely stored, possibly stored)
    let (expired, surely_stored): (Vec<SessionRecord>, usize) =
        if capabilities.keeps_already_expired {
            save_concurrently(&store, templates.clone(), BULK_TASKS).await;
            (templates, EXPIRED)
        } else {
            let saved = save_expiring_soon(&store, templates).await;
            let surely = saved.iter().filter(|saved| saved.saved_live).count();
            (
                saved.into_iter().map(|saved| saved.record).collect(),
                surely,
            )
        };
    wait_until_expired(&expired).await;

    let counted = must(
        store.delete_all_expired_sessions(now_ms()).await,
        "delete_all_expired_sessions over 5,000 expired records",
    );
    let total = u64::try_from(expired.len()).unwrap_or(u64::MAX);
    let surely = u64::try_from(surely_stored).unwrap_or(u64::MAX);
    match capabilities.expired_count {
        ExpiredCount::Exact => assert!(
            (surely..=total).contains(&counted),
            "one purge of {total} expired records (of which {surely} surely stored) counted \
             {counted}: an exact count must be the number deleted, all of them"
        ),
        ExpiredCount::AtMost => assert!(
            counted <= total,
            "one purge of {total} expired records counted {counted}: more than expired"
        ),
    }

    if capabilities.returns_expired() {
        // (A store that hides expired records answers None for them whether or not the purge
        // deleted them, so there the listing below and the second purge do the checking.)
        assert_all_absent(
            &store,
            &ids_of(&expired),
            "an expired record after one purge of 5,000",
        )
        .await;
    }
    assert_all_stored(&store, &live, "a live record after a purge of 5,000").await;
    if capabilities.fetch_sessions_for_user {
        // Listed at a time before any of them expired, the purged records must be gone too:
        // this sees what a store that hides expired records from `fetch_session` still holds.
        let before_all = expired
            .iter()
            .map(|record| record.expires_at)
            .min()
            .unwrap_or_else(now_ms)
            - Duration::milliseconds(1);
        for user in &users {
            let theirs: Vec<SessionRecord> = live
                .iter()
                .filter(|record| &record.user_id == user)
                .cloned()
                .collect();
            assert_same_set(
                list_at(store.as_ref(), user, now_ms()).await,
                &theirs,
                "a user's listing after a purge of 5,000",
            );
            assert_same_set(
                list_at(store.as_ref(), user, before_all).await,
                &theirs,
                "a user's listing, at a time before the purged records expired, after the \
                 purge (a purged record is deleted, not hidden)",
            );
        }
    }

    let second = must(
        store.delete_all_expired_sessions(now_ms()).await,
        "a second delete_all_expired_sessions",
    );
    assert_eq!(
        second, 0,
        "a second purge right after one that removed every expired record counted {second}"
    );
}
