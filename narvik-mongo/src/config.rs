//! Where the sessions live: database and collection names.

use narvik_core::{Error, Result};

/// The database used when neither the configuration nor the connection string names one.
pub const DEFAULT_DATABASE: &str = "narvik";

/// The collection used unless configured otherwise.
pub const DEFAULT_COLLECTION: &str = "sessions";

/// Names of the database and collection that hold the sessions.
///
/// ```
/// use narvik_mongo::MongoStoreConfig;
/// let config = MongoStoreConfig::default()
///     .database("app")
///     .collection("web_sessions");
/// assert_eq!(config.collection_name(), "web_sessions");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MongoStoreConfig {
    database: Option<String>,
    collection: String,
}

impl Default for MongoStoreConfig {
    fn default() -> Self {
        Self {
            database: None,
            collection: DEFAULT_COLLECTION.to_owned(),
        }
    }
}

impl MongoStoreConfig {
    /// Uses the database `name`. Without it, the store uses the database of the connection
    /// string (`mongodb://host/NAME`), else [`DEFAULT_DATABASE`].
    pub fn database(mut self, name: impl Into<String>) -> Self {
        self.database = Some(name.into());
        self
    }

    /// Uses the collection `name` (default [`DEFAULT_COLLECTION`]).
    pub fn collection(mut self, name: impl Into<String>) -> Self {
        self.collection = name.into();
        self
    }

    /// The configured database name, if any.
    pub fn database_name(&self) -> Option<&str> {
        self.database.as_deref()
    }

    /// The configured collection name.
    pub fn collection_name(&self) -> &str {
        &self.collection
    }

    /// Rejects names the server would refuse, so that a typo fails at start-up and not on the
    /// first login.
    pub(crate) fn validate(&self) -> Result<()> {
        if let Some(database) = &self.database {
            if database.is_empty()
                || database.len() > 63
                || database.contains(['/', '\\', '.', ' ', '"', '$', '\0'])
            {
                return Err(Error::InvalidConfiguration(format!(
                    "`{database}` is not a valid MongoDB database name"
                )));
            }
        }
        let collection = &self.collection;
        if collection.is_empty()
            || collection.contains(['$', '\0'])
            || collection.starts_with("system.")
        {
            return Err(Error::InvalidConfiguration(format!(
                "`{collection}` is not a valid MongoDB collection name"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_names_the_server_would_refuse() {
        for config in [
            MongoStoreConfig::default().database(""),
            MongoStoreConfig::default().database("a.b"),
            MongoStoreConfig::default().database("a b"),
            MongoStoreConfig::default().collection(""),
            MongoStoreConfig::default().collection("a$b"),
            MongoStoreConfig::default().collection("system.users"),
        ] {
            assert!(
                matches!(config.validate(), Err(Error::InvalidConfiguration(_))),
                "{config:?} was accepted"
            );
        }
        assert!(MongoStoreConfig::default().validate().is_ok());
        assert!(MongoStoreConfig::default()
            .database("app_1")
            .collection("web.sessions")
            .validate()
            .is_ok());
    }
}
