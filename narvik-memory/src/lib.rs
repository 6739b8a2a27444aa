#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod id;
mod record;
mod shard;
mod slab;
mod store;
#[cfg(feature = "sweeper")]
mod sweeper;
mod users;

pub use store::{MemoryStore, DEFAULT_SHARDS, MAX_SHARDS};
#[cfg(feature = "sweeper")]
pub use sweeper::{Sweeper, MIN_SWEEP_PERIOD};

#[cfg(test)]
mod tests;
