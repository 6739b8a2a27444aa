//! How the store is set up: where the sessions live (database and collection), how long a
//! call may take, and how durable a write must be before it is acknowledged.

use std::time::Duration;

use mongodb::options::{Acknowledgment, WriteConcern};
use narvik_core::{Error, Result};

/// The database used when neither the configuration nor the connection string names one.
pub const DEFAULT_DATABASE: &str = "narvik";

/// The collection used unless configured otherwise.
pub const DEFAULT_COLLECTION: &str = "sessions";

/// How long a call may wait for a server it can use (`serverSelectionTimeoutMS`; the driver's
/// own default is 30 s). While the server is down, this is how long each call takes to fail.
pub const DEFAULT_SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(2);

/// How long opening a connection may take, TCP and handshake (`connectTimeoutMS`; the driver's
/// own default is 10 s). The driver's monitor also gives up on a silent server after it.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long one store call may take end to end, whatever it waits for: the driver has no
/// socket timeout, so without it a call on a frozen server hangs as long as the freeze lasts.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the change stream behind pushed invalidations may leave one `getMore` unanswered
/// before the store counts the server as silent (frozen, or cut off without the connection
/// closing) and reports the channel lost. The server answers a quiet stream every second
/// ([`CHANGE_STREAM_MAX_AWAIT`]), so this is that second plus room for the round trip.
pub const DEFAULT_CHANGE_STREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the server holds a change stream's `getMore` on a quiet collection before it
/// answers with an empty batch (the `getMore`'s `maxTimeMS`): the rhythm in which the store
/// learns that the server is still there.
pub const CHANGE_STREAM_MAX_AWAIT: Duration = Duration::from_secs(1);

/// How often the driver's monitor checks the server when no call asks it to
/// (`heartbeatFrequencyMS`; the driver's own default is 10 s): the time within which an idle
/// store notices a server that went away or came back, and reconnects.
pub const DEFAULT_HEARTBEAT_FREQUENCY: Duration = Duration::from_secs(1);

/// The write concern narvik writes with unless told otherwise: `{ w: "majority", j: true }`.
///
/// On a standalone server this is "written to the on-disk journal" (the server's definition of
/// `majority` there), on a replica set "journaled on a majority of the voting members". Either
/// way an acknowledged logout survives a crash of the server (kill -9, power loss) and, on a
/// replica set, a failover: a write acknowledged by the primary alone can be rolled back, and a
/// rolled-back delete is a logged-out session that is valid again.
pub fn default_write_concern() -> WriteConcern {
    WriteConcern::builder()
        .w(Acknowledgment::Majority)
        .journal(true)
        .build()
}

/// Where the sessions live and the store's bounds and durability. Every setting has a default
/// that is safe and bounded; see the crate's "Bounds and faults" section for what each risks.
///
/// ```
/// use std::time::Duration;
/// use narvik_mongo::MongoStoreConfig;
/// let config = MongoStoreConfig::default()
///     .database("app")
///     .collection("web_sessions")
///     .call_timeout(Duration::from_secs(3));
/// assert_eq!(config.collection_name(), "web_sessions");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct MongoStoreConfig {
    database: Option<String>,
    collection: String,
    pub(crate) server_selection_timeout: Option<Duration>,
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) call_timeout: Duration,
    pub(crate) change_stream_timeout: Duration,
    pub(crate) write_concern: Option<WriteConcern>,
}

impl Default for MongoStoreConfig {
    fn default() -> Self {
        Self {
            database: None,
            collection: DEFAULT_COLLECTION.to_owned(),
            server_selection_timeout: None,
            connect_timeout: None,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            change_stream_timeout: DEFAULT_CHANGE_STREAM_TIMEOUT,
            write_concern: None,
        }
    }
}

impl MongoStoreConfig {
    /// Uses the database `name`. Without it, the store uses the database of the connection
    /// string (`mongodb://host/NAME`), else [`DEFAULT_DATABASE`].
    pub fn database(mut self, name: impl Into<String>) -> Self {
        self.database = Some(name.into());
        self
    }

    /// Uses the collection `name` (default [`DEFAULT_COLLECTION`]).
    pub fn collection(mut self, name: impl Into<String>) -> Self {
        self.collection = name.into();
        self
    }

