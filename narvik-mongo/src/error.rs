//! Driver errors mapped onto narvik's typed errors.

use mongodb::error::{ErrorKind, WriteFailure};
use narvik_core::Error;

/// The server's code for a unique index violation (`E11000 duplicate key error`).
const DUPLICATE_KEY: i32 = 11000;

/// Maps a driver error from a store operation.
///
/// A duplicate key is recognised by its code, never by the message text. A document the
/// driver refuses to send (larger than the server's 16 MiB limit) is [`Error::InvalidData`]:
/// retrying cannot help. Everything the driver reports about the connection or the server
/// (refused, timed out, server selection, command failures) is [`Error::Unavailable`] with
/// the driver error as its source, so that the caller can retry later.
pub(crate) fn from_driver(error: mongodb::error::Error) -> Error {
    if is_duplicate_key(&error) {
        return Error::DuplicateId;
    }
    match error.kind.as_ref() {
        ErrorKind::BsonDeserialization(_) => Error::corrupt(
            "the server returned a document that is not valid BSON",
            error,
        ),
        ErrorKind::InvalidArgument { .. } | ErrorKind::BsonSerialization(_) => {
            Error::InvalidData(error.to_string())
        }
        _ => Error::unavailable(error),
    }
}

/// Maps a driver error from building a client: a malformed URI or option is the caller's
/// configuration, anything else (an SRV lookup that failed) is the network.
pub(crate) fn from_driver_setup(error: mongodb::error::Error) -> Error {
    match error.kind.as_ref() {
        ErrorKind::InvalidArgument { .. } | ErrorKind::InvalidTlsConfig { .. } => {
            Error::InvalidConfiguration(error.to_string())
        }
        _ => Error::unavailable(error),
    }
}

fn is_duplicate_key(error: &mongodb::error::Error) -> bool {
    match error.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(write_error)) => {
            write_error.code == DUPLICATE_KEY
        }
        ErrorKind::Command(command_error) => command_error.code == DUPLICATE_KEY,
        ErrorKind::InsertMany(insert_many) => insert_many
            .write_errors
            .iter()
            .flatten()
            .any(|write_error| write_error.code == DUPLICATE_KEY),
        _ => false,
    }
}
