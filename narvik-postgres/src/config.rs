//! Where the store keeps its rows: schema and table names, validated once, quoted always.

use narvik_core::Result;
use sha2::{Digest, Sha256};

/// The longest identifier Postgres keeps whole (`NAMEDATALEN - 1`); longer ones are silently
/// truncated, which would make two configured tables collide.
const MAX_IDENTIFIER_BYTES: usize = 63;

/// The longest suffix the store appends to the table name (`_expires_at_idx`), so that every
/// derived index and bookkeeping name still fits in [`MAX_IDENTIFIER_BYTES`].
const LONGEST_SUFFIX: &str = "_expires_at_idx";

/// A schema or table name that passed validation: ASCII letters, digits and `_`, not starting
/// with a digit, short enough for Postgres. It is always spliced into SQL double-quoted, so
/// case is kept and reserved words are harmless.
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

    /// The name double-quoted for SQL. Validation rules out `"`, so no escaping is needed.
    pub(crate) fn quoted(&self) -> String {
        format!("\"{}\"", self.0)
    }

    /// A derived name (`<table><suffix>`), quoted. Fits because the table name was checked
    /// against the longest suffix.
    #[cfg_attr(not(feature = "migrate"), allow(dead_code))]
    pub(crate) fn quoted_with_suffix(&self, suffix: &str) -> String {
        debug_assert!(suffix.len() <= LONGEST_SUFFIX.len());
        format!("\"{}{}\"", self.0, suffix)
    }
}

impl std::fmt::Display for Identifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The store's settings, validated by [`PostgresConfig::new`] or
/// [`PostgresStoreBuilder`](crate::PostgresStoreBuilder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    schema: Identifier,
    table: Identifier,
    purge_batch_size: i64,
}

impl PostgresConfig {
    /// The schema used unless configured otherwise.
    pub const DEFAULT_SCHEMA: &'static str = "public";
    /// The table used unless configured otherwise.
    pub const DEFAULT_TABLE: &'static str = "narvik_sessions";
    /// Rows deleted per statement by the expired purge unless configured otherwise: small
    /// enough that one statement holds its row locks for milliseconds, large enough that a
    /// purge of 10^6 rows is a few hundred statements.
    pub const DEFAULT_PURGE_BATCH_SIZE: u32 = 5_000;

    /// Validates a schema name, a table name and the purge batch size.
    ///
    /// ```
    /// use narvik_postgres::PostgresConfig;
    /// assert!(PostgresConfig::new("auth", "sessions", 1000).is_ok());
    /// assert!(PostgresConfig::new("auth", "sessions; drop table users", 1000).is_err());
    /// assert!(PostgresConfig::new("auth", "sessions", 0).is_err());
    /// ```
    pub fn new(schema: &str, table: &str, purge_batch_size: u32) -> Result<Self> {
        let schema = Identifier::parse("schema", schema, MAX_IDENTIFIER_BYTES)?;
        let table = Identifier::parse("table", table, MAX_IDENTIFIER_BYTES - LONGEST_SUFFIX.len())?;
        narvik_sqlx::config::check_purge_batch_size(purge_batch_size)?;
        Ok(Self {
            schema,
            table,
            purge_batch_size: i64::from(purge_batch_size),
        })
    }

    /// The schema holding the session table.
    pub fn schema(&self) -> &Identifier {
        &self.schema
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

    /// `"schema"."table"`, ready for SQL.
    pub(crate) fn qualified_table(&self) -> String {
        format!("{}.{}", self.schema.quoted(), self.table.quoted())
    }

    /// The `NOTIFY` channel on which migration 3's trigger announces changes to this table:
    /// `narvik.<schema>.<table>` when that fits in an identifier (63 bytes), else `narvik#`
    /// and 32 hex digits of a SHA-256 of both names. Two configured tables never share a
    /// channel: names cannot hold `.`, so the readable form is unambiguous, and the hashed
    /// form has no `.` after its prefix.
    ///
    /// ```
    /// use narvik_postgres::PostgresConfig;
    /// let config = PostgresConfig::new("auth", "sessions", 1000).expect("valid");
    /// assert_eq!(config.invalidation_channel(), "narvik.auth.sessions");
    /// ```
    pub fn invalidation_channel(&self) -> String {
        let readable = format!("narvik.{}.{}", self.schema, self.table);
        if readable.len() <= MAX_IDENTIFIER_BYTES {
            return readable;
        }
        let digest = Sha256::digest(format!("{}.{}", self.schema, self.table));
        format!("narvik#{}", hex::encode(&digest[..16]))
    }

    /// `"schema"."<table><suffix>"`, for the migrations bookkeeping table.
    #[cfg_attr(not(feature = "migrate"), allow(dead_code))]
    pub(crate) fn qualified_with_suffix(&self, suffix: &str) -> String {
        format!(
            "{}.{}",
            self.schema.quoted(),
            self.table.quoted_with_suffix(suffix)
        )
    }
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            schema: Identifier(Self::DEFAULT_SCHEMA.to_owned()),
            table: Identifier(Self::DEFAULT_TABLE.to_owned()),
            purge_batch_size: i64::from(Self::DEFAULT_PURGE_BATCH_SIZE),
        }
    }
}

