//! The engine: creates, validates, extends, rotates and ends sessions over any store.

use std::marker::PhantomData;
use std::sync::Arc;

use serde::{de::DeserializeOwned, Serialize};
use time::OffsetDateTime;

use crate::capabilities::Capabilities;
use crate::clock::Clock;
use crate::config::{NarvikBuilder, NarvikConfig};
use crate::cookie::{self, Cookie};
use crate::error::OptionalOperation;
use crate::error::{Error, Result};
use crate::session::{decode_data, short_id, Session, SessionRecord};
use crate::store::SessionStore;
use crate::time_util::truncate_to_millis;
use crate::token::{self, SessionToken};

/// A new session and the token that opens it. Send the token to the client (usually through
/// [`Narvik::create_cookie`]) and keep nothing else of it.
#[derive(Debug, Clone)]
pub struct CreatedSession<D = ()> {
    /// The secret for the cookie. Its `Debug` is redacted.
    pub token: SessionToken,
    /// The session, with `new == true`.
    pub session: Session<D>,
}

/// The session engine, generic over the application's additional data `D` (any serde type;
/// `()` when there is none). Cheap to clone: clones share the store and configuration.
///
/// ```
/// # async fn demo(store: std::sync::Arc<dyn narvik_core::SessionStore>) -> narvik_core::Result<()> {
/// use narvik_core::Narvik;
///
/// #[derive(serde::Serialize, serde::Deserialize, Clone)]
/// struct Data { theme: String }
///
/// let narvik: Narvik<Data> = Narvik::new(store);
/// let created = narvik.create_session("alice", Data { theme: "dark".into() }).await?;
/// let cookie = narvik.create_cookie(&created.token).serialize();
/// // ... later, on a request carrying that cookie:
/// let session = narvik.validate_session(created.token.as_str()).await?;
/// assert_eq!(session.map(|s| s.user_id), Some("alice".to_owned()));
/// # let _ = cookie; Ok(()) }
/// ```
pub struct Narvik<D = ()> {
    inner: Arc<Inner>,
    data: PhantomData<fn() -> D>,
}

struct Inner {
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
    clock: Arc<dyn Clock>,
    config: NarvikConfig,
    cookie_name: String,
}

impl<D> Clone for Narvik<D> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            data: PhantomData,
        }
    }
}

