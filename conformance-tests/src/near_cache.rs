//! The near cache's promises across app instances, for a store that pushes invalidations:
//! two engines, each over its own store handle (its own connections) on the same server, as
//! two instances of an app. A store crate calls these from its own tests, with its server.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use narvik_core::SessionStore;
//! # /// Two handles (two connection pools) on one fresh namespace of the store's server.
//! # async fn two_handles_on_one_fresh_namespace(
//! # ) -> (Arc<dyn SessionStore>, Arc<dyn SessionStore>) {
//! #     unimplemented!("connect twice to the store's server")
//! # }
//! // tests/near_cache.rs of a store crate
//! # // Outside `cargo test` rustc drops a `#[test]` function unchecked: the attribute is
//! # // commented out here so that the body is type-checked, and `main` runs it as the test would.
//! # /*
//! #[tokio::test(flavor = "multi_thread")]
//! # */
//! async fn revocations_reach_the_other_instance() {
//!     let (a, b) = two_handles_on_one_fresh_namespace().await;
//!     narvik_conformance::near_cache::revocations_reach_the_other_instance(a, b).await;
//! }
//! # fn main() {
//! #     let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build();
//! #     runtime.expect("a tokio runtime").block_on(revocations_reach_the_other_instance());
//! # }
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use narvik_core::{Narvik, NearCacheConfig, NearCacheStats, SessionStore, SessionToken};
use serde_json::{json, Value};

use crate::harness::{must, random_user_id};

/// How long a push may take to reach the other instance in these checks: far above what a
/// loopback server needs (the benches measure that), so that a loaded machine does not fail
/// them, and far below anything a user would call "still signed in".
pub const PROPAGATION_BOUND: Duration = Duration::from_secs(2);

/// How long a listener may take to notice its connection is gone, and to be back once it can
/// reconnect.
pub const RESUBSCRIBE_BOUND: Duration = Duration::from_secs(5);

/// An engine over `store` with a pushed near cache, once its channel is healthy (the first
/// subscription connects in the background).
pub async fn cached_engine(store: Arc<dyn SessionStore>) -> Narvik<Value> {
    let narvik = must(
        Narvik::builder(store)
            .near_cache(NearCacheConfig::pushed())
            .build(),
        "build an engine with a pushed near cache",
    );
    wait_for(
        "the near cache's channel to be healthy",
        RESUBSCRIBE_BOUND,
        || stats(&narvik).serving,
    )
    .await;
    narvik
}

fn stats(narvik: &Narvik<Value>) -> NearCacheStats {
    narvik
        .near_cache_stats()
        .expect("the engine was built with a near cache")
}

/// Polls `done` every millisecond until it holds, or panics after `bound`; returns how long
/// it took.
async fn wait_for(what: &str, bound: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < bound, "{what}: not within {bound:?}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    started.elapsed()
}

/// Validates `token` on `narvik` until `until` holds for the answer, or panics after `bound`;
/// returns how long it took.
async fn validate_until(
    narvik: &Narvik<Value>,
    token: &SessionToken,
    what: &str,
    until: impl Fn(Option<&narvik_core::Session<Value>>) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let seen = must(narvik.validate_token(token).await, "validate_session");
        if until(seen.as_ref()) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < PROPAGATION_BOUND,
            "{what}: the other instance still sees the old session after {PROPAGATION_BOUND:?}"
        );
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

/// A signed-in session, validated on both instances so that both cache it, and proof that the
/// second validation on B is a hit.
async fn cached_on_both(
    a: &Narvik<Value>,
    b: &Narvik<Value>,
    user_id: &str,
) -> narvik_core::CreatedSession<Value> {
    let created = must(
        a.create_session(user_id, json!({"step": 0})).await,
        "create_session",
    );
    for narvik in [a, b] {
        must(
            narvik.validate_token(&created.token).await,
            "validate_session",
        )
        .expect("a session just created is live");
    }
    let hits = stats(b).hits;
    must(b.validate_token(&created.token).await, "validate_session").expect("live");
    assert_eq!(
        stats(b).hits,
        hits + 1,
        "B's second validation was not a hit"
    );
    created
}

