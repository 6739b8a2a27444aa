//! [`MongoStore`]: the [`SessionStore`] on a MongoDB collection.

use futures_util::TryStreamExt;
use mongodb::bson::{doc, Document};
use mongodb::options::ClientOptions;
use mongodb::{Client, Collection, Database};
use narvik_core::session::short_id;
use narvik_core::{Capabilities, ExpiredCount, ExpiredFetch, Result, SessionRecord, SessionStore};
use time::OffsetDateTime;

use crate::config::{MongoStoreConfig, DEFAULT_DATABASE};
use crate::document::{self, field};
use crate::error::{from_driver, from_driver_setup};

/// Sessions in a MongoDB collection, one document per session.
///
/// Cloning is cheap: clones share the driver's connection pool.
///
/// Expired documents are invisible to every read, whether or not the server's TTL monitor has
/// deleted them yet. The store holds no clock: `fetch_session` and the extensions judge expiry
/// by the wall clock of this process, the listing and the purge by the `now` the engine hands
/// down (see [`SessionStore`]'s "One clock" rule). Its declaration is
/// [`MongoStore::CAPABILITIES`].
#[derive(Clone)]
pub struct MongoStore {
    collection: Collection<Document>,
}

impl std::fmt::Debug for MongoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoStore")
            .field("namespace", &self.collection.namespace())
            .finish_non_exhaustive()
    }
}

impl MongoStore {
    /// A store on `collection`, any collection of any database.
    pub fn new<T: Send + Sync>(collection: Collection<T>) -> Self {
        Self {
            collection: collection.clone_with_type(),
        }
    }

    /// A store on the collection [`DEFAULT_COLLECTION`](crate::DEFAULT_COLLECTION) of `database`.
    pub fn from_database(database: &Database) -> Self {
        Self::new(database.collection::<Document>(crate::DEFAULT_COLLECTION))
    }

    /// A store on an existing client, with the database and collection of `config`.
    ///
    /// Without a configured database it uses the connection string's (`mongodb://host/NAME`),
    /// else [`DEFAULT_DATABASE`].
    pub fn from_client(client: &Client, config: &MongoStoreConfig) -> Result<Self> {
        config.validate()?;
        let database = match config.database_name() {
            Some(name) => client.database(name),
            None => client
                .default_database()
                .unwrap_or_else(|| client.database(DEFAULT_DATABASE)),
        };
        Ok(Self::new(
            database.collection::<Document>(config.collection_name()),
        ))
    }

    /// Connects to the deployment at `uri` (`mongodb://` or, with the `dns-resolver` feature,
    /// `mongodb+srv://`).
    ///
    /// The driver connects lazily: an unreachable server is reported by the first operation, as
    /// [`Error::Unavailable`](narvik_core::Error::Unavailable) once the server selection timeout
    /// (`serverSelectionTimeoutMS`, 30 s by default) has passed. A malformed URI is
    /// [`Error::InvalidConfiguration`](narvik_core::Error::InvalidConfiguration).
    pub async fn connect(uri: &str, config: &MongoStoreConfig) -> Result<Self> {
        config.validate()?;
        let mut options = ClientOptions::parse(uri).await.map_err(from_driver_setup)?;
        if options.app_name.is_none() {
            options.app_name = Some("narvik".to_owned());
        }
        let client = Client::with_options(options).map_err(from_driver_setup)?;
        Self::from_client(&client, config)
    }

    /// Creates the per-user index and the TTL index on `expiresAt` (see the
    /// [crate documentation](crate)). Idempotent: call it at every start-up.
    ///
    /// Fails with [`Error::InvalidConfiguration`](narvik_core::Error::InvalidConfiguration)
    /// if the collection exists with a default collation other than `simple`: under such a
    /// collation the `_id` index and the per-user queries would take ids differing only by
    /// case or accents for the same, and the store keeps ids byte-exact.
    pub async fn ensure_indexes(&self) -> Result<()> {
        crate::indexes::ensure_indexes(&self.collection).await
    }

    /// The collection the sessions live in.
    pub fn collection(&self) -> &Collection<Document> {
        &self.collection
    }

    /// What the store supports, as [`capabilities`](SessionStore::capabilities) declares it:
    /// every optional call, with
    /// - `expired_fetch: Hidden`: every read filters `expiresAt > now`, so an expired record is
    ///   never returned, whether or not the TTL monitor has removed it yet;
    /// - `keeps_already_expired: true`: a record saved already expired is inserted like any
    ///   other (and then hidden), so expired deletion finds it unless the monitor came first;
    /// - `expired_count: AtMost`: the TTL monitor deletes expired documents on its own, and
    ///   those are gone before `delete_all_expired_sessions` runs, so it cannot count them.
    pub const CAPABILITIES: Capabilities = Capabilities {
        fetch_sessions_for_user: true,
        delete_sessions_for_user: true,
        delete_all_expired_sessions: true,
        expired_fetch: ExpiredFetch::Hidden,
        keeps_already_expired: true,
        expired_count: ExpiredCount::AtMost,
    };
}

