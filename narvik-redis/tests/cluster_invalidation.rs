//! Invalidations pushed by the cluster store: one tracking connection per primary, seen from
//! another instance (two stores with separate cluster connections in a prefix of the test's
//! own). Every invalidating write reaches the other instance within 2 s wherever its slot
//! lives; a killed listener connection on one node is lost and subscribes again; the listener
//! is gone from every node once the store is; and a failover (on a cluster of the test's own,
//! one primary and its replica) is a loss, after which the new primary is tracked.
//!
//! Run with `--nocapture` to read the `invalidation figures:` lines quoted in the README.
#![cfg(feature = "cluster")]

mod common;

use std::time::{Duration, Instant};

use common::own_server::OwnRedis;
use common::push::{self, AclUser, WITHIN};
use common::shared::{now, record};
use narvik_core::invalidation::Invalidation;
use narvik_core::SessionStore;
use narvik_faults::free_port;
use narvik_redis::redis::{self, aio::MultiplexedConnection, cluster::ClusterClient};
use narvik_redis::RedisStore;

async fn cluster_store(prefix: &str, listener: Option<String>) -> RedisStore {
    cluster_store_at(common::cluster_urls(), prefix, listener).await
}

async fn cluster_store_at<T: redis::IntoConnectionInfo>(
    nodes: impl IntoIterator<Item = T>,
    prefix: &str,
    listener: Option<String>,
) -> RedisStore {
    let mut builder = RedisStore::builder().prefix(prefix);
    if let Some(name) = listener {
        builder = builder.invalidation_listener_name(name);
    }
    builder
        .connect_cluster(nodes)
        .await
        .expect("connect to the cluster")
}

/// A plain connection to every node of the shared cluster.
async fn admins() -> Vec<MultiplexedConnection> {
    let mut admins = Vec::new();
    for url in common::cluster_urls() {
        admins.push(common::admin(&url).await);
    }
    admins
}

/// How many connections named `name` each node holds.
async fn per_node(admins: &mut [MultiplexedConnection], name: &str) -> Vec<usize> {
    let mut counts = Vec::new();
    for admin in admins {
        counts.push(push::connections_named(admin, name).await.len());
    }
    counts
}

#[tokio::test(flavor = "multi_thread")]
async fn every_invalidating_write_reaches_another_instance_on_the_cluster() {
    let prefix = common::fresh_prefix();
    let name = push::listener_name();
    let a = cluster_store(&prefix, None).await;
    let b = cluster_store(&prefix, Some(name.clone())).await;
    assert!(b.capabilities().pushes_invalidations);
    let mut admins = admins().await;
    let mut raw = ClusterClient::new(common::cluster_urls())
        .expect("cluster URLs")
        .get_async_connection()
        .await
        .expect("connect to the cluster");
    let mut subscription = b.subscribe_invalidations().expect("B pushes");
    push::subscribed(&mut subscription, Duration::from_secs(10)).await;
    assert_eq!(
        per_node(&mut admins, &name).await,
        vec![1; admins.len()],
        "one tracking connection on every primary"
    );

    let hours = Duration::from_secs(3 * 3600);
    // Random ids: their records land on every node.
    let user_ids: Vec<String> = (0..12).map(|_| common::random_hex()).collect();
    let others = ["del", "data", "purged", "raw", "extended"];
    let mut saved = Vec::new();
    for id in user_ids.iter().map(String::as_str).chain(others) {
        let user = if others.contains(&id) { "bob" } else { "alice" };
        let record = record(id, user, hours);
        a.save_session(&record).await.expect("save");
        saved.push(record);
    }
    let all: Vec<&str> = saved.iter().map(|record| record.id.as_str()).collect();
    push::expect_ids(&mut subscription, &all).await;
    let record_of = |id: &str| {
        saved
            .iter()
            .find(|record| record.id == id)
            .expect("saved")
            .clone()
    };

    let mut figures = Vec::new();
    a.delete_session("del").await.expect("delete");
    figures.push((
        "delete_session",
        push::expect_ids(&mut subscription, &["del"]).await,
    ));

    a.delete_sessions_for_user("alice")
        .await
        .expect("delete user");
    let alice: Vec<&str> = user_ids.iter().map(String::as_str).collect();
    figures.push((
        "delete_sessions_for_user (12 sessions)",
        push::expect_ids(&mut subscription, &alice).await,
    ));

    assert!(a
        .update_session_data(
            &record_of("data"),
            &serde_json::json!({ "theme": "light" }).into(),
            now()
        )
        .await
        .expect("update data"));
    figures.push((
        "update_session_data",
        push::expect_ids(&mut subscription, &["data"]).await,
    ));

    a.update_record_expiry(&record_of("purged"), now() + Duration::from_secs(60))
        .await
        .expect("shorten");
    push::expect_ids(&mut subscription, &["purged"]).await;
    let deleted = a
        .delete_all_expired_sessions(now() + Duration::from_secs(90 * 60))
        .await
        .expect("purge");
    assert_eq!(deleted, 1, "the purge deleted `purged` alone");
    figures.push((
        "delete_all_expired_sessions",
        push::expect_ids(&mut subscription, &["purged"]).await,
    ));

    let removed: i64 = redis::cmd("DEL")
        .arg(format!("{prefix}:s:raw"))
        .query_async(&mut raw)
        .await
        .expect("DEL");
    assert_eq!(removed, 1);
    figures.push((
        "raw DEL (another client)",
        push::expect_ids(&mut subscription, &["raw"]).await,
    ));

    a.update_record_expiry(&record_of("extended"), now() + 2 * hours)
        .await
        .expect("extend");
    figures.push((
        "update_record_expiry (an extension)",
        push::expect_ids(&mut subscription, &["extended"]).await,
    ));
    for (path, took) in figures {
        eprintln!(
            "invalidation figures: cluster, {path}: received {} µs after the call returned",
            took.as_micros()
        );
    }
    assert!(subscription.is_healthy());
    a.delete_session("extended").await.expect("clean up");
}

