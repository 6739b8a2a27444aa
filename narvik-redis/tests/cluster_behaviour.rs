//! Redis Cluster behaviour beyond the conformance suite: the guarantees that hold across slots
//! (every live record is in its user's index, scored at or after its expiry, and in the expiry
//! queue, due at or before it), the purge's cut-off and count, no revival of an expired record,
//! connection loss, and an unreachable cluster.
#![cfg(feature = "cluster")]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::shared::{self, hex, now, record};
use narvik_core::{Error, SessionStore};
use narvik_redis::redis::{self, cluster::ClusterClient, cluster_async::ClusterConnection};
use narvik_redis::RedisStore;
use rand::{Rng, SeedableRng};
use time::OffsetDateTime;

async fn raw_cluster() -> ClusterConnection {
    ClusterClient::new(common::cluster_urls())
        .expect("cluster URLs")
        .get_async_connection()
        .await
        .expect("connect to the cluster")
}

async fn slot(conn: &mut ClusterConnection, key: &str) -> i64 {
    redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query_async(conn)
        .await
        .expect("CLUSTER KEYSLOT")
}

#[tokio::test(flavor = "multi_thread")]
async fn records_and_user_indexes_span_slots_and_braces_do_not_steer_them() {
    let store = common::fresh_cluster_store().await;
    let mut raw = raw_cluster().await;
    let prefix = store.prefix().to_owned();
    let index = format!("{prefix}:u:{{{}}}", hex("{x}"));
    // The index's slot is the slot of the hex of the user id, not of `x`.
    assert_eq!(
        slot(&mut raw, &index).await,
        slot(&mut raw, &hex("{x}")).await
    );
    let mut differing = 0;
    for n in 0..20 {
        let id = format!("{n:064x}");
        if slot(&mut raw, &format!("{prefix}:s:{id}")).await != slot(&mut raw, &index).await {
            differing += 1;
        }
        store
            .save_session(&record(&id, "{x}", Duration::from_secs(600)))
            .await
            .expect("save");
    }
    assert!(
        differing > 10,
        "most records live outside their index's slot"
    );
    assert_eq!(
        store
            .fetch_sessions_for_user("{x}", now())
            .await
            .expect("list")
            .len(),
        20
    );
    assert!(store
        .fetch_sessions_for_user("x", now())
        .await
        .expect("list")
        .is_empty());
    store
        .delete_sessions_for_user("{x}")
        .await
        .expect("delete user");
    assert!(store
        .fetch_sessions_for_user("{x}", now())
        .await
        .expect("list")
        .is_empty());
}

