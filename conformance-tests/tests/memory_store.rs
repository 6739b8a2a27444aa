//! The suite over the shipped in-process store, `narvik-memory`: it hides expired records from
//! `fetch_session` (by its own clock), keeps records saved already expired (hidden) until a
//! purge, and counts purged records exactly.

narvik_conformance::store_tests!(
    async { narvik_memory::MemoryStore::new() },
    capabilities = narvik_conformance::Capabilities {
        expired_fetch: narvik_conformance::ExpiredFetch::Hidden,
        ..narvik_conformance::Capabilities::ALL
    }
);
