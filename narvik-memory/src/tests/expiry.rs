//! Expiry: listing and purge cut off at the `now` they are given, fetch and update judge by
//! the wall clock, an expired record is never revived, and a purge removes each one once.

use narvik_core::SessionStore;
use time::{Duration, OffsetDateTime};

use super::{ids, live, record, wall_now};
use crate::MemoryStore;

/// A real expiry short enough to wait out in a test, long enough that the steps before the
/// wait finish while the record is still live.
const SHORT: std::time::Duration = std::time::Duration::from_millis(800);

/// Waits until the wall clock is past `at`.
async fn wait_past(at: OffsetDateTime) {
    let left = at - OffsetDateTime::now_utc() + Duration::milliseconds(50);
    if left.is_positive() {
        tokio::time::sleep(left.unsigned_abs()).await;
    }
}

#[tokio::test]
async fn listing_and_purge_cut_off_at_the_given_now() {
    let store = MemoryStore::new();
    let now = wall_now();
    for i in 0..10 {
        let expires_at = now + Duration::minutes(i + 1);
        let user = if i % 2 == 0 { "even" } else { "odd" };
        store
            .save_session(&record(&format!("s{i}"), user, expires_at))
            .await
            .expect("save");
    }
    // The engine's clock may run ahead of the wall clock (a ManualClock): listing and purge
    // follow the `now` they are given, the wall clock plays no part.
    let later = now + Duration::minutes(4);
    let even = store
        .fetch_sessions_for_user("even", now)
        .await
        .expect("even");
    assert_eq!(ids(&even), ["s0", "s2", "s4", "s6", "s8"]);
    // Expiry is exclusive: s3 expires exactly at `later`, so s0..=s3 are dead then.
    let even = store
        .fetch_sessions_for_user("even", later)
        .await
        .expect("even");
    assert_eq!(ids(&even), ["s4", "s6", "s8"]);
    let odd = store
        .fetch_sessions_for_user("odd", later)
        .await
        .expect("odd");
    assert_eq!(ids(&odd), ["s5", "s7", "s9"]);
    assert_eq!(
        store.delete_all_expired_sessions(now).await.expect("purge"),
        0,
        "nothing has expired at the wall clock's now"
    );
    assert_eq!(store.len(), 10);
    assert_eq!(
        store
            .delete_all_expired_sessions(later)
            .await
            .expect("purge"),
        4
    );
    assert_eq!(store.len(), 6);
    assert_eq!(store.fetch_session("s3").await.expect("fetch"), None);
    assert!(store.fetch_session("s4").await.expect("fetch").is_some());
    assert_eq!(
        store
            .delete_all_expired_sessions(later)
            .await
            .expect("purge"),
        0
    );
    store.assert_consistent();
}

#[tokio::test]
async fn a_listing_behind_the_wall_clock_still_shows_what_fetch_hides() {
    // Listing follows its `now`; fetch hiding follows the wall clock. The two meet only when
    // the engine's clock is the wall clock, which is what the clock rule asks of a deployment.
    let store = MemoryStore::new();
    let now = wall_now();
    store
        .save_session(&record("gone", "alice", now - Duration::seconds(1)))
        .await
        .expect("save");
    assert_eq!(store.fetch_session("gone").await.expect("fetch"), None);
    let listed = store
        .fetch_sessions_for_user("alice", now - Duration::minutes(1))
        .await
        .expect("list");
    assert_eq!(ids(&listed), ["gone"]);
    assert!(store
        .fetch_sessions_for_user("alice", now)
        .await
        .expect("list")
        .is_empty());
}

#[tokio::test]
async fn fetch_hides_records_expired_by_the_wall_clock_until_purged() {
    let store = MemoryStore::new();
    let now = wall_now();
    let short_expiry = now + Duration::try_from(SHORT).expect("short duration");
    store
        .save_session(&record("past", "alice", now - Duration::milliseconds(1)))
        .await
        .expect("an already expired record is accepted");
    store
        .save_session(&record("short", "alice", short_expiry))
        .await
        .expect("save");
    store
        .save_session(&record("long", "alice", now + Duration::hours(1)))
        .await
        .expect("save");
    assert_eq!(store.fetch_session("past").await.expect("fetch"), None);
    assert!(store.fetch_session("short").await.expect("fetch").is_some());
    wait_past(short_expiry).await;
    assert_eq!(store.fetch_session("short").await.expect("fetch"), None);
    assert!(store.fetch_session("long").await.expect("fetch").is_some());
    assert_eq!(store.len(), 3, "hidden, not yet removed");
    assert_eq!(
        store
            .delete_all_expired_sessions(wall_now())
            .await
            .expect("purge"),
        2,
        "the record saved already expired is kept and counted"
    );
    assert_eq!(store.len(), 1);
    store.assert_consistent();
}

