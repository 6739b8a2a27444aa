// Over 400 lines in one file: every call of the store beside the one SQL statement it runs
// (built in `statements`), so that each can be checked against the other.
//! [`MySqlStore`]: the storage contract, one statement per call.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlPool, MySqlPoolOptions, MySqlRow};
use sqlx::{AssertSqlSafe, Executor as _, Row, SqlSafeStr as _, SqlStr};
use time::OffsetDateTime;

// The bounds and faults the docs name; the code reaches them through narvik-sqlx.
#[cfg(doc)]
use narvik_core::deadline::{Bound, StoreFault};
use narvik_core::time_util::truncate_to_millis;
use narvik_core::{Capabilities, Error, Result, SessionData, SessionRecord, SessionStore};
use narvik_sqlx::columns::{
    data_version_column, data_version_from_column, lifetime_column, lifetime_from_column,
};
use narvik_sqlx::{Calls, Cancelled, MapError, Statements, Timeouts};

use crate::config::MySqlConfig;
use crate::error::{map_insert_error, map_sqlx_error, STORE};

/// A narvik session store on MySQL or MariaDB.
///
/// Cheap to clone: clones share the pool. Build it from the application's pool with
/// [`MySqlStore::new`] or [`MySqlStore::builder`], or from a URL with [`MySqlStore::connect`];
/// create the table with [`MySqlStore::migrate`] (feature `migrate`, on by default).
///
/// **Capabilities:** [`Capabilities::ALL`]. Every optional call is implemented;
/// [`fetch_session`](SessionStore::fetch_session) returns a record even after its expiry (the
/// engine judges it and deletes it); a record saved already expired is kept until the purge;
/// the purge reports exactly the rows it deleted.
///
/// **Time.** The per-user listing and the purge filter on the `now` the engine hands down (so a
/// [`ManualClock`](narvik_core::ManualClock) on the engine governs them); the store holds no
/// clock. [`update_session_expiry`](SessionStore::update_session_expiry) refuses to extend a
/// record that has expired by the application's wall clock (`OffsetDateTime::now_utc()`), the
/// clock the engine's default [`SystemClock`](narvik_core::SystemClock) reads, not by the
/// server's `NOW()`, so that the store and the engine judge expiry on the same clock whatever
/// the skew between the application's hosts and the server.
///
/// **Bounded time.** Every call fails with [`Error::Unavailable`] rather than wait past its
/// bounds: a connection from the pool within [`MySqlStore::DEFAULT_ACQUIRE_TIMEOUT`] (2 s,
/// which covers opening one: TCP connect, TLS, handshake and authentication), the whole call
/// within [`MySqlStore::DEFAULT_CALL_TIMEOUT`] (5 s); the builder changes both. A call cut off
/// by its deadline (or dropped by its caller) closes its connection instead of returning it to
/// the pool. The error's [`StoreFault`] names the store, the call and the bound hit.
///
/// **Values it cannot hold.** A session id longer than [`MySqlStore::MAX_ID_BYTES`], a user id
/// longer than [`MySqlStore::MAX_USER_ID_BYTES`], and times outside `DATETIME`'s years 1000 to
/// 9999 are [`Error::InvalidData`] at save, found before anything is sent. Every other id is
/// kept byte for byte (NUL included), and the data as the exact JSON text written.
#[derive(Clone)]
pub struct MySqlStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: MySqlPool,
    config: MySqlConfig,
    sql: Statements,
    /// `update_session_data`'s statement, which [`Statements`] (shared with the other SQL
    /// stores) has no field for.
    update_data: SqlStr,
    calls: Calls,
}

impl std::fmt::Debug for MySqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MySqlStore")
            .field("config", &self.inner.config)
            .field("acquire_timeout", &self.inner.calls.timeouts.acquire)
            .field("call_timeout", &self.inner.calls.timeouts.call)
            .finish_non_exhaustive()
    }
}

/// The columns every statement reads or writes, in the order the insert binds: the shared
/// [`Statements::COLUMNS`] and this store's two of migration 2.
const COLUMNS: &str = "id, user_id, expires_at, created_at, data, lifetime_ms, data_version";