impl<D> std::fmt::Debug for Narvik<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Narvik")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl<D> Narvik<D> {
    /// An engine with the original's defaults (30-day sliding lifetime, `narvik_session`
    /// cookie with `HttpOnly; Secure; Path=/; SameSite=Lax`).
    pub fn new(store: Arc<dyn SessionStore>) -> Self {
        NarvikBuilder::new(store)
            .build()
            .unwrap_or_else(|_| unreachable!("the default configuration is valid"))
    }

    /// A builder to change the defaults.
    pub fn builder(store: Arc<dyn SessionStore>) -> NarvikBuilder<D> {
        NarvikBuilder::new(store)
    }

    pub(crate) fn from_parts(
        store: Arc<dyn SessionStore>,
        clock: Arc<dyn Clock>,
        config: NarvikConfig,
    ) -> Self {
        let cookie_name = config.cookie.full_name();
        let capabilities = store.capabilities();
        Self {
            inner: Arc::new(Inner {
                store,
                capabilities,
                clock,
                config,
                cookie_name,
            }),
            data: PhantomData,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &NarvikConfig {
        &self.inner.config
    }

    /// The store the engine uses.
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.inner.store
    }

    /// The store as a trait object. Calls go through this rather than the `Arc`: method lookup
    /// would otherwise pick the `SessionStore` impl of `Arc<S>`, whose forwarding boxes every
    /// call's future a second time.
    fn backend(&self) -> &dyn SessionStore {
        &*self.inner.store
    }

    /// What the store declares it supports (read once, when the engine was built).
    pub fn capabilities(&self) -> Capabilities {
        self.inner.capabilities
    }

    /// Fails with [`Error::Unsupported`] when the store declares `operation` absent, before
    /// any round trip.
    fn require(&self, operation: OptionalOperation) -> Result<()> {
        if self.inner.capabilities.supports(operation) {
            Ok(())
        } else {
            Err(Error::unsupported(operation))
        }
    }

    /// The current time as the engine sees it, to the millisecond.
    pub fn now(&self) -> OffsetDateTime {
        truncate_to_millis(self.inner.clock.now())
    }

    /// The session cookie's name as sent in headers (with the `__Host-` prefix if configured).
    pub fn cookie_name(&self) -> &str {
        &self.inner.cookie_name
    }

    /// The cookie carrying `token`, with `Max-Age` = the configured cookie max age or else the
    /// session lifetime.
    pub fn create_cookie(&self, token: &SessionToken) -> Cookie {
        let config = &self.inner.config;
        let max_age = config.cookie.max_age.unwrap_or(config.session_lifetime);
        Cookie::new(&config.cookie, token.as_str().to_owned(), max_age)
    }

    /// The cookie that deletes the session cookie: empty value, `Max-Age=0`.
    pub fn create_blank_cookie(&self) -> Cookie {
        Cookie::new(
            &self.inner.config.cookie,
            String::new(),
            time::Duration::ZERO,
        )
    }

    /// The session token in a request's `Cookie` header, if there is exactly one well-formed
    /// one. See [`cookie::read_session_token`].
    pub fn read_session_token(&self, cookie_header: &str) -> Option<SessionToken> {
        cookie::read_session_token(cookie_header, &self.inner.cookie_name)
    }

    /// Deletes a session (logout). Deleting an unknown session succeeds.
    pub async fn invalidate_session(&self, session_id: &str) -> Result<()> {
        self.backend().delete_session(session_id).await
    }

    /// Deletes every session of a user (for example after a password reset).
    pub async fn delete_sessions_for_user(&self, user_id: &str) -> Result<()> {
        self.require(OptionalOperation::DeleteSessionsForUser)?;
        self.backend().delete_sessions_for_user(user_id).await
    }

    /// Deletes every session expired by the engine's clock and returns the store's count.
    pub async fn delete_all_expired_sessions(&self) -> Result<u64> {
        self.require(OptionalOperation::DeleteAllExpiredSessions)?;
        self.backend().delete_all_expired_sessions(self.now()).await
    }

    /// Deletes every session of `user_id` except `keep_session_id` ("sign out other devices",
    /// "password changed"), and returns how many it deleted.
    pub async fn invalidate_other_sessions(
        &self,
        user_id: &str,
        keep_session_id: &str,
    ) -> Result<u64> {
        self.require(OptionalOperation::FetchSessionsForUser)?;
        let records = self
            .backend()
            .fetch_sessions_for_user(user_id, self.now())
            .await?;
        let mut deleted = 0;
        for record in records.iter().filter(|record| record.id != keep_session_id) {
            self.backend().delete_session(&record.id).await?;
            deleted += 1;
        }
        Ok(deleted)
    }

    /// The expiry a session created (or last extended) at `now` gets: `now + lifetime`, never
    /// past the absolute cap.
    fn expiry_from(&self, now: OffsetDateTime, created_at: OffsetDateTime) -> OffsetDateTime {
        let sliding = now + self.inner.config.session_lifetime;
        match self.inner.config.absolute_lifetime {
            Some(cap) => sliding.min(created_at + cap),
            None => sliding,
        }
    }

    /// Saves `record` under a fresh token, retrying with new tokens on a duplicate id.
    async fn save_with_fresh_token(&self, record: &mut SessionRecord) -> Result<SessionToken> {
        let attempts = self.inner.config.create_attempts;
        for attempt in 1..=attempts {
            let token = SessionToken::generate()?;
            record.id = token.session_id();
            match self.backend().save_session(record).await {
                Ok(()) => return Ok(token),
                Err(Error::DuplicateId) => {
                    tracing::warn!(
                        session = short_id(&record.id),
                        attempt,
                        "session id collision; retrying with a fresh token"
                    );
                }
                Err(error) => return Err(error),
            }
        }
        Err(Error::DuplicateId)
    }

    /// Brings the user back under the per-user cap by deleting their oldest live sessions,
    /// never `keep` (the session just saved) and not counting `leaving` (a session about to be
    /// deleted by the caller, as in rotation).
    async fn enforce_user_cap(
        &self,
        user_id: &str,
        now: OffsetDateTime,
        keep: &str,
        leaving: Option<&str>,
    ) -> Result<()> {
        let Some(cap) = self.inner.config.max_sessions_per_user else {
            return Ok(());
        };
        let mut live: Vec<SessionRecord> = self
            .backend()
            .fetch_sessions_for_user(user_id, now)
            .await?
            .into_iter()
            .filter(|record| !record.is_expired(now) && Some(record.id.as_str()) != leaving)
            .collect();
        if live.len() <= cap.get() {
            return Ok(());
        }
        let excess = live.len() - cap.get();
        live.retain(|record| record.id != keep);
        live.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        for record in live.iter().take(excess) {
            tracing::debug!(
                session = short_id(&record.id),
                "evicting oldest session of user"
            );
            self.backend().delete_session(&record.id).await?;
        }
        Ok(())
    }
}

impl<D: Serialize + DeserializeOwned> Narvik<D> {
    /// Creates a session for `user_id` carrying `data`, and its token.
    ///
    /// On a duplicate id from the store it retries with a fresh token (up to
    /// `create_attempts`), so an existing session is never overwritten. With a per-user cap,
    /// the user's oldest other sessions are evicted once the new one is saved (so a failed
    /// save costs no device its session).
    pub async fn create_session(&self, user_id: &str, data: D) -> Result<CreatedSession<D>> {
        let now = self.now();
        self.create_session_at(user_id, data, now, now, None).await
    }

