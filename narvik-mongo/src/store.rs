// Over 400 lines in one file, half of them docs: the store type, its constructors and its calls,
// which all go through the private fields and the `bounded` deadline helper defined with it.
//! [`MongoStore`]: the [`SessionStore`] on a MongoDB collection.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt;
use mongodb::bson::{doc, Document};
use mongodb::options::{ClientOptions, CollectionOptions};
use mongodb::{Client, Collection, Database};
use narvik_core::invalidation::InvalidationSubscription;
use narvik_core::{
    deadline, Capabilities, Error, ExpiredCount, ExpiredFetch, Result, SessionData, SessionRecord,
    SessionStore,
};
use time::OffsetDateTime;

use crate::config::{
    effective_write_concern, MongoStoreConfig, DEFAULT_CALL_TIMEOUT, DEFAULT_CHANGE_STREAM_TIMEOUT,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_DATABASE, DEFAULT_HEARTBEAT_FREQUENCY,
    DEFAULT_SERVER_SELECTION_TIMEOUT,
};
use crate::document::{self, field};
use crate::error::{Call, DriverBounds, STORE_NAME};
use crate::invalidation::{Push, Target};

/// Sessions in a MongoDB collection, one document per session.
///
/// Cloning is cheap: clones share the driver's connection pool.
///
/// Expired documents are invisible to every read, whether or not the server's TTL monitor has
/// deleted them yet. The store holds no clock: `fetch_session` and the extensions judge expiry
/// by the wall clock of this process, the listing and the purge by the `now` the engine hands
/// down (see [`SessionStore`]'s "One clock" rule). Its declaration is
/// [`MongoStore::CAPABILITIES`].
///
/// Every call is bounded (the per-call deadline, [`MongoStoreConfig::call_timeout`]) and
/// writes wait for the journal (the write concern, [`MongoStoreConfig::write_concern`]),
/// whichever way the store was built; see the crate's "Bounds and faults" section.
///
/// The store pushes invalidations to the engine's near cache through a change stream on its
/// collection, opened on the first subscription and closed when the store (every clone of it)
/// or the last subscription is dropped; see the crate's "Pushed invalidations" section.
#[derive(Clone)]
pub struct MongoStore {
    collection: Collection<Document>,
    call_timeout: Duration,
    change_stream_timeout: Duration,
    bounds: DriverBounds,
    /// Shared by the clones: one change stream for all of them.
    push: Arc<Push>,
}

impl std::fmt::Debug for MongoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoStore")
            .field("namespace", &self.collection.namespace())
            .field("call_timeout", &self.call_timeout)
            .field("change_stream_timeout", &self.change_stream_timeout)
            .field("write_concern", &self.collection.write_concern())
            .finish_non_exhaustive()
    }
}

impl MongoStore {
    /// A store on `collection`, any collection of any database, with the default per-call
    /// deadline ([`DEFAULT_CALL_TIMEOUT`](crate::DEFAULT_CALL_TIMEOUT)). Writes use the
    /// collection's write concern with `w` and `journal` filled in from
    /// [`default_write_concern`](crate::default_write_concern) where it leaves them unset.
    pub fn new<T: Send + Sync>(collection: Collection<T>) -> Self {
        let collection = collection.clone_with_type::<Document>();
        let namespace = collection.namespace();
        let options = CollectionOptions::builder()
            .selection_criteria(collection.selection_criteria().cloned())
            .read_concern(collection.read_concern().cloned())
            .write_concern(Some(effective_write_concern(
                None,
                collection.write_concern(),
            )))
            .build();
        let collection = collection
            .client()
            .database(&namespace.db)
            .collection_with_options(&namespace.coll, options);
        Self {
            collection,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            change_stream_timeout: DEFAULT_CHANGE_STREAM_TIMEOUT,
            bounds: DriverBounds::default(),
            push: Arc::default(),
        }
    }

    /// A store on the collection [`DEFAULT_COLLECTION`](crate::DEFAULT_COLLECTION) of `database`,
    /// as [`MongoStore::new`] sets it up.
    pub fn from_database(database: &Database) -> Self {
        Self::new(database.collection::<Document>(crate::DEFAULT_COLLECTION))
    }

