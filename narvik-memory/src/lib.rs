#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod store;
#[cfg(feature = "sweeper")]
mod sweeper;

pub use store::{MemoryStore, DEFAULT_SHARDS, MAX_SHARDS};
#[cfg(feature = "sweeper")]
pub use sweeper::{Sweeper, MIN_SWEEP_PERIOD};

#[cfg(test)]
mod tests;
