//! What creating a session stores: the token and its id, a retry when the id is taken, and
//! typed application data through every later write.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use narvik_core::{Error, Result, SessionRecord, SessionStore};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use time::Duration;

use super::{clock_now, create, engine, validate, LIFETIME};
use crate::harness::{assert_stored, must, random_user_id};
use crate::Capabilities;

/// The token is 32 characters of lower-case base32, the id is the lowercase hex SHA-256 of
/// the token, and the store holds exactly the session (id, user, both times, data as JSON).
pub async fn create_returns_32_char_base32_token_and_sha256_hex_id(
    store: Arc<dyn SessionStore>,
    _capabilities: Capabilities,
) {
    let (narvik, clock) = engine::<Value>(Arc::clone(&store));
    let user_id = random_user_id("creator");
    let data = json!({ "theme": "dark" });
    let created = create(&narvik, &user_id, data.clone()).await;
    let token = created.token.as_str();
    assert_eq!(token.len(), 32, "a token has 32 characters");
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)),
        "a token is lower-case base32 without padding: {token}"
    );
    let expected_id = hex::encode(Sha256::digest(token.as_bytes()));
    assert_eq!(
        created.session.id, expected_id,
        "the id is hex SHA-256 of the token"
    );
    let session = &created.session;
    assert!(
        session.new && !session.extended,
        "a created session is new, not extended"
    );
    assert_eq!(session.user_id, user_id);
    assert_eq!(session.data, data);
    let now = clock_now(&clock);
    assert_eq!(session.created_at, now);
    assert_eq!(session.expires_at, now + LIFETIME);
    let expected = SessionRecord {
        id: expected_id,
        user_id,
        expires_at: now + LIFETIME,
        created_at: now,
        data: data.into(),
        lifetime: None,
        data_version: 0,
    };
    assert_stored(store.as_ref(), &expected, "the record the engine created").await;

    let second = create(&narvik, &random_user_id("creator"), Value::Null).await;
    assert_ne!(
        second.token, created.token,
        "two sessions got the same token"
    );
}

/// A store wrapper that makes the engine's first save collide: it first saves a decoy with
/// the same id, then forwards the engine's save, which the real store must refuse.
struct CollidingStore {
    inner: Arc<dyn SessionStore>,
    decoy: Mutex<Option<SessionRecord>>,
    first_answer: Mutex<Option<String>>,
    saves: Mutex<u32>,
}

// Every call but the first save goes to the real store, so the wrapper keeps its declaration.
narvik_core::forward_session_store! {
    impl SessionStore for CollidingStore {
        inner = |colliding| &colliding.inner;
        forward = [
            capabilities, store_name, subscribe_invalidations, fetch_session, update_session_expiry,
            update_record_expiry, delete_session, fetch_sessions_for_user,
            delete_sessions_for_user, delete_all_expired_sessions, update_session_data,
        ];

        async fn save_session(&self, record: &SessionRecord) -> Result<()> {
            let first = {
                let mut saves = self.saves.lock().unwrap_or_else(|p| p.into_inner());
                *saves += 1;
                *saves == 1
            };
            if !first {
                return self.inner.save_session(record).await;
            }
            let decoy = SessionRecord {
                id: record.id.clone(),
                user_id: random_user_id("decoy"),
                expires_at: record.expires_at + Duration::days(1),
                created_at: record.created_at - Duration::days(1),
                data: json!({ "decoy": true }).into(),
                lifetime: None,
                data_version: 0,
            };
            must(
                self.inner.save_session(&decoy).await,
                "save_session of the decoy",
            );
            *self.decoy.lock().unwrap_or_else(|p| p.into_inner()) = Some(decoy);
            let answer = self.inner.save_session(record).await;
            *self.first_answer.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(format!("{answer:?}"));
            answer
        }
    }
}

/// When the id of a new session already exists, the store refuses the save, the engine
/// retries with a fresh token, and the existing session is left exactly as it was.
pub async fn duplicate_id_on_create_retries_with_fresh_token(
    store: Arc<dyn SessionStore>,
    _capabilities: Capabilities,
) {
    let colliding = Arc::new(CollidingStore {
        inner: Arc::clone(&store),
        decoy: Mutex::new(None),
        first_answer: Mutex::new(None),
        saves: Mutex::new(0),
    });
    let (narvik, _clock) = engine::<Value>(Arc::clone(&colliding) as _);
    let user_id = random_user_id("unlucky");
    let created = create(&narvik, &user_id, json!({ "mine": true })).await;
    let first_answer = colliding
        .first_answer
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    assert_eq!(
        first_answer.as_deref(),
        Some(format!("{:?}", Err::<(), _>(Error::DuplicateId)).as_str()),
        "the store must refuse a save over an existing id with Error::DuplicateId"
    );
    let decoy = colliding
        .decoy
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .expect("the first save planted a decoy");
    assert_ne!(
        created.session.id, decoy.id,
        "the engine kept the colliding id"
    );
    assert_stored(
        store.as_ref(),
        &decoy,
        "the existing session after a collision",
    )
    .await;
    let session = validate(&narvik, &created.token)
        .await
        .expect("the retried session validates");
    assert_eq!(session.user_id, user_id);
}

/// Application data of a user-chosen serde type (nested structs, enums, options, maps,
/// floats) comes back equal through create, validate, extension and rotation.
pub async fn typed_data_round_trips_through_engine(
    store: Arc<dyn SessionStore>,
    _capabilities: Capabilities,
) {
    let (narvik, clock) = engine::<Profile>(Arc::clone(&store));
    let profile = Profile {
        name: "Åsa \"the admin\" O'Brien 😀".to_owned(),
        roles: vec!["admin".to_owned(), "dev".to_owned()],
        theme: Theme::Custom {
            accent: "#ff00aa".to_owned(),
            contrast: 1.5,
        },
        counters: BTreeMap::from([
            ("visits".to_owned(), i64::MAX),
            ("debt".to_owned(), i64::MIN),
        ]),
        note: None,
        last_page: Some(Page {
            path: "/a/b?c=d".to_owned(),
            scroll: 0.25,
        }),
    };
    let created = create(&narvik, &random_user_id("typed"), profile.clone()).await;
    let stored = must(
        store.fetch_session(&created.session.id).await,
        "fetch_session",
    )
    .expect("the created session is stored");
    let decoded: Profile = stored
        .data
        .decode()
        .expect("the stored data decodes as the type it was written from");
    assert_eq!(decoded, profile, "typed data changed in the store");
    clock.advance(LIFETIME / 2 + Duration::days(1));
    let session = validate(&narvik, &created.token).await.expect("valid");
    assert!(session.extended);
    assert_eq!(
        session.data, profile,
        "typed data changed through an extension"
    );
    let rotated = must(
        narvik.rotate_session(created.token.as_str()).await,
        "rotate_session",
    )
    .expect("a live session rotates");
    let session = validate(&narvik, &rotated.token).await.expect("valid");
    assert_eq!(
        session.data, profile,
        "typed data changed through a rotation"
    );
}

/// The typed data of [`typed_data_round_trips_through_engine`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Profile {
    name: String,
    roles: Vec<String>,
    theme: Theme,
    counters: BTreeMap<String, i64>,
    note: Option<String>,
    last_page: Option<Page>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Theme {
    #[allow(dead_code)]
    Dark,
    Custom {
        accent: String,
        contrast: f64,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Page {
    path: String,
    scroll: f64,
}
