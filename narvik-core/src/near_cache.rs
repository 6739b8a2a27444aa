// Over 400 lines in one file: one cache, whose entries, generation counters and push listener
// share its private `Shared` state. (The rest is its unit tests.)
//! The near cache: decoded sessions kept in process memory in front of any store, so that a
//! validation of an unchanged session costs neither a round trip nor a JSON decode.
//!
//! Switched on by [`NarvikBuilder::near_cache`](crate::NarvikBuilder::near_cache), in one of
//! two modes:
//!
//! - [`NearCacheConfig::pushed`]: for a store that declares
//!   [`pushes_invalidations`](crate::Capabilities::pushes_invalidations). An entry lives until
//!   the store pushes a change of its session, so a logout, rotation, data update or per-user
//!   delete on any instance is rejected here as soon as the push arrives (the propagation
//!   window). While the push channel is down, lagging or resubscribing, the cache is flushed
//!   and bypassed: every validation goes to the store until the channel is healthy again.
//! - [`NearCacheConfig::bounded_staleness`]: for any store, at a stated price: an entry is
//!   served for at most `max_staleness` after it was read, so a session revoked on another
//!   instance can be seen here for that long. Revocations through this engine are seen at once.
//!
//! In both modes:
//!
//! - an entry is served only before its session's extension point (`expires_at -
//!   lifetime / 2`) and never past its absolute cap, so extensions still reach the store once
//!   per half-life and no entry outlives its session;
//! - every write this engine makes (delete, per-user delete, rotation, data update, cap
//!   eviction) drops the entries it touches at once, without waiting for a push;
//! - the cache holds at most `max_entries` sessions
//!   ([quick_cache](https://crates.io/crates/quick_cache)'s CLOCK-Pro eviction keeps the ones
//!   in use; chosen over moka because a hit is the whole point, and its `get` measured 27 ns
//!   here against 147 ns for moka's).
//!
//! A fetch that races an invalidation never caches what it read: every invalidation bumps a
//! generation counter first (one of 64 by session id, or the one of "everything"), and an
//! insert whose read began in an older generation is undone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use quick_cache::sync::Cache;
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::invalidation::{ChannelHealth, Invalidation, InvalidationSubscription};
use crate::session::Session;
use crate::store::SessionStore;

/// The default bound in entries: 100,000 sessions of a few hundred bytes each.
pub const DEFAULT_MAX_ENTRIES: u64 = 100_000;

/// How the near cache learns that a session changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// The store pushes every change; entries live until one arrives.
    Pushed,
    /// Nothing is pushed; an entry is served for at most this long after it was read.
    BoundedStaleness(Duration),
}

/// The near cache's settings.
///
/// ```
/// use narvik_core::NearCacheConfig;
/// let pushed = NearCacheConfig::pushed();
/// let stale = NearCacheConfig::bounded_staleness(std::time::Duration::from_secs(2))
///     .max_entries(10_000);
/// assert_eq!(stale.max_entries, 10_000);
/// # let _ = pushed;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NearCacheConfig {
    /// How entries are kept fresh.
    pub freshness: Freshness,
    /// The most sessions held at once (default [`DEFAULT_MAX_ENTRIES`]).
    pub max_entries: u64,
}

