//! The per-user calls and the user index: they touch only the user named, and long user ids
//! kept once in the index are never mixed up.

use narvik_core::SessionStore;
use time::Duration;

use super::{record, wall_now};
use crate::MemoryStore;

#[tokio::test]
async fn per_user_calls_touch_only_that_user() {
    let store = MemoryStore::new();
    let now = wall_now();
    let later = now + Duration::hours(1);
    for (id, user) in [
        ("1", "a%"),
        ("2", "a%"),
        ("3", "ab"),
        ("4", "x*"),
        ("5", "xy"),
    ] {
        store
            .save_session(&record(id, user, later))
            .await
            .expect("save");
    }
    store.delete_sessions_for_user("a%").await.expect("delete");
    store
        .delete_sessions_for_user("nobody")
        .await
        .expect("delete");
    assert_eq!(store.fetch_session("1").await.expect("fetch"), None);
    assert_eq!(
        store
            .fetch_sessions_for_user("ab", now)
            .await
            .expect("ab")
            .len(),
        1
    );
    assert_eq!(
        store
            .fetch_sessions_for_user("x*", now)
            .await
            .expect("x*")
            .len(),
        1
    );
    assert_eq!(store.len(), 3);
    // An id freed by the delete can be saved again, for another user.
    store
        .save_session(&record("1", "ab", later))
        .await
        .expect("resave");
    assert_eq!(
        store
            .fetch_sessions_for_user("ab", now)
            .await
            .expect("ab")
            .len(),
        2
    );
    assert!(store
        .fetch_sessions_for_user("a%", now)
        .await
        .expect("a%")
        .is_empty());
    store.assert_consistent();
}

/// User ids longer than a record holds inline are kept once, in the user index, and records
/// hold a handle to that copy: fetch, listing and per-user delete resolve it, and a handle
/// freed by one long user and taken by another never mixes their sessions up.
#[tokio::test]
async fn long_user_ids_are_kept_once_and_never_mixed_up() {
    // One user shard, so that the second long user takes the first one's freed slot.
    let store = MemoryStore::with_shards(1);
    let now = wall_now();
    let later = now + Duration::hours(1);
    let first = format!("{}-first", "ü".repeat(100));
    let second = format!("{}-second", "x".repeat(300));
    for n in 0..50 {
        store
            .save_session(&record(&format!("f{n}"), &first, later))
            .await
            .expect("save");
    }
    store.assert_consistent();
    let fetched = store
        .fetch_session("f7")
        .await
        .expect("fetch")
        .expect("saved");
    assert_eq!(fetched.user_id, first);
    assert_eq!(
        store
            .fetch_sessions_for_user(&first, now)
            .await
            .expect("list")
            .len(),
        50
    );
    // A listing taken now, replayed after the first user is gone and the second has taken
    // its slots, must not show the second user's sessions.
    store
        .delete_sessions_for_user(&first)
        .await
        .expect("delete");
    assert!(store.is_empty());
    for n in 0..50 {
        store
            .save_session(&record(&format!("s{n}"), &second, later))
            .await
            .expect("save");
    }
    assert!(store
        .fetch_sessions_for_user(&first, now)
        .await
        .expect("list")
        .is_empty());
    let listed = store
        .fetch_sessions_for_user(&second, now)
        .await
        .expect("list");
    assert_eq!(listed.len(), 50);
    assert!(listed.iter().all(|record| record.user_id == second));
    store
        .delete_sessions_for_user(&first)
        .await
        .expect("delete");
    assert_eq!(store.len(), 50, "deleting the first user spares the second");
    store.assert_consistent();
    assert_eq!(store.purge_expired_at(later), 50);
    assert!(store.is_empty());
    store.assert_consistent();
}
