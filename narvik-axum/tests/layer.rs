//! The layer and extractors without a browser: each request goes through the whole router with
//! `ServiceExt::oneshot`, and the cookie headers are checked byte for byte.

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
    Capabilities, Error, ManualClock, Narvik, Result as NarvikResult, SessionRecord, SessionStore,
};
use narvik_memory::MemoryStore;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use tower::ServiceExt;

const ORIGIN: &str = "http://app.test";
const BLANK: &str = "narvik_session=; Max-Age=0; Path=/; SameSite=Lax; Secure; HttpOnly";

/// Typed additional data, to show it travels through the layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Data {
    theme: String,
}

/// A store that counts `fetch_session` calls, to prove one validation per request, and every
/// call, to prove that a route that never asks for the session costs none. Every call, and
/// the declaration, is the memory store's.
struct Counting {
    inner: MemoryStore,
    fetches: AtomicUsize,
    calls: AtomicUsize,
}

impl Counting {
    fn count(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl SessionStore for Counting {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn save_session(&self, record: &SessionRecord) -> NarvikResult<()> {
        self.count();
        self.inner.save_session(record).await
    }
    async fn fetch_session(&self, id: &str) -> NarvikResult<Option<SessionRecord>> {
        self.count();
        self.fetches.fetch_add(1, Ordering::SeqCst);
        self.inner.fetch_session(id).await
    }
    async fn update_session_expiry(&self, id: &str, at: OffsetDateTime) -> NarvikResult<()> {
        self.count();
        self.inner.update_session_expiry(id, at).await
    }
    async fn update_record_expiry(
        &self,
        record: &SessionRecord,
        at: OffsetDateTime,
    ) -> NarvikResult<()> {
        self.count();
        self.inner.update_record_expiry(record, at).await
    }
    async fn delete_session(&self, id: &str) -> NarvikResult<()> {
        self.count();
        self.inner.delete_session(id).await
    }
    async fn fetch_sessions_for_user(
        &self,
        user: &str,
        now: OffsetDateTime,
    ) -> NarvikResult<Vec<SessionRecord>> {
        self.count();
        self.inner.fetch_sessions_for_user(user, now).await
    }
    async fn delete_sessions_for_user(&self, user: &str) -> NarvikResult<()> {
        self.count();
        self.inner.delete_sessions_for_user(user).await
    }
    async fn delete_all_expired_sessions(&self, now: OffsetDateTime) -> NarvikResult<u64> {
        self.count();
        self.inner.delete_all_expired_sessions(now).await
    }
    async fn update_session_data(
        &self,
        record: &SessionRecord,
        data: &narvik_core::SessionData,
        now: OffsetDateTime,
    ) -> NarvikResult<bool> {
        self.count();
        self.inner.update_session_data(record, data, now).await
    }
}

/// A store whose server is down; its error message holds things a client must never see.
struct Failing;

const SECRET_CAUSE: &str = "connection refused by db.internal:5432 (password=hunter2)";

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

struct Harness {
    app: Router,
    clock: Arc<ManualClock>,
    store: Arc<Counting>,
    narvik: Narvik<Data>,
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

fn routes() -> Router {
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

fn harness() -> Harness {
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

struct Reply {
    status: StatusCode,
    set_cookies: Vec<String>,
    cache_control: Option<String>,
    body: String,
}

impl Reply {
    async fn from(response: Response<Body>) -> Self {
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
    fn token(&self) -> String {
        assert_eq!(self.set_cookies.len(), 1, "{:?}", self.set_cookies);
        let value = self.set_cookies[0]
            .strip_prefix("narvik_session=")
            .expect("the session cookie");
        value.split(';').next().expect("a value").to_owned()
    }
}

async fn send(app: &Router, request: Request<Body>) -> Reply {
    Reply::from(app.clone().oneshot(request).await.expect("infallible")).await
}

fn get_with(path: &str, token: Option<&str>) -> Request<Body> {
    let mut builder = Request::get(path);
    if let Some(token) = token {
        builder = builder.header(header::COOKIE, format!("theme=x; narvik_session={token}"));
    }
    builder.body(Body::empty()).expect("request")
}

fn post_with(path: &str, token: Option<&str>) -> Request<Body> {
    let mut builder = Request::post(path).header(header::ORIGIN, ORIGIN);
    if let Some(token) = token {
        builder = builder.header(header::COOKIE, format!("narvik_session={token}"));
    }
    builder.body(Body::empty()).expect("request")
}

async fn sign_in(h: &Harness, user: &str) -> String {
    let reply = send(&h.app, post_with(&format!("/sign-in/{user}"), None)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.token()
}

/// A request with this cookie is refused with 401 and gets the blank cookie.
async fn assert_signed_out_and_cleared(app: &Router, token: &str) {
    let reply = send(app, get_with("/private", Some(token))).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{token}");
    assert_eq!(reply.set_cookies, [BLANK], "{token}");
}

#[tokio::test]
async fn sign_in_sets_the_cookie_with_the_exact_attributes() {
    let h = harness();
    let reply = send(&h.app, post_with("/sign-in/alice", None)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "alice");
    let token = reply.token();
    assert!(narvik_core::token::is_well_formed(&token), "{token}");
    assert_eq!(
        reply.set_cookies,
        [format!(
            "narvik_session={token}; Max-Age=2592000; Path=/; SameSite=Lax; Secure; HttpOnly"
        )]
    );
    assert_eq!(reply.cache_control.as_deref(), Some("no-store"));
}

#[tokio::test]
async fn no_set_cookie_when_nothing_changed() {
    let h = harness();
    let token = sign_in(&h, "alice").await;
    for path in ["/whoami", "/private", "/optional", "/three-extractors"] {
        let reply = send(&h.app, get_with(path, Some(&token))).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert!(reply.body.starts_with("alice"), "{path}: {}", reply.body);
        assert!(
            reply.set_cookies.is_empty(),
            "{path}: {:?}",
            reply.set_cookies
        );
        assert_eq!(reply.cache_control, None, "{path}");
    }
    // Without a cookie at all there is nothing to set or clear either.
    let reply = send(&h.app, get_with("/whoami", None)).await;
    assert_eq!(reply.body, "anonymous");
    assert!(reply.set_cookies.is_empty());
}

#[tokio::test]
async fn typed_data_reaches_the_handler() {
    let h = harness();
    let token = sign_in(&h, "alice").await;
    let reply = send(&h.app, get_with("/whoami", Some(&token))).await;
    let fields: Vec<&str> = reply.body.split(' ').collect();
    assert_eq!(fields[..2], ["alice", "dark"]);
}

#[tokio::test]
async fn extension_refreshes_the_cookie_and_moves_the_expiry() {
    let h = harness();
    let token = sign_in(&h, "alice").await;
    let before = send(&h.app, get_with("/whoami", Some(&token))).await;
    let expires_before: i64 = before
        .body
        .split(' ')
        .nth(2)
        .expect("expiry")
        .parse()
        .expect("int");

    // Past half the 30-day lifetime: the engine extends, the layer re-sends the same token.
    h.clock.advance(Duration::days(16));
    let reply = send(&h.app, get_with("/whoami", Some(&token))).await;
    assert_eq!(
        reply.set_cookies,
        [format!(
            "narvik_session={token}; Max-Age=2592000; Path=/; SameSite=Lax; Secure; HttpOnly"
        )]
    );
    let expires_after: i64 = reply
        .body
        .split(' ')
        .nth(2)
        .expect("expiry")
        .parse()
        .expect("int");
    assert_eq!(
        expires_after - expires_before,
        Duration::days(16).whole_seconds()
    );

    // Extended once; the next request changes nothing.
    let again = send(&h.app, get_with("/whoami", Some(&token))).await;
    assert!(again.set_cookies.is_empty(), "{:?}", again.set_cookies);
}

#[tokio::test]
async fn sign_out_clears_the_cookie_and_kills_the_token() {
    let h = harness();
    let token = sign_in(&h, "alice").await;
    let reply = send(&h.app, post_with("/sign-out", Some(&token))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.set_cookies, [BLANK]);

    assert_signed_out_and_cleared(&h.app, &token).await;
}

#[tokio::test]
async fn a_dead_token_is_cleared_by_both_extractor_forms() {
    let h = harness();
    let unknown = "abcdefghijklmnopqrstuvwxyz234567";
    let optional = send(&h.app, get_with("/whoami", Some(unknown))).await;
    assert_eq!(optional.status, StatusCode::OK);
    assert_eq!(optional.body, "anonymous");
    assert_eq!(optional.set_cookies, [BLANK]);

    assert_signed_out_and_cleared(&h.app, unknown).await;

    // A malformed value can never open a session either: cleared without a store round trip.
    let fetches = h.store.fetches.load(Ordering::SeqCst);
    assert_signed_out_and_cleared(&h.app, "<script>").await;
    assert_eq!(h.store.fetches.load(Ordering::SeqCst), fetches);
}

#[tokio::test]
async fn an_expired_session_is_signed_out_and_cleared() {
    let h = harness();
    let token = sign_in(&h, "alice").await;
    h.clock.advance(Duration::days(30));
    assert_signed_out_and_cleared(&h.app, &token).await;
}

#[tokio::test]
async fn query_string_tokens_are_ignored() {
    let h = harness();
    let token = sign_in(&h, "alice").await;
    let fetches = h.store.fetches.load(Ordering::SeqCst);
    for query in [
        format!("/private?narvik_session={token}"),
        format!("/private?token={token}&session={token}"),
    ] {
        let reply = send(&h.app, get_with(&query, None)).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{query}");
        assert!(reply.set_cookies.is_empty());
    }
    assert_eq!(
        h.store.fetches.load(Ordering::SeqCst),
        fetches,
        "a query-string token must not even reach the store"
    );
}

#[tokio::test]
async fn the_cookie_is_validated_once_per_request() {
    let h = harness();
    let token = sign_in(&h, "alice").await;
    let fetches = h.store.fetches.load(Ordering::SeqCst);
    let reply = send(&h.app, get_with("/three-extractors", Some(&token))).await;
    assert_eq!(reply.body, "alice");
    assert_eq!(h.store.fetches.load(Ordering::SeqCst), fetches + 1);

    // A second NarvikLayer around the same router does not validate again.
    let doubled = routes()
        .layer(NarvikLayer::new(h.narvik.clone()))
        .layer(NarvikLayer::new(h.narvik.clone()));
    let reply = send(&doubled, get_with("/three-extractors", Some(&token))).await;
    assert_eq!(reply.body, "alice");
    assert_eq!(h.store.fetches.load(Ordering::SeqCst), fetches + 2);
}

#[tokio::test]
async fn a_route_that_never_asks_makes_no_store_call() {
    let h = harness();
    let token = sign_in(&h, "alice").await;
    // Even in the last half of the lifetime, when asking would extend the session.
    h.clock.advance(Duration::days(20));
    let calls = h.store.calls.load(Ordering::SeqCst);
    for cookie in [Some(token.as_str()), None] {
        let reply = send(&h.app, get_with("/static", cookie)).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert!(reply.set_cookies.is_empty(), "{:?}", reply.set_cookies);
    }
    assert_eq!(h.store.calls.load(Ordering::SeqCst), calls, "no store call");

    // A malformed or duplicated cookie is cleared without asking the store.
    let malformed = send(&h.app, get_with("/static", Some("not-a-token"))).await;
    assert_eq!(malformed.set_cookies, [BLANK]);
    let duplicated = Request::get("/static")
        .header(
            header::COOKIE,
            format!("narvik_session={token}; narvik_session={token}"),
        )
        .body(Body::empty())
        .expect("request");
    assert_eq!(send(&h.app, duplicated).await.set_cookies, [BLANK]);
    assert_eq!(h.store.calls.load(Ordering::SeqCst), calls, "no store call");

    // The first route that asks validates, and extends, with one fetch.
    let reply = send(&h.app, get_with("/private", Some(&token))).await;
    assert_eq!(reply.body, "alice");
    assert_eq!(reply.token(), token, "the extended cookie");
    assert_eq!(h.store.fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn data_updates_reach_the_store_without_a_new_cookie() {
    let h = harness();
    let token = sign_in(&h, "alice").await;
    let reply = send(&h.app, post_with("/theme/solarized", Some(&token))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body, "solarized Some(\"solarized\")");
    assert!(reply.set_cookies.is_empty(), "same token, same expiry");
    let reply = send(&h.app, get_with("/whoami", Some(&token))).await;
    assert!(reply.body.starts_with("alice solarized "), "{}", reply.body);

    // Concurrent requests each changing the data: none of them is lost.
    let mut requests = Vec::new();
    for n in 0..8 {
        let app = h.app.clone();
        let token = token.clone();
        requests.push(tokio::spawn(async move {
            send(&app, post_with(&format!("/theme/t{n}"), Some(&token))).await
        }));
    }
    for request in requests {
        let reply = request.await.expect("request task");
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    let session = h
        .narvik
        .validate_session(&token)
        .await
        .expect("store")
        .expect("live");
    assert_eq!(session.data_version, 9, "one version per update, none lost");

    // After sign-out the update answers none and sends nothing.
    send(&h.app, post_with("/sign-out", Some(&token))).await;
    let reply = send(&h.app, post_with("/theme/late", Some(&token))).await;
    assert_eq!(reply.body, "none");
}

#[tokio::test]
async fn remember_me_sessions_get_a_persistent_cookie_of_their_own_lifetime() {
    let clock = Arc::new(ManualClock::starting_now());
    let store = Arc::new(MemoryStore::new());
    let narvik: Narvik<Data> = Narvik::builder(store)
        .clock(clock.clone())
        .cookie_browser_session(true)
        .build()
        .expect("valid configuration");
    let app = routes().layer(NarvikLayer::new(narvik));

    // The default: a browser-session cookie, no Max-Age.
    let reply = send(&app, post_with("/sign-in/alice", None)).await;
    assert_eq!(reply.set_cookies.len(), 1);
    assert!(
        !reply.set_cookies[0].contains("Max-Age"),
        "{}",
        reply.set_cookies[0]
    );

    // Remember me: 90 days, on the cookie and on the server.
    let reply = send(&app, post_with("/remember-me/bob", None)).await;
    let token = reply.token();
    assert_eq!(
        reply.set_cookies[0],
        format!("narvik_session={token}; Max-Age=7776000; Path=/; SameSite=Lax; Secure; HttpOnly")
    );
    // Past the default 30 days it is still live, and its extension keeps the long cookie.
    clock.advance(Duration::days(60));
    let reply = send(&app, get_with("/private", Some(&token))).await;
    assert_eq!(reply.body, "bob");
    assert_eq!(reply.token(), token);
    assert!(
        reply.set_cookies[0].contains("Max-Age=7776000"),
        "{}",
        reply.set_cookies[0]
    );
}

#[tokio::test]
async fn sign_in_rotates_away_the_previous_session() {
    let h = harness();
    let first = sign_in(&h, "alice").await;
    let reply = send(&h.app, post_with("/sign-in/alice", Some(&first))).await;
    let second = reply.token();
    assert_ne!(first, second);
    let old = send(&h.app, get_with("/private", Some(&first))).await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);
    let new = send(&h.app, get_with("/private", Some(&second))).await;
    assert_eq!(new.status, StatusCode::OK);
    let live = h
        .narvik
        .fetch_sessions_for_user("alice")
        .await
        .expect("store");
    assert_eq!(
        live.len(),
        1,
        "exactly one live session after signing in again"
    );
}

#[tokio::test]
async fn rotation_sends_a_new_cookie_and_kills_the_old_token() {
    let h = harness();
    let token = sign_in(&h, "alice").await;
    let reply = send(&h.app, post_with("/rotate", Some(&token))).await;
    assert_eq!(reply.status, StatusCode::OK);
    let rotated = reply.token();
    assert_ne!(rotated, token);
    assert_eq!(
        send(&h.app, get_with("/private", Some(&token)))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&h.app, get_with("/private", Some(&rotated)))
            .await
            .body,
        "alice"
    );
}

#[tokio::test]
async fn a_user_cannot_sign_out_someone_elses_device() {
    let h = harness();
    let alice = sign_in(&h, "alice").await;
    let bob = sign_in(&h, "bob").await;
    let bob_id = narvik_core::token::session_id_from_token(&bob);
    let reply = send(
        &h.app,
        post_with(&format!("/sign-out-device/{bob_id}"), Some(&alice)),
    )
    .await;
    assert_eq!(reply.body, "false");
    assert!(reply.set_cookies.is_empty());
    assert_eq!(
        send(&h.app, get_with("/private", Some(&bob))).await.body,
        "bob"
    );

    // Alice's second device, signed out from the first.
    let alice_2 = sign_in(&h, "alice").await;
    let alice_2_id = narvik_core::token::session_id_from_token(&alice_2);
    let reply = send(
        &h.app,
        post_with(&format!("/sign-out-device/{alice_2_id}"), Some(&alice)),
    )
    .await;
    assert_eq!(reply.body, "true");
    assert!(
        reply.set_cookies.is_empty(),
        "the current device keeps its cookie"
    );
    assert_eq!(
        send(&h.app, get_with("/private", Some(&alice_2)))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn store_errors_answer_503_without_leaking_the_cause() {
    let narvik: Narvik<Data> = Narvik::new(Arc::new(Failing));
    let handler_ran = Arc::new(AtomicUsize::new(0));
    let counter = handler_ran.clone();
    let app = routes()
        .route(
            "/counted",
            get(move || async move {
                counter.fetch_add(1, Ordering::SeqCst);
                "ran"
            }),
        )
        .layer(NarvikLayer::new(narvik));

    // Validation fails: every extractor form rejects with 503 and the cookie is left alone.
    let token = "abcdefghijklmnopqrstuvwxyz234567";
    for path in [
        "/whoami",
        "/private",
        "/optional",
        "/three-extractors",
        "/csrf",
    ] {
        let reply = send(&app, get_with(path, Some(token))).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert!(reply.set_cookies.is_empty(), "{path}");
        for secret in ["hunter2", "db.internal", "refused", "5432"] {
            assert!(!reply.body.contains(secret), "{path} leaks {secret}");
        }
    }

    // A route that never asks for the session never meets the store: it runs, with or
    // without a cookie.
    assert_eq!(
        send(&app, get_with("/counted", Some(token))).await.body,
        "ran"
    );
    assert_eq!(send(&app, get_with("/counted", None)).await.body, "ran");
    assert_eq!(handler_ran.load(Ordering::SeqCst), 2);

    // A sign-in fails with 503.
    let reply = send(&app, post_with("/sign-in/alice", None)).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(reply.set_cookies.is_empty());
    assert!(!reply.body.contains("hunter2"));
}

#[tokio::test]
async fn a_record_that_no_longer_fits_the_data_type_runs_signed_out() {
    let h = harness();
    let token = "abcdefghijklmnopqrstuvwxyz234567";
    let now = h.narvik.now();
    h.store
        .save_session(&SessionRecord {
            id: narvik_core::token::session_id_from_token(token),
            user_id: "alice".into(),
            expires_at: now + Duration::days(30),
            created_at: now,
            data: serde_json::json!({ "theme": 42 }).into(),
            lifetime: None,
            data_version: 0,
        })
        .await
        .expect("saved");
    let reply = send(&h.app, get_with("/whoami", Some(token))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "anonymous");
    assert!(reply.set_cookies.is_empty(), "the cookie is left alone");
    let reply = send(&h.app, get_with("/private", Some(token))).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(h
        .store
        .fetch_session(&narvik_core::token::session_id_from_token(token))
        .await
        .expect("store")
        .is_some());
    // Signing out still ends the undecodable record, so a stolen copy of the token dies too.
    let reply = send(&h.app, post_with("/sign-out", Some(token))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.set_cookies, [BLANK]);
    assert!(h
        .store
        .fetch_session(&narvik_core::token::session_id_from_token(token))
        .await
        .expect("store")
        .is_none());
}

#[tokio::test]
async fn cross_site_posts_are_rejected() {
    let h = harness();
    let token = sign_in(&h, "alice").await;
    let cross_site = |origin: Option<&str>, referer: Option<&str>| {
        let mut builder =
            Request::post("/sign-out").header(header::COOKIE, format!("narvik_session={token}"));
        if let Some(origin) = origin {
            builder = builder.header(header::ORIGIN, origin);
        }
        if let Some(referer) = referer {
            builder = builder.header(header::REFERER, referer);
        }
        builder.body(Body::empty()).expect("request")
    };
    for (origin, referer) in [
        (Some("https://evil.example"), None),
        (Some("null"), None),
        (None, Some("https://evil.example/page")),
        (None, None),
    ] {
        let reply = send(&h.app, cross_site(origin, referer)).await;
        assert_eq!(
            reply.status,
            StatusCode::FORBIDDEN,
            "{origin:?} {referer:?}"
        );
        assert!(reply.set_cookies.is_empty());
    }
    assert_eq!(
        send(&h.app, get_with("/private", Some(&token))).await.body,
        "alice",
        "the rejected posts did not sign alice out"
    );
    // The same post from the app's own page passes (Referer alone is enough).
    let reply = send(&h.app, cross_site(None, Some("http://app.test/devices"))).await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn csrf_tokens_are_bound_to_the_session() {
    let h = harness();
    let alice = sign_in(&h, "alice").await;
    let bob = sign_in(&h, "bob").await;
    let alice_csrf = send(&h.app, get_with("/csrf", Some(&alice))).await.body;
    let bob_csrf = send(&h.app, get_with("/csrf", Some(&bob))).await.body;
    assert_eq!(alice_csrf.len(), 64);
    assert_ne!(alice_csrf, bob_csrf);

    let post_form = |token: &str, csrf: &str| {
        Request::post("/csrf")
            .header(header::ORIGIN, ORIGIN)
            .header(header::COOKIE, format!("narvik_session={token}"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("csrf={csrf}")))
            .expect("request")
    };
    assert_eq!(
        send(&h.app, post_form(&alice, &alice_csrf)).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        send(&h.app, post_form(&alice, &bob_csrf)).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send(&h.app, post_form(&alice, "")).await.status,
        StatusCode::FORBIDDEN
    );
    // Signed out, no token verifies.
    let anonymous = Request::post("/csrf")
        .header(header::ORIGIN, ORIGIN)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("csrf={alice_csrf}")))
        .expect("request");
    assert_eq!(send(&h.app, anonymous).await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn extractors_without_the_layer_fail_closed() {
    let app = routes();
    let reply = send(&app, get_with("/whoami", None)).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(reply.set_cookies.is_empty());
}

#[tokio::test]
async fn a_refreshed_cookie_is_never_cacheable_whatever_the_handler_says() {
    let h = harness();
    let token = sign_in(&h, "alice").await;
    h.clock.advance(Duration::days(16));
    let reply = send(&h.app, get_with("/cacheable", Some(&token))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "alice");
    assert_eq!(
        reply.set_cookies.len(),
        1,
        "the extension re-sends the cookie"
    );
    assert_eq!(reply.cache_control.as_deref(), Some("no-store"));
}

#[tokio::test]
async fn a_non_ascii_cookie_beside_ours_does_not_sign_the_user_out() {
    let h = harness();
    let token = sign_in(&h, "alice").await;
    let mut request = Request::get("/private")
        .body(Body::empty())
        .expect("request");
    let header_value =
        header::HeaderValue::from_bytes(format!("name=José; narvik_session={token}").as_bytes())
            .expect("a header value with raw UTF-8");
    request.headers_mut().insert(header::COOKIE, header_value);
    let reply = send(&h.app, request).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body, "alice");
}
