//! sqlx errors onto narvik's typed errors, by kind and SQLite result code, never by message
//! text.

use narvik_core::deadline::StoreFault;
use narvik_core::Error;

/// The store's name in every [`StoreFault`] it reports.
pub(crate) const STORE: &str = "narvik-sqlite";

// SQLite result codes (https://www.sqlite.org/rescode.html). sqlx reports the extended code
// as the database error's `code()`; its low byte is the primary code.
const SQLITE_ERROR: i32 = 1;
const SQLITE_NOMEM: i32 = 7;
const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;
const SQLITE_READONLY: i32 = 8;
const SQLITE_INTERRUPT: i32 = 9;
const SQLITE_IOERR: i32 = 10;
const SQLITE_CORRUPT: i32 = 11;
const SQLITE_FULL: i32 = 13;
const SQLITE_CANTOPEN: i32 = 14;
const SQLITE_TOOBIG: i32 = 18;
const SQLITE_CONSTRAINT: i32 = 19;
const SQLITE_NOTADB: i32 = 26;
/// `SQLITE_CONSTRAINT_PRIMARYKEY`: the id exists. The primary key is the table's only unique
/// constraint.
pub(crate) const SQLITE_CONSTRAINT_PRIMARYKEY: i32 = 1555;

/// The extended result code of a database error, if sqlx reported one.
fn result_code(error: &sqlx::Error) -> Option<i32> {
    match error {
        sqlx::Error::Database(database_error) => database_error.code()?.parse().ok(),
        _ => None,
    }
}

/// Whether `error` came from SQLite answering `SQLITE_BUSY` (any extended code): the driver's
/// error is looked for along the source chain of the fault [`map_sqlx_error`] made of it.
pub(crate) fn is_busy_fault(error: &Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        if let Some(driver) = current.downcast_ref::<sqlx::Error>() {
            return result_code(driver).is_some_and(|code| code & 0xff == SQLITE_BUSY);
        }
        cause = current.source();
    }
    false
}

/// Maps a driver error from `operation` onto [`Error`].
///
/// Decoding failures are corrupt records; values SQLite refuses (too big, a constraint) are
/// invalid data; a bad option is a configuration error; everything else (a locked database,
/// a file that cannot be opened or written, I/O errors, a closed pool) is unavailable, with a
/// [`StoreFault`] naming the store, the operation and a short cause, and the driver's error as
/// its source.
pub(crate) fn map_sqlx_error(operation: &'static str, error: sqlx::Error) -> Error {
    narvik_sqlx::error::map_driver_error(error, |error| {
        match result_code(&error).map(|code| code & 0xff) {
            Some(SQLITE_TOOBIG | SQLITE_CONSTRAINT) => Error::InvalidData(format!(
                "SQLite refused the value (result code {})",
                result_code(&error).unwrap_or_default()
            )),
            _ => StoreFault::new(STORE, operation, cause(&error))
                .with_source(error)
                .into(),
        }
    })
}

/// Maps the error of an insert: a primary-key violation is the typed duplicate-id error.
pub(crate) fn map_insert_error(operation: &'static str, error: sqlx::Error) -> Error {
    narvik_sqlx::error::map_insert_error(
        operation,
        error,
        |error| result_code(error) == Some(SQLITE_CONSTRAINT_PRIMARYKEY),
        map_sqlx_error,
    )
}

