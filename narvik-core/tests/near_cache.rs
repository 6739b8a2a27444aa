//! The engine's near cache over a store of the tests' own: what a hit costs, what drops an
//! entry, what the push channel's health does, and what the builder refuses. The stores that
//! push for real (Redis, Postgres) run the same rules against their servers in their own tests.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use common::MapStore;
use narvik_core::invalidation::{InvalidationHub, InvalidationSubscription};
use narvik_core::{
    Capabilities, CreatedSession, Error, ManualClock, Narvik, NearCacheConfig, Result, SessionData,
    SessionRecord,
};
use time::{Duration, OffsetDateTime};

/// [`MapStore`] that pushes the id of every session it deletes or changes, as a store with
/// server-side notifications does, and can be told its channel dropped.
#[derive(Default)]
struct PushingStore {
    map: MapStore,
    hub: InvalidationHub,
}

impl PushingStore {
    fn listening() -> Arc<Self> {
        let store = Arc::new(Self::default());
        store.hub.subscribed();
        store
    }

    /// The ids of the stored records `matching` picks: what a bulk delete is about to remove.
    fn ids_where(&self, matching: impl Fn(&SessionRecord) -> bool) -> Vec<String> {
        let records = self.map.records();
        records
            .values()
            .filter(|record| matching(record))
            .map(|record| record.id.clone())
            .collect()
    }
}

// Every call of the map's declaration: reads and extensions (which a push may leave out) go
// straight to the map, and each call that deletes or changes a record pushes its id. A bulk
// delete pushes the ids it was about to remove; pushing one that a racing call removed first
// only costs the cache a re-read.
narvik_core::forward_session_store! {
    impl SessionStore for PushingStore {
        inner = |this| &this.map;
        forward = [
            store_name, save_session, fetch_session, update_session_expiry, update_record_expiry,
            fetch_sessions_for_user,
        ];

        fn capabilities(&self) -> Capabilities {
            Capabilities {
                pushes_invalidations: true,
                ..self.map.capabilities()
            }
        }
        async fn delete_session(&self, session_id: &str) -> Result<()> {
            self.map.delete_session(session_id).await?;
            self.hub.invalidate([session_id.to_owned()]);
            Ok(())
        }
        async fn delete_sessions_for_user(&self, user_id: &str) -> Result<()> {
            let ids = self.ids_where(|record| record.user_id == user_id);
            self.map.delete_sessions_for_user(user_id).await?;
            self.hub.invalidate(ids);
            Ok(())
        }
        async fn delete_all_expired_sessions(&self, now: OffsetDateTime) -> Result<u64> {
            let ids = self.ids_where(|record| record.is_expired(now));
            let deleted = self.map.delete_all_expired_sessions(now).await?;
            self.hub.invalidate(ids);
            Ok(deleted)
        }
        async fn update_session_data(
            &self,
            record: &SessionRecord,
            data: &SessionData,
            now: OffsetDateTime,
        ) -> Result<bool> {
            let replaced = self.map.update_session_data(record, data, now).await?;
            if replaced {
                self.hub.invalidate([record.id.clone()]);
            }
            Ok(replaced)
        }
        fn subscribe_invalidations(&self) -> Option<InvalidationSubscription> {
            Some(self.hub.subscribe())
        }
    }
}

fn fetches(store: &PushingStore) -> usize {
    store.map.fetches.load(Ordering::SeqCst)
}

fn cached_engine(store: Arc<PushingStore>, clock: &Arc<ManualClock>) -> Narvik<Vec<u32>> {
    Narvik::builder(store)
        .session_lifetime(Duration::days(30))
        .clock(Arc::clone(clock) as _)
        .near_cache(NearCacheConfig::pushed())
        .build()
        .expect("a pushing store takes a pushed near cache")
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(OffsetDateTime::now_utc()))
}

