//! What the layer tests share: a router with a route per extractor form and handle call, a
//! store that counts its calls, one that always fails, and helpers that send a request through
//! the whole router with `ServiceExt::oneshot` and read the reply's cookie headers byte for
//! byte.

// Each test file uses a part of this module; the rest is dead code in that crate.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Path;
use axum::http::{header, Request, Response, StatusCode};
use axum::routing::{get, post};
use axum::{Form, Router};
use http_body_util::BodyExt;
use narvik_axum::{
    CurrentSession, MaybeSession, NarvikLayer, OriginCheckLayer, SessionError, SessionHandle,
};
use narvik_core::{
    Error, ManualClock, Narvik, Result as NarvikResult, SessionRecord, SessionStore,
};
use narvik_memory::MemoryStore;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use tower::ServiceExt;

pub const ORIGIN: &str = "http://app.test";
pub const BLANK: &str = "narvik_session=; Max-Age=0; Path=/; SameSite=Lax; Secure; HttpOnly";

/// Typed additional data, to show it travels through the layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Data {
    pub theme: String,
}

/// A store that counts `fetch_session` calls, to prove one validation per request, and every
/// call, to prove that a route that never asks for the session costs none. Every call, and
/// the declaration, is the memory store's.
pub struct Counting {
    pub inner: MemoryStore,
    pub fetches: AtomicUsize,
    pub calls: AtomicUsize,
}

impl Counting {
    fn count(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }
}

narvik_core::forward_session_store! {
    impl SessionStore for Counting {
        inner = |counting| &counting.inner;
        before = |counting, _operation| counting.count();
        forward = [
            capabilities, store_name, save_session, update_session_expiry, update_record_expiry,
            delete_session, fetch_sessions_for_user, delete_sessions_for_user,
            delete_all_expired_sessions, update_session_data, subscribe_invalidations,
        ];

        async fn fetch_session(&self, id: &str) -> NarvikResult<Option<SessionRecord>> {
            self.count();
            self.fetches.fetch_add(1, Ordering::SeqCst);
            self.inner.fetch_session(id).await
        }
    }
}

/// A store whose server is down; its error message holds things a client must never see.
pub struct Failing;

pub const SECRET_CAUSE: &str = "connection refused by db.internal:5432 (password=hunter2)";

#[async_trait::async_trait]
impl SessionStore for Failing {
    async fn save_session(&self, _: &SessionRecord) -> NarvikResult<()> {
        Err(Error::unavailable(SECRET_CAUSE))
    }
    async fn fetch_session(&self, _: &str) -> NarvikResult<Option<SessionRecord>> {
        Err(Error::unavailable(SECRET_CAUSE))
    }
    async fn update_session_expiry(&self, _: &str, _: OffsetDateTime) -> NarvikResult<()> {
        Err(Error::unavailable(SECRET_CAUSE))
    }
    async fn delete_session(&self, _: &str) -> NarvikResult<()> {
        Err(Error::unavailable(SECRET_CAUSE))
    }
}

pub struct Harness {
    pub app: Router,
    pub clock: Arc<ManualClock>,
    pub store: Arc<Counting>,
    pub narvik: Narvik<Data>,
}

#[derive(Deserialize)]
pub struct CsrfForm {
    pub csrf: String,
}

