//! [`RedisStore`]: the public type, its [`SessionStore`] implementation and, for each call,
//! the choice of topology: the steps of a single server (one script per call) are in
//! `single`, those of a cluster (single-key steps in a safe order) in `cluster`, and the
//! calls that are the same on both in `common`.

mod cluster;
mod common;
mod single;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use narvik_core::deadline::{self, Bound};
use narvik_core::invalidation::InvalidationSubscription;
use narvik_core::{Capabilities, Error, Result, SessionData, SessionRecord, SessionStore};
use redis::RedisError;
use time::OffsetDateTime;

use crate::config::RedisStoreBuilder;
use crate::connection::Backend;
use crate::error::{name_fault, Failure, Limits, STORE_NAME};
use crate::invalidation::Invalidations;
use crate::keys::KeySpace;
use crate::record::{self, now_ms, unix_ms};

/// Ids per `MGET`, `DEL` or script call in the per-user and expiry calls.
const BATCH: usize = 256;

/// A narvik session store on Redis or Redis Cluster. Cheap to clone (clones share the
/// connection).
///
/// Expired records are removed by Redis itself (each key expires at the session's
/// `expires_at`), so [`fetch_session`](SessionStore::fetch_session) never returns an expired
/// record. See the crate docs for the key layout and the guarantees.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    keys: KeySpace,
    call_timeout: Duration,
    limits: Limits,
    /// `None` for a store built on an application's pool, whose URL it does not know.
    invalidations: Option<Invalidations>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.inner.keys.prefix())
            .field("cluster", &self.inner.backend.is_cluster())
            .finish_non_exhaustive()
    }
}

/// A failed command, named after its operation by [`RedisStore::bounded`].
fn unavailable(error: RedisError) -> Error {
    Failure::command(error)
}

impl RedisStore {
    /// A builder for the prefix, connection name and timeouts.
    pub fn builder() -> RedisStoreBuilder {
        RedisStoreBuilder::new()
    }

    /// Connects to one Redis server with the defaults (prefix `narvik`).
    pub async fn connect(url: &str) -> Result<Self> {
        RedisStoreBuilder::new().connect(url).await
    }

