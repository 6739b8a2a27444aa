//! An expired record is never taken for a live one: not by fetch, not when saved already
//! expired, and no expiry update revives it.

use std::sync::Arc;

use narvik_core::{SessionRecord, SessionStore, SessionToken};
use serde_json::json;
use time::Duration;

use super::{assert_count, assert_engine_rejects, delete_expired};
use crate::harness::{
    assert_absent, assert_stored, assert_user_lists, expired_record, live_record, must, now_ms,
    random_user_id, record_expiring_in, save_all, wait_until_expired, SHORT_EXPIRY,
};
use crate::Capabilities;

/// A fetch of an expired record returns it unchanged ([`ExpiredFetch::Returned`]) or `None`
/// ([`ExpiredFetch::Hidden`]), as declared; either way the engine never takes it for live,
/// and deletes it.
///
/// [`ExpiredFetch::Returned`]: crate::ExpiredFetch::Returned
/// [`ExpiredFetch::Hidden`]: crate::ExpiredFetch::Hidden
pub async fn fetch_of_expired_record(store: Arc<dyn SessionStore>, capabilities: Capabilities) {
    let token = must(SessionToken::generate(), "SessionToken::generate");
    let mut record = expired_record(capabilities, &random_user_id("stale"), 0, json!({ "x": 1 }));
    record.id = token.session_id();
    must(store.save_session(&record).await, "save_session");
    wait_until_expired(std::slice::from_ref(&record)).await;

    let fetched = must(store.fetch_session(&record.id).await, "fetch_session");
    if capabilities.returns_expired() {
        crate::harness::assert_same_record(
            fetched.as_ref(),
            &record,
            "an expired record on a store declaring `expired_fetch: ExpiredFetch::Returned` \
             (a store that hides expired records declares `ExpiredFetch::Hidden`)",
        );
    } else {
        assert!(
            fetched.is_none(),
            "a store declaring `expired_fetch: ExpiredFetch::Hidden` returned an expired record \
             (declare `ExpiredFetch::Returned` if it hands them to the engine): {fetched:?}"
        );
    }
    assert_engine_rejects(&store, &token, "an expired record after validation").await;
}

/// A record saved with an expiry already in the past is accepted (`Ok`), and never appears
/// as live afterwards: not in a user listing, not through the engine; it is kept or dropped
/// as declared, and counted at most once by expired deletion.
pub async fn save_already_expired_record(store: Arc<dyn SessionStore>, capabilities: Capabilities) {
    let user = random_user_id("born-dead");
    let past = |token: &SessionToken, hours: i64| {
        let expires_at = now_ms() - Duration::hours(hours);
        SessionRecord {
            id: token.session_id(),
            user_id: user.clone(),
            expires_at,
            created_at: expires_at - Duration::days(1),
            data: json!({ "hours_ago": hours }).into(),
            lifetime: None,
            data_version: 0,
        }
    };
    let engine_token = must(SessionToken::generate(), "SessionToken::generate");
    let store_token = must(SessionToken::generate(), "SessionToken::generate");
    let seen_by_engine = past(&engine_token, 1);
    let seen_by_store = past(&store_token, 30);
    for record in [&seen_by_engine, &seen_by_store] {
        must(
            store.save_session(record).await,
            "save_session of an already expired record",
        );
    }

    for record in [&seen_by_engine, &seen_by_store] {
        let fetched = must(store.fetch_session(&record.id).await, "fetch_session");
        if capabilities.returns_expired() && capabilities.keeps_already_expired {
            crate::harness::assert_same_record(
                fetched.as_ref(),
                record,
                "a record saved expired, on a store that keeps and returns expired records",
            );
        } else {
            assert!(
                fetched.is_none(),
                "the store declares that it hides (`ExpiredFetch::Hidden`) or drops \
                 (`keeps_already_expired: false`) expired records, yet returned {fetched:?}"
            );
        }
    }
    let context = "the listing of a user whose records were saved expired";
    assert_user_lists(store.as_ref(), capabilities, &user, &[], context).await;

    assert_engine_rejects(&store, &engine_token, "a record saved expired").await;

    if capabilities.delete_all_expired_sessions {
        let counted = delete_expired(store.as_ref()).await;
        // A kept record is still there unless the engine saw it (and deleted it), which it
        // does only on a store that returns expired records.
        let present = match (
            capabilities.keeps_already_expired,
            capabilities.returns_expired(),
        ) {
            (false, _) => 0,
            (true, true) => 1,
            (true, false) => 2,
        };
        assert_count(capabilities, counted, present, "records saved expired");
        assert_absent(store.as_ref(), &seen_by_store.id, "after expired deletion").await;
    }
}

