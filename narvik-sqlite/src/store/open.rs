//! Opening a database for the store: a file, with WAL, `synchronous = FULL` and the busy
//! timeout, or a private database in memory.

use std::path::Path;
use std::sync::Mutex;

use narvik_core::Result;
// Named by the docs only.
#[cfg(doc)]
use narvik_core::Error;
use narvik_sqlx::Timeouts;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::ConnectOptions;

use super::SqliteStore;
use crate::config::SqliteConfig;
use crate::connect::connect_pool;
use crate::error::{map_sqlx_error, STORE};

impl SqliteStore {
    /// sqlx's pool options with narvik's bounds: an acquire timeout of
    /// [`SqliteStore::DEFAULT_ACQUIRE_TIMEOUT`] instead of sqlx's 30 s.
    pub fn pool_options() -> SqlitePoolOptions {
        SqlitePoolOptions::new().acquire_timeout(Self::DEFAULT_ACQUIRE_TIMEOUT)
    }

    /// sqlx's connect options for the database file at `path`, with narvik's settings: the
    /// file is created when missing (its directory is not), `journal_mode = WAL` (readers
    /// never wait for the writer, a commit writes once), `synchronous = FULL` (a commit is on
    /// disk before it is acknowledged, also across a power loss; see the README for `NORMAL`)
    /// and `busy_timeout` = [`SqliteStore::DEFAULT_BUSY_TIMEOUT`]. Change any of them on the
    /// returned options.
    pub fn connect_options(path: impl AsRef<Path>) -> SqliteConnectOptions {
        SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Self::DEFAULT_BUSY_TIMEOUT)
    }

    /// Opens (creating it when missing) the database file at `path` with
    /// [`SqliteStore::connect_options`]: a write pool of one connection and a read pool of
    /// [`SqliteStore::DEFAULT_READ_CONNECTIONS`], both with [`SqliteStore::pool_options`],
    /// and the default names and bounds. `":memory:"` is [`SqliteStore::open_in_memory`].
    ///
    /// Opens the writer's connection first, so that a directory that does not exist or cannot
    /// be written, or a file that is not a database, fails here, with
    /// [`Error::Unavailable`] saying so.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if path == Path::new(":memory:") {
            return Self::open_in_memory().await;
        }
        let options = Self::connect_options(path);
        // The writer first: it switches a new file to WAL, which needs the only connection.
        // Another instance switching the same new file to WAL can refuse these connections
        // at once (see `connect::connect_pool`): retried within the busy timeout.
        let writer = connect_pool(
            Self::pool_options().max_connections(1),
            options.clone(),
            Self::DEFAULT_BUSY_TIMEOUT,
        )
        .await?;
        let readers = connect_pool(
            Self::pool_options().max_connections(Self::DEFAULT_READ_CONNECTIONS),
            options,
            Self::DEFAULT_BUSY_TIMEOUT,
        )
        .await?;
        Ok(Self::from_parts(
            readers,
            writer,
            SqliteConfig::default(),
            Self::DEFAULT_TIMEOUTS,
            None,
        ))
    }

    /// A new, empty database in memory, private to this store and its clones, gone when the
    /// last of them is dropped. For tests, and for applications that want SQLite's semantics
    /// without a file (sessions do not survive a restart).
    ///
    /// One pool of one connection serves reads and writes: an in-memory database has no I/O
    /// to overlap, and one connection needs no shared-cache table locks (which SQLite would
    /// otherwise report to a second connection as `SQLITE_LOCKED`, without waiting). A second
    /// connection to the same named, shared-cache database is held open and never used, so
    /// the database lives on while the pool replaces its connection.
    pub async fn open_in_memory() -> Result<Self> {
        Self::in_memory_with(SqliteConfig::default(), Self::DEFAULT_TIMEOUTS).await
    }

    async fn in_memory_with(config: SqliteConfig, timeouts: Timeouts) -> Result<Self> {
        let name = format!("file:narvik-sqlite-memory-{:016x}", rand::random::<u64>());
        let options = SqliteConnectOptions::new()
            .filename(name)
            .in_memory(true)
            .shared_cache(true)
            .busy_timeout(Self::DEFAULT_BUSY_TIMEOUT);
        let keeper = options
            .connect()
            .await
            .map_err(|error| map_sqlx_error("connect", error))?;
        let pool = narvik_sqlx::connect_pool(
            STORE,
            Self::pool_options()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None),
            options,
            map_sqlx_error,
        )
        .await?;
        Ok(Self::from_parts(
            pool.clone(),
            pool,
            config,
            timeouts,
            Some(Mutex::new(keeper)),
        ))
    }
}
