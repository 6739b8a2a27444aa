//! Single-node behaviour beyond the conformance suite: connection loss, unreachable servers,
//! the expiry queue and its count, and TTLs on every key.

mod common;

use std::time::Duration;

use narvik_core::{Error, SessionRecord, SessionStore};
use narvik_redis::redis::{self, AsyncCommands};
use narvik_redis::RedisStore;
use time::OffsetDateTime;

fn record(id: &str, user_id: &str, expires_in: Duration) -> SessionRecord {
    let now = narvik_core::time_util::truncate_to_millis(OffsetDateTime::now_utc());
    SessionRecord {
        id: id.to_owned(),
        user_id: user_id.to_owned(),
        expires_at: now + expires_in,
        created_at: now,
        data: serde_json::json!({ "theme": "dark", "n": 1 }).into(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_server_is_unavailable() {
    // Port 1 on loopback: nothing listens there.
    let result = RedisStore::builder()
        .connection_timeout(Duration::from_millis(500))
        .connect("redis://127.0.0.1:1")
        .await;
    match result {
        Err(Error::Unavailable { source }) => assert!(!source.to_string().is_empty()),
        other => panic!("expected Error::Unavailable, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_connections_surface_as_unavailable_then_recover() {
    // The store logs in as its own ACL user, limited to its own prefix, so that CLIENT KILL USER
    // hits its connections and nobody else's on the shared server.
    let url = common::single_url().await;
    let mut admin = common::admin(&url).await;
    let prefix = common::fresh_prefix();
    let user = format!("narvik-kill-{}", common::random_hex());
    let password = common::random_hex();
    let () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&user)
        .arg("on")
        .arg(format!(">{password}"))
        .arg(format!("~{prefix}:*"))
        .arg("+@all")
        .query_async(&mut admin)
        .await
        .expect("ACL SETUSER");
    let info = redis::IntoConnectionInfo::into_connection_info(url.as_str()).expect("URL");
    let settings = info
        .redis_settings()
        .clone()
        .set_username(&user)
        .set_password(&password);
    let store = RedisStore::builder()
        .prefix(&prefix)
        .connect(info.set_redis_settings(settings))
        .await
        .expect("connect as the test user");

    let saved = record(&common::random_hex(), "alice", Duration::from_secs(600));
    store.save_session(&saved).await.expect("save");
    assert_eq!(
        store.fetch_session(&saved.id).await.expect("fetch"),
        Some(saved.clone())
    );

    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("USER")
        .arg(&user)
        .query_async(&mut admin)
        .await
        .expect("CLIENT KILL");
    assert!(killed >= 1, "the store's connection was killed");

    // The next calls fail, typed, until the connection manager has reconnected.
    let mut errors = 0;
    let mut recovered = None;
    for _ in 0..100 {
        match store.fetch_session(&saved.id).await {
            Err(Error::Unavailable { .. }) => errors += 1,
            Err(other) => panic!("a dropped connection must be Error::Unavailable, got {other:?}"),
            Ok(found) => {
                recovered = Some(found);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(errors >= 1, "the dropped connection surfaced as an error");
    assert_eq!(recovered, Some(Some(saved.clone())), "the store recovered");
    // Writes work again too.
    store
        .delete_session(&saved.id)
        .await
        .expect("delete after recovery");
    assert_eq!(store.fetch_session(&saved.id).await.expect("fetch"), None);
    let () = redis::cmd("ACL")
        .arg("DELUSER")
        .arg(&user)
        .query_async(&mut admin)
        .await
        .map(|_: i64| ())
        .expect("ACL DELUSER");
}

#[tokio::test(flavor = "multi_thread")]
async fn expiry_queue_removes_stale_index_entries_and_counts_them() {
    let store = common::fresh_store().await;
    let short = Duration::from_millis(300);
    for n in 0..5 {
        store
            .save_session(&record(
                &format!("short-{n}"),
                &format!("u{}", n % 2),
                short,
            ))
            .await
            .expect("save");
    }
    let live = record("live", "u0", Duration::from_secs(600));
    store.save_session(&live).await.expect("save");
    // Extended before it expires: requeued, not counted.
    let extended = record("extended", "u1", short);
    store.save_session(&extended).await.expect("save");
    store
        .update_session_expiry("extended", extended.expires_at + Duration::from_secs(600))
        .await
        .expect("extend");
    // Deleted: its queue entry points at nothing, not counted.
    store
        .save_session(&record("deleted", "u1", short))
        .await
        .expect("save");
    store.delete_session("deleted").await.expect("delete");

    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(store.delete_all_expired_sessions().await.expect("reap"), 5);
    assert_eq!(
        store
            .delete_all_expired_sessions()
            .await
            .expect("reap again"),
        0
    );
    let url = common::single_url().await;
    let mut admin = common::admin(&url).await;
    for user in ["u0", "u1"] {
        let key = format!("{}:u:{{{}}}", store.prefix(), hex(user));
        let ids: Vec<String> = admin.zrange(&key, 0, -1).await.expect("ZRANGE");
        let expected = if user == "u0" {
            vec!["live"]
        } else {
            vec!["extended"]
        };
        assert_eq!(ids, expected, "index of {user}");
    }
    assert_eq!(
        store.fetch_session("live").await.expect("fetch"),
        Some(live)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_saved_expired_leaves_nothing() {
    let store = common::fresh_store().await;
    let mut expired = record("gone", "alice", Duration::ZERO);
    expired.expires_at -= Duration::from_secs(1);
    store.save_session(&expired).await.expect("save");
    assert_eq!(store.fetch_session("gone").await.expect("fetch"), None);
    assert!(store
        .fetch_sessions_for_user("alice")
        .await
        .expect("list")
        .is_empty());
    assert!(
        scan_prefix(store.prefix()).await.is_empty(),
        "no key was written"
    );
}

/// Every key under `prefix` (the prefix is ours and random: no user input in the pattern).
async fn scan_prefix(prefix: &str) -> Vec<String> {
    let url = common::single_url().await;
    let mut admin = common::admin(&url).await;
    let mut keys = Vec::new();
    let mut iter: redis::AsyncIter<String> =
        admin.scan_match(format!("{prefix}:*")).await.expect("SCAN");
    while let Some(key) = iter.next_item().await {
        keys.push(key.expect("key"));
    }
    keys
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_workload_every_key_has_a_ttl() {
    let store = common::fresh_store().await;
    let users = ["alice", "{bob}", "carol*", "ünï"];
    for n in 0..40 {
        let user = users[n % users.len()];
        let lifetime = if n % 5 == 0 {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(600)
        };
        store
            .save_session(&record(&format!("s{n}"), user, lifetime))
            .await
            .expect("save");
    }
    let later = OffsetDateTime::now_utc() + Duration::from_secs(3600);
    for n in (0..40).step_by(3) {
        store
            .update_session_expiry(&format!("s{n}"), later)
            .await
            .expect("extend");
    }
    // Moved into the past: Redis drops the record at once.
    store
        .update_session_expiry("s1", OffsetDateTime::now_utc() - Duration::from_secs(5))
        .await
        .expect("expire");
    store
        .update_session_expiry("nope", later)
        .await
        .expect("no-op");
    for n in (0..40).step_by(7) {
        store
            .delete_session(&format!("s{n}"))
            .await
            .expect("delete");
    }
    store
        .delete_sessions_for_user("carol*")
        .await
        .expect("delete user");
    for user in users {
        store.fetch_sessions_for_user(user).await.expect("list");
    }
    tokio::time::sleep(Duration::from_millis(250)).await;
    store.delete_all_expired_sessions().await.expect("reap");

    let keys = scan_prefix(store.prefix()).await;
    assert!(
        keys.len() >= 20,
        "the workload left keys to check: {keys:?}"
    );
    let url = common::single_url().await;
    let mut admin = common::admin(&url).await;
    for key in keys {
        let ttl: i64 = admin.pttl(&key).await.expect("PTTL");
        assert!(ttl > 0, "{key} has no TTL (PTTL {ttl})");
    }
    assert_eq!(store.fetch_session("s1").await.expect("fetch"), None);
}

/// With `tls`, rustls has a crypto provider: a `rediss://` URL to a plain-text server fails the
/// handshake as a typed error instead of panicking for want of a provider.
#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread")]
async fn tls_handshake_failure_is_unavailable_not_a_panic() {
    let url = common::single_url().await;
    let Some(address) = url.strip_prefix("redis://") else {
        panic!("this test needs a plain redis:// URL, got {url}");
    };
    let result = RedisStore::builder()
        .connection_timeout(Duration::from_secs(1))
        .connect(format!("rediss://{address}").as_str())
        .await;
    assert!(
        matches!(result, Err(Error::Unavailable { .. })),
        "expected Error::Unavailable, got {result:?}"
    );
}
