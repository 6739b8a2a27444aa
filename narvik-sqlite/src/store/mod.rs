// Over 400 lines in one file: every call of the store beside the one SQL statement it runs
// (built in `statements`), so that each can be checked against the other.
//! [`SqliteStore`]: the storage contract, one statement per call (saves that overlap share a
//! commit: `group_commit`).

mod group_commit;
mod millis;
mod open;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnection, SqlitePool, SqliteRow};
use sqlx::{AssertSqlSafe, Row, SqlSafeStr as _, SqlStr};
use time::OffsetDateTime;

// The bounds the docs name; the code reaches them through narvik-sqlx.
#[cfg(doc)]
use narvik_core::deadline::Bound;
use narvik_core::time_util::truncate_to_millis;
use narvik_core::{Capabilities, Error, Result, SessionData, SessionRecord, SessionStore};
use narvik_sqlx::columns::{
    data_version_column, data_version_from_column, lifetime_column, lifetime_from_column,
};
use narvik_sqlx::{Calls, Cancelled, MapError, Statements, Timeouts};

// The migrations stamp their bookkeeping rows in the stored form too.
use self::group_commit::{SaveQueue, SaveRow};
pub(crate) use self::millis::millis;
use self::millis::{from_millis, wall_clock_now};
use crate::config::SqliteConfig;
use crate::error::{map_sqlx_error, STORE};

/// A narvik session store on SQLite: a database file, or a database in memory.
///
/// Cheap to clone: clones share the pools. Open a file with [`SqliteStore::open`] (WAL mode,
/// `busy_timeout`, `synchronous = FULL`; see the crate's README), a database in memory with
/// [`SqliteStore::open_in_memory`], or wrap the application's pool with [`SqliteStore::new`]
/// or [`SqliteStore::builder`]; create the table with [`SqliteStore::migrate`] (feature
/// `migrate`, on by default).
///
/// **Capabilities:** [`Capabilities::ALL`]. Every optional call is implemented;
/// [`fetch_session`](SessionStore::fetch_session) returns a record even after its expiry (the
/// engine judges it and deletes it); a record saved already expired is kept until the purge;
/// the purge reports exactly the rows it deleted.
///
/// **Concurrency.** SQLite has one writer at a time per database. A store from
/// [`SqliteStore::open`] writes through a pool of one connection, so the application's own
/// writes queue in the pool (first come, first served) instead of spinning in SQLite's busy
/// handler, and reads through a pool of [`SqliteStore::DEFAULT_READ_CONNECTIONS`], which WAL
/// lets run beside the writer. Writers in other processes on the same file wait up to the
/// `busy_timeout`. Saves that arrive while the writer is busy are committed together, in one
/// transaction, so that concurrent sign-ins share an fsync; each still gets its own answer.
///
/// **Time.** The per-user listing and the purge filter on the `now` the engine hands down;
/// [`update_session_expiry`](SessionStore::update_session_expiry) refuses to extend a record
/// that has expired by the application's wall clock (`OffsetDateTime::now_utc()`), the clock
/// the engine's default [`SystemClock`](narvik_core::SystemClock) reads.
///
/// **Bounded time.** Every call fails with [`Error::Unavailable`] rather than wait past its
/// bounds: a connection from the pool within [`SqliteStore::DEFAULT_ACQUIRE_TIMEOUT`] (2 s),
/// the whole call within [`SqliteStore::DEFAULT_CALL_TIMEOUT`] (5 s), and a lock held by
/// another writer within [`SqliteStore::DEFAULT_BUSY_TIMEOUT`] (4 s, below the call deadline,
/// so that the statement itself gives up, typed, before the call is cut off).
///
/// **Values SQLite is not given.** A NUL character (U+0000) in a session id or user id is
/// [`Error::InvalidData`] at save, as in every narvik SQL store (SQLite's string functions
/// stop at a NUL); nothing is stored. The data is kept as JSON text byte for byte, so numbers
/// come back with the same kind and bits.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    readers: SqlitePool,
    writer: SqlitePool,
    config: SqliteConfig,
    sql: Statements,
    /// `update_session_data`'s statement ([`Statements`] is shared with stores without it).
    update_data: SqlStr,
    calls: Calls,
    /// The saves waiting to be committed together (see `group_commit`).
    saves: Arc<SaveQueue>,
    /// For a database in memory: one connection that is never used, only held. A shared-cache
    /// in-memory database lives as long as one connection to it is open; this one keeps it
    /// alive while the pool closes and reopens its own.
    _keeper: Option<Mutex<SqliteConnection>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("config", &self.inner.config)
            .field("acquire_timeout", &self.inner.calls.timeouts.acquire)
            .field("call_timeout", &self.inner.calls.timeouts.call)
            .field("in_memory", &self.inner._keeper.is_some())
            .finish_non_exhaustive()
    }
}

