//! The purge: it deletes exactly the expired records and counts them as the store declares.

use std::sync::Arc;

use narvik_core::{SessionRecord, SessionStore};
use serde_json::json;
use time::Duration;

use super::{assert_count, delete_expired, DELETE_EXPIRED};
use crate::harness::{
    assert_absent, assert_stored, assert_user_lists, declared_absent, expired_record, live_record,
    random_user_id, record_expiring_in, save_all, wait_until_expired,
};
use crate::Capabilities;

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
