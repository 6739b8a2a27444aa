// Over 400 lines only with its unit tests (`mod tests`); the code above them is under 400.
#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod bound;
mod client_address;
mod handlers;
pub mod pages;
mod security_headers;
pub mod store;
pub mod throttle;
pub mod users;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{header, HeaderMap};
use axum::Router;
use narvik_axum::{NarvikLayer, OriginCheckLayer};
use narvik_core::{Clock, Narvik, SessionStore, SystemClock};
use serde::{Deserialize, Serialize};
use time::Duration;

/// Argon2's parameters, for [`DemoBuilder::argon2_params`].
pub use argon2::Params as Argon2Params;
pub use security_headers::HSTS;
pub use throttle::{Backoff, SignInThrottle, ThrottlePolicy};
pub use users::{SeedUser, Users, ARGON2_MEMORY_BYTES, SEED_USERS};

/// Password checks that may run at once by default. Argon2 is CPU-bound, so more than the
/// cores gains no throughput, only memory: 4 × 19 MiB = 76 MiB at most.
pub const DEFAULT_SIGN_IN_PERMITS: usize = 4;

/// How long a password check waits for a permit by default before the request gets `503`.
/// Waiting costs no Argon2 memory; it smooths a burst of honest sign-ins.
pub const DEFAULT_SIGN_IN_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Any error of the demo's set-up.
pub type DemoError = Box<dyn std::error::Error + Send + Sync>;

/// The sliding lifetime of a session signed in with "Remember me" ticked (the others have the
/// engine's, 30 days unless [`DemoBuilder::session_lifetime`] says otherwise).
pub const REMEMBER_ME_LIFETIME: Duration = Duration::days(90);

/// How often the demo purges expired sessions from a store that does not expire them itself.
pub const PURGE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(600);

/// The demo's typed additional session data: what the "Your devices" page shows per session,
/// and a one-shot notice for the next page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// The browser's `User-Agent` at sign-in, cut to a sane length.
    pub user_agent: String,
    /// A notice shown once, on the page a redirect leads to ("Signed out 1 other device.").
    /// Absent in sessions stored before it existed, which read as no notice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flash: Option<String>,
}

const MAX_USER_AGENT: usize = 256;

impl Device {
    /// The device a request comes from.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let user_agent = headers
            .get(header::USER_AGENT)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
            .chars()
            .take(MAX_USER_AGENT)
            .collect();
        Self {
            user_agent,
            flash: None,
        }
    }

    /// "Chrome on Linux"-style summary for people.
    pub fn describe(&self) -> String {
        let ua = self.user_agent.as_str();
        let browser = [
            ("Firefox/", "Firefox"),
            ("Edg/", "Edge"),
            ("HeadlessChrome/", "Headless Chromium"),
            ("Chrome/", "Chrome"),
            ("Safari/", "Safari"),
            ("curl/", "curl"),
        ]
        .iter()
        .find(|(needle, _)| ua.contains(needle))
        .map_or("Unknown browser", |(_, name)| name);
        let os = [
            ("Windows", "Windows"),
            ("Android", "Android"),
            ("iPhone", "iOS"),
            ("iPad", "iPadOS"),
            ("Mac OS X", "macOS"),
            ("Linux", "Linux"),
        ]
        .iter()
        .find(|(needle, _)| ua.contains(needle))
        .map(|(_, name)| *name);
        match os {
            Some(os) => format!("{browser} on {os}"),
            None => browser.to_owned(),
        }
    }
}

/// Builds a [`Demo`]. Every setting has a default except the origin the app is served from.
#[must_use]
pub struct DemoBuilder {
    store: Option<Arc<dyn SessionStore>>,
    clock: Arc<dyn Clock>,
    origins: Vec<String>,
    secure_cookie: bool,
    session_lifetime: Option<Duration>,
    seed_users: &'static [SeedUser],
    sign_in_permits: usize,
    sign_in_wait: std::time::Duration,
    throttle: ThrottlePolicy,
    trust_x_forwarded_for: bool,
    argon2_params: Argon2Params,
}

