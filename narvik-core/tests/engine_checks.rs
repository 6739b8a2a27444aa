//! Engine checks that no store can make fail, so they live here rather than in the
//! conformance suite: a token's `Debug` is redacted everywhere, and a malformed token never
//! reaches the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use narvik_core::{Error, ManualClock, Narvik, Result, SessionRecord, SessionStore, SessionToken};
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};

/// The least store the engine can run on: the four required calls over a map.
#[derive(Default)]
struct MapStore(Mutex<HashMap<String, SessionRecord>>);

impl MapStore {
    fn records(&self) -> std::sync::MutexGuard<'_, HashMap<String, SessionRecord>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl SessionStore for MapStore {
    async fn save_session(&self, record: &SessionRecord) -> Result<()> {
        let mut records = self.records();
        if records.contains_key(&record.id) {
            return Err(Error::DuplicateId);
        }
        records.insert(record.id.clone(), record.clone());
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
        if let Some(record) = self.records().get_mut(session_id) {
            if !record.is_expired(OffsetDateTime::now_utc()) {
                record.expires_at = expires_at;
            }
        }
        Ok(())
    }
    async fn delete_session(&self, session_id: &str) -> Result<()> {
        self.records().remove(session_id);
        Ok(())
    }
}

/// A store that fails the test on any call: what the engine must never reach.
struct UntouchableStore;

#[async_trait]
impl SessionStore for UntouchableStore {
    async fn save_session(&self, _: &SessionRecord) -> Result<()> {
        panic!("a malformed token reached the store (save_session)")
    }
    async fn fetch_session(&self, session_id: &str) -> Result<Option<SessionRecord>> {
        panic!("a malformed token reached the store (fetch_session of {session_id:?})")
    }
    async fn update_session_expiry(&self, _: &str, _: OffsetDateTime) -> Result<()> {
        panic!("a malformed token reached the store (update_session_expiry)")
    }
    async fn delete_session(&self, _: &str) -> Result<()> {
        panic!("a malformed token reached the store (delete_session)")
    }
}

/// No `Debug` output of a type that holds a token (token, created session, cookie, session,
/// engine) shows the token, through creation, an extending validation and a rotation.
#[tokio::test]
async fn tokens_never_in_debug_output() {
    let clock = Arc::new(ManualClock::starting_now());
    let narvik: Narvik<Value> = Narvik::builder(Arc::new(MapStore::default()))
        .clock(Arc::clone(&clock) as _)
        .build()
        .expect("the default configuration is valid");
    let created = narvik
        .create_session("secret-keeper", json!({ "k": 1 }))
        .await
        .expect("create_session");
    clock.advance(Duration::days(15));
    let validated = narvik
        .validate_session(created.token.as_str())
        .await
        .expect("validate_session");
    assert!(
        validated.as_ref().is_some_and(|session| session.extended),
        "the check wants an extended session too: {validated:?}"
    );
    let rotated = narvik
        .rotate_session(created.token.as_str())
        .await
        .expect("rotate_session")
        .expect("a live session rotates");
    for token in [&created.token, &rotated.token] {
        let secret = token.as_str();
        let cookie = narvik.create_cookie(token);
        let outputs = [
            format!("{token:?}"),
            format!("{token:#?}"),
            format!("{created:?}"),
            format!("{created:#?}"),
            format!("{rotated:?}"),
            format!("{rotated:#?}"),
            format!("{cookie:?}"),
            format!("{cookie:#?}"),
            format!("{:?}", created.session),
            format!("{validated:?}"),
            format!("{narvik:?}"),
            format!("{narvik:#?}"),
        ];
        for output in outputs {
            assert!(
                !output.contains(secret),
                "a token leaked into Debug output: {output}"
            );
        }
    }
}

/// Malformed tokens (empty, 31 or 33 characters, upper case, padding, digits outside the
/// alphabet, non-ASCII of the right byte length, whitespace, NUL, 4 KiB) are `None` from
/// validation and rotation without any store call (the store panics if called).
#[tokio::test]
async fn validate_malformed_token_is_none_without_store_call() {
    let narvik: Narvik<Value> = Narvik::new(Arc::new(UntouchableStore));
    let valid = "abcdefghijklmnopqrstuvwxyz234567";
    assert!(
        SessionToken::parse(valid).is_some(),
        "the base is well formed"
    );
    let malformed = [
        String::new(),
        valid[..31].to_owned(),
        format!("{valid}a"),
        valid.to_uppercase(),
        format!("{}=", &valid[..31]),
        format!("{}01", &valid[..30]),
        format!("{}89", &valid[..30]),
        format!("{}é", &valid[..30]),
        format!("{}😀", &valid[..28]),
        format!(" {}", &valid[..31]),
        format!("{}\n", &valid[..31]),
        format!("{}\0", &valid[..31]),
        "a".repeat(4_096),
        "ä".repeat(16),
    ];
    for candidate in &malformed {
        let validated = narvik.validate_session(candidate).await;
        assert!(
            matches!(validated, Ok(None)),
            "a malformed token {candidate:?} must be Ok(None), got {validated:?}"
        );
        let rotated = narvik.rotate_session(candidate).await;
        assert!(
            matches!(rotated, Ok(None)),
            "rotating a malformed token {candidate:?} must be Ok(None), got {rotated:?}"
        );
    }
}
