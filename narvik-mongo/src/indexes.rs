//! The two indexes the store relies on, and the collation check that keeps ids byte-exact.

use std::time::Duration;

use mongodb::bson::{doc, Document};
use mongodb::options::IndexOptions;
use mongodb::{Collection, IndexModel};
use narvik_core::{Error, Result};

use crate::document::field;
use crate::error::Call;

/// Name of the per-user index (`{ userId: 1 }`), used by the per-user calls.
pub const USER_ID_INDEX: &str = "userId_1";

/// Name of the TTL index (`{ expiresAt: 1 }`, `expireAfterSeconds: 0`): the server deletes a
/// document once its `expiresAt` has passed, and `delete_all_expired_sessions` uses it to find
/// the expired ones.
pub const EXPIRES_AT_INDEX: &str = "expiresAt_1";

/// Creates both indexes. Creating an index that exists with the same options is a no-op on the
/// server, so this is safe to call at every start-up.
///
/// An existing index of the same name with other options (say a TTL of one hour) is not
/// replaced: the server rejects the call (`IndexOptionsConflict`), and it surfaces as
/// [`Error::Unavailable`](narvik_core::Error::Unavailable) naming the server's error code, with
/// the server's message in the driver error (the source).
pub(crate) async fn ensure_indexes(collection: &Collection<Document>, call: Call) -> Result<()> {
    refuse_default_collation(collection, call).await?;
    let by_user = IndexModel::builder()
        .keys(doc! { field::USER_ID: 1 })
        .options(
            IndexOptions::builder()
                .name(USER_ID_INDEX.to_owned())
                .build(),
        )
        .build();
    let ttl = IndexModel::builder()
        .keys(doc! { field::EXPIRES_AT: 1 })
        .options(
            IndexOptions::builder()
                .name(EXPIRES_AT_INDEX.to_owned())
                .expire_after(Duration::ZERO)
                .build(),
        )
        .build();
    collection
        .create_indexes([by_user, ttl])
        .await
        .map_err(|error| call.error(error))?;
    Ok(())
}

/// Fails if the collection exists with a default collation other than `simple`.
///
/// Indexes and queries without a collation of their own inherit the collection's, so under,
/// say, `{ locale: "en", strength: 2 }` the unique `_id` index would reject "ID" as a duplicate
/// of "id" and `{ userId: "alice" }` would match "Alice": twins the contract keeps apart. The
/// store's indexes and queries name no collation, so they compare bytes on a collection
/// without one (the default), and this check is what guarantees that. A collection that does
/// not exist yet is created by the first write, without a collation.
async fn refuse_default_collation(collection: &Collection<Document>, call: Call) -> Result<()> {
    let namespace = collection.namespace();
    let reply = collection
        .client()
        .database(&namespace.db)
        .run_command(doc! {
            "listCollections": 1,
            "filter": { "name": &namespace.coll },
        })
        .await
        .map_err(|error| call.error(error))?;
    let locale = reply
        .get_document("cursor")
        .and_then(|cursor| cursor.get_array("firstBatch"))
        .ok()
        .and_then(|batch| batch.first())
        .and_then(|spec| spec.as_document())
        .and_then(|spec| spec.get_document("options").ok())
        .and_then(|options| options.get_document("collation").ok())
        .map(|collation| collation.get_str("locale").unwrap_or("?").to_owned());
    match locale {
        Some(locale) if locale != "simple" => Err(Error::InvalidConfiguration(format!(
            "the collection `{namespace}` has the default collation `{locale}`, under which ids that \
             differ only in case or accents would be taken for the same; narvik needs a \
             collection without a collation (or with `simple`)"
        ))),
        _ => Ok(()),
    }
}
