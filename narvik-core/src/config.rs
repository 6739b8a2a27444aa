//! The engine's settings and their builder.

use std::num::NonZeroUsize;
use std::sync::Arc;

use time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::cookie::{CookieConfig, CookiePrefix, SameSite};
use crate::engine::Narvik;
use crate::error::{Error, Result};
use crate::near_cache::{NearCache, NearCacheConfig, SessionCache};
use crate::store::SessionStore;

/// Makes the near cache once the rest of the configuration is known to be valid.
type MakeCache<D> = Box<dyn FnOnce(&dyn SessionStore) -> Result<Arc<dyn SessionCache<D>>> + Send>;

/// The default session lifetime, as in the original: 30 days.
pub const DEFAULT_SESSION_LIFETIME: Duration = Duration::days(30);
/// The longest lifetime (sliding or absolute) the engine accepts.
pub const MAX_LIFETIME: Duration = Duration::days(36_525);
/// How many fresh tokens `create_session` tries when the store reports a duplicate id.
pub const DEFAULT_CREATE_ATTEMPTS: u32 = 3;
/// How many times `update_session_data` tries before it reports a conflict.
pub const DEFAULT_DATA_UPDATE_ATTEMPTS: u32 = 10;

/// Whether `lifetime` is one the engine accepts: between one second and [`MAX_LIFETIME`], in
/// whole milliseconds, so every computed expiry stays on the grid all stores can represent
/// and `now + lifetime` stays far from the end of the date range.
pub fn valid_lifetime(lifetime: Duration) -> bool {
    (Duration::SECOND..=MAX_LIFETIME).contains(&lifetime)
        && lifetime.subsec_nanoseconds() % 1_000_000 == 0
}

/// Everything the engine can be told. Build it with [`Narvik::builder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NarvikConfig {
    /// The sliding (idle) lifetime: a session unused for this long expires, and one used in
    /// the last half of it is extended to `now + session_lifetime`.
    pub session_lifetime: Duration,
    /// An optional absolute cap: no session lives past `created_at + absolute_lifetime`,
    /// however often it is used.
    pub absolute_lifetime: Option<Duration>,
    /// An optional cap on live sessions per user. Needs a store that declares per-user
    /// listing: the builder rejects the cap otherwise.
    ///
    /// The engine enforces it after the save: once a new session (or a rotation's
    /// replacement) is stored, it lists the user's live sessions and deletes the oldest (by
    /// `created_at`) beyond the cap, never the new one. So a failed save costs no device its
    /// session, and a failed eviction fails the create, whose new session is then deleted
    /// (best effort). Saving and evicting are not one atomic step: while sign-ins of one user
    /// race, that user briefly holds more sessions than the cap, and each create, listing
    /// after its own save, evicts the excess it sees.
    pub max_sessions_per_user: Option<NonZeroUsize>,
    /// The session cookie.
    pub cookie: CookieConfig,
    /// How many fresh tokens `create_session` tries on a duplicate id (at least 1).
    pub create_attempts: u32,
    /// How many times `update_session_data` tries when concurrent updates win (at least 1).
    pub data_update_attempts: u32,
}

impl Default for NarvikConfig {
    fn default() -> Self {
        Self {
            session_lifetime: DEFAULT_SESSION_LIFETIME,
            absolute_lifetime: None,
            max_sessions_per_user: None,
            cookie: CookieConfig::default(),
            create_attempts: DEFAULT_CREATE_ATTEMPTS,
            data_update_attempts: DEFAULT_DATA_UPDATE_ATTEMPTS,
        }
    }
}

impl NarvikConfig {
    /// Rejects settings that would make sessions unusable or cookies injectable.
    pub fn validate(&self) -> Result<()> {
        // Whole milliseconds keep every computed expiry on the grid all stores can represent;
        // the upper bound keeps `now + lifetime` far from the end of the date range.
        if !valid_lifetime(self.session_lifetime) {
            return Err(Error::InvalidConfiguration(
                "session_lifetime must be between one second and 100 years, in whole milliseconds"
                    .to_owned(),
            ));
        }
        if self
            .absolute_lifetime
            .is_some_and(|cap| !valid_lifetime(cap))
        {
            return Err(Error::InvalidConfiguration(
                "absolute_lifetime must be between one second and 100 years, in whole milliseconds"
                    .to_owned(),
            ));
        }
        if self.data_update_attempts == 0 {
            return Err(Error::InvalidConfiguration(
                "data_update_attempts must be at least 1".to_owned(),
            ));
        }
        if self.create_attempts == 0 {
            return Err(Error::InvalidConfiguration(
                "create_attempts must be at least 1".to_owned(),
            ));
        }
        self.cookie.validate()
    }
}