impl NearCacheConfig {
    /// Entries invalidated by the store's pushes. The builder rejects this for a store that
    /// does not push.
    pub fn pushed() -> Self {
        Self {
            freshness: Freshness::Pushed,
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }

    /// Entries served for at most `max_staleness` after they were read, on any store: a
    /// session revoked by another instance may still validate here for that long.
    pub fn bounded_staleness(max_staleness: Duration) -> Self {
        Self {
            freshness: Freshness::BoundedStaleness(max_staleness),
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }

    /// The most sessions held at once.
    pub fn max_entries(mut self, max_entries: u64) -> Self {
        self.max_entries = max_entries;
        self
    }
}

/// What a near cache has done since the engine was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NearCacheStats {
    /// Validations served from memory.
    pub hits: u64,
    /// Validations that went to the store (not cached, stale, or the channel unhealthy).
    pub misses: u64,
    /// Sessions held now.
    pub entries: u64,
    /// Whether the cache serves right now (always, in the bounded mode; only while the push
    /// channel is healthy and resynchronised, in the pushed mode).
    pub serving: bool,
    /// How many times the push channel was lost (each time the cache flushed and bypassed).
    pub losses: u64,
}

/// The engine's view of a near cache, for its data type. An object, so that the engine
/// itself needs no bound on `D`.
pub(crate) trait SessionCache<D>: Send + Sync {
    /// The cached session behind `session_id`, if it may be served at `now`.
    fn get(&self, session_id: &str, now: OffsetDateTime) -> Option<Session<D>>;
    /// Taken before a store read of `session_id`; `None` when nothing read now may be cached.
    fn ticket(&self, session_id: &str) -> Option<Ticket>;
    /// Caches `session` until `serve_until`, unless an invalidation came since `ticket`.
    fn insert(&self, ticket: Ticket, session: &Session<D>, serve_until: OffsetDateTime);
    /// Drops `session_id` (this engine changed or deleted it).
    fn forget(&self, session_id: &str);
    /// Drops everything (this engine changed sessions it cannot name).
    fn forget_all(&self);
    /// Counters.
    fn stats(&self) -> NearCacheStats;
}

/// The generations a store read began in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket {
    everything: u64,
    this: u64,
}

struct Entry<D> {
    session: Session<D>,
    serve_until: OffsetDateTime,
    /// In the bounded mode, when the copy read from the store is too old to serve.
    stale_at: Option<Instant>,
}

/// The part the listener task reaches through a weak reference.
struct Shared<D> {
    entries: Cache<String, Arc<Entry<D>>>,
    /// Bumped before an invalidation of everything is applied.
    generation: AtomicU64,
    /// Bumped before an invalidation of a session in the stripe is applied: a write to one
    /// session does not undo the concurrent reads of all the others.
    generations: Counter<GENERATION_STRIPES>,
    /// `None` in the bounded mode.
    channel: Option<ChannelHealth>,
    /// The bounded mode's staleness.
    max_staleness: Option<Duration>,
    /// The push epoch whose `Subscribed` this cache has processed (after a flush), or
    /// [`NOT_SYNCED`]: entries are served only while it equals the channel's healthy epoch.
    synced_epoch: AtomicU64,
    hits: Counter<COUNTER_STRIPES>,
    misses: Counter<COUNTER_STRIPES>,
    losses: AtomicU64,
}

const GENERATION_STRIPES: usize = 64;
const COUNTER_STRIPES: usize = 16;

/// Counts striped over cache lines by session id (random hex), so that two cores bumping
/// counts for different sessions do not fight over one line.
struct Counter<const N: usize>([Stripe; N]);

#[derive(Default)]
#[repr(align(128))]
struct Stripe(AtomicU64);

impl<const N: usize> Default for Counter<N> {
    fn default() -> Self {
        Self(std::array::from_fn(|_| Stripe::default()))
    }
}

impl<const N: usize> Counter<N> {
    fn stripe(&self, session_id: &str) -> &AtomicU64 {
        let hash = session_id.bytes().take(8).fold(0usize, |hash, byte| {
            hash.wrapping_mul(31) ^ usize::from(byte)
        });
        &self.0[hash % N].0
    }

    fn bump(&self, session_id: &str) {
        self.stripe(session_id).fetch_add(1, Ordering::SeqCst);
    }

    fn get(&self, session_id: &str) -> u64 {
        self.stripe(session_id).load(Ordering::SeqCst)
    }

    fn total(&self) -> u64 {
        self.0
            .iter()
            .map(|stripe| stripe.0.load(Ordering::Relaxed))
            .sum()
    }
}

const NOT_SYNCED: u64 = u64::MAX;

impl<D: Clone + Send + Sync + 'static> Shared<D> {
    fn serving(&self) -> bool {
        match &self.channel {
            None => true,
            Some(channel) => channel
                .healthy_epoch()
                .is_some_and(|epoch| epoch == self.synced_epoch.load(Ordering::SeqCst)),
        }
    }

    fn forget(&self, session_id: &str) {
        self.generations.bump(session_id);
        self.entries.remove(session_id);
    }

    fn forget_all(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.entries.clear();
    }

    fn ticket(&self, session_id: &str) -> Ticket {
        Ticket {
            everything: self.generation.load(Ordering::SeqCst),
            this: self.generations.get(session_id),
        }
    }

    fn apply(&self, message: Invalidation) {
        match message {
            Invalidation::Sessions(ids) => {
                for id in ids {
                    self.forget(&id);
                }
            }
            Invalidation::Lost => {
                self.synced_epoch.store(NOT_SYNCED, Ordering::SeqCst);
                self.losses.fetch_add(1, Ordering::SeqCst);
                self.forget_all();
            }
            Invalidation::Subscribed { epoch } => {
                self.forget_all();
                self.synced_epoch.store(epoch, Ordering::SeqCst);
            }
            // `Everything`, and whatever a later version of the channel adds.
            _ => self.forget_all(),
        }
    }
}

