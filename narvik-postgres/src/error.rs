//! sqlx errors onto narvik's typed errors, by kind and SQLSTATE, never by message text.

use narvik_core::Error;

/// SQLSTATE class 22, "data exception": a value the server refuses to store. The store finds
/// NUL characters (22021 in `text`, 22P05 as `\u0000` in `jsonb`) before sending; this is the
/// fallback for what only the server can judge, such as a character a database that is not
/// UTF-8 cannot represent.
const DATA_EXCEPTION_CLASS: &str = "22";

/// Maps a driver error onto [`Error`].
///
/// Decoding failures are corrupt records; values the server refuses are invalid data; a bad
/// connection string is a configuration error; everything else (refused or dropped
/// connections, pool timeouts, TLS failures, server errors) is unavailable, with the driver's
/// error as the cause.
pub(crate) fn map_sqlx_error(error: sqlx::Error) -> Error {
    match error {
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. } => {
            Error::corrupt("a session row does not decode", error)
        }
        sqlx::Error::Encode(source) => Error::InvalidData(source.to_string()),
        sqlx::Error::Configuration(source) => Error::InvalidConfiguration(source.to_string()),
        sqlx::Error::Database(database_error)
            if database_error
                .code()
                .is_some_and(|code| code.starts_with(DATA_EXCEPTION_CLASS)) =>
        {
            Error::InvalidData(database_error.to_string())
        }
        other => Error::unavailable(other),
    }
}

/// Maps the error of an insert: a unique violation (the primary key, the only unique
/// constraint of the table) is the typed duplicate-id error.
pub(crate) fn map_insert_error(error: sqlx::Error) -> Error {
    match &error {
        sqlx::Error::Database(database_error) if database_error.is_unique_violation() => {
            Error::DuplicateId
        }
        _ => map_sqlx_error(error),
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
            let error = map_insert_error(server_error(code, || ErrorKind::Other));
            assert!(matches!(error, Error::InvalidData(_)), "{code}: {error:?}");
        }
        let error = map_insert_error(server_error("23505", || ErrorKind::UniqueViolation));
        assert!(matches!(error, Error::DuplicateId), "{error:?}");
        // A lost connection and an administrator's shutdown are unavailable.
        for code in ["08006", "57P01"] {
            let error = map_sqlx_error(server_error(code, || ErrorKind::Other));
            assert!(
                matches!(error, Error::Unavailable { .. }),
                "{code}: {error:?}"
            );
        }
    }
}