/// Builds a [`Narvik`] engine; every setting has the original's default.
///
/// ```
/// # use std::sync::Arc;
/// # use narvik_core::{Narvik, SessionStore};
/// # fn demo(store: Arc<dyn SessionStore>) -> narvik_core::Result<()> {
/// let narvik: Narvik = Narvik::builder(store)
///     .session_lifetime(time::Duration::days(7))
///     .absolute_lifetime(time::Duration::days(90))
///     .cookie_name("sid")
///     .build()?;
/// # Ok(()) }
/// ```
#[must_use]
pub struct NarvikBuilder<D> {
    store: Arc<dyn SessionStore>,
    clock: Arc<dyn Clock>,
    config: NarvikConfig,
    near_cache: Option<MakeCache<D>>,
}

impl<D> NarvikBuilder<D> {
    pub(crate) fn new(store: Arc<dyn SessionStore>) -> Self {
        Self {
            store,
            clock: Arc::new(SystemClock),
            config: NarvikConfig::default(),
            near_cache: None,
        }
    }

    /// Replaces the whole configuration.
    pub fn config(mut self, config: NarvikConfig) -> Self {
        self.config = config;
        self
    }

    /// The sliding session lifetime (default 30 days).
    pub fn session_lifetime(mut self, lifetime: Duration) -> Self {
        self.config.session_lifetime = lifetime;
        self
    }

    /// An absolute cap on a session's age, counted from `created_at`.
    pub fn absolute_lifetime(mut self, cap: Duration) -> Self {
        self.config.absolute_lifetime = Some(cap);
        self
    }

    /// A cap on live sessions per user: once a new session is saved, the user's oldest beyond
    /// the cap are evicted (see [`NarvikConfig::max_sessions_per_user`]).
    pub fn max_sessions_per_user(mut self, cap: NonZeroUsize) -> Self {
        self.config.max_sessions_per_user = Some(cap);
        self
    }

    /// How many fresh tokens to try when the store reports a duplicate id.
    pub fn create_attempts(mut self, attempts: u32) -> Self {
        self.config.create_attempts = attempts;
        self
    }

    /// How many times a data update tries when concurrent updates of the same session win.
    pub fn data_update_attempts(mut self, attempts: u32) -> Self {
        self.config.data_update_attempts = attempts;
        self
    }

    /// The whole cookie configuration.
    pub fn cookie(mut self, cookie: CookieConfig) -> Self {
        self.config.cookie = cookie;
        self
    }

    /// The cookie name (default `narvik_session`).
    pub fn cookie_name(mut self, name: impl Into<String>) -> Self {
        self.config.cookie.name = name.into();
        self
    }

    /// The cookie `Max-Age` (default: the session lifetime). At least one second: `build`
    /// rejects less, since `Max-Age=0` deletes the cookie.
    pub fn cookie_max_age(mut self, max_age: Duration) -> Self {
        self.config.cookie.max_age = Some(max_age);
        self
    }

    /// Browser-session cookies (default off): no `Max-Age`, so the browser drops the cookie
    /// when it closes; the server-side lifetime still applies. Sessions created with a
    /// lifetime of their own still get a persistent cookie.
    pub fn cookie_browser_session(mut self, browser_session: bool) -> Self {
        self.config.cookie.browser_session = browser_session;
        self
    }

    /// The `Secure` attribute (default on).
    pub fn cookie_secure(mut self, secure: bool) -> Self {
        self.config.cookie.secure = secure;
        self
    }

    /// The `Domain` attribute (default none).
    pub fn cookie_domain(mut self, domain: impl Into<String>) -> Self {
        self.config.cookie.domain = Some(domain.into());
        self
    }