/// `update_session_data`'s SQL with the configured table name: one conditional statement, so
/// the check (same version, still live by the engine's `now`) and the write are atomic on the
/// server, and a missing or expired row is never created or revived. Only `data` and
/// `data_version` change, so a concurrent expiry extension keeps its effect.
fn update_data_statement(config: &MySqlConfig) -> SqlStr {
    let table = config.qualified_table();
    AssertSqlSafe(format!(
        "UPDATE {table} SET data = ?, data_version = data_version + 1 \
         WHERE id = ? AND data_version = ? AND expires_at > ?"
    ))
    .into_sql_str()
}

/// The SQL of every call with the configured table name.
fn statements(config: &MySqlConfig) -> Statements {
    let table = config.qualified_table();
    let sql = |text: String| AssertSqlSafe(text).into_sql_str();
    let columns = COLUMNS;
    Statements {
        insert: sql(format!(
            "INSERT INTO {table} ({columns}) VALUES (?, ?, ?, ?, ?, ?, ?)"
        )),
        select: sql(format!("SELECT {columns} FROM {table} WHERE id = ?")),
        // `expires_at > ?` (the wall clock): an expired record, purged or not, is as good
        // as missing and is never extended back to life.
        update_expiry: sql(format!(
            "UPDATE {table} SET expires_at = ? WHERE id = ? AND expires_at > ?"
        )),
        delete: sql(format!("DELETE FROM {table} WHERE id = ?")),
        select_for_user: sql(format!(
            "SELECT {columns} FROM {table} WHERE user_id = ? AND expires_at > ?"
        )),
        delete_for_user: sql(format!("DELETE FROM {table} WHERE user_id = ?")),
        // Bounded, so that a purge of millions of rows never holds one giant lock set or
        // one huge transaction (and undo log). Walks the expiry index from the oldest
        // expiry: each statement reads only the rows it deletes.
        purge_batch: sql(format!(
            "DELETE FROM {table} WHERE expires_at <= ? ORDER BY expires_at LIMIT ?"
        )),
    }
}

