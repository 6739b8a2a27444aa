//! The calls of [`RedisStore`] that send the same commands on a single server and on a
//! cluster: each touches one key at a time (or lets the client split a multi-key read by slot).

use narvik_core::{Error, Result, SessionData, SessionRecord};
use time::OffsetDateTime;

use super::{unavailable, RedisStore, BATCH};
use crate::record::{self, now_ms, unix_ms};
use crate::scripts::SCRIPTS;

impl RedisStore {
    pub(super) async fn fetch(&self, session_id: &str) -> Result<Option<SessionRecord>> {
        let mut conn = self.inner.backend.get().await?;
        let value: Option<Vec<u8>> = redis::cmd("GET")
            .arg(self.inner.keys.record(session_id))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let Some(value) = value else {
            return Ok(None);
        };
        let decoded = record::decode(session_id, &value)?;
        // Redis removes the key at expires_at by its own clock; hide it already by the wall
        // clock (a required call gets no `now` from the engine, so the wall clock decides).
        if decoded.is_expired(now_ms()) {
            return Ok(None);
        }
        Ok(Some(decoded.record))
    }

    /// The versioned data update: one script on the record key alone, so the same call on a
    /// single server and on a cluster. The script compares version, user and expiry and
    /// writes the new value with `KEEPTTL` in one atomic step (see `scripts/update_data.lua`).
    pub(super) async fn update_data(
        &self,
        record: &SessionRecord,
        data: &SessionData,
        now: OffsetDateTime,
    ) -> Result<bool> {
        let next = record
            .data_version
            .checked_add(1)
            .filter(|next| *next <= i64::MAX as u64)
            .ok_or_else(|| Error::InvalidData("data version out of range".to_owned()))?;
        let mut json = Vec::with_capacity(64);
        data.write_json(&mut json)?;
        let mut conn = self.inner.backend.get().await?;
        let outcome: i64 = SCRIPTS
            .update_data
            .key(self.inner.keys.record(&record.id))
            .arg(format!("{:016x}", record.data_version))
            .arg(unix_ms(now))
            .arg(&record.user_id)
            .arg(format!("{next:016x}"))
            .arg(json)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(outcome == 1)
    }

    pub(super) async fn fetch_for_user(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<SessionRecord>> {
        let keys = &self.inner.keys;
        let now_ms = unix_ms(now);
        let mut conn = self.inner.backend.get().await?;
        let ids: Vec<String> = SCRIPTS
            .list
            .key(keys.index(user_id))
            .arg(now_ms)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let mut records = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(BATCH) {
            let mut mget = redis::cmd("MGET");
            for id in chunk {
                mget.arg(keys.record(id));
            }
            let values: Vec<Option<Vec<u8>>> =
                mget.query_async(&mut conn).await.map_err(unavailable)?;
            for (id, value) in chunk.iter().zip(values) {
                // No value: deleted or expired since the index was read, or (cluster) a save
                // still in flight. Either way not a live session now.
                let Some(value) = value else { continue };
                let decoded = record::decode(id, &value)?;
                // The entry's score may be later than the record's expiry (a cluster update
                // that shortened it), and the id may belong to someone else by now: the record
                // itself decides, at the caller's `now`.
                if decoded.record.user_id == user_id && !decoded.is_expired(now_ms) {
                    records.push(decoded.record);
                }
            }
        }
        Ok(records)
    }
}
