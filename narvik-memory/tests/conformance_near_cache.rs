//! The engine and data-update cases of the conformance suite again, each engine fronted by a
//! near cache in its bounded-staleness mode (the memory store pushes nothing: it lives in the
//! engine's own process, where a cache in front of it would only cost memory). The cases build
//! every session through the engine, so a minute of staleness changes no answer.

narvik_conformance::near_cache_tests!(
    async { narvik_memory::MemoryStore::new() },
    narvik_core::NearCacheConfig::bounded_staleness(std::time::Duration::from_secs(60))
);