impl MySqlStore {
    /// The longest a call waits for a connection from the pool unless configured otherwise,
    /// opening one included (TCP connect, TLS, handshake, authentication): sqlx has no connect
    /// timeout of its own, its pool bounds a connect by the acquire deadline. Also the acquire
    /// timeout of [`MySqlStore::pool_options`].
    pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);
    /// The longest a call takes, end to end, unless configured otherwise.
    pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);
    /// Both default bounds, for the store and its builder.
    const DEFAULT_TIMEOUTS: Timeouts = Timeouts {
        acquire: Self::DEFAULT_ACQUIRE_TIMEOUT,
        call: Self::DEFAULT_CALL_TIMEOUT,
    };
    /// The `innodb_lock_wait_timeout` (seconds) that [`MySqlStore::pool_options`] sets on the
    /// store's connections: below the call deadline, so that a statement stuck on a row lock
    /// ends on the server with a typed error (its connection stays usable) instead of waiting
    /// the server's default 50 s after the store has given up on it.
    pub const DEFAULT_LOCK_WAIT_TIMEOUT_SECS: u32 = 4;
    /// The longest session id the table holds (`VARBINARY(255)`); the engine's are 64 bytes.
    pub const MAX_ID_BYTES: usize = 255;
    /// The longest user id the table holds (`VARBINARY(3072)`).
    pub const MAX_USER_ID_BYTES: usize = 3072;

    /// A store on `pool` with the default table (`narvik_sessions`, in the pool's database) and
    /// time bounds. Build the pool with [`MySqlStore::pool_options`] (or at least an acquire
    /// timeout of a few seconds): the store bounds its own wait either way, but sqlx's pool
    /// waits between reconnection attempts for up to a fifth of its acquire timeout.
    pub fn new(pool: MySqlPool) -> Self {
        Self::from_parts(pool, MySqlConfig::default(), Self::DEFAULT_TIMEOUTS)
    }

    /// A builder for a store on `pool` with a custom database, table, purge batch or time
    /// bounds.
    pub fn builder(pool: MySqlPool) -> MySqlStoreBuilder {
        MySqlStoreBuilder {
            pool,
            database: None,
            table: MySqlConfig::DEFAULT_TABLE.to_owned(),
            purge_batch_size: MySqlConfig::DEFAULT_PURGE_BATCH_SIZE,
            timeouts: Self::DEFAULT_TIMEOUTS,
        }
    }

    /// sqlx's pool options with narvik's bounds: an acquire timeout of
    /// [`MySqlStore::DEFAULT_ACQUIRE_TIMEOUT`] instead of sqlx's 30 s (the pool's back-off
    /// between reconnection attempts is at most a fifth of it, 400 ms, so a server that comes
    /// back is used within that), and every new connection sets `innodb_lock_wait_timeout` to
    /// [`MySqlStore::DEFAULT_LOCK_WAIT_TIMEOUT_SECS`]. The rest are sqlx's defaults (10
    /// connections, each tested with a ping before use, so a connection the server closed is
    /// replaced, not failed on). Durability settings are left to the server (see the crate's
    /// README: `innodb_flush_log_at_trx_commit`, `sync_binlog`).
    pub fn pool_options() -> MySqlPoolOptions {
        MySqlPoolOptions::new()
            .acquire_timeout(Self::DEFAULT_ACQUIRE_TIMEOUT)
            .after_connect(|connection, _| {
                Box::pin(async move {
                    connection
                        .execute(AssertSqlSafe(format!(
                            "SET SESSION innodb_lock_wait_timeout = {}",
                            Self::DEFAULT_LOCK_WAIT_TIMEOUT_SECS
                        )))
                        .await
                        .map(|_| ())
                })
            })
    }

    /// Parses `url` (`mysql://user:password@host:port/database`) into sqlx's connect options.
    /// sqlx sets `utf8mb4`, `time_zone = '+00:00'` and `NO_ENGINE_SUBSTITUTION` on every
    /// connection; the store's columns do not depend on the connection's collation.
    pub fn connect_options(url: &str) -> Result<MySqlConnectOptions> {
        url.parse()
            .map_err(|error| map_sqlx_error("connect", error))
    }

    /// Connects a pool of [`MySqlStore::pool_options`] to `url` (with
    /// [`MySqlStore::connect_options`]) and returns a store on it with the default names and
    /// bounds, in the URL's database. Opens one connection first, so that a wrong URL fails
    /// here; a server that does not answer is [`Error::Unavailable`] after
    /// [`MySqlStore::DEFAULT_ACQUIRE_TIMEOUT`].
    pub async fn connect(url: &str) -> Result<Self> {
        let options = Self::connect_options(url)?;
        let pool =
            narvik_sqlx::connect_pool(STORE, Self::pool_options(), options, map_sqlx_error).await?;
        Ok(Self::new(pool))
    }

    fn from_parts(pool: MySqlPool, config: MySqlConfig, timeouts: Timeouts) -> Self {
        let sql = statements(&config);
        let update_data = update_data_statement(&config);
        // A statement cancelled mid-way leaves the connection in an unknown state: close it.
        let calls = Calls {
            store: STORE,
            timeouts,
            cancelled: Cancelled::Detach,
        };
        Self {
            inner: Arc::new(Inner {
                pool,
                config,
                sql,
                update_data,
                calls,
            }),
        }
    }

    /// Creates the database (when one is configured and missing), the session table and its
    /// indexes, or brings them up to date. Idempotent, and safe when several instances start at
    /// once: they take turns under a named lock (`GET_LOCK`) per table. Waits for a connection
    /// no longer than the acquire timeout; the migration itself has no deadline (on a large
    /// table an index takes its time).
    #[cfg(feature = "migrate")]
    #[cfg_attr(docsrs, doc(cfg(feature = "migrate")))]
    pub async fn migrate(&self) -> Result<()> {
        const OPERATION: &str = "migrate";
        let config = &self.inner.config;
        self.inner
            .calls
            .unbounded(
                &self.inner.pool,
                OPERATION,
                map_sqlx_error,
                async |connection| crate::migrate::run(connection, config).await,
            )
            .await
    }

    /// Runs `statement` on a connection of its own under the call deadline: the one place the
    /// store's calls are bounded. Driver errors go through `map`; a statement cut off by the
    /// deadline closes its connection (see [`narvik_sqlx::Checkout`]).
    async fn call<T>(
        &self,
        operation: &'static str,
        map: MapError,
        statement: impl AsyncFnOnce(&mut MySqlConnection) -> std::result::Result<T, sqlx::Error>,
    ) -> Result<T> {
        self.inner
            .calls
            .call(&self.inner.pool, operation, map, statement)
            .await
    }

    /// The longest a call waits for a connection from the pool.
    pub fn acquire_timeout(&self) -> Duration {
        self.inner.calls.timeouts.acquire
    }

    /// The longest a call takes, end to end.
    pub fn call_timeout(&self) -> Duration {
        self.inner.calls.timeouts.call
    }

    /// The pool the store runs on.
    pub fn pool(&self) -> &MySqlPool {
        &self.inner.pool
    }

    /// The store's database, table and purge batch size.
    pub fn config(&self) -> &MySqlConfig {
        &self.inner.config
    }

    /// The SQL of each call as this store runs it, by call name: for `EXPLAIN`, for review by
    /// a DBA, and for the tests that prove the indexes are used.
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