impl Default for DemoBuilder {
    fn default() -> Self {
        Self {
            store: None,
            clock: Arc::new(SystemClock),
            origins: Vec::new(),
            secure_cookie: true,
            session_lifetime: None,
            seed_users: SEED_USERS,
            sign_in_permits: DEFAULT_SIGN_IN_PERMITS,
            sign_in_wait: DEFAULT_SIGN_IN_WAIT,
            throttle: ThrottlePolicy::default(),
            trust_x_forwarded_for: false,
            argon2_params: Argon2Params::default(),
        }
    }
}

impl DemoBuilder {
    /// The session store (default: an in-process [`narvik_memory::MemoryStore`]). Stores hold
    /// no clock: the engine hands its `now` down to them.
    pub fn store(mut self, store: Arc<dyn SessionStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// The engine's clock, the one clock of the deployment (listing and purge in the store use
    /// the `now` the engine hands down); tests pass a [`narvik_core::ManualClock`] to show
    /// extension and expiry without waiting.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// An origin (`http://127.0.0.1:3000`) the browser reaches the app at. State-changing
    /// requests from any other origin are refused.
    pub fn origin(mut self, origin: impl Into<String>) -> Self {
        self.origins.push(origin.into());
        self
    }

    /// The cookie's `Secure` attribute (default on). Only a plain-HTTP development server turns
    /// it off: see the binary. With it on, every response also carries
    /// `Strict-Transport-Security` ([`HSTS`]): the demo is then reached over https only.
    pub fn secure_cookie(mut self, secure: bool) -> Self {
        self.secure_cookie = secure;
        self
    }

    /// The sliding session lifetime (default narvik's 30 days).
    pub fn session_lifetime(mut self, lifetime: Duration) -> Self {
        self.session_lifetime = Some(lifetime);
        self
    }

    /// Password checks that may run at once (default [`DEFAULT_SIGN_IN_PERMITS`]). Each holds
    /// Argon2's `m_cost` of memory ([`ARGON2_MEMORY_BYTES`] with the default parameters), so the
    /// process never holds more than `permits × m_cost` of it, however many sign-ins arrive.
    pub fn sign_in_permits(mut self, permits: usize) -> Self {
        self.sign_in_permits = permits;
        self
    }

    /// How long a password check waits for a permit before the request is answered `503` with
    /// `Retry-After` (default [`DEFAULT_SIGN_IN_WAIT`]).
    pub fn sign_in_wait(mut self, wait: std::time::Duration) -> Self {
        self.sign_in_wait = wait;
        self
    }

    /// The throttle of failed password checks (default [`ThrottlePolicy::default`]).
    pub fn throttle(mut self, policy: ThrottlePolicy) -> Self {
        self.throttle = policy;
        self
    }

    /// Count clients by the rightmost `X-Forwarded-For` address instead of the socket's peer
    /// (default off). Only behind exactly one reverse proxy that appends the address it saw
    /// to that header: directly reachable, any client could name a fresh address per guess.
    pub fn trust_x_forwarded_for(mut self, trust: bool) -> Self {
        self.trust_x_forwarded_for = trust;
        self
    }

    /// The Argon2id parameters the seed users' passwords are hashed (and so checked) with.
    /// Default: the argon2 crate's, `m_cost` = 19 MiB ([`ARGON2_MEMORY_BYTES`]), `t_cost` = 2,
    /// one lane. Lighter ones are for tests of everything but the cost of hashing.
    pub fn argon2_params(mut self, params: Argon2Params) -> Self {
        self.argon2_params = params;
        self
    }

    /// Hashes the seed users' passwords (Argon2id) and builds the app.
    pub fn build(self) -> Result<Demo, DemoError> {
        if self.origins.is_empty() {
            return Err("the demo needs at least one origin to check POSTs against".into());
        }
        if self.sign_in_permits == 0 {
            return Err("the sign-in bound needs at least one permit".into());
        }
        let throttle = SignInThrottle::new(self.throttle, Arc::clone(&self.clock))?;
        let store = self
            .store
            .unwrap_or_else(|| Arc::new(narvik_memory::MemoryStore::new()));
        // A Secure cookie gets the web preset's `__Host-` name, which browsers only accept
        // from the host itself (no sibling subdomain can plant it). Plain-HTTP development keeps
        // the original, unprefixed name: a prefixed cookie needs Secure.
        let engine = if self.secure_cookie {
            narvik_axum::web_builder(store)
        } else {
            Narvik::builder(store).cookie_secure(false)
        };
        let mut engine = engine.clock(self.clock);
        if let Some(lifetime) = self.session_lifetime {
            engine = engine.session_lifetime(lifetime);
        }
        let users = Arc::new(Users::seeded_with(self.seed_users, &self.argon2_params)?);
        let memory_per_check = self.argon2_params.block_count() * argon2::Block::SIZE;
        Ok(Demo {
            narvik: engine.build()?,
            checks: Arc::new(bound::PasswordChecks::new(
                users,
                self.sign_in_permits,
                memory_per_check,
                self.sign_in_wait,
            )),
            throttle: Arc::new(throttle),
            seed_users: self.seed_users,
            origins: self.origins,
            secure_cookie: self.secure_cookie,
            sign_in_permits: self.sign_in_permits,
            trust_x_forwarded_for: self.trust_x_forwarded_for,
        })
    }
}

/// The demo app: an engine, its users, the sign-in bound and throttle, and the origins it
/// accepts forms from. Every router made from one `Demo` shares its bound and throttle.
pub struct Demo {
    narvik: Narvik<Device>,
    checks: Arc<bound::PasswordChecks>,
    throttle: Arc<SignInThrottle>,
    seed_users: &'static [SeedUser],
    origins: Vec<String>,
    secure_cookie: bool,
    sign_in_permits: usize,
    trust_x_forwarded_for: bool,
}

impl std::fmt::Debug for Demo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Demo")
            .field("narvik", &self.narvik)
            .field("origins", &self.origins)
            .field("sign_in_permits", &self.sign_in_permits)
            .field("throttle", &self.throttle)
            .finish_non_exhaustive()
    }
}

