//! A user's sessions as a whole: listing them, ending all of them or all but one.

use serde::{de::DeserializeOwned, Serialize};

use crate::error::OptionalOperation;
use crate::error::Result;
use crate::session::Session;

use super::Narvik;

impl<D> Narvik<D> {
    /// Ends every session of a user (for example after a password reset): the store deletes
    /// them all, and the near cache forgets them.
    pub async fn invalidate_sessions_for_user(&self, user_id: &str) -> Result<()> {
        self.require(OptionalOperation::DeleteSessionsForUser)?;
        let deleted = self.backend().delete_sessions_for_user(user_id).await;
        // The cache is keyed by session, not user: it forgets everything rather than a
        // session of this user it could not name.
        if let Some(cache) = &self.near_cache {
            cache.forget_all();
        }
        deleted
    }

    /// Deletes every session of `user_id` except `keep_session_id` ("sign out other devices",
    /// "password changed"), and returns how many it deleted.
    pub async fn invalidate_other_sessions(
        &self,
        user_id: &str,
        keep_session_id: &str,
    ) -> Result<u64> {
        self.require(OptionalOperation::FetchSessionsForUser)?;
        let records = self
            .backend()
            .fetch_sessions_for_user(user_id, self.now())
            .await?;
        let mut deleted = 0;
        for record in records.iter().filter(|record| record.id != keep_session_id) {
            self.delete_stored(&record.id).await?;
            deleted += 1;
        }
        Ok(deleted)
    }
}

impl<D: Serialize + DeserializeOwned> Narvik<D> {
    /// Every live session of `user_id` ("your devices"). Needs a store with the per-user calls.
    pub async fn fetch_sessions_for_user(&self, user_id: &str) -> Result<Vec<Session<D>>> {
        self.require(OptionalOperation::FetchSessionsForUser)?;
        let now = self.now();
        self.backend()
            .fetch_sessions_for_user(user_id, now)
            .await?
            .into_iter()
            .filter(|record| !record.is_expired(now))
            .map(Session::from_record)
            .collect()
    }
}