/// Builds a [`MySqlStore`] with custom names; see [`MySqlStore::builder`].
///
/// ```no_run
/// # async fn example(pool: sqlx::MySqlPool) -> narvik_core::Result<()> {
/// use narvik_mysql::MySqlStore;
/// let store = MySqlStore::builder(pool)
///     .database("auth")
///     .table("sessions")
///     .build()?;
/// store.migrate().await?;
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct MySqlStoreBuilder {
    pool: MySqlPool,
    database: Option<String>,
    table: String,
    purge_batch_size: u32,
    timeouts: Timeouts,
}

impl MySqlStoreBuilder {
    /// The database holding the table (default: the connection's, from the URL). Created by
    /// `migrate` when missing.
    pub fn database(mut self, database: impl Into<String>) -> Self {
        self.database = Some(database.into());
        self
    }

    /// The session table (default `narvik_sessions`).
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// Rows deleted per statement by the expired purge (default 5,000).
    pub fn purge_batch_size(mut self, rows: u32) -> Self {
        self.purge_batch_size = rows;
        self
    }

    /// The longest a call waits for a connection from the pool, opening one included
    /// (default [`MySqlStore::DEFAULT_ACQUIRE_TIMEOUT`], 2 s). The pool's own acquire timeout
    /// applies too, whichever is shorter. Past it the call fails with [`Error::Unavailable`]
    /// naming [`Bound::Acquire`].
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.timeouts.acquire = timeout;
        self
    }

    /// The longest a call takes, end to end (default [`MySqlStore::DEFAULT_CALL_TIMEOUT`],
    /// 5 s). Past it the call fails with [`Error::Unavailable`] naming [`Bound::Call`], and its
    /// connection is closed. The expired purge is bounded per batch statement, not as a whole.
    /// Keep the server's `innodb_lock_wait_timeout` below it (see
    /// [`MySqlStore::pool_options`]).
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.timeouts.call = timeout;
        self
    }

    /// Validates the names and bounds and builds the store; a name that is not a plain
    /// identifier, or a zero timeout, is [`narvik_core::Error::InvalidConfiguration`].
    pub fn build(self) -> Result<MySqlStore> {
        let config =
            MySqlConfig::new(self.database.as_deref(), &self.table, self.purge_batch_size)?;
        self.timeouts.check()?;
        Ok(MySqlStore::from_parts(self.pool, config, self.timeouts))
    }
}

fn record_from_row(operation: &'static str, row: &MySqlRow) -> Result<SessionRecord> {
    let decode = |error| map_sqlx_error(operation, error);
    let text = |column: &str| -> Result<String> {
        let bytes: Vec<u8> = row.try_get(column).map_err(decode)?;
        String::from_utf8(bytes).map_err(|error| {
            Error::corrupt(format!("the {column} of a session row is not UTF-8"), error)
        })
    };
    Ok(SessionRecord {
        id: text("id")?,
        user_id: text("user_id")?,
        expires_at: row.try_get("expires_at").map_err(decode)?,
        created_at: row.try_get("created_at").map_err(decode)?,
        data: SessionData::from_json_text(row.try_get::<String, _>("data").map_err(decode)?),
        lifetime: lifetime_from_column(row.try_get("lifetime_ms").map_err(decode)?)?,
        data_version: data_version_from_column(row.try_get("data_version").map_err(decode)?)?,
    })
}