/// Polls `done` every millisecond for up to two seconds.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !done() {
        assert!(
            started.elapsed() < StdDuration::from_secs(2),
            "{what}: not within 2 s"
        );
        tokio::time::sleep(StdDuration::from_millis(1)).await;
    }
}

/// What `narvik` answers for `token` (a store error fails the test).
async fn validated(
    narvik: &Narvik<Vec<u32>>,
    token: &narvik_core::SessionToken,
) -> Option<narvik_core::Session<Vec<u32>>> {
    narvik.validate_token(token).await.expect("validate")
}

/// A session of "alice" on `narvik`, validated once (so cached).
async fn sign_in_and_cache(narvik: &Narvik<Vec<u32>>) -> CreatedSession<Vec<u32>> {
    let created = narvik
        .create_session("alice", vec![])
        .await
        .expect("create");
    validated(narvik, &created.token).await;
    created
}

/// A pushing store, a clock, an engine with a pushed cache over them, and a session of
/// "alice" validated once (so cached).
async fn signed_in_and_cached() -> (
    Arc<PushingStore>,
    Arc<ManualClock>,
    Narvik<Vec<u32>>,
    CreatedSession<Vec<u32>>,
) {
    let store = PushingStore::listening();
    let clock = clock();
    let narvik = cached_engine(Arc::clone(&store), &clock);
    let created = sign_in_and_cache(&narvik).await;
    (store, clock, narvik, created)
}