    async fn create_session_at(
        &self,
        user_id: &str,
        data: D,
        created_at: OffsetDateTime,
        now: OffsetDateTime,
        replacing: Option<&str>,
    ) -> Result<CreatedSession<D>> {
        let json =
            serde_json::to_value(&data).map_err(|error| Error::InvalidData(error.to_string()))?;
        let mut record = SessionRecord {
            id: String::new(),
            user_id: user_id.to_owned(),
            expires_at: self.expiry_from(now, created_at),
            created_at,
            data: json.into(),
        };
        let token = self.save_with_fresh_token(&mut record).await?;
        if let Err(error) = self
            .enforce_user_cap(user_id, now, &record.id, replacing)
            .await
        {
            // Best effort: a create that reports failure leaves no session behind.
            let _ = self.backend().delete_session(&record.id).await;
            return Err(error);
        }
        Ok(CreatedSession {
            token,
            session: Session {
                id: record.id,
                user_id: record.user_id,
                expires_at: record.expires_at,
                created_at: record.created_at,
                data,
                new: true,
                extended: false,
            },
        })
    }

    /// Checks a token from a client and returns its session, or `None`.
    ///
    /// - A malformed token is `None` without a store round trip.
    /// - An expired session is deleted and `None`.
    /// - A session in the last half of its lifetime is extended to `now + lifetime` (never past
    ///   the absolute cap) and returned with `extended == true`: set the cookie again.
    /// - A record whose data does not decode as `D` is [`Error::CorruptRecord`].
    ///
    /// A validation racing a logout is ordered before it: the store's expiry update never
    /// brings a deleted record back, though this call may still return the session it read
    /// (with `extended == true`) just before the delete landed.
    pub async fn validate_session(&self, token: &str) -> Result<Option<Session<D>>> {
        if !token::is_well_formed(token) {
            return Ok(None);
        }
        self.validate_session_id(&token::session_id_from_token(token))
            .await
    }

    /// [`Narvik::validate_session`] for an already parsed token.
    pub async fn validate_token(&self, token: &SessionToken) -> Result<Option<Session<D>>> {
        self.validate_session_id(&token.session_id()).await
    }

    async fn validate_session_id(&self, session_id: &str) -> Result<Option<Session<D>>> {
        let now = self.now();
        let Some(record) = self.fetch_live_record(session_id, now).await? else {
            return Ok(None);
        };
        let data = decode_data(&record)?;
        let half_life = self.inner.config.session_lifetime / 2;
        let mut extended = false;
        let mut expires_at = record.expires_at;
        if now >= record.expires_at - half_life {
            let extended_to = self.expiry_from(now, record.created_at);
            if extended_to > record.expires_at {
                // The store gets the whole record: the engine holds it already, so a store that
                // needs more than the id never pays a round trip to learn it.
                self.backend()
                    .update_record_expiry(&record, extended_to)
                    .await?;
                expires_at = extended_to;
                extended = true;
            }
        }
        let mut session = Session::with_data(record, data);
        session.expires_at = expires_at;
        session.extended = extended;
        Ok(Some(session))
    }

    /// The live record behind `session_id`. An expired record (or one past the absolute cap)
    /// is deleted and `None`.
    async fn fetch_live_record(
        &self,
        session_id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<SessionRecord>> {
        let Some(record) = self.backend().fetch_session(session_id).await? else {
            return Ok(None);
        };
        // The absolute cap is checked here too, so a cap added to a running deployment also
        // ends sessions created before it.
        let past_cap = self
            .inner
            .config
            .absolute_lifetime
            .is_some_and(|cap| now >= record.created_at + cap);
        if record.is_expired(now) || past_cap {
            self.backend().delete_session(session_id).await?;
            return Ok(None);
        }
        Ok(Some(record))
    }

    /// Replaces the session behind `token` with a new one (new token, same user, data and
    /// `created_at`, so the absolute cap still counts from sign-in); the old token is dead
    /// afterwards. `None` when the token does not open a live session.
    ///
    /// Use it on privilege changes. The new session is saved before the old one is deleted, so
    /// a failure never leaves the user with neither.
    pub async fn rotate_session(&self, token: &str) -> Result<Option<CreatedSession<D>>> {
        let Some(token) = SessionToken::parse(token) else {
            return Ok(None);
        };
        let now = self.now();
        // No extension: the old session is about to die, so writing its expiry would be waste.
        let Some(old) = self.fetch_live_record(&token.session_id(), now).await? else {
            return Ok(None);
        };
        let old = Session::<D>::from_record(old)?;
        let created = self
            .create_session_at(&old.user_id, old.data, old.created_at, now, Some(&old.id))
            .await?;
        if let Err(error) = self.backend().delete_session(&old.id).await {
            // Best effort: do not leave two live sessions when the caller sees a failure.
            let _ = self.backend().delete_session(&created.session.id).await;
            return Err(error);
        }
        Ok(Some(created))
    }

    /// Every live session of `user_id` ("your devices"). Needs a store with the per-user calls.
    pub async fn fetch_sessions_for_user(&self, user_id: &str) -> Result<Vec<Session<D>>> {
        self.require(OptionalOperation::FetchSessionsForUser)?;
        let now = self.now();
        self.backend()
            .fetch_sessions_for_user(user_id, now)
            .await?
            .into_iter()
            .filter(|record| !record.is_expired(now))
            .map(Session::from_record)
            .collect()
    }
}