pub fn routes() -> Router {
    Router::new()
        .route("/static", get(|| async { "no session asked for" }))
        .route(
            "/remember-me/{user}",
            post(
                |Path(user): Path<String>, handle: SessionHandle<Data>| async move {
                    let data = Data {
                        theme: "light".into(),
                    };
                    handle
                        .sign_in_with_lifetime(&user, data, Duration::days(90))
                        .await
                        .map(|s| s.user_id)
                },
            ),
        )
        .route(
            "/theme/{theme}",
            post(
                |Path(theme): Path<String>, handle: SessionHandle<Data>| async move {
                    let updated = handle.update_data(|data| data.theme.clone_from(&theme)).await?;
                    // The handle reads the session as updated, in the same request.
                    let seen = handle.session().map(|s| s.data.theme);
                    Ok::<_, SessionError>(match updated {
                        Some(session) => format!("{} {:?}", session.data.theme, seen),
                        None => "none".to_owned(),
                    })
                },
            ),
        )
        .route(
            "/whoami",
            get(|MaybeSession(session): MaybeSession<Data>| async move {
                match session {
                    Some(s) => format!(
                        "{} {} {}",
                        s.user_id,
                        s.data.theme,
                        s.expires_at.unix_timestamp()
                    ),
                    None => "anonymous".to_owned(),
                }
            }),
        )
        .route(
            "/cacheable",
            get(|MaybeSession(session): MaybeSession<Data>| async move {
                (
                    [(header::CACHE_CONTROL, "public, max-age=3600")],
                    session.map_or("anonymous".to_owned(), |s| s.user_id),
                )
            }),
        )
        .route(
            "/private",
            get(|session: CurrentSession<Data>| async move { session.user_id.clone() }),
        )
        .route(
            "/optional",
            get(|session: Option<CurrentSession<Data>>| async move {
                session.map_or("none".to_owned(), |s| s.0.user_id)
            }),
        )
        .route(
            "/three-extractors",
            get(
                |_a: MaybeSession<Data>, _b: Option<CurrentSession<Data>>, h: SessionHandle<Data>| async move {
                    h.session().map_or("none".to_owned(), |s| s.user_id)
                },
            ),
        )
        .route(
            "/sign-in/{user}",
            post(
                |Path(user): Path<String>, handle: SessionHandle<Data>| async move {
                    let data = Data {
                        theme: "dark".into(),
                    };
                    handle.sign_in(&user, data).await.map(|s| s.user_id)
                },
            ),
        )
        .route(
            "/sign-out",
            post(|handle: SessionHandle<Data>| async move {
                handle.sign_out().await.map(|()| "bye")
            }),
        )
        .route(
            "/rotate",
            post(|handle: SessionHandle<Data>| async move {
                Ok::<_, SessionError>(handle.rotate().await?.map_or("none".to_owned(), |s| s.id))
            }),
        )
        .route(
            "/sign-out-device/{id}",
            post(
                |Path(id): Path<String>, handle: SessionHandle<Data>| async move {
                    handle.sign_out_device(&id).await.map(|done| done.to_string())
                },
            ),
        )
        .route(
            "/csrf",
            get(|handle: SessionHandle<Data>| async move { handle.csrf_token().unwrap_or_default() })
                .post(
                    |handle: SessionHandle<Data>, Form(form): Form<CsrfForm>| async move {
                        if handle.verify_csrf_token(&form.csrf) {
                            StatusCode::NO_CONTENT
                        } else {
                            StatusCode::FORBIDDEN
                        }
                    },
                ),
        )
}

pub fn harness() -> Harness {
    let clock = Arc::new(ManualClock::starting_now());
    let store = Arc::new(Counting {
        // No clock for the store: the engine hands its (manual) `now` down.
        inner: MemoryStore::new(),
        fetches: AtomicUsize::new(0),
        calls: AtomicUsize::new(0),
    });
    let narvik: Narvik<Data> = Narvik::builder(store.clone())
        .clock(clock.clone())
        .build()
        .expect("valid configuration");
    let app = routes()
        .layer(NarvikLayer::new(narvik.clone()))
        .layer(OriginCheckLayer::new([ORIGIN]));
    Harness {
        app,
        clock,
        store,
        narvik,
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub set_cookies: Vec<String>,
    pub cache_control: Option<String>,
    pub body: String,
}

impl Reply {
    pub async fn from(response: Response<Body>) -> Self {
        let status = response.status();
        let set_cookies = response
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().expect("ascii cookie").to_owned())
            .collect();
        let cache_control = response
            .headers()
            .get(header::CACHE_CONTROL)
            .map(|v| v.to_str().expect("ascii").to_owned());
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        Self {
            status,
            set_cookies,
            cache_control,
            body: String::from_utf8(bytes.to_vec()).expect("utf-8 body"),
        }
    }

    /// The token of the one session cookie this reply sets.
    pub fn token(&self) -> String {
        assert_eq!(self.set_cookies.len(), 1, "{:?}", self.set_cookies);
        let value = self.set_cookies[0]
            .strip_prefix("narvik_session=")
            .expect("the session cookie");
        value.split(';').next().expect("a value").to_owned()
    }
}

pub async fn send(app: &Router, request: Request<Body>) -> Reply {
    Reply::from(app.clone().oneshot(request).await.expect("infallible")).await
}

pub fn get_with(path: &str, token: Option<&str>) -> Request<Body> {
    let mut builder = Request::get(path);
    if let Some(token) = token {
        builder = builder.header(header::COOKIE, format!("theme=x; narvik_session={token}"));
    }
    builder.body(Body::empty()).expect("request")
}

pub fn post_with(path: &str, token: Option<&str>) -> Request<Body> {
    let mut builder = Request::post(path).header(header::ORIGIN, ORIGIN);
    if let Some(token) = token {
        builder = builder.header(header::COOKIE, format!("narvik_session={token}"));
    }
    builder.body(Body::empty()).expect("request")
}

pub async fn sign_in(h: &Harness, user: &str) -> String {
    let reply = send(&h.app, post_with(&format!("/sign-in/{user}"), None)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.token()
}

/// A request with this cookie is refused with 401 and gets the blank cookie.
pub async fn assert_signed_out_and_cleared(app: &Router, token: &str) {
    let reply = send(app, get_with("/private", Some(token))).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{token}");
    assert_eq!(reply.set_cookies, [BLANK], "{token}");
}