/// `CLIENT KILL` of the listener's connection on one node: lost at once, still lost while the
/// listener cannot log in (its ACL user is switched off on every node), subscribed again within
/// 2 s once it can, with a connection on every primary; a delete after that is received. Once
/// the store and the subscription are dropped, no node holds a listener connection.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_listener_connection_on_one_node_is_lost_then_subscribes_again() {
    let prefix = common::fresh_prefix();
    let name = push::listener_name();
    let urls = common::cluster_urls();
    let mut admins = admins().await;
    let user = AclUser::fresh();
    for admin in &mut admins {
        user.on(admin, &prefix).await;
    }
    let a = cluster_store(&prefix, None).await;
    let b = cluster_store_at(
        urls.iter().map(|url| user.login(url)),
        &prefix,
        Some(name.clone()),
    )
    .await;
    let mut subscription = b.subscribe_invalidations().expect("B pushes");
    let first = push::subscribed(&mut subscription, Duration::from_secs(10)).await;
    let ids: Vec<String> = (0..6).map(|_| common::random_hex()).collect();
    for id in &ids {
        a.save_session(&record(id, "alice", Duration::from_secs(600)))
            .await
            .expect("save");
    }
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    push::expect_ids(&mut subscription, &ids).await;

    for admin in &mut admins {
        user.off(admin).await;
    }
    let killed_at = Instant::now();
    assert_eq!(
        push::kill_named(&mut admins[0], &name).await,
        1,
        "one listener connection on the node"
    );
    assert_eq!(
        push::next(&mut subscription, WITHIN).await,
        Some(Invalidation::Lost)
    );
    let lost_after = killed_at.elapsed();
    assert!(!subscription.is_healthy());
    a.delete_session(ids[0]).await.expect("delete while lost");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !subscription.is_healthy(),
        "still lost while it cannot log in"
    );

    for admin in &mut admins {
        user.on(admin, &prefix).await;
    }
    let allowed_at = Instant::now();
    let second = push::subscribed(&mut subscription, WITHIN).await;
    let resubscribed_after = allowed_at.elapsed();
    assert!(second > first);
    assert_eq!(per_node(&mut admins, &name).await, vec![1; admins.len()]);
    for id in &ids[1..] {
        a.delete_session(id).await.expect("delete after");
    }
    push::expect_ids(&mut subscription, &ids[1..]).await;
    eprintln!(
        "invalidation figures: cluster, CLIENT KILL of one node's listener connection: Lost \
         after {} ms; Subscribed {} ms after logins were allowed again",
        lost_after.as_millis(),
        resubscribed_after.as_millis()
    );

    drop(b);
    let started = Instant::now();
    for admin in &mut admins {
        push::wait_gone(admin, &name, Duration::from_secs(2)).await;
    }
    let gone = started.elapsed();
    assert_eq!(
        push::next(&mut subscription, WITHIN).await,
        Some(Invalidation::Lost)
    );
    assert!(!subscription.is_healthy());
    eprintln!(
        "invalidation figures: cluster, listener connections gone from every node {} ms after \
         the store was dropped",
        gone.as_millis()
    );
    drop((a, subscription));
    for admin in &mut admins {
        user.delete(admin).await;
    }
}

/// One node of a cluster of the test's own, on free ports (its bus port chosen too, so that no
/// port + 10000 is needed), with its files in a temporary directory.
struct OwnNode {
    redis: OwnRedis,
    bus: u16,
}

impl OwnNode {
    fn start() -> Self {
        let bus = free_port();
        let bus_port = bus.to_string();
        let redis = OwnRedis::start(&[
            "--appendonly",
            "no",
            "--cluster-enabled",
            "yes",
            "--cluster-node-timeout",
            "5000",
            "--cluster-port",
            &bus_port,
            // In the node's directory.
            "--cluster-config-file",
            "nodes.conf",
        ]);
        Self { redis, bus }
    }

    fn url(&self) -> String {
        self.redis.url()
    }

    async fn admin(&self) -> MultiplexedConnection {
        common::admin(&self.url()).await
    }
}

