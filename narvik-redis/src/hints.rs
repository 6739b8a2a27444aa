//! Which user a recently fetched session belongs to.
//!
//! The engine fetches a session, then extends or deletes it. Both calls need the user's index
//! key, which the trait does not pass. Remembering the user of each fetched record lets the
//! extension run as one atomic script (two round trips for `validate_session` with an
//! extension, not three). A hint is only ever a guess: every script re-checks the user stored
//! in the record and the store falls back to reading it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const SHARDS: usize = 16;
const ENTRIES_PER_SHARD: usize = 4096;

/// A bounded map from session id to user id, sharded to keep lock contention low.
#[derive(Default)]
pub(crate) struct Hints {
    shards: [Mutex<HashMap<Box<str>, Arc<str>>>; SHARDS],
}

impl Hints {
    /// Whether the engine may extend a record now, judged without knowing its lifetime (times
    /// in Unix ms, as stored).
    ///
    /// The engine extends in the last half of the lifetime, and a record's
    /// `expires_at - created_at` is at least the lifetime (it only grows with extensions), so
    /// this is true whenever an extension can follow. Fresh sessions, the common case, skip
    /// the map. (An absolute lifetime cap can shorten that span: such an extension just reads
    /// the user from the record, one round trip more.)
    pub(crate) fn may_be_extended(created_ms: i64, expires_ms: i64, now_ms: i64) -> bool {
        let remaining = expires_ms.saturating_sub(now_ms);
        remaining <= expires_ms.saturating_sub(created_ms) / 2
    }

    fn shard(&self, session_id: &str) -> &Mutex<HashMap<Box<str>, Arc<str>>> {
        let hash = session_id
            .bytes()
            .rev()
            .take(4)
            .fold(0_usize, |hash, byte| {
                hash.wrapping_mul(31).wrapping_add(usize::from(byte))
            });
        &self.shards[hash % SHARDS]
    }

    /// Remembers the user of a fetched record. A full shard is emptied rather than tracked
    /// (hints are cheap to lose).
    pub(crate) fn remember(&self, session_id: &str, user_id: &str) {
        let Ok(mut shard) = self.shard(session_id).lock() else {
            return;
        };
        if shard.len() >= ENTRIES_PER_SHARD {
            shard.clear();
        }
        shard.insert(session_id.into(), user_id.into());
    }

    /// The remembered user of a session, if any.
    pub(crate) fn get(&self, session_id: &str) -> Option<Arc<str>> {
        let shard = self.shard(session_id).lock().ok()?;
        shard.get(session_id).cloned()
    }

    /// Forgets a session (it was deleted).
    pub(crate) fn forget(&self, session_id: &str) {
        if let Ok(mut shard) = self.shard(session_id).lock() {
            shard.remove(session_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_MS: i64 = 24 * 3600 * 1000;

    #[test]
    fn remembers_exactly_when_the_engine_may_extend() {
        let created = 1_893_456_000_000; // 2030-01-01, in ms
        let day = |n: i64| created + n * DAY_MS;
        // A fresh 30-day session: the engine extends from the last half of the lifetime on.
        assert!(!Hints::may_be_extended(created, day(30), day(14)));
        assert!(Hints::may_be_extended(created, day(30), day(15)));
        // Extended once on day 20: expires day 50, lifetime still 30, next extension from day 35.
        assert!(Hints::may_be_extended(created, day(50), day(35)));
        // Extreme stored times never overflow.
        assert!(!Hints::may_be_extended(i64::MIN, i64::MAX, 0));
        assert!(Hints::may_be_extended(i64::MAX, i64::MIN, 0));
    }

    #[test]
    fn remember_get_forget() {
        let hints = Hints::default();
        assert!(hints.get("a").is_none());
        hints.remember("a", "alice");
        assert_eq!(hints.get("a").as_deref(), Some("alice"));
        hints.forget("a");
        assert!(hints.get("a").is_none());
        for n in 0..(SHARDS * ENTRIES_PER_SHARD * 2) {
            hints.remember(&format!("{n:064x}"), "bob");
        }
        let held: usize = hints
            .shards
            .iter()
            .map(|shard| shard.lock().map(|shard| shard.len()).unwrap_or(0))
            .sum();
        assert!(held <= SHARDS * ENTRIES_PER_SHARD, "bounded: {held}");
    }
}
