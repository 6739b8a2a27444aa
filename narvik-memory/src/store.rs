//! The store: id shards that each carry their own expiry index, and a sharded per-user index.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use narvik_core::{
    Capabilities, Error, ExpiredFetch, Result, SessionData, SessionRecord, SessionStore,
};
use time::OffsetDateTime;

/// How many id shards (and user-index shards) a store has unless told otherwise. Enough that
/// 64 tasks on a many-core machine rarely meet on one lock; small enough that the expired purge,
/// which visits every shard, stays cheap.
pub const DEFAULT_SHARDS: usize = 64;

/// The most shards [`MemoryStore::with_shards`] makes; larger requests are lowered to it.
pub const MAX_SHARDS: usize = 1 << 16;

/// A session record as one shard keeps it. The id and user id are shared (`Arc<str>`) with the
/// indexes, so an index entry costs a pointer, not a copy of the string.
#[derive(Debug)]
struct Entry {
    id: Arc<str>,
    user_id: Arc<str>,
    expires_at: OffsetDateTime,
    created_at: OffsetDateTime,
    data: SessionData,
}

impl Entry {
    /// The record as a fetch returns it. `id` is the caller's copy of the id (equal to
    /// `self.id`), already in cache, unlike the shared one.
    fn to_record(&self, id: &str) -> SessionRecord {
        SessionRecord {
            id: id.to_owned(),
            user_id: String::from(&*self.user_id),
            expires_at: self.expires_at,
            created_at: self.created_at,
            // Shared, not copied: the engine decodes the typed data from it, which is the
            // one copy of the data a validation makes.
            data: self.data.clone(),
        }
    }
}

/// One id shard: its records and the expiry index of exactly those records, under one lock,
/// so the two can never disagree.
#[derive(Debug, Default)]
struct Shard {
    records: HashMap<Arc<str>, Entry, IdHasher>,
    expiry: BTreeSet<(OffsetDateTime, Arc<str>)>,
}

/// How many expired records a purge removes per write lock of a shard.
const PURGE_BATCH: usize = 1_024;

/// The hash of the id shards: keyed per store (and per shard map), and several times faster than
/// SipHash on a 64-character id.
type IdHasher = foldhash::fast::RandomState;

/// One shard of the per-user index: user id -> ids of that user's sessions.
type UserShard = HashMap<Arc<str>, HashSet<Arc<str>>>;

/// An in-process [`SessionStore`]: sharded, indexed by user and by expiry, safe to share
/// between any number of tasks and threads. See the crate documentation for the design.
///
/// ```
/// # async fn demo() -> narvik_core::Result<()> {
/// use std::sync::Arc;
/// use narvik_core::Narvik;
/// use narvik_memory::MemoryStore;
///
/// let narvik: Narvik = Narvik::new(Arc::new(MemoryStore::new()));
/// let created = narvik.create_session("alice", ()).await?;
/// assert!(narvik.validate_session(created.token.as_str()).await?.is_some());
/// # Ok(()) }
/// ```
pub struct MemoryStore {
    shards: Box<[RwLock<Shard>]>,
    users: Box<[RwLock<UserShard>]>,
    id_hasher: IdHasher,
    user_hasher: RandomState,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("shards", &self.shards.len())
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

/// Lock helpers that ignore poisoning: the critical sections below run no user code and
/// nothing that panics short of an allocation failure (which aborts), so the data behind a
/// poisoned lock is still consistent.
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

impl MemoryStore {
    /// What this store declares through [`SessionStore::capabilities`]: every optional call,
    /// an exact purge count, records saved already expired kept (and counted by the next
    /// purge), and expired records hidden from `fetch_session` (judged by the wall clock)
    /// rather than returned.
    pub const CAPABILITIES: Capabilities = Capabilities {
        expired_fetch: ExpiredFetch::Hidden,
        ..Capabilities::ALL
    };

    /// An empty store with [`DEFAULT_SHARDS`] shards.
    ///
    /// The store holds no clock: listing and purge cut off at the `now` the engine hands
    /// down, and the two decisions the required calls make by themselves (hiding an expired
    /// record from `fetch_session`, refusing to extend one) use the wall clock.
    pub fn new() -> Self {
        Self::with_shards(DEFAULT_SHARDS)
    }

    /// An empty store with `shards` id shards (rounded up to a power of two, between 1 and
    /// [`MAX_SHARDS`]).
    pub fn with_shards(shards: usize) -> Self {
        let count = shards.clamp(1, MAX_SHARDS).next_power_of_two();
        Self {
            shards: (0..count).map(|_| RwLock::default()).collect(),
            users: (0..count).map(|_| RwLock::default()).collect(),
            id_hasher: IdHasher::default(),
            user_hasher: RandomState::new(),
        }
    }

    /// How many id shards (and user-index shards) the store has.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// How many records the store holds, including expired ones not yet purged.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| read(shard).records.len())
            .sum()
    }

