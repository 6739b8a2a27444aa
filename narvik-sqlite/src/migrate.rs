//! Embedded, versioned migrations with a templated table name.
//!
//! `sqlx::migrate!` embeds fixed SQL, but the table name here is configuration, so the
//! migrations are our own: SQL files compiled in with `include_str!`, identifiers substituted
//! (validated and quoted, see [`crate::config`]), applied in one `BEGIN IMMEDIATE` transaction
//! (which takes SQLite's write lock first, so instances starting at once take turns), and
//! recorded in a bookkeeping table beside the session table (`<table>_migrations`), so two
//! narvik tables never share or clash with the host application's `_sqlx_migrations`.

use narvik_core::Result;
use narvik_sqlx::migrate::{self, Migration};
use sqlx::{AssertSqlSafe, Connection, Sqlite, SqliteConnection};

use crate::config::SqliteConfig;
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

/// The suffix of the bookkeeping table's name.
const BOOKKEEPING_SUFFIX: &str = "_migrations";

/// The migration's SQL with the configured name.
fn render(migration: &Migration, config: &SqliteConfig) -> String {
    migration
        .template
        .replace("{{table}}", &config.table().quoted())
        .replace(
            "{{user_id_index}}",
            &config.table().quoted_with_suffix("_user_id_idx"),
        )
        .replace(
            "{{expires_at_index}}",
            &config.table().quoted_with_suffix("_expires_at_idx"),
        )
}

/// The operation named in the errors of a migration.
const OPERATION: &str = "migrate";

/// Applies every migration not yet recorded, in one transaction on `connection`.
pub(crate) async fn run(connection: &mut SqliteConnection, config: &SqliteConfig) -> Result<()> {
    let map_sqlx_error = |error| map_sqlx_error(OPERATION, error);
    let mut tx = connection
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(map_sqlx_error)?;

    let bookkeeping = config.table().quoted_with_suffix(BOOKKEEPING_SUFFIX);
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE TABLE IF NOT EXISTS {bookkeeping} (
            version     INTEGER NOT NULL PRIMARY KEY,
            description TEXT    NOT NULL,
            checksum    BLOB    NOT NULL,
            applied_at  INTEGER NOT NULL
        ) STRICT"
    )))
    .execute(&mut *tx)
    .await
    .map_err(map_sqlx_error)?;

    let applied = migrate::applied::<Sqlite>(&mut tx, &bookkeeping, map_sqlx_error).await?;
    for migration in MIGRATIONS {
        if !migrate::is_pending(STORE, config.table().as_str(), migration, &applied)? {
            continue;
        }
        sqlx::raw_sql(AssertSqlSafe(render(migration, config)))
            .execute(&mut *tx)
            .await
            .map_err(map_sqlx_error)?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {bookkeeping} (version, description, checksum, applied_at) \
             VALUES (?1, ?2, ?3, ?4)"
        )))
        .bind(migration.version)
        .bind(migration.description)
        .bind(migration.checksum())
        .bind(crate::store::millis(time::OffsetDateTime::now_utc()))
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
        let config = SqliteConfig::new("Sessions", 10).expect("valid");
        for migration in MIGRATIONS {
            let sql = render(migration, &config);
            assert!(!sql.contains("{{"), "placeholder left in {sql}");
            assert!(sql.contains("\"Sessions\""));
            if migration.version == 1 {
                assert!(sql.contains("\"Sessions_user_id_idx\""));
                assert!(sql.contains("\"Sessions_expires_at_idx\""));
            }
        }
    }

    #[test]
    fn versions_are_increasing_and_templates_use_lf() {
        assert_eq!(migrate::check_migrations(MIGRATIONS), Ok(()));
    }
}
