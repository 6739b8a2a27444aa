//! The session cookie: its settings, its validation, its exact serialisation, and reading
//! cookies back from a request's `Cookie` header the way browsers write them (RFC 6265bis).
//!
//! Every place in narvik that reads a cookie goes through [`parse_cookie_header`] (or
//! [`find_cookie`] on top of it), so the engine, the axum layer and any application code agree
//! on what counts as "our" cookie.

mod config;
mod header;

pub use config::CookieConfig;
pub use header::{
    find_cookie, parse_cookie_header, read_session_token, CookieLookup, CookiePair, CookiePairs,
};

use time::Duration;

/// The default cookie name, as in the original Narvik.
pub const DEFAULT_COOKIE_NAME: &str = "narvik_session";
/// The prefix that makes browsers insist on `Secure`, `Path=/` and no `Domain`.
pub const HOST_PREFIX: &str = "__Host-";
/// The prefix that makes browsers insist on `Secure`.
pub const SECURE_PREFIX: &str = "__Secure-";

/// The `SameSite` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SameSite {
    /// Sent only on same-site requests.
    Strict,
    /// Sent on same-site requests and top-level cross-site navigations (the default).
    #[default]
    Lax,
    /// Sent everywhere; browsers require `Secure` with it.
    None,
}

impl SameSite {
    fn as_str(self) -> &'static str {
        match self {
            Self::Strict => "Strict",
            Self::Lax => "Lax",
            Self::None => "None",
        }
    }
}

/// A cookie name prefix (RFC 6265bis section 4.1.3): a promise, enforced by the browser, about
/// how the cookie was set. A browser stores a prefixed cookie only when it carries the
/// prefix's attributes, so a sibling subdomain or a plain-HTTP page cannot plant or overwrite
/// it (cookie tossing, session fixation).
///
/// ```
/// use narvik_core::CookiePrefix;
/// assert_eq!(CookiePrefix::Host.as_str(), "__Host-");
/// // Browsers match prefixes in any case: this name is bound by the `__Host-` rules.
/// assert_eq!(CookiePrefix::of_name("__HOST-sid"), CookiePrefix::Host);
/// assert_eq!(CookiePrefix::of_name("sid"), CookiePrefix::None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CookiePrefix {
    /// No prefix: the cookie is what the original Narvik sends (the default of narvik-core).
    #[default]
    None,
    /// `__Secure-`: the browser keeps it only with `Secure`. Allows a `Domain`, for
    /// deployments that share the session across subdomains.
    Secure,
    /// `__Host-`: the browser keeps it only with `Secure`, `Path=/` and no `Domain`, so only
    /// the exact host that set it can set it again. The strongest choice for a web app.
    Host,
}

impl CookiePrefix {
    /// The prefix as written before the name (empty for [`CookiePrefix::None`]).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "",
            Self::Secure => SECURE_PREFIX,
            Self::Host => HOST_PREFIX,
        }
    }

    /// The prefix a browser sees at the start of `name`, matched case-insensitively as RFC
    /// 6265bis requires (`__host-x` is bound by the `__Host-` rules too).
    pub fn of_name(name: &str) -> Self {
        let starts_with = |prefix: &str| {
            name.as_bytes()
                .get(..prefix.len())
                .is_some_and(|start| start.eq_ignore_ascii_case(prefix.as_bytes()))
        };
        if starts_with(HOST_PREFIX) {
            Self::Host
        } else if starts_with(SECURE_PREFIX) {
            Self::Secure
        } else {
            Self::None
        }
    }
}

/// A cookie ready to send in a `Set-Cookie` header.
///
/// Its `Debug` output hides the value (a token); [`Cookie::serialize`] gives the header value.
#[derive(Clone, PartialEq, Eq)]
pub struct Cookie {
    /// The cookie name.
    pub name: String,
    /// The cookie value: the token, or empty for the blank cookie.
    pub value: String,
    /// `Max-Age` in whole seconds: the lifetime or configured max age with any fraction of a
    /// second dropped (the cookie equals the TypeScript original's byte for byte when that
    /// duration is whole seconds). `None` leaves the attribute out (a browser-session cookie).
    pub max_age_seconds: Option<i64>,
    /// The `Domain` attribute.
    pub domain: Option<String>,
    /// The `Path` attribute.
    pub path: String,
    /// The `SameSite` attribute.
    pub same_site: SameSite,
    /// The `Secure` attribute.
    pub secure: bool,
    /// The `HttpOnly` attribute.
    pub http_only: bool,
}

impl Cookie {
    pub(crate) fn new(config: &CookieConfig, value: String, max_age: Option<Duration>) -> Self {
        Self {
            name: config.full_name(),
            value,
            max_age_seconds: max_age.map(Duration::whole_seconds),
            domain: config.domain.clone(),
            path: config.path.clone(),
            same_site: config.same_site,
            secure: config.secure,
            http_only: config.http_only,
        }
    }

    /// The `Set-Cookie` header value, attribute for attribute as the original writes it:
    ///
    /// ```
    /// use narvik_core::{Cookie, SameSite};
    /// let cookie = Cookie {
    ///     name: "narvik_session".into(),
    ///     value: String::new(),
    ///     max_age_seconds: Some(0),
    ///     domain: None,
    ///     path: "/".into(),
    ///     same_site: SameSite::Lax,
    ///     secure: true,
    ///     http_only: true,
    /// };
    /// assert_eq!(
    ///     cookie.serialize(),
    ///     "narvik_session=; Max-Age=0; Path=/; SameSite=Lax; Secure; HttpOnly"
    /// );
    /// ```
    pub fn serialize(&self) -> String {
        let mut out = format!("{}={}", self.name, self.value);
        if let Some(domain) = &self.domain {
            out.push_str("; Domain=");
            out.push_str(domain);
        }
        if let Some(seconds) = self.max_age_seconds {
            out.push_str(&format!("; Max-Age={seconds}"));
        }
        out.push_str("; Path=");
        out.push_str(&self.path);
        out.push_str("; SameSite=");
        out.push_str(self.same_site.as_str());
        if self.secure {
            out.push_str("; Secure");
        }
        if self.http_only {
            out.push_str("; HttpOnly");
        }
        out
    }
}

impl std::fmt::Debug for Cookie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cookie")
            .field("name", &self.name)
            .field(
                "value",
                &if self.value.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("max_age_seconds", &self.max_age_seconds)
            .field("domain", &self.domain)
            .field("path", &self.path)
            .field("same_site", &self.same_site)
            .field("secure", &self.secure)
            .field("http_only", &self.http_only)
            .finish()
    }
}
