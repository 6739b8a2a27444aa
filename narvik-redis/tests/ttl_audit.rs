//! Runs after the other test files (cargo runs them in name order): every key any test left
//! under the test prefixes, on the single node and on each cluster node, carries a TTL.

mod common;

use narvik_redis::redis::{self, AsyncCommands};

/// The keys under the test prefixes that have no TTL, on the server at `url`.
async fn keys_without_ttl(url: &str) -> (usize, Vec<String>) {
    let mut conn = common::admin(url).await;
    let mut keys = Vec::new();
    {
        // The pattern is our own constant: no user input in it.
        let mut iter: redis::AsyncIter<String> = conn
            .scan_match(format!("{}:*", common::TEST_PREFIX_ROOT))
            .await
            .expect("SCAN");
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
                .map(|(key, _)| key.clone()),
        );
    }
    (keys.len(), missing)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_test_key_on_the_single_node_has_a_ttl() {
    let url = common::single_url().await;
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
