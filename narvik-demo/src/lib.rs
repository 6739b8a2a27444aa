#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod handlers;
pub mod pages;
pub mod store;
pub mod users;

use std::sync::Arc;

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use axum::Router;
use narvik_axum::{NarvikLayer, OriginCheckLayer};
use narvik_core::{Clock, Narvik, SessionStore, SystemClock};
use serde::{Deserialize, Serialize};
use time::Duration;

pub use users::{SeedUser, Users, SEED_USERS};

/// Any error of the demo's set-up.
pub type DemoError = Box<dyn std::error::Error + Send + Sync>;

/// The demo's typed additional session data: what the "Your devices" page shows per session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// The browser's `User-Agent` at sign-in, cut to a sane length.
    pub user_agent: String,
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
        Self { user_agent }
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
    /// it off: see the binary.
    pub fn secure_cookie(mut self, secure: bool) -> Self {
        self.secure_cookie = secure;
        self
    }

    /// The sliding session lifetime (default narvik's 30 days).
    pub fn session_lifetime(mut self, lifetime: Duration) -> Self {
        self.session_lifetime = Some(lifetime);
        self
    }

    /// Hashes the seed users' passwords (Argon2id) and builds the app.
    pub fn build(self) -> Result<Demo, DemoError> {
        if self.origins.is_empty() {
            return Err("the demo needs at least one origin to check POSTs against".into());
        }
        let store = self
            .store
            .unwrap_or_else(|| Arc::new(narvik_memory::MemoryStore::new()));
        let mut engine = Narvik::builder(store)
            .clock(self.clock)
            .cookie_secure(self.secure_cookie);
        if let Some(lifetime) = self.session_lifetime {
            engine = engine.session_lifetime(lifetime);
        }
        Ok(Demo {
            narvik: engine.build()?,
            users: Arc::new(Users::seeded(self.seed_users)?),
            seed_users: self.seed_users,
            origins: self.origins,
        })
    }
}

/// The demo app: an engine, its users, and the origins it accepts forms from.
pub struct Demo {
    narvik: Narvik<Device>,
    users: Arc<Users>,
    seed_users: &'static [SeedUser],
    origins: Vec<String>,
}

impl std::fmt::Debug for Demo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Demo")
            .field("narvik", &self.narvik)
            .field("origins", &self.origins)
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

    /// The whole app: pages, session layer, origin check and security headers.
    pub fn router(&self) -> Router {
        let state = handlers::AppState {
            users: Arc::clone(&self.users),
            credentials: self
                .seed_users
                .iter()
                .map(|user| (user.username, user.password))
                .collect(),
        };
        handlers::routes()
            .with_state(state)
            .layer(NarvikLayer::new(self.narvik.clone()))
            // Outermost, so that a cross-site POST is refused before it touches the store.
            .layer(OriginCheckLayer::new(self.origins.clone()))
            .layer(axum::middleware::map_response(security_headers))
    }

    /// Serves the app on `listener` until the process ends.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        axum::serve(listener, self.router()).await
    }
}

/// Headers every page gets: no framing, no scripts, forms only to this origin, nothing cached.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        // Same-origin requests keep their Referer, which the origin check falls back on.
        (header::REFERRER_POLICY, "same-origin"),
    ];
    for (name, value) in set {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::Device;

    #[test]
    fn devices_are_described_for_people() {
        let describe = |ua: &str| {
            Device {
                user_agent: ua.to_owned(),
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
