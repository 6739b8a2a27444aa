//! The axum layer under arbitrary `Cookie` headers: two live sessions (alice's, and the
//! attacker mallory's, whose token a look-alike cookie carries), a router that says who is
//! signed in, and the property that a request is signed in only through a cookie of
//! exactly the session cookie's name, and that only such a cookie is ever cleared.
//!
//! Shared, through `#[path]`, by the fuzz target `layer` and narvik-axum's property tests.

#![allow(dead_code)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::routing::get;
use axum::Router;
use http_body_util::BodyExt;
use narvik_axum::{MaybeSession, NarvikLayer};
use narvik_core::Narvik;
use narvik_memory::MemoryStore;
use tower::ServiceExt;

use crate::browser;

/// What a request came back with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The status.
    pub status: StatusCode,
    /// The user signed in, `None` when anonymous.
    pub user: Option<String>,
    /// Every `Set-Cookie` of the response.
    pub set_cookies: Vec<String>,
}

/// An application with two live sessions (users `alice` and `mallory`), behind a
/// `NarvikLayer`.
pub struct LayerHarness {
    runtime: tokio::runtime::Runtime,
    app: Router,
    narvik: Narvik,
    token: String,
    attacker_token: String,
}

impl LayerHarness {
    /// The application with a `__Host-` cookie (narvik-axum's `web_builder`) when `host_prefix`,
    /// else with narvik-core's default `narvik_session`.
    pub fn new(host_prefix: bool) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let store = Arc::new(MemoryStore::new());
        let narvik: Narvik = if host_prefix {
            narvik_axum::web_builder(store).build().expect("valid")
        } else {
            Narvik::new(store)
        };
        let created = runtime
            .block_on(narvik.create_session("alice", ()))
            .expect("the memory store saves");
        let attacker = runtime
            .block_on(narvik.create_session("mallory", ()))
            .expect("the memory store saves");
        let app = Router::new()
            .route(
                "/",
                get(|MaybeSession(session): MaybeSession| async move {
                    session.map_or_else(String::new, |session| session.user_id)
                }),
            )
            .layer(NarvikLayer::new(narvik.clone()));
        Self {
            runtime,
            app,
            narvik,
            token: created.token.as_str().to_owned(),
            attacker_token: attacker.token.as_str().to_owned(),
        }
    }

    /// The token of alice's session.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The token of mallory's session: what an attacker plants in a look-alike cookie.
    pub fn attacker_token(&self) -> &str {
        &self.attacker_token
    }

    /// The session cookie's name.
    pub fn cookie_name(&self) -> &str {
        self.narvik.cookie_name()
    }

    /// The blank cookie the layer sends to clear the session cookie.
    pub fn blank_cookie(&self) -> String {
        self.narvik.create_blank_cookie().serialize()
    }

    /// Sends `GET /` with these `Cookie` header values; `None` when one of them is not a valid
    /// header value (the `http` crate refuses it, so no server ever sees it).
    pub fn send(&self, cookie_headers: &[&[u8]]) -> Option<Outcome> {
        let mut request = Request::get("/").body(Body::empty()).expect("a request");
        for value in cookie_headers {
            let value = HeaderValue::from_bytes(value).ok()?;
            request.headers_mut().append(header::COOKIE, value);
        }
        Some(self.runtime.block_on(async {
            let response = self.app.clone().oneshot(request).await.expect("infallible");
            let status = response.status();
            let set_cookies = response
                .headers()
                .get_all(header::SET_COOKIE)
                .iter()
                .map(|value| value.to_str().expect("an ASCII Set-Cookie").to_owned())
                .collect();
            let body = response
                .into_body()
                .collect()
                .await
                .expect("a body")
                .to_bytes();
            let user = String::from_utf8(body.to_vec()).expect("a UTF-8 body");
            Outcome {
                status,
                user: (!user.is_empty()).then_some(user),
                set_cookies,
            }
        }))
    }

    /// The layer's answer to these headers is the model's: the pairs of every header as the
    /// browser model reads them; signed in exactly when one pair has exactly the cookie's name,
    /// as the user whose token it holds; the blank cookie exactly when some pair has that name
    /// but no session opens; nothing else, whatever the look-alikes.
    pub fn check(&self, cookie_headers: &[&[u8]]) {
        let Some(outcome) = self.send(cookie_headers) else {
            return;
        };
        let ours: Vec<String> = cookie_headers
            .iter()
            .flat_map(|value| browser::read_cookie_header(&String::from_utf8_lossy(value)))
            .filter(|(name, _)| name == self.cookie_name())
            .map(|(_, value)| value)
            .collect();
        let user = match ours.as_slice() {
            [value] if *value == self.token => Some("alice"),
            [value] if *value == self.attacker_token => Some("mallory"),
            _ => None,
        };
        let signed_in = user.is_some();
        assert_eq!(outcome.status, StatusCode::OK, "{cookie_headers:?}");
        assert_eq!(outcome.user.as_deref(), user, "{cookie_headers:?}");
        let expected_cookies = if ours.is_empty() || signed_in {
            Vec::new()
        } else {
            vec![self.blank_cookie()]
        };
        assert_eq!(outcome.set_cookies, expected_cookies, "{cookie_headers:?}");
    }
}
