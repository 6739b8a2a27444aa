//! The whole narvik conformance suite against MySQL / MariaDB, each case on a fresh, migrated
//! table of its own (see `common`).
//!
//! No `capabilities = ...` override: the suite reads the store's own declaration,
//! `Capabilities::ALL`, the strictest preset. The store implements every optional call,
//! returns expired records from `fetch_session` for the engine to judge, keeps records saved
//! already expired until the purge, and the purge reports its exact count.

mod common;

narvik_conformance::store_tests!(async { common::fresh_store().await });
