//! [`RedisStore`]: the [`SessionStore`] implementation.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use narvik_core::session::short_id;
use narvik_core::{Error, Result, SessionRecord, SessionStore};
use redis::{RedisError, Value};
use time::OffsetDateTime;
use tracing::Instrument;

use crate::config::RedisStoreBuilder;
use crate::connection::{Backend, Conn};
use crate::hints::Hints;
use crate::keys::{KeySpace, QUEUE_GRACE_MS};
use crate::record::{self, now_ms, time_field, unix_ms};
use crate::scripts::SCRIPTS;

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
    hints: Hints,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.inner.keys.prefix())
            .field("cluster", &self.inner.backend.is_cluster())
            .finish_non_exhaustive()
    }
}

fn unavailable(error: RedisError) -> Error {
    Error::unavailable(error)
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

    pub(crate) fn from_parts(backend: Backend, keys: KeySpace) -> Self {
        Self {
            inner: Arc::new(Inner {
                backend,
                keys,
                hints: Hints::default(),
            }),
        }
    }

    /// The prefix of every key of this store.
    pub fn prefix(&self) -> &str {
        self.inner.keys.prefix()
    }

    fn cluster(&self) -> bool {
        self.inner.backend.is_cluster()
    }

    /// The user a record belongs to, as stored (`None`: no record, or not a narvik record).
    async fn read_owner(&self, conn: &mut Conn<'_>, session_id: &str) -> Result<Option<Arc<str>>> {
        let owner: Option<String> = SCRIPTS
            .owner
            .key(self.inner.keys.record(session_id))
            .invoke_async(conn)
            .await
            .map_err(unavailable)?;
        Ok(owner.map(Arc::from))
    }

    /// The user of a session: the hint left by `fetch_session`, else read from the record.
    async fn owner(&self, conn: &mut Conn<'_>, session_id: &str) -> Result<Option<Arc<str>>> {
        match self.inner.hints.get(session_id) {
            Some(user) => Ok(Some(user)),
            None => self.read_owner(conn, session_id).await,
        }
    }

    async fn save(&self, record: &SessionRecord) -> Result<()> {
        let keys = &self.inner.keys;
        let expires = unix_ms(record.expires_at);
        let now = now_ms();
        let value = record::encode(record)?;
        let record_key = keys.record(&record.id);
        let index = keys.index(&record.user_id);
        let bucket = keys.queue_bucket(&record.id);
        let member = keys.queue_member(&record.user_id, &record.id);
        let mut conn = self.inner.backend.get().await?;
        if !self.cluster() {
            let outcome: i64 = SCRIPTS
                .save
                .key(&record_key)
                .key(&index)
                .key(bucket)
                .arg(&value)
                .arg(expires)
                .arg(now)
                .arg(&record.id)
                .arg(&member)
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
        // Cluster: index and queue entries first, the record last. A failure part-way leaves
        // at most an index entry without a record (skipped and pruned), never a record
        // missing from its user's index.
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
            .arg(expires)
            .arg(&record.id)
            .arg(now)
            .arg(expires)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let _: i64 = SCRIPTS
            .track
            .key(bucket)
            .arg(expires)
            .arg(&member)
            .arg("")
            .arg(expires.saturating_add(QUEUE_GRACE_MS))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let set: Value = redis::cmd("SET")
            .arg(&record_key)
            .arg(&value)
            .arg("NX")
            .arg("PXAT")
            .arg(expires)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if !matches!(set, Value::Nil) {
            // A delete of the same id racing this save may have removed the entry between the
            // two steps: put it back now that the record exists.
            return self
                .track_in_index(&mut conn, &index, &record.id, expires)
                .await;
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

    /// Cluster, after removing the index entries of deleted records: a save of one of those ids
    /// may have landed in between, and its entry must come back.
    async fn retrack_resaved(
        &self,
        conn: &mut Conn<'_>,
        index: &str,
        ids: &[String],
    ) -> Result<()> {
        let keys = &self.inner.keys;
        let mut exists = redis::cmd("EXISTS");
        for id in ids {
            exists.arg(keys.record(id));
        }
        let back: i64 = exists.query_async(conn).await.map_err(unavailable)?;
        if back == 0 {
            return Ok(());
        }
        for id in ids {
            let expires: i64 = redis::cmd("PEXPIRETIME")
                .arg(keys.record(id))
                .query_async(conn)
                .await
                .map_err(unavailable)?;
            if expires > 0 {
                self.track_in_index(conn, index, id, expires).await?;
            }
        }
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
        // Redis removes the key at expires_at by its own clock; hide it already by ours.
        let now = now_ms();
        if decoded.is_expired(now) {
            return Ok(None);
        }
        if Hints::may_be_extended(decoded.created_ms, decoded.expires_ms, now) {
            self.inner
                .hints
                .remember(session_id, &decoded.record.user_id);
        }
        Ok(Some(decoded.record))
    }

    async fn update(&self, session_id: &str, expires_at: OffsetDateTime) -> Result<()> {
        let keys = &self.inner.keys;
        let expires = unix_ms(expires_at);
        let expires_hex = time_field(expires);
        let record_key = keys.record(session_id);
        let mut conn = self.inner.backend.get().await?;
        let mut user = self.owner(&mut conn, session_id).await?;
        // Two tries: a stale hint (the id now belongs to another user) is re-read once.
        for _ in 0..2 {
            let Some(current) = user.take() else {
                return Ok(());
            };
            let index = keys.index(&current);
            let outcome: i64 = if self.cluster() {
                // Index first: its entry never expires before the record it points at.
                let _: i64 = SCRIPTS
                    .update_index
                    .key(&index)
                    .arg(expires)
                    .arg(session_id)
                    .invoke_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
                let outcome: i64 = SCRIPTS
                    .update_record
                    .key(&record_key)
                    .arg(expires)
                    .arg(&expires_hex)
                    .arg(&*current)
                    .invoke_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
                if outcome == 1 {
                    // A delete and a re-save of this id racing the update may have replaced
                    // the entry with an earlier score in between.
                    self.track_in_index(&mut conn, &index, session_id, expires)
                        .await?;
                }
                outcome
            } else {
                SCRIPTS
                    .update
                    .key(&record_key)
                    .key(&index)
                    .arg(expires)
                    .arg(&expires_hex)
                    .arg(session_id)
                    .arg(&*current)
                    .invoke_async(&mut conn)
                    .await
                    .map_err(unavailable)?
            };
            if outcome != -1 {
                return Ok(());
            }
            self.inner.hints.forget(session_id);
            user = self.read_owner(&mut conn, session_id).await?;
        }
        Ok(())
    }

    async fn delete(&self, session_id: &str) -> Result<()> {
        let keys = &self.inner.keys;
        let record_key = keys.record(session_id);
        let mut conn = self.inner.backend.get().await?;
        let hint = self.inner.hints.get(session_id);
        self.inner.hints.forget(session_id);
        if self.cluster() {
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
            // A save of the same id racing this delete may have landed in between: if a record
            // is back, so is its entry.
            return self
                .retrack_resaved(&mut conn, &index, &[session_id.to_owned()])
                .await;
        }
        let mut user = match hint {
            Some(user) => Some(user),
            None => self.read_owner(&mut conn, session_id).await?,
        };
        for _ in 0..2 {
            let current = user.take().unwrap_or_else(|| Arc::from(""));
            let outcome: i64 = SCRIPTS
                .delete
                .key(&record_key)
                .key(keys.index(&current))
                .arg(session_id)
                .arg(&*current)
                .invoke_async(&mut conn)
                .await
                .map_err(unavailable)?;
            if outcome != -1 {
                return Ok(());
            }
            user = self.read_owner(&mut conn, session_id).await?;
        }
        Ok(())
    }

    async fn fetch_for_user(&self, user_id: &str) -> Result<Vec<SessionRecord>> {
        let keys = &self.inner.keys;
        let index = keys.index(user_id);
        let now_ms = now_ms();
        let mut conn = self.inner.backend.get().await?;
        let (ids,): (Vec<String>,) = redis::pipe()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&index)
            .arg("-inf")
            .arg(now_ms)
            .ignore()
            .cmd("ZRANGE")
            .arg(&index)
            .arg(format!("({now_ms}"))
            .arg("+inf")
            .arg("BYSCORE")
            .query_async(&mut conn)
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
                self.retrack_resaved(&mut conn, &index, chunk).await?;
            } else {
                let mut purge = SCRIPTS.purge.key(&index);
                for id in chunk {
                    purge.key(keys.record(id)).arg(id);
                }
                let _: i64 = purge.invoke_async(&mut conn).await.map_err(unavailable)?;
            }
            for id in chunk {
                self.inner.hints.forget(id);
            }
        }
        Ok(())
    }

    async fn delete_expired(&self) -> Result<u64> {
        let keys = &self.inner.keys;
        let now = now_ms();
        let mut conn = self.inner.backend.get().await?;
        let mut removed = 0;
        for bucket in keys.queue_buckets() {
            loop {
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
                let mut by_index: HashMap<String, Vec<(&str, &str)>> = HashMap::new();
                for member in &members {
                    // A member that does not parse points nowhere: it is just dropped below.
                    if let Some((index, session_id)) = keys.parse_queue_member(member) {
                        by_index
                            .entry(index)
                            .or_default()
                            .push((member.as_str(), session_id));
                    }
                }
                let mut requeue: Vec<(String, &str)> = Vec::new();
                for (index, entries) in &by_index {
                    let mut reap = SCRIPTS.reap.key(index);
                    reap.arg(now);
                    for (_, session_id) in entries {
                        reap.arg(*session_id);
                    }
                    let results: Vec<Value> =
                        reap.invoke_async(&mut conn).await.map_err(unavailable)?;
                    for ((member, _), result) in entries.iter().zip(results) {
                        match result {
                            Value::Int(0) => removed += 1,
                            Value::BulkString(score) => {
                                requeue.push((String::from_utf8_lossy(&score).into_owned(), member))
                            }
                            _ => {}
                        }
                    }
                }
                // Extended sessions go back in the queue at their new expiry (through `track`,
                // which keeps the bucket's TTL); everything else leaves it.
                for (score, member) in &requeue {
                    let alive_until = score
                        .parse::<f64>()
                        .map_or(now, |score| score as i64)
                        .saturating_add(QUEUE_GRACE_MS);
                    let _: i64 = SCRIPTS
                        .track
                        .key(bucket)
                        .arg(score)
                        .arg(*member)
                        .arg("")
                        .arg(alive_until)
                        .invoke_async(&mut conn)
                        .await
                        .map_err(unavailable)?;
                }
                let done: Vec<&String> = members
                    .iter()
                    .filter(|member| !requeue.iter().any(|(_, kept)| kept == member))
                    .collect();
                if !done.is_empty() {
                    let _: i64 = redis::cmd("ZREM")
                        .arg(bucket)
                        .arg(&done)
                        .query_async(&mut conn)
                        .await
                        .map_err(unavailable)?;
                }
                if members.len() < BATCH {
                    break;
                }
            }
        }
        Ok(removed)
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    /// Insert-only (`Error::DuplicateId` on an existing id, nothing changed). A record whose
    /// `expires_at` has passed is not kept.
    async fn save_session(&self, record: &SessionRecord) -> Result<()> {
        let span =
            tracing::debug_span!("narvik_redis.save_session", session = short_id(&record.id));
        self.save(record).instrument(span).await
    }

    /// One `GET`. Expired records are never returned: Redis removes them at `expires_at`, and
    /// one seen a moment before that is hidden.
    async fn fetch_session(&self, session_id: &str) -> Result<Option<SessionRecord>> {
        let span =
            tracing::debug_span!("narvik_redis.fetch_session", session = short_id(session_id));
        // The hot path: skip the span wrapper when nobody listens.
        if span.is_disabled() {
            return self.fetch(session_id).await;
        }
        self.fetch(session_id).instrument(span).await
    }

    /// Moves the record's expiry (and its index entry); a missing record stays missing.
    async fn update_session_expiry(
        &self,
        session_id: &str,
        expires_at: OffsetDateTime,
    ) -> Result<()> {
        let span = tracing::debug_span!(
            "narvik_redis.update_session_expiry",
            session = short_id(session_id)
        );
        self.update(session_id, expires_at).instrument(span).await
    }

    async fn delete_session(&self, session_id: &str) -> Result<()> {
        let span = tracing::debug_span!(
            "narvik_redis.delete_session",
            session = short_id(session_id)
        );
        self.delete(session_id).instrument(span).await
    }

    /// Reads the user's index (pruning its expired entries), then the records with `MGET`.
    async fn fetch_sessions_for_user(&self, user_id: &str) -> Result<Vec<SessionRecord>> {
        let span = tracing::debug_span!("narvik_redis.fetch_sessions_for_user");
        self.fetch_for_user(user_id).instrument(span).await
    }

    async fn delete_sessions_for_user(&self, user_id: &str) -> Result<()> {
        let span = tracing::debug_span!("narvik_redis.delete_sessions_for_user");
        self.delete_for_user(user_id).instrument(span).await
    }

    /// Redis deletes expired records itself. This call removes the per-user index entries of
    /// expired sessions, found through the expiry queue, and returns how many it removed: each
    /// one is a session that had expired. Entries already pruned by a per-user call are not
    /// counted again, so the count never exceeds the expired sessions.
    async fn delete_all_expired_sessions(&self) -> Result<u64> {
        let span = tracing::debug_span!("narvik_redis.delete_all_expired_sessions");
        self.delete_expired().instrument(span).await
    }
}
