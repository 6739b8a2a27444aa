//! The engine and data-update cases of the conformance suite again on a single Redis server,
//! each engine fronted by a pushed near cache fed by the store's tracking listener: the cached
//! setup keeps every promise the plain one makes.

mod common;

narvik_conformance::near_cache_tests!(
    async { common::fresh_store().await },
    narvik_core::NearCacheConfig::pushed()
);
