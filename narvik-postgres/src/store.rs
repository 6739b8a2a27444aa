//! [`PostgresStore`]: the storage contract, one statement per call.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{AssertSqlSafe, Row, SqlStr};
use time::OffsetDateTime;

use narvik_core::session::short_id;
use narvik_core::time_util::truncate_to_millis;
use narvik_core::{Capabilities, Error, Result, SessionRecord, SessionStore};

use crate::config::PostgresConfig;
use crate::error::{map_insert_error, map_sqlx_error};
use crate::jsonb::JsonbParam;

/// A narvik session store on PostgreSQL.
///
/// Cheap to clone: clones share the pool. Build it from the application's pool with
/// [`PostgresStore::new`] or [`PostgresStore::builder`], or from a URL with
/// [`PostgresStore::connect`]; create the table with [`PostgresStore::migrate`] (feature
/// `migrate`, on by default).
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
/// database server's `now()`, so that the store and the engine judge expiry on the same clock
/// whatever the skew between the application's hosts and the server.
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
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// The SQL of every call, rendered once per store with the configured (validated, quoted)
/// table name. Everything else is a bind parameter.
struct Statements {
    insert: SqlStr,
    select: SqlStr,
    update_expiry: SqlStr,
    delete: SqlStr,
    select_for_user: SqlStr,
    delete_for_user: SqlStr,
    purge_batch: SqlStr,
}

const COLUMNS: &str = "id, user_id, expires_at, created_at, data";

