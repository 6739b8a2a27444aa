//! The store: id shards (each a slab of one-allocation records with its own id and expiry
//! indexes) and a sharded per-user index.

#[cfg(test)]
mod check;
mod millis;
mod purge;
mod session_store;

use std::hash::BuildHasher;
use std::num::NonZeroU64;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use narvik_core::{Capabilities, Error, ExpiredFetch, Result, SessionRecord};
// Named by the docs only; the trait is implemented in `session_store`.
#[cfg(doc)]
use narvik_core::SessionStore;
use time::Duration;

use self::millis::{lifetime_ms, millis, time_of};
use crate::id::Id;
use crate::record::{hash_id, Record, User};
use crate::shard::{IdHasher, Shard};
use crate::users::{UserHasher, UserShard};

/// How many id shards (and user-index shards) a store has unless told otherwise. Enough that
/// 64 tasks on a many-core machine rarely meet on one lock; small enough that the expired purge,
/// which visits every shard, stays cheap.
pub const DEFAULT_SHARDS: usize = 64;

/// The most shards [`MemoryStore::with_shards`] makes; larger requests are lowered to it.
pub const MAX_SHARDS: usize = 1 << 16;

/// A lock on its own cache lines, so that readers of one shard never slow down those of its
/// neighbour by writing to the lock word.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded<T>(T);

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
    shards: Box<[Padded<RwLock<Shard>>]>,
    users: Box<[Padded<RwLock<UserShard>>]>,
    id_hasher: IdHasher,
    user_hasher: UserHasher,
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

/// Lock helpers that ignore poisoning: the store's critical sections run no user code and
/// nothing that panics short of an allocation failure (which aborts), so the data behind a
/// poisoned lock is still consistent.
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}
/// A slot's key in the per-user index (and a user's handle in a record): the shard's number
/// and the slot's.
fn key(shard: usize, slot: u32) -> u64 {
    ((shard as u64) << 32) | u64::from(slot)
}

fn split(key: u64) -> (usize, u32) {
    ((key >> 32) as usize, key as u32)
}

