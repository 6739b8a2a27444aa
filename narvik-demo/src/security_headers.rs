//! Headers every response gets, whatever produced it (a page, a refusal of the origin check, a
//! `429` or `503` of the sign-in, a store failure of the session layer).
//!
//! One `map_response` middleware rather than a tower-http layer per header: the demo had it
//! already, and one place keeps the whole policy readable at a glance.

use axum::extract::State;
use axum::http::{header, HeaderName, HeaderValue};
use axum::response::Response;

/// `Strict-Transport-Security` when the demo serves `Secure` cookies (it is then reached over
/// https): two years, subdomains included (ASVS 5.0 V3.4.1). No `preload`: that is a
/// commitment for the operator of a domain to make, not a demo default.
pub const HSTS: &str = "max-age=63072000; includeSubDomains";

const ALWAYS: [(HeaderName, &str); 6] = [
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    // Same-origin requests keep their Referer, which the origin check falls back on.
    (header::REFERRER_POLICY, "same-origin"),
    // No cross-origin window keeps a handle on ours (and ours on none of theirs).
    (
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    ),
    // No other site may load our responses as images, scripts or frames.
    (
        HeaderName::from_static("cross-origin-resource-policy"),
        "same-origin",
    ),
];

/// What the middleware sets besides the headers every response gets.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SecurityHeaders {
    /// Send [`HSTS`]: on exactly when the cookie is `Secure`. A plain-http development server
    /// must not send it (browsers ignore it over http anyway, and on `localhost` it would stick
    /// to every other local app once the demo is ever reached over https).
    pub(crate) hsts: bool,
}

/// No framing, no scripts, forms only to this origin, no cross-origin embedding or opener,
/// nothing cached; HSTS when serving secure cookies.
pub(crate) async fn apply(
    State(settings): State<SecurityHeaders>,
    mut response: Response,
) -> Response {
    let headers = response.headers_mut();
    for (name, value) in ALWAYS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if settings.hsts {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
