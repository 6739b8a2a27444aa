//! The whole narvik conformance suite against the memory store, checked against the store's
//! own declaration (`MemoryStore::CAPABILITIES`: every optional call, expired records hidden
//! from `fetch_session`, records saved already expired kept, exact purge counts).

narvik_conformance::store_tests!(async { narvik_memory::MemoryStore::new() });
