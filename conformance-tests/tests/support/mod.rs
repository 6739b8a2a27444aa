//! A small, correct reference store for the suite's own tests, and deliberately broken
//! variants of it that the suite must catch.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Mutex;

use narvik_core::{
    async_trait, Error, OptionalOperation, Result, SessionData, SessionRecord, SessionStore,
};
use time::{Duration, OffsetDateTime};

/// A defect to build into the reference store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bug {
    /// `save_session` overwrites an existing id.
    SaveUpserts,
    /// `save_session` reports the duplicate but overwrites anyway.
    SaveOverwritesThenReportsDuplicate,
    /// `update_session_expiry` inserts a record when the id is missing.
    UpdateRecreates,
    /// `update_session_expiry` also resets `created_at`.
    UpdateTouchesCreatedAt,
    /// Times keep whole seconds only.
    TruncatesToSeconds,
    /// Integral floats come back as integers (as a JSON layer that drops `.0` would).
    FloatsBecomeIntegers,
    /// `null` data comes back as `{}`.
    NullBecomesEmptyObject,
    /// `fetch_sessions_for_user` matches by prefix, leaking near-twin users' sessions.
    ListingMatchesPrefix,
    /// `fetch_sessions_for_user` includes expired sessions.
    ListingIncludesExpired,
    /// `fetch_sessions_for_user` returns every session in the store.
    ListingLeaksEveryone,
    /// The per-user calls match user ids with SQL `LIKE` semantics (`%`, `_` are wildcards),
    /// as a query built with `LIKE` instead of `=` would.
    UserIdsMatchedWithLike,
    /// `delete_sessions_for_user` deletes by prefix.
    DeleteForUserMatchesPrefix,
    /// `delete_all_expired_sessions` deletes sessions expiring within the next hour too.
    DeleteExpiredTakesLive,
    /// `delete_all_expired_sessions` deletes the right ones but reports one more.
    DeleteExpiredMiscounts,
    /// `delete_all_expired_sessions` reports the count but deletes nothing.
    DeleteExpiredDeletesNothing,
    /// The optional calls answer `Unsupported` although the store is declared `ALL`.
    OptionalUnsupported,
    /// `delete_session` treats `*` as "everything" (a key-pattern bug).
    DeleteWildcard,
    /// `update_session_expiry` does nothing.
    UpdateIgnored,
    /// `delete_session` does nothing.
    DeleteIgnored,
    /// A lost write: each save is acknowledged, then dropped every 97th time.
    DropsSomeSaves,
}

/// An in-memory store behind one mutex: correct unless built with a [`Bug`].
#[derive(Default)]
pub struct ReferenceStore {
    records: Mutex<HashMap<String, SessionRecord>>,
    saves: Mutex<u64>,
    bug: Option<Bug>,
}

impl ReferenceStore {
    /// A correct store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store with `bug`.
    pub fn broken(bug: Bug) -> Self {
        Self {
            bug: Some(bug),
            ..Self::default()
        }
    }

    fn has(&self, bug: Bug) -> bool {
        self.bug == Some(bug)
    }

    fn records(&self) -> std::sync::MutexGuard<'_, HashMap<String, SessionRecord>> {
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn stored_form(&self, record: &SessionRecord) -> SessionRecord {
        let mut record = record.clone();
        if self.has(Bug::TruncatesToSeconds) {
            record.expires_at = record.expires_at.replace_nanosecond(0).expect("valid");
            record.created_at = record.created_at.replace_nanosecond(0).expect("valid");
        }
        let mut data = record
            .data
            .to_value()
            .expect("the engine and the cases hand over JSON")
            .into_owned();
        if self.has(Bug::FloatsBecomeIntegers) {
            data = integral_floats_to_ints(data);
        }
        if self.has(Bug::NullBecomesEmptyObject) && data.is_null() {
            data = serde_json::json!({});
        }
        // Kept as text, as a store reading bytes hands it out: the suite must work with both
        // forms of `SessionData`.
        record.data = SessionData::from_json_text(data.to_string());
        record
    }