#[tokio::test]
async fn update_moves_the_expiry_index_and_never_creates() {
    let store = MemoryStore::new();
    let now = wall_now();
    store
        .save_session(&record("a", "alice", now + Duration::minutes(1)))
        .await
        .expect("save");
    store
        .update_session_expiry("a", now + Duration::hours(1))
        .await
        .expect("update");
    store
        .update_session_expiry("ghost", now + Duration::hours(1))
        .await
        .expect("update of a missing id");
    assert_eq!(
        store.purge_expired_at(now + Duration::minutes(2)),
        0,
        "the old expiry must be gone"
    );
    let fetched = live(&store, "a").await;
    assert_eq!(fetched.expires_at, now + Duration::hours(1));
    assert_eq!(store.fetch_session("ghost").await.expect("fetch"), None);
    assert_eq!(store.len(), 1);
    // Moving the expiry of a live record back into the past makes it purgeable at once.
    store.update_session_expiry("a", now).await.expect("update");
    assert_eq!(store.raw_entry("a"), Some(("alice".to_owned(), now)));
    assert_eq!(store.purge_expired_at(wall_now()), 1);
    assert!(store.is_empty());
    store.assert_consistent();
}

#[tokio::test]
async fn update_on_an_expired_record_does_not_revive_it() {
    let store = MemoryStore::new();
    let now = wall_now();
    let old = now - Duration::seconds(1);
    store
        .save_session(&record("dead", "alice", old))
        .await
        .expect("save");
    store
        .update_session_expiry("dead", now + Duration::hours(1))
        .await
        .expect("update");
    let expired = record("dead", "alice", old);
    store
        .update_record_expiry(&expired, now + Duration::hours(2))
        .await
        .expect("update through the record");
    assert_eq!(store.fetch_session("dead").await.expect("fetch"), None);
    assert_eq!(
        store.raw_entry("dead"),
        Some(("alice".to_owned(), old)),
        "the old expiry stays, in the record and in the expiry index"
    );
    assert!(store
        .fetch_sessions_for_user("alice", wall_now())
        .await
        .expect("list")
        .is_empty());
    store.assert_consistent();
    assert_eq!(store.purge_expired_at(wall_now()), 1);
    assert!(store.is_empty());
}

#[tokio::test]
async fn update_after_a_short_expiry_passes_does_not_revive_it() {
    let store = MemoryStore::new();
    let now = wall_now();
    let short_expiry = now + Duration::try_from(SHORT).expect("short duration");
    store
        .save_session(&record("brief", "alice", short_expiry))
        .await
        .expect("save");
    wait_past(short_expiry).await;
    store
        .update_session_expiry("brief", wall_now() + Duration::days(1))
        .await
        .expect("update");
    assert_eq!(store.fetch_session("brief").await.expect("fetch"), None);
    assert_eq!(
        store.raw_entry("brief"),
        Some(("alice".to_owned(), short_expiry))
    );
    store.assert_consistent();
}

#[tokio::test]
async fn a_mass_expiry_is_purged_in_batches_and_counted_once() {
    // One shard, so the purge has to take its lock several times.
    let store = MemoryStore::with_shards(1);
    let now = wall_now();
    for i in 0..2_500 {
        let user = format!("u{}", i % 7);
        store
            .save_session(&record(
                &format!("s{i}"),
                &user,
                now + Duration::milliseconds(i),
            ))
            .await
            .expect("save");
    }
    // Expiry is exclusive: s0..=s2400 are dead 2.4 s on.
    assert_eq!(
        store
            .delete_all_expired_sessions(now + Duration::milliseconds(2_400))
            .await
            .expect("purge"),
        2_401
    );
    assert_eq!(store.len(), 99);
    store.assert_consistent();
}
