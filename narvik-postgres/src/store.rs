// Over 400 lines in one file: every call of the store beside the one SQL statement it runs
// (built in `statements`), so that each can be checked against the other.
//! [`PostgresStore`]: the storage contract, one statement per call.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Row, SqlStr};
use time::OffsetDateTime;

// The bounds and faults the docs name; the code reaches them through narvik-sqlx.
#[cfg(doc)]
use narvik_core::deadline::{Bound, StoreFault};
use narvik_core::invalidation::InvalidationSubscription;
use narvik_core::time_util::truncate_to_millis;
use narvik_core::{Capabilities, Error, Result, SessionData, SessionRecord, SessionStore};
use narvik_sqlx::columns::{
    data_version_column, data_version_from_column, lifetime_column, lifetime_from_column,
};
use narvik_sqlx::{Calls, Cancelled, MapError, Statements, Timeouts};

use crate::config::PostgresConfig;
use crate::error::{map_insert_error, map_sqlx_error, STORE};
use crate::invalidation::{self, Listener};
use crate::jsonb::{JsonbParam, JsonbText};

/// A narvik session store on PostgreSQL.
///
/// Cheap to clone: clones share the pool. Build it from the application's pool with
/// [`PostgresStore::new`] or [`PostgresStore::builder`], or from a URL with
/// [`PostgresStore::connect`]; create the table with [`PostgresStore::migrate`] (feature
/// `migrate`, on by default).
///
/// **Capabilities:** [`Capabilities::ALL`] with
/// [`pushes_invalidations`](Capabilities::pushes_invalidations). Every optional call is
/// implemented; [`fetch_session`](SessionStore::fetch_session) returns a record even after its
/// expiry (the engine judges it and deletes it); a record saved already expired is kept until
/// the purge; the purge reports exactly the rows it deleted.
///
/// **Pushed invalidations.** Migration 3's trigger `NOTIFY`s every delete, purge, `TRUNCATE`
/// and update of a session (an extension of its expiry aside), whoever makes it, on the
/// table's own channel ([`PostgresStore::invalidation_channel`]). The first
/// [`subscribe_invalidations`](SessionStore::subscribe_invalidations) starts a listener task
/// on a connection of its own (`application_name`
/// [`PostgresStore::DEFAULT_LISTENER_APPLICATION_NAME`] unless the builder sets another),
/// which checks the connection and the triggers every second and reconnects after a loss; it
/// stops when the store or the last subscription is dropped. See the crate's README for what
/// it costs.
///
/// **Time.** The per-user listing and the purge filter on the `now` the engine hands down (so a
/// [`ManualClock`](narvik_core::ManualClock) on the engine governs them); the store holds no
/// clock. [`update_session_expiry`](SessionStore::update_session_expiry) refuses to extend a
/// record that has expired by the application's wall clock (`OffsetDateTime::now_utc()`), the
/// clock the engine's default [`SystemClock`](narvik_core::SystemClock) reads, not by the
/// database server's `now()`, so that the store and the engine judge expiry on the same clock
/// whatever the skew between the application's hosts and the server.
///
/// **Bounded time.** Every call fails with [`Error::Unavailable`] rather than wait past its
/// bounds: a connection from the pool within [`PostgresStore::DEFAULT_ACQUIRE_TIMEOUT`] (2 s,
/// which covers opening one: TCP connect, TLS, start-up and authentication), the whole call
/// within [`PostgresStore::DEFAULT_CALL_TIMEOUT`] (5 s); the builder changes both. A call cut
/// off by its deadline (or dropped by its caller) closes its connection instead of returning
/// it to the pool, since a statement cancelled mid-way leaves the connection in an unknown
/// state. The error's [`StoreFault`] names the store, the call and the bound hit.
///
/// **Values Postgres cannot hold.** A NUL character (U+0000) in a session id or user id
/// (`text` cannot hold it), and a NUL or a `-0.0` in the data (`jsonb` cannot hold them), are
/// [`Error::InvalidData`] at save, found before anything is sent; nothing is stored. Every
/// other id is kept byte for byte, and the data's numbers come back with the same kind and
/// bits (see the crate's README).
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    config: PostgresConfig,
    sql: Statements,
    /// `update_session_data`: kept here, not in the shared [`Statements`], whose column list
    /// the other SQL stores use as is.
    update_data: SqlStr,
    calls: Calls,
    listener: Listener,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("config", &self.inner.config)
            .field("acquire_timeout", &self.inner.calls.timeouts.acquire)
            .field("call_timeout", &self.inner.calls.timeouts.call)
            .finish_non_exhaustive()
    }
}

