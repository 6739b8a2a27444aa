#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
mod document;
mod error;
mod indexes;
mod invalidation;
mod store;

pub use config::{
    default_write_concern, MongoStoreConfig, CHANGE_STREAM_MAX_AWAIT, DEFAULT_CALL_TIMEOUT,
    DEFAULT_CHANGE_STREAM_TIMEOUT, DEFAULT_COLLECTION, DEFAULT_CONNECT_TIMEOUT, DEFAULT_DATABASE,
    DEFAULT_HEARTBEAT_FREQUENCY, DEFAULT_SERVER_SELECTION_TIMEOUT,
};
pub use error::STORE_NAME;
pub use indexes::{EXPIRES_AT_INDEX, USER_ID_INDEX};
/// The driver, re-exported so that applications can build a `Client` without depending on a
/// matching `mongodb` version themselves.
pub use mongodb;
pub use store::MongoStore;
