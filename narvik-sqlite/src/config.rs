//! Where the store keeps its rows: the table name, validated once, quoted always.

use narvik_core::{Error, Result};

/// The longest table name accepted. SQLite itself has no limit; this one keeps names readable
/// and every derived name (`<table>_expires_at_idx`, `<table>_migrations`) short.
const MAX_TABLE_BYTES: usize = 48;

/// A table name that passed validation: ASCII letters, digits and `_`, not starting with a
/// digit, not starting with `sqlite_` (SQLite reserves those). It is always spliced into SQL
/// double-quoted, so reserved words are harmless.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identifier(String);

impl Identifier {
    fn parse(name: &str) -> Result<Self> {
        narvik_sqlx::config::check_identifier("table", name, MAX_TABLE_BYTES)?;
        if name.to_ascii_lowercase().starts_with("sqlite_") {
            return Err(Error::InvalidConfiguration(format!(
                "the table name {name:?} starts with `sqlite_`, which SQLite reserves"
            )));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name as configured.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name double-quoted for SQL. Validation rules out `"`, so no escaping is needed.
    pub(crate) fn quoted(&self) -> String {
        format!("\"{}\"", self.0)
    }

    /// A derived name (`<table><suffix>`), quoted.
    #[cfg_attr(not(feature = "migrate"), allow(dead_code))]
    pub(crate) fn quoted_with_suffix(&self, suffix: &str) -> String {
        format!("\"{}{}\"", self.0, suffix)
    }
}

impl std::fmt::Display for Identifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The store's settings, validated by [`SqliteConfig::new`] or
/// [`SqliteStoreBuilder`](crate::SqliteStoreBuilder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteConfig {
    table: Identifier,
    purge_batch_size: i64,
}

impl SqliteConfig {
    /// The table used unless configured otherwise.
    pub const DEFAULT_TABLE: &'static str = "narvik_sessions";
    /// Rows deleted per statement (one write transaction) by the expired purge unless
    /// configured otherwise. SQLite has one writer at a time: a batch holds the write lock for
    /// a few milliseconds, so requests that log in or out meanwhile wait that long at most.
    pub const DEFAULT_PURGE_BATCH_SIZE: u32 = 2_000;

    /// Validates a table name and the purge batch size.
    ///
    /// ```
    /// use narvik_sqlite::SqliteConfig;
    /// assert!(SqliteConfig::new("sessions", 1000).is_ok());
    /// assert!(SqliteConfig::new("sessions; drop table users", 1000).is_err());
    /// assert!(SqliteConfig::new("sessions", 0).is_err());
    /// ```
    pub fn new(table: &str, purge_batch_size: u32) -> Result<Self> {
        let table = Identifier::parse(table)?;
        narvik_sqlx::config::check_purge_batch_size(purge_batch_size)?;
        Ok(Self {
            table,
            purge_batch_size: i64::from(purge_batch_size),
        })
    }

    /// The session table.
    pub fn table(&self) -> &Identifier {
        &self.table
    }

    /// Rows deleted per statement by the expired purge.
    pub fn purge_batch_size(&self) -> u32 {
        // Constructed from a u32, so this never saturates.
        u32::try_from(self.purge_batch_size).unwrap_or(u32::MAX)
    }

    pub(crate) fn purge_batch_size_param(&self) -> i64 {
        self.purge_batch_size
    }
}

impl Default for SqliteConfig {
    fn default() -> Self {
        Self {
            table: Identifier(Self::DEFAULT_TABLE.to_owned()),
            purge_batch_size: i64::from(Self::DEFAULT_PURGE_BATCH_SIZE),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_identifiers_pass_and_keep_their_case() {
        let config = SqliteConfig::new("_Sessions_1", 1).expect("valid");
        assert_eq!(config.table().quoted(), "\"_Sessions_1\"");
        assert_eq!(
            config.table().quoted_with_suffix("_migrations"),
            "\"_Sessions_1_migrations\""
        );
    }

    #[test]
    fn anything_that_could_be_syntax_is_a_configuration_error() {
        for bad in [
            "",
            "1abc",
            "a b",
            "a\"b",
            "a;b",
            "a.b",
            "a-b",
            "t--",
            "é",
            "a\0b",
            "a'b",
            "a]b",
            "sqlite_master",
            "SQLITE_x",
        ] {
            assert!(
                matches!(
                    SqliteConfig::new(bad, 10),
                    Err(Error::InvalidConfiguration(_))
                ),
                "{bad:?} was accepted"
            );
        }
        assert!(SqliteConfig::new(&"t".repeat(MAX_TABLE_BYTES), 1).is_ok());
        assert!(SqliteConfig::new(&"t".repeat(MAX_TABLE_BYTES + 1), 1).is_err());
    }

    #[test]
    fn a_zero_batch_is_rejected() {
        assert!(matches!(
            SqliteConfig::new("t", 0),
            Err(Error::InvalidConfiguration(_))
        ));
    }
}
