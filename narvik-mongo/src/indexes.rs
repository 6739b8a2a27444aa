//! The two indexes the store relies on.

use std::time::Duration;

use mongodb::bson::{doc, Document};
use mongodb::options::IndexOptions;
use mongodb::{Collection, IndexModel};
use narvik_core::Result;

use crate::document::field;

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
/// [`Error::Unavailable`](narvik_core::Error::Unavailable) with the server's message.
pub(crate) async fn ensure_indexes(collection: &Collection<Document>) -> Result<()> {
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
        .map_err(crate::error::from_driver)?;
    Ok(())
}
