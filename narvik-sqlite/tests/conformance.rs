//! The whole narvik conformance suite against SQLite, twice: on a database file of its own per
//! case (WAL, a write pool and a read pool, as `SqliteStore::open` builds them) and on a
//! database in memory of its own per case (`SqliteStore::open_in_memory`).
//!
//! No `capabilities = ...` override: the suite reads the store's own declaration,
//! `Capabilities::ALL`, the strictest preset.

mod common;

mod file {
    use super::common;
    narvik_conformance::store_tests!(async { common::fresh_file_store().await });
}

mod memory {
    use super::common;
    narvik_conformance::store_tests!(async { common::fresh_memory_store().await });
}
