//! Signing in, rotating and signing out through the layer: the old token dies, a dead or
//! expired one is cleared, and one user cannot end another's device.

mod support;

use std::sync::atomic::Ordering;

use axum::http::StatusCode;
use time::Duration;

use support::{assert_signed_out_and_cleared, get_with, harness, post_with, send, sign_in, BLANK};

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
