//! The tower layer: reads the session cookie, leaves its validation to the first extractor
//! that asks, and writes `Set-Cookie` only when the session changed.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Request};
use narvik_core::cookie::{find_cookie, CookieLookup};
use narvik_core::{Narvik, SessionToken};
use tower_layer::Layer;
use tower_service::Service;

use crate::context::{CookieChange, SessionContext, State};
use crate::csrf::CsrfKey;
use crate::AdditionalData;

/// Adds narvik sessions to every request of the service it wraps.
///
/// Per request it reads the token from the `Cookie` header only (never from the query string
/// or any other header) and validates it only when an extractor asks
/// ([`CurrentSession`](crate::CurrentSession), [`MaybeSession`](crate::MaybeSession),
/// [`SessionHandle`](crate::SessionHandle)): once, however many extractors ask, and not at all
/// on a route that asks for none (an asset, a health check). Validation goes through the
/// engine, which extends a session in the last half of its lifetime. After the handler it
/// sends `Set-Cookie` only when the session is new, extended, rotated or ended, and the blank
/// cookie for a token that opens no session (a malformed or duplicated one without any store
/// call). A store failure makes the asking extractor reject with `503` and a generic body. A
/// record whose data no longer decodes as `D` is logged and the request runs signed out, with
/// the cookie left alone.
///
/// ```
/// # fn demo(store: std::sync::Arc<dyn narvik_core::SessionStore>) -> narvik_core::Result<()> {
/// use axum::{routing::get, Router};
/// use narvik_axum::NarvikLayer;
///
/// // `web_builder`: the engine with a `__Host-` session cookie.
/// let narvik: narvik_core::Narvik = narvik_axum::web_builder(store).build()?;
/// let app: Router = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .layer(NarvikLayer::new(narvik));
/// # Ok(()) }
/// ```
pub struct NarvikLayer<D = ()> {
    narvik: Narvik<D>,
    csrf_key: Arc<CsrfKey>,
}

impl<D> Clone for NarvikLayer<D> {
    fn clone(&self) -> Self {
        Self {
            narvik: self.narvik.clone(),
            csrf_key: Arc::clone(&self.csrf_key),
        }
    }
}

impl<D> std::fmt::Debug for NarvikLayer<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NarvikLayer")
            .field("narvik", &self.narvik)
            .finish_non_exhaustive()
    }
}

impl<D> NarvikLayer<D> {
    /// A layer over this engine, with a fresh random CSRF key.
    ///
    /// # Panics
    /// When the operating system cannot supply 32 random bytes for the CSRF key (at start-up,
    /// never per request); [`NarvikLayer::with_csrf_key`] avoids that.
    pub fn new(narvik: Narvik<D>) -> Self {
        let key = CsrfKey::generate()
            .unwrap_or_else(|error| panic!("cannot create the CSRF key: {error}"));
        Self::with_csrf_key(narvik, key)
    }

    /// A layer over this engine with a CSRF key the application keeps (several instances of a
    /// service must share one).
    pub fn with_csrf_key(narvik: Narvik<D>, key: CsrfKey) -> Self {
        Self {
            narvik,
            csrf_key: Arc::new(key),
        }
    }

    /// Replaces the CSRF key.
    #[must_use]
    pub fn csrf_key(mut self, key: CsrfKey) -> Self {
        self.csrf_key = Arc::new(key);
        self
    }

    /// The engine the layer validates with.
    pub fn narvik(&self) -> &Narvik<D> {
        &self.narvik
    }
}

impl<S, D> Layer<S> for NarvikLayer<D> {
    type Service = NarvikService<S, D>;

    fn layer(&self, inner: S) -> Self::Service {
        NarvikService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`NarvikLayer`].
pub struct NarvikService<S, D = ()> {
    inner: S,
    layer: NarvikLayer<D>,
}

impl<S: Clone, D> Clone for NarvikService<S, D> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S: std::fmt::Debug, D> std::fmt::Debug for NarvikService<S, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NarvikService")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

impl<S, D, ReqBody, ResBody> Service<Request<ReqBody>> for NarvikService<S, D>
where
    S: Service<Request<ReqBody>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
    D: AdditionalData,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // The clone is the fresh service for the next call; the one polled ready serves this one.
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        let layer = self.layer.clone();
        Box::pin(async move {
            if request.extensions().get::<SessionContext<D>>().is_some() {
                // An outer NarvikLayer already validated this request: never twice.
                return Ok(inner.call(request).await?.map(Body::new));
            }
            let state = read_cookie(&layer.narvik, request.headers());
            let context = SessionContext::new(layer.narvik, layer.csrf_key, state);
            request.extensions_mut().insert(context.clone());
            let mut response = inner.call(request).await?.map(Body::new);
            write_cookie(&context, response.headers_mut());
            Ok(response)
        })
    }
}

/// What the request's `Cookie` header says, read without a store call: the token to validate
/// when an extractor asks, or the blank cookie for one that can never open a session.
fn read_cookie<D>(narvik: &Narvik<D>, headers: &HeaderMap) -> State<D> {
    let cookie_header = joined_cookie_header(headers);
    // The cookie of exactly our name, as a browser wrote it (RFC 6265bis): a look-alike
    // (`\u{a0}__Host-narvik_session`, `narvik_session\u{3000}`) is another cookie, so it is
    // neither read nor counted as a duplicate, and never makes us clear ours.
    let token = match find_cookie(&cookie_header, narvik.cookie_name()) {
        CookieLookup::Missing => return State::unvalidated(None, CookieChange::Keep),
        CookieLookup::Unique(value) => SessionToken::parse(value),
        // Two cookies of our exact name (cookie tossing): which one is real cannot be told.
        CookieLookup::Duplicated => None,
    };
    match token {
        Some(token) => State::unvalidated(Some(token), CookieChange::Keep),
        // Malformed or duplicated: it can never open a session, so stop the browser sending it.
        None => State::unvalidated(None, CookieChange::Clear),
    }
}

/// HTTP/2 may split cookies over several `Cookie` headers; they read as one list (joined with
/// `; `, which [`find_cookie`] splits again, so no pair spans two headers).
fn joined_cookie_header(headers: &HeaderMap) -> String {
    // Read as bytes, not `to_str`: browsers send other cookies' raw UTF-8, and rejecting the
    // whole header would sign the user out. Our name and token are ASCII, so a lossy read is
    // exact for them.
    let parts: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        .collect();
    parts.join("; ")
}

/// Appends the `Set-Cookie` the handler's outcome calls for, if any.
fn write_cookie<D: AdditionalData>(context: &SessionContext<D>, headers: &mut HeaderMap) {
    let (change, session) = context.cookie_change();
    let (cookie, carries_token) = match change {
        CookieChange::Keep => return,
        // The session of the token: a remember-me session keeps its persistent cookie.
        CookieChange::Set(token) => match session {
            Some(session) => (
                context
                    .narvik
                    .create_session_cookie(&token, &session)
                    .serialize(),
                true,
            ),
            None => (context.narvik.create_cookie(&token).serialize(), true),
        },
        CookieChange::Clear => (context.narvik.create_blank_cookie().serialize(), false),
    };
    // The engine validated every attribute and the token is base32, so this cannot fail; if it
    // somehow did, sending no cookie is the safe outcome.
    let Ok(value) = HeaderValue::from_str(&cookie) else {
        tracing::error!("session cookie is not a valid header value; not sent");
        return;
    };
    headers.append(header::SET_COOKIE, value);
    // A response that carries a session token must never be kept by a shared cache, whatever
    // the handler asked for: a cached `Set-Cookie` would hand the token to other users.
    if carries_token || !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}
