//! The store's own internals: index consistency, expiry handling, the sweeper.

use std::collections::HashMap;
use std::sync::Arc;

use narvik_core::{Clock, Error, ManualClock, SessionRecord, SessionStore};
use serde_json::json;
use time::{Duration, OffsetDateTime};

use crate::MemoryStore;

fn record(id: &str, user_id: &str, expires_at: OffsetDateTime) -> SessionRecord {
    SessionRecord {
        id: id.to_owned(),
        user_id: user_id.to_owned(),
        expires_at,
        created_at: expires_at - Duration::days(30),
        data: json!({ "id": id, "nested": [1, 2, { "x": "ü" }] }).into(),
    }
}

fn manual_store() -> (Arc<ManualClock>, MemoryStore) {
    let clock = Arc::new(ManualClock::starting_now());
    let store = MemoryStore::with_clock(clock.clone());
    (clock, store)
}

/// A small deterministic generator, so failures replay exactly.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

#[tokio::test]
async fn save_is_insert_only_and_keeps_the_original() {
    let (clock, store) = manual_store();
    let original = record("a", "alice", clock.now() + Duration::hours(1));
    store.save_session(&original).await.expect("save");
    let mut twin = record("a", "bob", clock.now() + Duration::hours(2));
    twin.data = json!("other").into();
    assert!(matches!(
        store.save_session(&twin).await,
        Err(Error::DuplicateId)
    ));
    assert_eq!(
        store.fetch_session("a").await.expect("fetch"),
        Some(original)
    );
    assert!(store
        .fetch_sessions_for_user("bob")
        .await
        .expect("bob")
        .is_empty());
    store.assert_consistent();
}

#[tokio::test]
async fn expired_records_are_hidden_until_purged_and_counted_exactly() {
    let (clock, store) = manual_store();
    let now = clock.now();
    for i in 0..10 {
        let expires_at = now + Duration::minutes(i + 1);
        let user = if i % 2 == 0 { "even" } else { "odd" };
        store
            .save_session(&record(&format!("s{i}"), user, expires_at))
            .await
            .expect("save");
    }
    clock.advance(Duration::minutes(4));
    // Expiry is exclusive: s3 expires exactly now, so s0..=s3 are dead.
    assert_eq!(store.fetch_session("s3").await.expect("fetch"), None);
    assert!(store.fetch_session("s4").await.expect("fetch").is_some());
    let even = store.fetch_sessions_for_user("even").await.expect("even");
    let mut ids: Vec<_> = even.iter().map(|r| r.id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["s4", "s6", "s8"]);
    assert_eq!(store.len(), 10, "hidden, not yet removed");
    assert_eq!(store.delete_all_expired_sessions().await.expect("purge"), 4);
    assert_eq!(store.len(), 6);
    assert_eq!(store.delete_all_expired_sessions().await.expect("purge"), 0);
    store.assert_consistent();
}

#[tokio::test]
async fn update_moves_the_expiry_index_and_never_creates() {
    let (clock, store) = manual_store();
    let now = clock.now();
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
    clock.advance(Duration::minutes(2));
    assert_eq!(store.purge_expired(), 0, "the old expiry must be gone");
    let fetched = store
        .fetch_session("a")
        .await
        .expect("fetch")
        .expect("live");
    assert_eq!(fetched.expires_at, now + Duration::hours(1));
    assert_eq!(store.fetch_session("ghost").await.expect("fetch"), None);
    assert_eq!(store.len(), 1);
    // Moving the expiry back into the past makes it purgeable at once.
    store.update_session_expiry("a", now).await.expect("update");
    assert_eq!(store.purge_expired(), 1);
    assert!(store.is_empty());
    store.assert_consistent();
}

