//! sqlx errors onto narvik's typed errors, by kind and SQLSTATE, never by message text.

use narvik_core::Error;

/// SQLSTATE class 22, "data exception": a value the server refuses to store, such as a NUL
/// character in a user id or a `\u0000` escape in `jsonb`.
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