impl Demo {
    /// A builder with the defaults.
    pub fn builder() -> DemoBuilder {
        DemoBuilder::default()
    }

    /// The session engine.
    pub fn narvik(&self) -> &Narvik<Device> {
        &self.narvik
    }

    /// The users one can sign in as, with their demo passwords.
    pub fn seed_users(&self) -> &'static [SeedUser] {
        self.seed_users
    }

    /// Password checks that may run at once.
    pub fn sign_in_permits(&self) -> usize {
        self.sign_in_permits
    }

    /// The most Argon2 memory the process holds for password checks: permits × m_cost
    /// (4 × 19 MiB = 76 MiB by default).
    pub fn argon2_memory_bound(&self) -> usize {
        self.checks.memory_bound()
    }

    /// The whole app: pages, session layer, origin check and security headers. Serve it with
    /// connect info (`into_make_service_with_connect_info::<SocketAddr>()`, as
    /// [`Demo::serve`] does) so that the throttle sees each client's address; without it every
    /// client shares one throttle bucket.
    pub fn router(&self) -> Router {
        let state = handlers::AppState {
            checks: Arc::clone(&self.checks),
            throttle: Arc::clone(&self.throttle),
            credentials: self
                .seed_users
                .iter()
                .map(|user| (user.username, user.password))
                .collect(),
            trust_x_forwarded_for: self.trust_x_forwarded_for,
        };
        let headers = security_headers::SecurityHeaders {
            hsts: self.secure_cookie,
        };
        handlers::routes()
            .with_state(state)
            .layer(NarvikLayer::new(self.narvik.clone()))
            // Outermost, so that a cross-site POST is refused before it touches the store.
            .layer(OriginCheckLayer::new(self.origins.clone()))
            .layer(axum::middleware::map_response_with_state(
                headers,
                security_headers::apply,
            ))
    }

    /// Starts the engine's background purge (every [`PURGE_INTERVAL`]) on a store that can
    /// purge: it frees expired records on stores that keep them until purged, and tidies the
    /// per-user index and expiry queue on Redis, which expires the records themselves. `None`
    /// for a store without `delete_all_expired_sessions`. The purge runs while the returned
    /// task is kept.
    pub fn spawn_purge_task(&self) -> Result<Option<narvik_core::PurgeTask>, DemoError> {
        if !self.narvik.capabilities().delete_all_expired_sessions {
            return Ok(None);
        }
        Ok(Some(self.narvik.spawn_purge_task(PURGE_INTERVAL)?))
    }

    /// Serves the app on `listener` until the process ends, with each connection's peer
    /// address for the throttle, and the purge of [`Demo::spawn_purge_task`] running
    /// meanwhile.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        let _purge = self.spawn_purge_task().map_err(std::io::Error::other)?;
        axum::serve(
            listener,
            self.router()
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    }
}