#[tokio::test]
async fn per_user_calls_touch_only_that_user() {
    let (clock, store) = manual_store();
    let later = clock.now() + Duration::hours(1);
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
        store.fetch_sessions_for_user("ab").await.expect("ab").len(),
        1
    );
    assert_eq!(
        store.fetch_sessions_for_user("x*").await.expect("x*").len(),
        1
    );
    assert_eq!(store.len(), 3);
    // An id freed by the delete can be saved again, for another user.
    store
        .save_session(&record("1", "ab", later))
        .await
        .expect("resave");
    assert_eq!(
        store.fetch_sessions_for_user("ab").await.expect("ab").len(),
        2
    );
    assert!(store
        .fetch_sessions_for_user("a%")
        .await
        .expect("a%")
        .is_empty());
    store.assert_consistent();
}

#[tokio::test]
async fn a_mass_expiry_is_purged_in_batches_and_counted_once() {
    let clock = Arc::new(ManualClock::starting_now());
    // One shard, so the purge has to take its lock several times.
    let store = MemoryStore::with_shards(1, clock.clone());
    let now = clock.now();
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
    clock.advance(Duration::milliseconds(2_400));
    // Expiry is exclusive: s0..=s2400 are dead.
    assert_eq!(
        store.delete_all_expired_sessions().await.expect("purge"),
        2_401
    );
    assert_eq!(store.len(), 99);
    store.assert_consistent();
}

#[test]
fn shard_count_is_a_power_of_two() {
    let clock = Arc::new(ManualClock::starting_now());
    for (asked, got) in [
        (0, 1),
        (1, 1),
        (3, 4),
        (64, 64),
        (65, 128),
        (usize::MAX, 1 << 16),
    ] {
        let store = MemoryStore::with_shards(asked, clock.clone());
        assert_eq!(store.shard_count(), got);
    }
}

/// Tasks own disjoint ids but share users (so user shards are contended), each keeping its
/// own model; the store must end equal to the union of the models, with consistent indexes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_mixed_operations_keep_every_index_exact() {
    let clock = Arc::new(ManualClock::starting_now());
    let store = Arc::new(MemoryStore::with_shards(8, clock.clone()));
    let now = clock.now();
    let mut tasks = Vec::new();
    for task in 0..16u64 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut rng = Lcg(task + 1);
            let mut model: HashMap<String, (String, OffsetDateTime)> = HashMap::new();
            for _ in 0..2_000 {
                // Odd tasks use ids of the engine's shape (kept decoded), even ones any string.
                let n = rng.below(50);
                let id = if task % 2 == 1 {
                    format!("{:064x}", task << 32 | n)
                } else {
                    format!("t{task}-{n}")
                };
                let user = format!("u{}", rng.below(5));
                let expires_at = now + Duration::minutes(rng.below(120) as i64 - 30);
                match rng.below(4) {
                    0 => {
                        let saved = store.save_session(&record(&id, &user, expires_at)).await;
                        match model.get(&id) {
                            Some(_) => assert!(matches!(saved, Err(Error::DuplicateId))),
                            None => {
                                saved.expect("save");
                                model.insert(id, (user, expires_at));
                            }
                        }
                    }
                    1 => {
                        store
                            .update_session_expiry(&id, expires_at)
                            .await
                            .expect("update");
                        if let Some(entry) = model.get_mut(&id) {
                            entry.1 = expires_at;
                        }
                    }
                    2 => {
                        store.delete_session(&id).await.expect("delete");
                        model.remove(&id);
                    }
                    _ => {
                        let fetched = store.fetch_session(&id).await.expect("fetch");
                        let expected = model
                            .get(&id)
                            .filter(|(_, expires_at)| now < *expires_at)
                            .map(|(user, _)| user.clone());
                        assert_eq!(fetched.map(|r| r.user_id), expected);
                    }
                }
                // Readers of the user index run against the writers all along.
                if rng.below(50) == 0 {
                    let user = format!("u{}", rng.below(5));
                    for found in store.fetch_sessions_for_user(&user).await.expect("user") {
                        assert_eq!(found.user_id, user);
                        assert!(now < found.expires_at);
                    }
                }
            }
            model
        }));
    }
    let mut expected: HashMap<String, (String, OffsetDateTime)> = HashMap::new();
    for task in tasks {
        expected.extend(task.await.expect("task"));
    }
    store.assert_consistent();
    assert_eq!(store.len(), expected.len());
    for (id, (user, expires_at)) in &expected {
        assert_eq!(
            store.raw_entry(id),
            Some((user.clone(), *expires_at)),
            "record {id}"
        );
    }
    let expired = expected.values().filter(|(_, at)| *at <= now).count() as u64;
    assert_eq!(store.purge_expired(), expired);
    store.assert_consistent();
}

