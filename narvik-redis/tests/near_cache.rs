//! The near cache's promises across two app instances (narvik-conformance's `near_cache`
//! checks) on the Redis store: two engines, each over its own store (its own connections) in one
//! fresh prefix. Revocations on one instance reach the other by push, and a channel broken by
//! `CLIENT KILL` of the listener is bypassed until it is back; on one server and on the
//! cluster.

mod common;

use std::sync::Arc;

use narvik_conformance::near_cache;
use narvik_redis::RedisStore;

/// Two instances on the shared server; the second one's listener is named for this test alone.
async fn two_instances() -> (RedisStore, RedisStore) {
    let url = common::single_url().await;
    let prefix = common::fresh_prefix();
    let a = RedisStore::builder()
        .prefix(&prefix)
        .connect(url.as_str())
        .await
        .expect("connect A");
    let b = RedisStore::builder()
        .prefix(&prefix)
        .invalidation_listener_name(common::push::listener_name())
        .connect(url.as_str())
        .await
        .expect("connect B");
    (a, b)
}

/// The revocation check on A and B; the slowest revocation is printed as seen on `setup`.
async fn revocations_reach_the_other_instance_on(setup: &str, a: RedisStore, b: RedisStore) {
    let slowest = near_cache::revocations_reach_the_other_instance(Arc::new(a), Arc::new(b)).await;
    eprintln!(
        "invalidation figures: near cache, {setup}: slowest revocation seen by the other \
         instance after {} µs",
        slowest.as_micros()
    );
}

/// The broken-channel check on A and B, the channel broken by `CLIENT KILL` of B's listener
/// connection on the server at `node` (exactly one connection killed).
async fn a_channel_broken_on(node: &str, a: RedisStore, b: RedisStore) {
    let name = b
        .invalidation_listener_name()
        .expect("B listens")
        .to_owned();
    let mut raw = common::admin(node).await;
    near_cache::a_broken_channel_is_bypassed_until_it_is_back(
        Arc::new(a),
        Arc::new(b),
        || async move {
            assert_eq!(common::push::kill_named(&mut raw, &name).await, 1);
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn revocations_reach_the_other_instance() {
    let (a, b) = two_instances().await;
    revocations_reach_the_other_instance_on("single node", a, b).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_channel_broken_by_client_kill_is_bypassed_until_it_is_back() {
    let (a, b) = two_instances().await;
    a_channel_broken_on(&common::single_url().await, a, b).await;
}

#[cfg(feature = "cluster")]
mod cluster {
    use super::*;

    async fn two_instances() -> (RedisStore, RedisStore) {
        let urls = common::cluster_urls();
        let prefix = common::fresh_prefix();
        let a = RedisStore::builder()
            .prefix(&prefix)
            .connect_cluster(urls.iter().map(String::as_str))
            .await
            .expect("connect A");
        let b = RedisStore::builder()
            .prefix(&prefix)
            .invalidation_listener_name(common::push::listener_name())
            .connect_cluster(urls.iter().map(String::as_str))
            .await
            .expect("connect B");
        (a, b)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn revocations_reach_the_other_instance_on_the_cluster() {
        let (a, b) = two_instances().await;
        revocations_reach_the_other_instance_on("cluster", a, b).await;
    }

    /// The listener's connection on one node is killed: the whole channel is lost.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_channel_broken_on_one_node_is_bypassed_until_it_is_back() {
        let (a, b) = two_instances().await;
        a_channel_broken_on(&common::cluster_urls()[1], a, b).await;
    }
}
