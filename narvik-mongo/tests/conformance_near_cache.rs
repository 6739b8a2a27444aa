//! The engine and data-update cases of the conformance suite again, each engine fronted by a
//! pushed near cache on the store's change stream: the cached setup keeps every promise the
//! plain one makes (each case waits until the channel is healthy before it starts).

mod common;

narvik_conformance::near_cache_tests!(
    async { common::fresh_store().await },
    narvik_core::NearCacheConfig::pushed()
);
