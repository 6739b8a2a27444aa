//! The engine and data-update cases of the conformance suite again, each engine fronted by a
//! pushed near cache fed by this store's `LISTEN` connection: the cached setup keeps every
//! promise the plain one makes (each case waits until the channel is healthy before it
//! starts). Each case's store has a listener of its own, on its own fresh table.

mod common;

narvik_conformance::near_cache_tests!(
    async { common::fresh_store().await },
    narvik_core::NearCacheConfig::pushed()
);
