//! Building blocks the cases share: random names, records with well-chosen times, a spy store,
//! and assertions with messages that say which promise broke.

mod assertions;
mod spy;

use std::future::Future;
use std::sync::Arc;

use narvik_core::time_util::truncate_to_millis;
use narvik_core::{
    ManualClock, Narvik, NarvikBuilder, NearCacheConfig, Result, SessionRecord, SessionStore,
};
use serde_json::Value;
use time::{Duration, OffsetDateTime};

use crate::Capabilities;

pub use assertions::{
    assert_absent, assert_all_absent, assert_all_stored, assert_same_record, assert_same_set,
    assert_stored, assert_user_lists, by_id, declared_absent,
};
pub use spy::{CallCounts, SpyStore};

/// How far in the future a record that must expire during a case is saved, on stores that do
/// not keep records saved already expired.
pub const SHORT_EXPIRY: Duration = Duration::milliseconds(1_500);

/// Extra time waited after the last short expiry, so that server clocks agree it has passed.
pub const EXPIRY_MARGIN: Duration = Duration::milliseconds(500);

/// How many tasks the bulk helpers ([`save_concurrently`], [`assert_all_stored`], ...) use in
/// the big cases, so that a slow server (a Python wire-protocol server, a cluster) still gets
/// through thousands of calls in seconds.
pub const BULK_TASKS: usize = 16;

/// The wall-clock time now, to the millisecond (the precision every store keeps).
pub fn now_ms() -> OffsetDateTime {
    truncate_to_millis(OffsetDateTime::now_utc())
}

/// 16 random lowercase hex characters, to make names unique in a shared namespace.
pub fn random_suffix() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

/// A user id no other case (or run) uses: `label` followed by a random suffix.
pub fn random_user_id(label: &str) -> String {
    format!("{label}-{}", random_suffix())
}

/// A random session id of the engine's shape (64 lowercase hex characters).
pub fn random_session_id() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// A live record of `user_id` with `data`: created a minute ago, expiring in `expires_in`.
pub fn record_expiring_in(user_id: &str, expires_in: Duration, data: Value) -> SessionRecord {
    let now = now_ms();
    SessionRecord {
        id: random_session_id(),
        user_id: user_id.to_owned(),
        expires_at: now + expires_in,
        created_at: now - Duration::minutes(1),
        data: data.into(),
        lifetime: None,
        data_version: 0,
    }
}

/// A live record of `user_id` with `data`, expiring in a few days.
pub fn live_record(user_id: &str, data: Value) -> SessionRecord {
    record_expiring_in(user_id, Duration::days(3), data)
}

/// A record of `user_id` that is expired by the time [`wait_until_expired`] returns.
///
/// On a store that keeps records saved already expired, it expired `nth` + 1 hours ago.
/// Otherwise it expires [`SHORT_EXPIRY`] from now, so that a TTL-native server accepts it.
pub fn expired_record(
    capabilities: Capabilities,
    user_id: &str,
    nth: usize,
    data: Value,
) -> SessionRecord {
    let now = now_ms();
    let expires_at = if capabilities.keeps_already_expired {
        let hours = i64::try_from(nth).unwrap_or(i64::MAX / 2).min(1_000) + 1;
        now - Duration::hours(hours)
    } else {
        now + SHORT_EXPIRY
    };
    SessionRecord {
        id: random_session_id(),
        user_id: user_id.to_owned(),
        expires_at,
        created_at: expires_at - Duration::days(1),
        data: data.into(),
        lifetime: None,
        data_version: 0,
    }
}

/// Sleeps until every one of `records` has expired by the wall clock (plus a margin). Returns
/// at once when they already have.
pub async fn wait_until_expired(records: &[SessionRecord]) {
    let Some(latest) = records.iter().map(|record| record.expires_at).max() else {
        return;
    };
    let remaining = latest + EXPIRY_MARGIN - OffsetDateTime::now_utc();
    if remaining.is_positive() {
        let remaining = std::time::Duration::try_from(remaining).unwrap_or_default();
        tokio::time::sleep(remaining).await;
    }
}

