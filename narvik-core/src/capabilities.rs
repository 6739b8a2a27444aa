//! What a store declares about itself: which optional calls it serves and how it treats
//! expired records. The engine and the conformance suite both read this one declaration.

use crate::error::OptionalOperation;

/// What `fetch_session` does with a record whose `expires_at` has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpiredFetch {
    /// The record comes back exactly as saved; the engine sees that it has expired, deletes it
    /// and treats the token as invalid. The SQL stores do this.
    Returned,
    /// The store hides it (its server expires records by itself, like Redis `PX`, or its query
    /// filters on the wall clock): `fetch_session` returns `None`, and the record stays stored
    /// until the purge or the server's TTL removes it. The memory, Redis and MongoDB stores do
    /// this.
    Hidden,
}

/// What `delete_all_expired_sessions` promises about the number it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpiredCount {
    /// The number of records the call deleted, exactly: every expired record counts once.
    Exact,
    /// An honest count for stores whose server deletes expired records by itself (those are
    /// gone before the call and are not counted). It never exceeds the number of expired
    /// records and never includes a live one.
    AtMost,
}

/// What a store supports, declared by the store itself through
/// [`SessionStore::capabilities`](crate::SessionStore::capabilities).
///
/// The engine's builder rejects settings the store cannot serve (a per-user cap without
/// per-user listing), and the conformance suite checks every case against exactly this
/// declaration: a call declared absent must answer [`Error::Unsupported`](crate::Error::Unsupported)
/// naming it, and a call declared present must work.
///
/// Start from a preset and change fields with struct update syntax:
///
/// ```
/// use narvik_core::{Capabilities, ExpiredFetch};
/// let mine = Capabilities { expired_fetch: ExpiredFetch::Hidden, ..Capabilities::ALL };
/// assert!(mine.fetch_sessions_for_user);
/// assert_eq!(narvik_core::Capabilities::default(), Capabilities::REQUIRED_ONLY);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Capabilities {
    /// The store implements `fetch_sessions_for_user` (needed by the engine's per-user cap and
    /// `invalidate_other_sessions`).
    pub fetch_sessions_for_user: bool,
    /// The store implements `delete_sessions_for_user`.
    pub delete_sessions_for_user: bool,
    /// The store implements `delete_all_expired_sessions`.
    pub delete_all_expired_sessions: bool,
    /// The store implements `update_session_data` (needed by the engine's data updates).
    pub update_session_data: bool,
    /// What `fetch_session` returns for an expired record.
    pub expired_fetch: ExpiredFetch,
    /// Whether a record saved with an `expires_at` already in the past is kept (and so can be
    /// fetched, under [`ExpiredFetch::Returned`], and counted by expired deletion). A store
    /// that drops it instead must still answer the save with `Ok`.
    pub keeps_already_expired: bool,
    /// What the number returned by `delete_all_expired_sessions` means.
    pub expired_count: ExpiredCount,
    /// The store pushes an invalidation for every session deleted or changed in it, by any
    /// client, through
    /// [`SessionStore::subscribe_invalidations`](crate::SessionStore::subscribe_invalidations):
    /// the engine's near cache may then serve validations from memory without a stated
    /// staleness (see [`NearCacheConfig::pushed`](crate::NearCacheConfig::pushed)).
    pub pushes_invalidations: bool,
}

impl Capabilities {
    /// Every optional call; expired records are returned for the engine to judge and kept when
    /// saved already expired; the expired count is exact.
    pub const ALL: Self = Self {
        fetch_sessions_for_user: true,
        delete_sessions_for_user: true,
        delete_all_expired_sessions: true,
        update_session_data: true,
        expired_fetch: ExpiredFetch::Returned,
        keeps_already_expired: true,
        expired_count: ExpiredCount::Exact,
        pushes_invalidations: false,
    };

    /// Every optional call, on a store whose server expires records by itself (Redis, a Mongo
    /// TTL index with a filtering query): an expired record is hidden, a record saved already
    /// expired may be dropped, and the expired count is an honest upper-bounded one.
    pub const TTL_NATIVE: Self = Self {
        fetch_sessions_for_user: true,
        delete_sessions_for_user: true,
        delete_all_expired_sessions: true,
        update_session_data: true,
        expired_fetch: ExpiredFetch::Hidden,
        keeps_already_expired: false,
        expired_count: ExpiredCount::AtMost,
        pushes_invalidations: false,
    };

    /// Only the four required calls, as in the original Narvik: the optional ones answer
    /// with the typed unsupported error. Expired records behave as in [`Self::ALL`]. The
    /// trait's default declaration.
    pub const REQUIRED_ONLY: Self = Self {
        fetch_sessions_for_user: false,
        delete_sessions_for_user: false,
        delete_all_expired_sessions: false,
        update_session_data: false,
        ..Self::ALL
    };

    /// Whether the store declares `operation`.
    pub fn supports(&self, operation: OptionalOperation) -> bool {
        match operation {
            OptionalOperation::FetchSessionsForUser => self.fetch_sessions_for_user,
            OptionalOperation::DeleteSessionsForUser => self.delete_sessions_for_user,
            OptionalOperation::DeleteAllExpiredSessions => self.delete_all_expired_sessions,
            OptionalOperation::UpdateSessionData => self.update_session_data,
        }
    }

    /// Whether a fetch of an expired record may return it (rather than `None`).
    pub fn returns_expired(&self) -> bool {
        self.expired_fetch == ExpiredFetch::Returned
    }
}

impl Default for Capabilities {
    /// [`Capabilities::REQUIRED_ONLY`]: what a store that declares nothing promises.
    fn default() -> Self {
        Self::REQUIRED_ONLY
    }
}
