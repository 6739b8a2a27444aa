//! The store's own declaration of what it supports, as the cases read it, and the assertion
//! every case uses for a call declared absent.
//!
//! The types live in narvik-core ([`narvik_core::Capabilities`]); a store declares them
//! through [`SessionStore::capabilities`](narvik_core::SessionStore::capabilities), and the
//! suite checks exactly that declaration.

pub use narvik_core::{Capabilities, ExpiredCount, ExpiredFetch};
use narvik_core::{Error, OptionalOperation, Result};

/// Asserts that `result` is the typed unsupported error for `operation`.
///
/// # Panics
/// When the store answered anything else: a store that declares a call absent must say so
/// with [`Error::Unsupported`], never succeed quietly.
pub fn assert_unsupported<T: std::fmt::Debug>(result: Result<T>, operation: OptionalOperation) {
    match result {
        Err(Error::Unsupported { operation: named }) => assert_eq!(
            named, operation,
            "the store's Unsupported error names the wrong operation"
        ),
        other => panic!(
            "`{operation}` is declared unsupported, so the store must answer \
             Err(Error::Unsupported {{ operation: {operation:?} }}), but it answered {other:?}"
        ),
    }
}
