//! The whole narvik conformance suite against MongoDB (SecantusDB here), each case on a fresh
//! collection of its own with both indexes, as deployed.
//!
//! Declared capabilities, and why they are the true ones:
//! - `expired_fetch: Hidden`: every read filters `expiresAt > now` on the store's clock;
//! - `keeps_already_expired: true`: a record saved expired is stored (until the TTL monitor
//!   removes it), just never returned;
//! - `expired_count: AtMost`: the TTL monitor may delete expired records before
//!   `delete_all_expired_sessions` runs, and those are not counted by it.

mod common;

narvik_conformance::store_tests!(
    async { common::fresh_store().await },
    capabilities = narvik_conformance::Capabilities {
        expired_fetch: narvik_conformance::ExpiredFetch::Hidden,
        expired_count: narvik_conformance::ExpiredCount::AtMost,
        ..narvik_conformance::Capabilities::ALL
    }
);
