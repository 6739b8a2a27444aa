//! Embedded, versioned migrations with templated identifiers.
//!
//! `sqlx::migrate!` embeds fixed SQL, but the schema and table names here are configuration,
//! so the migrations are our own: SQL files compiled in with `include_str!`, identifiers
//! substituted (validated and quoted, see [`crate::config`]), applied in one transaction under
//! an advisory lock, and recorded in a bookkeeping table beside the session table
//! (`<table>_migrations`), so two narvik tables never share or clash with the host
//! application's `_sqlx_migrations`.

use narvik_core::Result;
use narvik_sqlx::migrate::{self, Migration};
use sha2::{Digest, Sha256};
use sqlx::{AssertSqlSafe, Connection, PgConnection, Postgres};

use crate::config::PostgresConfig;
use crate::error::{map_sqlx_error, STORE};

/// Every migration, in version order. Append only: an applied migration is never edited.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "create sessions",
        template: include_str!("../migrations/0001_create_sessions.sql"),
    },
    Migration {
        version: 2,
        description: "session lifetime and data version",
        template: include_str!("../migrations/0002_session_lifetime_and_data_version.sql"),
    },
    Migration {
        version: 3,
        description: "invalidation trigger",
        template: include_str!("../migrations/0003_invalidation_trigger.sql"),
    },
];

/// The suffix of the bookkeeping table's name.
const BOOKKEEPING_SUFFIX: &str = "_migrations";

/// The migration's SQL with the configured names.
fn render(migration: &Migration, config: &PostgresConfig) -> String {
    migration
        .template
        .replace("{{table}}", &config.qualified_table())
        .replace(
            "{{user_id_index}}",
            &config.table().quoted_with_suffix("_user_id_idx"),
        )
        .replace(
            "{{expires_at_index}}",
            &config.table().quoted_with_suffix("_expires_at_idx"),
        )
        .replace(
            "{{invalidate_function}}",
            &config.qualified_with_suffix(crate::invalidation::FUNCTION_SUFFIX),
        )
        // A literal without escaping: the channel is letters, digits and `_ . #` (checked in
        // config's tests), never a quote.
        .replace(
            "{{channel}}",
            &format!("'{}'", config.invalidation_channel()),
        )
}

/// The advisory lock that serialises migrations of one schema across every process and
/// connection, so that concurrent starts never race on `CREATE SCHEMA` or `CREATE TABLE`.
fn advisory_lock_key(config: &PostgresConfig) -> i64 {
    let digest = Sha256::digest(format!("narvik-postgres migrate {}", config.schema()));
    let mut key = [0u8; 8];
    key.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(key)
}

/// The operation named in the errors of a migration.
const OPERATION: &str = "migrate";

/// Applies every migration not yet recorded, in one transaction on `connection`.
pub(crate) async fn run(connection: &mut PgConnection, config: &PostgresConfig) -> Result<()> {
    let map_sqlx_error = |error| map_sqlx_error(OPERATION, error);
    let mut tx = connection.begin().await.map_err(map_sqlx_error)?;
    // The store's connections carry a `statement_timeout` sized for session calls; waiting
    // for another instance's migration, or building an index on a large table, may take
    // longer. For this transaction only.
    sqlx::raw_sql("SET LOCAL statement_timeout = 0")
        .execute(&mut *tx)
        .await
        .map_err(map_sqlx_error)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(advisory_lock_key(config))
        .execute(&mut *tx)
        .await
        .map_err(map_sqlx_error)?;

    // `CREATE SCHEMA IF NOT EXISTS` checks the database-level CREATE privilege before it
    // checks existence, so an application role without it could not migrate into an existing
    // schema. Only create what is missing.
    let schema_exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(config.schema().as_str())
            .fetch_one(&mut *tx)
            .await
            .map_err(map_sqlx_error)?;
    if !schema_exists {
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE SCHEMA IF NOT EXISTS {}",
            config.schema().quoted()
        )))
        .execute(&mut *tx)
        .await
        .map_err(map_sqlx_error)?;
    }

    let bookkeeping = config.qualified_with_suffix(BOOKKEEPING_SUFFIX);
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE TABLE IF NOT EXISTS {bookkeeping} (
            version     bigint      PRIMARY KEY,
            description text        NOT NULL,
            checksum    bytea       NOT NULL,
            applied_at  timestamptz NOT NULL DEFAULT now()
        )"
    )))
    .execute(&mut *tx)
    .await
    .map_err(map_sqlx_error)?;

    let applied = migrate::applied::<Postgres>(&mut tx, &bookkeeping, map_sqlx_error).await?;
    let table = config.qualified_table();
    for migration in MIGRATIONS {
        if !migrate::is_pending(STORE, &table, migration, &applied)? {
            continue;
        }
        sqlx::raw_sql(AssertSqlSafe(render(migration, config)))
            .execute(&mut *tx)
            .await
            .map_err(map_sqlx_error)?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {bookkeeping} (version, description, checksum) VALUES ($1, $2, $3)"
        )))
        .bind(migration.version)
        .bind(migration.description)
        .bind(migration.checksum())
        .execute(&mut *tx)
        .await
        .map_err(map_sqlx_error)?;
    }

    tx.commit().await.map_err(map_sqlx_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendering_leaves_no_placeholder_and_quotes_every_name() {
        let config = PostgresConfig::new("Auth", "Sessions", 10).expect("valid");
        for migration in MIGRATIONS {
            let sql = render(migration, &config);
            assert!(!sql.contains("{{"), "placeholder left in {sql}");
            assert!(sql.contains("\"Auth\".\"Sessions\""));
            if migration.version == 1 {
                assert!(sql.contains("\"Sessions_user_id_idx\""));
                assert!(sql.contains("\"Sessions_expires_at_idx\""));
            }
            if migration.version == 3 {
                assert!(sql.contains("\"Auth\".\"Sessions_invalidate\"()"));
                assert!(sql.contains("pg_notify('narvik.Auth.Sessions', payload)"));
            }
        }
    }

    #[test]
    fn the_trigger_migration_creates_the_triggers_the_listener_checks_for() {
        let config = PostgresConfig::default();
        let sql = render(&MIGRATIONS[2], &config);
        for trigger in crate::invalidation::TRIGGERS {
            assert!(
                sql.contains(&format!("CREATE TRIGGER {trigger} AFTER")),
                "{trigger} is not created"
            );
        }
    }

    #[test]
    fn versions_are_increasing_and_templates_use_lf() {
        assert_eq!(migrate::check_migrations(MIGRATIONS), Ok(()));
    }

    #[test]
    fn the_lock_key_depends_on_the_schema_only() {
        let a = PostgresConfig::new("a", "t1", 10).expect("valid");
        let a2 = PostgresConfig::new("a", "t2", 10).expect("valid");
        let b = PostgresConfig::new("b", "t1", 10).expect("valid");
        assert_eq!(advisory_lock_key(&a), advisory_lock_key(&a2));
        assert_ne!(advisory_lock_key(&a), advisory_lock_key(&b));
    }
}
