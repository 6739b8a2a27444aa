//! What the layer asks of the store: one validation per request, nothing for a route that
//! never asks, a 503 that leaks nothing when the store is down, and extractors that fail
//! closed without the layer.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::routing::get;
use narvik_axum::NarvikLayer;
use narvik_core::Narvik;
use time::Duration;

use support::{get_with, harness, post_with, routes, send, sign_in, Data, Failing, BLANK};

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
async fn extractors_without_the_layer_fail_closed() {
    let app = routes();
    let reply = send(&app, get_with("/whoami", None)).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(reply.set_cookies.is_empty());
}
