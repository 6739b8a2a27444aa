//! Driver errors mapped onto narvik's typed errors: one short line naming the store, the
//! operation and the bound or cause, with the driver's error kept as the source.

use std::time::Duration;

use narvik_core::deadline::{Bound, StoreFault};
use narvik_core::Error;
use redis::{ErrorKind, RedisError};

/// The store's name in every [`StoreFault`] it reports.
pub const STORE_NAME: &str = "narvik-redis";

/// A failure deep inside an operation, before the operation's name is known. The store's
/// call wrapper turns it into a [`StoreFault`] naming the operation (see [`name_fault`]).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// A command failed (the driver's response timeout included).
    #[error("a Redis command failed")]
    Command(#[source] RedisError),
    /// No connection could be opened (the connect timeout included).
    #[error("no connection to Redis")]
    Connect(#[source] RedisError),
    /// The application's pool gave no connection within the acquire timeout.
    #[error("no pooled connection in time")]
    AcquireTimeout,
    /// The application's pool could not open a connection, after `waited` (its own connect
    /// timeout, which the store does not know, included).
    #[error("the pool opened no connection")]
    PoolConnect(#[source] RedisError, Duration),
    /// The application's pool failed to give a connection.
    #[error("the pool gave no connection")]
    Pool(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl Failure {
    pub(crate) fn command(error: RedisError) -> Error {
        Error::unavailable(Self::Command(error))
    }

    pub(crate) fn connect(error: RedisError) -> Error {
        Error::unavailable(Self::Connect(error))
    }
}

/// The bounds a fault is reported against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) connect: Duration,
    pub(crate) acquire: Duration,
    pub(crate) response: Duration,
}

/// Names `operation` in an error from inside it: a [`Failure`] becomes a [`StoreFault`];
/// every other error (a duplicate id, a corrupt record, a fault already named) is kept.
pub(crate) fn name_fault(operation: &'static str, limits: Limits, error: Error) -> Error {
    let Error::Unavailable { source } = error else {
        return error;
    };
    match source.downcast::<Failure>() {
        Ok(failure) => fault(operation, limits, *failure).into(),
        Err(source) => Error::Unavailable { source },
    }
}

fn fault(operation: &'static str, limits: Limits, failure: Failure) -> StoreFault {
    match failure {
        Failure::Command(error) if error.is_timeout() => {
            StoreFault::bound_hit(STORE_NAME, operation, Bound::Call, limits.response)
                .with_source(error)
        }
        Failure::Connect(error) if error.is_timeout() => {
            StoreFault::bound_hit(STORE_NAME, operation, Bound::Connect, limits.connect)
                .with_source(error)
        }
        Failure::Command(error) => {
            StoreFault::new(STORE_NAME, operation, reason(&error)).with_source(error)
        }
        Failure::Connect(error) => StoreFault::new(
            STORE_NAME,
            operation,
            format!("cannot connect: {}", reason(&error)),
        )
        .with_source(error),
        Failure::PoolConnect(error, waited) if error.is_timeout() => {
            StoreFault::bound_hit(STORE_NAME, operation, Bound::Connect, to_tenths(waited))
                .with_source(error)
        }
        Failure::PoolConnect(error, _) => StoreFault::new(
            STORE_NAME,
            operation,
            format!("cannot connect: {}", reason(&error)),
        )
        .with_source(error),
        Failure::AcquireTimeout => {
            StoreFault::bound_hit(STORE_NAME, operation, Bound::Acquire, limits.acquire)
        }
        Failure::Pool(error) => {
            StoreFault::new(STORE_NAME, operation, "the pool gave no connection").with_source(error)
        }
    }
}

/// A measured wait as a bound to report: to the tenth of a second, as a person reads it.
fn to_tenths(waited: Duration) -> Duration {
    let tenths = (waited.as_millis() + 50) / 100;
    Duration::from_millis(u64::try_from(tenths.saturating_mul(100)).unwrap_or(u64::MAX))
}

/// A few words on what went wrong, never the driver's message (that stays in the source).
fn reason(error: &RedisError) -> String {
    if error.is_connection_refusal() {
        return "connection refused".to_owned();
    }
    if error.is_connection_dropped() {
        return "connection closed".to_owned();
    }
    if let Some(code) = error.code() {
        return format!("server error {code}");
    }
    match error.kind() {
        ErrorKind::AuthenticationFailed => "authentication failed".to_owned(),
        ErrorKind::Io => "network error".to_owned(),
        ErrorKind::Parse | ErrorKind::UnexpectedReturnType => "unexpected reply".to_owned(),
        _ => error.category().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use narvik_core::deadline;

    const LIMITS: Limits = Limits {
        connect: Duration::from_secs(2),
        acquire: Duration::from_secs(2),
        response: Duration::from_secs(5),
    };

    fn io(kind: std::io::ErrorKind) -> RedisError {
        RedisError::from(std::io::Error::from(kind))
    }

    #[test]
    fn a_command_timeout_is_the_call_deadline() {
        let error = name_fault(
            "fetch_session",
            LIMITS,
            Failure::command(io(std::io::ErrorKind::TimedOut)),
        );
        assert_eq!(deadline::bound_hit(&error), Some(Bound::Call));
        assert_eq!(
            error.to_string(),
            "the session store is unavailable: narvik-redis fetch_session: no answer within 5s (call deadline)"
        );
        let fault = deadline::fault_of(&error).expect("a store fault");
        assert!(
            std::error::Error::source(fault).is_some(),
            "driver error kept"
        );
    }

    #[test]
    fn a_connect_timeout_is_the_connect_bound() {
        let error = name_fault(
            "save_session",
            LIMITS,
            Failure::connect(io(std::io::ErrorKind::TimedOut)),
        );
        assert_eq!(deadline::bound_hit(&error), Some(Bound::Connect));
        assert_eq!(
            error.to_string(),
            "the session store is unavailable: narvik-redis save_session: no answer within 2s (connect timeout)"
        );
    }

    #[test]
    fn causes_are_short_and_named() {
        let refused = name_fault(
            "delete_session",
            LIMITS,
            Failure::connect(io(std::io::ErrorKind::ConnectionRefused)),
        );
        assert_eq!(
            refused.to_string(),
            "the session store is unavailable: narvik-redis delete_session: cannot connect: connection refused"
        );
        assert_eq!(deadline::bound_hit(&refused), None);
        let closed = name_fault(
            "fetch_session",
            LIMITS,
            Failure::command(io(std::io::ErrorKind::BrokenPipe)),
        );
        assert_eq!(
            closed.to_string(),
            "the session store is unavailable: narvik-redis fetch_session: connection closed"
        );
        let acquire = name_fault(
            "fetch_session",
            LIMITS,
            Error::unavailable(Failure::AcquireTimeout),
        );
        assert_eq!(deadline::bound_hit(&acquire), Some(Bound::Acquire));
        assert_eq!(
            acquire.to_string(),
            "the session store is unavailable: narvik-redis fetch_session: no answer within 2s (pool acquire timeout)"
        );
    }

    #[test]
    fn a_pool_connect_timeout_reports_the_wait() {
        let error = name_fault(
            "fetch_session",
            LIMITS,
            Error::unavailable(Failure::PoolConnect(
                io(std::io::ErrorKind::TimedOut),
                Duration::from_millis(1003),
            )),
        );
        assert_eq!(deadline::bound_hit(&error), Some(Bound::Connect));
        assert_eq!(
            error.to_string(),
            "the session store is unavailable: narvik-redis fetch_session: no answer within 1s (connect timeout)"
        );
    }

    #[test]
    fn other_errors_pass_through() {
        assert!(matches!(
            name_fault("save_session", LIMITS, Error::DuplicateId),
            Error::DuplicateId
        ));
        let foreign = name_fault("save_session", LIMITS, Error::unavailable("elsewhere"));
        assert_eq!(
            foreign.to_string(),
            "the session store is unavailable: elsewhere"
        );
    }
}
