//! Ending one session (logout), in the store and in the near cache.

use crate::error::Result;

use super::Narvik;

impl<D> Narvik<D> {
    /// Deletes a session (logout). Deleting an unknown session succeeds.
    pub async fn invalidate_session(&self, session_id: &str) -> Result<()> {
        self.delete_stored(session_id).await
    }

    /// Deletes a session in the store and drops it from the near cache. The cache forgets it
    /// even when the store reports a failure: the delete may have landed all the same.
    pub(super) async fn delete_stored(&self, session_id: &str) -> Result<()> {
        let deleted = self.backend().delete_session(session_id).await;
        if let Some(cache) = &self.near_cache {
            cache.forget(session_id);
        }
        deleted
    }
}