/// A near cache for sessions carrying `D`.
pub(crate) struct NearCache<D> {
    shared: Arc<Shared<D>>,
    listener: Option<tokio::task::JoinHandle<()>>,
}

impl<D> Drop for NearCache<D> {
    fn drop(&mut self) {
        if let Some(listener) = &self.listener {
            listener.abort();
        }
    }
}

impl<D: Clone + Send + Sync + 'static> NearCache<D> {
    /// A cache over `store` as `config` says: in the pushed mode it subscribes to the store's
    /// invalidations and starts the task that applies them (so it needs a Tokio runtime).
    pub(crate) fn new(config: NearCacheConfig, store: &dyn SessionStore) -> Result<Self> {
        if config.max_entries == 0 {
            return Err(Error::InvalidConfiguration(
                "near_cache max_entries must be at least 1".to_owned(),
            ));
        }
        let capacity = usize::try_from(config.max_entries).unwrap_or(usize::MAX);
        match config.freshness {
            Freshness::BoundedStaleness(max_staleness) => {
                if max_staleness.is_zero() {
                    return Err(Error::InvalidConfiguration(
                        "a near cache's max_staleness must be more than zero".to_owned(),
                    ));
                }
                Ok(Self {
                    shared: Arc::new(Shared {
                        entries: Cache::new(capacity),
                        generation: AtomicU64::new(0),
                        generations: Counter::default(),
                        channel: None,
                        max_staleness: Some(max_staleness),
                        synced_epoch: AtomicU64::new(NOT_SYNCED),
                        hits: Counter::default(),
                        misses: Counter::default(),
                        losses: AtomicU64::new(0),
                    }),
                    listener: None,
                })
            }
            Freshness::Pushed => {
                let subscription = pushed_subscription(store)?;
                let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
                    Error::InvalidConfiguration(
                        "a pushed near cache listens on a Tokio task: build the engine inside a \
                         Tokio runtime"
                            .to_owned(),
                    )
                })?;
                let shared = Arc::new(Shared {
                    entries: Cache::new(capacity),
                    generation: AtomicU64::new(0),
                    generations: Counter::default(),
                    channel: Some(subscription.health()),
                    max_staleness: None,
                    synced_epoch: AtomicU64::new(
                        subscription.healthy_epoch_at_start().unwrap_or(NOT_SYNCED),
                    ),
                    hits: Counter::default(),
                    misses: Counter::default(),
                    losses: AtomicU64::new(0),
                });
                let listener = runtime.spawn(listen(subscription, Arc::downgrade(&shared)));
                Ok(Self {
                    shared,
                    listener: Some(listener),
                })
            }
        }
    }
}

fn pushed_subscription(store: &dyn SessionStore) -> Result<InvalidationSubscription> {
    let refused = || {
        Error::InvalidConfiguration(
            "this store does not push invalidations: a pushed near cache could serve a revoked \
             session; use NearCacheConfig::bounded_staleness to accept a stated staleness"
                .to_owned(),
        )
    };
    if !store.capabilities().pushes_invalidations {
        return Err(refused());
    }
    store.subscribe_invalidations().ok_or_else(refused)
}

/// Applies the store's messages until the cache is dropped.
async fn listen<D: Clone + Send + Sync + 'static>(
    mut subscription: InvalidationSubscription,
    shared: Weak<Shared<D>>,
) {
    loop {
        let message = subscription.recv().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        shared.apply(message);
    }
}

