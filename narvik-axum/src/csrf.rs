//! Cross-site request forgery defences: a form token bound to the session, and an `Origin`
//! check for every state-changing request.
//!
//! The session cookie is `SameSite=Lax`, so browsers already leave it off cross-site `POST`s.
//! These two checks are the second line, for browsers or set-ups where that does not hold
//! (same-site but cross-origin subdomains, old browsers, a cookie configured `SameSite=None`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::response::Response;
use hmac::{Hmac, Mac};
use http::{header, Method, Request, StatusCode};
use rand::{rngs::OsRng, TryRngCore};
use sha2::Sha256;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::plain_response;

/// The server-side secret that binds CSRF tokens to sessions.
///
/// A token is `HMAC-SHA256(key, session id)`: a page of a session can show it, another site
/// cannot compute it, and a leaked session table does not yield it. The default key is random
/// per process, so forms rendered before a restart fail once; several instances behind one
/// load balancer must share a key ([`NarvikLayer::csrf_key`](crate::NarvikLayer::csrf_key)).
#[derive(Clone)]
pub struct CsrfKey([u8; 32]);

impl CsrfKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<Self, narvik_core::Error> {
        let mut bytes = [0u8; 32];
        OsRng.try_fill_bytes(&mut bytes).map_err(|error| {
            narvik_core::Error::unavailable(format!("the OS random source failed: {error}"))
        })?;
        Ok(Self(bytes))
    }

    /// A key from bytes the application keeps (shared by every instance of a service).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    fn mac(&self, session_id: &str) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(b"narvik-csrf\0");
        mac.update(session_id.as_bytes());
        mac
    }

    /// The form token of a session: lowercase hex, 64 characters.
    pub fn token_for(&self, session_id: &str) -> String {
        hex::encode(self.mac(session_id).finalize().into_bytes())
    }

    /// Whether `candidate` is the form token of this session (compared in constant time).
    pub fn verify(&self, session_id: &str, candidate: &str) -> bool {
        // Exactly 64 hex digits, in either case; anything else is no session's token.
        let mut tag = [0_u8; 32];
        if hex::decode_to_slice(candidate, &mut tag).is_err() {
            return false;
        }
        self.mac(session_id).verify_slice(&tag).is_ok()
    }
}

impl std::fmt::Debug for CsrfKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CsrfKey(<redacted>)")
    }
}

/// Rejects state-changing requests (anything but `GET`, `HEAD`, `OPTIONS`, `TRACE`) that do
/// not come from one of the allowed origins, with `403 Forbidden`.
///
/// The origin is read from the `Origin` header, or, when a browser leaves that out, from the
/// `Referer`. A request with neither is rejected too: every current browser sends `Origin` on
/// a `POST`, so its absence means a non-browser client or a stripped header, and a session
/// cookie must not ride along on either.
///
/// ```
/// use narvik_axum::OriginCheckLayer;
/// let layer = OriginCheckLayer::new(["https://example.com"]);
/// ```
#[derive(Debug, Clone)]
pub struct OriginCheckLayer {
    allowed: Arc<[String]>,
}

impl OriginCheckLayer {
    /// Allows exactly these origins (`scheme://host[:port]`, no trailing slash).
    pub fn new<I, O>(allowed_origins: I) -> Self
    where
        I: IntoIterator<Item = O>,
        O: Into<String>,
    {
        Self {
            allowed: allowed_origins
                .into_iter()
                .map(|origin| origin.into().trim_end_matches('/').to_ascii_lowercase())
                .collect(),
        }
    }

    /// Whether a request with these headers and this method may pass.
    pub fn allows<B>(&self, request: &Request<B>) -> bool {
        if is_safe_method(request.method()) {
            return true;
        }
        match request_origin(request.headers()) {
            Some(origin) => self
                .allowed
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(&origin)),
            None => false,
        }
    }
}

impl<S> Layer<S> for OriginCheckLayer {
    type Service = OriginCheck<S>;

    fn layer(&self, inner: S) -> Self::Service {
        OriginCheck {
            inner,
            check: self.clone(),
        }
    }
}

fn is_safe_method(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// The origin a request claims: the `Origin` header, else the origin part of the `Referer`.
/// `Origin: null` (sandboxed frames, some redirects) counts as no origin.
fn request_origin(headers: &http::HeaderMap) -> Option<String> {
    if let Some(origin) = headers.get(header::ORIGIN) {
        // Optional whitespace is SP and HTAB only (RFC 9110), never Unicode whitespace.
        let origin = origin.to_str().ok()?.trim_matches([' ', '\t']);
        return (origin != "null" && !origin.is_empty()).then(|| origin.to_owned());
    }
    let referer = headers.get(header::REFERER)?.to_str().ok()?;
    let (scheme, rest) = referer.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    (!authority.is_empty() && !authority.contains('@')).then(|| format!("{scheme}://{authority}"))
}

/// The service of [`OriginCheckLayer`].
#[derive(Debug, Clone)]
pub struct OriginCheck<S> {
    inner: S,
    check: OriginCheckLayer,
}

impl<S, B> Service<Request<B>> for OriginCheck<S>
where
    S: Service<Request<B>, Response = Response>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if self.check.allows(&request) {
            Box::pin(self.inner.call(request))
        } else {
            tracing::warn!(method = %request.method(), path = request.uri().path(), "cross-origin request rejected");
            Box::pin(std::future::ready(Ok(plain_response(
                StatusCode::FORBIDDEN,
                "Cross-site request rejected.\n",
            ))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_bound_to_the_session_and_the_key() {
        let key = CsrfKey::from_bytes([7; 32]);
        let token = key.token_for("session-a");
        assert_eq!(token.len(), 64);
        assert!(key.verify("session-a", &token));
        assert!(key.verify("session-a", &token.to_uppercase()));
        assert!(!key.verify("session-b", &token));
        assert!(!CsrfKey::from_bytes([8; 32]).verify("session-a", &token));
        assert!(!key.verify("session-a", ""));
        assert!(!key.verify("session-a", &token[..63]));
        assert!(!key.verify("session-a", &"zz".repeat(32)));
        assert!(!key.verify("session-a", &"é".repeat(32)));
        assert_eq!(format!("{key:?}"), "CsrfKey(<redacted>)");
    }

    #[test]
    fn origin_comes_from_origin_then_referer() {
        let check = OriginCheckLayer::new(["http://127.0.0.1:3000/"]);
        let post = |headers: &[(&str, &str)]| {
            let mut builder = Request::post("/x");
            for (name, value) in headers {
                builder = builder.header(*name, *value);
            }
            check.allows(&builder.body(()).expect("request"))
        };
        assert!(post(&[("origin", "http://127.0.0.1:3000")]));
        assert!(post(&[("origin", "HTTP://127.0.0.1:3000")]));
        assert!(!post(&[("origin", "http://127.0.0.1:3001")]));
        assert!(!post(&[("origin", "https://evil.example")]));
        assert!(!post(&[("origin", "null")]));
        assert!(!post(&[]));
        assert!(post(&[("referer", "http://127.0.0.1:3000/devices?x=1")]));
        assert!(!post(&[("referer", "http://127.0.0.1:3000.evil.example/")]));
        assert!(!post(&[("referer", "http://127.0.0.1:3000@evil.example/")]));
        // Origin wins over a Referer that would pass.
        assert!(!post(&[
            ("origin", "https://evil.example"),
            ("referer", "http://127.0.0.1:3000/")
        ]));
        let get = Request::get("/x").body(()).expect("request");
        assert!(check.allows(&get));
    }
}
