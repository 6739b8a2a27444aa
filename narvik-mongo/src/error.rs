//! Driver errors mapped onto narvik's typed errors, with a short cause naming the store, the
//! operation and the bound that was hit.

use std::time::{Duration, Instant};

use mongodb::error::{ErrorKind, WriteFailure};
use narvik_core::deadline::{Bound, StoreFault};
use narvik_core::Error;

/// The store's name in every [`StoreFault`] it reports.
pub const STORE_NAME: &str = "narvik-mongo";

/// The server's code for a unique index violation (`E11000 duplicate key error`).
const DUPLICATE_KEY: i32 = 11000;

/// The server's codes for a document over its 16 MiB limit: `BSONObjectTooLarge` (what an
/// update whose result grew too large gets on current servers), and the "resulting document
/// after update is larger than" and "document to upsert is larger than" codes of older ones.
const DOCUMENT_TOO_LARGE: [i32; 3] = [10334, 17419, 17420];

/// The driver's bounds, where the store knows them: it does for a client it built itself
/// ([`MongoStore::connect`](crate::MongoStore::connect)), not for a client of the
/// application's (the driver does not show a client's options), where a fault then reports
/// how long the call waited.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct DriverBounds {
    pub(crate) server_selection: Option<Duration>,
    pub(crate) connect: Option<Duration>,
}

/// One store call under way: what a driver error of it is reported as.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Call {
    operation: &'static str,
    started: Instant,
    bounds: DriverBounds,
}

impl Call {
    pub(crate) fn start(operation: &'static str, bounds: DriverBounds) -> Self {
        Self {
            operation,
            started: Instant::now(),
            bounds,
        }
    }

    /// Maps a driver error from this call.
    ///
    /// A duplicate key is recognised by its code, never by the message text. A document the
    /// driver refuses to send (larger than the server's 16 MiB limit), or one the server
    /// refuses to store for its size (codes [`DOCUMENT_TOO_LARGE`]), is
    /// [`Error::InvalidData`]: retrying cannot help. Everything the driver reports about the
    /// connection or the server (refused, timed out, server selection, command failures) is
    /// [`Error::Unavailable`] with a [`StoreFault`] whose message is one short line and whose
    /// source is the driver error (a server selection error carries a dump of the whole
    /// topology, which belongs in the source chain, not in a log line).
    pub(crate) fn error(self, error: mongodb::error::Error) -> Error {
        if is_duplicate_key(&error) {
            return Error::DuplicateId;
        }
        if let Some(message) = too_large(&error) {
            return Error::InvalidData(format!(
                "the server refused a document beyond its size limit: {message}"
            ));
        }
        match error.kind.as_ref() {
            ErrorKind::BsonDeserialization(_) => Error::corrupt(
                "the server returned a document that is not valid BSON",
                error,
            ),
            ErrorKind::InvalidArgument { .. } | ErrorKind::BsonSerialization(_) => {
                Error::InvalidData(error.to_string())
            }
            _ => self.fault(error).into(),
        }
    }

    /// Maps a driver error from building a client: a malformed URI or option is the caller's
    /// configuration, anything else (an SRV lookup that failed) is the network.
    pub(crate) fn setup_error(self, error: mongodb::error::Error) -> Error {
        match error.kind.as_ref() {
            ErrorKind::InvalidArgument { .. } | ErrorKind::InvalidTlsConfig { .. } => {
                Error::InvalidConfiguration(error.to_string())
            }
            _ => self.fault(error).into(),
        }
    }

    fn fault(self, error: mongodb::error::Error) -> StoreFault {
        let waited = self.started.elapsed();
        let operation = self.operation;
        let fault = match error.kind.as_ref() {
            ErrorKind::ServerSelection { .. } => match self.bounds.server_selection {
                // The driver also fails selection at once when no server could ever suit
                // (an incompatible wire version): that is no timeout.
                Some(limit) if waited < limit => {
                    StoreFault::new(STORE_NAME, operation, "no suitable server")
                }
                limit => StoreFault::bound_hit(
                    STORE_NAME,
                    operation,
                    Bound::ServerSelection,
                    limit.unwrap_or_else(|| round_to_millis(waited)),
                ),
            },
            // The driver has no socket timeout: a timed-out read or write is the connect
            // timeout of the handshake.
            ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
                StoreFault::bound_hit(
                    STORE_NAME,
                    operation,
                    Bound::Connect,
                    self.bounds
                        .connect
                        .unwrap_or_else(|| round_to_millis(waited)),
                )
            }
            ErrorKind::Io(io) => StoreFault::new(
                STORE_NAME,
                operation,
                format!("network error: {}", io.kind()),
            ),
            // The driver interrupts the calls in flight when its monitor or another call finds
            // the server gone or silent (a frozen server: the monitor's connect timeout).
            ErrorKind::ConnectionPoolCleared { .. } => StoreFault::new(
                STORE_NAME,
                operation,
                "connection dropped: the server failed a health check or another call",
            ),
            ErrorKind::Command(command) => StoreFault::new(
                STORE_NAME,
                operation,
                format!("server error {} ({})", command.code, command.code_name),
            ),
            ErrorKind::Write(WriteFailure::WriteConcernError(concern)) => StoreFault::new(
                STORE_NAME,
                operation,
                format!(
                    "write concern not satisfied: error {} ({})",
                    concern.code, concern.code_name
                ),
            ),
            ErrorKind::Write(WriteFailure::WriteError(write)) => {
                StoreFault::new(STORE_NAME, operation, format!("write error {}", write.code))
            }
            ErrorKind::Authentication { .. } => {
                StoreFault::new(STORE_NAME, operation, "authentication failed")
            }
            ErrorKind::DnsResolve { .. } => {
                StoreFault::new(STORE_NAME, operation, "DNS lookup failed")
            }
            ErrorKind::InvalidResponse { .. } => {
                StoreFault::new(STORE_NAME, operation, "invalid reply from the server")
            }
            ErrorKind::Shutdown => {
                StoreFault::new(STORE_NAME, operation, "the client was shut down")
            }
            _ => StoreFault::new(STORE_NAME, operation, "driver error"),
        };
        fault.with_source(error)
    }
}