/// A few words on what went wrong, for the message a person reads; the details stay in the
/// driver's error, the fault's source.
fn cause(error: &sqlx::Error) -> String {
    if let Some(code) = result_code(error) {
        let words = match code & 0xff {
            SQLITE_BUSY => "the database is locked by another writer (busy_timeout passed)",
            SQLITE_LOCKED => "a table is locked by another connection",
            SQLITE_READONLY => "the database is read-only (file or directory not writable)",
            SQLITE_CANTOPEN => {
                "cannot open the database file (does its directory exist, is it writable?)"
            }
            SQLITE_IOERR => "disk I/O error",
            SQLITE_FULL => "the disk is full",
            SQLITE_CORRUPT | SQLITE_NOTADB => "the database file is corrupt or not a database",
            SQLITE_NOMEM => "out of memory",
            SQLITE_INTERRUPT => "the statement was interrupted",
            SQLITE_ERROR => "SQL error (is the table migrated?)",
            _ => return format!("SQLite error {code}"),
        };
        return words.to_owned();
    }
    let words = match error {
        sqlx::Error::Io(_) => "I/O error",
        sqlx::Error::PoolTimedOut => "no connection from the pool in time",
        sqlx::Error::PoolClosed => "the connection pool is closed",
        sqlx::Error::WorkerCrashed => "the connection's worker thread crashed",
        sqlx::Error::Protocol(_) => "driver protocol error",
        _ => "driver error",
    };
    words.to_owned()
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use sqlx::error::{DatabaseError, ErrorKind};

    use super::*;

    /// A database error with a chosen result code and a message that says the opposite, to
    /// prove the mapping reads the code only.
    #[derive(Debug)]
    struct SqliteLike {
        code: &'static str,
    }

    impl std::fmt::Display for SqliteLike {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.message())
        }
    }

    impl std::error::Error for SqliteLike {}

    impl DatabaseError for SqliteLike {
        fn message(&self) -> &str {
            "UNIQUE constraint failed: narvik_sessions.id; database is locked"
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.code))
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> ErrorKind {
            ErrorKind::Other
        }
    }

    fn sqlite_error(code: &'static str) -> sqlx::Error {
        sqlx::Error::Database(Box::new(SqliteLike { code }))
    }

    #[test]
    fn errors_map_by_result_code_not_by_message() {
        assert!(matches!(
            map_insert_error("save_session", sqlite_error("1555")),
            Error::DuplicateId
        ));
        // NOT NULL (1299), CHECK (275), too big (18): refused values.
        for code in ["1299", "275", "18"] {
            let error = map_insert_error("save_session", sqlite_error(code));
            assert!(matches!(error, Error::InvalidData(_)), "{code}: {error:?}");
        }
        // The message says "UNIQUE constraint failed", the code says busy: busy wins.
        for (code, words) in [
            ("5", "locked by another writer"),
            ("517", "locked by another writer"),
            ("8", "read-only"),
            ("1544", "read-only"),
            ("14", "cannot open"),
            ("10", "I/O"),
            ("26", "corrupt"),
            ("1", "SQL error"),
        ] {
            let error = map_insert_error("save_session", sqlite_error(code));
            assert!(
                matches!(error, Error::Unavailable { .. }),
                "{code}: {error:?}"
            );
            assert!(error.to_string().contains(words), "{code}: {error}");
        }
    }

    #[test]
    fn an_unavailable_store_names_itself_the_operation_and_a_short_cause() {
        let error = map_sqlx_error("delete_session", sqlite_error("5"));
        assert_eq!(
            error.to_string(),
            "the session store is unavailable: narvik-sqlite delete_session: the database is \
             locked by another writer (busy_timeout passed)"
        );
        let fault = narvik_core::deadline::fault_of(&error).expect("a store fault");
        assert_eq!(fault.store(), STORE);
        assert_eq!(fault.operation(), "delete_session");
        assert_eq!(fault.bound(), None);
        let source = std::error::Error::source(fault).expect("the driver error is kept");
        assert!(source.to_string().contains("database is locked"));
        // The driver's message (which may quote data) stays out of the message.
        assert!(!error.to_string().contains("UNIQUE"));
        let other = map_sqlx_error("fetch_session", sqlite_error("4242"));
        assert!(other
            .to_string()
            .ends_with("fetch_session: SQLite error 4242"));
        let closed = map_sqlx_error("fetch_session", sqlx::Error::PoolClosed);
        assert!(closed
            .to_string()
            .ends_with("the connection pool is closed"));
    }
}
