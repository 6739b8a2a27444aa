//! The session cookie through the layer: its exact attributes, when it is (not) sent,
//! extension and remember-me lifetimes, caching, and cookies it must ignore or tolerate.

mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use narvik_axum::NarvikLayer;
use narvik_core::{ManualClock, Narvik};
use narvik_memory::MemoryStore;
use time::Duration;

use support::{get_with, harness, post_with, routes, send, sign_in, Data};

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