/// Asserts that `record`, expired and then handed to an extension, is not live: hidden, or
/// (on a store returning expired records) gone or still exactly as saved, with its old expiry;
/// not listed; and not accepted by the engine.
async fn assert_not_revived(
    store: &Arc<dyn SessionStore>,
    capabilities: Capabilities,
    record: &SessionRecord,
    token: &SessionToken,
    context: &str,
) {
    let fetched = must(store.fetch_session(&record.id).await, "fetch_session");
    match fetched {
        None => {}
        Some(fetched) if capabilities.returns_expired() => crate::harness::assert_same_record(
            Some(&fetched),
            record,
            &format!(
                "{context}: an expired record must keep its old expiry (expired is as good as \
                 missing: an extension never revives it)"
            ),
        ),
        Some(fetched) => panic!(
            "{context}: the store declares `ExpiredFetch::Hidden`, yet after an extension of an \
             expired record it returned {fetched:?} (the extension revived it)"
        ),
    }
    assert_user_lists(
        store.as_ref(),
        capabilities,
        &record.user_id,
        &[],
        &format!("{context}: the listing of the expired record's user"),
    )
    .await;
    assert_engine_rejects(store, token, context).await;
}

/// An expired record that the engine has not deleted (and no purge has removed) gets an
/// extension to tomorrow: it stays dead. Fetch hides it, or returns it with its old expiry,
/// or it is gone; no listing shows it; the engine does not validate it.
///
/// Catches the memory and SQL stores of before v2, whose `UPDATE ... WHERE id = $1` brought an
/// expired session back to life for a day (an extension racing expiry, or a stale token).
pub async fn update_expiry_on_expired_record_does_nothing(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    let token = must(SessionToken::generate(), "SessionToken::generate");
    let mut record = expired_record(
        capabilities,
        &random_user_id("revived"),
        0,
        json!({ "x": 1 }),
    );
    record.id = token.session_id();
    must(store.save_session(&record).await, "save_session");
    wait_until_expired(std::slice::from_ref(&record)).await;
    must(
        store
            .update_session_expiry(&record.id, now_ms() + Duration::days(1))
            .await,
        "update_session_expiry of an expired record",
    );
    assert_not_revived(
        &store,
        capabilities,
        &record,
        &token,
        "an expired record after update_session_expiry",
    )
    .await;
}