/// Whether a session id fits the `id` column: no record can have a longer one, so reads and
/// deletes by one answer without a round trip, and saves refuse it before sending.
fn id_fits(session_id: &str) -> bool {
    session_id.len() <= MySqlStore::MAX_ID_BYTES
}

/// Whether a user id fits the `user_id` column (see [`id_fits`]).
fn user_id_fits(user_id: &str) -> bool {
    user_id.len() <= MySqlStore::MAX_USER_ID_BYTES
}

/// A time for a `DATETIME(3)` column: to the millisecond (truncated here, since MySQL would
/// round a finer value and MariaDB truncate it), and within the years `DATETIME` holds.
fn datetime(what: &str, at: OffsetDateTime) -> Result<OffsetDateTime> {
    let at = truncate_to_millis(at);
    if (1000..=9999).contains(&at.year()) {
        Ok(at)
    } else {
        Err(Error::InvalidData(format!(
            "a session's {what} of year {} is outside what a MySQL DATETIME holds (1000 to 9999)",
            at.year()
        )))
    }
}

/// A `now` for a comparison: to the millisecond (with expiries on whole milliseconds,
/// `expires_at > now` means the same for `now` and `now` truncated, and the truncated value is
/// exactly what the server compares), clamped into `DATETIME`'s range, which changes no
/// answer either.
fn comparison_now(now: OffsetDateTime) -> OffsetDateTime {
    let now = truncate_to_millis(now);
    let low = time::macros::datetime!(1000-01-01 00:00:00 UTC);
    let high = time::macros::datetime!(9999-12-31 23:59:59.999 UTC);
    now.clamp(low, high)
}

#[async_trait]
impl SessionStore for MySqlStore {
    fn capabilities(&self) -> Capabilities {
        // ALL includes `update_session_data: true`.
        Capabilities::ALL
    }