/// The columns this store reads and writes, in the order the insert binds: the shared
/// [`Statements::COLUMNS`] plus migration 2's `lifetime_ms` and `data_version`.
const COLUMNS: &str = "id, user_id, expires_at, created_at, data, lifetime_ms, data_version";

/// The conditional data update: only the live record at the version the caller read.
fn update_data_statement(config: &PostgresConfig) -> SqlStr {
    let table = config.qualified_table();
    AssertSqlSafe(format!(
        "UPDATE {table} SET data = $2, data_version = data_version + 1 \
         WHERE id = $1 AND data_version = $3 AND expires_at > $4"
    ))
    .into_sql_str()
}

/// The SQL of every call with the configured table name.
fn statements(config: &PostgresConfig) -> Statements {
    let table = config.qualified_table();
    let sql = |text: String| AssertSqlSafe(text).into_sql_str();
    let columns = COLUMNS;
    Statements {
        insert: sql(format!(
            "INSERT INTO {table} ({columns}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        )),
        select: sql(format!("SELECT {columns} FROM {table} WHERE id = $1")),
        // `expires_at > $3` (the wall clock): an expired record, purged or not, is as good
        // as missing and is never extended back to life.
        update_expiry: sql(format!(
            "UPDATE {table} SET expires_at = $2 WHERE id = $1 AND expires_at > $3"
        )),
        delete: sql(format!("DELETE FROM {table} WHERE id = $1")),
        select_for_user: sql(format!(
            "SELECT {columns} FROM {table} WHERE user_id = $1 AND expires_at > $2"
        )),
        delete_for_user: sql(format!("DELETE FROM {table} WHERE user_id = $1")),
        // Bounded, so that a purge of millions of rows never holds one giant lock or one
        // huge transaction. SKIP LOCKED lets concurrent purgers (one per app instance)
        // split the work instead of queueing, and never waits on a session that a request
        // is extending right now.
        //
        // `= ANY(ARRAY(...))` rather than `IN (...)`: the array is computed once (an
        // init plan); with `IN` the planner may pick a hash semi-join that scans the whole
        // table for every batch. By `ctid`, not by id: the rows are found through the
        // expiry index and then deleted where they lie (a TID scan), with no primary-key
        // lookups, whose random leaf pages would make a batch slower as the table grows.
        // The ctids are stable: FOR UPDATE holds each row until the statement ends.
        purge_batch: sql(format!(
            "DELETE FROM {table} WHERE ctid = ANY(ARRAY(\
               SELECT ctid FROM {table} WHERE expires_at <= $1 \
               LIMIT $2 FOR UPDATE SKIP LOCKED))"
        )),
    }
}

use sqlx::SqlSafeStr as _;

impl PostgresStore {
    /// The longest a call waits for a connection from the pool unless configured otherwise,
    /// opening one included (TCP connect, TLS, start-up, authentication): sqlx has no connect
    /// timeout of its own, its pool bounds a connect by the acquire deadline. Also the acquire
    /// timeout of [`PostgresStore::pool_options`].
    pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);
    /// The longest a call takes, end to end, unless configured otherwise.
    pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);
    /// Both default bounds, for the store and its builder.
    const DEFAULT_TIMEOUTS: Timeouts = Timeouts {
        acquire: Self::DEFAULT_ACQUIRE_TIMEOUT,
        call: Self::DEFAULT_CALL_TIMEOUT,
    };
    /// The `application_name` of the invalidation listener's connection unless the builder
    /// sets another ([`PostgresStoreBuilder::listener_application_name`]), for finding it in
    /// `pg_stat_activity`.
    pub const DEFAULT_LISTENER_APPLICATION_NAME: &'static str =
        invalidation::DEFAULT_APPLICATION_NAME;
    /// The server-side `statement_timeout` that [`PostgresStore::connect_options`] sets: below
    /// the call deadline, so that a statement stuck on a lock ends on the server with a typed
    /// error (its connection stays usable), and one the store abandoned does not run on.
    pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(4);

    /// A store on `pool` with the default schema (`public`), table (`narvik_sessions`) and
    /// time bounds. Build the pool with [`PostgresStore::pool_options`] (or at least an acquire
    /// timeout of a few seconds): the store bounds its own wait either way, but sqlx's pool
    /// waits between reconnection attempts for up to a fifth of its acquire timeout.
    pub fn new(pool: PgPool) -> Self {
        Self::from_parts(
            pool,
            PostgresConfig::default(),
            Self::DEFAULT_TIMEOUTS,
            Self::DEFAULT_LISTENER_APPLICATION_NAME.to_owned(),
            None,
        )
    }

    /// A builder for a store on `pool` with a custom schema, table, purge batch or time
    /// bounds.
    pub fn builder(pool: PgPool) -> PostgresStoreBuilder {
        PostgresStoreBuilder {
            pool,
            schema: PostgresConfig::DEFAULT_SCHEMA.to_owned(),
            table: PostgresConfig::DEFAULT_TABLE.to_owned(),
            purge_batch_size: PostgresConfig::DEFAULT_PURGE_BATCH_SIZE,
            timeouts: Self::DEFAULT_TIMEOUTS,
            listener_application_name: Self::DEFAULT_LISTENER_APPLICATION_NAME.to_owned(),
            listener_connect_options: None,
        }
    }

    /// sqlx's pool options with narvik's bounds: an acquire timeout of
    /// [`PostgresStore::DEFAULT_ACQUIRE_TIMEOUT`] instead of sqlx's 30 s. The pool retries a
    /// refused connection with a back-off of up to a fifth of that timeout (6 s with sqlx's
    /// default, 400 ms here), so a server that comes back is used within that; and while it is
    /// down, calls fail after 2 s instead of 30. The rest are sqlx's defaults (10 connections,
    /// each tested before use, so a connection the server closed is replaced, not failed on).
    pub fn pool_options() -> PgPoolOptions {
        PgPoolOptions::new().acquire_timeout(Self::DEFAULT_ACQUIRE_TIMEOUT)
    }

    /// Parses `url` into sqlx's connect options and sets the server's `statement_timeout` for
    /// the store's connections to [`PostgresStore::DEFAULT_STATEMENT_TIMEOUT`], unless the URL
    /// sets one (`?options[statement_timeout]=2s`). Durability settings are left to the server
    /// (see the crate's README: `synchronous_commit`).
    pub fn connect_options(url: &str) -> Result<PgConnectOptions> {
        let options: PgConnectOptions = url
            .parse()
            .map_err(|error| map_sqlx_error("connect", error))?;
        let sets_its_own = options
            .get_options()
            .is_some_and(|set| set.contains("statement_timeout"));
        Ok(if sets_its_own {
            options
        } else {
            options.options([(
                "statement_timeout",
                format!("{}ms", Self::DEFAULT_STATEMENT_TIMEOUT.as_millis()),
            )])
        })
    }

    /// Connects a pool of [`PostgresStore::pool_options`] to `url` (with
    /// [`PostgresStore::connect_options`]) and returns a store on it with the default names and
    /// bounds. Opens one connection first, so that a wrong URL fails here; a server that does
    /// not answer is [`Error::Unavailable`] after [`PostgresStore::DEFAULT_ACQUIRE_TIMEOUT`].
    pub async fn connect(url: &str) -> Result<Self> {
        let options = Self::connect_options(url)?;
        let pool =
            narvik_sqlx::connect_pool(STORE, Self::pool_options(), options, map_sqlx_error).await?;
        Ok(Self::new(pool))
    }

    fn from_parts(
        pool: PgPool,
        config: PostgresConfig,
        timeouts: Timeouts,
        listener_application_name: String,
        listener_connect_options: Option<PgConnectOptions>,
    ) -> Self {
        let sql = statements(&config);
        // The listener connects under the same bound as a call's acquire.
        let listener = Listener::new(
            &config,
            listener_application_name,
            timeouts.acquire,
            listener_connect_options,
        );
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
                listener,
            }),
        }
    }

    /// Creates the schema (when missing), the session table and its indexes, or brings them up
    /// to date. Idempotent, and safe when several instances start at once: it runs in one
    /// transaction under an advisory lock per schema. Waits for a connection no longer than the
    /// acquire timeout; the migration itself has no deadline (and no `statement_timeout`: on a
    /// large table an index takes its time).
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
        statement: impl AsyncFnOnce(&mut PgConnection) -> std::result::Result<T, sqlx::Error>,
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
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The store's schema, table and purge batch size.
    pub fn config(&self) -> &PostgresConfig {
        &self.inner.config
    }

    /// The `NOTIFY` channel of this store's table (see
    /// [`PostgresConfig::invalidation_channel`]): `LISTEN "<channel>"` in psql shows what the
    /// trigger sends.
    pub fn invalidation_channel(&self) -> &str {
        self.inner.listener.channel()
    }

    /// The `application_name` of the invalidation listener's connection.
    pub fn listener_application_name(&self) -> &str {
        self.inner.listener.application_name()
    }

    /// The SQL of every statement this store runs for a [`SessionStore`] call, by call name:
    /// all eight, `update_session_data` included (the DDL of [`PostgresStore::migrate`]
    /// aside). For `EXPLAIN`, for review by a DBA, and for the tests that prove the indexes
    /// are used.
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