/// The workspace README's examples, compiled and run as this crate's doc tests: the demo
/// depends on every crate they use, and it is never published, so a file outside its package
/// is no problem here.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct WorkspaceReadmeDoctests;

#[cfg(test)]
mod tests {
    use super::{Demo, Device};
    use axum::body::Body;
    use axum::http::{header, Request, Response, StatusCode};
    use tower::ServiceExt;

    const ORIGIN: &str = "http://127.0.0.1:3000";

    async fn sign_in(app: &axum::Router, username: &str, password: &str) -> Response<Body> {
        let request = Request::post("/sign-in")
            .header(header::ORIGIN, ORIGIN)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!(
                "username={username}&password={password}"
            )))
            .expect("request");
        app.clone().oneshot(request).await.expect("infallible")
    }

    fn retry_after(response: &Response<Body>) -> Option<u64> {
        response
            .headers()
            .get(header::RETRY_AFTER)?
            .to_str()
            .ok()?
            .parse()
            .ok()
    }

    #[tokio::test]
    async fn a_store_that_can_purge_gets_the_engine_purge() {
        let demo = Demo::builder()
            .argon2_params(super::Argon2Params::new(64, 1, 1, None).expect("valid"))
            .origin(ORIGIN)
            .build()
            .expect("demo");
        let purge = demo
            .spawn_purge_task()
            .expect("the memory store can purge")
            .expect("the memory store purges");
        assert!(purge.is_running());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_throttle_answers_before_the_bound_and_a_saturated_bound_answers_503() {
        // A clock that stands still: the 1 s waits below do not run out while Argon2 works.
        let demo = Demo::builder()
            .clock(std::sync::Arc::new(narvik_core::ManualClock::starting_now()))
            // Cheap hashes: this is about the order of throttle and bound, not Argon2's cost.
            .argon2_params(super::Argon2Params::new(64, 1, 1, None).expect("valid"))
            .origin(ORIGIN)
            .sign_in_permits(1)
            .sign_in_wait(std::time::Duration::from_millis(20))
            .build()
            .expect("demo");
        assert_eq!(demo.argon2_memory_bound(), 64 * 1024, "1 permit × 64 KiB");
        let app = demo.router();
        for _ in 0..5 {
            let reply = sign_in(&app, "alice", "wrong").await;
            assert_eq!(reply.status(), StatusCode::UNAUTHORIZED);
        }

        let held = demo.checks.hold_all().await;
        // Every permit taken: a check that is due waits 20 ms, then 503 with Retry-After.
        let busy = sign_in(&app, "bob", "wrong").await;
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry_after(&busy), Some(1));
        assert!(busy.headers().contains_key("cross-origin-opener-policy"));
        // A throttled client is refused without reaching the bound at all.
        let throttled = sign_in(&app, "alice", "wonderland-rabbit").await;
        assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(retry_after(&throttled), Some(1));
        assert!(!throttled.headers().contains_key(header::SET_COOKIE));
        drop(held);

        // The 503 did not count as a failure: bob still has all five free attempts.
        for attempt in 0..5 {
            let reply = sign_in(&app, "bob", "wrong").await;
            assert_eq!(
                reply.status(),
                StatusCode::UNAUTHORIZED,
                "attempt {attempt}"
            );
        }
        let sixth = sign_in(&app, "bob", "builder-of-things").await;
        assert_eq!(sixth.status(), StatusCode::TOO_MANY_REQUESTS);
    }

    #[test]
    fn devices_are_described_for_people() {
        let describe = |ua: &str| {
            Device {
                user_agent: ua.to_owned(),
                flash: None,
            }
            .describe()
        };
        assert_eq!(
            describe("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36"),
            "Headless Chromium on Linux"
        );
        assert_eq!(
            describe("Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Chrome/120.0 Mobile Safari/537.36"),
            "Chrome on Android"
        );
        assert_eq!(describe("curl/8.5.0"), "curl");
        assert_eq!(describe(""), "Unknown browser");
    }
}
