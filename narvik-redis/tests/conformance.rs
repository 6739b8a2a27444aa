//! The narvik conformance suite on a single Redis server, each case in its own key prefix.

mod common;

narvik_conformance::store_tests!(
    async { common::fresh_store().await },
    capabilities = narvik_conformance::Capabilities::TTL_NATIVE
);
