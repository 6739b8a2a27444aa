#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
mod connection;
mod error;
mod invalidation;
mod keys;
mod record;
mod scripts;
mod store;

pub use config::{RedisStoreBuilder, DEFAULT_PREFIX};
pub use error::STORE_NAME;
pub use store::RedisStore;

/// The Redis driver this crate is built on, so applications need no separate dependency.
pub use redis;

/// The pool crate, for [`RedisStoreBuilder::from_pool`].
pub use deadpool_redis;
