//! How a record is kept: saved once, its ids, lifetime, version and times returned exactly, and
//! its slot reused once freed.

use narvik_core::{Error, SessionStore};
use serde_json::json;
use time::Duration;

use super::{live, record, wall_now};
use crate::MemoryStore;

#[tokio::test]
async fn save_is_insert_only_and_keeps_the_original() {
    let store = MemoryStore::new();
    let now = wall_now();
    let original = record("a", "alice", now + Duration::hours(1));
    store.save_session(&original).await.expect("save");
    let mut twin = record("a", "bob", now + Duration::hours(2));
    twin.data = json!("other").into();
    assert!(matches!(
        store.save_session(&twin).await,
        Err(Error::DuplicateId)
    ));
    assert_eq!(
        store.fetch_session("a").await.expect("fetch"),
        Some(original)
    );
    assert!(store
        .fetch_sessions_for_user("bob", now)
        .await
        .expect("bob")
        .is_empty());
    store.assert_consistent();
}

#[tokio::test]
async fn lifetime_and_data_version_round_trip() {
    let store = MemoryStore::new();
    let later = wall_now() + Duration::hours(1);
    let cases = [
        (None, 0),
        (Some(Duration::milliseconds(1)), 1),
        (Some(Duration::days(365 * 100)), u64::MAX / 2),
        (Some(Duration::milliseconds(i64::MAX)), i64::MAX as u64),
    ];
    for (n, (lifetime, data_version)) in cases.into_iter().enumerate() {
        let mut saved = record(&format!("r{n}"), "alice", later);
        saved.lifetime = lifetime;
        saved.data_version = data_version;
        store.save_session(&saved).await.expect("save");
        let fetched = store.fetch_session(&saved.id).await.expect("fetch");
        assert_eq!(fetched, Some(saved));
    }
    for bad in [
        Duration::ZERO,
        Duration::milliseconds(-5),
        Duration::microseconds(999),
    ] {
        let mut saved = record("bad", "alice", later);
        saved.lifetime = Some(bad);
        assert!(
            matches!(store.save_session(&saved).await, Err(Error::InvalidData(_))),
            "lifetime {bad} must be refused"
        );
    }
    assert_eq!(store.fetch_session("bad").await.expect("fetch"), None);
    store.assert_consistent();
}

/// A canonical id (64 lowercase hex digits) is kept as 32 bytes, every other id as its text;
/// near twins of a canonical id (upper case, a space, one digit short or long) stay distinct
/// records, each fetched, listed and deleted under its exact id.
#[tokio::test]
async fn canonical_ids_and_their_text_twins_stay_distinct() {
    let store = MemoryStore::new();
    let now = wall_now();
    let canonical = narvik_core::token::session_id_from_token("abcdefghijklmnopqrstuvwxyz234567");
    let twins = [
        canonical.clone(),
        canonical.to_uppercase(),
        format!("{canonical} "),
        canonical[..63].to_owned(),
        format!("{canonical}0"),
        format!("{}é", &canonical[..62]),
    ];
    for (n, id) in twins.iter().enumerate() {
        let mut saved = record(id, "alice", now + Duration::hours(1));
        saved.data = json!({ "n": n }).into();
        store.save_session(&saved).await.expect("save");
    }
    assert!(matches!(
        store
            .save_session(&record(&canonical, "bob", now + Duration::hours(1)))
            .await,
        Err(Error::DuplicateId)
    ));
    for (n, id) in twins.iter().enumerate() {
        let fetched = store
            .fetch_session(id)
            .await
            .expect("fetch")
            .expect("saved");
        assert_eq!(&fetched.id, id);
        assert_eq!(fetched.data, json!({ "n": n }));
    }
    let mut listed: Vec<String> = store
        .fetch_sessions_for_user("alice", now)
        .await
        .expect("list")
        .into_iter()
        .map(|record| record.id)
        .collect();
    listed.sort_unstable();
    let mut expected = twins.to_vec();
    expected.sort_unstable();
    assert_eq!(listed, expected);
    store.delete_session(&canonical).await.expect("delete");
    assert_eq!(store.fetch_session(&canonical).await.expect("fetch"), None);
    assert!(store
        .fetch_session(&twins[1])
        .await
        .expect("fetch")
        .is_some());
    assert_eq!(store.len(), twins.len() - 1);
    store.assert_consistent();
}

/// Times are kept to the millisecond, the precision of every narvik store, across the whole
/// range of `OffsetDateTime`, before 1970 too; a finer part is dropped, as the other stores do.
#[tokio::test]
async fn times_are_kept_to_the_millisecond_over_the_whole_range() {
    use time::macros::datetime;

    let store = MemoryStore::new();
    let far = datetime!(9999-12-31 23:59:59.999 UTC);
    let mut saved = record("far", "alice", far);
    saved.created_at = datetime!(-9999-01-01 0:00:00.001 UTC);
    store.save_session(&saved).await.expect("save");
    assert_eq!(
        store.fetch_session("far").await.expect("fetch"),
        Some(saved)
    );

    let mut early = record("early", "alice", datetime!(1969-12-31 23:59:59.999 UTC));
    early.created_at = datetime!(1960-06-15 12:00:00.5 +02:00);
    store.save_session(&early).await.expect("save");
    let listed = store
        .fetch_sessions_for_user("alice", datetime!(1969-12-31 23:59:59.998 UTC))
        .await
        .expect("list");
    let listed = listed.iter().find(|r| r.id == "early").expect("live then");
    assert_eq!(listed.expires_at, early.expires_at);
    assert_eq!(listed.created_at, early.created_at, "the same instant");

    let fine = wall_now() + Duration::hours(1);
    let mut sub_ms = record("fine", "alice", fine + Duration::nanoseconds(999_999));
    sub_ms.created_at = fine + Duration::microseconds(1);
    store.save_session(&sub_ms).await.expect("save");
    let fetched = live(&store, "fine").await;
    assert_eq!((fetched.expires_at, fetched.created_at), (fine, fine));
    store.assert_consistent();
}

/// Slots freed by deletes and purges are reused, and the indexes stay exact through it.
#[tokio::test]
async fn freed_slots_are_reused_and_indexes_stay_exact() {
    let store = MemoryStore::with_shards(2);
    let now = wall_now();
    for round in 0..4i64 {
        for n in 0..700i64 {
            let id = format!("{:064x}", round * 1_000 + n);
            let user = format!("u{}", n % 13);
            store
                .save_session(&record(&id, &user, now + Duration::minutes(n % 3 + round)))
                .await
                .expect("save");
        }
        // Drop most of them again, by purge, by user and one by one.
        store.purge_expired_at(now + Duration::minutes(round + 1));
        store.delete_sessions_for_user("u3").await.expect("delete");
        for n in (0..700i64).step_by(5) {
            store
                .delete_session(&format!("{:064x}", round * 1_000 + n))
                .await
                .expect("delete");
        }
        store.assert_consistent();
    }
    let left = store.len();
    assert!(left > 0 && left < 4 * 700, "{left}");
    assert_eq!(
        store.purge_expired_at(now + Duration::days(1)) as usize,
        left
    );
    assert!(store.is_empty());
    store.assert_consistent();
}
