//! The narvik conformance suite on a Redis Cluster, each case in its own key prefix, checked
//! against the store's own declaration (`Capabilities::TTL_NATIVE`).
#![cfg(feature = "cluster")]

mod common;

narvik_conformance::store_tests!(async { common::fresh_cluster_store().await });
