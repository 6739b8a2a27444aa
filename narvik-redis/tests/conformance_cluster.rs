//! The narvik conformance suite on a Redis Cluster, each case in its own key prefix.
#![cfg(feature = "cluster")]

mod common;

narvik_conformance::store_tests!(
    async { common::fresh_cluster_store().await },
    capabilities = narvik_conformance::Capabilities::TTL_NATIVE
);
