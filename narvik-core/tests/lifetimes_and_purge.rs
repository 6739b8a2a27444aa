//! Per-session lifetimes and their cookies, the engine's data update loop and the background
//! purge, over a small in-memory store of the tests' own (the spans are tested in spans.rs).

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use common::{engine, MapStore};
use narvik_core::{
    Error, ManualClock, Narvik, OptionalOperation, Result, SessionData, SessionRecord, SessionStore,
};
use time::{Duration, OffsetDateTime};

#[tokio::test]
async fn a_session_with_its_own_lifetime_slides_by_it_and_gets_a_persistent_cookie() {
    let store = Arc::new(MapStore::default());
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let narvik = engine(Arc::clone(&store), Arc::clone(&clock));
    let created = narvik
        .create_session_with_lifetime("alice", vec![], Duration::days(1))
        .await
        .expect("create");
    assert_eq!(created.session.lifetime, Some(Duration::days(1)));
    assert_eq!(created.session.expires_at, narvik.now() + Duration::days(1));
    let cookie = narvik.create_session_cookie(&created.token, &created.session);
    assert_eq!(cookie.max_age_seconds, Some(86_400));

    clock.advance(Duration::hours(13));
    let session = narvik
        .validate_token(&created.token)
        .await
        .expect("validate")
        .expect("live");
    assert!(session.extended, "past half of its own lifetime");
    assert_eq!(session.expires_at, narvik.now() + Duration::days(1));
    let stored = store.records()[&session.id].clone();
    assert_eq!(stored.expires_at, session.expires_at);
    assert_eq!(stored.lifetime, Some(Duration::days(1)));

    clock.advance(Duration::days(1) + Duration::milliseconds(1));
    assert!(narvik
        .validate_token(&created.token)
        .await
        .expect("validate")
        .is_none());

    for bad in [
        Duration::ZERO,
        Duration::milliseconds(999),
        Duration::nanoseconds(1_000_000_001),
    ] {
        assert!(matches!(
            narvik
                .create_session_with_lifetime("alice", vec![], bad)
                .await,
            Err(Error::InvalidConfiguration(_))
        ));
    }
}

#[tokio::test]
async fn rotation_keeps_the_sessions_own_lifetime() {
    let store = Arc::new(MapStore::default());
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let narvik = engine(store, clock);
    let created = narvik
        .create_session_with_lifetime("alice", vec![1], Duration::days(90))
        .await
        .expect("create");
    let rotated = narvik
        .rotate_session(created.token.as_str())
        .await
        .expect("rotate")
        .expect("live");
    assert_eq!(rotated.session.lifetime, Some(Duration::days(90)));
    assert_eq!(
        rotated.session.expires_at,
        narvik.now() + Duration::days(90)
    );
}

#[tokio::test]
async fn browser_session_cookies_have_no_max_age_but_remember_me_ones_do() {
    let store = Arc::new(MapStore::default());
    let narvik: Narvik<Vec<u32>> = Narvik::builder(store)
        .cookie_browser_session(true)
        .build()
        .expect("valid configuration");
    let plain = narvik
        .create_session("alice", vec![])
        .await
        .expect("create");
    let cookie = narvik.create_session_cookie(&plain.token, &plain.session);
    assert_eq!(cookie.max_age_seconds, None);
    assert!(
        !cookie.serialize().contains("Max-Age"),
        "{}",
        cookie.serialize()
    );
    assert!(plain.session.expires_at <= narvik.now() + Duration::days(30));
    assert!(plain.session.expires_at > narvik.now() + Duration::days(29));
    let remembered = narvik
        .create_session_with_lifetime("alice", vec![], Duration::days(60))
        .await
        .expect("create");
    let cookie = narvik.create_session_cookie(&remembered.token, &remembered.session);
    assert!(
        cookie.serialize().contains("; Max-Age=5184000; "),
        "{}",
        cookie.serialize()
    );
    assert!(narvik
        .create_blank_cookie()
        .serialize()
        .contains("; Max-Age=0; "));

    let both = Narvik::<()>::builder(Arc::new(MapStore::default()))
        .cookie_browser_session(true)
        .cookie_max_age(Duration::hours(1))
        .build();
    assert!(matches!(both, Err(Error::InvalidConfiguration(_))));
}