    fn store_name(&self) -> &'static str {
        "mysql"
    }

    async fn save_session(&self, record: &SessionRecord) -> Result<()> {
        if !id_fits(&record.id) {
            return Err(Error::InvalidData(format!(
                "a session id longer than {} bytes cannot be stored by narvik-mysql",
                MySqlStore::MAX_ID_BYTES
            )));
        }
        if !user_id_fits(&record.user_id) {
            return Err(Error::InvalidData(format!(
                "a user id longer than {} bytes cannot be stored by narvik-mysql",
                MySqlStore::MAX_USER_ID_BYTES
            )));
        }
        let expires_at = datetime("expiry", record.expires_at)?;
        let created_at = datetime("creation time", record.created_at)?;
        let lifetime_ms = lifetime_column(record.lifetime)?;
        let data_version = data_version_column(record.data_version)?;
        let data = record.data.to_json_text()?;
        let insert = sqlx::query(self.inner.sql.insert.clone())
            .bind(record.id.as_bytes())
            .bind(record.user_id.as_bytes())
            .bind(expires_at)
            .bind(created_at)
            .bind(data.as_ref())
            .bind(lifetime_ms)
            .bind(data_version);
        self.call("save_session", map_insert_error, async |connection| {
            insert.execute(connection).await
        })
        .await?;
        Ok(())
    }

    async fn fetch_session(&self, session_id: &str) -> Result<Option<SessionRecord>> {
        if !id_fits(session_id) {
            return Ok(None);
        }
        const OPERATION: &str = "fetch_session";
        let select = sqlx::query(self.inner.sql.select.clone()).bind(session_id.as_bytes());
        let row = self
            .call(OPERATION, map_sqlx_error, async |connection| {
                select.fetch_optional(connection).await
            })
            .await?;
        row.as_ref()
            .map(|row| record_from_row(OPERATION, row))
            .transpose()
    }

    async fn update_session_expiry(
        &self,
        session_id: &str,
        expires_at: OffsetDateTime,
    ) -> Result<()> {
        if !id_fits(session_id) {
            return Ok(());
        }
        let expires_at = datetime("expiry", expires_at)?;
        // An UPDATE touches existing rows only: an extension racing a logout finds no row and
        // changes nothing. And only live ones, by the wall clock (see the type's docs for why
        // not the server's): a record that has expired but is not purged yet stays expired.
        let update = sqlx::query(self.inner.sql.update_expiry.clone())
            .bind(expires_at)
            .bind(session_id.as_bytes())
            .bind(comparison_now(OffsetDateTime::now_utc()));
        self.call(
            "update_session_expiry",
            map_sqlx_error,
            async |connection| update.execute(connection).await,
        )
        .await?;
        Ok(())
    }

    async fn delete_session(&self, session_id: &str) -> Result<()> {
        if !id_fits(session_id) {
            return Ok(());
        }
        let delete = sqlx::query(self.inner.sql.delete.clone()).bind(session_id.as_bytes());
        self.call("delete_session", map_sqlx_error, async |connection| {
            delete.execute(connection).await
        })
        .await?;
        Ok(())
    }

    async fn fetch_sessions_for_user(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<SessionRecord>> {
        if !user_id_fits(user_id) {
            return Ok(Vec::new());
        }
        const OPERATION: &str = "fetch_sessions_for_user";
        let select = sqlx::query(self.inner.sql.select_for_user.clone())
            .bind(user_id.as_bytes())
            .bind(comparison_now(now));
        let rows = self
            .call(OPERATION, map_sqlx_error, async |connection| {
                select.fetch_all(connection).await
            })
            .await?;
        rows.iter()
            .map(|row| record_from_row(OPERATION, row))
            .collect()
    }

    async fn delete_sessions_for_user(&self, user_id: &str) -> Result<()> {
        if !user_id_fits(user_id) {
            return Ok(());
        }
        let delete = sqlx::query(self.inner.sql.delete_for_user.clone()).bind(user_id.as_bytes());
        self.call(
            "delete_sessions_for_user",
            map_sqlx_error,
            async |connection| delete.execute(connection).await,
        )
        .await?;
        Ok(())
    }

    async fn delete_all_expired_sessions(&self, now: OffsetDateTime) -> Result<u64> {
        // One "now" for the whole purge, the engine's: rows that expire after it wait for the
        // next purge, so the count is exactly the rows expired at `now` (less any a concurrent
        // purger took and counted). Each batch is a call of its own under the deadline: a purge
        // of millions of rows may take longer than one call may, and every batch it finished
        // stays done if a later one fails.
        let now = comparison_now(now);
        let batch = self.inner.config.purge_batch_size();
        let mut deleted: u64 = 0;
        loop {
            let purge = sqlx::query(self.inner.sql.purge_batch.clone())
                .bind(now)
                .bind(batch);
            let rows = self
                .call(
                    "delete_all_expired_sessions",
                    map_sqlx_error,
                    async |connection| purge.execute(connection).await,
                )
                .await?
                .rows_affected();
            deleted += rows;
            // A short batch means no expired row is left (a concurrent purger's rows were
            // waited for, found deleted, and counted by it).
            if rows < u64::from(batch) {
                break;
            }
        }
        tracing::Span::current().record("deleted", deleted);
        Ok(deleted)
    }

    async fn update_session_data(
        &self,
        record: &SessionRecord,
        data: &SessionData,
        now: OffsetDateTime,
    ) -> Result<bool> {
        if !id_fits(&record.id) {
            return Ok(false);
        }
        // A version no row can hold matches none: nothing to change.
        let Ok(version) = i64::try_from(record.data_version) else {
            return Ok(false);
        };
        let data = data.to_json_text()?;
        let update = sqlx::query(self.inner.update_data.clone())
            .bind(data.as_ref())
            .bind(record.id.as_bytes())
            .bind(version)
            .bind(comparison_now(now));
        let done = self
            .call("update_session_data", map_sqlx_error, async |connection| {
                update.execute(connection).await
            })
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