/// The columns of a record: the shared five, then migration 2's.
const COLUMNS: &str = "id, user_id, expires_at, created_at, data, lifetime_ms, data_version";

/// `update_session_data`'s SQL: one conditional statement, so the compare of the version and
/// the expiry and the write are one atomic step.
fn update_data_statement(config: &SqliteConfig) -> SqlStr {
    let table = config.table().quoted();
    AssertSqlSafe(format!(
        "UPDATE {table} SET data = ?1, data_version = data_version + 1 \
         WHERE id = ?2 AND data_version = ?3 AND expires_at > ?4"
    ))
    .into_sql_str()
}

/// The SQL of every call with the configured table name.
fn statements(config: &SqliteConfig) -> Statements {
    let table = config.table().quoted();
    let sql = |text: String| AssertSqlSafe(text).into_sql_str();
    let columns = COLUMNS;
    Statements {
        insert: sql(format!(
            "INSERT INTO {table} ({columns}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
        )),
        select: sql(format!("SELECT {columns} FROM {table} WHERE id = ?1")),
        // `expires_at > ?3` (the wall clock): an expired record, purged or not, is as good
        // as missing and is never extended back to life.
        update_expiry: sql(format!(
            "UPDATE {table} SET expires_at = ?2 WHERE id = ?1 AND expires_at > ?3"
        )),
        delete: sql(format!("DELETE FROM {table} WHERE id = ?1")),
        select_for_user: sql(format!(
            "SELECT {columns} FROM {table} WHERE user_id = ?1 AND expires_at > ?2"
        )),
        delete_for_user: sql(format!("DELETE FROM {table} WHERE user_id = ?1")),
        // Bounded, so that a purge of millions of rows never holds the write lock for
        // long. The inner SELECT reads rowids straight from the expiry index (it covers
        // them), the DELETE removes those rows where they lie: the cost follows the
        // expired rows. (`DELETE ... LIMIT` needs a compile option SQLite leaves off.)
        purge_batch: sql(format!(
            "DELETE FROM {table} WHERE rowid IN (\
               SELECT rowid FROM {table} WHERE expires_at <= ?1 LIMIT ?2)"
        )),
    }
}