/// A logout, a rotation, a data update, a per-user delete and "sign out other devices" on
/// instance A are each seen by instance B, which had the session cached, within
/// [`PROPAGATION_BOUND`]. Returns the slowest propagation seen.
pub async fn revocations_reach_the_other_instance(
    a: Arc<dyn SessionStore>,
    b: Arc<dyn SessionStore>,
) -> Duration {
    let a = cached_engine(a).await;
    let b = cached_engine(b).await;
    let mut slowest = Duration::ZERO;
    let gone = |seen: Option<&narvik_core::Session<Value>>| seen.is_none();

    let user = random_user_id("near-logout");
    let created = cached_on_both(&a, &b, &user).await;
    must(
        a.invalidate_session(&created.session.id).await,
        "invalidate_session",
    );
    slowest = slowest.max(validate_until(&b, &created.token, "a logout on A", gone).await);

    let user = random_user_id("near-rotate");
    let created = cached_on_both(&a, &b, &user).await;
    let rotated = must(
        a.rotate_session(created.token.as_str()).await,
        "rotate_session",
    )
    .expect("a live session rotates");
    slowest = slowest.max(validate_until(&b, &created.token, "a rotation on A", gone).await);
    must(b.validate_token(&rotated.token).await, "validate_session")
        .expect("the rotated session is live on B");

    let user = random_user_id("near-update");
    let created = cached_on_both(&a, &b, &user).await;
    must(
        a.update_session_data(&created.session, |data| *data = json!({"step": 1}))
            .await,
        "update_session_data",
    )
    .expect("a live session updates");
    slowest = slowest.max(
        validate_until(&b, &created.token, "a data update on A", |seen| {
            seen.is_some_and(|session| session.data == json!({"step": 1}))
        })
        .await,
    );

    if a.capabilities().delete_sessions_for_user {
        let user = random_user_id("near-user");
        let first = cached_on_both(&a, &b, &user).await;
        let second = cached_on_both(&a, &b, &user).await;
        must(
            a.invalidate_sessions_for_user(&user).await,
            "invalidate_sessions_for_user",
        );
        for created in [first, second] {
            slowest = slowest
                .max(validate_until(&b, &created.token, "a per-user delete on A", gone).await);
        }
    }

    if a.capabilities().fetch_sessions_for_user {
        let user = random_user_id("near-others");
        let kept = cached_on_both(&a, &b, &user).await;
        let other = cached_on_both(&a, &b, &user).await;
        must(
            a.invalidate_other_sessions(&user, &kept.session.id).await,
            "invalidate_other_sessions",
        );
        slowest = slowest
            .max(validate_until(&b, &other.token, "sign out other devices on A", gone).await);
        must(b.validate_token(&kept.token).await, "validate_session")
            .expect("the kept session is live on B");
    }
    slowest
}

/// B's channel is broken by `break_channel` (a `CLIENT KILL`, a `pg_terminate_backend`):
/// within [`RESUBSCRIBE_BOUND`] B's cache learns of the loss and flushes, so a logout on A that
/// B's channel may never report is still seen by B at once (from the store); B serves from
/// memory again once its listener is back, and a logout after that reaches it by push.
pub async fn a_broken_channel_is_bypassed_until_it_is_back<F, Fut>(
    a: Arc<dyn SessionStore>,
    b: Arc<dyn SessionStore>,
    break_channel: F,
) where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    let a = cached_engine(a).await;
    let b = cached_engine(b).await;
    let user = random_user_id("near-broken");
    let doomed = cached_on_both(&a, &b, &user).await;
    let kept = cached_on_both(&a, &b, &user).await;

    let losses = stats(&b).losses;
    break_channel().await;
    // Counted once the cache has flushed for the loss: however soon the listener is back, no
    // entry from before the break is left.
    wait_for(
        "B's cache to learn that its channel broke",
        RESUBSCRIBE_BOUND,
        || stats(&b).losses > losses,
    )
    .await;
    must(
        a.invalidate_session(&doomed.session.id).await,
        "invalidate_session",
    );
    // Whether B is still bypassing or already back, its entry from before the break is gone:
    // the logout is seen at once, from the store.
    assert_eq!(
        must(b.validate_token(&doomed.token).await, "validate_session"),
        None,
        "B served a session logged out on A after its channel broke"
    );
    wait_for("B's channel to be back", RESUBSCRIBE_BOUND, || {
        stats(&b).serving
    })
    .await;

    must(b.validate_token(&kept.token).await, "validate_session").expect("kept is live");
    let hits = stats(&b).hits;
    must(b.validate_token(&kept.token).await, "validate_session").expect("kept is live");
    assert_eq!(
        stats(&b).hits,
        hits + 1,
        "B does not serve from memory again"
    );
    must(
        a.invalidate_session(&kept.session.id).await,
        "invalidate_session",
    );
    validate_until(
        &b,
        &kept.token,
        "a logout after the resubscription",
        |seen| seen.is_none(),
    )
    .await;
}