    /// Whether the store holds no record at all.
    pub fn is_empty(&self) -> bool {
        self.shards
            .iter()
            .all(|shard| read(shard).records.is_empty())
    }

    // The shard counts are powers of two, so masking a hash picks a shard uniformly.
    fn shard(&self, session_id: &str) -> &RwLock<Shard> {
        let hash = self.id_hasher.hash_one(session_id) as usize;
        &self.shards[hash & (self.shards.len() - 1)]
    }

    fn user_shard(&self, user_id: &str) -> &RwLock<UserShard> {
        let hash = self.user_hasher.hash_one(user_id) as usize;
        &self.users[hash & (self.users.len() - 1)]
    }

    /// Inserts `record` unless its id exists.
    ///
    /// Lock order everywhere: an id shard first, then a user shard; never the other way
    /// round, and never two shards of one kind at once. Every change to the user index for an
    /// id happens while that id's shard is write-locked, so the index and the records change
    /// together.
    fn insert(&self, record: &SessionRecord) -> Result<()> {
        // Copies are made before any lock is taken, to keep the critical section short.
        let id: Arc<str> = Arc::from(record.id.as_str());
        let data = record.data.clone();
        let mut shard = write(self.shard(&record.id));
        if shard.records.contains_key(record.id.as_str()) {
            return Err(Error::DuplicateId);
        }
        let user_id = {
            let mut users = write(self.user_shard(&record.user_id));
            let user_id = match users.get_key_value(record.user_id.as_str()) {
                Some((user_id, _)) => Arc::clone(user_id),
                None => Arc::from(record.user_id.as_str()),
            };
            users
                .entry(Arc::clone(&user_id))
                .or_default()
                .insert(Arc::clone(&id));
            user_id
        };
        shard.expiry.insert((record.expires_at, Arc::clone(&id)));
        shard.records.insert(
            Arc::clone(&id),
            Entry {
                id,
                user_id,
                expires_at: record.expires_at,
                created_at: record.created_at,
                data,
            },
        );
        Ok(())
    }

    /// The record with this id unless it is missing or expired at `now`.
    fn get(&self, session_id: &str, now: OffsetDateTime) -> Option<SessionRecord> {
        let shard = read(self.shard(session_id));
        shard
            .records
            .get(session_id)
            .filter(|entry| now < entry.expires_at)
            .map(|entry| entry.to_record(session_id))
    }

    /// Moves the expiry of a record live at `now`. A record expired at `now` is as good as
    /// missing: it keeps its old expiry and is never revived.
    fn set_expiry(&self, session_id: &str, expires_at: OffsetDateTime, now: OffsetDateTime) {
        let mut guard = write(self.shard(session_id));
        let shard = &mut *guard;
        let Some(entry) = shard.records.get_mut(session_id) else {
            // Missing or deleted: never recreate it (an extension racing a logout).
            return;
        };
        if entry.expires_at <= now || entry.expires_at == expires_at {
            return;
        }
        shard
            .expiry
            .remove(&(entry.expires_at, Arc::clone(&entry.id)));
        shard.expiry.insert((expires_at, Arc::clone(&entry.id)));
        entry.expires_at = expires_at;
    }

    /// Removes `session_id` from a write-locked shard and from every index.
    /// `only_if_user`, when given, keeps a record that now belongs to someone else (an id
    /// deleted and saved again for another user while a per-user delete was running).
    fn unlink(&self, shard: &mut Shard, session_id: &str, only_if_user: Option<&str>) -> bool {
        if let Some(user_id) = only_if_user {
            match shard.records.get(session_id) {
                Some(entry) if &*entry.user_id == user_id => {}
                _ => return false,
            }
        }
        let Some(entry) = shard.records.remove(session_id) else {
            return false;
        };
        shard
            .expiry
            .remove(&(entry.expires_at, Arc::clone(&entry.id)));
        self.unindex_user(&entry);
        true
    }

    fn unindex_user(&self, entry: &Entry) {
        let mut users = write(self.user_shard(&entry.user_id));
        if let Some(ids) = users.get_mut(&*entry.user_id) {
            ids.remove(&*entry.id);
            if ids.is_empty() {
                users.remove(&*entry.user_id);
            }
        }
    }

    fn remove(&self, session_id: &str) {
        let mut shard = write(self.shard(session_id));
        self.unlink(&mut shard, session_id, None);
    }