impl SqliteStore {
    /// The longest a call waits for a connection from the pool unless configured otherwise,
    /// opening one included. Also the acquire timeout of [`SqliteStore::pool_options`].
    pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);
    /// The longest a call takes, end to end, unless configured otherwise.
    pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);
    /// Both default bounds, for the store and its builder.
    const DEFAULT_TIMEOUTS: Timeouts = Timeouts {
        acquire: Self::DEFAULT_ACQUIRE_TIMEOUT,
        call: Self::DEFAULT_CALL_TIMEOUT,
    };
    /// How long a statement waits for a lock another connection holds (SQLite's
    /// `busy_timeout`), set by [`SqliteStore::connect_options`]: below the call deadline, so a
    /// database locked by another writer ends the statement with a typed "locked" error and
    /// the connection stays usable.
    pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(4);
    /// Connections of the read pool of [`SqliteStore::open`]. WAL lets readers run beside the
    /// one writer; a read of one session takes microseconds, so a few are plenty.
    pub const DEFAULT_READ_CONNECTIONS: u32 = 4;

    /// A store on `pool` (used for reads and writes) with the default table
    /// (`narvik_sessions`) and time bounds. Build the pool from
    /// [`SqliteStore::pool_options`] and [`SqliteStore::connect_options`] to get WAL and the
    /// `busy_timeout`; for a database in memory use [`SqliteStore::open_in_memory`].
    pub fn new(pool: SqlitePool) -> Self {
        Self::from_parts(
            pool.clone(),
            pool,
            SqliteConfig::default(),
            Self::DEFAULT_TIMEOUTS,
            None,
        )
    }

    /// A builder for a store on `pool` with a custom table, purge batch, write pool or time
    /// bounds.
    pub fn builder(pool: SqlitePool) -> SqliteStoreBuilder {
        SqliteStoreBuilder {
            readers: pool.clone(),
            writer: pool,
            table: SqliteConfig::DEFAULT_TABLE.to_owned(),
            purge_batch_size: SqliteConfig::DEFAULT_PURGE_BATCH_SIZE,
            timeouts: Self::DEFAULT_TIMEOUTS,
        }
    }

    fn from_parts(
        readers: SqlitePool,
        writer: SqlitePool,
        config: SqliteConfig,
        timeouts: Timeouts,
        keeper: Option<Mutex<SqliteConnection>>,
    ) -> Self {
        let sql = statements(&config);
        let update_data = update_data_statement(&config);
        // SQLite runs a statement to its end in the connection's own thread, so a cancelled
        // call leaves the connection usable: back to the pool (see `SqliteStore::call`).
        let calls = Calls {
            store: STORE,
            timeouts,
            cancelled: Cancelled::Return,
        };
        Self {
            inner: Arc::new(Inner {
                readers,
                writer,
                config,
                sql,
                update_data,
                calls,
                saves: Arc::default(),
                _keeper: keeper,
            }),
        }
    }

    /// Creates the session table and its indexes, or brings them up to date. Idempotent, and
    /// safe when several instances start at once: it runs in one `BEGIN IMMEDIATE`
    /// transaction, so they take turns on SQLite's write lock (each waiting up to the
    /// `busy_timeout`). Waits for a connection no longer than the acquire timeout; the
    /// migration itself has no call deadline (an index on a large table takes its time).
    #[cfg(feature = "migrate")]
    #[cfg_attr(docsrs, doc(cfg(feature = "migrate")))]
    pub async fn migrate(&self) -> Result<()> {
        const OPERATION: &str = "migrate";
        let config = &self.inner.config;
        self.inner
            .calls
            .unbounded(
                &self.inner.writer,
                OPERATION,
                map_sqlx_error,
                async |connection| crate::migrate::run(connection, config).await,
            )
            .await
    }

    /// Runs `statement` on a connection of `pool` under the call deadline: the one place the
    /// store's calls are bounded. Driver errors go through `map`.
    ///
    /// A statement cut off by the deadline leaves no half-read socket behind (SQLite runs in
    /// the connection's own thread): sqlx finishes it there and the connection goes back to
    /// the pool, usable. Locks are what could keep it long, and the `busy_timeout` ends that
    /// wait before the deadline.
    async fn call<T>(
        &self,
        operation: &'static str,
        pool: &SqlitePool,
        map: MapError,
        statement: impl AsyncFnOnce(&mut SqliteConnection) -> std::result::Result<T, sqlx::Error>,
    ) -> Result<T> {
        self.inner.calls.call(pool, operation, map, statement).await
    }

    /// The longest a call waits for a connection from the pool.
    pub fn acquire_timeout(&self) -> Duration {
        self.inner.calls.timeouts.acquire
    }

    /// The longest a call takes, end to end.
    pub fn call_timeout(&self) -> Duration {
        self.inner.calls.timeouts.call
    }

    /// The pool the store reads through.
    pub fn read_pool(&self) -> &SqlitePool {
        &self.inner.readers
    }

    /// The pool the store writes through (the read pool, unless one was given to the builder
    /// or the store came from [`SqliteStore::open`]).
    pub fn write_pool(&self) -> &SqlitePool {
        &self.inner.writer
    }

    /// Closes both pools, waiting for calls in flight; later calls fail with
    /// [`Error::Unavailable`]. Dropping the last clone of the store closes them too, without
    /// waiting.
    pub async fn close(&self) {
        self.inner.writer.close().await;
        self.inner.readers.close().await;
    }

    /// The store's table and purge batch size.
    pub fn config(&self) -> &SqliteConfig {
        &self.inner.config
    }

    /// The SQL of each call as this store runs it, by call name: for `EXPLAIN QUERY PLAN`, for
    /// review, and for the tests that prove the indexes are used.
    pub fn statements(&self) -> [(&'static str, &str); 8] {
        let [a, b, c, d, e, f, g] = self.inner.sql.by_call();
        [
            a,
            b,
            c,
            d,
            e,
            f,
            g,
            ("update_session_data", self.inner.update_data.as_str()),
        ]
    }
}

/// Builds a [`SqliteStore`] with custom names, pools or bounds; see [`SqliteStore::builder`].
///
/// ```no_run
/// # async fn example() -> narvik_core::Result<()> {
/// use narvik_sqlite::SqliteStore;
/// let options = SqliteStore::connect_options("sessions.db");
/// let readers = SqliteStore::pool_options().max_connections(8).connect_with(options.clone()).await
///     .map_err(narvik_core::Error::unavailable)?;
/// let writer = SqliteStore::pool_options().max_connections(1).connect_with(options).await
///     .map_err(narvik_core::Error::unavailable)?;
/// let store = SqliteStore::builder(readers)
///     .write_pool(writer)
///     .table("sessions")
///     .build()?;
/// store.migrate().await?;
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct SqliteStoreBuilder {
    readers: SqlitePool,
    writer: SqlitePool,
    table: String,
    purge_batch_size: u32,
    timeouts: Timeouts,
}

