//! [`RedisStore`]: the [`SessionStore`] implementation.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use narvik_core::deadline::{self, Bound};
use narvik_core::invalidation::InvalidationSubscription;
use narvik_core::session::short_id;
use narvik_core::{Capabilities, Error, Result, SessionData, SessionRecord, SessionStore};
use redis::{RedisError, Value};
use time::OffsetDateTime;
use tracing::Instrument;

use crate::config::RedisStoreBuilder;
use crate::connection::{Backend, Conn};
use crate::error::{name_fault, Failure, Limits, STORE_NAME};
use crate::invalidation::Invalidations;
use crate::keys::{KeySpace, QueueEntry, QUEUE_GRACE_MS};
use crate::record::{self, now_ms, time_field, unix_ms};
use crate::scripts::SCRIPTS;

/// Ids per `MGET`, `DEL` or script call in the per-user and expiry calls.
const BATCH: usize = 256;

/// Commands a cluster purge keeps in flight at once on the shared connection (a whole batch:
/// the multiplexed connection pipelines them).
#[cfg(feature = "cluster")]
const IN_FLIGHT: usize = BATCH;

/// Runs `futures` concurrently on the current task and returns their outputs in order (the
/// crate has no `futures` dependency for its one use of this).
#[cfg(feature = "cluster")]
async fn join_all<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    use std::task::Poll;
    let mut running: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = running.iter().map(|_| None).collect();
    std::future::poll_fn(|context| {
        let mut pending = false;
        for (future, output) in running.iter_mut().zip(outputs.iter_mut()) {
            // A finished future is never polled again.
            if output.is_none() {
                match future.as_mut().poll(context) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

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

/// How a cluster expiry update treats the expiry-queue entry.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Queue {
    /// The new expiry is no earlier than the old: the entry is due no later than the record.
    Keep,
    /// The new expiry may be earlier: move the entry earlier first.
    Lower,
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
        let record_key = keys.record(&record.id);
        let index = keys.index(&record.user_id);
        let mut conn = self.inner.backend.get().await?;
        if !self.cluster() {
            let outcome: i64 = SCRIPTS
                .save
                .key(&record_key)
                .key(&index)
                .key(keys.queue_bucket(&record.id))
                .arg(&value)
                .arg(expires)
                .arg(now)
                .arg(&record.id)
                .arg(keys.queue_member(&record.user_id, &record.id))
                .arg(expires.saturating_add(QUEUE_GRACE_MS))
                .invoke_async(&mut conn)
                .await
                .map_err(unavailable)?;
            return if outcome == 0 {
                Err(Error::DuplicateId)
            } else {
                Ok(())
            };
        }
        // Cluster: the index entry first, then the record, then the queue entry. A failure
        // part-way leaves at most an index entry without a record (skipped and pruned), never
        // a record missing from its user's index; and a queue entry is only ever written for a
        // record that exists, so the purge can drop an entry whose record it does not find.
        if expires <= now {
            let exists: bool = redis::cmd("EXISTS")
                .arg(&record_key)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            return if exists {
                Err(Error::DuplicateId)
            } else {
                Ok(())
            };
        }
        let added: i64 = SCRIPTS
            .track
            .key(&index)
            .arg("GT")
            .arg(expires)
            .arg(&record.id)
            .arg("1")
            .arg(expires)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        // `GET` returns what was there: the cluster client resends a command whose answer a
        // dropped connection lost, so an existing record that is this one byte for byte is
        // this call's own write, not another session's (ids are 256 random bits). Taking it
        // for a duplicate would remove the index entry of a live record.
        let existing: Option<Vec<u8>> = redis::cmd("SET")
            .arg(&record_key)
            .arg(&value)
            .arg("NX")
            .arg("GET")
            .arg("PXAT")
            .arg(expires)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if existing.as_ref().is_none_or(|existing| *existing == value) {
            // A delete of the same id racing this save may have removed the entry between the
            // two steps: put it back now that the record exists.
            self.track_in_index(&mut conn, &index, &record.id, expires)
                .await?;
            self.queue_no_later(&mut conn, &record.id, &record.user_id, expires)
                .await?;
            return Ok(());
        }
        // Duplicate id: take back the index entry if this call added it.
        if added == 1 {
            let _: i64 = redis::cmd("ZREM")
                .arg(&index)
                .arg(&record.id)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
        }
        Err(Error::DuplicateId)
    }

    /// Cluster, after removing index entries of `user_id` (and, with `requeue`, their queue
    /// entries): a save of one of those ids may have landed in between, and its entries must
    /// come back.
    async fn retrack_resaved(
        &self,
        conn: &mut Conn<'_>,
        index: &str,
        user_id: &str,
        ids: &[&str],
        requeue: bool,
    ) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let keys = &self.inner.keys;
        // One multi-slot EXISTS (the client splits it by slot) settles the common case.
        let mut exists = redis::cmd("EXISTS");
        for id in ids {
            exists.arg(keys.record(id));
        }
        let back: i64 = exists.query_async(conn).await.map_err(unavailable)?;
        if back == 0 {
            return Ok(());
        }
        for id in ids {
            // Only a record of this user belongs in this index (the id may have been saved
            // again by someone else).
            let expires = self.expiry_if_owned(conn, id, user_id).await?;
            if expires <= 0 {
                continue;
            }
            self.track_in_index(conn, index, id, expires).await?;
            if requeue {
                self.queue_no_later(conn, id, user_id, expires).await?;
            }
        }
        Ok(())
    }

    /// Cluster: the expiry (ms) of `user_id`'s record `session_id`, or 0 when there is none.
    async fn expiry_if_owned(
        &self,
        conn: &mut Conn<'_>,
        session_id: &str,
        user_id: &str,
    ) -> Result<i64> {
        SCRIPTS
            .expiry_if_owned
            .key(self.inner.keys.record(session_id))
            .arg(user_id)
            .invoke_async(conn)
            .await
            .map_err(unavailable)
    }

    /// Cluster: makes sure the queue entry of `session_id` is due no later than `expires`
    /// (added if missing), keeping its bucket alive past it.
    async fn queue_no_later(
        &self,
        conn: &mut Conn<'_>,
        session_id: &str,
        user_id: &str,
        expires: i64,
    ) -> Result<()> {
        let keys = &self.inner.keys;
        let _: i64 = SCRIPTS
            .track
            .key(keys.queue_bucket(session_id))
            .arg("LT")
            .arg(expires)
            .arg(keys.queue_member(user_id, session_id))
            .arg("")
            .arg(expires.saturating_add(QUEUE_GRACE_MS))
            .invoke_async(conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Cluster: makes sure `session_id` is in `index` with a score no earlier than `expires`.
    async fn track_in_index(
        &self,
        conn: &mut Conn<'_>,
        index: &str,
        session_id: &str,
        expires: i64,
    ) -> Result<()> {
        let _: i64 = SCRIPTS
            .track
            .key(index)
            .arg("GT")
            .arg(expires)
            .arg(session_id)
            .arg("")
            .arg(expires)
            .invoke_async(conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn fetch(&self, session_id: &str) -> Result<Option<SessionRecord>> {
        let mut conn = self.inner.backend.get().await?;
        let value: Option<Vec<u8>> = redis::cmd("GET")
            .arg(self.inner.keys.record(session_id))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let Some(value) = value else {
            return Ok(None);
        };
        let decoded = record::decode(session_id, &value)?;
        // Redis removes the key at expires_at by its own clock; hide it already by the wall
        // clock (a required call judges by the wall clock, DESIGN 2.12).
        if decoded.is_expired(now_ms()) {
            return Ok(None);
        }
        Ok(Some(decoded.record))
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
            let queue = if expires_at < record.expires_at {
                Queue::Lower
            } else {
                Queue::Keep
            };
            self.cluster_update(&mut conn, &record.id, &record.user_id, expires, queue)
                .await?;
            return Ok(());
        }
        // -1 (the id now belongs to another user: the engine's record is stale) and 0 (gone or
        // expired) both leave everything as it is.
        let _: i64 = SCRIPTS
            .update
            .key(keys.record(&record.id))
            .key(keys.index(&record.user_id))
            .key(keys.queue_bucket(&record.id))
            .arg(expires)
            .arg(time_field(expires))
            .arg(&record.id)
            .arg(&record.user_id)
            .arg(now_ms())
            .arg(keys.queue_member(&record.user_id, &record.id))
            .arg(expires.saturating_add(QUEUE_GRACE_MS))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// The versioned data update: one script on the record key alone, so the same call on a
    /// single server and on a cluster. The script compares version, user and expiry and
    /// writes the new value with `KEEPTTL` in one atomic step (see `scripts/update_data.lua`).
    async fn update_data(
        &self,
        record: &SessionRecord,
        data: &SessionData,
        now: OffsetDateTime,
    ) -> Result<bool> {
        let next = record
            .data_version
            .checked_add(1)
            .filter(|next| *next <= i64::MAX as u64)
            .ok_or_else(|| Error::InvalidData("data version out of range".to_owned()))?;
        let mut json = Vec::with_capacity(64);
        data.write_json(&mut json)?;
        let mut conn = self.inner.backend.get().await?;
        let outcome: i64 = SCRIPTS
            .update_data
            .key(self.inner.keys.record(&record.id))
            .arg(format!("{:016x}", record.data_version))
            .arg(unix_ms(now))
            .arg(&record.user_id)
            .arg(format!("{next:016x}"))
            .arg(json)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(outcome == 1)
    }

    /// An extension knowing the session id alone: the user is read from the stored record.
    async fn update_by_id(&self, session_id: &str, expires_at: OffsetDateTime) -> Result<()> {
        let keys = &self.inner.keys;
        let expires = unix_ms(expires_at);
        let mut conn = self.inner.backend.get().await?;
        if !self.cluster() {
            // One script: it reads the user from the record and names its index itself.
            let _: i64 = SCRIPTS
                .update_by_id
                .key(keys.record(session_id))
                .key(keys.queue_bucket(session_id))
                .arg(expires)
                .arg(time_field(expires))
                .arg(session_id)
                .arg(now_ms())
                .arg(keys.index_prefix())
                .arg(expires.saturating_add(QUEUE_GRACE_MS))
                .invoke_async(&mut conn)
                .await
                .map_err(unavailable)?;
            return Ok(());
        }
        // Cluster: the record and the index live in different slots, so the user is read first
        // (one round trip more than `update_record_expiry`). Two tries: the id may change hands
        // between the read and the update.
        for _ in 0..2 {
            let owner: Option<String> = SCRIPTS
                .owner
                .key(keys.record(session_id))
                .invoke_async(&mut conn)
                .await
                .map_err(unavailable)?;
            let Some(owner) = owner else {
                return Ok(());
            };
            // The old expiry is unknown here: the queue entry may have to move earlier.
            let outcome = self
                .cluster_update(&mut conn, session_id, &owner, expires, Queue::Lower)
                .await?;
            if outcome != -1 {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Cluster: moves the expiry of `user_id`'s record `session_id`. Returns as
    /// `retime_record` in `scripts/lib.lua` (1 done, 0 gone or expired, -1 another user's).
    async fn cluster_update(
        &self,
        conn: &mut Conn<'_>,
        session_id: &str,
        user_id: &str,
        expires: i64,
        queue: Queue,
    ) -> Result<i64> {
        let keys = &self.inner.keys;
        let index = keys.index(user_id);
        // Index first, only ever later: its entry never falls before the record's expiry. (A
        // shortened record keeps a later entry, which listing and purge judge by the record.)
        let _: i64 = SCRIPTS
            .update_index
            .key(&index)
            .arg(expires)
            .arg(session_id)
            .invoke_async(conn)
            .await
            .map_err(unavailable)?;
        if queue == Queue::Lower {
            // Before the record: the queue entry is due no later than the record expires.
            self.queue_no_later(conn, session_id, user_id, expires)
                .await?;
        }
        let outcome: i64 = SCRIPTS
            .update_record
            .key(keys.record(session_id))
            .arg(expires)
            .arg(time_field(expires))
            .arg(user_id)
            .arg(now_ms())
            .invoke_async(conn)
            .await
            .map_err(unavailable)?;
        if outcome == 1 {
            // A delete and a re-save of this id racing the update may have replaced the entry
            // with an earlier score in between.
            self.track_in_index(conn, &index, session_id, expires)
                .await?;
            if queue == Queue::Lower {
                // And a purge that read the old expiry may have requeued the entry there in
                // between (it re-reads the record afterwards, so one of the two lowers it).
                self.queue_no_later(conn, session_id, user_id, expires)
                    .await?;
            }
        }
        Ok(outcome)
    }

    async fn delete(&self, session_id: &str) -> Result<()> {
        let keys = &self.inner.keys;
        let record_key = keys.record(session_id);
        let mut conn = self.inner.backend.get().await?;
        if !self.cluster() {
            // One script: it reads the user from the record and names its index itself.
            let _: i64 = SCRIPTS
                .delete
                .key(&record_key)
                .arg(session_id)
                .arg(keys.index_prefix())
                .invoke_async(&mut conn)
                .await
                .map_err(unavailable)?;
            return Ok(());
        }
        // Record first, then its index entry: the index stays a superset of live records.
        let owner: Option<String> = SCRIPTS
            .take
            .key(&record_key)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let Some(owner) = owner else {
            return Ok(());
        };
        let index = keys.index(&owner);
        let _: i64 = redis::cmd("ZREM")
            .arg(&index)
            .arg(session_id)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        // A save of the same id racing this delete may have landed in between: if a record is
        // back, so is its entry.
        self.retrack_resaved(&mut conn, &index, &owner, &[session_id], false)
            .await
    }

    async fn fetch_for_user(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<SessionRecord>> {
        let keys = &self.inner.keys;
        let now_ms = unix_ms(now);
        let mut conn = self.inner.backend.get().await?;
        let ids: Vec<String> = SCRIPTS
            .list
            .key(keys.index(user_id))
            .arg(now_ms)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let mut records = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(BATCH) {
            let mut mget = redis::cmd("MGET");
            for id in chunk {
                mget.arg(keys.record(id));
            }
            let values: Vec<Option<Vec<u8>>> =
                mget.query_async(&mut conn).await.map_err(unavailable)?;
            for (id, value) in chunk.iter().zip(values) {
                // No value: deleted or expired since the index was read, or (cluster) a save
                // still in flight. Either way not a live session now.
                let Some(value) = value else { continue };
                let decoded = record::decode(id, &value)?;
                // The entry's score may be later than the record's expiry (a cluster update
                // that shortened it), and the id may belong to someone else by now: the record
                // itself decides, at the caller's `now`.
                if decoded.record.user_id == user_id && !decoded.is_expired(now_ms) {
                    records.push(decoded.record);
                }
            }
        }
        Ok(records)
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
                // Records first (DEL spans slots), then the index entries.
                let mut del = redis::cmd("DEL");
                for id in chunk {
                    del.arg(keys.record(id));
                }
                let _: i64 = del.query_async(&mut conn).await.map_err(unavailable)?;
                let _: i64 = redis::cmd("ZREM")
                    .arg(&index)
                    .arg(chunk)
                    .query_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
                let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
                self.retrack_resaved(&mut conn, &index, user_id, &chunk, false)
                    .await?;
            } else {
                let mut purge = SCRIPTS.purge.key(&index);
                for id in chunk {
                    purge.key(keys.record(id)).arg(id);
                }
                let _: i64 = purge.invoke_async(&mut conn).await.map_err(unavailable)?;
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
                    self.cluster_expire(&mut conn, bucket, &entries, now)
                        .await?
                } else {
                    let mut expire = SCRIPTS.expire.key(bucket);
                    expire.arg(now).arg(QUEUE_GRACE_MS);
                    for (member, entry) in &entries {
                        expire
                            .key(keys.record(entry.session_id))
                            .key(&entry.index)
                            .arg(*member)
                            .arg(entry.session_id)
                            .arg(&entry.user_id);
                    }
                    expire
                        .invoke_async::<u64>(&mut conn)
                        .await
                        .map_err(unavailable)?
                };
                if members.len() < BATCH {
                    break;
                }
            }
        }
        Ok(deleted)
    }

    /// Runs independent `commands` (each on its own slot) and returns their outputs in order:
    /// on the shared cluster connection all at once, so a purge batch costs one round trip
    /// per step instead of one per user index.
    async fn run_independent(&self, conn: &mut Conn<'_>, commands: Vec<redis::Cmd>) -> Result<()> {
        #[cfg(feature = "cluster")]
        if let Some(handle) = conn.cluster_handle() {
            let calls = commands.iter().map(|command| {
                let mut connection = handle.clone();
                async move { command.query_async::<Value>(&mut connection).await }
            });
            for outcome in join_all(calls).await {
                outcome.map_err(unavailable)?;
            }
            return Ok(());
        }
        for command in &commands {
            let _: Value = command.query_async(conn).await.map_err(unavailable)?;
        }
        Ok(())
    }

    /// Cluster: the record step of expired deletion for each of `entries` (see
    /// `scripts/expire_record.lua`), in order.
    async fn expire_records(
        &self,
        conn: &mut Conn<'_>,
        entries: &[(&str, QueueEntry<'_>)],
        now: i64,
    ) -> Result<Vec<Value>> {
        // The records live on every node: on the shared cluster connection they go out
        // IN_FLIGHT at a time rather than one round trip after another.
        #[cfg(feature = "cluster")]
        if let Some(handle) = conn.cluster_handle() {
            let mut outcomes = Vec::with_capacity(entries.len());
            for group in entries.chunks(IN_FLIGHT) {
                let calls = group.iter().map(|(_, entry)| {
                    let invocation = self.expire_record(entry, now);
                    let mut connection = handle.clone();
                    async move { invocation.invoke_async::<Value>(&mut connection).await }
                });
                for outcome in join_all(calls).await {
                    outcomes.push(outcome.map_err(unavailable)?);
                }
            }
            return Ok(outcomes);
        }
        let mut outcomes = Vec::with_capacity(entries.len());
        for (_, entry) in entries {
            let outcome = self
                .expire_record(entry, now)
                .invoke_async(conn)
                .await
                .map_err(unavailable)?;
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    fn expire_record(&self, entry: &QueueEntry<'_>, now: i64) -> redis::ScriptInvocation<'static> {
        let mut invocation = SCRIPTS
            .expire_record
            .key(self.inner.keys.record(entry.session_id));
        invocation.arg(now).arg(&entry.user_id);
        invocation
    }

    /// Cluster: one batch of due queue entries of `bucket`. Each record is judged and deleted
    /// on its own (one script on its key); then the queue entries of those live at `now` move
    /// to their expiry, and the index and queue entries of the others go.
    async fn cluster_expire(
        &self,
        conn: &mut Conn<'_>,
        bucket: &str,
        entries: &[(&str, QueueEntry<'_>)],
        now: i64,
    ) -> Result<u64> {
        let mut deleted = 0;
        let mut live: Vec<(&str, &QueueEntry<'_>, i64)> = Vec::new();
        let mut done: Vec<&str> = Vec::new();
        let mut stale: HashMap<&str, (&str, Vec<&str>)> = HashMap::new();
        let outcomes = self.expire_records(conn, entries, now).await?;
        for ((member, entry), outcome) in entries.iter().zip(outcomes) {
            match outcome {
                Value::BulkString(expires) => {
                    let expires = std::str::from_utf8(&expires)
                        .ok()
                        .and_then(|expires| expires.parse::<i64>().ok());
                    if let Some(expires) = expires {
                        live.push((member, entry, expires));
                        continue;
                    }
                }
                Value::Int(1) => deleted += 1,
                _ => {}
            }
            done.push(member);
            stale
                .entry(entry.index.as_str())
                .or_insert_with(|| (entry.user_id.as_str(), Vec::new()))
                .1
                .push(entry.session_id);
        }
        for (member, entry, expires) in live {
            // Live at `now` (extended): back in the queue at its expiry.
            let _: i64 = SCRIPTS
                .track
                .key(bucket)
                .arg("GT")
                .arg(expires)
                .arg(member)
                .arg("")
                .arg(expires.saturating_add(QUEUE_GRACE_MS))
                .invoke_async(conn)
                .await
                .map_err(unavailable)?;
            // A shortening racing this purge may have moved the record earlier since it was
            // read: the entry must not stay later than the record.
            let current = self
                .expiry_if_owned(conn, entry.session_id, &entry.user_id)
                .await?;
            if current > 0 && current < expires {
                self.queue_no_later(conn, entry.session_id, &entry.user_id, current)
                    .await?;
            }
        }
        let mut removals: Vec<redis::Cmd> = stale
            .iter()
            .map(|(index, (_, ids))| {
                let mut removal = redis::cmd("ZREM");
                removal.arg(*index).arg(ids);
                removal
            })
            .collect();
        if !done.is_empty() {
            let mut removal = redis::cmd("ZREM");
            removal.arg(bucket).arg(&done);
            removals.push(removal);
        }
        self.run_independent(conn, removals).await?;
        // A save of one of those ids racing this purge may have landed in between: its index
        // and queue entries come back. One multi-slot EXISTS over the whole batch settles the
        // common case (none did) in one round trip.
        if stale.is_empty() {
            return Ok(deleted);
        }
        let mut exists = redis::cmd("EXISTS");
        for (_, ids) in stale.values() {
            for id in ids {
                exists.arg(self.inner.keys.record(id));
            }
        }
        let back: i64 = exists.query_async(conn).await.map_err(unavailable)?;
        if back > 0 {
            for (index, (user_id, ids)) in &stale {
                self.retrack_resaved(conn, index, user_id, ids, true)
                    .await?;
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
        let span =
            tracing::debug_span!("narvik_redis.save_session", session = short_id(&record.id));
        self.bounded("save_session", self.save(record).instrument(span))
            .await
    }

    /// One `GET`. Expired records are never returned: Redis removes them at `expires_at`, and
    /// one seen a moment before that is hidden.
    async fn fetch_session(&self, session_id: &str) -> Result<Option<SessionRecord>> {
        let span =
            tracing::debug_span!("narvik_redis.fetch_session", session = short_id(session_id));
        // The hot path: skip the span wrapper when nobody listens.
        if span.is_disabled() {
            return self.bounded("fetch_session", self.fetch(session_id)).await;
        }
        self.bounded("fetch_session", self.fetch(session_id).instrument(span))
            .await
    }

    /// Moves the expiry of a live record (and its index and queue entries); a missing or
    /// expired record stays as it is. Knowing the id alone, the store learns the user from the
    /// record: inside the one script on a single server, with one read more on a cluster.
    async fn update_session_expiry(
        &self,
        session_id: &str,
        expires_at: OffsetDateTime,
    ) -> Result<()> {
        let span = tracing::debug_span!(
            "narvik_redis.update_session_expiry",
            session = short_id(session_id)
        );
        self.bounded(
            "update_session_expiry",
            self.update_by_id(session_id, expires_at).instrument(span),
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
        let span = tracing::debug_span!(
            "narvik_redis.update_record_expiry",
            session = short_id(&record.id)
        );
        self.bounded(
            "update_record_expiry",
            self.update_record(record, expires_at).instrument(span),
        )
        .await
    }

    async fn delete_session(&self, session_id: &str) -> Result<()> {
        let span = tracing::debug_span!(
            "narvik_redis.delete_session",
            session = short_id(session_id)
        );
        self.bounded("delete_session", self.delete(session_id).instrument(span))
            .await
    }

    /// Reads the user's index (pruning entries of records Redis has expired), then the records
    /// with `MGET`, keeping those live at `now`.
    async fn fetch_sessions_for_user(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<SessionRecord>> {
        let span = tracing::debug_span!("narvik_redis.fetch_sessions_for_user");
        self.bounded(
            "fetch_sessions_for_user",
            self.fetch_for_user(user_id, now).instrument(span),
        )
        .await
    }

    async fn delete_sessions_for_user(&self, user_id: &str) -> Result<()> {
        let span = tracing::debug_span!("narvik_redis.delete_sessions_for_user");
        self.bounded(
            "delete_sessions_for_user",
            self.delete_for_user(user_id).instrument(span),
        )
        .await
    }

    /// Deletes every record expired at `now`, whether or not Redis has expired it yet, found
    /// through the expiry queue, and returns how many records it deleted. Records Redis removed
    /// by itself before the call are not counted (their index entries are cleaned up), so the
    /// count never exceeds the expired records and never includes a live one.
    async fn delete_all_expired_sessions(&self, now: OffsetDateTime) -> Result<u64> {
        let span = tracing::debug_span!("narvik_redis.delete_all_expired_sessions");
        self.bounded(
            "delete_all_expired_sessions",
            self.delete_expired(now).instrument(span),
        )
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
        let span = tracing::debug_span!(
            "narvik_redis.update_session_data",
            session = short_id(&record.id)
        );
        self.bounded(
            "update_session_data",
            self.update_data(record, data, now).instrument(span),
        )
        .await
    }
}
