//! The absolute cap and the per-user cap (which needs the optional per-user listing).

use std::num::NonZeroUsize;
use std::sync::Arc;

use narvik_core::{Error, ManualClock, Narvik, OptionalOperation, Result, SessionStore};
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};

use super::{clock_now, create, validate};
use crate::harness::{assert_absent, assert_stored, engine_with, must, random_user_id};
use crate::{assert_unsupported, Capabilities};

/// The builder's answer for an engine over `store` with a per-user cap of `cap`.
fn build_with_user_cap(
    store: Arc<dyn SessionStore>,
    clock: &Arc<ManualClock>,
    cap: usize,
) -> Result<Narvik<Value>> {
    Narvik::builder(store)
        .clock(Arc::clone(clock) as _)
        .max_sessions_per_user(NonZeroUsize::new(cap).expect("a non-zero cap"))
        .build()
}

/// Asserts that the builder refused a per-user cap with [`Error::InvalidConfiguration`], as
/// it must on a store that does not declare `fetch_sessions_for_user`.
#[track_caller]
fn assert_cap_refused(built: Result<Narvik<Value>>) {
    match built {
        Err(Error::InvalidConfiguration(_)) => {}
        Err(other) => panic!(
            "a per-user cap on a store without `fetch_sessions_for_user` must make build() fail \
             with Error::InvalidConfiguration, got {other:?}"
        ),
        Ok(_) => panic!(
            "a per-user cap on a store declaring no `fetch_sessions_for_user` was accepted by \
             build() (the store's declaration and the one the case was given differ?)"
        ),
    }
}

/// With an absolute cap, extension stops at `created_at + cap` and the session dies there,
/// however active it is.
pub async fn absolute_cap_stops_extension_and_expires(
    store: Arc<dyn SessionStore>,
    _capabilities: Capabilities,
) {
    let clock = Arc::new(ManualClock::starting_now());
    let lifetime = Duration::days(10);
    let cap = Duration::days(15);
    let narvik: Narvik<Value> = engine_with(Arc::clone(&store), &clock, |builder| {
        builder.session_lifetime(lifetime).absolute_lifetime(cap)
    });
    let created = create(&narvik, &random_user_id("capped"), json!(null)).await;
    let deadline = created.session.created_at + cap;
    let stored = must(
        store.fetch_session(&created.session.id).await,
        "fetch_session",
    );
    assert_eq!(
        stored.map(|record| record.expires_at),
        Some(created.session.created_at + lifetime),
        "a capped session is stored with the sliding lifetime first"
    );

    clock.advance(Duration::days(6));
    let session = validate(&narvik, &created.token)
        .await
        .expect("valid on day 6");
    assert!(
        session.extended,
        "day 6 is in the last half of a 10-day lifetime"
    );
    assert_eq!(
        session.expires_at, deadline,
        "extension must stop at created_at + cap"
    );
    let stored = must(
        store.fetch_session(&created.session.id).await,
        "fetch_session",
    );
    assert_eq!(stored.map(|record| record.expires_at), Some(deadline));

    clock.advance(Duration::days(8));
    let session = validate(&narvik, &created.token)
        .await
        .expect("valid on day 14");
    assert!(!session.extended, "a session at its cap cannot be extended");
    assert_eq!(session.expires_at, deadline);

    clock.advance(Duration::days(1));
    assert!(
        validate(&narvik, &created.token).await.is_none(),
        "a session past its absolute cap validated"
    );
    assert_absent(
        store.as_ref(),
        &created.session.id,
        "a session past its cap",
    )
    .await;
}

/// With a per-user cap of 3, a fourth session evicts the user's oldest, a fifth the next;
/// other users are untouched. On a store that does not declare `fetch_sessions_for_user`,
/// the builder refuses the cap with `InvalidConfiguration`.
pub async fn per_user_cap_evicts_oldest(store: Arc<dyn SessionStore>, capabilities: Capabilities) {
    let clock = Arc::new(ManualClock::starting_now());
    let built = build_with_user_cap(Arc::clone(&store), &clock, 3);
    if !capabilities.fetch_sessions_for_user {
        return assert_cap_refused(built);
    }
    let narvik = built.expect("a per-user cap on a store that declares listing builds");
    let user_id = random_user_id("capped-user");
    let neighbour = create(&narvik, &random_user_id("neighbour"), json!(null)).await;
    let mut sessions = Vec::new();
    for n in 0..5 {
        sessions.push(create(&narvik, &user_id, json!(n)).await);
        clock.advance(Duration::minutes(1));
    }
    for (n, created) in sessions.iter().enumerate() {
        let stored = must(
            store.fetch_session(&created.session.id).await,
            "fetch_session",
        );
        assert_eq!(
            stored.is_some(),
            n >= 2,
            "with a cap of 3 after 5 sessions, session {n} should be {}",
            if n >= 2 { "stored" } else { "evicted" }
        );
        let alive = validate(&narvik, &created.token).await.is_some();
        assert_eq!(
            alive,
            n >= 2,
            "with a cap of 3 after 5 sessions, session {n} should be {}",
            if n >= 2 { "alive" } else { "evicted" }
        );
    }
    assert!(
        validate(&narvik, &neighbour.token).await.is_some(),
        "another user's session was evicted"
    );
}

