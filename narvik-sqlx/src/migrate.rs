//! The migrations bookkeeping: which embedded migrations a table has, and which to apply.
//!
//! Each store embeds its own SQL templates and applies them its own way (in one transaction,
//! or under a named lock where DDL commits implicitly); what is shared is the record of
//! applied versions (`<table>_migrations`: `version`, `checksum`) and the rule that decides,
//! migration by migration, whether to skip, refuse or apply it.

use sha2::{Digest, Sha256};
use sqlx::{AssertSqlSafe, ColumnIndex, Database, Decode, Executor, IntoArguments, Row, Type};

use narvik_core::{Error, Result};

/// One embedded migration. The checksum covers the template, not the rendered SQL, so it is
/// the same whatever the configured names.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Its version; a store's migrations are in increasing version order.
    pub version: i64,
    /// A few words on what it does, recorded beside the version.
    pub description: &'static str,
    /// The SQL with the store's placeholders for the configured names.
    pub template: &'static str,
}

impl Migration {
    /// The SHA-256 of the template, recorded when the migration is applied.
    pub fn checksum(&self) -> Vec<u8> {
        Sha256::digest(self.template.as_bytes()).to_vec()
    }
}

/// A migration recorded as applied: its version and checksum.
pub type Applied = (i64, Vec<u8>);

/// Reads the versions and checksums recorded in the bookkeeping table `bookkeeping` (quoted,
/// qualified as the store needs). Driver errors go through `map`.
pub async fn applied<DB>(
    connection: &mut DB::Connection,
    bookkeeping: &str,
    map: impl Fn(sqlx::Error) -> Error,
) -> Result<Vec<Applied>>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    i64: Type<DB> + for<'r> Decode<'r, DB>,
    Vec<u8>: Type<DB> + for<'r> Decode<'r, DB>,
    for<'n> &'n str: ColumnIndex<DB::Row>,
{
    let rows = sqlx::query::<DB>(AssertSqlSafe(format!(
        "SELECT version, checksum FROM {bookkeeping}"
    )))
    .fetch_all(&mut *connection)
    .await
    .map_err(&map)?;
    let mut applied = Vec::with_capacity(rows.len());
    for row in &rows {
        let version: i64 = row.try_get("version").map_err(&map)?;
        let checksum: Vec<u8> = row.try_get("checksum").map_err(&map)?;
        applied.push((version, checksum));
    }
    Ok(applied)
}

/// Whether `migration` is still to apply, by what `applied` records; logs it when it is.
///
/// A migration recorded with another checksum is [`Error::InvalidConfiguration`] (`store`'s
/// migration was edited after it ran on `table`). Versions recorded but not known to the store
/// (a newer narvik already migrated the table) are never asked about, so they are left alone:
/// during a rolling deploy the old binary keeps working on the newer schema.
pub fn is_pending(
    store: &'static str,
    table: &str,
    migration: &Migration,
    applied: &[Applied],
) -> Result<bool> {
    match applied
        .iter()
        .find(|(version, _)| *version == migration.version)
    {
        Some((_, checksum)) if *checksum == migration.checksum() => Ok(false),
        Some(_) => Err(Error::InvalidConfiguration(format!(
            "{store} migration {} ({}) was applied to {table} with different SQL",
            migration.version, migration.description,
        ))),
        None => {
            tracing::info!(
                version = migration.version,
                table = %table,
                "applying {store} migration"
            );
            Ok(true)
        }
    }
}

/// Checks a store's list of migrations: versions strictly increasing, templates with LF line
/// ends only (a CRLF checkout would change the checksum of an applied migration). For the
/// stores' tests.
pub fn check_migrations(migrations: &[Migration]) -> std::result::Result<(), String> {
    for pair in migrations.windows(2) {
        if pair[0].version >= pair[1].version {
            return Err(format!(
                "migration {} comes after {}",
                pair[1].version, pair[0].version
            ));
        }
    }
    match migrations.iter().find(|m| m.template.contains('\r')) {
        Some(migration) => Err(format!("migration {} has a CR", migration.version)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST: Migration = Migration {
        version: 1,
        description: "create sessions",
        template: "CREATE TABLE {{table}} (id text)",
    };
    const SECOND: Migration = Migration {
        version: 2,
        description: "add index",
        template: "CREATE INDEX ON {{table}} (id)",
    };

    #[test]
    fn only_the_unrecorded_are_pending() {
        for migration in [FIRST, SECOND] {
            assert_eq!(
                is_pending("narvik-test", "t", &migration, &[]).ok(),
                Some(true)
            );
        }
        let applied = [(1, FIRST.checksum()), (7, vec![0])];
        assert_eq!(
            is_pending("narvik-test", "t", &FIRST, &applied).ok(),
            Some(false)
        );
        assert_eq!(
            is_pending("narvik-test", "t", &SECOND, &applied).ok(),
            Some(true)
        );
    }

    #[test]
    fn an_edited_migration_is_refused() {
        let error = is_pending("narvik-test", "t", &FIRST, &[(1, vec![1, 2, 3])])
            .expect_err("a changed checksum");
        assert_eq!(
            error.to_string(),
            Error::InvalidConfiguration(
                "narvik-test migration 1 (create sessions) was applied to t with different SQL"
                    .into()
            )
            .to_string()
        );
    }

    #[test]
    fn the_list_check_finds_order_and_line_ends() {
        assert!(check_migrations(&[FIRST, SECOND]).is_ok());
        assert!(check_migrations(&[SECOND, FIRST]).is_err());
        let crlf = Migration {
            template: "CREATE TABLE t (id text);\r\n",
            ..SECOND
        };
        assert!(check_migrations(&[FIRST, crlf]).is_err());
    }
}
