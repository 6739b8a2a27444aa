//! [`SpyStore`]: a store in front of another that counts the calls it forwards.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use narvik_core::SessionStore;

/// How many times each store operation was called through a [`SpyStore`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallCounts {
    /// `save_session` calls.
    pub save_session: u64,
    /// `fetch_session` calls.
    pub fetch_session: u64,
    /// `update_session_expiry` calls.
    pub update_session_expiry: u64,
    /// `update_record_expiry` calls (the engine extends sessions through this one).
    pub update_record_expiry: u64,
    /// `delete_session` calls.
    pub delete_session: u64,
    /// `fetch_sessions_for_user` calls.
    pub fetch_sessions_for_user: u64,
    /// `delete_sessions_for_user` calls.
    pub delete_sessions_for_user: u64,
    /// `delete_all_expired_sessions` calls.
    pub delete_all_expired_sessions: u64,
    /// `update_session_data` calls.
    pub update_session_data: u64,
}

impl CallCounts {
    /// All calls together.
    pub fn total(&self) -> u64 {
        self.save_session
            + self.fetch_session
            + self.update_session_expiry
            + self.update_record_expiry
            + self.delete_session
            + self.fetch_sessions_for_user
            + self.delete_sessions_for_user
            + self.delete_all_expired_sessions
            + self.update_session_data
    }
}

/// A store that forwards every call to another and counts them, to prove what the engine
/// does (and does not) ask of a store.
pub struct SpyStore {
    inner: Arc<dyn SessionStore>,
    counters: [AtomicU64; COUNTED.len()],
}

/// The calls a [`SpyStore`] counts, one counter each, in this order.
const COUNTED: [&str; 9] = [
    "save_session",
    "fetch_session",
    "update_session_expiry",
    "delete_session",
    "fetch_sessions_for_user",
    "delete_sessions_for_user",
    "delete_all_expired_sessions",
    "update_record_expiry",
    "update_session_data",
];

impl SpyStore {
    /// A spy in front of `inner`, with every count at zero.
    pub fn new(inner: Arc<dyn SessionStore>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            counters: Default::default(),
        })
    }

    /// The counts so far.
    pub fn calls(&self) -> CallCounts {
        let read = |operation: &str| self.counter(operation).load(Ordering::SeqCst);
        CallCounts {
            save_session: read("save_session"),
            fetch_session: read("fetch_session"),
            update_session_expiry: read("update_session_expiry"),
            delete_session: read("delete_session"),
            fetch_sessions_for_user: read("fetch_sessions_for_user"),
            delete_sessions_for_user: read("delete_sessions_for_user"),
            delete_all_expired_sessions: read("delete_all_expired_sessions"),
            update_record_expiry: read("update_record_expiry"),
            update_session_data: read("update_session_data"),
        }
    }

    fn counter(&self, operation: &str) -> &AtomicU64 {
        let index = COUNTED
            .iter()
            .position(|counted| *counted == operation)
            .unwrap_or_else(|| panic!("the spy counts no call {operation:?}"));
        &self.counters[index]
    }
}

// Every call counts once, here: `update_record_expiry` too, whose default in the inner store
// forwards to its `update_session_expiry`, which the spy does not see.
narvik_core::forward_session_store! {
    impl SessionStore for SpyStore {
        inner = |spy| &spy.inner;
        before = |spy, operation| spy.counter(operation).fetch_add(1, Ordering::SeqCst);
        forward = [
            capabilities, store_name, subscribe_invalidations, save_session, fetch_session,
            update_session_expiry, update_record_expiry, delete_session, fetch_sessions_for_user,
            delete_sessions_for_user, delete_all_expired_sessions, update_session_data,
        ];
    }
}