impl SqliteStoreBuilder {
    /// The session table (default `narvik_sessions`).
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// A pool for the writes (saves, updates, deletes, purges, migrations) apart from the
    /// reads. One connection is best: SQLite has one writer at a time, and waiting in the
    /// pool's queue is fairer and cheaper than waiting in SQLite's busy handler.
    pub fn write_pool(mut self, pool: SqlitePool) -> Self {
        self.writer = pool;
        self
    }

    /// Rows deleted per statement by the expired purge (default 2,000).
    pub fn purge_batch_size(mut self, rows: u32) -> Self {
        self.purge_batch_size = rows;
        self
    }

    /// The longest a call waits for a connection from the pool (default
    /// [`SqliteStore::DEFAULT_ACQUIRE_TIMEOUT`], 2 s). The pool's own acquire timeout
    /// applies too, whichever is shorter. Past it the call fails with [`Error::Unavailable`]
    /// naming [`Bound::Acquire`].
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.timeouts.acquire = timeout;
        self
    }

    /// The longest a call takes, end to end (default [`SqliteStore::DEFAULT_CALL_TIMEOUT`],
    /// 5 s). Past it the call fails with [`Error::Unavailable`] naming [`Bound::Call`]. The
    /// expired purge is bounded per batch statement, not as a whole. Keep the connections'
    /// `busy_timeout` below it (see [`SqliteStore::connect_options`]).
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.timeouts.call = timeout;
        self
    }

    /// Validates the name and bounds and builds the store; a name that is not a plain
    /// identifier, or a zero timeout, is [`Error::InvalidConfiguration`].
    pub fn build(self) -> Result<SqliteStore> {
        let config = SqliteConfig::new(&self.table, self.purge_batch_size)?;
        self.timeouts.check()?;
        Ok(SqliteStore::from_parts(
            self.readers,
            self.writer,
            config,
            self.timeouts,
            None,
        ))
    }
}
fn record_from_row(operation: &'static str, row: &SqliteRow) -> Result<SessionRecord> {
    let decode = |error| map_sqlx_error(operation, error);
    let time = |column: &str| -> Result<OffsetDateTime> {
        let stored: i64 = row.try_get(column).map_err(decode)?;
        from_millis(stored).ok_or_else(|| {
            Error::corrupt(
                "a session row does not decode",
                format!("{column} = {stored} ms is outside the representable times"),
            )
        })
    };
    let data: &str = row.try_get("data").map_err(decode)?;
    let lifetime = lifetime_from_column(row.try_get("lifetime_ms").map_err(decode)?)?;
    let data_version = data_version_from_column(row.try_get("data_version").map_err(decode)?)?;
    Ok(SessionRecord {
        id: row.try_get("id").map_err(decode)?,
        user_id: row.try_get("user_id").map_err(decode)?,
        expires_at: time("expires_at")?,
        created_at: time("created_at")?,
        // The JSON text as saved, unparsed: the engine decodes it once, into its own type.
        data: SessionData::from_json_text(data),
        lifetime,
        data_version,
    })
}

