#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod config;
mod error;
#[cfg(feature = "migrate")]
mod migrate;
mod store;

pub use config::{Identifier, MySqlConfig};
pub use store::{MySqlStore, MySqlStoreBuilder};

/// The sqlx this crate is built on, so that an application can build its `MySqlPool` without
/// depending on a second, possibly different, sqlx.
pub use sqlx;
