//! Embedded, versioned migrations with templated identifiers.
//!
//! `sqlx::migrate!` embeds fixed SQL, but the table name here is configuration, so the
//! migrations are our own: SQL files compiled in with `include_str!`, the table name
//! substituted (validated and backticked, see [`crate::config`]), applied under a named lock
//! (`GET_LOCK`), and recorded in a bookkeeping table beside the session table
//! (`<table>_migrations`), so two narvik tables never share or clash with the host
//! application's `_sqlx_migrations`. MySQL commits DDL implicitly, so there is no enclosing
//! transaction: every statement is `IF NOT EXISTS`, and a migration is recorded after it ran.

use narvik_core::Result;
use narvik_sqlx::migrate::{self, Migration};
use sqlx::{AssertSqlSafe, MySql, MySqlConnection};

use crate::config::MySqlConfig;
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
];

/// How long a migration waits for another instance's (seconds, `GET_LOCK`'s unit).
const LOCK_WAIT_SECONDS: i64 = 60;

/// The migration's SQL with the configured names.
fn render(migration: &Migration, config: &MySqlConfig) -> String {
    migration
        .template
        .replace("{{table}}", &config.qualified_table())
}

/// The operation named in the errors of a migration.
const OPERATION: &str = "migrate";

/// Applies every migration not yet recorded, on `connection`, holding a server-wide named lock
/// for this table so that instances starting at once take turns.
pub(crate) async fn run(connection: &mut MySqlConnection, config: &MySqlConfig) -> Result<()> {
    let map = |error| map_sqlx_error(OPERATION, error);
    // Lock names are server-wide and at most 64 characters: derive one from the database (the
    // connection's own when none is configured) and the table.
    let lock: String = sqlx::query_scalar(
        "SELECT CONCAT('narvik-mysql:', LEFT(SHA2(CONCAT(COALESCE(?, DATABASE(), ''), '.', ?), \
         256), 40))",
    )
    .bind(config.database().map(|database| database.as_str()))
    .bind(config.table().as_str())
    .fetch_one(&mut *connection)
    .await
    .map_err(map)?;
    let locked: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, ?)")
        .bind(&lock)
        .bind(LOCK_WAIT_SECONDS)
        .fetch_one(&mut *connection)
        .await
        .map_err(map)?;
    if locked != Some(1) {
        return Err(narvik_core::deadline::StoreFault::new(
            STORE,
            OPERATION,
            "another instance's migration holds the lock",
        )
        .into());
    }
    let outcome = migrate_locked(connection, config).await;
    // Released on every path; a lost connection releases it on the server too.
    let released = sqlx::query("SELECT RELEASE_LOCK(?)")
        .bind(&lock)
        .execute(&mut *connection)
        .await
        .map_err(map);
    outcome.and(released.map(|_| ()))
}

async fn migrate_locked(connection: &mut MySqlConnection, config: &MySqlConfig) -> Result<()> {
    let map = |error| map_sqlx_error(OPERATION, error);
    if let Some(database) = config.database() {
        // `CREATE DATABASE IF NOT EXISTS` needs the CREATE privilege even when the database
        // exists, so an application user without it could not migrate: only create what is
        // missing.
        let exists: Option<String> = sqlx::query_scalar(
            "SELECT schema_name FROM information_schema.schemata WHERE schema_name = ?",
        )
        .bind(database.as_str())
        .fetch_optional(&mut *connection)
        .await
        .map_err(map)?;
        if exists.is_none() {
            sqlx::raw_sql(AssertSqlSafe(format!(
                "CREATE DATABASE IF NOT EXISTS {} CHARACTER SET utf8mb4",
                database.quoted()
            )))
            .execute(&mut *connection)
            .await
            .map_err(map)?;
        }
    }

    let bookkeeping = config.qualified_bookkeeping();
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE TABLE IF NOT EXISTS {bookkeeping} (
            version     BIGINT       NOT NULL PRIMARY KEY,
            description VARCHAR(255) NOT NULL,
            checksum    VARBINARY(32) NOT NULL,
            applied_at  DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
        ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4"
    )))
    .execute(&mut *connection)
    .await
    .map_err(map)?;

    let applied = migrate::applied::<MySql>(&mut *connection, &bookkeeping, map).await?;
    let table = config.qualified_table();
    for migration in MIGRATIONS {
        if !migrate::is_pending(STORE, &table, migration, &applied)? {
            continue;
        }
        sqlx::raw_sql(AssertSqlSafe(render(migration, config)))
            .execute(&mut *connection)
            .await
            .map_err(map)?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {bookkeeping} (version, description, checksum) VALUES (?, ?, ?)"
        )))
        .bind(migration.version)
        .bind(migration.description)
        .bind(migration.checksum())
        .execute(&mut *connection)
        .await
        .map_err(map)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendering_leaves_no_placeholder_and_quotes_the_name() {
        let config = MySqlConfig::new(Some("Auth"), "Sessions", 10).expect("valid");
        for migration in MIGRATIONS {
            let sql = render(migration, &config);
            assert!(!sql.contains("{{"), "placeholder left in {sql}");
            assert!(sql.contains("`Auth`.`Sessions`"));
        }
    }

    #[test]
    fn versions_are_increasing_and_templates_use_lf() {
        assert_eq!(migrate::check_migrations(MIGRATIONS), Ok(()));
    }
}