#[tokio::test]
async fn a_data_update_from_a_stale_session_reapplies_the_change_to_the_current_data() {
    let store = Arc::new(MapStore::default());
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let narvik = engine(Arc::clone(&store), clock);
    let created = narvik
        .create_session("alice", vec![])
        .await
        .expect("create");
    let first = narvik
        .update_session_data(&created.session, |data| data.push(1))
        .await
        .expect("update")
        .expect("live");
    assert_eq!((first.data.clone(), first.data_version), (vec![1], 1));
    // From the session as read before the first update: the store refuses version 0, the
    // engine reads version 1 and applies the change to [1].
    let second = narvik
        .update_session_data(&created.session, |data| data.push(2))
        .await
        .expect("update")
        .expect("live");
    assert_eq!((second.data.clone(), second.data_version), (vec![1, 2], 2));
    let stored = store.records()[&created.session.id].clone();
    assert_eq!(stored.data_version, 2);
    assert_eq!(stored.data, SessionData::from(serde_json::json!([1, 2])));
    assert_eq!(stored.expires_at, created.session.expires_at);

    narvik
        .invalidate_session(&created.session.id)
        .await
        .expect("delete");
    let gone = narvik
        .update_session_data(&second, |data| data.push(3))
        .await
        .expect("update");
    assert!(gone.is_none());
    assert!(
        store.records().is_empty(),
        "an update never brings a session back"
    );
}

/// A store that always loses the compare: every attempt conflicts.
struct AlwaysConflicting(MapStore);

narvik_core::forward_session_store! {
    impl SessionStore for AlwaysConflicting {
        inner = |this| &this.0;
        forward = [capabilities, save_session, fetch_session, update_session_expiry, delete_session];

        async fn update_session_data(
            &self,
            _: &SessionRecord,
            _: &SessionData,
            _: OffsetDateTime,
        ) -> Result<bool> {
            Ok(false)
        }
    }
}

#[tokio::test]
async fn a_data_update_that_keeps_losing_is_a_typed_conflict_after_its_attempts() {
    let narvik: Narvik<Vec<u32>> =
        Narvik::builder(Arc::new(AlwaysConflicting(MapStore::default())))
            .data_update_attempts(4)
            .build()
            .expect("valid configuration");
    let created = narvik
        .create_session("alice", vec![])
        .await
        .expect("create");
    let mut runs = 0;
    let outcome = narvik
        .update_session_data(&created.session, |data| {
            runs += 1;
            data.push(runs);
        })
        .await;
    assert!(
        matches!(outcome, Err(Error::Conflict { attempts: 4 })),
        "{outcome:?}"
    );
    assert_eq!(runs, 4);
}

/// The original's four calls only.
struct RequiredOnly(MapStore);

narvik_core::forward_session_store! {
    impl SessionStore for RequiredOnly {
        inner = |this| &this.0;
        forward = [save_session, fetch_session, update_session_expiry, delete_session];
    }
}

#[tokio::test]
async fn a_store_without_the_calls_answers_unsupported_for_updates_and_purges() {
    let narvik: Narvik<Vec<u32>> = Narvik::new(Arc::new(RequiredOnly(MapStore::default())));
    let created = narvik
        .create_session("alice", vec![])
        .await
        .expect("create");
    assert!(matches!(
        narvik
            .update_session_data(&created.session, |data| data.push(1))
            .await,
        Err(Error::Unsupported {
            operation: OptionalOperation::UpdateSessionData
        })
    ));
    assert!(matches!(
        narvik.spawn_purge_task(std::time::Duration::from_secs(60)),
        Err(Error::Unsupported {
            operation: OptionalOperation::DeleteAllExpiredSessions
        })
    ));
}

#[tokio::test]
async fn the_purge_task_deletes_expired_sessions_until_it_is_dropped() {
    let store = Arc::new(MapStore::default());
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let narvik = engine(Arc::clone(&store), Arc::clone(&clock));
    let old = narvik
        .create_session("alice", vec![])
        .await
        .expect("create");
    clock.advance(Duration::days(31));
    let live = narvik.create_session("bob", vec![]).await.expect("create");
    let task = narvik
        .spawn_purge_task(std::time::Duration::from_millis(20))
        .expect("spawn");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while store.records().contains_key(&old.session.id) {
        assert!(std::time::Instant::now() < deadline, "the purge never ran");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(
        store.records().contains_key(&live.session.id),
        "a live session was purged"
    );
    assert!(task.is_running());
    drop(task);
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let after_drop = store.purges.load(Ordering::SeqCst);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        store.purges.load(Ordering::SeqCst),
        after_drop,
        "the task outlived its handle"
    );
}

#[tokio::test]
async fn the_purge_task_keeps_going_through_store_errors() {
    let store = Arc::new(MapStore {
        fail_purges: true,
        ..MapStore::default()
    });
    let narvik: Narvik<Vec<u32>> = Narvik::new(Arc::clone(&store) as Arc<dyn SessionStore>);
    let task = narvik
        .spawn_purge_task(std::time::Duration::from_millis(10))
        .expect("spawn");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while store.purges.load(Ordering::SeqCst) < 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "the purge stopped after an error"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(task.is_running());
}
