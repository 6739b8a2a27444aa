//! Rotation, and signing out a user's other sessions.

use std::sync::Arc;

use narvik_core::{OptionalOperation, SessionStore, SessionToken};
use serde_json::{json, Value};
use time::Duration;

use super::{create, engine, validate};
use crate::harness::{assert_absent, assert_stored, must, random_user_id, SpyStore};
use crate::{assert_unsupported, Capabilities};

/// Rotation gives a new token and id for the same user, data and `created_at`; the old token
/// is dead. An unknown token does not rotate.
pub async fn rotate_gives_new_token_and_kills_old(
    store: Arc<dyn SessionStore>,
    _capabilities: Capabilities,
) {
    let (narvik, clock) = engine::<Value>(Arc::clone(&store));
    let user_id = random_user_id("promoted");
    let data = json!({ "role": "user", "cart": [1, 2, 3] });
    let old = create(&narvik, &user_id, data.clone()).await;
    clock.advance(Duration::hours(1));
    let rotated = must(
        narvik.rotate_session(old.token.as_str()).await,
        "rotate_session",
    );
    let Some(new) = rotated else {
        panic!("a live session did not rotate");
    };
    assert_ne!(new.token, old.token, "rotation kept the token");
    assert_ne!(new.session.id, old.session.id, "rotation kept the id");
    assert_eq!(new.session.user_id, user_id);
    assert_eq!(new.session.data, data);
    assert_eq!(new.session.created_at, old.session.created_at);
    assert!(new.session.new, "the rotated session is new");
    assert!(
        validate(&narvik, &old.token).await.is_none(),
        "the old token still validates"
    );
    assert_absent(
        store.as_ref(),
        &old.session.id,
        "the old session after rotation",
    )
    .await;
    let new_record = new.session.to_record().expect("JSON data");
    assert_stored(
        store.as_ref(),
        &new_record,
        "the new session after rotation (same user, data and created_at as the old one)",
    )
    .await;
    let Some(current) = validate(&narvik, &new.token).await else {
        panic!("the new token does not validate");
    };
    assert_eq!((current.user_id, current.data), (user_id, data));

    let unknown = must(SessionToken::generate(), "SessionToken::generate");
    let rotated = must(
        narvik.rotate_session(unknown.as_str()).await,
        "rotate_session",
    );
    assert!(rotated.is_none(), "an unknown token rotated");
}

/// "Sign out other devices": every other session of the user goes, the current one and other
/// users' sessions stay. On a store that does not declare `fetch_sessions_for_user`, the
/// engine answers the typed unsupported error without calling the store at all.
pub async fn invalidate_other_sessions_keeps_only_current(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    let spy = SpyStore::new(Arc::clone(&store));
    let (narvik, _clock) = engine::<Value>(Arc::clone(&spy) as _);
    let user_id = random_user_id("devices");
    let current = create(&narvik, &user_id, json!("laptop")).await;
    if !capabilities.fetch_sessions_for_user {
        let before = spy.calls();
        assert_unsupported(
            narvik
                .invalidate_other_sessions(&user_id, &current.session.id)
                .await,
            OptionalOperation::FetchSessionsForUser,
        );
        assert_eq!(
            spy.calls(),
            before,
            "without a declared `fetch_sessions_for_user`, invalidate_other_sessions must answer \
             Unsupported before any store call"
        );
        assert_stored(
            store.as_ref(),
            &current.session.to_record().expect("JSON data"),
            "the current session after an unsupported invalidate_other_sessions",
        )
        .await;
        return;
    }
    let phone = create(&narvik, &user_id, json!("phone")).await;
    let tablet = create(&narvik, &user_id, json!("tablet")).await;
    let stranger = create(&narvik, &random_user_id("stranger"), json!("theirs")).await;
    let deleted = must(
        narvik
            .invalidate_other_sessions(&user_id, &current.session.id)
            .await,
        "invalidate_other_sessions",
    );
    assert_eq!(deleted, 2, "two other sessions were to be deleted");
    assert!(
        validate(&narvik, &current.token).await.is_some(),
        "the current session died"
    );
    for other in [&phone, &tablet] {
        assert!(
            validate(&narvik, &other.token).await.is_none(),
            "another device survived"
        );
        assert_absent(
            store.as_ref(),
            &other.session.id,
            "another device's session",
        )
        .await;
    }
    assert!(
        validate(&narvik, &stranger.token).await.is_some(),
        "another user's session died"
    );
}