/// Unwraps a store result, failing the case with the operation's name and the error.
#[track_caller]
pub fn must<T>(result: Result<T>, operation: &str) -> T {
    match result {
        Ok(value) => value,
        Err(error) => panic!("`{operation}` failed: {error} ({error:?})"),
    }
}

/// Saves every record (in order), failing the case on any error.
pub async fn save_all(store: &dyn SessionStore, records: &[SessionRecord]) {
    for record in records {
        must(store.save_session(record).await, "save_session");
    }
}

/// Saves `records` from `tasks` concurrent tasks, failing the case on any error.
pub async fn save_concurrently(
    store: &Arc<dyn SessionStore>,
    records: Vec<SessionRecord>,
    tasks: usize,
) {
    in_parallel(store, &records, tasks, |store, part| async move {
        save_all(store.as_ref(), &part).await;
    })
    .await;
}

/// Runs `work(store, part)` on `tasks` concurrent tasks, each over its own consecutive part of
/// `items`, and returns their results in the order of the parts. A panic in any task fails
/// the case with its message.
pub async fn in_parallel<T, R, F, Fut>(
    store: &Arc<dyn SessionStore>,
    items: &[T],
    tasks: usize,
    work: F,
) -> Vec<R>
where
    T: Clone + Send + 'static,
    R: Send + 'static,
    F: Fn(Arc<dyn SessionStore>, Vec<T>) -> Fut,
    Fut: Future<Output = R> + Send + 'static,
{
    let chunk = items.len().div_ceil(tasks.max(1)).max(1);
    let handles = items
        .chunks(chunk)
        .map(|part| tokio::spawn(work(Arc::clone(store), part.to_vec())))
        .collect();
    join_all(handles).await
}

/// A record saved by [`save_expiring_soon`], and whether its save returned before its expiry.
#[derive(Debug, Clone)]
pub struct SavedSoon {
    /// The record as saved.
    pub record: SessionRecord,
    /// The save returned while the record was still live by the wall clock, so the store
    /// received it live. When false the store may have dropped it as already expired (on a
    /// store with `keeps_already_expired: false`, that is allowed).
    pub saved_live: bool,
}

/// Saves `records` from [`BULK_TASKS`] tasks, giving each one, right before its own save, an
/// expiry [`SHORT_EXPIRY`] from then (and `created_at` a day before that).
///
/// For the cases that need thousands of expired records on a store that does not keep records
/// saved already expired: computed up front, the first records would expire while a slow
/// server still works through the last. Wait with [`wait_until_expired`] on the result.
pub async fn save_expiring_soon(
    store: &Arc<dyn SessionStore>,
    records: Vec<SessionRecord>,
) -> Vec<SavedSoon> {
    in_parallel(store, &records, BULK_TASKS, |store, part| async move {
        let mut saved = Vec::with_capacity(part.len());
        for mut record in part {
            record.expires_at = now_ms() + SHORT_EXPIRY;
            record.created_at = record.expires_at - Duration::days(1);
            must(store.save_session(&record).await, "save_session");
            let saved_live = OffsetDateTime::now_utc() < record.expires_at;
            saved.push(SavedSoon { record, saved_live });
        }
        saved
    })
    .await
    .into_iter()
    .flatten()
    .collect()
}

/// The ids of `records`, in order.
pub fn ids_of(records: &[SessionRecord]) -> Vec<String> {
    records.iter().map(|record| record.id.clone()).collect()
}

/// Lists `user_id`'s sessions live at `now`, failing the case on an error.
pub async fn list_at(
    store: &dyn SessionStore,
    user_id: &str,
    now: OffsetDateTime,
) -> Vec<SessionRecord> {
    must(
        store.fetch_sessions_for_user(user_id, now).await,
        "fetch_sessions_for_user",
    )
}

/// Awaits spawned tasks, re-raising the first panic so the case fails with its message.
pub async fn join_all<T>(handles: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut results = Vec::with_capacity(handles.len());
    for handle in handles {
        match handle.await {
            Ok(value) => results.push(value),
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => panic!("a task of the case was cancelled: {error}"),
        }
    }
    results
}

