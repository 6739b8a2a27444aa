//! The driver errors whose meaning does not depend on the database. Server errors (SQLSTATE
//! classes, SQLite result codes, MySQL error numbers) are each store's own, passed in as a
//! closure.

use std::io::ErrorKind as IoKind;

use narvik_core::Error;

/// How a store maps a driver error from an operation onto narvik's [`Error`].
pub type MapError = fn(&'static str, sqlx::Error) -> Error;

/// Maps the errors every sqlx driver means the same way, and hands the rest to `other`.
///
/// Decoding failures are corrupt records; a value the driver cannot encode is invalid data; a
/// bad connection string or option is a configuration error.
pub fn map_driver_error(error: sqlx::Error, other: impl FnOnce(sqlx::Error) -> Error) -> Error {
    match error {
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. } => {
            Error::corrupt("a session row does not decode", error)
        }
        sqlx::Error::Encode(source) => Error::InvalidData(source.to_string()),
        sqlx::Error::Configuration(source) => Error::InvalidConfiguration(source.to_string()),
        error => other(error),
    }
}

/// Maps the error of an insert: when `is_duplicate` says the primary key (a session table's
/// only unique constraint) already holds the id, the typed [`Error::DuplicateId`]; anything
/// else through `map`.
pub fn map_insert_error(
    operation: &'static str,
    error: sqlx::Error,
    is_duplicate: impl FnOnce(&sqlx::Error) -> bool,
    map: MapError,
) -> Error {
    if is_duplicate(&error) {
        return Error::DuplicateId;
    }
    map(operation, error)
}

/// A few words on what went wrong with a network connection or the pool, for the message a
/// person reads (the details stay in the driver's error, the fault's source); `None` for
/// server errors and the rest, which each store words its own way.
pub fn connection_cause(error: &sqlx::Error) -> Option<&'static str> {
    let words = match error {
        sqlx::Error::Io(io) => match io.kind() {
            IoKind::ConnectionRefused => "connection refused",
            IoKind::ConnectionReset
            | IoKind::ConnectionAborted
            | IoKind::BrokenPipe
            | IoKind::UnexpectedEof
            | IoKind::NotConnected => "connection lost",
            IoKind::TimedOut => "connection timed out",
            _ => "I/O error on the connection",
        },
        sqlx::Error::Tls(_) => "TLS failed",
        sqlx::Error::Protocol(_) => "protocol error",
        sqlx::Error::PoolTimedOut => "no connection from the pool in time",
        sqlx::Error::PoolClosed => "the connection pool is closed",
        sqlx::Error::WorkerCrashed => "the connection's worker crashed",
        _ => return None,
    };
    Some(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unreached(error: sqlx::Error) -> Error {
        panic!("handed to the store: {error:?}")
    }

    #[test]
    fn decode_encode_and_configuration_errors_are_typed_without_the_store() {
        let corrupt = map_driver_error(sqlx::Error::Decode("bad".into()), unreached);
        assert!(
            matches!(corrupt, Error::CorruptRecord { .. }),
            "{corrupt:?}"
        );
        let missing = map_driver_error(sqlx::Error::ColumnNotFound("data".into()), unreached);
        assert!(
            matches!(missing, Error::CorruptRecord { .. }),
            "{missing:?}"
        );
        let encode = map_driver_error(sqlx::Error::Encode("too big".into()), unreached);
        assert!(matches!(encode, Error::InvalidData(_)), "{encode:?}");
        let configuration =
            map_driver_error(sqlx::Error::Configuration("bad url".into()), unreached);
        assert!(
            matches!(configuration, Error::InvalidConfiguration(_)),
            "{configuration:?}"
        );
    }

    #[test]
    fn the_rest_is_the_stores() {
        let handed = map_driver_error(sqlx::Error::PoolClosed, |error| {
            Error::InvalidConfiguration(format!("store saw {error}"))
        });
        assert!(
            matches!(&handed, Error::InvalidConfiguration(words) if words.starts_with("store saw")),
            "{handed:?}"
        );
    }

    #[test]
    fn an_insert_duplicate_is_typed_and_the_rest_goes_through_the_map() {
        fn map(_: &'static str, _: sqlx::Error) -> Error {
            Error::InvalidData("mapped".into())
        }
        let duplicate = map_insert_error("save_session", sqlx::Error::RowNotFound, |_| true, map);
        assert!(matches!(duplicate, Error::DuplicateId), "{duplicate:?}");
        let other = map_insert_error("save_session", sqlx::Error::RowNotFound, |_| false, map);
        assert!(matches!(other, Error::InvalidData(_)), "{other:?}");
    }

    #[test]
    fn connection_causes_are_short_and_server_errors_are_left_alone() {
        let refused = sqlx::Error::Io(std::io::Error::new(
            IoKind::ConnectionRefused,
            "x".repeat(300),
        ));
        assert_eq!(connection_cause(&refused), Some("connection refused"));
        let reset = sqlx::Error::Io(std::io::Error::from(IoKind::ConnectionReset));
        assert_eq!(connection_cause(&reset), Some("connection lost"));
        assert_eq!(
            connection_cause(&sqlx::Error::PoolTimedOut),
            Some("no connection from the pool in time")
        );
        assert_eq!(connection_cause(&sqlx::Error::RowNotFound), None);
    }
}
