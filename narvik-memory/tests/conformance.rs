//! The whole narvik conformance suite against the memory store. The store hides expired records
//! from `fetch_session` (see the crate docs) and otherwise declares everything.

narvik_conformance::store_tests!(
    async { narvik_memory::MemoryStore::new() },
    capabilities = narvik_conformance::Capabilities {
        expired_fetch: narvik_conformance::ExpiredFetch::Hidden,
        ..narvik_conformance::Capabilities::ALL
    }
);
