#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod capabilities;
pub mod cases;
pub mod harness;
mod macros;
pub mod near_cache;
pub mod upgrade;

pub use capabilities::{assert_unsupported, Capabilities, ExpiredCount, ExpiredFetch};

__for_each_case!(__case_names {});

/// What the generated tests need, re-exported so that a store crate needs no tokio of its own.
#[doc(hidden)]
pub mod __private {
    pub use tokio;

    use std::sync::Arc;

    pub use narvik_core::SessionStore;

    /// Turns the factory's store into the shared handle every case takes.
    pub fn into_store<S: SessionStore>(store: S) -> Arc<dyn SessionStore> {
        Arc::new(store)
    }
}
