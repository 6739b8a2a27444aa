//! What a store declares and how many shards it is made with.

use narvik_core::{Capabilities, ExpiredCount, ExpiredFetch, SessionStore};

use crate::MemoryStore;

#[test]
fn declares_every_call_hidden_expired_fetch_and_exact_counts() {
    let declared = MemoryStore::new().capabilities();
    assert_eq!(declared, MemoryStore::CAPABILITIES);
    assert_eq!(
        declared,
        Capabilities {
            fetch_sessions_for_user: true,
            delete_sessions_for_user: true,
            delete_all_expired_sessions: true,
            update_session_data: true,
            expired_fetch: ExpiredFetch::Hidden,
            keeps_already_expired: true,
            expired_count: ExpiredCount::Exact,
            pushes_invalidations: false,
        }
    );
}

#[test]
fn shard_count_is_a_power_of_two() {
    for (asked, got) in [
        (0, 1),
        (1, 1),
        (3, 4),
        (64, 64),
        (65, 128),
        (usize::MAX, 1 << 16),
    ] {
        let store = MemoryStore::with_shards(asked);
        assert_eq!(store.shard_count(), got);
    }
}
