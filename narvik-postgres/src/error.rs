//! sqlx errors onto narvik's typed errors, by kind and SQLSTATE, never by message text.

use narvik_core::deadline::StoreFault;
use narvik_core::Error;

/// The store's name in every [`StoreFault`] it reports.
pub(crate) const STORE: &str = "narvik-postgres";

/// SQLSTATE class 22, "data exception": a value the server refuses to store. The store finds
/// NUL characters (22021 in `text`, 22P05 as `\u0000` in `jsonb`) before sending; this is the
/// fallback for what only the server can judge, such as a character a database that is not
/// UTF-8 cannot represent.
const DATA_EXCEPTION_CLASS: &str = "22";

/// Maps a driver error from `operation` onto [`Error`].
///
/// Decoding failures are corrupt records; values the server refuses are invalid data; a bad
/// connection string is a configuration error; everything else (refused or dropped
/// connections, pool timeouts, TLS failures, server errors) is unavailable, with a
/// [`StoreFault`] naming the store, the operation and a short cause, and the driver's error as
/// its source.
pub(crate) fn map_sqlx_error(operation: &'static str, error: sqlx::Error) -> Error {
    narvik_sqlx::error::map_driver_error(error, |error| match error {
        sqlx::Error::Database(database_error)
            if database_error
                .code()
                .is_some_and(|code| code.starts_with(DATA_EXCEPTION_CLASS)) =>
        {
            Error::InvalidData(database_error.to_string())
        }
        other => StoreFault::new(STORE, operation, cause(&other))
            .with_source(other)
            .into(),
    })
}

/// Maps the error of an insert: a unique violation (the primary key, the only unique
/// constraint of the table) is the typed duplicate-id error.
pub(crate) fn map_insert_error(operation: &'static str, error: sqlx::Error) -> Error {
    narvik_sqlx::error::map_insert_error(
        operation,
        error,
        |error| {
            matches!(error, sqlx::Error::Database(database_error)
                if database_error.is_unique_violation())
        },
        map_sqlx_error,
    )
}

/// A few words on what went wrong, for the message a person reads; the details stay in the
/// driver's error, the fault's source.
fn cause(error: &sqlx::Error) -> String {
    if let Some(words) = narvik_sqlx::error::connection_cause(error) {
        return words.to_owned();
    }
    match error {
        sqlx::Error::Database(database_error) => {
            let code = database_error.code();
            match code.as_deref() {
                Some("57014") => "statement cancelled (statement_timeout)".to_owned(),
                Some("57P01" | "57P02" | "57P03") => {
                    "the server is shutting down or starting up".to_owned()
                }
                Some("53300") => "too many connections".to_owned(),
                Some("42P01") => "the session table does not exist (run migrate)".to_owned(),
                Some(code) if code.starts_with("28") => "authentication failed".to_owned(),
                Some(code) if code.starts_with("08") => "connection failed".to_owned(),
                Some(code) => format!("server error {code}"),
                None => "server error".to_owned(),
            }
        }
        _ => "driver error".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use sqlx::error::{DatabaseError, ErrorKind};

    use super::*;

    /// A server error with a chosen SQLSTATE and a message that says the opposite, to prove the
    /// mapping reads the code only.
    #[derive(Debug)]
    struct ServerError {
        code: &'static str,
        kind: fn() -> ErrorKind,
    }

    impl std::fmt::Display for ServerError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.message())
        }
    }

    impl std::error::Error for ServerError {}

    impl DatabaseError for ServerError {
        fn message(&self) -> &str {
            "duplicate key value violates unique constraint; invalid byte sequence"
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
            (self.kind)()
        }
    }

    fn server_error(code: &'static str, kind: fn() -> ErrorKind) -> sqlx::Error {
        sqlx::Error::Database(Box::new(ServerError { code, kind }))
    }

    #[test]
    fn server_errors_map_by_sqlstate_not_by_message() {
        // 22021: NUL or a bad byte in text; 22P05: `\u0000` in jsonb; 22008: a time out of range.
        for code in ["22021", "22P05", "22008"] {
            let error = map_insert_error("save_session", server_error(code, || ErrorKind::Other));
            assert!(matches!(error, Error::InvalidData(_)), "{code}: {error:?}");
        }
        let error = map_insert_error(
            "save_session",
            server_error("23505", || ErrorKind::UniqueViolation),
        );
        assert!(matches!(error, Error::DuplicateId), "{error:?}");
        // A lost connection and an administrator's shutdown are unavailable.
        for code in ["08006", "57P01"] {
            let error = map_sqlx_error("fetch_session", server_error(code, || ErrorKind::Other));
            assert!(
                matches!(error, Error::Unavailable { .. }),
                "{code}: {error:?}"
            );
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
            "the session store is unavailable: narvik-postgres delete_session: connection refused"
        );
        let fault = narvik_core::deadline::fault_of(&error).expect("a store fault");
        assert_eq!(fault.store(), STORE);
        assert_eq!(fault.operation(), "delete_session");
        assert_eq!(fault.bound(), None);
        let source = std::error::Error::source(fault).expect("the driver error is kept");
        assert!(source.to_string().contains(&"x".repeat(300)));

        // The server's message (which may quote data) stays out of the message.
        let cancelled = map_sqlx_error("fetch_session", server_error("57014", || ErrorKind::Other));
        assert_eq!(
            cancelled.to_string(),
            "the session store is unavailable: narvik-postgres fetch_session: statement \
             cancelled (statement_timeout)"
        );
        let other = map_sqlx_error("fetch_session", server_error("XX000", || ErrorKind::Other));
        assert!(
            other
                .to_string()
                .ends_with("fetch_session: server error XX000"),
            "{other}"
        );
    }
}