    /// The `Path` attribute (default `/`).
    pub fn cookie_path(mut self, path: impl Into<String>) -> Self {
        self.config.cookie.path = path.into();
        self
    }

    /// The `SameSite` attribute (default `Lax`).
    pub fn cookie_same_site(mut self, same_site: SameSite) -> Self {
        self.config.cookie.same_site = same_site;
        self
    }

    /// The cookie name prefix (default none). [`CookiePrefix::Host`] makes browsers refuse
    /// the cookie from anywhere but this host over HTTPS; [`CookiePrefix::Secure`] allows a
    /// `Domain` (see [`CookiePrefix`]). `build` rejects a prefix without its attributes.
    pub fn cookie_prefix(mut self, prefix: CookiePrefix) -> Self {
        self.config.cookie.prefix = prefix;
        self
    }

    /// Shorthand for [`cookie_prefix`](Self::cookie_prefix): `true` is
    /// [`CookiePrefix::Host`], `false` is no prefix.
    pub fn cookie_host_prefix(self, host_prefix: bool) -> Self {
        self.cookie_prefix(if host_prefix {
            CookiePrefix::Host
        } else {
            CookiePrefix::None
        })
    }

    /// The clock the engine reads (default the system clock); tests pass a
    /// [`ManualClock`](crate::ManualClock).
    ///
    /// The store needs no clock of its own for what the engine decides: this clock judges
    /// every fetched record's expiry, extension and absolute cap, and the engine hands its
    /// `now` to the store for per-user listing (`fetch_sessions_for_user`), the purge
    /// (`delete_all_expired_sessions`) and data updates (`update_session_data`). The required
    /// calls carry no `now`, and there each store keeps to the wall clock (or its server's
    /// TTL): `update_session_expiry` / `update_record_expiry` leave a record alone once it has
    /// expired by the wall clock, and a store that hides expired records
    /// ([`ExpiredFetch::Hidden`](crate::ExpiredFetch::Hidden): memory, Redis, MongoDB) hides
    /// them from `fetch_session` by the wall clock. A clock running behind the wall clock
    /// therefore does not keep a session alive on such a store past its wall-clock expiry.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Validates the configuration against itself and against what the store declares
    /// ([`SessionStore::capabilities`]), and builds the engine.
    ///
    /// A per-user cap on a store without per-user listing is
    /// [`Error::InvalidConfiguration`] here, not a failure at the first sign-in; so is a
    /// pushed near cache on a store that does not push, or built outside a Tokio runtime.
    pub fn build(self) -> Result<Narvik<D>> {
        self.config.validate()?;
        if self.config.max_sessions_per_user.is_some()
            && !self.store.capabilities().fetch_sessions_for_user
        {
            return Err(Error::InvalidConfiguration(
                "max_sessions_per_user needs a store that declares fetch_sessions_for_user"
                    .to_owned(),
            ));
        }
        let near_cache = match self.near_cache {
            Some(make) => Some(make(&*self.store)?),
            None => None,
        };
        Ok(Narvik::from_parts(
            self.store,
            self.clock,
            self.config,
            near_cache,
        ))
    }
}

impl<D: Clone + Send + Sync + 'static> NarvikBuilder<D> {
    /// A near cache in front of the store (default none): validations of an unchanged session
    /// are served from process memory, with neither a round trip nor a decode. See
    /// [`near_cache`](crate::near_cache) for what each mode guarantees.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use narvik_core::{Narvik, NearCacheConfig, SessionStore};
    /// # fn demo(store: Arc<dyn SessionStore>) -> narvik_core::Result<()> {
    /// // On a store that pushes invalidations (Redis, Postgres, Mongo on a replica set):
    /// let narvik: Narvik = Narvik::builder(store).near_cache(NearCacheConfig::pushed()).build()?;
    /// # Ok(()) }
    /// ```
    pub fn near_cache(mut self, config: NearCacheConfig) -> Self {
        self.near_cache = Some(Box::new(move |store: &dyn SessionStore| {
            NearCache::<D>::new(config, store)
                .map(|cache| Arc::new(cache) as Arc<dyn SessionCache<D>>)
        }));
        self
    }
}
