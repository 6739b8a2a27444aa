//! The demo's forms over plain HTTP (no browser): what a forged or cross-site request gets.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use narvik_demo::Demo;
use tower::ServiceExt;

const ORIGIN: &str = "http://127.0.0.1:3000";

struct Reply {
    status: StatusCode,
    location: Option<String>,
    set_cookie: Option<String>,
    csp: Option<String>,
    body: String,
}

async fn send(app: &Router, request: Request<Body>) -> Reply {
    let response = app.clone().oneshot(request).await.expect("infallible");
    let header = |name| {
        response
            .headers()
            .get(name)
            .map(|v: &header::HeaderValue| v.to_str().expect("ascii").to_owned())
    };
    let (status, location, set_cookie, csp) = (
        response.status(),
        header(header::LOCATION),
        header(header::SET_COOKIE),
        header(header::CONTENT_SECURITY_POLICY),
    );
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Reply {
        status,
        location,
        set_cookie,
        csp,
        body: String::from_utf8(bytes.to_vec()).expect("utf-8"),
    }
}

fn post(path: &str, origin: &str, cookie: Option<&str>, form: &str) -> Request<Body> {
    let mut builder = Request::post(path)
        .header(header::ORIGIN, origin)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(cookie) = cookie {
        builder = builder.header(header::COOKIE, cookie);
    }
    builder.body(Body::from(form.to_owned())).expect("request")
}

fn get(path: &str, cookie: &str) -> Request<Body> {
    Request::get(path)
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .expect("request")
}

/// The `name=value` part of a `Set-Cookie` header, as a browser sends it back.
fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().expect("a pair").to_owned()
}

/// The value of the first hidden `name="..." value="..."` input on a page.
fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker).expect("the hidden field") + marker.len();
    page[start..].split('"').next().expect("a value").to_owned()
}

#[tokio::test]
async fn forged_and_cross_site_forms_change_nothing() {
    let demo = Demo::builder().origin(ORIGIN).build().expect("demo");
    let app = demo.router();

    // Cross-site sign-in (login CSRF) is refused before the password is even checked.
    let reply = send(
        &app,
        post(
            "/sign-in",
            "https://evil.example",
            None,
            "username=alice&password=wonderland-rabbit",
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.set_cookie, None);

    let reply = send(
        &app,
        post("/sign-in", ORIGIN, None, "username=alice&password=nope"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.body.contains("Wrong username or password."));
    assert_eq!(reply.set_cookie, None);

    let reply = send(
        &app,
        post(
            "/sign-in",
            ORIGIN,
            None,
            "username=alice&password=wonderland-rabbit",
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    let set_cookie = reply.set_cookie.expect("a session cookie");
    assert!(
        set_cookie.ends_with("; Max-Age=2592000; Path=/; SameSite=Lax; Secure; HttpOnly"),
        "the library default keeps Secure: {set_cookie}"
    );
    let alice = cookie_pair(&set_cookie);

    let page = send(&app, get("/devices", &alice)).await;
    assert_eq!(page.status, StatusCode::OK);
    let csp = page.csp.expect("a content security policy");
    assert!(csp.contains("default-src 'none'") && csp.contains("form-action 'self'"));
    let csrf = hidden(&page.body, "csrf");

    // Signing out with a made-up token, or from another site, does nothing.
    let forged = send(&app, post("/sign-out", ORIGIN, Some(&alice), "csrf=0000")).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(forged.set_cookie, None);
    let cross = send(
        &app,
        post(
            "/sign-out",
            "https://evil.example",
            Some(&alice),
            &format!("csrf={csrf}"),
        ),
    )
    .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    assert_eq!(
        send(&app, get("/devices", &alice)).await.status,
        StatusCode::OK,
        "still signed in"
    );

    // Another user's session id is not alice's to end.
    let bob = send(
        &app,
        post(
            "/sign-in",
            ORIGIN,
            None,
            "username=bob&password=builder-of-things",
        ),
    )
    .await;
    let bob = cookie_pair(&bob.set_cookie.expect("bob's cookie"));
    let bob_page = send(&app, get("/devices", &bob)).await.body;
    let bob_session = hidden(&bob_page, "session");
    let reply = send(
        &app,
        post(
            "/devices/sign-out",
            ORIGIN,
            Some(&alice),
            &format!("csrf={csrf}&session={bob_session}"),
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(
        send(&app, get("/devices", &bob)).await.status,
        StatusCode::OK
    );

    // The real form signs out and clears the cookie.
    let reply = send(
        &app,
        post("/sign-out", ORIGIN, Some(&alice), &format!("csrf={csrf}")),
    )
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.location.as_deref(), Some("/sign-in"));
    assert_eq!(
        reply.set_cookie.as_deref(),
        Some("__Host-narvik_session=; Max-Age=0; Path=/; SameSite=Lax; Secure; HttpOnly")
    );
    let after = send(&app, get("/devices", &alice)).await;
    assert_eq!(after.location.as_deref(), Some("/sign-in"));
}