    /// The ids the user index holds for `user_id`: a snapshot, read without any id shard
    /// locked (the index lock is released before a shard is touched, keeping the lock order).
    fn ids_of_user(&self, user_id: &str) -> Vec<Arc<str>> {
        read(self.user_shard(user_id))
            .get(user_id)
            .map(|ids| ids.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn live_for_user(&self, user_id: &str, now: OffsetDateTime) -> Vec<SessionRecord> {
        self.ids_of_user(user_id)
            .iter()
            .filter_map(|id| {
                let shard = read(self.shard(id));
                shard
                    .records
                    .get(&**id)
                    .filter(|entry| &*entry.user_id == user_id && now < entry.expires_at)
                    .map(|entry| entry.to_record(id))
            })
            .collect()
    }

    fn remove_for_user(&self, user_id: &str) -> u64 {
        let mut removed = 0;
        for id in self.ids_of_user(user_id) {
            let mut shard = write(self.shard(&id));
            removed += u64::from(self.unlink(&mut shard, &id, Some(user_id)));
        }
        removed
    }

    /// Deletes every record expired at `now` and returns how many: per shard, it pops the
    /// expiry index from its earliest entry until it reaches a live one, so the work is the
    /// number of expired records plus one look per shard.
    pub fn purge_expired_at(&self, now: OffsetDateTime) -> u64 {
        let mut purged = 0;
        for lock in self.shards.iter() {
            loop {
                // A read lock first, so shards with nothing due never block their readers.
                let due = read(lock)
                    .expiry
                    .first()
                    .is_some_and(|(expires_at, _)| *expires_at <= now);
                if !due {
                    break;
                }
                let mut guard = write(lock);
                let shard = &mut *guard;
                // At most PURGE_BATCH records per write lock: a mass expiry never stalls the
                // shard's readers for long.
                for _ in 0..PURGE_BATCH {
                    match shard.expiry.first() {
                        Some((expires_at, _)) if *expires_at <= now => {}
                        _ => break,
                    }
                    let Some((_, id)) = shard.expiry.pop_first() else {
                        break;
                    };
                    if let Some(entry) = shard.records.remove(&*id) {
                        self.unindex_user(&entry);
                        purged += 1;
                    }
                }
            }
        }
        purged
    }

    /// The user and expiry of a record, expired or not.
    #[cfg(test)]
    pub(crate) fn raw_entry(&self, session_id: &str) -> Option<(String, OffsetDateTime)> {
        read(self.shard(session_id))
            .records
            .get(session_id)
            .map(|entry| (entry.user_id.to_string(), entry.expires_at))
    }

    #[cfg(test)]
    /// Checks that the records and both indexes describe the same set of sessions.
    pub(crate) fn assert_consistent(&self) {
        let mut by_user: HashMap<String, HashSet<String>> = HashMap::new();
        for lock in self.shards.iter() {
            let shard = read(lock);
            assert_eq!(shard.records.len(), shard.expiry.len(), "expiry index size");
            for (key, entry) in &shard.records {
                assert_eq!(key, &entry.id);
                assert!(
                    shard
                        .expiry
                        .contains(&(entry.expires_at, Arc::clone(&entry.id))),
                    "record {} missing from the expiry index",
                    entry.id
                );
                by_user
                    .entry(entry.user_id.to_string())
                    .or_default()
                    .insert(entry.id.to_string());
            }
        }
        let mut indexed: HashMap<String, HashSet<String>> = HashMap::new();
        for lock in self.users.iter() {
            for (user_id, ids) in read(lock).iter() {
                assert!(!ids.is_empty(), "empty id set kept for user {user_id}");
                indexed.insert(
                    user_id.to_string(),
                    ids.iter().map(|id| id.to_string()).collect(),
                );
            }
        }
        assert_eq!(by_user, indexed, "user index disagrees with the records");
    }
}

/// Declares [`MemoryStore::CAPABILITIES`]. Expired records are hidden:
/// [`fetch_session`](SessionStore::fetch_session) never returns a record expired by the wall
/// clock, and [`fetch_sessions_for_user`](SessionStore::fetch_sessions_for_user) never one
/// expired at the `now` it is given; the record stays in memory until
/// `delete_all_expired_sessions` (or the sweeper) or a delete removes it.
#[async_trait]
impl SessionStore for MemoryStore {
    fn capabilities(&self) -> Capabilities {
        Self::CAPABILITIES
    }

    async fn save_session(&self, record: &SessionRecord) -> Result<()> {
        self.insert(record)
    }

    async fn fetch_session(&self, session_id: &str) -> Result<Option<SessionRecord>> {
        // The required calls carry no `now`: the wall clock decides (DESIGN 2.12).
        Ok(self.get(session_id, OffsetDateTime::now_utc()))
    }

    async fn update_session_expiry(
        &self,
        session_id: &str,
        expires_at: OffsetDateTime,
    ) -> Result<()> {
        // Read before the lock, so the critical section stays a few map operations long.
        self.set_expiry(session_id, expires_at, OffsetDateTime::now_utc());
        Ok(())
    }

    async fn delete_session(&self, session_id: &str) -> Result<()> {
        self.remove(session_id);
        Ok(())
    }

    async fn fetch_sessions_for_user(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<SessionRecord>> {
        Ok(self.live_for_user(user_id, now))
    }

    async fn delete_sessions_for_user(&self, user_id: &str) -> Result<()> {
        self.remove_for_user(user_id);
        Ok(())
    }

    async fn delete_all_expired_sessions(&self, now: OffsetDateTime) -> Result<u64> {
        Ok(self.purge_expired_at(now))
    }
}
