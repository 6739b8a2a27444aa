//! The cases, one `pub async fn` each, grouped as in the catalogue.
//!
//! Every case takes the store under test and its declared [`Capabilities`](crate::Capabilities)
//! (what `store_tests!` passes is the store's own
//! [`capabilities()`](narvik_core::SessionStore::capabilities)), so a store crate may also call
//! a case directly:
//!
//! ```no_run
//! # async fn demo(store: std::sync::Arc<dyn narvik_core::SessionStore>) {
//! use narvik_conformance::cases;
//! use narvik_core::SessionStore;
//! let declared = store.capabilities();
//! cases::crud::save_duplicate_id_is_typed_error_and_keeps_original(store, declared).await;
//! # }
//! ```
//!
//! A case panics (fails the test) with a message naming the broken promise.

pub mod capabilities;
pub mod concurrency;
pub mod crud;
pub mod data;
pub mod data_updates;
pub mod engine;
pub mod expiry;
pub mod hostile_input;
pub mod identities;
pub mod scale;
pub mod users;
