//! What narvik's fuzz targets share: the browser model ([`browser`]), the properties they
//! check ([`checks`], [`layer`]) and the structured inputs they decode ([`inputs`]).
//!
//! `browser`, `checks` and `layer` are also compiled, as they are, into the property tests of
//! narvik-core and narvik-axum (`#[path]` modules), so the stable test run and fuzzing check
//! one definition of every property.

#![forbid(unsafe_code)]

pub mod browser;
pub mod checks;
pub mod inputs;
pub mod layer;