/// The cross-slot guarantees: whatever interleaving of saves, both kinds of expiry update
/// (longer and shorter), deletes, per-user deletes and purges ahead of the clock, once they
/// are done every live record has an entry in its user's index scored no earlier than its
/// expiry (so per-user listing and deletion always find it) and an expiry-queue entry due no
/// later than its expiry (so a purge at any `now` past it finds it), and listings show exactly
/// the live records. (Entries without a record may remain after such races: they are
/// skipped, and cleaned up when they come due.)
#[tokio::test(flavor = "multi_thread")]
async fn under_racing_writes_every_live_record_stays_in_its_users_index_and_the_queue() {
    let store = common::fresh_cluster_store().await;
    let users = ["alice", "{bob}", "carol"];
    // Braces in session ids steer their records' slots (a few share one): ids are data.
    let ids: Vec<String> = (0..24)
        .map(|n| match n % 3 {
            0 => format!("{n:064x}"),
            1 => format!("{{t{}}}{n}", n % 2),
            _ => format!("}}{{{n}"),
        })
        .collect();
    // The workload is random and may end with every record deleted or purged, which would
    // leave nothing to check: it runs again (the checks hold after every round) until some
    // record is live.
    let mut live = HashMap::new();
    for _round in 0..10 {
        live.clear();
        let mut tasks = Vec::new();
        for task in 0..8 {
            let store = store.clone();
            let ids = ids.clone();
            tasks.push(tokio::spawn(async move {
                // A seeded Send rng: the thread-local one cannot cross awaits on a multi-thread
                // runtime.
                let mut rng = rand::rngs::StdRng::seed_from_u64(rand::random());
                for _ in 0..400 {
                    let n = rng.random_range(0..ids.len());
                    let id = &ids[n];
                    let user = users[n % users.len()];
                    let at =
                        OffsetDateTime::now_utc() + Duration::from_secs(rng.random_range(60..900));
                    match rng.random_range(0..12) {
                        0..=2 => {
                            let lifetime = Duration::from_secs(rng.random_range(60..600));
                            match store.save_session(&record(id, user, lifetime)).await {
                                Ok(()) | Err(Error::DuplicateId) => {}
                                Err(other) => panic!("save: {other}"),
                            }
                        }
                        3 => store.update_session_expiry(id, at).await.expect("update"),
                        4 | 5 => {
                            if let Some(found) = store.fetch_session(id).await.expect("fetch") {
                                store
                                    .update_record_expiry(&found, at)
                                    .await
                                    .expect("update record");
                            }
                        }
                        6 | 7 => store.delete_session(id).await.expect("delete"),
                        8 => store
                            .delete_sessions_for_user(user)
                            .await
                            .expect("delete user"),
                        9 => {
                            let ahead = now() + Duration::from_secs(rng.random_range(0..700));
                            store
                                .delete_all_expired_sessions(ahead)
                                .await
                                .expect("purge ahead");
                        }
                        _ => {
                            store.fetch_session(id).await.expect("fetch");
                        }
                    }
                }
                task
            }));
        }
        for task in tasks {
            task.await.expect("task");
        }

        let mut raw = raw_cluster().await;
        let queue = shared::queue(&store, &mut raw).await;
        for id in &ids {
            if let Some(found) = store.fetch_session(id).await.expect("fetch") {
                let score: Option<f64> = redis::cmd("ZSCORE")
                    .arg(shared::index_key(&store, &found.user_id))
                    .arg(id)
                    .query_async(&mut raw)
                    .await
                    .expect("ZSCORE");
                let expires_ms = shared::ms(found.expires_at);
                assert!(
                    score.is_some_and(|score| score as i64 >= expires_ms),
                    "live record {id} has index score {score:?}, expiry {expires_ms}"
                );
                let due = queue.get(&shared::queue_member(&found.user_id, id));
                assert!(
                    due.is_some_and(|due| *due <= expires_ms),
                    "live record {id} has queue score {due:?}, expiry {expires_ms}"
                );
                live.insert(id.clone(), found.user_id);
            }
        }
        if !live.is_empty() {
            break;
        }
    }
    assert!(!live.is_empty(), "the workload left live records to check");
    for user in users {
        let listed = store
            .fetch_sessions_for_user(user, now())
            .await
            .expect("list");
        let expected = live.values().filter(|owner| owner.as_str() == user).count();
        assert_eq!(listed.len(), expected, "listing of {user}");
    }
    // A purge past every expiry finds every live record through the queue.
    let purged = store
        .delete_all_expired_sessions(now() + Duration::from_secs(3600))
        .await
        .expect("purge all");
    assert_eq!(
        purged,
        live.len() as u64,
        "the purge deleted every live record"
    );
    for id in &ids {
        assert_eq!(store.fetch_session(id).await.expect("fetch"), None);
    }
    for user in users {
        assert!(store
            .fetch_sessions_for_user(user, now())
            .await
            .expect("list")
            .is_empty());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn purge_cuts_off_at_the_given_now_and_counts_what_it_deleted() {
    let store = common::fresh_cluster_store().await;
    let mut raw = raw_cluster().await;
    shared::purge_cuts_off_at_the_given_now(&store, &mut raw).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_record_whose_key_survives_is_not_revived() {
    let store = common::fresh_cluster_store().await;
    let mut raw = raw_cluster().await;
    shared::an_expired_record_whose_key_survives_is_not_revived(&store, &mut raw).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_cluster_connections_fail_typed_or_retry_then_recover() {
    // The store logs in as its own ACL user on every node, so CLIENT KILL USER hits only it.
    let urls = common::cluster_urls();
    let prefix = common::fresh_prefix();
    let user = format!("narvik-kill-{}", common::random_hex());
    let password = common::random_hex();
    let mut admins = Vec::new();
    for url in &urls {
        let mut admin = common::admin(url).await;
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
        admins.push(admin);
    }
    let nodes: Vec<redis::ConnectionInfo> = urls
        .iter()
        .map(|url| {
            let info = redis::IntoConnectionInfo::into_connection_info(url.as_str()).expect("URL");
            let settings = info
                .redis_settings()
                .clone()
                .set_username(&user)
                .set_password(&password);
            info.set_redis_settings(settings)
        })
        .collect();
    let store = RedisStore::builder()
        .prefix(&prefix)
        .connect_cluster(nodes)
        .await
        .expect("connect as the test user");
    let saved = record(&common::random_hex(), "alice", Duration::from_secs(600));
    store.save_session(&saved).await.expect("save");

    let mut killed = 0;
    for admin in &mut admins {
        let count: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("USER")
            .arg(&user)
            .query_async(admin)
            .await
            .expect("CLIENT KILL");
        killed += count;
    }
    assert!(killed >= 1, "the store's connections were killed");
    // The cluster client may retry on a fresh connection by itself; what it cannot hide must be
    // typed, and the store must work again.
    let mut recovered = None;
    for _ in 0..100 {
        match store.fetch_session(&saved.id).await {
            Err(Error::Unavailable { .. }) => {}
            Err(other) => panic!("a dropped connection must be Error::Unavailable, got {other:?}"),
            Ok(found) => {
                recovered = Some(found);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(recovered, Some(Some(saved.clone())), "the store recovered");
    store
        .delete_session(&saved.id)
        .await
        .expect("delete after recovery");
    for admin in &mut admins {
        let _: i64 = redis::cmd("ACL")
            .arg("DELUSER")
            .arg(&user)
            .query_async(admin)
            .await
            .expect("ACL DELUSER");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_cluster_is_unavailable() {
    let result = RedisStore::builder()
        .connection_timeout(Duration::from_millis(500))
        .connect_cluster(["redis://127.0.0.1:1"])
        .await;
    assert!(
        matches!(result, Err(Error::Unavailable { .. })),
        "expected Error::Unavailable, got {result:?}"
    );
}