impl MemoryStore {
    /// What this store declares through [`SessionStore::capabilities`]: every optional call
    /// (the data update included),
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
            shards: (0..count).map(|_| Padded::default()).collect(),
            users: (0..count).map(|_| Padded::default()).collect(),
            id_hasher: IdHasher::default(),
            user_hasher: UserHasher::new(),
        }
    }

    /// How many id shards (and user-index shards) the store has.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// How many records the store holds, including expired ones not yet purged.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| read(&shard.0).len()).sum()
    }

    /// Whether the store holds no record at all.
    pub fn is_empty(&self) -> bool {
        self.shards.iter().all(|shard| read(&shard.0).len() == 0)
    }

    /// The form of `id`, its hash, and the number of its shard.
    fn locate<'a>(&self, id: &'a str) -> (Id<'a>, NonZeroU64, usize) {
        let form = Id::of(id);
        let hash = hash_id(&self.id_hasher, &form);
        (form, hash, Self::pick(hash.get(), self.shards.len()))
    }

    /// A shard for `hash`, from its middle bits: a shard's hash table uses the low ones and
    /// the top seven.
    fn pick(hash: u64, shards: usize) -> usize {
        (hash >> 32) as usize & (shards - 1)
    }

    fn user_hash(&self, user_id: &str) -> u64 {
        self.user_hasher.hash_one(user_id)
    }

    fn user_shard(&self, hash: u64) -> &RwLock<UserShard> {
        &self.users[Self::pick(hash, self.users.len())].0
    }

    /// The user id of `record`, read from the user index when the record holds a handle.
    fn user_of(&self, record: &Record) -> Option<String> {
        match record.user() {
            User::Inline(user) => Some(user.to_owned()),
            User::Handle(handle) => {
                let (shard, slot) = split(handle);
                read(&self.users.get(shard)?.0)
                    .name(slot)
                    .map(str::to_owned)
            }
        }
    }

    /// Whether `record` belongs to `user_id`.
    fn is_users(&self, record: &Record, user_id: &str) -> bool {
        match record.user() {
            User::Inline(user) => user == user_id,
            User::Handle(handle) => {
                let (shard, slot) = split(handle);
                self.users
                    .get(shard)
                    .is_some_and(|lock| read(&lock.0).name(slot) == Some(user_id))
            }
        }
    }

    /// The record a fetch or a listing returns.
    fn to_record(&self, shard: &Shard, id: String, record: &Record) -> Option<SessionRecord> {
        Some(SessionRecord {
            id,
            user_id: self.user_of(record)?,
            expires_at: time_of(record.expires_ms()),
            created_at: time_of(record.created_ms()),
            data: shard.data(record),
            lifetime: match record.lifetime_ms() {
                0 => None,
                // Saved from a Duration's milliseconds, so it fits an i64.
                ms => Some(Duration::milliseconds(
                    i64::try_from(ms).unwrap_or(i64::MAX),
                )),
            },
            data_version: record.data_version(),
        })
    }

    /// Inserts `record` unless its id exists.
    ///
    /// Lock order everywhere: an id shard first, then a user shard; never the other way
    /// round, and never two shards of one kind at once. Every change to the user index for a
    /// slot happens while that slot's shard is write-locked, so the index and the records
    /// change together.
    fn insert(&self, record: &SessionRecord) -> Result<()> {
        // The record is built, in its one allocation, before any lock is taken.
        let json = record.data.to_json_text()?;
        let (form, hash, index) = self.locate(&record.id);
        let mut built = Record::new(
            form,
            &record.user_id,
            millis(record.expires_at),
            millis(record.created_at),
            lifetime_ms(record.lifetime)?,
            record.data_version,
            (json != "null").then_some(&*json),
        )
        .ok_or_else(|| {
            Error::InvalidData(format!(
                "narvik-memory holds session ids of less than 2 GiB, not {} bytes",
                record.id.len()
            ))
        })?;
        let user_hash = self.user_hash(&record.user_id);
        let user_shard = Self::pick(user_hash, self.users.len());
        let mut shard = write(&self.shards[index].0);
        if shard.find(&form, hash).is_some() {
            return Err(Error::DuplicateId);
        }
        let slot = shard.next_slot()?;
        let user_slot = write(&self.users[user_shard].0).add(
            user_hash,
            &record.user_id,
            key(index, slot),
            &self.user_hasher,
        );
        // Only a record whose user id is too long to hold inline keeps the handle.
        built.set_handle(key(user_shard, user_slot));
        shard.insert(hash, built);
        Ok(())
    }

    /// The record with this id unless it is missing or expired at `now_ms`.
    fn get(&self, session_id: &str, now_ms: i64) -> Option<SessionRecord> {
        let (form, hash, index) = self.locate(session_id);
        let shard = read(&self.shards[index].0);
        let record = shard
            .find(&form, hash)
            .filter(|record| now_ms < record.expires_ms())?;
        self.to_record(&shard, session_id.to_owned(), record)
    }

    /// Moves the expiry of a record live at `now_ms`. A record expired at `now_ms` is as good
    /// as missing: it keeps its old expiry and is never revived.
    fn set_expiry(&self, session_id: &str, expires_ms: i64, now_ms: i64) {
        let (form, hash, index) = self.locate(session_id);
        let mut shard = write(&self.shards[index].0);
        // Missing or deleted: never recreate it (an extension racing a logout).
        let Some((slot, old)) = shard
            .find(&form, hash)
            .map(|record| (record.slot(), record.expires_ms()))
        else {
            return;
        };
        if old <= now_ms || old == expires_ms {
            return;
        }
        shard.set_expiry(slot, expires_ms);
    }

    /// Replaces the data of the record with this id, under its shard's write lock, if it is
    /// still at `version` and live at `now_ms`: the compare and the write are one step for
    /// every other caller. The record keeps its slot, expiry, lifetime and user (handle
    /// included), so no index changes.
    fn replace_data(
        &self,
        session_id: &str,
        version: u64,
        json: Option<&str>,
        now_ms: i64,
    ) -> bool {
        let Some(next) = version.checked_add(1) else {
            return false;
        };
        let (form, hash, index) = self.locate(session_id);
        let mut shard = write(&self.shards[index].0);
        let Some(record) = shard.find_mut(&form, hash) else {
            return false;
        };
        if record.data_version() != version || record.expires_ms() <= now_ms {
            return false;
        }
        *record = record.with_data(json, next);
        true
    }

    /// Removes the record in `slot` of the write-locked shard `index` from every index.
    /// `only_if_user`, when given, keeps a record that belongs to someone else (a slot freed
    /// and filled again for another user while a per-user delete was running).
    fn unlink(
        &self,
        index: usize,
        shard: &mut Shard,
        slot: u32,
        only_if_user: Option<&str>,
    ) -> bool {
        if let Some(user_id) = only_if_user {
            if !shard
                .get(slot)
                .is_some_and(|record| self.is_users(record, user_id))
            {
                return false;
            }
        }
        let Some(record) = shard.remove(slot) else {
            return false;
        };
        self.unindex_user(&record, key(index, slot));
        true
    }

    fn unindex_user(&self, record: &Record, key: u64) {
        match record.user() {
            User::Inline(user) => {
                let hash = self.user_hash(user);
                write(self.user_shard(hash)).remove(hash, user, key);
            }
            User::Handle(handle) => {
                let (shard, slot) = split(handle);
                if let Some(lock) = self.users.get(shard) {
                    write(&lock.0).remove_at(slot, key, &self.user_hasher);
                }
            }
        }
    }

    fn remove(&self, session_id: &str) {
        let (form, hash, index) = self.locate(session_id);
        let mut shard = write(&self.shards[index].0);
        if let Some(slot) = shard.find(&form, hash).map(Record::slot) {
            self.unlink(index, &mut shard, slot, None);
        }
    }

    /// The keys the user index holds for `user_id`: a snapshot, read without any id shard
    /// locked (the index lock is released before a shard is touched, keeping the lock order).
    fn keys_of_user(&self, user_id: &str) -> Vec<u64> {
        let hash = self.user_hash(user_id);
        read(self.user_shard(hash))
            .keys(hash, user_id)
            .map(|(_, keys)| keys)
            .unwrap_or_default()
    }

    fn live_for_user(&self, user_id: &str, now_ms: i64) -> Vec<SessionRecord> {
        self.keys_of_user(user_id)
            .into_iter()
            .filter_map(|key| {
                let (index, slot) = split(key);
                let shard = read(&self.shards.get(index)?.0);
                // Re-checked: the slot may have been freed, or filled again for someone else.
                let record = shard.get(slot).filter(|record| {
                    now_ms < record.expires_ms() && self.is_users(record, user_id)
                })?;
                self.to_record(&shard, record.id_string(), record)
            })
            .collect()
    }

    fn remove_for_user(&self, user_id: &str) -> u64 {
        let mut removed = 0;
        for key in self.keys_of_user(user_id) {
            let (index, slot) = split(key);
            let Some(lock) = self.shards.get(index) else {
                continue;
            };
            let mut shard = write(&lock.0);
            removed += u64::from(self.unlink(index, &mut shard, slot, Some(user_id)));
        }
        removed
    }
}