/// A delete racing an update (and a purge racing both) never leaves a record or a stale
/// index entry behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delete_racing_update_and_purge_never_resurrects() {
    let clock = Arc::new(ManualClock::starting_now());
    let store = Arc::new(MemoryStore::with_shards(4, clock.clone()));
    let now = clock.now();
    for round in 0..300 {
        let id = format!("race-{round}");
        store
            .save_session(&record(&id, "racer", now - Duration::seconds(1)))
            .await
            .expect("save");
        let updater = {
            let (store, id) = (Arc::clone(&store), id.clone());
            tokio::spawn(async move {
                for step in 0..5 {
                    store
                        .update_session_expiry(&id, now + Duration::minutes(step))
                        .await
                        .expect("update");
                }
            })
        };
        let deleter = {
            let (store, id) = (Arc::clone(&store), id.clone());
            tokio::spawn(async move {
                if round % 2 == 0 {
                    store.delete_session(&id).await.expect("delete");
                } else {
                    store
                        .delete_sessions_for_user("racer")
                        .await
                        .expect("delete");
                }
            })
        };
        let purger = {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.purge_expired() })
        };
        updater.await.expect("updater");
        deleter.await.expect("deleter");
        purger.await.expect("purger");
        store
            .update_session_expiry(&id, now + Duration::hours(1))
            .await
            .expect("update");
        assert_eq!(
            store.fetch_session(&id).await.expect("fetch"),
            None,
            "round {round}"
        );
    }
    assert!(store.is_empty());
    store.assert_consistent();
}

#[cfg(feature = "sweeper")]
mod sweeper {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn sweeper_purges_on_its_period_and_stops_with_its_handle() {
        let clock = Arc::new(ManualClock::starting_now());
        let store = Arc::new(MemoryStore::with_clock(clock.clone()));
        let now = clock.now();
        store
            .save_session(&record("short", "alice", now + Duration::seconds(5)))
            .await
            .expect("save");
        store
            .save_session(&record("long", "alice", now + Duration::days(1)))
            .await
            .expect("save");
        let sweeper = store.spawn_sweeper(std::time::Duration::from_secs(60));
        clock.advance(Duration::seconds(10));
        // Paused time: this sleep jumps the runtime's clock past the first tick at once.
        tokio::time::sleep(std::time::Duration::from_secs(61)).await;
        assert_eq!(
            store.len(),
            1,
            "the expired record is purged by the sweeper"
        );
        assert!(store.fetch_session("long").await.expect("fetch").is_some());
        store.assert_consistent();
        sweeper.stop();
    }

    #[tokio::test(start_paused = true)]
    async fn sweeper_ends_when_the_store_is_dropped() {
        let store = Arc::new(MemoryStore::new());
        let sweeper = store.spawn_sweeper(std::time::Duration::from_millis(10));
        drop(store);
        for _ in 0..100 {
            if sweeper.is_finished() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the sweeper kept running after its store was dropped");
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_handle_stops_the_task() {
        let store = Arc::new(MemoryStore::new());
        let sweeper = store.spawn_sweeper(std::time::Duration::ZERO);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        drop(sweeper);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        // The task held only a weak reference and is aborted: we are the sole owner.
        assert_eq!(Arc::strong_count(&store), 1);
        assert_eq!(Arc::weak_count(&store), 0);
    }
}
