//! Cross-site request forgery: the origin check on posts, and CSRF tokens bound to the
//! session.

mod support;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};

use support::{get_with, harness, send, sign_in, ORIGIN};

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
