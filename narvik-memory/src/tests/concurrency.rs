//! Many tasks at once: the store ends equal to what they did, its indexes exact, and a delete
//! racing an update or a purge never brings a record back.

use std::collections::HashMap;
use std::sync::Arc;

use narvik_core::{Error, SessionStore};
use time::{Duration, OffsetDateTime};

use super::{record, wall_now};
use crate::MemoryStore;

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

/// Tasks own disjoint ids but share users (so user shards are contended), each keeping its
/// own model; the store must end equal to the union of the models, with consistent indexes.
///
/// Expiries are whole minutes from `now`, and the test takes seconds, so "expired by the wall
/// clock" (what fetch and update judge by) is "expires at or before `now`" throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_mixed_operations_keep_every_index_exact() {
    let store = Arc::new(MemoryStore::with_shards(8));
    let now = wall_now();
    let started = std::time::Instant::now();
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
                        // An expired record keeps its expiry: it is never revived.
                        if let Some(entry) = model.get_mut(&id).filter(|entry| now < entry.1) {
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
                    for found in store
                        .fetch_sessions_for_user(&user, now)
                        .await
                        .expect("user")
                    {
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
    assert!(
        started.elapsed() < std::time::Duration::from_secs(50),
        "the model assumes no live record expired by the wall clock during the run"
    );
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
    assert!(expired > 0, "the run must exercise expired records");
    assert_eq!(store.purge_expired_at(now), expired);
    store.assert_consistent();
}

/// A delete racing an update (and a purge racing both) never leaves a record or a stale
/// index entry behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delete_racing_update_and_purge_never_resurrects() {
    let store = Arc::new(MemoryStore::with_shards(4));
    let now = wall_now();
    for round in 0..300 {
        let id = format!("race-{round}");
        // Live, so the updates really move it; the purge runs at a `now` past every expiry
        // written (an engine clock ahead of the wall clock), so it races them too.
        store
            .save_session(&record(&id, "racer", now + Duration::hours(1)))
            .await
            .expect("save");
        let updater = {
            let (store, id) = (Arc::clone(&store), id.clone());
            tokio::spawn(async move {
                for step in 0..5 {
                    store
                        .update_session_expiry(&id, now + Duration::minutes(step + 1))
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
            tokio::spawn(async move { store.purge_expired_at(now + Duration::hours(2)) })
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
