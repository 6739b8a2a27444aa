//! [`PostgresStore`]: the storage contract, one statement per call.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{AssertSqlSafe, Row, SqlStr};
use time::OffsetDateTime;

use narvik_core::session::short_id;
use narvik_core::time_util::truncate_to_millis;
use narvik_core::{Clock, Result, SessionRecord, SessionStore, SystemClock};

use crate::config::PostgresConfig;
use crate::error::{map_insert_error, map_sqlx_error};

/// A narvik session store on PostgreSQL.
///
/// Cheap to clone: clones share the pool. Build it from the application's pool with
/// [`PostgresStore::new`] or [`PostgresStore::builder`], or from a URL with
/// [`PostgresStore::connect`]; create the table with [`PostgresStore::migrate`] (feature
/// `migrate`, on by default).
///
/// **Expired records.** [`fetch_session`](SessionStore::fetch_session) returns a record even
/// after its expiry; the engine judges it and deletes it. The per-user listing returns live
/// records only, and the purge deletes expired ones; both take "now" from the store's
/// [`Clock`] (the application's clock, [`SystemClock`] unless configured), not from the
/// database server, so that the store and the engine agree on what is expired.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    config: PostgresConfig,
    clock: Arc<dyn Clock>,
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
            update_expiry: sql(format!("UPDATE {table} SET expires_at = $2 WHERE id = $1")),
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
        Self::from_parts(pool, PostgresConfig::default(), Arc::new(SystemClock))
    }

    /// A builder for a store on `pool` with a custom schema, table, purge batch or clock.
    pub fn builder(pool: PgPool) -> PostgresStoreBuilder {
        PostgresStoreBuilder {
            pool,
            schema: PostgresConfig::DEFAULT_SCHEMA.to_owned(),
            table: PostgresConfig::DEFAULT_TABLE.to_owned(),
            purge_batch_size: PostgresConfig::DEFAULT_PURGE_BATCH_SIZE,
            clock: Arc::new(SystemClock),
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

    fn from_parts(pool: PgPool, config: PostgresConfig, clock: Arc<dyn Clock>) -> Self {
        let sql = Statements::new(&config);
        Self {
            inner: Arc::new(Inner {
                pool,
                config,
                clock,
                sql,
            }),
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

    fn now(&self) -> OffsetDateTime {
        self.inner.clock.now()
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
    clock: Arc<dyn Clock>,
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

    /// Where the store takes "now" for the live filter and the purge. Give it the engine's
    /// clock when the engine runs on a [`narvik_core::ManualClock`].
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Validates the names and builds the store; a name that is not a plain identifier is
    /// [`narvik_core::Error::InvalidConfiguration`].
    pub fn build(self) -> Result<PostgresStore> {
        let config = PostgresConfig::new(&self.schema, &self.table, self.purge_batch_size)?;
        Ok(PostgresStore::from_parts(self.pool, config, self.clock))
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

#[async_trait]
impl SessionStore for PostgresStore {
    #[tracing::instrument(name = "narvik_postgres.save_session", skip_all, fields(session = short_id(&record.id)))]
    async fn save_session(&self, record: &SessionRecord) -> Result<()> {
        let data = record.data.to_value()?;
        // timestamptz keeps microseconds and rounds below; narvik promises milliseconds, so
        // truncate here rather than let the server round up into the next millisecond.
        sqlx::query(self.inner.sql.insert.clone())
            .bind(&record.id)
            .bind(&record.user_id)
            .bind(truncate_to_millis(record.expires_at))
            .bind(truncate_to_millis(record.created_at))
            .bind(data.as_ref())
            .execute(&self.inner.pool)
            .await
            .map_err(map_insert_error)?;
        Ok(())
    }

    #[tracing::instrument(name = "narvik_postgres.fetch_session", skip_all, fields(session = short_id(session_id)))]
    async fn fetch_session(&self, session_id: &str) -> Result<Option<SessionRecord>> {
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
        // A plain UPDATE touches existing rows only: an extension racing a logout finds no row
        // and changes nothing.
        sqlx::query(self.inner.sql.update_expiry.clone())
            .bind(session_id)
            .bind(truncate_to_millis(expires_at))
            .execute(&self.inner.pool)
            .await
            .map_err(map_sqlx_error)?;
        Ok(())
    }

    #[tracing::instrument(name = "narvik_postgres.delete_session", skip_all, fields(session = short_id(session_id)))]
    async fn delete_session(&self, session_id: &str) -> Result<()> {
        sqlx::query(self.inner.sql.delete.clone())
            .bind(session_id)
            .execute(&self.inner.pool)
            .await
            .map_err(map_sqlx_error)?;
        Ok(())
    }

    #[tracing::instrument(name = "narvik_postgres.fetch_sessions_for_user", skip_all)]
    async fn fetch_sessions_for_user(&self, user_id: &str) -> Result<Vec<SessionRecord>> {
        let rows = sqlx::query(self.inner.sql.select_for_user.clone())
            .bind(user_id)
            .bind(self.now())
            .fetch_all(&self.inner.pool)
            .await
            .map_err(map_sqlx_error)?;
        rows.iter().map(record_from_row).collect()
    }

    #[tracing::instrument(name = "narvik_postgres.delete_sessions_for_user", skip_all)]
    async fn delete_sessions_for_user(&self, user_id: &str) -> Result<()> {
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
    async fn delete_all_expired_sessions(&self) -> Result<u64> {
        // One "now" for the whole purge: rows that expire while it runs wait for the next one,
        // so the count is exactly the rows expired when the call started (less any a
        // concurrent purger took).
        let now = self.now();
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