    /// A store on an existing client, with the database, collection, call deadline and write
    /// concern of `config`.
    ///
    /// Without a configured database it uses the connection string's (`mongodb://host/NAME`),
    /// else [`DEFAULT_DATABASE`]. The client keeps its own options: a config that sets the
    /// server selection or connect timeout is
    /// [`Error::InvalidConfiguration`](narvik_core::Error::InvalidConfiguration) here (set them
    /// in your `ClientOptions`, or let [`MongoStore::connect`] build the client).
    pub fn from_client(client: &Client, config: &MongoStoreConfig) -> Result<Self> {
        if config.server_selection_timeout.is_some() || config.connect_timeout.is_some() {
            return Err(Error::InvalidConfiguration(
                "the server selection and connect timeouts of the MongoDB store apply to the \
                 client it builds (MongoStore::connect); for a client of your own, set them in \
                 its ClientOptions"
                    .to_owned(),
            ));
        }
        Self::on_client(client, config, DriverBounds::default())
    }

    fn on_client(client: &Client, config: &MongoStoreConfig, bounds: DriverBounds) -> Result<Self> {
        config.validate()?;
        let database = match config.database_name() {
            Some(name) => client.database(name),
            None => client
                .default_database()
                .unwrap_or_else(|| client.database(DEFAULT_DATABASE)),
        };
        let write_concern =
            effective_write_concern(config.write_concern.as_ref(), database.write_concern());
        let collection = database.collection_with_options::<Document>(
            config.collection_name(),
            CollectionOptions::builder()
                .write_concern(Some(write_concern))
                .build(),
        );
        Ok(Self {
            collection,
            call_timeout: config.call_timeout,
            change_stream_timeout: config.change_stream_timeout,
            bounds,
            push: Arc::default(),
        })
    }

    /// Connects to the deployment at `uri` (`mongodb://` or, with the `dns-resolver` feature,
    /// `mongodb+srv://`), with narvik's bounds where neither `config` nor the URI sets one:
    ///
    /// | driver option | narvik's default | the driver's own |
    /// | --- | --- | --- |
    /// | `serverSelectionTimeoutMS` | 2 s ([`DEFAULT_SERVER_SELECTION_TIMEOUT`](crate::DEFAULT_SERVER_SELECTION_TIMEOUT)) | 30 s |
    /// | `connectTimeoutMS` | 2 s ([`DEFAULT_CONNECT_TIMEOUT`](crate::DEFAULT_CONNECT_TIMEOUT)) | 10 s |
    /// | `heartbeatFrequencyMS` | 1 s ([`DEFAULT_HEARTBEAT_FREQUENCY`](crate::DEFAULT_HEARTBEAT_FREQUENCY)) | 10 s |
    /// | write concern (`w`, `journal`) | `majority`, `true` ([`default_write_concern`](crate::default_write_concern)) | server default (`w: 1` without journal on a standalone) |
    ///
    /// A setting of `config` wins over the URI's, which wins over narvik's default. The driver
    /// connects lazily: an unreachable server is reported by each operation, as
    /// [`Error::Unavailable`](narvik_core::Error::Unavailable) once the server selection
    /// timeout has passed. A malformed URI is
    /// [`Error::InvalidConfiguration`](narvik_core::Error::InvalidConfiguration).
    pub async fn connect(uri: &str, config: &MongoStoreConfig) -> Result<Self> {
        config.validate()?;
        let call = Call::start("connect", DriverBounds::default());
        // Parsing resolves a `mongodb+srv://` URI through DNS: bounded like any call.
        let mut options = deadline::within(STORE_NAME, "connect", config.call_timeout, async {
            ClientOptions::parse(uri)
                .await
                .map_err(|error| call.setup_error(error))
        })
        .await?;
        let bounds = apply_defaults(&mut options, config);
        let client = Client::with_options(options).map_err(|error| call.setup_error(error))?;
        Self::on_client(&client, config, bounds)
    }