/// Builds a [`PostgresStore`] with custom names; see [`PostgresStore::builder`].
///
/// ```no_run
/// # async fn example(pool: sqlx::PgPool) -> narvik_core::Result<()> {
/// use narvik_postgres::PostgresStore;
/// let store = PostgresStore::builder(pool)
///     .schema("auth")
///     .table("sessions")
///     .build()?;
/// store.migrate().await?;
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct PostgresStoreBuilder {
    pool: PgPool,
    schema: String,
    table: String,
    purge_batch_size: u32,
    timeouts: Timeouts,
    listener_application_name: String,
    listener_connect_options: Option<PgConnectOptions>,
}

impl PostgresStoreBuilder {
    /// The schema holding the table (default `public`). Created by `migrate` when missing.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
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
    /// (default [`PostgresStore::DEFAULT_ACQUIRE_TIMEOUT`], 2 s). The pool's own acquire
    /// timeout applies too, whichever is shorter. Past it the call fails with
    /// [`Error::Unavailable`] naming [`Bound::Acquire`].
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.timeouts.acquire = timeout;
        self
    }

    /// The longest a call takes, end to end (default [`PostgresStore::DEFAULT_CALL_TIMEOUT`],
    /// 5 s). Past it the call fails with [`Error::Unavailable`] naming [`Bound::Call`], and its
    /// connection is closed. The expired purge is bounded per batch statement, not as a whole.
    /// Keep the server's `statement_timeout` below it (see [`PostgresStore::connect_options`]).
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.timeouts.call = timeout;
        self
    }

    /// The `application_name` of the invalidation listener's connection (default
    /// [`PostgresStore::DEFAULT_LISTENER_APPLICATION_NAME`]), to tell instances or tables apart
    /// in `pg_stat_activity`: 1 to 63 bytes of printable ASCII, since Postgres would truncate
    /// or alter anything else.
    pub fn listener_application_name(mut self, name: impl Into<String>) -> Self {
        self.listener_application_name = name.into();
        self
    }

    /// Where the invalidation listener connects (default: the pool's connect options). Needed
    /// when the pool goes through a pooler in transaction or statement mode (PgBouncer's
    /// `pool_mode = transaction`): `LISTEN` holds on to a server session, which such a pooler
    /// hands to other clients between transactions, so notifications would go astray without
    /// anyone noticing. Point the listener at the server itself, or at a session-mode pool.
    /// Its `application_name` is still the builder's.
    pub fn listener_connect_options(mut self, options: PgConnectOptions) -> Self {
        self.listener_connect_options = Some(options);
        self
    }

    /// Validates the names and bounds and builds the store; a name that is not a plain
    /// identifier, a listener application name Postgres would alter, or a zero timeout, is
    /// [`narvik_core::Error::InvalidConfiguration`].
    pub fn build(self) -> Result<PostgresStore> {
        let config = PostgresConfig::new(&self.schema, &self.table, self.purge_batch_size)?;
        self.timeouts.check()?;
        invalidation::check_application_name(&self.listener_application_name)?;
        Ok(PostgresStore::from_parts(
            self.pool,
            config,
            self.timeouts,
            self.listener_application_name,
            self.listener_connect_options,
        ))
    }
}