    fn unsupported(&self, operation: OptionalOperation) -> Result<()> {
        if self.has(Bug::OptionalUnsupported) {
            return Err(Error::unsupported(operation));
        }
        Ok(())
    }
}

/// SQL `LIKE`: `%` matches any run of characters, `_` any one character.
fn like(text: &str, pattern: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    let pattern: Vec<char> = pattern.chars().collect();
    fn matches(text: &[char], pattern: &[char]) -> bool {
        match pattern.split_first() {
            None => text.is_empty(),
            Some(('%', rest)) => (0..=text.len()).any(|skip| matches(&text[skip..], rest)),
            Some(('_', rest)) => !text.is_empty() && matches(&text[1..], rest),
            Some((c, rest)) => text.first() == Some(c) && matches(&text[1..], rest),
        }
    }
    matches(&text, &pattern)
}

fn integral_floats_to_ints(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e15 => Value::from(f as i64),
            _ => Value::Number(n),
        },
        Value::Array(items) => {
            Value::Array(items.into_iter().map(integral_floats_to_ints).collect())
        }
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, integral_floats_to_ints(v)))
                .collect(),
        ),
        other => other,
    }
}

#[async_trait]
impl SessionStore for ReferenceStore {
    async fn save_session(&self, record: &SessionRecord) -> Result<()> {
        let stored = self.stored_form(record);
        if self.has(Bug::DropsSomeSaves) {
            let mut saves = self.saves.lock().expect("not poisoned");
            *saves += 1;
            if *saves % 97 == 0 {
                return Ok(());
            }
        }
        let mut records = self.records();
        if records.contains_key(&record.id) {
            if self.has(Bug::SaveUpserts) {
                records.insert(record.id.clone(), stored);
                return Ok(());
            }
            if self.has(Bug::SaveOverwritesThenReportsDuplicate) {
                records.insert(record.id.clone(), stored);
            }
            return Err(Error::DuplicateId);
        }
        records.insert(record.id.clone(), stored);
        Ok(())
    }

    async fn fetch_session(&self, session_id: &str) -> Result<Option<SessionRecord>> {
        Ok(self.records().get(session_id).cloned())
    }

    async fn update_session_expiry(
        &self,
        session_id: &str,
        expires_at: OffsetDateTime,
    ) -> Result<()> {
        let mut records = self.records();
        match records.get_mut(session_id) {
            Some(_) if self.has(Bug::UpdateIgnored) => {}
            Some(record) => {
                record.expires_at = expires_at;
                if self.has(Bug::UpdateTouchesCreatedAt) {
                    record.created_at = expires_at - Duration::days(1);
                }
            }
            None if self.has(Bug::UpdateRecreates) => {
                let now = OffsetDateTime::now_utc();
                records.insert(
                    session_id.to_owned(),
                    SessionRecord {
                        id: session_id.to_owned(),
                        user_id: String::new(),
                        expires_at,
                        created_at: now,
                        data: serde_json::Value::Null.into(),
                    },
                );
            }
            None => {}
        }
        Ok(())
    }

    async fn delete_session(&self, session_id: &str) -> Result<()> {
        let mut records = self.records();
        if self.has(Bug::DeleteWildcard) && session_id == "*" {
            records.clear();
        }
        if !self.has(Bug::DeleteIgnored) {
            records.remove(session_id);
        }
        Ok(())
    }

    async fn fetch_sessions_for_user(&self, user_id: &str) -> Result<Vec<SessionRecord>> {
        self.unsupported(OptionalOperation::FetchSessionsForUser)?;
        let now = OffsetDateTime::now_utc();
        Ok(self
            .records()
            .values()
            .filter(|record| {
                self.has(Bug::ListingLeaksEveryone)
                    || if self.has(Bug::UserIdsMatchedWithLike) {
                        like(&record.user_id, user_id)
                    } else if self.has(Bug::ListingMatchesPrefix) {
                        record.user_id.starts_with(user_id)
                    } else {
                        record.user_id == user_id
                    }
            })
            .filter(|record| self.has(Bug::ListingIncludesExpired) || !record.is_expired(now))
            .cloned()
            .collect())
    }