    /// Runs one call under the per-call deadline; `call` maps driver errors with the
    /// [`Call`] it is given.
    async fn bounded<'a, T, Fut>(
        &'a self,
        operation: &'static str,
        call: impl FnOnce(Call) -> Fut,
    ) -> Result<T>
    where
        Fut: Future<Output = Result<T>> + Send + 'a,
    {
        let started = Call::start(operation, self.bounds);
        deadline::within(STORE_NAME, operation, self.call_timeout, call(started)).await
    }

    /// Creates the per-user index and the TTL index on `expiresAt` (see the
    /// [crate documentation](crate)). Idempotent: call it at every start-up.
    ///
    /// Fails with [`Error::InvalidConfiguration`](narvik_core::Error::InvalidConfiguration)
    /// if the collection exists with a default collation other than `simple`: under such a
    /// collation the `_id` index and the per-user queries would take ids differing only by
    /// case or accents for the same, and the store keeps ids byte-exact.
    ///
    /// Bounded by the per-call deadline like every call.
    pub async fn ensure_indexes(&self) -> Result<()> {
        self.bounded("ensure_indexes", |call| {
            crate::indexes::ensure_indexes(&self.collection, call)
        })
        .await
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
    ///   those are gone before `delete_all_expired_sessions` runs, so it cannot count them;
    /// - `update_session_data: true`: one conditional `updateOne` on id, version and expiry;
    /// - `pushes_invalidations: true`: a change stream on the collection reports every delete,
    ///   update and replacement, by any client, to
    ///   [`subscribe_invalidations`](SessionStore::subscribe_invalidations). Change streams need
    ///   a replica set (a single-node one will do) or a sharded cluster: on a standalone
    ///   `mongod` the stream cannot open, the channel never turns healthy and a pushed near
    ///   cache sends every validation to the store.
    pub const CAPABILITIES: Capabilities = Capabilities {
        fetch_sessions_for_user: true,
        delete_sessions_for_user: true,
        delete_all_expired_sessions: true,
        update_session_data: true,
        expired_fetch: ExpiredFetch::Hidden,
        keeps_already_expired: true,
        expired_count: ExpiredCount::AtMost,
        pushes_invalidations: true,
    };
}

