//! The README's two-line setup, built exactly as written, sends a `__Host-` session cookie.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::BodyExt;
use narvik_axum::{CurrentSession, NarvikLayer, SessionHandle};
use tower::ServiceExt;

const README: &str = include_str!("../README.md");
const ENGINE_LINE: &str = "let narvik: narvik_core::Narvik = narvik_axum::web_builder(store).build()?; // any Arc<dyn SessionStore>";
const ROUTER_LINE: &str =
    "let app: Router = Router::new().route(\"/\", get(home)).layer(NarvikLayer::new(narvik));";

async fn home(CurrentSession(session): CurrentSession) -> String {
    session.user_id
}

async fn sign_in(handle: SessionHandle) -> Result<&'static str, narvik_axum::SessionError> {
    handle.sign_in("alice", ()).await?;
    Ok("signed in")
}

#[test]
fn the_readme_shows_the_setup_this_test_builds() {
    let setup = README
        .split("## Setup: two lines")
        .nth(1)
        .and_then(|rest| rest.split("```").nth(1))
        .expect("the README's setup block");
    let shown: Vec<&str> = setup
        .lines()
        .filter(|line| !line.starts_with('#'))
        .collect();
    assert_eq!(shown, ["rust,no_run", ENGINE_LINE, ROUTER_LINE]);
    assert!(README.contains(
        "Set-Cookie: __Host-narvik_session=<token>; Max-Age=2592000; Path=/; SameSite=Lax; Secure; HttpOnly"
    ));
}

#[tokio::test]
async fn the_readme_setup_sends_a_host_prefixed_cookie() -> Result<(), narvik_core::Error> {
    let store = Arc::new(narvik_memory::MemoryStore::new());
    // The README's two lines; the second gains a sign-in route to have a cookie to look at.
    let narvik: narvik_core::Narvik = narvik_axum::web_builder(store).build()?; // any Arc<dyn SessionStore>
    let engine = narvik.clone();
    let app: Router = Router::new()
        .route("/", get(home))
        .route("/sign-in", post(sign_in))
        .layer(NarvikLayer::new(narvik));

    assert_eq!(engine.cookie_name(), "__Host-narvik_session");
    assert_eq!(engine.config().cookie.domain, None);

    let response = app
        .clone()
        .oneshot(
            Request::post("/sign-in")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    let set_cookies: Vec<String> = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|value| value.to_str().expect("ASCII").to_owned())
        .collect();
    assert_eq!(set_cookies.len(), 1, "{set_cookies:?}");
    let token = set_cookies[0]
        .strip_prefix("__Host-narvik_session=")
        .and_then(|rest| rest.split(';').next())
        .expect("the __Host- session cookie")
        .to_owned();
    assert!(narvik_core::token::is_well_formed(&token), "{token}");
    assert_eq!(
        set_cookies[0],
        format!(
            "__Host-narvik_session={token}; Max-Age=2592000; Path=/; SameSite=Lax; Secure; HttpOnly"
        )
    );
    assert!(!set_cookies[0].contains("Domain"));

    // The browser sends it back under its exact name; nothing else signs in.
    let get = |cookie: String| {
        Request::get("/")
            .header(header::COOKIE, cookie)
            .body(Body::empty())
            .expect("request")
    };
    let response = app
        .clone()
        .oneshot(get(format!("__Host-narvik_session={token}")))
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(&body[..], b"alice");
    for cookie in [
        format!("narvik_session={token}"),
        format!("\u{2000}__Host-narvik_session={token}"),
        format!("__Host-narvik_session\u{a0}={token}"),
    ] {
        let response = app
            .clone()
            .oneshot(get(cookie.clone()))
            .await
            .expect("infallible");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{cookie:?}");
    }
    Ok(())
}