    async fn delete_sessions_for_user(&self, user_id: &str) -> Result<()> {
        self.unsupported(OptionalOperation::DeleteSessionsForUser)?;
        let prefix = self.has(Bug::DeleteForUserMatchesPrefix);
        let with_like = self.has(Bug::UserIdsMatchedWithLike);
        self.records().retain(|_, record| {
            if with_like {
                !like(&record.user_id, user_id)
            } else if prefix {
                !record.user_id.starts_with(user_id)
            } else {
                record.user_id != user_id
            }
        });
        Ok(())
    }

    async fn delete_all_expired_sessions(&self) -> Result<u64> {
        self.unsupported(OptionalOperation::DeleteAllExpiredSessions)?;
        let mut cutoff = OffsetDateTime::now_utc();
        if self.has(Bug::DeleteExpiredTakesLive) {
            cutoff += Duration::hours(1);
        }
        let mut records = self.records();
        let before = records.len();
        if !self.has(Bug::DeleteExpiredDeletesNothing) {
            records.retain(|_, record| !record.is_expired(cutoff));
        }
        let mut deleted = u64::try_from(before - records.len()).expect("fits");
        if self.has(Bug::DeleteExpiredMiscounts) {
            deleted += 1;
        }
        if self.has(Bug::DeleteExpiredDeletesNothing) {
            deleted = u64::try_from(records.values().filter(|r| r.is_expired(cutoff)).count())
                .expect("fits");
        }
        Ok(deleted)
    }
}

/// The reference store with only the four required calls: the optional ones keep the trait's
/// default bodies (the typed unsupported error).
#[derive(Default)]
pub struct RequiredOnlyStore(ReferenceStore);

#[async_trait]
impl SessionStore for RequiredOnlyStore {
    async fn save_session(&self, record: &SessionRecord) -> Result<()> {
        self.0.save_session(record).await
    }
    async fn fetch_session(&self, session_id: &str) -> Result<Option<SessionRecord>> {
        self.0.fetch_session(session_id).await
    }
    async fn update_session_expiry(
        &self,
        session_id: &str,
        expires_at: OffsetDateTime,
    ) -> Result<()> {
        self.0.update_session_expiry(session_id, expires_at).await
    }
    async fn delete_session(&self, session_id: &str) -> Result<()> {
        self.0.delete_session(session_id).await
    }
}

/// The reference store behaving like a server with native TTL: a record saved already expired
/// is dropped, an expired record is hidden from fetch, and expired deletion counts only what
/// the "server" had not yet removed.
#[derive(Default)]
pub struct TtlStore(ReferenceStore);

#[async_trait]
impl SessionStore for TtlStore {
    async fn save_session(&self, record: &SessionRecord) -> Result<()> {
        if record.is_expired(OffsetDateTime::now_utc()) {
            return Ok(());
        }
        self.0.save_session(record).await
    }
    async fn fetch_session(&self, session_id: &str) -> Result<Option<SessionRecord>> {
        let now = OffsetDateTime::now_utc();
        // The "server" removes an expired record when it is touched, as Redis does lazily.
        let mut records = self.0.records();
        if records
            .get(session_id)
            .is_some_and(|record| record.is_expired(now))
        {
            records.remove(session_id);
        }
        Ok(records.get(session_id).cloned())
    }
    async fn update_session_expiry(
        &self,
        session_id: &str,
        expires_at: OffsetDateTime,
    ) -> Result<()> {
        self.0.update_session_expiry(session_id, expires_at).await
    }
    async fn delete_session(&self, session_id: &str) -> Result<()> {
        self.0.delete_session(session_id).await
    }
    async fn fetch_sessions_for_user(&self, user_id: &str) -> Result<Vec<SessionRecord>> {
        self.0.fetch_sessions_for_user(user_id).await
    }
    async fn delete_sessions_for_user(&self, user_id: &str) -> Result<()> {
        self.0.delete_sessions_for_user(user_id).await
    }
    async fn delete_all_expired_sessions(&self) -> Result<u64> {
        self.0.delete_all_expired_sessions().await
    }
}