    /// How long a call may wait for a usable server before it fails with the
    /// server selection bound. Wins over the URI's `serverSelectionTimeoutMS`; without either,
    /// [`DEFAULT_SERVER_SELECTION_TIMEOUT`]. Only for clients the store builds
    /// ([`MongoStore::connect`](crate::MongoStore::connect)): a client of your own keeps its
    /// options, and [`MongoStore::from_client`](crate::MongoStore::from_client) refuses this
    /// setting rather than ignore it.
    pub fn server_selection_timeout(mut self, limit: Duration) -> Self {
        self.server_selection_timeout = Some(limit);
        self
    }

    /// How long opening a connection may take. Wins over the URI's `connectTimeoutMS`; without
    /// either, [`DEFAULT_CONNECT_TIMEOUT`]. Only for clients the store builds, like
    /// [`server_selection_timeout`](Self::server_selection_timeout).
    pub fn connect_timeout(mut self, limit: Duration) -> Self {
        self.connect_timeout = Some(limit);
        self
    }

    /// How long one store call may take end to end (default [`DEFAULT_CALL_TIMEOUT`]). Past it
    /// the call is cancelled (the driver closes the connection it was using) and fails with
    /// the call deadline bound. Keep it above the server selection timeout, or a call on a
    /// server that is down reports the call deadline instead of the server selection bound.
    pub fn call_timeout(mut self, limit: Duration) -> Self {
        self.call_timeout = limit;
        self
    }

    /// How long the change stream behind pushed invalidations may leave one `getMore`
    /// unanswered before the channel counts as lost (default
    /// [`DEFAULT_CHANGE_STREAM_TIMEOUT`]): the longest a frozen or cut-off server goes
    /// unnoticed by the near caches. It must be more than [`CHANGE_STREAM_MAX_AWAIT`], the time
    /// the server holds a `getMore` on a quiet collection. Raise it for a server that is often
    /// slower than that to answer (every false loss flushes the caches).
    pub fn change_stream_timeout(mut self, limit: Duration) -> Self {
        self.change_stream_timeout = limit;
        self
    }

    /// Writes (saves, extensions, deletes) with `write_concern`, exactly as given. Without it,
    /// the store takes the write concern of the client (the URI's `w`, `journal`,
    /// `wtimeoutMS`, or your `ClientOptions`) and fills in whichever of `w` and `journal` is
    /// unset from [`default_write_concern`]. For what each choice risks, see the crate's
    /// "Bounds and faults" section.
    pub fn write_concern(mut self, write_concern: WriteConcern) -> Self {
        self.write_concern = Some(write_concern);
        self
    }

    /// The configured database name, if any.
    pub fn database_name(&self) -> Option<&str> {
        self.database.as_deref()
    }

    /// The configured collection name.
    pub fn collection_name(&self) -> &str {
        &self.collection
    }

    /// Rejects names the server would refuse and bounds that make no sense, so that a typo
    /// fails at start-up and not on the first login.
    pub(crate) fn validate(&self) -> Result<()> {
        if let Some(database) = &self.database {
            if database.is_empty()
                || database.len() > 63
                || database.contains(['/', '\\', '.', ' ', '"', '$', '\0'])
            {
                return Err(Error::InvalidConfiguration(format!(
                    "`{database}` is not a valid MongoDB database name"
                )));
            }
        }
        let collection = &self.collection;
        if collection.is_empty()
            || collection.contains(['$', '\0'])
            || collection.starts_with("system.")
        {
            return Err(Error::InvalidConfiguration(format!(
                "`{collection}` is not a valid MongoDB collection name"
            )));
        }
        for (name, limit) in [
            ("server_selection_timeout", self.server_selection_timeout),
            ("connect_timeout", self.connect_timeout),
            ("call_timeout", Some(self.call_timeout)),
        ] {
            if limit.is_some_and(|limit| limit.is_zero()) {
                return Err(Error::InvalidConfiguration(format!(
                    "the MongoDB store's {name} must be more than zero"
                )));
            }
        }
        if self.change_stream_timeout <= CHANGE_STREAM_MAX_AWAIT {
            return Err(Error::InvalidConfiguration(format!(
                "the MongoDB store's change_stream_timeout must be more than the {}s a quiet \
                 change stream waits for its next event",
                CHANGE_STREAM_MAX_AWAIT.as_secs()
            )));
        }
        Ok(())
    }
}