/// `update_record_expiry` (the call the engine extends through, handing over the record it
/// fetched) keeps the rules of `update_session_expiry`: on a live record it changes the expiry
/// and nothing else; on a deleted or never-saved record it creates nothing; on an expired
/// record it does nothing.
///
/// Catches a store that, holding the whole record, writes it back (an upsert that re-creates
/// a logged-out session or revives an expired one), that moves its per-user index but not
/// the record, or that extends every session of the record's user (`WHERE user_id = ...`).
pub async fn update_record_expiry_follows_the_same_rules(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    // Saved first: on a store that needs it to expire by its own clock, the wait overlaps the
    // rest of the case.
    let token = must(SessionToken::generate(), "SessionToken::generate");
    let mut expired = expired_record(capabilities, &random_user_id("stale"), 0, json!("stale"));
    expired.id = token.session_id();
    must(store.save_session(&expired).await, "save_session");

    let live = live_record(&random_user_id("live"), json!({ "keep": ["all", 1, 2.5] }));
    // Another session of the same user, which the extension must leave as it was.
    let sibling = live_record(&live.user_id, json!("other device"));
    save_all(store.as_ref(), &[live.clone(), sibling.clone()]).await;
    let fetched = must(store.fetch_session(&live.id).await, "fetch_session")
        .expect("a record just saved is there");
    let mut expected = live.clone();
    expected.expires_at = live.expires_at + Duration::days(4) + Duration::milliseconds(3);
    must(
        store
            .update_record_expiry(&fetched, expected.expires_at)
            .await,
        "update_record_expiry of a live record",
    );
    assert_stored(
        store.as_ref(),
        &expected,
        "a live record after update_record_expiry",
    )
    .await;
    assert_stored(
        store.as_ref(),
        &sibling,
        "another session of the same user after update_record_expiry (only the given one moves)",
    )
    .await;
    let context = "the listing after update_record_expiry of a live record";
    let listed = [expected.clone(), sibling.clone()];
    assert_user_lists(
        store.as_ref(),
        capabilities,
        &live.user_id,
        &listed,
        context,
    )
    .await;

    let deleted = live_record(&random_user_id("logged-out"), json!({ "gone": true }));
    must(store.save_session(&deleted).await, "save_session");
    must(store.delete_session(&deleted.id).await, "delete_session");
    must(
        store
            .update_record_expiry(&deleted, deleted.expires_at + Duration::days(1))
            .await,
        "update_record_expiry of a deleted record",
    );
    assert_absent(
        store.as_ref(),
        &deleted.id,
        "a deleted record after update_record_expiry",
    )
    .await;
    let context = "the listing of a deleted record's user after update_record_expiry";
    assert_user_lists(store.as_ref(), capabilities, &deleted.user_id, &[], context).await;

    let never_saved = live_record(&random_user_id("never"), json!(null));
    must(
        store
            .update_record_expiry(&never_saved, never_saved.expires_at + Duration::days(1))
            .await,
        "update_record_expiry of a record never saved",
    );
    assert_absent(
        store.as_ref(),
        &never_saved.id,
        "a never-saved record after update_record_expiry",
    )
    .await;
    let context = "the listing of a never-saved record's user after update_record_expiry";
    assert_user_lists(
        store.as_ref(),
        capabilities,
        &never_saved.user_id,
        &[],
        context,
    )
    .await;

    wait_until_expired(std::slice::from_ref(&expired)).await;
    must(
        store
            .update_record_expiry(&expired, now_ms() + Duration::days(1))
            .await,
        "update_record_expiry of an expired record",
    );
    assert_not_revived(
        &store,
        capabilities,
        &expired,
        &token,
        "an expired record after update_record_expiry",
    )
    .await;
}

/// A record saved [`SHORT_EXPIRY`] before its expiry is extended to tomorrow (one through
/// `update_record_expiry`, one through `update_session_expiry`); after the old expiry has
/// passed by the wall clock, both are still fetched, with the new expiry, and listed.
///
/// Catches a store with a native TTL (Redis `PX`, a TTL index, a filter on the server's
/// clock) that writes the new expiry into the record but leaves the server's own expiry where
/// it was: the session vanishes at the old time although it was extended.
pub async fn extension_moves_the_stores_own_expiry(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    let user_id = random_user_id("extended");
    // On a loaded machine a slow server may take longer than the short expiry to take two saves
    // and two extensions; then the attempt proves nothing and is repeated with a longer one.
    let mut short = SHORT_EXPIRY;
    let (old, extended_by_record, extended_by_id) = loop {
        let soon = |data| record_expiring_in(&user_id, short, data);
        let (by_record, by_id) = (soon(json!("by record")), soon(json!("by id")));
        save_all(store.as_ref(), &[by_record.clone(), by_id.clone()]).await;

        let tomorrow = now_ms() + Duration::days(1);
        let mut extended_by_record = by_record.clone();
        extended_by_record.expires_at = tomorrow;
        let mut extended_by_id = by_id.clone();
        extended_by_id.expires_at = tomorrow + Duration::milliseconds(1);
        must(
            store.update_record_expiry(&by_record, tomorrow).await,
            "update_record_expiry",
        );
        must(
            store
                .update_session_expiry(&by_id.id, extended_by_id.expires_at)
                .await,
            "update_session_expiry",
        );
        if time::OffsetDateTime::now_utc() < by_record.expires_at {
            break ([by_record, by_id], extended_by_record, extended_by_id);
        }
        assert!(
            short < SHORT_EXPIRY * 8,
            "the store took more than {short} to save two records and extend them, four \
             times over, so the extensions always arrived after the records had expired"
        );
        for record in [&by_record, &by_id] {
            must(store.delete_session(&record.id).await, "delete_session");
        }
        short *= 2;
    };

    wait_until_expired(&old).await;
    let extended = [extended_by_record, extended_by_id];
    for record in &extended {
        assert_stored(
            store.as_ref(),
            record,
            "an extended record after its old expiry passed",
        )
        .await;
    }
    let context = "the listing of extended records after their old expiry passed";
    assert_user_lists(store.as_ref(), capabilities, &user_id, &extended, context).await;
}
