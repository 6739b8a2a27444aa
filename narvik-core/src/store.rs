//! The storage trait: the contract every narvik store honours.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::error::{Error, OptionalOperation, Result};
use crate::session::SessionRecord;

/// Where sessions live. narvik ships stores for memory, PostgreSQL, Redis and MongoDB; any
/// other store implements this trait and proves it with the `narvik-conformance` suite.
///
/// The trait is object safe, so the engine holds an `Arc<dyn SessionStore>`, and stores never
/// see the application's data type: additional data arrives as JSON in [`SessionRecord::data`].
///
/// The four required calls are the whole contract of the original Narvik. The three optional
/// ones have default bodies that return [`Error::Unsupported`]; every store shipped with narvik
/// implements all of them.
///
/// # The contract
/// - **Insert only.** [`save_session`](Self::save_session) never overwrites.
/// - **Exact round trip.** What is saved is fetched back unchanged, times to the millisecond.
/// - **No resurrection.** [`update_session_expiry`](Self::update_session_expiry) on a missing
///   record does nothing, so an extension racing a logout never brings the session back.
/// - **Idempotent delete.**
/// - **Cost in proportion to the rows touched.** Per-user calls use a per-user index, expired
///   deletion an expiry index or the store's native TTL; never a scan of everything.
/// - **Typed errors.** Duplicate id, unsupported, unavailable (with the cause), corrupt record.
///   A dropped connection is an error, and the store recovers when the server is back.
/// - **Ids are data.** User ids and data are never spliced into a query, key pattern or script.
///
/// # Example: a store that keeps nothing
/// ```
/// use async_trait::async_trait;
/// use narvik_core::{Result, SessionRecord, SessionStore};
/// use time::OffsetDateTime;
///
/// struct NullStore;
///
/// #[async_trait]
/// impl SessionStore for NullStore {
///     async fn save_session(&self, _: &SessionRecord) -> Result<()> { Ok(()) }
///     async fn fetch_session(&self, _: &str) -> Result<Option<SessionRecord>> { Ok(None) }
///     async fn update_session_expiry(&self, _: &str, _: OffsetDateTime) -> Result<()> { Ok(()) }
///     async fn delete_session(&self, _: &str) -> Result<()> { Ok(()) }
/// }
/// ```
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Inserts a new record.
    ///
    /// If a record with the same id exists, fails with [`Error::DuplicateId`] and changes
    /// nothing (the engine then retries with a fresh token). Never an upsert.
    ///
    /// A record whose `expires_at` has already passed may be dropped by stores whose server
    /// expires records natively; the call still succeeds, and the record is never live.
    async fn save_session(&self, record: &SessionRecord) -> Result<()>;

    /// Returns the record with this id exactly as it was saved, or `None`.
    ///
    /// A store may return an expired record (the engine checks expiry and deletes it) or hide
    /// it (stores with a native TTL); it must document which.
    async fn fetch_session(&self, session_id: &str) -> Result<Option<SessionRecord>>;

    /// Sets the expiry of an existing record and changes nothing else.
    ///
    /// On a missing or deleted record it does nothing and succeeds: it never creates a record.
    async fn update_session_expiry(
        &self,
        session_id: &str,
        expires_at: OffsetDateTime,
    ) -> Result<()>;

    /// Deletes the record with this id. Deleting an unknown id succeeds.
    async fn delete_session(&self, session_id: &str) -> Result<()>;

    /// Returns every live (unexpired) session of this user, in time proportional to that
    /// user's sessions, not to the whole store. The order is unspecified.
    async fn fetch_sessions_for_user(&self, user_id: &str) -> Result<Vec<SessionRecord>> {
        let _ = user_id;
        Err(Error::unsupported(OptionalOperation::FetchSessionsForUser))
    }

    /// Deletes every session of this user and no one else's. An unknown user is not an error.
    async fn delete_sessions_for_user(&self, user_id: &str) -> Result<()> {
        let _ = user_id;
        Err(Error::unsupported(OptionalOperation::DeleteSessionsForUser))
    }

    /// Deletes exactly the expired sessions and returns how many it deleted, in time
    /// proportional to the expired ones. Stores whose server expires records natively document
    /// what their count means.
    async fn delete_all_expired_sessions(&self) -> Result<u64> {
        Err(Error::unsupported(
            OptionalOperation::DeleteAllExpiredSessions,
        ))
    }
}

#[async_trait]
impl<S: SessionStore + ?Sized> SessionStore for std::sync::Arc<S> {
    async fn save_session(&self, record: &SessionRecord) -> Result<()> {
        (**self).save_session(record).await
    }
    async fn fetch_session(&self, session_id: &str) -> Result<Option<SessionRecord>> {
        (**self).fetch_session(session_id).await
    }
    async fn update_session_expiry(
        &self,
        session_id: &str,
        expires_at: OffsetDateTime,
    ) -> Result<()> {
        (**self).update_session_expiry(session_id, expires_at).await
    }
    async fn delete_session(&self, session_id: &str) -> Result<()> {
        (**self).delete_session(session_id).await
    }
    async fn fetch_sessions_for_user(&self, user_id: &str) -> Result<Vec<SessionRecord>> {
        (**self).fetch_sessions_for_user(user_id).await
    }
    async fn delete_sessions_for_user(&self, user_id: &str) -> Result<()> {
        (**self).delete_sessions_for_user(user_id).await
    }
    async fn delete_all_expired_sessions(&self) -> Result<u64> {
        (**self).delete_all_expired_sessions().await
    }
}