/// Whether `value` holds a NUL character. No record with such an id or user id can exist, so
/// reads and deletes by one answer without a round trip, and saves refuse it.
fn has_nul(value: &str) -> bool {
    value.contains('\0')
}
#[async_trait]
impl SessionStore for SqliteStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities::ALL
    }

    fn store_name(&self) -> &'static str {
        "sqlite"
    }

    async fn save_session(&self, record: &SessionRecord) -> Result<()> {
        if has_nul(&record.id) || has_nul(&record.user_id) {
            return Err(Error::InvalidData(
                "a session id or user id with a NUL character (U+0000) is not stored by \
                 narvik-sqlite"
                    .into(),
            ));
        }
        let data = record.data.to_json_text()?;
        let lifetime_ms = lifetime_column(record.lifetime)?;
        let data_version = data_version_column(record.data_version)?;
        self.save_in_group(SaveRow {
            id: record.id.clone(),
            user_id: record.user_id.clone(),
            expires_at: millis(truncate_to_millis(record.expires_at)),
            created_at: millis(truncate_to_millis(record.created_at)),
            data: data.into_owned(),
            lifetime_ms,
            data_version,
        })
        .await
    }

    async fn fetch_session(&self, session_id: &str) -> Result<Option<SessionRecord>> {
        if has_nul(session_id) {
            return Ok(None);
        }
        const OPERATION: &str = "fetch_session";
        let select = sqlx::query(self.inner.sql.select.clone()).bind(session_id);
        let row = self
            .call(
                OPERATION,
                &self.inner.readers,
                map_sqlx_error,
                async |connection| select.fetch_optional(connection).await,
            )
            .await?;
        row.as_ref()
            .map(|row| record_from_row(OPERATION, row))
            .transpose()
    }

    async fn update_session_data(
        &self,
        record: &SessionRecord,
        data: &SessionData,
        now: OffsetDateTime,
    ) -> Result<bool> {
        let Ok(version) = i64::try_from(record.data_version) else {
            return Ok(false);
        };
        if has_nul(&record.id) {
            return Ok(false);
        }
        let text = data.to_json_text()?;
        let update = sqlx::query(self.inner.update_data.clone())
            .bind(&*text)
            .bind(&record.id)
            .bind(version)
            .bind(millis(now));
        let done = self
            .call(
                "update_session_data",
                &self.inner.writer,
                map_sqlx_error,
                async |connection| update.execute(connection).await,
            )
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn update_session_expiry(
        &self,
        session_id: &str,
        expires_at: OffsetDateTime,
    ) -> Result<()> {
        if has_nul(session_id) {
            return Ok(());
        }
        // An UPDATE touches existing rows only: an extension racing a logout finds no row and
        // changes nothing. And only live ones, by the wall clock: a record that has expired
        // but is not purged yet stays expired.
        let update = sqlx::query(self.inner.sql.update_expiry.clone())
            .bind(session_id)
            .bind(millis(expires_at))
            .bind(wall_clock_now());
        self.call(
            "update_session_expiry",
            &self.inner.writer,
            map_sqlx_error,
            async |connection| update.execute(connection).await,
        )
        .await?;
        Ok(())
    }

    async fn delete_session(&self, session_id: &str) -> Result<()> {
        if has_nul(session_id) {
            return Ok(());
        }
        let delete = sqlx::query(self.inner.sql.delete.clone()).bind(session_id);
        self.call(
            "delete_session",
            &self.inner.writer,
            map_sqlx_error,
            async |connection| delete.execute(connection).await,
        )
        .await?;
        Ok(())
    }

    async fn fetch_sessions_for_user(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<SessionRecord>> {
        if has_nul(user_id) {
            return Ok(Vec::new());
        }
        const OPERATION: &str = "fetch_sessions_for_user";
        let select = sqlx::query(self.inner.sql.select_for_user.clone())
            .bind(user_id)
            .bind(millis(now));
        let rows = self
            .call(
                OPERATION,
                &self.inner.readers,
                map_sqlx_error,
                async |connection| select.fetch_all(connection).await,
            )
            .await?;
        rows.iter()
            .map(|row| record_from_row(OPERATION, row))
            .collect()
    }

    async fn delete_sessions_for_user(&self, user_id: &str) -> Result<()> {
        if has_nul(user_id) {
            return Ok(());
        }
        let delete = sqlx::query(self.inner.sql.delete_for_user.clone()).bind(user_id);
        self.call(
            "delete_sessions_for_user",
            &self.inner.writer,
            map_sqlx_error,
            async |connection| delete.execute(connection).await,
        )
        .await?;
        Ok(())
    }

    async fn delete_all_expired_sessions(&self, now: OffsetDateTime) -> Result<u64> {
        // One "now" for the whole purge, the engine's. Each batch is a call (and a write
        // transaction) of its own under the deadline: a purge of millions of rows may take
        // longer than one call may, other writers get the lock between batches, and every
        // batch finished stays done if a later one fails. SQLite has one writer at a time,
        // so concurrent purgers take turns and each row is counted by exactly one of them.
        let batch = self.inner.config.purge_batch_size_param();
        let now = millis(now);
        let mut deleted: u64 = 0;
        loop {
            let purge = sqlx::query(self.inner.sql.purge_batch.clone())
                .bind(now)
                .bind(batch);
            let rows = self
                .call(
                    "delete_all_expired_sessions",
                    &self.inner.writer,
                    map_sqlx_error,
                    async |connection| purge.execute(connection).await,
                )
                .await?
                .rows_affected();
            deleted += rows;
            if rows < batch.unsigned_abs() {
                break;
            }
        }
        tracing::Span::current().record("deleted", deleted);
        Ok(deleted)
    }
}
