//! The engine: creates, validates, extends, rotates and ends sessions over any store.

use std::marker::PhantomData;
use std::sync::Arc;

use serde::{de::DeserializeOwned, Serialize};
use time::{Duration, OffsetDateTime};
use tracing::Instrument;

use crate::capabilities::Capabilities;
use crate::clock::Clock;
use crate::config::{valid_lifetime, NarvikBuilder, NarvikConfig};
use crate::cookie::{self, Cookie};
use crate::data::SessionData;
use crate::error::OptionalOperation;
use crate::error::{Error, Result};
use crate::near_cache::{NearCacheStats, SessionCache};
use crate::purge::PurgeTask;
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
    near_cache: Option<Arc<dyn SessionCache<D>>>,
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
            near_cache: self.near_cache.clone(),
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
        near_cache: Option<Arc<dyn SessionCache<D>>>,
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
            near_cache,
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
    /// session lifetime, in whole seconds (a fraction of a second is dropped: 90.5 s gives
    /// `Max-Age=90`).
    ///
    /// With [`CookieConfig::browser_session`](crate::CookieConfig::browser_session) the cookie
    /// has no `Max-Age`. For a session with a lifetime of its own use
    /// [`create_session_cookie`](Self::create_session_cookie).
    pub fn create_cookie(&self, token: &SessionToken) -> Cookie {
        let config = &self.inner.config;
        let max_age = if config.cookie.browser_session {
            None
        } else {
            Some(config.cookie.max_age.unwrap_or(config.session_lifetime))
        };
        Cookie::new(&config.cookie, token.as_str().to_owned(), max_age)
    }

    /// The cookie carrying `token` for `session`: a session with a lifetime of its own
    /// ("remember me") gets a persistent cookie with `Max-Age` = that lifetime; any other
    /// session gets [`create_cookie`](Self::create_cookie)'s.
    pub fn create_session_cookie(&self, token: &SessionToken, session: &Session<D>) -> Cookie {
        match session.lifetime {
            Some(lifetime) => Cookie::new(
                &self.inner.config.cookie,
                token.as_str().to_owned(),
                Some(lifetime),
            ),
            None => self.create_cookie(token),
        }
    }

    /// The sliding lifetime of a session with this own lifetime: its own, or the configured.
    fn lifetime_of(&self, own: Option<Duration>) -> Duration {
        own.unwrap_or(self.inner.config.session_lifetime)
    }

    /// Starts the background purge: every `interval` (with up to a tenth of random jitter, so
    /// that instances started together spread their purges), deletes the sessions expired by
    /// the engine's clock and logs how many. A failing store is retried with a backoff and the
    /// task keeps going. The task stops when the returned [`PurgeTask`] is dropped.
    ///
    /// Fails with [`Error::Unsupported`] when the store does not declare
    /// `delete_all_expired_sessions`, and with [`Error::InvalidConfiguration`] for a zero
    /// interval. Needs a Tokio runtime.
    pub fn spawn_purge_task(&self, interval: std::time::Duration) -> Result<PurgeTask> {
        self.require(OptionalOperation::DeleteAllExpiredSessions)?;
        PurgeTask::spawn(
            Arc::clone(&self.inner.store),
            Arc::clone(&self.inner.clock),
            interval,
        )
    }

    /// The cookie that deletes the session cookie: empty value, `Max-Age=0`.
    pub fn create_blank_cookie(&self) -> Cookie {
        Cookie::new(
            &self.inner.config.cookie,
            String::new(),
            Some(Duration::ZERO),
        )
    }

    /// The session token in a request's `Cookie` header: `Some` only if the session cookie
    /// (by its exact name) appears exactly once and its value is a well-formed token. A cookie
    /// that appears twice is `None` even when one of the two is well-formed. See
    /// [`cookie::read_session_token`].
    pub fn read_session_token(&self, cookie_header: &str) -> Option<SessionToken> {
        cookie::read_session_token(cookie_header, &self.inner.cookie_name)
    }

    /// Deletes a session (logout). Deleting an unknown session succeeds.
    pub async fn invalidate_session(&self, session_id: &str) -> Result<()> {
        self.delete_stored(session_id).await
    }

    /// Deletes a session in the store and drops it from the near cache. The cache forgets it
    /// even when the store reports a failure: the delete may have landed all the same.
    async fn delete_stored(&self, session_id: &str) -> Result<()> {
        let deleted = self.backend().delete_session(session_id).await;
        if let Some(cache) = &self.near_cache {
            cache.forget(session_id);
        }
        deleted
    }

    /// What the near cache has done, or `None` without one.
    pub fn near_cache_stats(&self) -> Option<NearCacheStats> {
        self.near_cache.as_ref().map(|cache| cache.stats())
    }

    /// Deletes every session of a user (for example after a password reset).
    pub async fn delete_sessions_for_user(&self, user_id: &str) -> Result<()> {
        self.require(OptionalOperation::DeleteSessionsForUser)?;
        let deleted = self.backend().delete_sessions_for_user(user_id).await;
        // The cache is keyed by session, not user: it forgets everything rather than a
        // session of this user it could not name.
        if let Some(cache) = &self.near_cache {
            cache.forget_all();
        }
        deleted
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
            self.delete_stored(&record.id).await?;
            deleted += 1;
        }
        Ok(deleted)
    }

    /// The expiry a session created (or last extended) at `now` gets: `now + lifetime`, never
    /// past the absolute cap.
    fn expiry_from(
        &self,
        now: OffsetDateTime,
        created_at: OffsetDateTime,
        lifetime: Duration,
    ) -> OffsetDateTime {
        let sliding = now + lifetime;
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
            self.delete_stored(&record.id).await?;
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
        self.create_session_at(user_id, data, now, now, None, None)
            .instrument(tracing::debug_span!(
                "create_session",
                session = tracing::field::Empty,
                outcome = tracing::field::Empty
            ))
            .await
    }

    /// [`create_session`](Self::create_session) for a session with a sliding lifetime of its
    /// own ("remember me"), kept with the session: validation extends it by this lifetime, the
    /// absolute cap still applies, and [`create_session_cookie`](Self::create_session_cookie)
    /// gives it a persistent cookie. The lifetime is between one second and 100 years, in
    /// whole milliseconds, or [`Error::InvalidConfiguration`].
    pub async fn create_session_with_lifetime(
        &self,
        user_id: &str,
        data: D,
        lifetime: Duration,
    ) -> Result<CreatedSession<D>> {
        if !valid_lifetime(lifetime) {
            return Err(Error::InvalidConfiguration(
                "a session lifetime must be between one second and 100 years, in whole milliseconds"
                    .to_owned(),
            ));
        }
        let now = self.now();
        self.create_session_at(user_id, data, now, now, None, Some(lifetime))
            .instrument(tracing::debug_span!(
                "create_session",
                session = tracing::field::Empty,
                outcome = tracing::field::Empty
            ))
            .await
    }

    async fn create_session_at(
        &self,
        user_id: &str,
        data: D,
        created_at: OffsetDateTime,
        now: OffsetDateTime,
        replacing: Option<&str>,
        lifetime: Option<Duration>,
    ) -> Result<CreatedSession<D>> {
        let created = self
            .create_session_record(user_id, data, created_at, now, replacing, lifetime)
            .await;
        let span = tracing::Span::current();
        match &created {
            Ok(created) => {
                span.record("session", short_id(&created.session.id));
                span.record("outcome", "created");
            }
            Err(error) => {
                span.record("outcome", outcome_of(error));
            }
        }
        tracing::debug!("session created");
        created
    }

    async fn create_session_record(
        &self,
        user_id: &str,
        data: D,
        created_at: OffsetDateTime,
        now: OffsetDateTime,
        replacing: Option<&str>,
        lifetime: Option<Duration>,
    ) -> Result<CreatedSession<D>> {
        let json =
            serde_json::to_value(&data).map_err(|error| Error::InvalidData(error.to_string()))?;
        let mut record = SessionRecord {
            id: String::new(),
            user_id: user_id.to_owned(),
            expires_at: self.expiry_from(now, created_at, self.lifetime_of(lifetime)),
            created_at,
            data: json.into(),
            lifetime,
            data_version: 0,
        };
        let token = self.save_with_fresh_token(&mut record).await?;
        if let Err(error) = self
            .enforce_user_cap(user_id, now, &record.id, replacing)
            .await
        {
            // Best effort: a create that reports failure leaves no session behind.
            let _ = self.delete_stored(&record.id).await;
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
                lifetime: record.lifetime,
                data_version: record.data_version,
                new: true,
                extended: false,
            },
        })
    }

    /// Checks a token from a client and returns its session, or `None`.
    ///
    /// - A malformed token is `None` without a store round trip.
    /// - An expired session is `None`. On a store that returns expired records
    ///   ([`ExpiredFetch::Returned`](crate::ExpiredFetch::Returned): the SQL stores) the engine
    ///   deletes the record then; a store that hides them
    ///   ([`ExpiredFetch::Hidden`](crate::ExpiredFetch::Hidden): memory, Redis, MongoDB) answers
    ///   as if it were missing, so nothing is deleted here and the record stays until the purge
    ///   ([`delete_all_expired_sessions`](Self::delete_all_expired_sessions), the purge task) or
    ///   the server's own TTL removes it. A session past the absolute cap is deleted and `None`
    ///   on every store.
    /// - A session in the last half of its lifetime is extended to `now + lifetime` (never past
    ///   the absolute cap) and returned with `extended == true`: set the cookie again.
    /// - A record whose data does not decode as `D` is [`Error::CorruptRecord`].
    ///
    /// A validation racing a logout is ordered before it: the store's expiry update never
    /// brings a deleted record back, though this call may still return the session it read
    /// (with `extended == true`) just before the delete landed.
    pub async fn validate_session(&self, token: &str) -> Result<Option<Session<D>>> {
        if !token::is_well_formed(token) {
            tracing::debug!(outcome = "malformed", "validate_session");
            return Ok(None);
        }
        self.validate_session_id(&token::session_id_from_token(token))
            .await
    }

    /// [`Narvik::validate_session`] for an already parsed token.
    pub async fn validate_token(&self, token: &SessionToken) -> Result<Option<Session<D>>> {
        self.validate_session_id(&token.session_id()).await
    }

    /// A near cache hit, or the store. With a cache the store path is boxed: it is large, and
    /// a hit (the common case then) would otherwise carry it, moved on every poll and spawn.
    /// Without one it is not, so that an uncached validation pays no allocation for it.
    async fn validate_session_id(&self, session_id: &str) -> Result<Option<Session<D>>> {
        let Some(cache) = &self.near_cache else {
            return self.validate_from_store(session_id).await;
        };
        if let Some(session) = cache.get(session_id, self.now()) {
            tracing::debug!(
                session = short_id(session_id),
                outcome = "cached",
                "validate_session"
            );
            return Ok(Some(session));
        }
        Box::pin(self.validate_from_store(session_id)).await
    }

    async fn validate_from_store(&self, session_id: &str) -> Result<Option<Session<D>>> {
        let span = tracing::debug_span!(
            "validate_session",
            session = short_id(session_id),
            outcome = tracing::field::Empty
        );
        traced(
            span,
            self.validate_live(session_id),
            |validated| match validated {
                Some(session) if session.extended => "extended",
                Some(_) => "valid",
                None => "none",
            },
            "session validated",
        )
        .await
    }

    async fn validate_live(&self, session_id: &str) -> Result<Option<Session<D>>> {
        let now = self.now();
        // Taken before the read: an invalidation that lands while it is in flight undoes the
        // insert below.
        let ticket = self
            .near_cache
            .as_ref()
            .and_then(|cache| cache.ticket(session_id));
        let Some(record) = self.fetch_live_record(session_id, now).await? else {
            return Ok(None);
        };
        let data = decode_data(&record)?;
        let lifetime = self.lifetime_of(record.lifetime);
        let half_life = lifetime / 2;
        let mut extended = false;
        let mut expires_at = record.expires_at;
        if now >= record.expires_at - half_life {
            let extended_to = self.expiry_from(now, record.created_at, lifetime);
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
        if let (Some(cache), Some(ticket)) = (&self.near_cache, ticket) {
            // Served until the next extension is due, never past the absolute cap: the store
            // still sees one write per half-life, and no entry outlives its session.
            let mut serve_until: OffsetDateTime = expires_at - half_life;
            if let Some(cap) = self.inner.config.absolute_lifetime {
                serve_until = serve_until.min(session.created_at + cap);
            }
            if now < serve_until {
                cache.insert(ticket, &session, serve_until);
            }
        }
        Ok(Some(session))
    }

    /// The live record behind `session_id`. An expired record the store returns (or one past
    /// the absolute cap) is deleted and `None`; one the store hides is `None` alone.
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
            self.delete_stored(session_id).await?;
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
        let span = tracing::debug_span!(
            "rotate_session",
            session = short_id(&token.session_id()).to_owned(),
            outcome = tracing::field::Empty
        );
        traced(
            span,
            self.rotate_token(&token),
            |rotated| if rotated.is_some() { "rotated" } else { "none" },
            "session rotated",
        )
        .await
    }

    async fn rotate_token(&self, token: &SessionToken) -> Result<Option<CreatedSession<D>>> {
        let now = self.now();
        // No extension: the old session is about to die, so writing its expiry would be waste.
        let Some(old) = self.fetch_live_record(&token.session_id(), now).await? else {
            return Ok(None);
        };
        let old = Session::<D>::from_record(old)?;
        let created = self
            .create_session_record(
                &old.user_id,
                old.data,
                old.created_at,
                now,
                Some(&old.id),
                old.lifetime,
            )
            .await?;
        if let Err(error) = self.delete_stored(&old.id).await {
            // Best effort: do not leave two live sessions when the caller sees a failure.
            let _ = self.delete_stored(&created.session.id).await;
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

    /// Changes the additional data of `session` with `change`, without losing a concurrent
    /// update: the store replaces the data only if nobody else has since the version read
    /// ([`SessionStore::update_session_data`]). When another update won, the engine re-reads
    /// the session and applies `change` again to the data it finds, up to
    /// `data_update_attempts` times (so `change` may run more than once and should only
    /// compute from the data it is given), then fails with [`Error::Conflict`].
    ///
    /// Returns the session as updated (`data_version` one higher), or `None` when the session
    /// has ended or expired meanwhile; an update never brings a session back. The expiry is
    /// left alone. Needs a store that declares `update_session_data`, else
    /// [`Error::Unsupported`] without a round trip.
    ///
    /// ```
    /// # async fn demo(narvik: narvik_core::Narvik<Vec<String>>, session: narvik_core::Session<Vec<String>>) -> narvik_core::Result<()> {
    /// let updated = narvik
    ///     .update_session_data(&session, |flashes| flashes.push("Saved.".to_owned()))
    ///     .await?;
    /// # let _ = updated; Ok(()) }
    /// ```
    pub async fn update_session_data<F>(
        &self,
        session: &Session<D>,
        change: F,
    ) -> Result<Option<Session<D>>>
    where
        D: Clone,
        F: FnMut(&mut D),
    {
        let span = tracing::debug_span!(
            "update_session_data",
            session = short_id(&session.id),
            outcome = tracing::field::Empty
        );
        traced(
            span,
            self.update_data(session, change),
            |updated| if updated.is_some() { "updated" } else { "none" },
            "session data updated",
        )
        .await
    }

    async fn update_data<F>(
        &self,
        session: &Session<D>,
        mut change: F,
    ) -> Result<Option<Session<D>>>
    where
        D: Clone,
        F: FnMut(&mut D),
    {
        self.require(OptionalOperation::UpdateSessionData)?;
        let attempts = self.inner.config.data_update_attempts;
        let mut current = session.clone();
        for attempt in 1..=attempts {
            let mut data = current.data.clone();
            change(&mut data);
            let read = current.to_record()?;
            let replacement: SessionData = serde_json::to_value(&data)
                .map_err(|error| Error::InvalidData(error.to_string()))?
                .into();
            let replaced = self
                .backend()
                .update_session_data(&read, &replacement, self.now())
                .await;
            // Forgotten whatever the answer: a failed call may have landed, and a lost race
            // means the cached copy is out of date.
            if let Some(cache) = &self.near_cache {
                cache.forget(&session.id);
            }
            if replaced? {
                current.data = data;
                current.data_version += 1;
                current.new = false;
                current.extended = false;
                return Ok(Some(current));
            }
            tracing::debug!(attempt, "data changed concurrently; reading it again");
            let Some(fresh) = self.fetch_live_record(&session.id, self.now()).await? else {
                return Ok(None);
            };
            current = Session::from_record(fresh)?;
        }
        Err(Error::Conflict { attempts })
    }
}

/// Runs `work` in `span` (a debug span with an empty `outcome` field), then records its
/// outcome, named by `outcome` on success and by the error's kind on failure, and logs
/// `message` in the span.
async fn traced<T>(
    span: tracing::Span,
    work: impl std::future::Future<Output = Result<T>>,
    outcome: impl FnOnce(&T) -> &'static str,
    message: &'static str,
) -> Result<T> {
    // No subscriber wants the span (the usual case at the default level): the call runs bare,
    // without entering, recording or logging on every poll.
    if span.is_disabled() {
        return work.await;
    }
    let result = work.instrument(span.clone()).await;
    span.record(
        "outcome",
        match &result {
            Ok(value) => outcome(value),
            Err(error) => outcome_of(error),
        },
    );
    span.in_scope(|| tracing::debug!("{message}"));
    result
}

/// The `outcome` a span records for a failed call.
fn outcome_of(error: &Error) -> &'static str {
    match error {
        Error::Unavailable { .. } => "unavailable",
        Error::CorruptRecord { .. } => "corrupt",
        Error::Conflict { .. } => "conflict",
        Error::Unsupported { .. } => "unsupported",
        _ => "error",
    }
}
