//! Expired records: counted deletion of exactly the expired ones, and an expired record is
//! never taken for a live one.
//!
//! The counting cases rely on the factory's fresh namespace: they count what the namespace
//! holds.

use std::sync::Arc;

use narvik_core::{
    ManualClock, Narvik, OptionalOperation, SessionRecord, SessionStore, SessionToken,
};
use serde_json::json;
use time::Duration;

use crate::harness::{
    assert_absent, assert_stored, assert_user_lists, declared_absent, expired_record, live_record,
    must, now_ms, random_user_id, record_expiring_in, save_all, wait_until_expired,
};
use crate::{Capabilities, ExpiredCount};

const DELETE_EXPIRED: OptionalOperation = OptionalOperation::DeleteAllExpiredSessions;

async fn delete_expired(store: &dyn SessionStore) -> u64 {
    must(
        store.delete_all_expired_sessions().await,
        "delete_all_expired_sessions",
    )
}

/// Asserts a count against the number of expired records the namespace held.
#[track_caller]
fn assert_count(capabilities: Capabilities, counted: u64, expired: usize, context: &str) {
    let expired = u64::try_from(expired).unwrap_or(u64::MAX);
    match capabilities.expired_count {
        ExpiredCount::Exact => assert_eq!(
            counted, expired,
            "{context}: delete_all_expired_sessions must return exactly the number it deleted"
        ),
        ExpiredCount::AtMost => assert!(
            counted <= expired,
            "{context}: delete_all_expired_sessions counted {counted}, but only {expired} \
             records had expired (a live record or a record counted twice?)"
        ),
    }
}

/// Engine over `store` whose clock reads the wall clock's now.
fn engine(store: &Arc<dyn SessionStore>) -> Narvik<serde_json::Value> {
    Narvik::builder(Arc::clone(store))
        .clock(Arc::new(ManualClock::starting_now()))
        .build()
        .expect("the default configuration is valid")
}

/// Asserts that the engine does not accept `token`, whose record has expired, and that the
/// record is gone afterwards.
async fn assert_engine_rejects(store: &Arc<dyn SessionStore>, token: &SessionToken, context: &str) {
    let validated = must(
        engine(store).validate_session(token.as_str()).await,
        "validate_session",
    );
    assert!(
        validated.is_none(),
        "{context}: the engine took an expired record for live: {validated:?}"
    );
    assert_absent(store.as_ref(), &token.session_id(), context).await;
}

/// With live and expired sessions mixed across users, expired deletion removes exactly the
/// expired ones and leaves every live one as it was.
pub async fn delete_expired_removes_exactly_the_expired(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    if declared_absent(store.as_ref(), capabilities, DELETE_EXPIRED).await {
        return;
    }
    let users: Vec<String> = (0..3)
        .map(|n| random_user_id(&format!("mixed{n}")))
        .collect();
    let mut live = Vec::new();
    let mut expired = Vec::new();
    for (n, user) in users.iter().enumerate() {
        live.push(live_record(user, json!({ "live": n })));
        live.push(record_expiring_in(
            user,
            Duration::minutes(10),
            json!({ "soon": n }),
        ));
        expired.push(expired_record(
            capabilities,
            user,
            n,
            json!({ "expired": n }),
        ));
        expired.push(expired_record(capabilities, user, n + 24, json!(null)));
    }
    save_all(store.as_ref(), &expired).await;
    save_all(store.as_ref(), &live).await;
    wait_until_expired(&expired).await;

    let first = delete_expired(store.as_ref()).await;
    assert_count(capabilities, first, expired.len(), "first call");
    for record in &expired {
        assert_absent(
            store.as_ref(),
            &record.id,
            "an expired record after deletion",
        )
        .await;
    }
    for record in &live {
        assert_stored(
            store.as_ref(),
            record,
            "a live record after expired deletion",
        )
        .await;
    }
    for user in &users {
        let mine: Vec<SessionRecord> = live
            .iter()
            .filter(|r| &r.user_id == user)
            .cloned()
            .collect();
        let context = "a user's listing after expired deletion";
        assert_user_lists(store.as_ref(), capabilities, user, &mine, context).await;
    }
    let second = delete_expired(store.as_ref()).await;
    assert_count(
        capabilities,
        first + second,
        expired.len(),
        "first and second call together",
    );
}

/// The count reports how many expired records were deleted (exactly, or the store's honest
/// upper-bounded count), on a first batch and on a later one.
pub async fn delete_expired_returns_the_count(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    if declared_absent(store.as_ref(), capabilities, DELETE_EXPIRED).await {
        return;
    }
    let user = random_user_id("counted");
    let other = random_user_id("counted-other");
    let mut expired: Vec<SessionRecord> = (0..7)
        .map(|n| {
            expired_record(
                capabilities,
                if n % 2 == 0 { &user } else { &other },
                n,
                json!(n),
            )
        })
        .collect();
    let live: Vec<SessionRecord> = (0..5).map(|n| live_record(&user, json!(n))).collect();
    save_all(store.as_ref(), &live).await;
    save_all(store.as_ref(), &expired).await;
    wait_until_expired(&expired).await;
    assert_count(
        capabilities,
        delete_expired(store.as_ref()).await,
        expired.len(),
        "a batch of 7 expired records",
    );

    expired = (0..2)
        .map(|n| expired_record(capabilities, &other, n, json!({ "later": n })))
        .collect();
    save_all(store.as_ref(), &expired).await;
    wait_until_expired(&expired).await;
    assert_count(
        capabilities,
        delete_expired(store.as_ref()).await,
        expired.len(),
        "a later batch of 2 expired records",
    );
    for record in &live {
        assert_stored(store.as_ref(), record, "a live record after two deletions").await;
    }
}

/// With only live records (some expiring within minutes), the count is 0 and all remain.
pub async fn delete_expired_never_counts_live_records(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    if declared_absent(store.as_ref(), capabilities, DELETE_EXPIRED).await {
        return;
    }
    let user = random_user_id("all-live");
    let live: Vec<SessionRecord> = [
        Duration::minutes(2),
        Duration::minutes(5),
        Duration::hours(1),
        Duration::days(1),
        Duration::days(40),
    ]
    .into_iter()
    .enumerate()
    .map(|(n, expires_in)| record_expiring_in(&user, expires_in, json!(n)))
    .collect();
    save_all(store.as_ref(), &live).await;
    let counted = delete_expired(store.as_ref()).await;
    assert_eq!(
        counted, 0,
        "delete_all_expired_sessions counted live records"
    );
    for record in &live {
        assert_stored(
            store.as_ref(),
            record,
            "a live record after expired deletion",
        )
        .await;
    }
}

/// On an empty namespace the count is 0.
pub async fn delete_expired_on_empty_store_is_zero(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    if declared_absent(store.as_ref(), capabilities, DELETE_EXPIRED).await {
        return;
    }
    assert_eq!(
        delete_expired(store.as_ref()).await,
        0,
        "delete_all_expired_sessions on a fresh namespace"
    );
}

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