/// `filter` restricted to the documents live at `now` (`expiresAt > now`). `now` is truncated
/// to the millisecond like the stored expiry, which loses nothing: for a whole millisecond
/// `E`, `E > floor(now)` exactly when `E > now`.
fn live_at(mut filter: Document, now: OffsetDateTime) -> Document {
    filter.insert(
        field::EXPIRES_AT,
        doc! { "$gt": document::to_bson_date(now) },
    );
    filter
}

/// The wall clock, for the decisions inside the required calls (hiding an expired record,
/// refusing to extend one): those calls get no `now` from the engine, and a store-level clock
/// would be a second clock that could disagree with the engine's.
fn wall_now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

#[narvik_core::async_trait]
impl SessionStore for MongoStore {
    /// [`MongoStore::CAPABILITIES`].
    fn capabilities(&self) -> Capabilities {
        Self::CAPABILITIES
    }

    #[tracing::instrument(name = "narvik_mongo.save_session", skip_all, fields(session = short_id(&record.id)))]
    async fn save_session(&self, record: &SessionRecord) -> Result<()> {
        let document = document::to_document(record)?;
        self.collection
            .insert_one(document)
            .await
            .map_err(from_driver)?;
        Ok(())
    }

    #[tracing::instrument(name = "narvik_mongo.fetch_session", skip_all, fields(session = short_id(session_id)))]
    async fn fetch_session(&self, session_id: &str) -> Result<Option<SessionRecord>> {
        let filter = live_at(doc! { field::ID: session_id }, wall_now());
        match self
            .collection
            .find_one(filter)
            .await
            .map_err(from_driver)?
        {
            Some(found) => document::from_document(found).map(Some),
            None => Ok(None),
        }
    }

    /// Only a record live by the wall clock is extended: the filter and the `$set` are one
    /// atomic `updateOne`, so an expired record counts as gone whether or not the TTL monitor
    /// has removed it yet, and an extension can never revive it. (`update_record_expiry` is
    /// the trait's default: the id is all this store needs.)
    #[tracing::instrument(name = "narvik_mongo.update_session_expiry", skip_all, fields(session = short_id(session_id)))]
    async fn update_session_expiry(
        &self,
        session_id: &str,
        expires_at: OffsetDateTime,
    ) -> Result<()> {
        let filter = live_at(doc! { field::ID: session_id }, wall_now());
        let update = doc! { "$set": { field::EXPIRES_AT: document::to_bson_date(expires_at) } };
        // No upsert: a missing record stays missing.
        self.collection
            .update_one(filter, update)
            .await
            .map_err(from_driver)?;
        Ok(())
    }

    #[tracing::instrument(name = "narvik_mongo.delete_session", skip_all, fields(session = short_id(session_id)))]
    async fn delete_session(&self, session_id: &str) -> Result<()> {
        self.collection
            .delete_one(doc! { field::ID: session_id })
            .await
            .map_err(from_driver)?;
        Ok(())
    }

    /// The sessions of `user_id` with `expiresAt > now`, through the `userId_1` index.
    #[tracing::instrument(name = "narvik_mongo.fetch_sessions_for_user", skip_all)]
    async fn fetch_sessions_for_user(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<SessionRecord>> {
        let filter = live_at(doc! { field::USER_ID: user_id }, now);
        let documents: Vec<Document> = self
            .collection
            .find(filter)
            .await
            .map_err(from_driver)?
            .try_collect()
            .await
            .map_err(from_driver)?;
        documents.into_iter().map(document::from_document).collect()
    }

    #[tracing::instrument(name = "narvik_mongo.delete_sessions_for_user", skip_all)]
    async fn delete_sessions_for_user(&self, user_id: &str) -> Result<()> {
        self.collection
            .delete_many(doc! { field::USER_ID: user_id })
            .await
            .map_err(from_driver)?;
        Ok(())
    }

    /// Deletes the documents with `expiresAt <= now` (the engine's `now`) through the TTL
    /// index and returns how many this call deleted. Documents the TTL monitor removed before are not counted: the count
    /// is never more than the expired records, and may be less.
    #[tracing::instrument(name = "narvik_mongo.delete_all_expired_sessions", skip_all)]
    async fn delete_all_expired_sessions(&self, now: OffsetDateTime) -> Result<u64> {
        let cutoff = document::to_bson_date(now);
        let result = self
            .collection
            .delete_many(doc! { field::EXPIRES_AT: { "$lte": cutoff } })
            .await
            .map_err(from_driver)?;
        Ok(result.deleted_count)
    }
}