    pub(crate) fn from_parts(
        backend: Backend,
        keys: KeySpace,
        call_timeout: Duration,
        limits: Limits,
        invalidations: Option<Invalidations>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                backend,
                keys,
                call_timeout,
                limits,
                invalidations,
            }),
        }
    }

    /// Runs one store call within the call timeout, and names the call in its faults.
    async fn bounded<T>(
        &self,
        operation: &'static str,
        work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        match deadline::within(STORE_NAME, operation, self.inner.call_timeout, work).await {
            Ok(value) => Ok(value),
            Err(error) => Err(self.failed(operation, error)),
        }
    }

    #[cold]
    fn failed(&self, operation: &'static str, error: Error) -> Error {
        if deadline::bound_hit(&error) == Some(Bound::Call) {
            // Out of time on a connection that may be half-open: have it checked.
            self.inner.backend.suspect();
        }
        name_fault(operation, self.inner.limits, error)
    }

    /// The prefix of every key of this store.
    pub fn prefix(&self) -> &str {
        self.inner.keys.prefix()
    }

    /// The name (`CLIENT SETNAME`) of the connections that listen for invalidations, as
    /// `CLIENT LIST` shows them; `None` on a store built on an application's pool, which
    /// pushes none. See [`RedisStoreBuilder::invalidation_listener_name`].
    pub fn invalidation_listener_name(&self) -> Option<&str> {
        self.inner.invalidations.as_ref().map(Invalidations::name)
    }

    fn cluster(&self) -> bool {
        self.inner.backend.is_cluster()
    }

    async fn save(&self, record: &SessionRecord) -> Result<()> {
        let keys = &self.inner.keys;
        let expires = unix_ms(record.expires_at);
        // The wall clock: whether a record saved now is already expired is this call's own
        // decision (the contract lets a TTL-native store drop it).
        let now = now_ms();
        let value = record::encode(record)?;
        let mut conn = self.inner.backend.get().await?;
        if self.cluster() {
            cluster::save(keys, &mut conn, record, &value, expires, now).await
        } else {
            single::save(keys, &mut conn, record, &value, expires, now).await
        }
    }

    /// The engine's extension: the user comes with the record, so one script on one server.
    async fn update_record(
        &self,
        record: &SessionRecord,
        expires_at: OffsetDateTime,
    ) -> Result<()> {
        let keys = &self.inner.keys;
        let expires = unix_ms(expires_at);
        let mut conn = self.inner.backend.get().await?;
        if self.cluster() {
            cluster::update_record(keys, &mut conn, record, expires_at, expires).await
        } else {
            single::update_record(keys, &mut conn, record, expires).await
        }
    }

    /// An extension knowing the session id alone: the user is read from the stored record.
    async fn update_by_id(&self, session_id: &str, expires_at: OffsetDateTime) -> Result<()> {
        let keys = &self.inner.keys;
        let expires = unix_ms(expires_at);
        let mut conn = self.inner.backend.get().await?;
        if self.cluster() {
            cluster::update_by_id(keys, &mut conn, session_id, expires).await
        } else {
            single::update_by_id(keys, &mut conn, session_id, expires).await
        }
    }

    async fn delete(&self, session_id: &str) -> Result<()> {
        let keys = &self.inner.keys;
        let mut conn = self.inner.backend.get().await?;
        if self.cluster() {
            cluster::delete(keys, &mut conn, session_id).await
        } else {
            single::delete(keys, &mut conn, session_id).await
        }
    }

    async fn delete_for_user(&self, user_id: &str) -> Result<()> {
        let keys = &self.inner.keys;
        let index = keys.index(user_id);
        let mut conn = self.inner.backend.get().await?;
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(&index)
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        for chunk in ids.chunks(BATCH) {
            if self.cluster() {
                cluster::delete_batch(keys, &mut conn, &index, user_id, chunk).await?;
            } else {
                single::delete_batch(keys, &mut conn, &index, chunk).await?;
            }
        }
        Ok(())
    }

    async fn delete_expired(&self, now: OffsetDateTime) -> Result<u64> {
        let keys = &self.inner.keys;
        let now = unix_ms(now);
        let mut conn = self.inner.backend.get().await?;
        let mut deleted = 0;
        for bucket in keys.queue_buckets() {
            loop {
                // Every live record has a queue entry scored no later than its expiry, so the
                // entries due at `now` lead to every record expired at `now`.
                let members: Vec<String> = redis::cmd("ZRANGE")
                    .arg(bucket)
                    .arg("-inf")
                    .arg(now)
                    .arg("BYSCORE")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(BATCH)
                    .query_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
                if members.is_empty() {
                    break;
                }
                let mut entries = Vec::with_capacity(members.len());
                let mut strangers = Vec::new();
                for member in &members {
                    match keys.parse_queue_member(member) {
                        Some(entry) => entries.push((member.as_str(), entry)),
                        None => strangers.push(member.as_str()),
                    }
                }
                if !strangers.is_empty() {
                    // Not ours: it points nowhere, so it just leaves the queue.
                    let _: i64 = redis::cmd("ZREM")
                        .arg(bucket)
                        .arg(&strangers)
                        .query_async(&mut conn)
                        .await
                        .map_err(unavailable)?;
                }
                deleted += if self.cluster() {
                    cluster::expire(keys, &mut conn, bucket, &entries, now).await?
                } else {
                    single::expire(keys, &mut conn, bucket, &entries, now).await?
                };
                if members.len() < BATCH {
                    break;
                }
            }
        }
        Ok(deleted)
    }
}
#[async_trait]
impl SessionStore for RedisStore {
    /// [`Capabilities::TTL_NATIVE`]: every optional call; Redis expires records itself, so an
    /// expired record is hidden, one saved already expired is not kept, and the purge count is
    /// an at-most one (records Redis removed first are not counted). A store built with
    /// [`connect`](RedisStoreBuilder::connect) or `connect_cluster` also pushes invalidations;
    /// one on an application's pool does not (it does not know where to open its listener).
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            pushes_invalidations: self.inner.invalidations.is_some(),
            ..Capabilities::TTL_NATIVE
        }
    }

    fn store_name(&self) -> &'static str {
        "redis"
    }

    /// Starts the invalidation listener on the first call (again after its last subscriber
    /// was dropped): a connection of its own to the server, or to every primary of a cluster,
    /// tracking every write to a session record (`CLIENT TRACKING ON BCAST PREFIX P:s:`). The
    /// listener holds nothing of the store: it ends at once when the store is dropped, and
    /// within a quarter of a second once no subscription is left (while it cannot connect,
    /// before its next attempt). `None` on a store built on an application's pool.
    fn subscribe_invalidations(&self) -> Option<InvalidationSubscription> {
        self.inner
            .invalidations
            .as_ref()
            .map(Invalidations::subscribe)
    }

    /// Insert-only (`Error::DuplicateId` on an existing id, nothing changed). A record whose
    /// `expires_at` has passed is not kept.
    async fn save_session(&self, record: &SessionRecord) -> Result<()> {
        self.bounded("save_session", self.save(record)).await
    }

    /// One `GET`. Expired records are never returned: Redis removes them at `expires_at`, and
    /// one seen a moment before that is hidden.
    async fn fetch_session(&self, session_id: &str) -> Result<Option<SessionRecord>> {
        self.bounded("fetch_session", self.fetch(session_id)).await
    }

    /// Moves the expiry of a live record (and its index and queue entries); a missing or
    /// expired record stays as it is. Knowing the id alone, the store learns the user from the
    /// record: inside the one script on a single server, with one read more on a cluster.
    async fn update_session_expiry(
        &self,
        session_id: &str,
        expires_at: OffsetDateTime,
    ) -> Result<()> {
        self.bounded(
            "update_session_expiry",
            self.update_by_id(session_id, expires_at),
        )
        .await
    }

    /// The engine's extension. `record.user_id` names the index, so this is one script on a
    /// single server (three steps on a cluster) with nothing read first.
    async fn update_record_expiry(
        &self,
        record: &SessionRecord,
        expires_at: OffsetDateTime,
    ) -> Result<()> {
        self.bounded(
            "update_record_expiry",
            self.update_record(record, expires_at),
        )
        .await
    }

    async fn delete_session(&self, session_id: &str) -> Result<()> {
        self.bounded("delete_session", self.delete(session_id))
            .await
    }

    /// Reads the user's index (pruning entries of records Redis has expired), then the records
    /// with `MGET`, keeping those live at `now`.
    async fn fetch_sessions_for_user(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<SessionRecord>> {
        self.bounded("fetch_sessions_for_user", self.fetch_for_user(user_id, now))
            .await
    }

    async fn delete_sessions_for_user(&self, user_id: &str) -> Result<()> {
        self.bounded("delete_sessions_for_user", self.delete_for_user(user_id))
            .await
    }

    /// Deletes every record expired at `now`, whether or not Redis has expired it yet, found
    /// through the expiry queue, and returns how many records it deleted. Records Redis removed
    /// by itself before the call are not counted (their index entries are cleaned up), so the
    /// count never exceeds the expired records and never includes a live one.
    async fn delete_all_expired_sessions(&self, now: OffsetDateTime) -> Result<u64> {
        self.bounded("delete_all_expired_sessions", self.delete_expired(now))
            .await
    }

    /// One script on the record key (cluster safe): replaces the data only if the stored
    /// record is at `record.data_version`, still `record.user_id`'s and live at `now`, keeping
    /// the key's TTL and the header's expiry, so a racing extension keeps its effect too.
    async fn update_session_data(
        &self,
        record: &SessionRecord,
        data: &SessionData,
        now: OffsetDateTime,
    ) -> Result<bool> {
        self.bounded("update_session_data", self.update_data(record, data, now))
            .await
    }
}
