//! The one error type of narvik: what a store or the engine can fail with.

use std::error::Error as StdError;

/// A boxed error from a driver, kept as the `source` of [`Error::Unavailable`].
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// The operations of [`SessionStore`](crate::SessionStore) that a store may leave out.
///
/// Named in [`Error::Unsupported`] so that the caller sees which call the store lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OptionalOperation {
    /// [`SessionStore::fetch_sessions_for_user`](crate::SessionStore::fetch_sessions_for_user)
    FetchSessionsForUser,
    /// [`SessionStore::delete_sessions_for_user`](crate::SessionStore::delete_sessions_for_user)
    DeleteSessionsForUser,
    /// [`SessionStore::delete_all_expired_sessions`](crate::SessionStore::delete_all_expired_sessions)
    DeleteAllExpiredSessions,
    /// [`SessionStore::update_session_data`](crate::SessionStore::update_session_data)
    UpdateSessionData,
}

impl OptionalOperation {
    /// The snake_case name of the operation, as the trait spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::FetchSessionsForUser => "fetch_sessions_for_user",
            Self::DeleteSessionsForUser => "delete_sessions_for_user",
            Self::DeleteAllExpiredSessions => "delete_all_expired_sessions",
            Self::UpdateSessionData => "update_session_data",
        }
    }
}

impl std::fmt::Display for OptionalOperation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything that can go wrong in narvik, from a store or from the engine.
///
/// Stores map their driver errors onto these variants so that an application can react the
/// same way whichever store it runs on:
///
/// ```
/// use narvik_core::Error;
///
/// fn status_code(error: &Error) -> u16 {
///     match error {
///         Error::Unavailable { .. } => 503,
///         _ => 500,
///     }
/// }
/// assert_eq!(status_code(&Error::unavailable("connection refused")), 503);
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `save_session` found a record with the same id; nothing was changed.
    #[error("a session with this id already exists")]
    DuplicateId,

    /// The store does not implement an optional operation.
    #[error("`{operation}` is not supported by this store")]
    Unsupported {
        /// The operation the store lacks.
        operation: OptionalOperation,
    },

    /// The store could not be reached or failed to answer (connection refused, pool timeout,
    /// dropped connection, server error). Retrying later may succeed.
    #[error("the session store is unavailable: {source}")]
    Unavailable {
        /// The driver's error.
        #[source]
        source: BoxError,
    },

    /// A stored record could not be decoded (its data no longer matches the application's
    /// data type, or the row itself is malformed).
    #[error("a stored session record is corrupt: {reason}")]
    CorruptRecord {
        /// What did not decode.
        reason: String,
        /// The decoder's error, when there is one.
        #[source]
        source: Option<BoxError>,
    },

    /// The application's additional data cannot be stored: it does not turn into JSON (a map
    /// with non-string keys, a failing `Serialize` impl) or the store cannot hold it (over a
    /// document size limit, a key the store forbids). Nothing was stored.
    #[error("the session's additional data cannot be stored: {0}")]
    InvalidData(String),

    /// A data update lost the race against other updates of the same session on every one of
    /// its attempts; the data is as the last winning update left it. Retrying later may
    /// succeed.
    #[error("the session's data changed concurrently on each of {attempts} attempts")]
    Conflict {
        /// How many times the update was tried.
        attempts: u32,
    },

    /// A configuration value was rejected (a cookie name with a `;`, a zero lifetime, ...).
    #[error("invalid configuration: {0}")]
    InvalidConfiguration(String),
}

impl Error {
    /// An [`Error::Unavailable`] wrapping a driver error.
    pub fn unavailable(source: impl Into<BoxError>) -> Self {
        Self::Unavailable {
            source: source.into(),
        }
    }

    /// An [`Error::CorruptRecord`] with a reason and the decoder's error.
    pub fn corrupt(reason: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::CorruptRecord {
            reason: reason.into(),
            source: Some(source.into()),
        }
    }

    /// An [`Error::Unsupported`] for `operation`.
    pub fn unsupported(operation: OptionalOperation) -> Self {
        Self::Unsupported { operation }
    }
}

/// The result type of narvik.
pub type Result<T, E = Error> = std::result::Result<T, E>;