#[cfg(test)]
mod tests {
    use narvik_core::Error;

    use super::*;

    #[test]
    fn plain_identifiers_pass_and_keep_their_case() {
        let config = PostgresConfig::new("Auth_1", "_Sessions", 1).expect("valid");
        assert_eq!(config.qualified_table(), "\"Auth_1\".\"_Sessions\"");
        assert_eq!(
            config.qualified_with_suffix("_migrations"),
            "\"Auth_1\".\"_Sessions_migrations\""
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
            "sessions--",
            "é",
            "a\0b",
            "a'b",
        ] {
            for result in [
                PostgresConfig::new(bad, "sessions", 10),
                PostgresConfig::new("public", bad, 10),
            ] {
                assert!(
                    matches!(result, Err(Error::InvalidConfiguration(_))),
                    "{bad:?} was accepted"
                );
            }
        }
    }

    #[test]
    fn names_that_postgres_would_truncate_are_rejected() {
        let schema_63 = "s".repeat(63);
        assert!(PostgresConfig::new(&schema_63, "t", 1).is_ok());
        assert!(PostgresConfig::new(&"s".repeat(64), "t", 1).is_err());
        let table_fits = "t".repeat(63 - LONGEST_SUFFIX.len());
        let config = PostgresConfig::new("s", &table_fits, 1).expect("fits");
        assert_eq!(
            config.table().quoted_with_suffix(LONGEST_SUFFIX).len(),
            63 + 2
        );
        assert!(PostgresConfig::new("s", &format!("{table_fits}t"), 1).is_err());
    }

    #[test]
    fn every_table_has_a_channel_of_its_own_that_postgres_keeps_whole() {
        let long_schema = "s".repeat(63);
        let long_table = "t".repeat(63 - LONGEST_SUFFIX.len());
        let configs = [
            PostgresConfig::default(),
            PostgresConfig::new("public", "Narvik_Sessions", 1).expect("valid"),
            PostgresConfig::new("a", "b_c", 1).expect("valid"),
            PostgresConfig::new("a_b", "c", 1).expect("valid"),
            PostgresConfig::new(&long_schema, "t", 1).expect("valid"),
            PostgresConfig::new(&long_schema, "u", 1).expect("valid"),
            PostgresConfig::new("s", &long_table, 1).expect("valid"),
            PostgresConfig::new(&long_schema, &long_table, 1).expect("valid"),
        ];
        let channels: Vec<String> = configs.iter().map(|c| c.invalidation_channel()).collect();
        assert_eq!(channels[0], "narvik.public.narvik_sessions");
        assert_eq!(channels[1], "narvik.public.Narvik_Sessions");
        for (i, channel) in channels.iter().enumerate() {
            assert!(channel.len() <= MAX_IDENTIFIER_BYTES, "{channel}");
            assert!(
                channel
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.#".contains(&b)),
                "{channel} could not be spliced into the migration as a literal"
            );
            for other in &channels[i + 1..] {
                assert_ne!(channel, other);
            }
        }
        assert!(channels[4].starts_with("narvik#"), "{}", channels[4]);
    }

    #[test]
    fn a_zero_batch_is_rejected() {
        assert!(matches!(
            PostgresConfig::new("s", "t", 0),
            Err(Error::InvalidConfiguration(_))
        ));
    }
}
