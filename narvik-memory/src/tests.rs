//! The store's own internals: index consistency, expiry handling.
//!
//! The store has no clock: listing and purge get their `now` here explicitly, and only the
//! tests of the two wall-clock decisions (fetch hiding, update refusal) use real, short
//! expiries.

use std::collections::HashMap;
use std::sync::Arc;

use narvik_core::{
    Capabilities, Error, ExpiredCount, ExpiredFetch, SessionData, SessionRecord, SessionStore,
};
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
        lifetime: None,
        data_version: 0,
    }
}

/// The wall clock to the millisecond, as the engine hands its `now` down.
fn wall_now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.millisecond() as u32 * 1_000_000)
        .expect("a whole millisecond is a valid nanosecond")
}

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

/// The record `id` of `store`, which must be there (a store error or a missing record fails
/// the test).
async fn live(store: &MemoryStore, id: &str) -> SessionRecord {
    store.fetch_session(id).await.expect("fetch").expect("live")
}

fn ids(records: &[SessionRecord]) -> Vec<&str> {
    let mut ids: Vec<_> = records.iter().map(|r| r.id.as_str()).collect();
    ids.sort_unstable();
    ids
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
    let store = MemoryStore::new();
    let now = wall_now();
    let original = record("a", "alice", now + Duration::hours(1));
    store.save_session(&original).await.expect("save");
    let mut twin = record("a", "bob", now + Duration::hours(2));
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
        .fetch_sessions_for_user("bob", now)
        .await
        .expect("bob")
        .is_empty());
    store.assert_consistent();
}