/// Spawns `count` copies of `task(index)`, started together behind a barrier so they overlap.
pub async fn race<F, Fut, T>(count: usize, task: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(count));
    let handles = (0..count)
        .map(|index| {
            let barrier = Arc::clone(&barrier);
            let work = task(index);
            tokio::spawn(async move {
                barrier.wait().await;
                work.await
            })
        })
        .collect();
    join_all(handles).await
}

/// A `delete_session` of a fresh record of `user_id` raced against `rival` on the same record,
/// `rounds` times, the two started together and spawned in turn in either order: every round
/// both calls succeed and the record is gone afterwards, and at the end the user lists
/// nothing. `rival` gets the store, the record and the round; `label` names it in failures.
pub async fn race_delete_against<F, Fut, T>(
    store: &Arc<dyn SessionStore>,
    capabilities: Capabilities,
    user_id: &str,
    rounds: usize,
    label: &str,
    rival: F,
) where
    F: Fn(Arc<dyn SessionStore>, SessionRecord, usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = narvik_core::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    for round in 0..rounds {
        let record = live_record(user_id, serde_json::json!({ "round": round }));
        must(store.save_session(&record).await, "save_session");
        let shared = Arc::clone(store);
        let racing = record.clone();
        let rival = rival.clone();
        let outcomes = race(2, move |task| {
            let store = Arc::clone(&shared);
            let record = racing.clone();
            let rival = rival.clone();
            async move {
                // Alternate who is spawned first so both orders get their chance.
                if (task + round) % 2 == 0 {
                    store.delete_session(&record.id).await
                } else {
                    rival(store, record, round).await.map(|_| ())
                }
            }
        })
        .await;
        for outcome in outcomes {
            must(outcome, &format!("delete_session or {label}"));
        }
        assert_absent(
            store.as_ref(),
            &record.id,
            &format!("round {round}: a delete raced {label}"),
        )
        .await;
    }
    assert_user_lists(
        store.as_ref(),
        capabilities,
        user_id,
        &[],
        &format!("the user listing after deletes raced {label}"),
    )
    .await;
}

tokio::task_local! {
    /// Set by [`with_near_cache`]: the engines the cases build get this near cache.
    static NEAR_CACHE: NearCacheConfig;
}

/// Runs `case` with every engine it builds through [`engine_with`] fronted by a near cache
/// of `config`, so that the engine cases prove the cached setup as they prove the plain one.
/// On a multi-threaded Tokio runtime (as the generated tests are): building such an engine
/// waits in place for its push channel.
pub async fn with_near_cache<F: std::future::Future>(
    config: NearCacheConfig,
    case: F,
) -> F::Output {
    NEAR_CACHE.scope(config, case).await
}

/// An engine over `store` with `clock`, after `configure`; with a near cache when the case
/// runs under [`with_near_cache`], once its push channel (if any) is healthy.
pub fn engine_with<D: Clone + Send + Sync + 'static>(
    store: Arc<dyn SessionStore>,
    clock: &Arc<ManualClock>,
    configure: impl FnOnce(NarvikBuilder<D>) -> NarvikBuilder<D>,
) -> Narvik<D> {
    let mut builder = configure(Narvik::builder(store).clock(Arc::clone(clock) as _));
    let cached = NEAR_CACHE.try_with(|config| *config).ok();
    if let Some(config) = cached {
        builder = builder.near_cache(config);
    }
    let narvik = builder.build().expect("the case's configuration is valid");
    if cached.is_some() {
        // The cases are synchronous here; the generated tests run on a multi-threaded runtime,
        // so waiting in place is allowed.
        let started = std::time::Instant::now();
        while !narvik.near_cache_stats().is_some_and(|stats| stats.serving) {
            assert!(
                started.elapsed() < crate::near_cache::RESUBSCRIBE_BOUND,
                "the near cache's channel was not healthy within {:?}",
                crate::near_cache::RESUBSCRIBE_BOUND
            );
            tokio::task::block_in_place(|| std::thread::sleep(std::time::Duration::from_millis(1)));
        }
    }
    narvik
}