impl<D: Clone + Send + Sync + 'static> SessionCache<D> for NearCache<D> {
    fn get(&self, session_id: &str, now: OffsetDateTime) -> Option<Session<D>> {
        let shared = &self.shared;
        let served = if shared.serving() {
            shared
                .entries
                .get(session_id)
                .filter(|entry| {
                    now < entry.serve_until
                        && entry
                            .stale_at
                            .is_none_or(|stale_at| Instant::now() < stale_at)
                })
                .map(|entry| entry.session.clone())
        } else {
            None
        };
        let counter = if served.is_some() {
            &shared.hits
        } else {
            &shared.misses
        };
        counter.bump(session_id);
        served
    }

    fn ticket(&self, session_id: &str) -> Option<Ticket> {
        let ticket = self.shared.ticket(session_id);
        self.shared.serving().then_some(ticket)
    }

    fn insert(&self, ticket: Ticket, session: &Session<D>, serve_until: OffsetDateTime) {
        let shared = &self.shared;
        let mut kept = session.clone();
        kept.new = false;
        kept.extended = false;
        let id = kept.id.clone();
        shared.entries.insert(
            id.clone(),
            Arc::new(Entry {
                session: kept,
                serve_until,
                stale_at: shared
                    .max_staleness
                    .map(|staleness| Instant::now() + staleness),
            }),
        );
        // An invalidation applied between the read and this insert may have missed the entry:
        // it bumped the generation first, so the entry is undone here.
        if shared.ticket(&id) != ticket || !shared.serving() {
            shared.entries.remove(&id);
        }
    }

    fn forget(&self, session_id: &str) {
        self.shared.forget(session_id);
    }

    fn forget_all(&self) {
        self.shared.forget_all();
    }

    fn stats(&self) -> NearCacheStats {
        NearCacheStats {
            hits: self.shared.hits.total(),
            misses: self.shared.misses.total(),
            entries: self.shared.entries.len() as u64,
            serving: self.shared.serving(),
            losses: self.shared.losses.load(Ordering::SeqCst),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invalidation::InvalidationHub;
    use crate::session::SessionRecord;

    struct Pushing(InvalidationHub);

    #[async_trait::async_trait]
    impl SessionStore for Pushing {
        fn capabilities(&self) -> crate::Capabilities {
            crate::Capabilities {
                pushes_invalidations: true,
                ..crate::Capabilities::ALL
            }
        }
        async fn save_session(&self, _: &SessionRecord) -> Result<()> {
            Ok(())
        }
        async fn fetch_session(&self, _: &str) -> Result<Option<SessionRecord>> {
            Ok(None)
        }
        async fn update_session_expiry(&self, _: &str, _: OffsetDateTime) -> Result<()> {
            Ok(())
        }
        async fn delete_session(&self, _: &str) -> Result<()> {
            Ok(())
        }
        fn subscribe_invalidations(&self) -> Option<InvalidationSubscription> {
            Some(self.0.subscribe())
        }
    }

    fn session(id: &str, now: OffsetDateTime) -> Session<u32> {
        Session {
            id: id.to_owned(),
            user_id: "alice".to_owned(),
            expires_at: now + time::Duration::days(30),
            created_at: now,
            data: 7,
            lifetime: None,
            data_version: 0,
            new: true,
            extended: false,
        }
    }

    #[tokio::test]
    async fn a_read_that_raced_an_invalidation_is_not_cached() {
        let hub = InvalidationHub::new();
        hub.subscribed();
        let cache = NearCache::<u32>::new(NearCacheConfig::pushed(), &Pushing(hub.clone()))
            .expect("a pushing store");
        let now = OffsetDateTime::now_utc();
        let until = now + time::Duration::days(15);

        let ticket = cache.ticket("raced").expect("serving");
        // The store's push for this session lands while the read is in flight.
        cache
            .shared
            .apply(Invalidation::Sessions(vec!["raced".to_owned()]));
        cache.insert(ticket, &session("raced", now), until);
        assert!(cache.get("raced", now).is_none(), "a stale read was cached");

        let ticket = cache.ticket("calm").expect("serving");
        cache.insert(ticket, &session("calm", now), until);
        let hit = cache.get("calm", now).expect("cached");
        assert!(!hit.new, "flags are never cached");
        assert!(cache.get("calm", until).is_none(), "served past its time");

        hub.lost();
        assert_eq!(
            cache.ticket("calm"),
            None,
            "nothing read while lost may be cached"
        );
        assert!(cache.get("calm", now).is_none(), "served while lost");
    }
}