/// Rotation at the per-user cap replaces the rotated session; it never evicts another device.
/// On a store that does not declare `fetch_sessions_for_user`, the builder refuses the cap.
pub async fn rotate_at_user_cap_keeps_other_devices(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    let clock = Arc::new(ManualClock::starting_now());
    let built = build_with_user_cap(Arc::clone(&store), &clock, 2);
    if !capabilities.fetch_sessions_for_user {
        return assert_cap_refused(built);
    }
    let narvik = built.expect("a per-user cap on a store that declares listing builds");
    let user_id = random_user_id("capped-user");
    let laptop = create(&narvik, &user_id, json!("laptop")).await;
    clock.advance(Duration::minutes(1));
    let phone = create(&narvik, &user_id, json!("phone")).await;
    clock.advance(Duration::minutes(1));
    let rotated = must(
        narvik.rotate_session(phone.token.as_str()).await,
        "rotate_session",
    )
    .expect("a live session rotates");
    assert!(
        validate(&narvik, &laptop.token).await.is_some(),
        "rotating the phone at the cap signed the laptop out"
    );
    assert!(validate(&narvik, &rotated.token).await.is_some());
    assert!(validate(&narvik, &phone.token).await.is_none());
    assert_absent(
        store.as_ref(),
        &phone.session.id,
        "the rotated-away session",
    )
    .await;
}

/// An absolute cap configured after sessions were created still ends them at
/// `created_at + cap`, even though their stored expiry is later.
pub async fn absolute_cap_ends_sessions_created_before_it(
    store: Arc<dyn SessionStore>,
    _capabilities: Capabilities,
) {
    let clock = Arc::new(ManualClock::starting_now());
    let uncapped: Narvik<Value> = engine_with(Arc::clone(&store), &clock, |builder| builder);
    let created = create(&uncapped, &random_user_id("before-cap"), json!(null)).await;
    clock.advance(Duration::days(20));
    let extended = validate(&uncapped, &created.token)
        .await
        .expect("live on day 20 without a cap");
    assert!(extended.extended);
    let capped: Narvik<Value> = engine_with(Arc::clone(&store), &clock, |builder| {
        builder.absolute_lifetime(Duration::days(10))
    });
    assert!(
        validate(&capped, &created.token).await.is_none(),
        "a session 20 days old outlived a 10-day absolute cap"
    );
    let stored = must(
        store.fetch_session(&created.session.id).await,
        "fetch_session",
    );
    assert!(stored.is_none(), "the capped-out session was not deleted");
}

/// A per-user cap needs per-user listing. If the store declares `fetch_sessions_for_user`, the
/// builder accepts a cap of 1 and the cap works (a second sign-in evicts the first session
/// from the store); if not, `build()` refuses it with `InvalidConfiguration` and the store
/// itself answers the listing with the typed unsupported error.
///
/// Catches a store whose declaration and behaviour disagree: one declaring listing whose
/// listing finds nothing (the cap then never evicts), or one declaring none that answers the
/// call anyway.
pub async fn per_user_cap_needs_declared_listing(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    let clock = Arc::new(ManualClock::starting_now());
    let built = build_with_user_cap(Arc::clone(&store), &clock, 1);
    if !capabilities.fetch_sessions_for_user {
        assert_cap_refused(built);
        assert_unsupported(
            store
                .fetch_sessions_for_user(&random_user_id("uncapped"), narvik_now(&clock))
                .await,
            OptionalOperation::FetchSessionsForUser,
        );
        return;
    }
    let narvik = match built {
        Ok(narvik) => narvik,
        Err(error) => panic!(
            "the store declares `fetch_sessions_for_user`, so a per-user cap must build, got \
             {error:?}"
        ),
    };
    let user_id = random_user_id("single-device");
    let first = create(&narvik, &user_id, json!("first")).await;
    clock.advance(Duration::minutes(1));
    let second = create(&narvik, &user_id, json!("second")).await;
    assert_absent(
        store.as_ref(),
        &first.session.id,
        "the first session after a second sign-in under a cap of 1",
    )
    .await;
    assert_stored(
        store.as_ref(),
        &second.session.to_record().expect("JSON data"),
        "the second session under a cap of 1",
    )
    .await;
}

/// The manual clock's time, to the millisecond.
fn narvik_now(clock: &ManualClock) -> OffsetDateTime {
    narvik_core::time_util::truncate_to_millis(clock_now(clock))
}
