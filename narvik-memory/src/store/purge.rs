//! The expired purge: the expiry index of each shard drained from its earliest entry, a batch
//! per write lock.

use time::OffsetDateTime;

use super::millis::millis;
use super::{key, read, write, MemoryStore};

/// How many expired records a purge removes per write lock of a shard.
const PURGE_BATCH: usize = 1_024;

impl MemoryStore {
    /// Deletes every record expired at `now` and returns how many: per shard, it pops the
    /// expiry index from its earliest entry until it reaches a live one, so the work is the
    /// number of expired records plus one look per shard.
    pub fn purge_expired_at(&self, now: OffsetDateTime) -> u64 {
        let now_ms = millis(now);
        let mut purged = 0;
        for (index, lock) in self.shards.iter().enumerate() {
            let lock = &lock.0;
            loop {
                // A read lock first, so shards with nothing due never block their readers.
                let due = read(lock)
                    .expiry
                    .first()
                    .is_some_and(|(expires_ms, _)| *expires_ms <= now_ms);
                if !due {
                    break;
                }
                let mut shard = write(lock);
                // At most PURGE_BATCH records per write lock: a mass expiry never stalls the
                // shard's readers for long.
                for _ in 0..PURGE_BATCH {
                    match shard.expiry.first() {
                        Some((expires_ms, _)) if *expires_ms <= now_ms => {}
                        _ => break,
                    }
                    let Some((_, slot)) = shard.expiry.pop_first() else {
                        break;
                    };
                    if let Some(record) = shard.take(slot) {
                        self.unindex_user(&record, key(index, slot));
                        purged += 1;
                    }
                }
            }
        }
        purged
    }
}
