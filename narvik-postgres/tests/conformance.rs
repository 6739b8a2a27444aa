//! The whole narvik conformance suite against PostgreSQL, each case on a fresh, migrated schema
//! of its own (see `common`).
//!
//! No `capabilities = ...` override: the suite reads the store's own declaration,
//! `Capabilities::ALL` (the strictest preset) with `pushes_invalidations`, which
//! `invalidation.rs` and `conformance_near_cache.rs` prove. The store implements every
//! optional call, returns expired records from `fetch_session` for the engine to judge, keeps
//! records saved already expired until the purge, and the purge reports its exact count.

mod common;

narvik_conformance::store_tests!(async { common::fresh_store().await });