/// The write concern the store writes with: `configured` as given, else `inherited` (the
/// client's, database's or collection's) with `w` and `journal` filled in from
/// [`default_write_concern`] where unset. An unacknowledged `w: 0` gets no journal: the two
/// cannot be combined.
pub(crate) fn effective_write_concern(
    configured: Option<&WriteConcern>,
    inherited: Option<&WriteConcern>,
) -> WriteConcern {
    if let Some(configured) = configured {
        return configured.clone();
    }
    let mut write_concern = inherited.cloned().unwrap_or_default();
    let default = default_write_concern();
    if write_concern.w.is_none() {
        write_concern.w = default.w;
    }
    let unacknowledged = write_concern.w == Some(Acknowledgment::Nodes(0));
    if write_concern.journal.is_none() && !unacknowledged {
        write_concern.journal = default.journal;
    }
    write_concern
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_names_the_server_would_refuse() {
        for config in [
            MongoStoreConfig::default().database(""),
            MongoStoreConfig::default().database("a.b"),
            MongoStoreConfig::default().database("a b"),
            MongoStoreConfig::default().collection(""),
            MongoStoreConfig::default().collection("a$b"),
            MongoStoreConfig::default().collection("system.users"),
        ] {
            assert!(
                matches!(config.validate(), Err(Error::InvalidConfiguration(_))),
                "{config:?} was accepted"
            );
        }
        for config in [
            MongoStoreConfig::default().call_timeout(Duration::ZERO),
            MongoStoreConfig::default().connect_timeout(Duration::ZERO),
            MongoStoreConfig::default().server_selection_timeout(Duration::ZERO),
        ] {
            assert!(
                matches!(config.validate(), Err(Error::InvalidConfiguration(_))),
                "{config:?} was accepted"
            );
        }
        assert!(MongoStoreConfig::default().validate().is_ok());
        assert!(MongoStoreConfig::default()
            .database("app_1")
            .collection("web.sessions")
            .validate()
            .is_ok());
    }

    #[test]
    fn a_change_stream_timeout_must_outlast_a_quiet_getmore() {
        for limit in [Duration::ZERO, CHANGE_STREAM_MAX_AWAIT] {
            assert!(matches!(
                MongoStoreConfig::default()
                    .change_stream_timeout(limit)
                    .validate(),
                Err(Error::InvalidConfiguration(_))
            ));
        }
        assert!(MongoStoreConfig::default()
            .change_stream_timeout(CHANGE_STREAM_MAX_AWAIT + Duration::from_millis(1))
            .validate()
            .is_ok());
    }
}

#[cfg(test)]
mod write_concern_tests {
    use super::*;

    fn concern(w: Option<Acknowledgment>, journal: Option<bool>) -> WriteConcern {
        let mut write_concern = WriteConcern::default();
        write_concern.w = w;
        write_concern.journal = journal;
        write_concern
    }

    #[test]
    fn nothing_set_is_journaled_majority() {
        let effective = effective_write_concern(None, None);
        assert_eq!(effective, default_write_concern());
        assert_eq!(effective.w, Some(Acknowledgment::Majority));
        assert_eq!(effective.journal, Some(true));
    }

    #[test]
    fn the_clients_settings_are_kept_and_only_the_unset_ones_filled_in() {
        let inherited = concern(Some(Acknowledgment::Nodes(1)), None);
        assert_eq!(
            effective_write_concern(None, Some(&inherited)),
            concern(Some(Acknowledgment::Nodes(1)), Some(true))
        );
        let inherited = concern(None, Some(false));
        assert_eq!(
            effective_write_concern(None, Some(&inherited)),
            concern(Some(Acknowledgment::Majority), Some(false))
        );
        let mut with_timeout = WriteConcern::default();
        with_timeout.w_timeout = Some(Duration::from_secs(1));
        let effective = effective_write_concern(None, Some(&with_timeout));
        assert_eq!(effective.w_timeout, Some(Duration::from_secs(1)));
        assert_eq!(effective.journal, Some(true));
    }

    #[test]
    fn unacknowledged_writes_get_no_journal() {
        let inherited = concern(Some(Acknowledgment::Nodes(0)), None);
        assert_eq!(
            effective_write_concern(None, Some(&inherited)),
            concern(Some(Acknowledgment::Nodes(0)), None)
        );
    }

    #[test]
    fn the_configured_write_concern_is_used_as_given() {
        let configured = concern(Some(Acknowledgment::Nodes(1)), None);
        let inherited = concern(Some(Acknowledgment::Majority), Some(true));
        assert_eq!(
            effective_write_concern(Some(&configured), Some(&inherited)),
            configured
        );
    }
}
