//! The storage trait: the contract every narvik store honours.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::capabilities::Capabilities;
use crate::data::SessionData;
use crate::error::{Error, OptionalOperation, Result};
use crate::invalidation::InvalidationSubscription;
use crate::session::SessionRecord;

/// Where sessions live. narvik ships stores for memory, PostgreSQL, SQLite, MySQL / MariaDB,
/// Redis and MongoDB; any other store implements this trait and proves it with the
/// `narvik-conformance` suite.
///
/// The trait is object safe, so the engine holds an `Arc<dyn SessionStore>`, and stores never
/// see the application's data type: additional data arrives as JSON in [`SessionRecord::data`].
///
/// The four required calls are the whole contract of the original Narvik. The optional ones
/// have default bodies that return [`Error::Unsupported`]; a store that implements them
/// says so in [`capabilities`](Self::capabilities), which every shipped store does.
///
/// # The contract
/// - **Insert only.** [`save_session`](Self::save_session) never overwrites.
/// - **Exact round trip.** What is saved is fetched back unchanged, every field of
///   [`SessionRecord`] (its own `lifetime` and `data_version` too): ids byte for byte (never
///   case-folded, trimmed or normalised), times to the millisecond, data as equal JSON with
///   numbers bit-exact (`u64::MAX`, 17-digit floats). A value the store cannot hold (a NUL in
///   a PostgreSQL text column) is [`Error::InvalidData`] at save, never silently altered.
/// - **No resurrection.** [`update_session_expiry`](Self::update_session_expiry) on a missing,
///   deleted *or expired* record does nothing: expired is as good as missing, whether or not
///   the record has been purged yet. An extension racing a logout never brings it back.
/// - **Idempotent delete.**
/// - **Cost in proportion to the rows touched.** Per-user calls use a per-user index, expired
///   deletion an expiry index or the store's native TTL; never a scan of everything.
/// - **Typed errors.** Duplicate id, unsupported, unavailable (with the cause), corrupt record.
///   A dropped connection is an error, and the store recovers when the server is back.
/// - **Ids are data.** User ids and data are never spliced into a query, key pattern or script.
/// - **One clock.** Where the answer depends on the time (which sessions of a user are live,
///   which are expired), the engine hands its `now` down, so a
///   [`ManualClock`](crate::ManualClock) given to the engine governs validation, listing and
///   purge alike. The required calls keep the original's shape: a store that hides expired
///   records from [`fetch_session`](Self::fetch_session) or refuses to extend them judges by
///   the wall clock (or its server's native TTL).
/// - **Declared, not guessed.** [`capabilities`](Self::capabilities) states what the store
///   supports; the engine and the conformance suite read it there.
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
/// assert_eq!(NullStore.capabilities(), narvik_core::Capabilities::REQUIRED_ONLY);
/// ```
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// What this store supports. The default is the original's four required calls only
    /// ([`Capabilities::REQUIRED_ONLY`]); a store that implements optional calls, hides expired
    /// records or counts its purge loosely declares it here.
    fn capabilities(&self) -> Capabilities {
        Capabilities::REQUIRED_ONLY
    }

    /// A short name for this store, the `store` field of the span the engine opens around each
    /// of its calls (`"postgres"`, `"memory"`). The default is the implementing type's path; a
    /// wrapper that forwards its calls usually forwards this too.
    fn store_name(&self) -> &'static str {
        std::any::type_name::<Self>()
    }

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
    /// it (stores with a native TTL); it declares which in
    /// [`Capabilities::expired_fetch`].
    async fn fetch_session(&self, session_id: &str) -> Result<Option<SessionRecord>>;

    /// Sets the expiry of an existing, unexpired record and changes nothing else.
    ///
    /// On a missing, deleted or expired record it does nothing and succeeds: it never creates
    /// a record and never revives one.
    async fn update_session_expiry(
        &self,
        session_id: &str,
        expires_at: OffsetDateTime,
    ) -> Result<()>;

    /// Sets the expiry of `record`, a record the engine has just fetched, with the same rules
    /// as [`update_session_expiry`](Self::update_session_expiry). The engine extends sessions
    /// through this call, so a store that needs more than the id (Redis: the user, to move its
    /// per-user index) reads it from `record` instead of guessing or asking its server.
    ///
    /// The default calls `update_session_expiry(&record.id, expires_at)`.
    async fn update_record_expiry(
        &self,
        record: &SessionRecord,
        expires_at: OffsetDateTime,
    ) -> Result<()> {
        self.update_session_expiry(&record.id, expires_at).await
    }

    /// Deletes the record with this id. Deleting an unknown id succeeds.
    async fn delete_session(&self, session_id: &str) -> Result<()>;

    /// Returns every session of this user that is live at `now` (`expires_at > now`), in time
    /// proportional to that user's sessions, not to the whole store. The order is unspecified.
    ///
    /// `now` is the engine's clock; a store filters on it rather than on a clock of its own.
    async fn fetch_sessions_for_user(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<SessionRecord>> {
        let _ = (user_id, now);
        Err(Error::unsupported(OptionalOperation::FetchSessionsForUser))
    }

    /// Deletes every session of this user and no one else's. An unknown user is not an error.
    async fn delete_sessions_for_user(&self, user_id: &str) -> Result<()> {
        let _ = user_id;
        Err(Error::unsupported(OptionalOperation::DeleteSessionsForUser))
    }

    /// Deletes exactly the sessions expired at `now` (`expires_at <= now`) and returns how many
    /// it deleted, in time proportional to the expired ones. Stores whose server expires
    /// records natively declare [`ExpiredCount::AtMost`](crate::ExpiredCount::AtMost).
    ///
    /// `now` is the engine's clock; a store cuts off on it rather than on a clock of its own.
    async fn delete_all_expired_sessions(&self, now: OffsetDateTime) -> Result<u64> {
        let _ = now;
        Err(Error::unsupported(
            OptionalOperation::DeleteAllExpiredSessions,
        ))
    }

    /// Replaces the additional data of `record` (a record the engine has just fetched) with
    /// `data`, only if the stored record is still at `record.data_version` and live at `now`
    /// (`expires_at > now`, the engine's clock). On success the stored `data_version` becomes
    /// `record.data_version + 1` and nothing else changes (not the expiry, not the lifetime).
    ///
    /// Returns `true` when it replaced the data, `false` when it changed nothing: the record
    /// is missing, deleted, expired, or another update won since it was read. It never creates
    /// or revives a record and never touches another one. The compare and the write are one
    /// atomic step on the server, in one round trip, so two updates read at the same version
    /// can never both succeed: the loser re-reads and tries again (the engine's
    /// [`update_session_data`](crate::Narvik::update_session_data) does that).
    async fn update_session_data(
        &self,
        record: &SessionRecord,
        data: &SessionData,
        now: OffsetDateTime,
    ) -> Result<bool> {
        let _ = (record, data, now);
        Err(Error::unsupported(OptionalOperation::UpdateSessionData))
    }

    /// A new subscription to the invalidations this store pushes, for a store that declares
    /// [`pushes_invalidations`](Capabilities::pushes_invalidations); `None` (the default) for
    /// any other.
    ///
    /// The store pushes the id of every session deleted or changed in it (an extension may be
    /// left out: a copy with an earlier `expires_at` is only more careful), by this process or
    /// any other client of the server, and keeps the hub's health true only while it receives
    /// every change. It is called within a Tokio runtime, so that a store may start its
    /// listener on the first call.
    fn subscribe_invalidations(&self) -> Option<InvalidationSubscription> {
        None
    }
}

crate::forward_session_store! {
    impl[S: SessionStore + ?Sized] SessionStore for std::sync::Arc<S> {
        inner = |this| &**this;
        forward = [
            capabilities, store_name, save_session, fetch_session, update_session_expiry, update_record_expiry,
            delete_session, fetch_sessions_for_user, delete_sessions_for_user,
            delete_all_expired_sessions, update_session_data, subscribe_invalidations,
        ];
    }
}