#[test]
fn declares_every_call_hidden_expired_fetch_and_exact_counts() {
    let declared = MemoryStore::new().capabilities();
    assert_eq!(declared, MemoryStore::CAPABILITIES);
    assert_eq!(
        declared,
        Capabilities {
            fetch_sessions_for_user: true,
            delete_sessions_for_user: true,
            delete_all_expired_sessions: true,
            update_session_data: true,
            expired_fetch: ExpiredFetch::Hidden,
            keeps_already_expired: true,
            expired_count: ExpiredCount::Exact,
            pushes_invalidations: false,
        }
    );
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
async fn lifetime_and_data_version_round_trip() {
    let store = MemoryStore::new();
    let later = wall_now() + Duration::hours(1);
    let cases = [
        (None, 0),
        (Some(Duration::milliseconds(1)), 1),
        (Some(Duration::days(365 * 100)), u64::MAX / 2),
        (Some(Duration::milliseconds(i64::MAX)), i64::MAX as u64),
    ];
    for (n, (lifetime, data_version)) in cases.into_iter().enumerate() {
        let mut saved = record(&format!("r{n}"), "alice", later);
        saved.lifetime = lifetime;
        saved.data_version = data_version;
        store.save_session(&saved).await.expect("save");
        let fetched = store.fetch_session(&saved.id).await.expect("fetch");
        assert_eq!(fetched, Some(saved));
    }
    for bad in [
        Duration::ZERO,
        Duration::milliseconds(-5),
        Duration::microseconds(999),
    ] {
        let mut saved = record("bad", "alice", later);
        saved.lifetime = Some(bad);
        assert!(
            matches!(store.save_session(&saved).await, Err(Error::InvalidData(_))),
            "lifetime {bad} must be refused"
        );
    }
    assert_eq!(store.fetch_session("bad").await.expect("fetch"), None);
    store.assert_consistent();
}

#[tokio::test]
async fn data_update_replaces_the_data_and_bumps_the_version_only() {
    let store = MemoryStore::with_shards(1);
    let now = wall_now();
    let long_user = "ü".repeat(100);
    let mut saved = record("a", &long_user, now + Duration::hours(1));
    saved.lifetime = Some(Duration::days(30));
    store.save_session(&saved).await.expect("save");
    let new_data: SessionData = json!({ "cart": [1, 2, 3], "text": "a longer value ü" }).into();
    assert!(store
        .update_session_data(&saved, &new_data, now)
        .await
        .expect("update"));
    let fetched = live(&store, "a").await;
    let mut expected = saved.clone();
    expected.data = new_data.clone();
    expected.data_version = 1;
    assert_eq!(fetched, expected);
    // The same read version again: stale, nothing changes.
    let other: SessionData = json!("other").into();
    assert!(!store
        .update_session_data(&saved, &other, now)
        .await
        .expect("stale"));
    assert_eq!(
        store.fetch_session("a").await.expect("fetch"),
        Some(expected.clone())
    );
    // From the new version, to `null` data: succeeds again.
    assert!(store
        .update_session_data(&fetched, &SessionData::default(), now)
        .await
        .expect("update"));
    let fetched = live(&store, "a").await;
    assert_eq!(fetched.data_version, 2);
    assert_eq!(fetched.data.to_json_text().expect("json"), "null");
    // Expiry, lifetime and the user index are untouched.
    assert_eq!(fetched.expires_at, saved.expires_at);
    assert_eq!(fetched.lifetime, saved.lifetime);
    assert_eq!(
        ids(&store
            .fetch_sessions_for_user(&long_user, now)
            .await
            .expect("list")),
        ["a"]
    );
    assert_eq!(store.purge_expired_at(now + Duration::minutes(59)), 0);
    assert_eq!(store.purge_expired_at(now + Duration::hours(1)), 1);
    store.assert_consistent();
}

#[tokio::test]
async fn data_update_never_creates_nor_revives() {
    let store = MemoryStore::new();
    let now = wall_now();
    let data: SessionData = json!({ "x": 1 }).into();
    // Missing.
    let ghost = record("ghost", "alice", now + Duration::hours(1));
    assert!(!store
        .update_session_data(&ghost, &data, now)
        .await
        .expect("missing"));
    assert_eq!(store.len(), 0);
    // Expired exactly at `now`, and past it; live one millisecond before.
    let saved = record("a", "alice", now + Duration::minutes(1));
    store.save_session(&saved).await.expect("save");
    let at_expiry = saved.expires_at;
    assert!(!store
        .update_session_data(&saved, &data, at_expiry)
        .await
        .expect("expired at now"));
    assert!(!store
        .update_session_data(&saved, &data, at_expiry + Duration::hours(1))
        .await
        .expect("expired"));
    let raw = live(&store, "a").await;
    assert_eq!(raw, saved, "a refused update changes nothing");
    assert!(store
        .update_session_data(&saved, &data, at_expiry - Duration::milliseconds(1))
        .await
        .expect("live"));
    // Deleted.
    store.delete_session("a").await.expect("delete");
    let mut read = saved.clone();
    read.data_version = 1;
    assert!(!store
        .update_session_data(&read, &data, now)
        .await
        .expect("deleted"));
    assert!(store.is_empty());
    // The last version cannot be bumped: refused, not wrapped.
    let mut top = record("top", "alice", now + Duration::hours(1));
    top.data_version = u64::MAX;
    store.save_session(&top).await.expect("save");
    assert!(!store
        .update_session_data(&top, &data, now)
        .await
        .expect("top"));
    store.assert_consistent();
}

#[tokio::test]
async fn concurrent_data_updates_at_one_version_have_one_winner() {
    let store = Arc::new(MemoryStore::new());
    let now = wall_now();
    let saved = record("a", "alice", now + Duration::hours(1));
    store.save_session(&saved).await.expect("save");
    let tasks: Vec<_> = (0..16)
        .map(|n| {
            let (store, saved) = (Arc::clone(&store), saved.clone());
            tokio::spawn(async move {
                let data: SessionData = json!({ "winner": n }).into();
                store
                    .update_session_data(&saved, &data, now)
                    .await
                    .expect("update")
                    .then_some(n)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        winners.extend(task.await.expect("task"));
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let fetched = live(&store, "a").await;
    assert_eq!(fetched.data_version, 1);
    assert_eq!(
        fetched.data.to_value().expect("json").into_owned(),
        json!({ "winner": winners[0] })
    );
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

#[test]
fn shard_count_is_a_power_of_two() {
    for (asked, got) in [
        (0, 1),
        (1, 1),
        (3, 4),
        (64, 64),
        (65, 128),
        (usize::MAX, 1 << 16),
    ] {
        let store = MemoryStore::with_shards(asked);
        assert_eq!(store.shard_count(), got);
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

/// A canonical id (64 lowercase hex digits) is kept as 32 bytes, every other id as its text;
/// near twins of a canonical id (upper case, a space, one digit short or long) stay distinct
/// records, each fetched, listed and deleted under its exact id.
#[tokio::test]
async fn canonical_ids_and_their_text_twins_stay_distinct() {
    let store = MemoryStore::new();
    let now = wall_now();
    let canonical = narvik_core::token::session_id_from_token("abcdefghijklmnopqrstuvwxyz234567");
    let twins = [
        canonical.clone(),
        canonical.to_uppercase(),
        format!("{canonical} "),
        canonical[..63].to_owned(),
        format!("{canonical}0"),
        format!("{}é", &canonical[..62]),
    ];
    for (n, id) in twins.iter().enumerate() {
        let mut saved = record(id, "alice", now + Duration::hours(1));
        saved.data = json!({ "n": n }).into();
        store.save_session(&saved).await.expect("save");
    }
    assert!(matches!(
        store
            .save_session(&record(&canonical, "bob", now + Duration::hours(1)))
            .await,
        Err(Error::DuplicateId)
    ));
    for (n, id) in twins.iter().enumerate() {
        let fetched = store
            .fetch_session(id)
            .await
            .expect("fetch")
            .expect("saved");
        assert_eq!(&fetched.id, id);
        assert_eq!(fetched.data, json!({ "n": n }));
    }
    let mut listed: Vec<String> = store
        .fetch_sessions_for_user("alice", now)
        .await
        .expect("list")
        .into_iter()
        .map(|record| record.id)
        .collect();
    listed.sort_unstable();
    let mut expected = twins.to_vec();
    expected.sort_unstable();
    assert_eq!(listed, expected);
    store.delete_session(&canonical).await.expect("delete");
    assert_eq!(store.fetch_session(&canonical).await.expect("fetch"), None);
    assert!(store
        .fetch_session(&twins[1])
        .await
        .expect("fetch")
        .is_some());
    assert_eq!(store.len(), twins.len() - 1);
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

/// Times are kept to the millisecond, the precision of every narvik store, across the whole
/// range of `OffsetDateTime`, before 1970 too; a finer part is dropped, as the other stores do.
#[tokio::test]
async fn times_are_kept_to_the_millisecond_over_the_whole_range() {
    use time::macros::datetime;

    let store = MemoryStore::new();
    let far = datetime!(9999-12-31 23:59:59.999 UTC);
    let mut saved = record("far", "alice", far);
    saved.created_at = datetime!(-9999-01-01 0:00:00.001 UTC);
    store.save_session(&saved).await.expect("save");
    assert_eq!(
        store.fetch_session("far").await.expect("fetch"),
        Some(saved)
    );

    let mut early = record("early", "alice", datetime!(1969-12-31 23:59:59.999 UTC));
    early.created_at = datetime!(1960-06-15 12:00:00.5 +02:00);
    store.save_session(&early).await.expect("save");
    let listed = store
        .fetch_sessions_for_user("alice", datetime!(1969-12-31 23:59:59.998 UTC))
        .await
        .expect("list");
    let listed = listed.iter().find(|r| r.id == "early").expect("live then");
    assert_eq!(listed.expires_at, early.expires_at);
    assert_eq!(listed.created_at, early.created_at, "the same instant");

    let fine = wall_now() + Duration::hours(1);
    let mut sub_ms = record("fine", "alice", fine + Duration::nanoseconds(999_999));
    sub_ms.created_at = fine + Duration::microseconds(1);
    store.save_session(&sub_ms).await.expect("save");
    let fetched = live(&store, "fine").await;
    assert_eq!((fetched.expires_at, fetched.created_at), (fine, fine));
    store.assert_consistent();
}

/// Data is kept as its compact JSON text and handed out as text (the engine decodes the
/// application's type straight from it); `null` is kept as nothing and handed out shared; text
/// a caller saved as it was is returned as it was.
#[tokio::test]
async fn data_is_kept_as_compact_json_text() {
    let store = MemoryStore::new();
    let later = wall_now() + Duration::hours(1);
    let value = json!({ "b": [1, -2.5, null, "ü\"\\"], "a": { "n": u64::MAX, "f": 0.1 } });
    let mut saved = record("value", "alice", later);
    saved.data = value.clone().into();
    store.save_session(&saved).await.expect("save");
    let fetched = live(&store, "value").await;
    assert!(
        matches!(
            fetched.data.to_json_text(),
            Ok(std::borrow::Cow::Borrowed(_))
        ),
        "handed out as text, not as a parsed tree"
    );
    assert_eq!(
        fetched.data.to_json_text().expect("text"),
        serde_json::to_string(&value).expect("json")
    );
    assert_eq!(fetched.data, value);

    let mut null = record("null", "alice", later);
    null.data = SessionData::default();
    store.save_session(&null).await.expect("save");
    let fetched = live(&store, "null").await;
    assert_eq!(fetched.data, serde_json::Value::Null);
    assert_eq!(fetched.data.decode::<()>().ok(), Some(()));

    let spaced = r#"{ "kept" : "as it was" }"#;
    let mut text = record("text", "alice", later);
    text.data = SessionData::from_json_text(spaced);
    store.save_session(&text).await.expect("save");
    let fetched = live(&store, "text").await;
    assert_eq!(fetched.data.to_json_text().expect("text"), spaced);
    store.assert_consistent();
}

/// Slots freed by deletes and purges are reused, and the indexes stay exact through it.
#[tokio::test]
async fn freed_slots_are_reused_and_indexes_stay_exact() {
    let store = MemoryStore::with_shards(2);
    let now = wall_now();
    for round in 0..4i64 {
        for n in 0..700i64 {
            let id = format!("{:064x}", round * 1_000 + n);
            let user = format!("u{}", n % 13);
            store
                .save_session(&record(&id, &user, now + Duration::minutes(n % 3 + round)))
                .await
                .expect("save");
        }
        // Drop most of them again, by purge, by user and one by one.
        store.purge_expired_at(now + Duration::minutes(round + 1));
        store.delete_sessions_for_user("u3").await.expect("delete");
        for n in (0..700i64).step_by(5) {
            store
                .delete_session(&format!("{:064x}", round * 1_000 + n))
                .await
                .expect("delete");
        }
        store.assert_consistent();
    }
    let left = store.len();
    assert!(left > 0 && left < 4 * 700, "{left}");
    assert_eq!(
        store.purge_expired_at(now + Duration::days(1)) as usize,
        left
    );
    assert!(store.is_empty());
    store.assert_consistent();
}
