//! Where the store keeps its rows: database and table names, validated once, quoted always.

use narvik_core::Result;

/// The longest identifier MySQL and MariaDB accept for a database or a table (64 characters);
/// longer ones are refused by the server.
const MAX_IDENTIFIER_BYTES: usize = 64;

/// The suffix of the migrations bookkeeping table (`<table>_migrations`): the table name is
/// checked against it, so that the derived name fits in [`MAX_IDENTIFIER_BYTES`] too.
pub(crate) const BOOKKEEPING_SUFFIX: &str = "_migrations";

/// A database or table name that passed validation: ASCII letters, digits and `_`, not
/// starting with a digit, short enough for MySQL. It is always spliced into SQL in backticks,
/// so reserved words are harmless. (Whether case matters for table names is the server's
/// `lower_case_table_names`; two names differing only by case are best avoided.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identifier(String);

impl Identifier {
    /// Validates `name` as an identifier of at most `max_bytes` bytes.
    fn parse(kind: &str, name: &str, max_bytes: usize) -> Result<Self> {
        narvik_sqlx::config::check_identifier(kind, name, max_bytes)?;
        Ok(Self(name.to_owned()))
    }

    /// The name as configured.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name in backticks for SQL. Validation rules out the backtick, so no escaping is
    /// needed.
    pub(crate) fn quoted(&self) -> String {
        format!("`{}`", self.0)
    }
}

impl std::fmt::Display for Identifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The store's settings, validated by [`MySqlConfig::new`] or
/// [`MySqlStoreBuilder`](crate::MySqlStoreBuilder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MySqlConfig {
    database: Option<Identifier>,
    table: Identifier,
    purge_batch_size: u32,
}

impl MySqlConfig {
    /// The table used unless configured otherwise.
    pub const DEFAULT_TABLE: &'static str = "narvik_sessions";
    /// Rows deleted per statement by the expired purge unless configured otherwise: small
    /// enough that one statement holds its row locks for milliseconds, large enough that a
    /// purge of 10^6 rows is a few hundred statements.
    pub const DEFAULT_PURGE_BATCH_SIZE: u32 = 5_000;

    /// Validates an optional database name (`None`: the connection's own, from the URL), a
    /// table name and the purge batch size.
    ///
    /// ```
    /// use narvik_mysql::MySqlConfig;
    /// assert!(MySqlConfig::new(Some("auth"), "sessions", 1000).is_ok());
    /// assert!(MySqlConfig::new(None, "sessions`; drop table users", 1000).is_err());
    /// assert!(MySqlConfig::new(None, "sessions", 0).is_err());
    /// ```
    pub fn new(database: Option<&str>, table: &str, purge_batch_size: u32) -> Result<Self> {
        let database = database
            .map(|name| Identifier::parse("database", name, MAX_IDENTIFIER_BYTES))
            .transpose()?;
        let table = Identifier::parse(
            "table",
            table,
            MAX_IDENTIFIER_BYTES - BOOKKEEPING_SUFFIX.len(),
        )?;
        narvik_sqlx::config::check_purge_batch_size(purge_batch_size)?;
        Ok(Self {
            database,
            table,
            purge_batch_size,
        })
    }

    /// The database holding the session table; `None` for the connection's default database.
    pub fn database(&self) -> Option<&Identifier> {
        self.database.as_ref()
    }

    /// The session table.
    pub fn table(&self) -> &Identifier {
        &self.table
    }

    /// Rows deleted per statement by the expired purge.
    pub fn purge_batch_size(&self) -> u32 {
        self.purge_batch_size
    }

    /// `` `database`.`table` `` (or `` `table` ``), ready for SQL.
    pub(crate) fn qualified_table(&self) -> String {
        self.qualified(&self.table.quoted())
    }

    /// The migrations bookkeeping table, `<table>_migrations`, beside the session table.
    #[cfg_attr(not(feature = "migrate"), allow(dead_code))]
    pub(crate) fn qualified_bookkeeping(&self) -> String {
        self.qualified(&format!("`{}{BOOKKEEPING_SUFFIX}`", self.table.as_str()))
    }

    fn qualified(&self, quoted_table: &str) -> String {
        match &self.database {
            Some(database) => format!("{}.{quoted_table}", database.quoted()),
            None => quoted_table.to_owned(),
        }
    }
}

impl Default for MySqlConfig {
    fn default() -> Self {
        Self {
            database: None,
            table: Identifier(Self::DEFAULT_TABLE.to_owned()),
            purge_batch_size: Self::DEFAULT_PURGE_BATCH_SIZE,
        }
    }
}

#[cfg(test)]
mod tests {
    use narvik_core::Error;

    use super::*;

    #[test]
    fn plain_identifiers_pass_and_are_backticked() {
        let config = MySqlConfig::new(Some("Auth_1"), "_Sessions", 1).expect("valid");
        assert_eq!(config.qualified_table(), "`Auth_1`.`_Sessions`");
        assert_eq!(
            config.qualified_bookkeeping(),
            "`Auth_1`.`_Sessions_migrations`"
        );
        let unqualified = MySqlConfig::new(None, "s", 1).expect("valid");
        assert_eq!(unqualified.qualified_table(), "`s`");
        assert_eq!(
            MySqlConfig::default().qualified_table(),
            "`narvik_sessions`"
        );
    }

    #[test]
    fn anything_that_could_be_syntax_is_a_configuration_error() {
        for bad in [
            "", "1abc", "a b", "a`b", "a;b", "a.b", "a-b", "s--", "é", "a\0b", "a'b", "a\"b",
        ] {
            for result in [
                MySqlConfig::new(Some(bad), "sessions", 10),
                MySqlConfig::new(None, bad, 10),
            ] {
                assert!(
                    matches!(result, Err(Error::InvalidConfiguration(_))),
                    "{bad:?} was accepted"
                );
            }
        }
    }

    #[test]
    fn names_mysql_would_refuse_are_rejected() {
        assert!(MySqlConfig::new(Some(&"d".repeat(64)), "t", 1).is_ok());
        assert!(MySqlConfig::new(Some(&"d".repeat(65)), "t", 1).is_err());
        let fits = "t".repeat(64 - BOOKKEEPING_SUFFIX.len());
        let config = MySqlConfig::new(None, &fits, 1).expect("fits");
        assert_eq!(config.qualified_bookkeeping().len(), 64 + 2);
        assert!(MySqlConfig::new(None, &format!("{fits}t"), 1).is_err());
        assert!(matches!(
            MySqlConfig::new(None, "t", 0),
            Err(Error::InvalidConfiguration(_))
        ));
    }
}