fn round_to_millis(waited: Duration) -> Duration {
    Duration::from_millis(u64::try_from(waited.as_millis()).unwrap_or(u64::MAX))
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

/// The server's message when `error` is its refusal of a document too large to store.
fn too_large(error: &mongodb::error::Error) -> Option<&str> {
    match error.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(write_error))
            if DOCUMENT_TOO_LARGE.contains(&write_error.code) =>
        {
            Some(&write_error.message)
        }
        ErrorKind::Command(command_error) if DOCUMENT_TOO_LARGE.contains(&command_error.code) => {
            Some(&command_error.message)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use narvik_core::deadline;

    fn io_error(kind: std::io::ErrorKind) -> mongodb::error::Error {
        mongodb::error::Error::from(std::io::Error::new(kind, "x".repeat(300)))
    }

    #[test]
    fn a_timed_out_handshake_names_the_connect_bound_and_keeps_the_driver_error() {
        let call = Call::start(
            "fetch_session",
            DriverBounds {
                server_selection: Some(Duration::from_secs(2)),
                connect: Some(Duration::from_secs(2)),
            },
        );
        let error = call.error(io_error(std::io::ErrorKind::TimedOut));
        assert_eq!(deadline::bound_hit(&error), Some(Bound::Connect));
        assert_eq!(
            error.to_string(),
            "the session store is unavailable: narvik-mongo fetch_session: no answer within 2s (connect timeout)"
        );
        let fault = deadline::fault_of(&error).expect("a store fault");
        assert_eq!(fault.store(), STORE_NAME);
        let source = std::error::Error::source(fault).expect("the driver error");
        assert!(source.to_string().contains(&"x".repeat(300)));
    }

    #[test]
    fn a_refused_connection_is_short_and_hits_no_bound() {
        let call = Call::start("save_session", DriverBounds::default());
        let error = call.error(io_error(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(deadline::bound_hit(&error), None);
        assert_eq!(
            error.to_string(),
            "the session store is unavailable: narvik-mongo save_session: network error: connection refused"
        );
    }

    #[test]
    fn a_document_the_server_finds_too_large_is_invalid_data() {
        use mongodb::bson::{doc, from_document};
        use mongodb::error::{CommandError, WriteError};
        let message = "Resulting document after update is larger than 16777216";
        for code in DOCUMENT_TOO_LARGE {
            let write: WriteError =
                from_document(doc! { "code": code, "errmsg": message }).expect("a write error");
            let command: CommandError = from_document(
                doc! { "code": code, "codeName": "BSONObjectTooLarge", "errmsg": message },
            )
            .expect("a command error");
            for error in [
                mongodb::error::Error::from(ErrorKind::Write(WriteFailure::WriteError(write))),
                mongodb::error::Error::from(ErrorKind::Command(command)),
            ] {
                match Call::start("update_session_data", DriverBounds::default()).error(error) {
                    Error::InvalidData(reason) => assert!(reason.contains(message), "{reason}"),
                    other => panic!("{code}: expected InvalidData, got {other:?}"),
                }
            }
        }
        // Another write error is still the server's trouble.
        let other: WriteError =
            from_document(doc! { "code": 121, "errmsg": "Document failed validation" })
                .expect("a write error");
        assert!(matches!(
            Call::start("update_session_data", DriverBounds::default()).error(
                mongodb::error::Error::from(ErrorKind::Write(WriteFailure::WriteError(other)))
            ),
            Error::Unavailable { .. }
        ));
    }

    #[test]
    fn an_unknown_connect_bound_reports_the_time_waited() {
        let call = Call::start("delete_session", DriverBounds::default());
        let error = call.error(io_error(std::io::ErrorKind::TimedOut));
        assert_eq!(deadline::bound_hit(&error), Some(Bound::Connect));
        assert!(error.to_string().ends_with("(connect timeout)"), "{error}");
    }
}
