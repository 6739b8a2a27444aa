//! sqlx errors onto narvik's typed errors, by kind and MySQL error number, never by message
//! text.

use narvik_core::deadline::StoreFault;
use narvik_core::Error;
use sqlx::mysql::MySqlDatabaseError;

/// The store's name in every [`StoreFault`] it reports.
pub(crate) const STORE: &str = "narvik-mysql";

/// What a server error number means for the caller.
#[derive(Debug, PartialEq, Eq)]
enum Meaning {
    /// The primary key (the table's only unique index) already holds this id.
    Duplicate,
    /// A value the server refuses to store; nothing was stored.
    InvalidData(&'static str),
    /// The server cannot serve the call; the words are its short cause.
    Unavailable(String),
}

/// The meaning of a MySQL / MariaDB server error number. The numbers are shared by both
/// servers (MariaDB-only and MySQL-only ones are marked).
fn meaning(number: u16) -> Meaning {
    let unavailable = |words: &str| Meaning::Unavailable(words.to_owned());
    match number {
        // ER_DUP_ENTRY, ER_DUP_ENTRY_WITH_KEY_NAME
        1062 | 1586 => Meaning::Duplicate,
        // ER_DATA_TOO_LONG
        1406 => Meaning::InvalidData("a value is longer than its column"),
        // ER_TRUNCATED_WRONG_VALUE_FOR_FIELD (a string the column's charset cannot hold)
        1366 => Meaning::InvalidData("a string the column's character set cannot hold"),
        // ER_TRUNCATED_WRONG_VALUE, ER_WARN_DATA_OUT_OF_RANGE (a time DATETIME cannot hold)
        1292 | 1264 => Meaning::InvalidData("a value out of its column's range"),
        // ER_NET_PACKET_TOO_LARGE
        1153 => Meaning::InvalidData("a record larger than the server's max_allowed_packet"),
        // ER_LOCK_WAIT_TIMEOUT
        1205 => unavailable("lock wait timeout (innodb_lock_wait_timeout)"),
        // ER_LOCK_DEADLOCK
        1213 => unavailable("deadlock, rolled back"),
        // ER_STATEMENT_TIMEOUT (MariaDB max_statement_time), ER_QUERY_TIMEOUT (MySQL
        // max_execution_time), ER_QUERY_INTERRUPTED
        1969 | 3024 | 1317 => unavailable("statement cancelled (statement timeout)"),
        // ER_CON_COUNT_ERROR, ER_TOO_MANY_USER_CONNECTIONS
        1040 | 1203 => unavailable("too many connections"),
        // ER_DBACCESS_DENIED_ERROR, ER_ACCESS_DENIED_ERROR, ER_ACCESS_DENIED_NO_PASSWORD_ERROR
        1044 | 1045 | 1698 => unavailable("authentication failed"),
        // ER_NO_SUCH_TABLE
        1146 => unavailable("the session table does not exist (run migrate)"),
        // ER_BAD_DB_ERROR
        1049 => unavailable("the database does not exist"),
        // ER_SERVER_SHUTDOWN, ER_CONNECTION_KILLED (MariaDB), ER_CLIENT_INTERACTION_TIMEOUT
        // (MySQL 8)
        1053 | 1927 | 4031 => unavailable("the server closed the connection"),
        // ER_OPTION_PREVENTS_STATEMENT (read_only), ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION
        1290 | 1792 => unavailable("the server is read-only"),
        other => Meaning::Unavailable(format!("server error {other}")),
    }
}

/// The server's error number, when the error came from the server.
fn server_number(error: &sqlx::Error) -> Option<u16> {
    match error {
        sqlx::Error::Database(database_error) => database_error
            .try_downcast_ref::<MySqlDatabaseError>()
            .map(MySqlDatabaseError::number),
        _ => None,
    }
}

/// Maps a driver error from `operation` onto [`Error`].
///
/// Decoding failures are corrupt records; values the server refuses are invalid data; a bad
/// connection string is a configuration error; everything else (refused or dropped
/// connections, pool timeouts, TLS failures, server errors) is unavailable, with a
/// [`StoreFault`] naming the store, the operation and a short cause, and the driver's error as
/// its source.
pub(crate) fn map_sqlx_error(operation: &'static str, error: sqlx::Error) -> Error {
    narvik_sqlx::error::map_driver_error(error, |other| {
        match server_number(&other).map(meaning) {
            // Outside an insert, a duplicate cannot happen; should it, it is a server error.
            Some(Meaning::InvalidData(words)) => Error::InvalidData(format!(
                "{STORE} {operation}: {words} (server error {})",
                server_number(&other).unwrap_or_default()
            )),
            Some(Meaning::Unavailable(words)) => StoreFault::new(STORE, operation, words)
                .with_source(other)
                .into(),
            Some(Meaning::Duplicate) | None => StoreFault::new(STORE, operation, cause(&other))
                .with_source(other)
                .into(),
        }
    })
}

/// Maps the error of an insert: a duplicate entry (the primary key, the only unique index of
/// the table) is the typed duplicate-id error.
pub(crate) fn map_insert_error(operation: &'static str, error: sqlx::Error) -> Error {
    narvik_sqlx::error::map_insert_error(
        operation,
        error,
        |error| server_number(error).map(meaning) == Some(Meaning::Duplicate),
        map_sqlx_error,
    )
}

/// A few words on what went wrong, for the message a person reads; the details stay in the
/// driver's error, the fault's source.
fn cause(error: &sqlx::Error) -> String {
    let words = narvik_sqlx::error::connection_cause(error).unwrap_or(match error {
        sqlx::Error::Database(_) => "server error",
        _ => "driver error",
    });
    words.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_map_by_number() {
        assert_eq!(meaning(1062), Meaning::Duplicate);
        assert_eq!(meaning(1586), Meaning::Duplicate);
        for number in [1406, 1366, 1292, 1264, 1153] {
            assert!(
                matches!(meaning(number), Meaning::InvalidData(_)),
                "{number}"
            );
        }
        for (number, words) in [
            (1205, "lock wait timeout (innodb_lock_wait_timeout)"),
            (1969, "statement cancelled (statement timeout)"),
            (3024, "statement cancelled (statement timeout)"),
            (1146, "the session table does not exist (run migrate)"),
            (1045, "authentication failed"),
            (1040, "too many connections"),
            (1927, "the server closed the connection"),
            (9999, "server error 9999"),
        ] {
            assert_eq!(meaning(number), Meaning::Unavailable(words.to_owned()));
        }
    }

    #[test]
    fn an_unavailable_store_names_itself_the_operation_and_a_short_cause() {
        let refused = sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "x".repeat(300),
        ));
        let error = map_sqlx_error("delete_session", refused);
        assert_eq!(
            error.to_string(),
            "the session store is unavailable: narvik-mysql delete_session: connection refused"
        );
        let fault = narvik_core::deadline::fault_of(&error).expect("a store fault");
        assert_eq!(fault.store(), STORE);
        assert_eq!(fault.operation(), "delete_session");
        assert_eq!(fault.bound(), None);
        let source = std::error::Error::source(fault).expect("the driver error is kept");
        assert!(source.to_string().contains(&"x".repeat(300)));
    }

    #[test]
    fn decode_failures_are_corrupt_records() {
        let error = map_sqlx_error("fetch_session", sqlx::Error::Decode("bad".into()));
        assert!(matches!(error, Error::CorruptRecord { .. }), "{error:?}");
    }
}
