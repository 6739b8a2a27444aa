//! A small in-memory store of the tests' own, with every call the contract has, and an engine
//! over it on a manual clock.

// Each test binary that includes this module uses a part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use narvik_core::{
    Capabilities, Error, ManualClock, Narvik, Result, SessionData, SessionRecord, SessionStore,
};
use time::{Duration, OffsetDateTime};

/// Every call over a map; `update_session_data` and purge as the contract says.
#[derive(Default)]
pub struct MapStore {
    pub records: Mutex<HashMap<String, SessionRecord>>,
    pub purges: AtomicUsize,
    pub fetches: AtomicUsize,
    pub fail_purges: bool,
}

impl MapStore {
    pub fn records(&self) -> std::sync::MutexGuard<'_, HashMap<String, SessionRecord>> {
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl SessionStore for MapStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            fetch_sessions_for_user: false,
            delete_sessions_for_user: false,
            ..Capabilities::ALL
        }
    }
    async fn save_session(&self, record: &SessionRecord) -> Result<()> {
        let mut records = self.records();
        if records.contains_key(&record.id) {
            return Err(Error::DuplicateId);
        }
        records.insert(record.id.clone(), record.clone());
        Ok(())
    }
    async fn fetch_session(&self, session_id: &str) -> Result<Option<SessionRecord>> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        Ok(self.records().get(session_id).cloned())
    }
    async fn update_session_expiry(&self, id: &str, expires_at: OffsetDateTime) -> Result<()> {
        if let Some(record) = self.records().get_mut(id) {
            record.expires_at = expires_at;
        }
        Ok(())
    }
    async fn delete_session(&self, session_id: &str) -> Result<()> {
        self.records().remove(session_id);
        Ok(())
    }
    async fn delete_all_expired_sessions(&self, now: OffsetDateTime) -> Result<u64> {
        self.purges.fetch_add(1, Ordering::SeqCst);
        if self.fail_purges {
            return Err(Error::unavailable("the test's store is down"));
        }
        let mut records = self.records();
        let before = records.len();
        records.retain(|_, record| !record.is_expired(now));
        Ok((before - records.len()) as u64)
    }
    async fn update_session_data(
        &self,
        record: &SessionRecord,
        data: &SessionData,
        now: OffsetDateTime,
    ) -> Result<bool> {
        let mut records = self.records();
        match records.get_mut(&record.id) {
            Some(stored)
                if stored.data_version == record.data_version && !stored.is_expired(now) =>
            {
                stored.data = data.clone();
                stored.data_version += 1;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

pub fn engine(store: Arc<MapStore>, clock: Arc<ManualClock>) -> Narvik<Vec<u32>> {
    Narvik::builder(store)
        .session_lifetime(Duration::days(30))
        .clock(clock)
        .build()
        .expect("valid configuration")
}