fn record_from_row(operation: &'static str, row: &PgRow) -> Result<SessionRecord> {
    let decode = |error| map_sqlx_error(operation, error);
    Ok(SessionRecord {
        id: row.try_get("id").map_err(decode)?,
        user_id: row.try_get("user_id").map_err(decode)?,
        expires_at: row.try_get("expires_at").map_err(decode)?,
        created_at: row.try_get("created_at").map_err(decode)?,
        // The server's JSON text, unparsed: the engine parses it once, into `D`.
        data: row.try_get::<JsonbText, _>("data").map_err(decode)?.0,
        lifetime: lifetime_from_column(row.try_get("lifetime_ms").map_err(decode)?)?,
        data_version: data_version_from_column(row.try_get("data_version").map_err(decode)?)?,
    })
}

/// Whether `value` holds a NUL character, which a PostgreSQL `text` value cannot (the server
/// would refuse it with SQLSTATE 22021). No record with such an id or user id can exist, so
/// reads and deletes by one answer without a round trip, and saves refuse it before sending.
fn has_nul(value: &str) -> bool {
    value.contains('\0')
}

/// The wall clock to the millisecond, the precision of every stored time: with expiries on
/// whole milliseconds, `expires_at > now` means the same for `now` and for `now` truncated,
/// and the truncated value is exactly what the server compares.
fn wall_clock_now() -> OffsetDateTime {
    truncate_to_millis(OffsetDateTime::now_utc())
}

