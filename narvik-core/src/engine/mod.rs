//! The engine: creates, validates, extends, rotates and ends sessions over any store.

use std::marker::PhantomData;
use std::sync::Arc;

use time::{Duration, OffsetDateTime};

use crate::capabilities::Capabilities;
use crate::clock::Clock;
use crate::config::{NarvikBuilder, NarvikConfig};
use crate::cookie::{self, Cookie};
use crate::error::OptionalOperation;
use crate::error::{Error, Result};
use crate::near_cache::{NearCacheStats, SessionCache};
use crate::purge::PurgeTask;
use crate::session::Session;
use crate::store::SessionStore;
use crate::store_calls::TracedStore;
use crate::time_util::truncate_to_millis;
use crate::token::SessionToken;

mod create;
mod data_updates;
mod invalidate;
mod rotate;
mod users;
mod validate;

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

    /// The store, each call in its span (see [`TracedStore`]), reached as a trait object:
    /// calls through the `Arc` would pick the `SessionStore` impl of `Arc<S>`, whose
    /// forwarding boxes every call's future a second time.
    fn backend(&self) -> TracedStore<'_> {
        TracedStore::new(&*self.inner.store)
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

    /// What the near cache has done, or `None` without one.
    pub fn near_cache_stats(&self) -> Option<NearCacheStats> {
        self.near_cache.as_ref().map(|cache| cache.stats())
    }

    /// Deletes every session expired by the engine's clock and returns the store's count.
    pub async fn delete_all_expired_sessions(&self) -> Result<u64> {
        self.require(OptionalOperation::DeleteAllExpiredSessions)?;
        self.backend().delete_all_expired_sessions(self.now()).await
    }
}