/// Polls `check` every 20 ms for at most `limit`.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn info(admin: &mut MultiplexedConnection, section: &str) -> String {
    redis::cmd("INFO")
        .arg(section)
        .query_async(admin)
        .await
        .unwrap_or_default()
}

async fn cluster_info(admin: &mut MultiplexedConnection) -> String {
    redis::cmd("CLUSTER")
        .arg("INFO")
        .query_async(admin)
        .await
        .unwrap_or_default()
}

/// A primary holding every slot and its replica.
async fn primary_and_replica() -> (OwnNode, OwnNode) {
    let primary = OwnNode::start();
    let replica = OwnNode::start();
    let mut p = primary.admin().await;
    let mut r = replica.admin().await;
    let () = redis::cmd("CLUSTER")
        .arg("ADDSLOTSRANGE")
        .arg(0)
        .arg(16383)
        .query_async(&mut p)
        .await
        .expect("CLUSTER ADDSLOTSRANGE");
    let primary_id: String = redis::cmd("CLUSTER")
        .arg("MYID")
        .query_async(&mut p)
        .await
        .expect("CLUSTER MYID");
    let () = redis::cmd("CLUSTER")
        .arg("MEET")
        .arg("127.0.0.1")
        .arg(primary.redis.port())
        .arg(primary.bus)
        .query_async(&mut r)
        .await
        .expect("CLUSTER MEET");
    // REPLICATE fails until the replica has heard of the primary through the bus.
    eventually(
        "the replica follows the primary",
        Duration::from_secs(20),
        || {
            let mut r = r.clone();
            let primary_id = primary_id.clone();
            async move {
                redis::cmd("CLUSTER")
                    .arg("REPLICATE")
                    .arg(&primary_id)
                    .query_async::<()>(&mut r)
                    .await
                    .is_ok()
            }
        },
    )
    .await;
    eventually(
        "replication is up and the cluster ok",
        Duration::from_secs(20),
        || {
            let (mut p, mut r) = (p.clone(), r.clone());
            async move {
                info(&mut r, "replication")
                    .await
                    .contains("master_link_status:up")
                    && cluster_info(&mut p).await.contains("cluster_state:ok")
                    && cluster_info(&mut r).await.contains("cluster_state:ok")
            }
        },
    )
    .await;
    (primary, replica)
}

/// A manual failover moves every slot to the replica while the old primary stays up (as a
/// replica): the listener sees the slot table change, is lost, and subscribes again tracking
/// the new primary only, so a delete after the failover is received.
#[tokio::test(flavor = "multi_thread")]
async fn after_a_failover_the_new_primary_is_tracked() {
    let (primary, replica) = primary_and_replica().await;
    let name = push::listener_name();
    let a = cluster_store_at([primary.url()], "app", None).await;
    let b = cluster_store_at([primary.url()], "app", Some(name.clone())).await;
    let mut p = primary.admin().await;
    let mut r = replica.admin().await;
    let mut subscription = b.subscribe_invalidations().expect("B pushes");
    let first = push::subscribed(&mut subscription, Duration::from_secs(10)).await;
    assert_eq!(push::connections_named(&mut p, &name).await.len(), 1);
    assert_eq!(
        push::connections_named(&mut r, &name).await.len(),
        0,
        "replicas are not tracked"
    );
    for id in ["kept", "revoked"] {
        a.save_session(&record(id, "alice", Duration::from_secs(600)))
            .await
            .expect("save");
    }
    push::expect_ids(&mut subscription, &["kept", "revoked"]).await;

    let () = redis::cmd("CLUSTER")
        .arg("FAILOVER")
        .query_async(&mut r)
        .await
        .expect("CLUSTER FAILOVER");
    let failover_at = Instant::now();
    eventually("the replica is primary", Duration::from_secs(20), || {
        let mut r = r.clone();
        async move { info(&mut r, "replication").await.contains("role:master") }
    })
    .await;
    let promoted = failover_at.elapsed();
    assert_eq!(
        push::next(&mut subscription, Duration::from_secs(5)).await,
        Some(Invalidation::Lost),
        "a failover is a loss"
    );
    let lost_after = failover_at.elapsed();
    let second = push::subscribed(&mut subscription, Duration::from_secs(10)).await;
    let subscribed_after = failover_at.elapsed();
    assert!(second > first);
    assert_eq!(
        push::connections_named(&mut r, &name).await.len(),
        1,
        "the new primary is tracked"
    );
    assert_eq!(
        push::connections_named(&mut p, &name).await.len(),
        0,
        "the old primary, now a replica, is not"
    );
    // A's cluster client follows the MOVED to the new primary.
    a.delete_session("revoked")
        .await
        .expect("delete after the failover");
    assert_eq!(a.fetch_session("revoked").await.expect("fetch"), None);
    push::expect_ids(&mut subscription, &["revoked"]).await;
    eprintln!(
        "invalidation figures: cluster, manual failover: replica primary after {} ms, Lost \
         after {} ms, Subscribed to the new primary after {} ms",
        promoted.as_millis(),
        lost_after.as_millis(),
        subscribed_after.as_millis()
    );
}