impl Statements {
    fn new(config: &PostgresConfig) -> Self {
        let table = config.qualified_table();
        let sql = |text: String| AssertSqlSafe(text).into_sql_str();
        Self {
            insert: sql(format!(
                "INSERT INTO {table} ({COLUMNS}) VALUES ($1, $2, $3, $4, $5)"
            )),
            select: sql(format!("SELECT {COLUMNS} FROM {table} WHERE id = $1")),
            // `expires_at > $3` (the wall clock): an expired record, purged or not, is as good
            // as missing and is never extended back to life.
            update_expiry: sql(format!(
                "UPDATE {table} SET expires_at = $2 WHERE id = $1 AND expires_at > $3"
            )),
            delete: sql(format!("DELETE FROM {table} WHERE id = $1")),
            select_for_user: sql(format!(
                "SELECT {COLUMNS} FROM {table} WHERE user_id = $1 AND expires_at > $2"
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
}

use sqlx::SqlSafeStr as _;

impl PostgresStore {
    /// A store on `pool` with the default schema (`public`) and table (`narvik_sessions`).
    pub fn new(pool: PgPool) -> Self {
        Self::from_parts(pool, PostgresConfig::default())
    }

    /// A builder for a store on `pool` with a custom schema, table or purge batch.
    pub fn builder(pool: PgPool) -> PostgresStoreBuilder {
        PostgresStoreBuilder {
            pool,
            schema: PostgresConfig::DEFAULT_SCHEMA.to_owned(),
            table: PostgresConfig::DEFAULT_TABLE.to_owned(),
            purge_batch_size: PostgresConfig::DEFAULT_PURGE_BATCH_SIZE,
        }
    }

    /// Connects a new pool to `url` (sqlx's default pool options) and returns a store on it
    /// with the default names. An unreachable server is [`narvik_core::Error::Unavailable`]
    /// once sqlx's acquire timeout (30 s by default) has passed; for other pool settings, build
    /// the pool with `sqlx::postgres::PgPoolOptions` and use [`PostgresStore::new`].
    pub async fn connect(url: &str) -> Result<Self> {
        let pool = PgPool::connect(url).await.map_err(map_sqlx_error)?;
        Ok(Self::new(pool))
    }

    fn from_parts(pool: PgPool, config: PostgresConfig) -> Self {
        let sql = Statements::new(&config);
        Self {
            inner: Arc::new(Inner { pool, config, sql }),
        }
    }

    /// Creates the schema (when missing), the session table and its indexes, or brings them up
    /// to date. Idempotent, and safe when several instances start at once: it runs in one
    /// transaction under an advisory lock per schema.
    #[cfg(feature = "migrate")]
    pub async fn migrate(&self) -> Result<()> {
        crate::migrate::run(&self.inner.pool, &self.inner.config).await
    }

    /// The pool the store runs on.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The store's schema, table and purge batch size.
    pub fn config(&self) -> &PostgresConfig {
        &self.inner.config
    }

    /// The SQL of each call as this store runs it, by call name: for `EXPLAIN`, for review by
    /// a DBA, and for the tests that prove the indexes are used.
    pub fn statements(&self) -> [(&'static str, &str); 7] {
        let sql = &self.inner.sql;
        [
            ("save_session", sql.insert.as_str()),
            ("fetch_session", sql.select.as_str()),
            ("update_session_expiry", sql.update_expiry.as_str()),
            ("delete_session", sql.delete.as_str()),
            ("fetch_sessions_for_user", sql.select_for_user.as_str()),
            ("delete_sessions_for_user", sql.delete_for_user.as_str()),
            ("delete_all_expired_sessions", sql.purge_batch.as_str()),
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

    /// Validates the names and builds the store; a name that is not a plain identifier is
    /// [`narvik_core::Error::InvalidConfiguration`].
    pub fn build(self) -> Result<PostgresStore> {
        let config = PostgresConfig::new(&self.schema, &self.table, self.purge_batch_size)?;
        Ok(PostgresStore::from_parts(self.pool, config))
    }
}

fn record_from_row(row: &PgRow) -> Result<SessionRecord> {
    Ok(SessionRecord {
        id: row.try_get("id").map_err(map_sqlx_error)?,
        user_id: row.try_get("user_id").map_err(map_sqlx_error)?,
        expires_at: row.try_get("expires_at").map_err(map_sqlx_error)?,
        created_at: row.try_get("created_at").map_err(map_sqlx_error)?,
        data: row
            .try_get::<serde_json::Value, _>("data")
            .map_err(map_sqlx_error)?
            .into(),
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
        Capabilities::ALL
    }

    #[tracing::instrument(name = "narvik_postgres.save_session", skip_all, fields(session = short_id(&record.id)))]
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
        // timestamptz keeps microseconds and rounds below; narvik promises milliseconds, so
        // truncate here rather than let the server round up into the next millisecond.
        sqlx::query(self.inner.sql.insert.clone())
            .bind(&record.id)
            .bind(&record.user_id)
            .bind(truncate_to_millis(record.expires_at))
            .bind(truncate_to_millis(record.created_at))
            .bind(data)
            .execute(&self.inner.pool)
            .await
            .map_err(map_insert_error)?;
        Ok(())
    }

    #[tracing::instrument(name = "narvik_postgres.fetch_session", skip_all, fields(session = short_id(session_id)))]
    async fn fetch_session(&self, session_id: &str) -> Result<Option<SessionRecord>> {
        if has_nul(session_id) {
            return Ok(None);
        }
        let row = sqlx::query(self.inner.sql.select.clone())
            .bind(session_id)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(map_sqlx_error)?;
        row.as_ref().map(record_from_row).transpose()
    }

    #[tracing::instrument(name = "narvik_postgres.update_session_expiry", skip_all, fields(session = short_id(session_id)))]
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
        sqlx::query(self.inner.sql.update_expiry.clone())
            .bind(session_id)
            .bind(truncate_to_millis(expires_at))
            .bind(wall_clock_now())
            .execute(&self.inner.pool)
            .await
            .map_err(map_sqlx_error)?;
        Ok(())
    }

    #[tracing::instrument(name = "narvik_postgres.delete_session", skip_all, fields(session = short_id(session_id)))]
    async fn delete_session(&self, session_id: &str) -> Result<()> {
        if has_nul(session_id) {
            return Ok(());
        }
        sqlx::query(self.inner.sql.delete.clone())
            .bind(session_id)
            .execute(&self.inner.pool)
            .await
            .map_err(map_sqlx_error)?;
        Ok(())
    }

    #[tracing::instrument(name = "narvik_postgres.fetch_sessions_for_user", skip_all)]
    async fn fetch_sessions_for_user(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<SessionRecord>> {
        if has_nul(user_id) {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(self.inner.sql.select_for_user.clone())
            .bind(user_id)
            .bind(now)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(map_sqlx_error)?;
        rows.iter().map(record_from_row).collect()
    }

    #[tracing::instrument(name = "narvik_postgres.delete_sessions_for_user", skip_all)]
    async fn delete_sessions_for_user(&self, user_id: &str) -> Result<()> {
        if has_nul(user_id) {
            return Ok(());
        }
        sqlx::query(self.inner.sql.delete_for_user.clone())
            .bind(user_id)
            .execute(&self.inner.pool)
            .await
            .map_err(map_sqlx_error)?;
        Ok(())
    }

    #[tracing::instrument(
        name = "narvik_postgres.delete_all_expired_sessions",
        skip_all,
        fields(deleted)
    )]
    async fn delete_all_expired_sessions(&self, now: OffsetDateTime) -> Result<u64> {
        // One "now" for the whole purge, the engine's: rows that expire after it wait for the
        // next purge, so the count is exactly the rows expired at `now` (less any a concurrent
        // purger took and counted).
        let batch = self.inner.config.purge_batch_size_param();
        let mut deleted: u64 = 0;
        loop {
            let rows = sqlx::query(self.inner.sql.purge_batch.clone())
                .bind(now)
                .bind(batch)
                .execute(&self.inner.pool)
                .await
                .map_err(map_sqlx_error)?
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
}
