#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod capabilities;
pub mod clock;
pub mod config;
pub mod cookie;
mod data;
pub mod deadline;
mod engine;
pub mod error;
mod forward;
pub mod invalidation;
pub mod near_cache;
pub mod purge;
pub mod session;
pub mod store;
mod store_calls;
pub mod time_util;
pub mod token;

pub use async_trait::async_trait;
pub use capabilities::{Capabilities, ExpiredCount, ExpiredFetch};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{NarvikBuilder, NarvikConfig};
pub use cookie::{Cookie, CookieConfig, CookiePrefix, SameSite};
pub use data::SessionData;
pub use engine::{CreatedSession, Narvik};
pub use error::{BoxError, Error, OptionalOperation, Result};
pub use near_cache::{NearCacheConfig, NearCacheStats};
pub use purge::PurgeTask;
pub use session::{Session, SessionRecord};
pub use store::SessionStore;
pub use token::SessionToken;

/// What [`forward_session_store!`] expands to needs, reachable from any crate.
#[doc(hidden)]
pub mod __private {
    pub use time::OffsetDateTime;
}
