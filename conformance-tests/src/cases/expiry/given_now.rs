//! Listing and purge judge by the `now` the caller gives, never by a clock of their own.

use std::sync::Arc;

use narvik_core::{OptionalOperation, SessionRecord, SessionStore};
use serde_json::json;
use time::Duration;

use super::{assert_count, DELETE_EXPIRED};
use crate::harness::{
    assert_absent, assert_same_set, assert_stored, assert_user_lists, declared_absent, live_record,
    must, now_ms, random_user_id, save_all,
};
use crate::Capabilities;

/// Records expiring in an hour and in three days, and two exactly at and just after a cutoff
/// two hours ahead: listed at the wall clock's now, all of them; listed at now + 2 h, only
/// the three-day ones and the one a millisecond past the cutoff (`expires_at > now`); listed
/// four days ahead, none.
///
/// Catches a listing that filters on the store's own clock instead of the `now` it is given
/// (the engine's clock), and a listing that keeps a record expiring exactly at `now`.
pub async fn fetch_for_user_filters_on_the_given_now(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    if declared_absent(
        store.as_ref(),
        capabilities,
        OptionalOperation::FetchSessionsForUser,
    )
    .await
    {
        return;
    }
    let user_id = random_user_id("timed");
    let now = now_ms();
    let cutoff = now + Duration::hours(2);
    let at = |expires_at, data| {
        let mut record = live_record(&user_id, data);
        record.expires_at = expires_at;
        record
    };
    let within_the_hour: Vec<SessionRecord> = (0..3)
        .map(|n| {
            at(
                now + Duration::hours(1) + Duration::milliseconds(n),
                json!(n),
            )
        })
        .collect();
    let in_three_days: Vec<SessionRecord> = (0..2)
        .map(|n| {
            at(
                now + Duration::days(3) + Duration::milliseconds(n),
                json!(n),
            )
        })
        .collect();
    let at_cutoff = at(cutoff, json!("at the cutoff"));
    let past_cutoff = at(cutoff + Duration::milliseconds(1), json!("past the cutoff"));
    let all: Vec<SessionRecord> = within_the_hour
        .iter()
        .chain(&in_three_days)
        .chain([&at_cutoff, &past_cutoff])
        .cloned()
        .collect();
    save_all(store.as_ref(), &all).await;

    let list = |at| {
        let store = Arc::clone(&store);
        let user_id = user_id.clone();
        async move {
            must(
                store.fetch_sessions_for_user(&user_id, at).await,
                "fetch_sessions_for_user",
            )
        }
    };
    assert_same_set(list(now).await, &all, "the listing at the wall clock's now");
    let mut live_at_cutoff = in_three_days.clone();
    live_at_cutoff.push(past_cutoff);
    assert_same_set(
        list(cutoff).await,
        &live_at_cutoff,
        "the listing at now + 2 h (a store must filter on the `now` it is given, and a record \
         expiring exactly then is not live)",
    );
    assert_same_set(
        list(now + Duration::days(4)).await,
        &[],
        "the listing at now + 4 days",
    );
}

/// Records expiring in an hour (and one exactly at the cutoff) and in three days (and one a
/// millisecond past it): a purge at the wall clock's now deletes nothing (0); a purge at
/// now + 2 h deletes exactly the hour ones and the one at the cutoff (`expires_at <= now`),
/// counted exactly or by the at-most rule, and a second one finds nothing.
///
/// Catches a purge that cuts off on the store's own clock instead of the `now` it is given
/// (it then deletes nothing, or deletes by the server's TTL only), and an off-by-one cutoff.
pub async fn delete_expired_cuts_off_at_the_given_now(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    if declared_absent(store.as_ref(), capabilities, DELETE_EXPIRED).await {
        return;
    }
    let users = [random_user_id("cut-a"), random_user_id("cut-b")];
    let now = now_ms();
    let cutoff = now + Duration::hours(2);
    let at = |n: usize, expires_at, data| {
        let mut record = live_record(&users[n % 2], data);
        record.expires_at = expires_at;
        record
    };
    let mut doomed: Vec<SessionRecord> = (0..4)
        .map(|n| {
            let offset = Duration::milliseconds(i64::try_from(n).unwrap_or(0));
            at(n, now + Duration::hours(1) + offset, json!({ "hour": n }))
        })
        .collect();
    doomed.push(at(0, cutoff, json!("at the cutoff")));
    let mut kept: Vec<SessionRecord> = (0..3)
        .map(|n| at(n, now + Duration::days(3), json!({ "days": n })))
        .collect();
    kept.push(at(
        1,
        cutoff + Duration::milliseconds(1),
        json!("past the cutoff"),
    ));
    save_all(store.as_ref(), &doomed).await;
    save_all(store.as_ref(), &kept).await;

    let at_now = must(
        store.delete_all_expired_sessions(now_ms()).await,
        "delete_all_expired_sessions",
    );
    assert_eq!(
        at_now, 0,
        "a purge at the wall clock's now, with nothing expired yet, counted {at_now}"
    );
    for record in doomed.iter().chain(&kept) {
        assert_stored(store.as_ref(), record, "a live record after a purge at now").await;
    }

    let counted = must(
        store.delete_all_expired_sessions(cutoff).await,
        "delete_all_expired_sessions at now + 2 h",
    );
    assert_count(
        capabilities,
        counted,
        doomed.len(),
        "a purge at now + 2 h (a store must cut off on the `now` it is given)",
    );
    for record in &doomed {
        assert_absent(
            store.as_ref(),
            &record.id,
            "a record expired at the given now, after the purge at now + 2 h",
        )
        .await;
    }
    for record in &kept {
        assert_stored(
            store.as_ref(),
            record,
            "a record live at the given now, after the purge at now + 2 h",
        )
        .await;
    }
    for user in &users {
        let theirs: Vec<SessionRecord> = kept
            .iter()
            .filter(|record| &record.user_id == user)
            .cloned()
            .collect();
        let context = "a user's listing after the purge at now + 2 h";
        assert_user_lists(store.as_ref(), capabilities, user, &theirs, context).await;
    }
    let again = must(
        store.delete_all_expired_sessions(cutoff).await,
        "a second delete_all_expired_sessions at now + 2 h",
    );
    assert_eq!(again, 0, "a second purge at the same now counted {again}");
}
