//! The engine settings for a web application: narvik-core's defaults plus a `__Host-` cookie.

use std::sync::Arc;

use narvik_core::{CookiePrefix, Narvik, NarvikBuilder, SessionStore};

/// An engine builder for a web application served over HTTPS: everything as
/// [`Narvik::builder`] (the original's defaults) except that the session cookie carries the
/// `__Host-` prefix (ASVS 5.0 V3.3.1):
///
/// `__Host-narvik_session=…; Max-Age=2592000; Path=/; SameSite=Lax; Secure; HttpOnly`
///
/// A browser keeps a `__Host-` cookie only when it was set by this very host over HTTPS with
/// `Secure`, `Path=/` and no `Domain`, so no sibling subdomain and no plain-HTTP page can plant
/// or overwrite the session cookie (session fixation by cookie tossing). narvik-core's own
/// default stays the original's unprefixed cookie, byte for byte.
///
/// Every builder setting still applies. The ways out, each checked by `build`:
/// - a session shared across subdomains needs a `Domain`, which `__Host-` forbids:
///   `.cookie_prefix(CookiePrefix::Secure).cookie_domain("example.com")` gives
///   `__Secure-narvik_session=…; Domain=example.com; …` (any host under that domain can then
///   set the cookie too, so share it only with hosts you trust);
/// - plain-HTTP development off `localhost`: `.cookie_prefix(CookiePrefix::None)
///   .cookie_secure(false)` (a `__Host-` or `__Secure-` cookie without `Secure` is an
///   [`Error::InvalidConfiguration`](narvik_core::Error::InvalidConfiguration), since browsers
///   would drop it).
///
/// ```
/// # fn demo(store: std::sync::Arc<dyn narvik_core::SessionStore>) -> narvik_core::Result<()> {
/// use narvik_core::{CookiePrefix, Narvik};
///
/// let narvik: Narvik = narvik_axum::web_builder(store.clone()).build()?;
/// assert_eq!(narvik.cookie_name(), "__Host-narvik_session");
///
/// let shared: Narvik = narvik_axum::web_builder(store)
///     .cookie_prefix(CookiePrefix::Secure)
///     .cookie_domain("example.com")
///     .build()?;
/// assert_eq!(shared.cookie_name(), "__Secure-narvik_session");
/// # Ok(()) }
/// ```
pub fn web_builder<D>(store: Arc<dyn SessionStore>) -> NarvikBuilder<D> {
    Narvik::builder(store).cookie_prefix(CookiePrefix::Host)
}
