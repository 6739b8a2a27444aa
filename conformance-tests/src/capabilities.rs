//! What a store declares about itself, so that each case checks the right promise.

use narvik_core::{Error, OptionalOperation, Result};

/// What `fetch_session` does with a record whose `expires_at` has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpiredFetch {
    /// The record comes back exactly as saved; the engine sees that it has expired, deletes it
    /// and treats the token as invalid. The memory and SQL stores do this.
    Returned,
    /// The store hides it (its server expires records by itself, like Redis `PX`, or its query
    /// filters on the server's clock): `fetch_session` returns `None`.
    Hidden,
}

/// What `delete_all_expired_sessions` promises about the number it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpiredCount {
    /// The number of records the call deleted, exactly: every expired record counts once.
    Exact,
    /// An honest upper-bounded count, for stores whose server deletes expired records by
    /// itself (those are gone before the call and are not counted). The count never exceeds
    /// the number of expired records and never includes a live one.
    AtMost,
}

/// The optional parts of the storage contract a store declares, passed to every case.
///
/// Start from a preset and change fields with struct update syntax:
///
/// ```
/// use narvik_conformance::Capabilities;
/// let mine = Capabilities { delete_all_expired_sessions: false, ..Capabilities::ALL };
/// assert!(mine.fetch_sessions_for_user);
/// ```
///
/// A call declared absent is not skipped: the case asserts that the store answers it with
/// [`Error::Unsupported`] naming that operation, so a store can never pass by silence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Capabilities {
    /// The store implements `fetch_sessions_for_user` (needed by the engine's per-user cap and
    /// `invalidate_other_sessions`). When false, the cases expect
    /// `Unsupported { operation: FetchSessionsForUser }`.
    pub fetch_sessions_for_user: bool,
    /// The store implements `delete_sessions_for_user`. When false, the cases expect
    /// `Unsupported { operation: DeleteSessionsForUser }`.
    pub delete_sessions_for_user: bool,
    /// The store implements `delete_all_expired_sessions`. When false, the cases expect
    /// `Unsupported { operation: DeleteAllExpiredSessions }`.
    pub delete_all_expired_sessions: bool,
    /// What `fetch_session` returns for an expired record.
    pub expired_fetch: ExpiredFetch,
    /// Whether a record saved with an `expires_at` already in the past is kept (and so can be
    /// fetched, under [`ExpiredFetch::Returned`], and counted by expired deletion). A store
    /// that drops it instead must still answer the save with `Ok`. When false, cases that need
    /// expired records save them a second and a half before expiry and wait for it to pass
    /// (those few cases take about two seconds).
    pub keeps_already_expired: bool,
    /// What the number returned by `delete_all_expired_sessions` means.
    pub expired_count: ExpiredCount,
}

impl Capabilities {
    /// Every optional call; expired records are returned for the engine to judge and kept when
    /// saved already expired; the expired count is exact. The default.
    pub const ALL: Self = Self {
        fetch_sessions_for_user: true,
        delete_sessions_for_user: true,
        delete_all_expired_sessions: true,
        expired_fetch: ExpiredFetch::Returned,
        keeps_already_expired: true,
        expired_count: ExpiredCount::Exact,
    };

    /// Every optional call, on a store whose server expires records by itself (Redis, a Mongo
    /// TTL index with a filtering query): an expired record is hidden, a record saved already
    /// expired may be dropped, and the expired count is an honest upper-bounded one.
    pub const TTL_NATIVE: Self = Self {
        fetch_sessions_for_user: true,
        delete_sessions_for_user: true,
        delete_all_expired_sessions: true,
        expired_fetch: ExpiredFetch::Hidden,
        keeps_already_expired: false,
        expired_count: ExpiredCount::AtMost,
    };

    /// Only the four required calls, as in the original Narvik: the three optional ones must
    /// answer with the typed unsupported error. Expired records behave as in [`Self::ALL`].
    pub const REQUIRED_ONLY: Self = Self {
        fetch_sessions_for_user: false,
        delete_sessions_for_user: false,
        delete_all_expired_sessions: false,
        ..Self::ALL
    };

    /// Whether the store declares `operation`.
    pub fn supports(&self, operation: OptionalOperation) -> bool {
        match operation {
            OptionalOperation::FetchSessionsForUser => self.fetch_sessions_for_user,
            OptionalOperation::DeleteSessionsForUser => self.delete_sessions_for_user,
            OptionalOperation::DeleteAllExpiredSessions => self.delete_all_expired_sessions,
            // A future optional call is unknown to this suite: treat it as declared absent.
            _ => false,
        }
    }

    /// Whether a fetch of an expired record may return it (rather than `None`) on this store.
    pub fn returns_expired(&self) -> bool {
        self.expired_fetch == ExpiredFetch::Returned
    }
}

impl Default for Capabilities {
    fn default() -> Self {
        Self::ALL
    }
}

/// Asserts that `result` is the typed unsupported error for `operation`.
///
/// # Panics
/// When the store answered anything else: a store that declares a call absent must say so
/// with [`Error::Unsupported`], never succeed quietly.
pub fn assert_unsupported<T: std::fmt::Debug>(result: Result<T>, operation: OptionalOperation) {
    match result {
        Err(Error::Unsupported { operation: named }) => assert_eq!(
            named, operation,
            "the store's Unsupported error names the wrong operation"
        ),
        other => panic!(
            "`{operation}` is declared unsupported, so the store must answer \
             Err(Error::Unsupported {{ operation: {operation:?} }}), but it answered {other:?}"
        ),
    }
}
