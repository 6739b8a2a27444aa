//! [`SessionStore`] for [`MemoryStore`]: each call mapped onto the store's own operations,
//! with the wall clock where a required call carries no `now`.

use async_trait::async_trait;
use narvik_core::{Capabilities, Result, SessionData, SessionRecord, SessionStore};
use time::OffsetDateTime;

use super::millis::{millis, wall_millis};
use super::MemoryStore;

/// Declares [`MemoryStore::CAPABILITIES`]. Expired records are hidden:
/// [`fetch_session`](SessionStore::fetch_session) never returns a record expired by the wall
/// clock, and [`fetch_sessions_for_user`](SessionStore::fetch_sessions_for_user) never one
/// expired at the `now` it is given; the record stays in memory until
/// `delete_all_expired_sessions` (or the engine's purge task) or a delete removes it.
#[async_trait]
impl SessionStore for MemoryStore {
    fn capabilities(&self) -> Capabilities {
        Self::CAPABILITIES
    }

    fn store_name(&self) -> &'static str {
        "memory"
    }

    async fn save_session(&self, record: &SessionRecord) -> Result<()> {
        self.insert(record)
    }

    async fn fetch_session(&self, session_id: &str) -> Result<Option<SessionRecord>> {
        // The required calls get no `now` from the engine, so the wall clock decides.
        Ok(self.get(session_id, wall_millis()))
    }

    async fn update_session_expiry(
        &self,
        session_id: &str,
        expires_at: OffsetDateTime,
    ) -> Result<()> {
        // Read before the lock, so the critical section stays a few map operations long.
        self.set_expiry(session_id, millis(expires_at), wall_millis());
        Ok(())
    }

    async fn delete_session(&self, session_id: &str) -> Result<()> {
        self.remove(session_id);
        Ok(())
    }

    async fn fetch_sessions_for_user(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<SessionRecord>> {
        Ok(self.live_for_user(user_id, millis(now)))
    }

    async fn delete_sessions_for_user(&self, user_id: &str) -> Result<()> {
        self.remove_for_user(user_id);
        Ok(())
    }

    async fn delete_all_expired_sessions(&self, now: OffsetDateTime) -> Result<u64> {
        Ok(self.purge_expired_at(now))
    }

    async fn update_session_data(
        &self,
        record: &SessionRecord,
        data: &SessionData,
        now: OffsetDateTime,
    ) -> Result<bool> {
        // The text is made before the lock, as at save.
        let json = data.to_json_text()?;
        Ok(self.replace_data(
            &record.id,
            record.data_version,
            (json != "null").then_some(&*json),
            millis(now),
        ))
    }
}
