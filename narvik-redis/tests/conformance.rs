//! The narvik conformance suite on a single Redis server, each case in its own key prefix,
//! checked against the store's own declaration (`Capabilities::TTL_NATIVE`).

mod common;

narvik_conformance::store_tests!(async { common::fresh_store().await });
