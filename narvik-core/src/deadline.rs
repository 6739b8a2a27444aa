//! Bounded time for store calls: the one way a store puts a deadline on a call, and the cause
//! it reports when a bound is hit or its server cannot be reached.
//!
//! A session check sits on every request, so a store that waits for a hung server takes the
//! whole site with it. Every shipped store wraps each call in [`within`] on its default
//! settings, and names itself and the operation in a [`StoreFault`], so that an operator
//! reading `Error::Unavailable` knows which store, which call and which bound:
//!
//! ```
//! use std::time::Duration;
//! use narvik_core::deadline::{self, Bound};
//! use narvik_core::Error;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let hung = std::future::pending::<narvik_core::Result<()>>();
//! let error = deadline::within("narvik-example", "fetch_session", Duration::from_millis(10), hung)
//!     .await
//!     .unwrap_err();
//! assert_eq!(deadline::bound_hit(&error), Some(Bound::Call));
//! assert_eq!(
//!     error.to_string(),
//!     "the session store is unavailable: narvik-example fetch_session: no answer within 10ms (call deadline)"
//! );
//! assert!(matches!(error, Error::Unavailable { .. }));
//! # }
//! ```

use std::future::Future;
use std::time::Duration;

use crate::error::{BoxError, Error, Result};

/// Which of a store's time bounds a call ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Bound {
    /// Opening a connection to the server (TCP connect, handshake, authentication).
    Connect,
    /// Waiting for a connection from the store's pool.
    Acquire,
    /// Finding a server to talk to (Mongo server selection).
    ServerSelection,
    /// The whole call, end to end.
    Call,
}

impl Bound {
    /// How the bound is named in messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Connect => "connect timeout",
            Self::Acquire => "pool acquire timeout",
            Self::ServerSelection => "server selection timeout",
            Self::Call => "call deadline",
        }
    }
}

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The cause inside [`Error::Unavailable`] from a shipped store: which store, which
/// operation, what happened (and which bound, when one was hit), with the driver's error as
/// its `source`.
///
/// Its message is one short line; the driver's error, often long, stays in the source chain.
#[derive(Debug, thiserror::Error)]
#[error("{store} {operation}: {reason}")]
pub struct StoreFault {
    store: &'static str,
    operation: &'static str,
    reason: String,
    bound: Option<Bound>,
    #[source]
    source: Option<BoxError>,
}

impl StoreFault {
    /// A fault that hit no bound (connection refused, dropped connection, server error).
    pub fn new(store: &'static str, operation: &'static str, reason: impl Into<String>) -> Self {
        Self {
            store,
            operation,
            reason: reason.into(),
            bound: None,
            source: None,
        }
    }

    /// A fault that ran into `bound` after `limit`.
    pub fn bound_hit(
        store: &'static str,
        operation: &'static str,
        bound: Bound,
        limit: Duration,
    ) -> Self {
        Self {
            bound: Some(bound),
            ..Self::new(
                store,
                operation,
                format!("no answer within {limit:?} ({bound})"),
            )
        }
    }

    /// Keeps the driver's error as the source.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// A copy for another call the same fault ended (calls a store ran together, as one
    /// transaction): the same store, operation, reason and bound, with the source's message
    /// in the reason, since the driver's error itself cannot be shared.
    pub fn shared(&self) -> Self {
        let reason = match &self.source {
            Some(source) => format!("{}: {source}", self.reason),
            None => self.reason.clone(),
        };
        Self {
            bound: self.bound,
            ..Self::new(self.store, self.operation, reason)
        }
    }

    /// The store that failed, as its crate is named (`narvik-postgres`, ...).
    pub fn store(&self) -> &'static str {
        self.store
    }

    /// The operation that failed, as the trait names it (`fetch_session`, ...).
    pub fn operation(&self) -> &'static str {
        self.operation
    }

    /// The bound that was hit, if the call ran out of time.
    pub fn bound(&self) -> Option<Bound> {
        self.bound
    }
}

impl From<StoreFault> for Error {
    fn from(fault: StoreFault) -> Self {
        Error::unavailable(fault)
    }
}

/// Runs `call` for at most `limit`. Past it, the call is dropped (cancelled) and the result is
/// [`Error::Unavailable`] with a [`StoreFault`] naming `store`, `operation` and
/// [`Bound::Call`].
///
/// Needs a Tokio runtime with its timer enabled, as every shipped store does.
pub async fn within<T>(
    store: &'static str,
    operation: &'static str,
    limit: Duration,
    call: impl Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result,
        Err(_elapsed) => Err(StoreFault::bound_hit(store, operation, Bound::Call, limit).into()),
    }
}

/// The [`StoreFault`] behind an error, if a shipped store reported one.
pub fn fault_of(error: &Error) -> Option<&StoreFault> {
    match error {
        Error::Unavailable { source } => source.downcast_ref::<StoreFault>(),
        _ => None,
    }
}

/// The bound an error ran into, if any: for applications that retry on some bounds only, and
/// for fault tests.
pub fn bound_hit(error: &Error) -> Option<Bound> {
    fault_of(error).and_then(StoreFault::bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_call_that_answers_in_time_is_untouched() {
        let answer = within("s", "op", Duration::from_secs(5), async { Ok(7) }).await;
        assert_eq!(answer.ok(), Some(7));
        let failed: Result<()> = within("s", "op", Duration::from_secs(5), async {
            Err(Error::DuplicateId)
        })
        .await;
        assert!(matches!(failed, Err(Error::DuplicateId)));
    }

    #[tokio::test]
    async fn a_hung_call_fails_with_the_bound_named() {
        let error = within(
            "narvik-test",
            "delete_session",
            Duration::from_millis(5),
            std::future::pending::<Result<()>>(),
        )
        .await
        .unwrap_err();
        let fault = fault_of(&error).expect("a store fault");
        assert_eq!(fault.store(), "narvik-test");
        assert_eq!(fault.operation(), "delete_session");
        assert_eq!(fault.bound(), Some(Bound::Call));
    }

    #[test]
    fn the_driver_error_stays_as_source_and_out_of_the_message() {
        let driver = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "x".repeat(300));
        let error: Error = StoreFault::new("narvik-test", "save_session", "connection refused")
            .with_source(driver)
            .into();
        assert_eq!(
            error.to_string(),
            "the session store is unavailable: narvik-test save_session: connection refused"
        );
        let fault = fault_of(&error).expect("a store fault");
        let source = std::error::Error::source(fault).expect("the driver error");
        assert_eq!(source.to_string().len(), 300);
        assert_eq!(bound_hit(&error), None);
    }
}
