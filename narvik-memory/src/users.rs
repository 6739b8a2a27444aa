//! One shard of the per-user index: each user id once, with the slots of that user's sessions
//! as 8-byte keys.

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::hash::BuildHasher;

use hashbrown::HashTable;

use crate::slab::Slab;

/// The hash of the user index: SipHash with a per-store key, since user ids may be chosen by
/// users and must not be able to pile up in one bucket.
pub(crate) type UserHasher = RandomState;

/// The longest user id kept inline in a [`UserId`].
const INLINE: usize = 22;

/// The index's one copy of a user id, in 24 bytes: inline up to 22 bytes (`user-123456`, most
/// e-mail addresses, numeric ids), else on the heap.
#[derive(Debug)]
enum UserId {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<str>),
}

impl UserId {
    fn new(user: &str) -> Self {
        if user.len() <= INLINE {
            let mut bytes = [0; INLINE];
            bytes[..user.len()].copy_from_slice(user.as_bytes());
            Self::Inline {
                len: user.len() as u8,
                bytes,
            }
        } else {
            Self::Heap(Box::from(user))
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => bytes.get(..usize::from(*len)).unwrap_or_default(),
            Self::Heap(user) => user.as_bytes(),
        }
    }

    fn as_str(&self) -> &str {
        // The bytes were copied from a `&str`, so they are UTF-8: the fallback is never taken.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

impl PartialEq<str> for UserId {
    fn eq(&self, other: &str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

/// The per-user index keys of one user's sessions (see `Slot::global`). Most users have one
/// session, kept inline; more go to a set, so that removing one stays O(1) for a user with
/// thousands.
#[derive(Debug)]
enum Keys {
    One(u64),
    #[allow(
        clippy::box_collection,
        reason = "boxed, a user entry is 40 bytes; inline, the set would make every one 72"
    )]
    Many(Box<HashSet<u64, foldhash::fast::FixedState>>),
}

#[derive(Debug)]
struct UserEntry {
    name: UserId,
    keys: Keys,
}

/// One user shard: users in a slab, found through a hash index of slot numbers.
#[derive(Debug, Default)]
pub(crate) struct UserShard {
    index: HashTable<u32>,
    users: Slab<UserEntry>,
}

impl UserShard {
    fn find(&self, hash: u64, user: &str) -> Option<u32> {
        self.index
            .find(hash, |&slot| {
                self.users
                    .get(slot)
                    .is_some_and(|entry| entry.name == *user)
            })
            .copied()
    }

    /// Indexes `key` under `user` (whose hash is `hash`) and returns the user's slot in this
    /// shard, which names it (with the shard) for as long as it has a session. A new user
    /// gets a slot of the shard's slab, whose growth is a chunk at a time.
    pub(crate) fn add(&mut self, hash: u64, user: &str, key: u64, hasher: &UserHasher) -> u32 {
        if let Some(slot) = self.find(hash, user) {
            if let Some(entry) = self.users.get_mut(slot) {
                match &mut entry.keys {
                    Keys::One(first) => {
                        let mut set = HashSet::with_capacity_and_hasher(2, Default::default());
                        set.insert(*first);
                        set.insert(key);
                        entry.keys = Keys::Many(Box::new(set));
                    }
                    Keys::Many(set) => {
                        set.insert(key);
                    }
                }
            }
            return slot;
        }
        let slot = self.users.insert(UserEntry {
            name: UserId::new(user),
            keys: Keys::One(key),
        });
        let Self { index, users } = self;
        index.insert_unique(hash, slot, |&other| {
            users
                .get(other)
                .map_or(0, |entry| hasher.hash_one(entry.name.as_str()))
        });
        slot
    }

    /// Drops `key` from `user`'s keys, and the user once it has none.
    pub(crate) fn remove(&mut self, hash: u64, user: &str, key: u64) {
        if let Some(slot) = self.find(hash, user) {
            self.remove_key(slot, hash, key);
        }
    }

    /// [`remove`](Self::remove) for the user in `slot` (a record's handle).
    pub(crate) fn remove_at(&mut self, slot: u32, key: u64, hasher: &UserHasher) {
        if let Some(entry) = self.users.get(slot) {
            let hash = hasher.hash_one(entry.name.as_str());
            self.remove_key(slot, hash, key);
        }
    }

    fn remove_key(&mut self, slot: u32, hash: u64, key: u64) {
        let Some(entry) = self.users.get_mut(slot) else {
            return;
        };
        let keys = &mut entry.keys;
        let empty = match keys {
            Keys::One(only) => *only == key,
            Keys::Many(set) => {
                set.remove(&key);
                let only = (set.len() == 1)
                    .then(|| set.iter().next().copied())
                    .flatten();
                let empty = set.is_empty();
                if let Some(only) = only {
                    *keys = Keys::One(only);
                }
                empty
            }
        };
        if empty {
            if let Ok(entry) = self.index.find_entry(hash, |&other| other == slot) {
                entry.remove();
            }
            self.users.remove(slot);
        }
    }

    /// `user`'s slot and a snapshot of its keys.
    pub(crate) fn keys(&self, hash: u64, user: &str) -> Option<(u32, Vec<u64>)> {
        let slot = self.find(hash, user)?;
        let keys = match &self.users.get(slot)?.keys {
            Keys::One(key) => vec![*key],
            Keys::Many(set) => set.iter().copied().collect(),
        };
        Some((slot, keys))
    }

    /// The id of the user in `slot`.
    pub(crate) fn name(&self, slot: u32) -> Option<&str> {
        self.users.get(slot).map(|entry| entry.name.as_str())
    }

    /// Every user with its keys, after checking the shard's own structure.
    #[cfg(test)]
    pub(crate) fn entries(&self, hasher: &UserHasher) -> Vec<(u32, String, Vec<u64>)> {
        self.users.assert_consistent();
        assert_eq!(self.index.len(), self.users.len(), "user index size");
        self.users
            .iter()
            .map(|(slot, entry)| {
                let name = entry.name.as_str();
                assert_eq!(self.find(hasher.hash_one(name), name), Some(slot));
                assert_eq!(
                    matches!(entry.name, UserId::Inline { .. }),
                    name.len() <= INLINE,
                    "user {name} held in the wrong form"
                );
                let keys = match &entry.keys {
                    Keys::One(key) => vec![*key],
                    Keys::Many(set) => {
                        assert!(set.len() > 1, "a set kept for fewer than two sessions");
                        set.iter().copied().collect()
                    }
                };
                (slot, name.to_owned(), keys)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_24_bytes_inline_up_to_22() {
        assert_eq!(std::mem::size_of::<UserId>(), 24);
        assert_eq!(std::mem::size_of::<Option<UserEntry>>(), 40);
        for user in ["", "a", "user-123456", "ü@example.com", &"x".repeat(22)] {
            let id = UserId::new(user);
            assert!(matches!(id, UserId::Inline { .. }), "{user:?}");
            assert_eq!(id.as_str(), user);
        }
        for user in ["x".repeat(23), "ü".repeat(12), "y".repeat(1024)] {
            let id = UserId::new(&user);
            assert!(matches!(id, UserId::Heap(_)), "{user:?}");
            assert_eq!(id.as_str(), user);
        }
    }

    #[test]
    fn one_entry_per_user_down_to_none() {
        let hasher = UserHasher::new();
        let mut shard = UserShard::default();
        let long = "l".repeat(40);
        let hash = hasher.hash_one(long.as_str());
        let first = shard.add(hash, &long, 1, &hasher);
        assert_eq!(
            shard.add(hash, &long, 2, &hasher),
            first,
            "one entry per user"
        );
        assert_eq!(shard.name(first), Some(long.as_str()));
        let short_hash = hasher.hash_one("bob");
        let bob = shard.add(short_hash, "bob", 3, &hasher);
        assert_ne!(bob, first);
        let (slot, mut keys) = shard.keys(hash, &long).expect("indexed");
        keys.sort_unstable();
        assert_eq!((slot, keys), (first, vec![1, 2]));
        shard.remove(hash, &long, 1);
        assert_eq!(shard.keys(hash, &long), Some((first, vec![2])));
        shard.remove_at(first, 2, &hasher);
        assert_eq!(shard.keys(hash, &long), None);
        assert_eq!(shard.name(first), None);
        assert_eq!(shard.keys(short_hash, "bob"), Some((bob, vec![3])));
        shard.remove(short_hash, "bob", 4);
        assert_eq!(
            shard.keys(short_hash, "bob"),
            Some((bob, vec![3])),
            "another key: nothing removed"
        );
        assert_eq!(shard.entries(&hasher).len(), 1);
    }
}
