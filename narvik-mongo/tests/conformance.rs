//! The whole narvik conformance suite against MongoDB (SecantusDB here), each case on a fresh
//! collection of its own with both indexes, as deployed.
//!
//! The suite checks every case against the store's own declaration,
//! `MongoStore::CAPABILITIES` (every optional call; expired records hidden, kept when saved
//! expired, counted at most once), so there is no override here.

mod common;

narvik_conformance::store_tests!(async { common::fresh_store().await });
