#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod context;
pub mod csrf;
mod error;
mod extract;
mod layer;
mod web;

pub use csrf::{CsrfKey, OriginCheck, OriginCheckLayer};
pub use error::SessionError;
pub use extract::{CurrentSession, MaybeSession, SessionHandle, SessionRejection};
pub use layer::{NarvikLayer, NarvikService};
pub use narvik_core;
pub use web::web_builder;

/// What a session's additional data (the `D` of `Session<D>`, the original Narvik's
/// "additional session data") must be to travel through the layer: a serde type that can be
/// cloned into each extractor and shared across threads. `()` when there is none.
///
/// Implemented for every type that qualifies. Not to be confused with
/// [`narvik_core::SessionData`], the data's stored JSON text that stores read and write.
pub trait AdditionalData:
    serde::Serialize + serde::de::DeserializeOwned + Clone + Send + Sync + 'static
{
}

impl<T> AdditionalData for T where
    T: serde::Serialize + serde::de::DeserializeOwned + Clone + Send + Sync + 'static
{
}
