//! The application's typed data through the layer: it reaches the handler, updates reach
//! the store without a new cookie and none is lost, and a record that no longer fits the data
//! type runs signed out.

mod support;

use axum::http::StatusCode;
use narvik_core::{SessionRecord, SessionStore};
use time::Duration;

use support::{get_with, harness, post_with, send, sign_in, BLANK};

#[tokio::test]
async fn typed_data_reaches_the_handler() {
    let h = harness();
    let token = sign_in(&h, "alice").await;
    let reply = send(&h.app, get_with("/whoami", Some(&token))).await;
    let fields: Vec<&str> = reply.body.split(' ').collect();
    assert_eq!(fields[..2], ["alice", "dark"]);
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