/// Fills in narvik's bounds where neither `config` nor the URI set one (`config` wins over the
/// URI), and returns the bounds the store then knows for its messages.
fn apply_defaults(options: &mut ClientOptions, config: &MongoStoreConfig) -> DriverBounds {
    if options.app_name.is_none() {
        options.app_name = Some("narvik".to_owned());
    }
    let server_selection = *options.server_selection_timeout.insert(
        config
            .server_selection_timeout
            .or(options.server_selection_timeout)
            .unwrap_or(DEFAULT_SERVER_SELECTION_TIMEOUT),
    );
    let connect = *options.connect_timeout.insert(
        config
            .connect_timeout
            .or(options.connect_timeout)
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT),
    );
    options
        .heartbeat_freq
        .get_or_insert(DEFAULT_HEARTBEAT_FREQUENCY);
    DriverBounds {
        server_selection: Some(server_selection),
        // `connectTimeoutMS=0` is the driver's "no connect timeout".
        connect: Some(connect).filter(|limit| !limit.is_zero()),
    }
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

    fn store_name(&self) -> &'static str {
        "mongo"
    }

    /// A subscription to the invalidations of this store's collection. The first call starts
    /// the listener (one per store and its clones, on the calling Tokio runtime); it stops
    /// once the store or the last subscription is dropped, and a later call starts it again.
    fn subscribe_invalidations(&self) -> Option<InvalidationSubscription> {
        Some(self.push.subscribe(&Target {
            collection: self.collection.clone(),
            open_within: self.call_timeout,
            answer_within: self.change_stream_timeout,
            bounds: self.bounds,
        }))
    }

    async fn save_session(&self, record: &SessionRecord) -> Result<()> {
        let document = document::to_document(record)?;
        self.bounded("save_session", |call| async move {
            self.collection
                .insert_one(document)
                .await
                .map_err(|error| call.error(error))?;
            Ok(())
        })
        .await
    }

    async fn fetch_session(&self, session_id: &str) -> Result<Option<SessionRecord>> {
        let filter = live_at(doc! { field::ID: session_id }, wall_now());
        self.bounded("fetch_session", |call| async move {
            match self
                .collection
                .find_one(filter)
                .await
                .map_err(|error| call.error(error))?
            {
                Some(found) => document::from_document(found).map(Some),
                None => Ok(None),
            }
        })
        .await
    }

    /// Only a record live by the wall clock is extended: the filter and the `$set` are one
    /// atomic `updateOne`, so an expired record counts as gone whether or not the TTL monitor
    /// has removed it yet, and an extension can never revive it. (`update_record_expiry` is
    /// the trait's default: the id is all this store needs.)
    async fn update_session_expiry(
        &self,
        session_id: &str,
        expires_at: OffsetDateTime,
    ) -> Result<()> {
        let filter = live_at(doc! { field::ID: session_id }, wall_now());
        let update = doc! { "$set": { field::EXPIRES_AT: document::to_bson_date(expires_at) } };
        // No upsert: a missing record stays missing.
        self.bounded("update_session_expiry", |call| async move {
            self.collection
                .update_one(filter, update)
                .await
                .map_err(|error| call.error(error))?;
            Ok(())
        })
        .await
    }

    async fn delete_session(&self, session_id: &str) -> Result<()> {
        let filter = doc! { field::ID: session_id };
        self.bounded("delete_session", |call| async move {
            self.collection
                .delete_one(filter)
                .await
                .map_err(|error| call.error(error))?;
            Ok(())
        })
        .await
    }

    /// The sessions of `user_id` with `expiresAt > now`, through the `userId_1` index.
    async fn fetch_sessions_for_user(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<SessionRecord>> {
        let filter = live_at(doc! { field::USER_ID: user_id }, now);
        self.bounded("fetch_sessions_for_user", |call| async move {
            let documents: Vec<Document> = self
                .collection
                .find(filter)
                .await
                .map_err(|error| call.error(error))?
                .try_collect()
                .await
                .map_err(|error| call.error(error))?;
            documents.into_iter().map(document::from_document).collect()
        })
        .await
    }

    async fn delete_sessions_for_user(&self, user_id: &str) -> Result<()> {
        let filter = doc! { field::USER_ID: user_id };
        self.bounded("delete_sessions_for_user", |call| async move {
            self.collection
                .delete_many(filter)
                .await
                .map_err(|error| call.error(error))?;
            Ok(())
        })
        .await
    }

    /// Deletes the documents with `expiresAt <= now` (the engine's `now`) through the TTL
    /// index and returns how many this call deleted. Documents the TTL monitor removed before are not counted: the count
    /// is never more than the expired records, and may be less.
    async fn delete_all_expired_sessions(&self, now: OffsetDateTime) -> Result<u64> {
        let cutoff = document::to_bson_date(now);
        let filter = doc! { field::EXPIRES_AT: { "$lte": cutoff } };
        self.bounded("delete_all_expired_sessions", |call| async move {
            let result = self
                .collection
                .delete_many(filter)
                .await
                .map_err(|error| call.error(error))?;
            Ok(result.deleted_count)
        })
        .await
    }

    /// One `updateOne` whose filter is the id, the user id, the version read (`dataVersion`,
    /// or no such field for version 0: documents written before data updates have none) and
    /// `expiresAt > now` (the engine's `now`), and whose `$set` writes the data and the next
    /// version. The server evaluates the filter and applies the update atomically on the
    /// document, so of two updates read at the same version one matches and the other finds
    /// nothing; no upsert, so a missing or expired document stays as it is. Only `data` and
    /// `dataVersion` are set: an extension's `$set` of `expiresAt` racing it keeps both effects.
    ///
    /// The document the update would leave is measured first, as the driver measures a save:
    /// beyond MongoDB's 16 MiB limit the call is [`Error::InvalidData`] and nothing is sent
    /// (the server's own refusal of a document that grew too large, for one with fields the
    /// store does not write, is mapped to `InvalidData` too).
    async fn update_session_data(
        &self,
        record: &SessionRecord,
        data: &SessionData,
        now: OffsetDateTime,
    ) -> Result<bool> {
        let value = data.to_value()?;
        let data = document::json_to_bson(&value)?;
        let Some(next) = record.data_version.checked_add(1) else {
            // No stored version can be u64::MAX (the store keeps i64), so nothing matches.
            return Ok(false);
        };
        let read_at = match document::version_to_bson(record.data_version) {
            Ok(version) => version,
            // Beyond i64::MAX: no stored document is at that version.
            Err(_) => return Ok(false),
        };
        let set = doc! { field::DATA: data, field::DATA_VERSION: document::version_to_bson(next)? };
        // The document as the update would leave it: the fields of the one read (its expiry may
        // have moved since, but every date has the same size) with `set`.
        document::check_updated_size(&document::fixed_fields(record)?, &set)?;
        let version_filter = if record.data_version == 0 {
            doc! { "$or": [
                { field::DATA_VERSION: read_at },
                { field::DATA_VERSION: { "$exists": false } },
            ] }
        } else {
            doc! { field::DATA_VERSION: read_at }
        };
        let mut filter = live_at(
            doc! { field::ID: &record.id, field::USER_ID: &record.user_id },
            now,
        );
        filter.extend(version_filter);
        let update = doc! { "$set": set };
        self.bounded("update_session_data", |call| async move {
            let result = self
                .collection
                .update_one(filter, update)
                .await
                .map_err(|error| call.error(error))?;
            Ok(result.matched_count == 1)
        })
        .await
    }
}
