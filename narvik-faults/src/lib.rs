#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod bounds;
mod port;
pub mod scenarios;
mod server;
mod silent;
mod timing;

pub use bounds::Bounds;
pub use port::free_port;
pub use server::ServerProcess;
pub use silent::SilentListener;
pub use timing::{assert_unavailable_within, recover_within};
