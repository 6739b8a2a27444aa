//! Test-only views of the store's internals: a record's raw entry, and a full check that the
//! records and every index agree.

use time::OffsetDateTime;

use super::millis::time_of;
use super::{key, read, MemoryStore};
use crate::record::User;

impl MemoryStore {
    /// The user and expiry of a record, expired or not.
    pub(crate) fn raw_entry(&self, session_id: &str) -> Option<(String, OffsetDateTime)> {
        let (form, hash, index) = self.locate(session_id);
        let shard = read(&self.shards[index].0);
        let record = shard.find(&form, hash)?;
        Some((self.user_of(record)?, time_of(record.expires_ms())))
    }

    /// Checks that the records and every index describe the same set of sessions, that each
    /// record sits in the shard its id hashes to, and that a record holds its user id inline
    /// when short and otherwise the handle of the user index's one copy.
    pub(crate) fn assert_consistent(&self) {
        use std::collections::{HashMap, HashSet};

        use crate::record::INLINE_USER;

        let mut handles: HashMap<String, u64> = HashMap::new();
        let mut indexed: HashMap<String, HashSet<u64>> = HashMap::new();
        for (index, lock) in self.users.iter().enumerate() {
            for (slot, user, keys) in read(&lock.0).entries(&self.user_hasher) {
                assert_eq!(
                    Self::pick(self.user_hash(&user), self.users.len()),
                    index,
                    "user {user} in the wrong user shard"
                );
                assert!(!keys.is_empty(), "empty key set kept for user {user}");
                indexed.insert(user.clone(), keys.into_iter().collect());
                handles.insert(user, key(index, slot));
            }
        }
        let mut by_user: HashMap<String, HashSet<u64>> = HashMap::new();
        for (index, lock) in self.shards.iter().enumerate() {
            let shard = read(&lock.0);
            shard.assert_consistent(&self.id_hasher);
            for record in shard.records() {
                let (id, slot) = (record.id_string(), record.slot());
                assert_eq!(self.locate(&id).2, index, "record {id} in the wrong shard");
                let user = self
                    .user_of(record)
                    .expect("the user of a record is indexed");
                let handle = handles.get(&user).copied();
                assert!(
                    handle.is_some(),
                    "user {user} of {id} missing from the user index"
                );
                if user.len() <= INLINE_USER {
                    assert_eq!(record.user(), User::Inline(&user));
                } else {
                    assert_eq!(record.user(), User::Handle(handle.unwrap_or_default()));
                }
                by_user.entry(user).or_default().insert(key(index, slot));
            }
        }
        assert_eq!(by_user, indexed, "user index disagrees with the records");
    }
}
