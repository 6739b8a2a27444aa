//! Every key the store writes carries a TTL. Each test first runs a workload over every write
//! path in a prefix of its own (saves, both expiry updates longer and shorter, deletes, a
//! per-user delete, listings, and purges at the wall clock and ahead of it, which delete records
//! Redis has not expired yet), then checks every key under the test prefixes on its server(s):
//! its own, and whatever the other test files left (cargo runs this file last, in name order).

mod common;

use narvik_redis::redis::{self, AsyncCommands};

/// The keys under the test prefixes that have no TTL, on the server at `url`.
async fn keys_without_ttl(url: &str) -> (usize, Vec<String>) {
    keys_without_ttl_under(url, common::TEST_PREFIX_ROOT).await
}

/// How many keys there are under `prefix` on the server at `url`, and those without a TTL.
async fn keys_without_ttl_under(url: &str, prefix: &str) -> (usize, Vec<String>) {
    let mut conn = common::admin(url).await;
    let mut keys = Vec::new();
    {
        // The pattern is built from our own prefixes: no user input in it. SCAN returns keys
        // as raw bytes: user ids are hex in key names, but session ids are not and may hold
        // any UTF-8.
        let mut iter: redis::AsyncIter<Vec<u8>> =
            conn.scan_match(format!("{prefix}:*")).await.expect("SCAN");
        while let Some(key) = iter.next_item().await {
            keys.push(key.expect("key"));
        }
    }
    let mut missing = Vec::new();
    for chunk in keys.chunks(1000) {
        let mut pipe = redis::pipe();
        for key in chunk {
            pipe.cmd("PTTL").arg(key);
        }
        let ttls: Vec<i64> = pipe.query_async(&mut conn).await.expect("PTTL");
        // -2: expired between SCAN and PTTL, which is fine; -1: no TTL.
        missing.extend(
            chunk
                .iter()
                .zip(ttls)
                .filter(|(_, ttl)| *ttl == -1)
                .map(|(key, _)| String::from_utf8_lossy(key).into_owned()),
        );
    }
    (keys.len(), missing)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_test_key_on_the_single_node_has_a_ttl() {
    let store = common::fresh_store().await;
    common::shared::ttl_workload(&store).await;
    let url = common::single_url().await;
    let (own, _) = keys_without_ttl_under(&url, store.prefix()).await;
    assert!(own >= 20, "the workload left keys to check: {own}");
    let (checked, missing) = keys_without_ttl(&url).await;
    assert!(
        missing.is_empty(),
        "{} of {checked} keys have no TTL: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
}

#[cfg(feature = "cluster")]
#[tokio::test(flavor = "multi_thread")]
async fn every_test_key_on_the_cluster_has_a_ttl() {
    let store = common::fresh_cluster_store().await;
    common::shared::ttl_workload(&store).await;
    let mut own = 0;
    for url in common::cluster_urls() {
        own += keys_without_ttl_under(&url, store.prefix()).await.0;
    }
    assert!(own >= 20, "the workload left keys to check: {own}");
    for url in common::cluster_urls() {
        let (checked, missing) = keys_without_ttl(&url).await;
        assert!(
            missing.is_empty(),
            "{url}: {} of {checked} keys have no TTL: {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        );
    }
}