#[async_trait]
impl SessionStore for PostgresStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            pushes_invalidations: true,
            ..Capabilities::ALL
        }
    }

    fn store_name(&self) -> &'static str {
        "postgres"
    }

    /// Starts the listener task on the first call (and again after it stopped for want of
    /// subscribers); see the type's docs.
    fn subscribe_invalidations(&self) -> Option<InvalidationSubscription> {
        Some(self.inner.listener.subscribe(&self.inner.pool))
    }

    async fn save_session(&self, record: &SessionRecord) -> Result<()> {
        if has_nul(&record.id) {
            return Err(Error::InvalidData(
                "a session id with a NUL character (U+0000) cannot be stored in a PostgreSQL \
                 text column"
                    .into(),
            ));
        }
        if has_nul(&record.user_id) {
            return Err(Error::InvalidData(
                "a user id with a NUL character (U+0000) cannot be stored in a PostgreSQL text \
                 column"
                    .into(),
            ));
        }
        let data = JsonbParam::new(&record.data)?;
        let lifetime_ms = lifetime_column(record.lifetime)?;
        let data_version = data_version_column(record.data_version)?;
        // timestamptz keeps microseconds and rounds below; narvik promises milliseconds, so
        // truncate here rather than let the server round up into the next millisecond.
        let insert = sqlx::query(self.inner.sql.insert.clone())
            .bind(&record.id)
            .bind(&record.user_id)
            .bind(truncate_to_millis(record.expires_at))
            .bind(truncate_to_millis(record.created_at))
            .bind(data)
            .bind(lifetime_ms)
            .bind(data_version);
        self.call("save_session", map_insert_error, async |connection| {
            insert.execute(connection).await
        })
        .await?;
        Ok(())
    }

    async fn fetch_session(&self, session_id: &str) -> Result<Option<SessionRecord>> {
        if has_nul(session_id) {
            return Ok(None);
        }
        const OPERATION: &str = "fetch_session";
        let select = sqlx::query(self.inner.sql.select.clone()).bind(session_id);
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
        if has_nul(session_id) {
            return Ok(());
        }
        // An UPDATE touches existing rows only: an extension racing a logout finds no row and
        // changes nothing. And only live ones, by the wall clock (see the type's docs for why
        // not the server's): a record that has expired but is not purged yet stays expired.
        let update = sqlx::query(self.inner.sql.update_expiry.clone())
            .bind(session_id)
            .bind(truncate_to_millis(expires_at))
            .bind(wall_clock_now());
        self.call(
            "update_session_expiry",
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
        if has_nul(user_id) {
            return Ok(Vec::new());
        }
        const OPERATION: &str = "fetch_sessions_for_user";
        let select = sqlx::query(self.inner.sql.select_for_user.clone())
            .bind(user_id)
            .bind(now);
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
        if has_nul(user_id) {
            return Ok(());
        }
        let delete = sqlx::query(self.inner.sql.delete_for_user.clone()).bind(user_id);
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
        let batch = self.inner.config.purge_batch_size_param();
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
            // A short batch means nothing unlocked is left: rows skipped because another
            // purger holds them are that purger's to delete and count.
            if rows < batch.unsigned_abs() {
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
        if has_nul(&record.id) {
            return Ok(false);
        }
        let data = JsonbParam::new(data)?;
        // A version beyond bigint matches no row: nothing to change.
        let Ok(version) = i64::try_from(record.data_version) else {
            return Ok(false);
        };
        // One conditional UPDATE: the compare (version and liveness) and the write are atomic
        // on the server, so of two updates read at one version only one can match.
        let update = sqlx::query(self.inner.update_data.clone())
            .bind(&record.id)
            .bind(data)
            .bind(version)
            .bind(truncate_to_millis(now));
        let done = self
            .call("update_session_data", map_sqlx_error, async |connection| {
                update.execute(connection).await
            })
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