/// Validates `token` on `narvik` until `until` holds for the answer, for up to two seconds.
async fn validated_until(
    narvik: &Narvik<Vec<u32>>,
    token: &narvik_core::SessionToken,
    what: &str,
    until: impl Fn(Option<&narvik_core::Session<Vec<u32>>>) -> bool,
) {
    let started = std::time::Instant::now();
    while !until(validated(narvik, token).await.as_ref()) {
        assert!(started.elapsed() < StdDuration::from_secs(2), "{what}");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_hit_makes_no_store_call_and_returns_the_same_session() {
    let store = PushingStore::listening();
    let clock = clock();
    let narvik = cached_engine(Arc::clone(&store), &clock);
    let created = narvik
        .create_session("alice", vec![1, 2])
        .await
        .expect("create");
    let first = validated(&narvik, &created.token).await.expect("live");
    let after_first = fetches(&store);
    for _ in 0..100 {
        let hit = validated(&narvik, &created.token).await.expect("live");
        assert_eq!(hit, first);
        assert!(!hit.new && !hit.extended);
    }
    assert_eq!(fetches(&store), after_first, "the hits reached the store");
    let stats = narvik.near_cache_stats().expect("a near cache");
    assert_eq!((stats.hits, stats.misses), (100, 1));
    assert!(stats.serving);
}

#[tokio::test]
async fn a_revocation_on_another_instance_is_seen_once_its_push_arrives() {
    let store = PushingStore::listening();
    let clock = clock();
    let a = cached_engine(Arc::clone(&store), &clock);
    let b = cached_engine(Arc::clone(&store), &clock);
    let created = a.create_session("alice", vec![]).await.expect("create");
    for engine in [&a, &b] {
        validated(engine, &created.token)
            .await
            .expect("live, and now cached");
    }
    a.invalidate_session(&created.session.id)
        .await
        .expect("logout on A");
    assert_eq!(
        validated(&a, &created.token).await,
        None,
        "A forgets at once, without waiting for the push"
    );
    validated_until(&b, &created.token, "B still serves", |seen| seen.is_none()).await;
}

#[tokio::test]
async fn a_data_update_on_another_instance_drops_the_old_copy() {
    let store = PushingStore::listening();
    let clock = clock();
    let a = cached_engine(Arc::clone(&store), &clock);
    let b = cached_engine(Arc::clone(&store), &clock);
    let created = a.create_session("alice", vec![1]).await.expect("create");
    let on_b = validated(&b, &created.token).await.expect("live");
    assert_eq!(on_b.data, vec![1]);
    let on_a = validated(&a, &created.token).await.expect("live");
    a.update_session_data(&on_a, |data| data.push(2))
        .await
        .expect("update")
        .expect("live");
    assert_eq!(
        validated(&a, &created.token).await.expect("live").data,
        vec![1, 2],
        "A forgets its own copy at once"
    );
    validated_until(&b, &created.token, "B serves old data", |seen| {
        seen.is_some_and(|session| session.data == vec![1, 2])
    })
    .await;
}

#[tokio::test]
async fn a_lost_channel_flushes_and_bypasses_until_it_is_subscribed_again() {
    let (store, _, narvik, created) = signed_in_and_cached().await;
    validated(&narvik, &created.token).await;
    assert_eq!(narvik.near_cache_stats().expect("cache").hits, 1);

    store.hub.lost();
    // Bypassed at once: the health is read on every hit, before any message is processed.
    let before = fetches(&store);
    for _ in 0..3 {
        validated(&narvik, &created.token).await.expect("live");
    }
    assert_eq!(fetches(&store), before + 3, "served from memory while lost");
    eventually("the cache counts the loss", || {
        narvik
            .near_cache_stats()
            .is_some_and(|stats| stats.losses == 1)
    })
    .await;
    // A delete the channel never told anyone about: nothing cached before the loss survives.
    store
        .map
        .records()
        .remove(&created.session.id)
        .expect("the record");
    store.hub.subscribed();
    eventually("the cache serves again", || {
        narvik.near_cache_stats().is_some_and(|stats| stats.serving)
    })
    .await;
    assert_eq!(
        validated(&narvik, &created.token).await,
        None,
        "an entry from before the loss was served after it"
    );
}

#[tokio::test]
async fn nothing_is_served_before_the_channel_is_first_subscribed() {
    let store = Arc::new(PushingStore::default());
    let clock = clock();
    let narvik = cached_engine(Arc::clone(&store), &clock);
    let created = narvik
        .create_session("alice", vec![])
        .await
        .expect("create");
    for _ in 0..3 {
        validated(&narvik, &created.token).await;
    }
    assert_eq!(fetches(&store), 3);
    let stats = narvik.near_cache_stats().expect("cache");
    assert_eq!((stats.hits, stats.serving), (0, false));
}

#[tokio::test]
async fn extensions_still_reach_the_store_once_per_half_life() {
    let (store, clock, narvik, created) = signed_in_and_cached().await;
    clock.advance(Duration::days(14));
    let hit = validated(&narvik, &created.token).await.expect("live");
    assert!(!hit.extended, "still in the first half: a hit");
    let before = fetches(&store);
    clock.advance(Duration::days(2));
    let extended = validated(&narvik, &created.token).await.expect("live");
    assert!(extended.extended, "in the last half the store extends it");
    assert_eq!(fetches(&store), before + 1);
    let stored = store.map.records()[&created.session.id].expires_at;
    assert_eq!(stored, narvik.now() + Duration::days(30));
    let again = validated(&narvik, &created.token).await.expect("live");
    assert!(!again.extended);
    assert_eq!(
        again.expires_at, stored,
        "the cached copy is the extended one"
    );
    assert_eq!(
        fetches(&store),
        before + 1,
        "served from memory after the extension"
    );
}

#[tokio::test]
async fn no_entry_is_served_past_the_absolute_cap() {
    let store = PushingStore::listening();
    let clock = clock();
    let narvik: Narvik<Vec<u32>> = Narvik::builder(Arc::clone(&store) as _)
        .session_lifetime(Duration::days(30))
        .absolute_lifetime(Duration::days(10))
        .clock(Arc::clone(&clock) as _)
        .near_cache(NearCacheConfig::pushed())
        .build()
        .expect("build");
    let created = sign_in_and_cache(&narvik).await;
    clock.advance(Duration::days(9));
    assert!(validated(&narvik, &created.token).await.is_some());
    clock.advance(Duration::days(1));
    assert_eq!(
        validated(&narvik, &created.token).await,
        None,
        "the cap ended the session"
    );
    assert!(!store.map.records().contains_key(&created.session.id));
}

#[tokio::test]
async fn rotation_and_eviction_through_the_engine_drop_the_old_entry() {
    let (_, _, narvik, created) = signed_in_and_cached().await;
    let rotated = narvik
        .rotate_session(created.token.as_str())
        .await
        .expect("rotate")
        .expect("live");
    assert_eq!(validated(&narvik, &created.token).await, None);
    assert!(validated(&narvik, &rotated.token).await.is_some());
}

/// A store that declares no push: only the bounded mode is offered.
#[tokio::test]
async fn the_builder_refuses_a_pushed_cache_on_a_store_that_does_not_push() {
    let refused = Narvik::<Vec<u32>>::builder(Arc::new(MapStore::default()))
        .near_cache(NearCacheConfig::pushed())
        .build()
        .expect_err("no push");
    assert!(
        matches!(&refused, Error::InvalidConfiguration(message) if message.contains("bounded_staleness")),
        "{refused:?}"
    );
    let zero = Narvik::<Vec<u32>>::builder(Arc::new(MapStore::default()))
        .near_cache(NearCacheConfig::bounded_staleness(StdDuration::from_secs(1)).max_entries(0))
        .build()
        .expect_err("zero entries");
    assert!(matches!(zero, Error::InvalidConfiguration(_)));
}

#[test]
fn a_pushed_cache_needs_a_runtime_to_listen_on() {
    let refused = Narvik::<Vec<u32>>::builder(PushingStore::listening())
        .near_cache(NearCacheConfig::pushed())
        .build()
        .expect_err("no runtime");
    assert!(
        matches!(&refused, Error::InvalidConfiguration(message) if message.contains("Tokio")),
        "{refused:?}"
    );
}

#[tokio::test]
async fn the_bounded_mode_serves_for_at_most_its_staleness_and_forgets_its_own_writes() {
    let store = Arc::new(MapStore::default());
    let clock = clock();
    let narvik: Narvik<Vec<u32>> = Narvik::builder(Arc::clone(&store) as _)
        .clock(Arc::clone(&clock) as _)
        .near_cache(NearCacheConfig::bounded_staleness(
            StdDuration::from_millis(300),
        ))
        .build()
        .expect("any store takes the bounded mode");
    let created = sign_in_and_cache(&narvik).await;
    // Revoked behind the engine's back (another instance): served until the staleness ends.
    store.records().remove(&created.session.id);
    assert!(validated(&narvik, &created.token).await.is_some());
    tokio::time::sleep(StdDuration::from_millis(400)).await;
    assert_eq!(validated(&narvik, &created.token).await, None);

    let second = narvik.create_session("bob", vec![]).await.expect("create");
    validated(&narvik, &second.token).await;
    narvik
        .invalidate_session(&second.session.id)
        .await
        .expect("logout here");
    assert_eq!(
        validated(&narvik, &second.token).await,
        None,
        "a logout through this engine is seen at once"
    );
}

#[tokio::test]
async fn the_cache_holds_at_most_its_bound() {
    let store = PushingStore::listening();
    let clock = clock();
    let narvik: Narvik<Vec<u32>> = Narvik::builder(Arc::clone(&store) as _)
        .clock(Arc::clone(&clock) as _)
        .near_cache(NearCacheConfig::pushed().max_entries(50))
        .build()
        .expect("build");
    for n in 0..500 {
        let created = narvik
            .create_session(&format!("user-{n}"), vec![])
            .await
            .expect("create");
        validated(&narvik, &created.token).await;
    }
    let entries = narvik.near_cache_stats().expect("cache").entries;
    assert!(entries <= 50, "{entries} entries over a bound of 50");
}
