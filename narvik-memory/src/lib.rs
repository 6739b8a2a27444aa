#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod id;
mod record;
mod shard;
mod slab;
mod store;
mod users;

pub use store::{MemoryStore, DEFAULT_SHARDS, MAX_SHARDS};

#[cfg(test)]
mod tests;
