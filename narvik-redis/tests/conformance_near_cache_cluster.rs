//! The engine and data-update cases of the conformance suite again on a Redis Cluster, each
//! engine fronted by a pushed near cache fed by the store's listener (one tracking connection
//! per primary).
#![cfg(feature = "cluster")]

mod common;

narvik_conformance::near_cache_tests!(
    async { common::fresh_cluster_store().await },
    narvik_core::NearCacheConfig::pushed()
);
