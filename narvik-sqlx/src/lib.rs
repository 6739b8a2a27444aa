//! The pieces narvik's sqlx stores (`narvik-postgres`, `narvik-sqlite`, `narvik-mysql`) share.
//!
//! An implementation crate: applications use a store, not this. What is here is the same idea
//! in every sqlx store, written once: [`Calls`] bounds each call (a connection from the pool
//! within the acquire timeout, the whole call within the call timeout) and decides what becomes
//! of a connection whose call was cancelled; [`Timeouts`] are the two bounds; [`error`] maps
//! the driver's errors whose meaning does not depend on the database; [`config`] validates
//! names and knobs; [`columns`] reads and writes the lifetime and data-version columns; `migrate` (feature `migrate`) keeps the migrations bookkeeping. The SQL and
//! everything a database does its own way stay in each store.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod columns;
pub mod config;
pub mod error;
#[cfg(feature = "migrate")]
#[cfg_attr(docsrs, doc(cfg(feature = "migrate")))]
pub mod migrate;
mod pool;
mod statements;

pub use error::MapError;
pub use pool::{connect_pool, Calls, Cancelled, Checkout, Timeouts};
pub use statements::Statements;
