//! The engine over the store under test, with a [`ManualClock`] that starts at the wall
//! clock's now and only moves forward, so that stores expiring records by their own clock
//! still hold them while the engine's time moves on.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use narvik_core::{
    async_trait, CreatedSession, Error, ManualClock, Narvik, OptionalOperation, Result,
    SessionRecord, SessionStore, SessionToken,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use crate::harness::{
    assert_absent, assert_same_set, assert_stored, engine_with, live_record, must, random_user_id,
    CallCounts, SpyStore,
};
use crate::{assert_unsupported, Capabilities, ExpiredCount};

/// The default sliding lifetime the engine cases rely on.
const LIFETIME: Duration = Duration::days(30);

/// An engine with the defaults over `store`, and its clock.
fn engine<D: Clone + Send + Sync + 'static>(
    store: Arc<dyn SessionStore>,
) -> (Narvik<D>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::starting_now());
    (engine_with(store, &clock, |builder| builder), clock)
}

/// The builder's answer for an engine over `store` with a per-user cap of `cap`.
fn build_with_user_cap(
    store: Arc<dyn SessionStore>,
    clock: &Arc<ManualClock>,
    cap: usize,
) -> Result<Narvik<Value>> {
    Narvik::builder(store)
        .clock(Arc::clone(clock) as _)
        .max_sessions_per_user(NonZeroUsize::new(cap).expect("a non-zero cap"))
        .build()
}

/// Asserts that the builder refused a per-user cap with [`Error::InvalidConfiguration`], as
/// it must on a store that does not declare `fetch_sessions_for_user`.
#[track_caller]
fn assert_cap_refused(built: Result<Narvik<Value>>) {
    match built {
        Err(Error::InvalidConfiguration(_)) => {}
        Err(other) => panic!(
            "a per-user cap on a store without `fetch_sessions_for_user` must make build() fail \
             with Error::InvalidConfiguration, got {other:?}"
        ),
        Ok(_) => panic!(
            "a per-user cap on a store declaring no `fetch_sessions_for_user` was accepted by \
             build() (the store's declaration and the one the case was given differ?)"
        ),
    }
}

async fn create<D: Serialize + serde::de::DeserializeOwned>(
    narvik: &Narvik<D>,
    user_id: &str,
    data: D,
) -> CreatedSession<D> {
    must(narvik.create_session(user_id, data).await, "create_session")
}

async fn validate<D: Serialize + serde::de::DeserializeOwned>(
    narvik: &Narvik<D>,
    token: &SessionToken,
) -> Option<narvik_core::Session<D>> {
    must(
        narvik.validate_session(token.as_str()).await,
        "validate_session",
    )
}

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
    let digest = Sha256::digest(token.as_bytes());
    let expected_id: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
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

fn clock_now(clock: &ManualClock) -> OffsetDateTime {
    narvik_core::Clock::now(clock)
}

/// A fresh session validates to itself, neither new nor extended.
pub async fn create_then_validate_returns_same_session_not_extended(
    store: Arc<dyn SessionStore>,
    _capabilities: Capabilities,
) {
    let (narvik, clock) = engine::<Value>(store);
    let created = create(
        &narvik,
        &random_user_id("validator"),
        json!({ "n": [1, 2] }),
    )
    .await;
    clock.advance(Duration::minutes(5));
    let Some(session) = validate(&narvik, &created.token).await else {
        panic!("a fresh session did not validate");
    };
    let mut expected = created.session.clone();
    expected.new = false;
    assert_eq!(session, expected, "validate returned a different session");
}

/// Validating in the first half of the lifetime writes nothing to the store.
pub async fn validate_in_first_half_does_not_write(
    store: Arc<dyn SessionStore>,
    _capabilities: Capabilities,
) {
    let spy = SpyStore::new(Arc::clone(&store));
    let (narvik, clock) = engine::<Value>(Arc::clone(&spy) as _);
    let created = create(&narvik, &random_user_id("idle"), json!(null)).await;
    // One millisecond before the half-way point.
    clock.advance(LIFETIME / 2 - Duration::milliseconds(1));
    let before = spy.calls();
    let Some(session) = validate(&narvik, &created.token).await else {
        panic!("a session in its first half did not validate");
    };
    let after = spy.calls();
    assert!(
        !session.extended,
        "a session in its first half was extended"
    );
    assert_eq!(session.expires_at, created.session.expires_at);
    assert_eq!(
        CallCounts {
            fetch_session: after.fetch_session,
            ..before
        },
        after,
        "validation in the first half called the store for more than one fetch"
    );
    let record = created.session.to_record().expect("JSON data");
    assert_stored(
        store.as_ref(),
        &record,
        "the record after a first-half validation",
    )
    .await;
}

/// From the half-way point on, validation extends the session to `now + lifetime`, stores
/// it, and says so with `extended`; the next validation does not extend again.
pub async fn validate_in_last_half_extends_to_now_plus_lifetime_and_sets_extended(
    store: Arc<dyn SessionStore>,
    _capabilities: Capabilities,
) {
    let (narvik, clock) = engine::<Value>(Arc::clone(&store));
    let created = create(&narvik, &random_user_id("active"), json!({ "k": "v" })).await;
    clock.advance(LIFETIME / 2);
    let now = clock_now(&clock);
    let Some(session) = validate(&narvik, &created.token).await else {
        panic!("a session in its last half did not validate");
    };
    assert!(
        session.extended,
        "a session at half its lifetime must be extended"
    );
    assert_eq!(
        session.expires_at,
        now + LIFETIME,
        "extension goes to now + lifetime"
    );
    let mut record = created.session.to_record().expect("JSON data");
    record.expires_at = now + LIFETIME;
    assert_stored(store.as_ref(), &record, "the record after an extension").await;

    clock.advance(Duration::minutes(1));
    let again = validate(&narvik, &created.token)
        .await
        .expect("still valid");
    assert!(
        !again.extended,
        "a just-extended session was extended again"
    );
    assert_eq!(again.expires_at, now + LIFETIME);
}

/// At `expires_at` the session is dead: validation answers `None` and deletes the record.
pub async fn validate_after_expiry_is_none_and_deletes(
    store: Arc<dyn SessionStore>,
    _capabilities: Capabilities,
) {
    let (narvik, clock) = engine::<Value>(Arc::clone(&store));
    let created = create(&narvik, &random_user_id("expired"), json!(null)).await;
    clock.advance(LIFETIME);
    assert!(
        validate(&narvik, &created.token).await.is_none(),
        "a session at its expiry must not validate"
    );
    assert_absent(
        store.as_ref(),
        &created.session.id,
        "an expired session after validation",
    )
    .await;
}

/// A well-formed token without a session is `None` and creates nothing, even next to
/// records whose ids are near twins of its id (upper-cased, one character short, one longer,
/// a trailing space), which stay as they were.
///
/// Catches a store whose fetch matches ids loosely (a case-insensitive key, a prefix or
/// `LIKE` match, a trimmed comparison) and so hands the engine a stranger's session.
pub async fn validate_unknown_token_is_none(
    store: Arc<dyn SessionStore>,
    _capabilities: Capabilities,
) {
    let (narvik, _clock) = engine::<Value>(Arc::clone(&store));
    let token = must(SessionToken::generate(), "SessionToken::generate");
    let id = token.session_id();
    let twins: Vec<SessionRecord> = [
        id.to_uppercase(),
        id[..id.len() - 1].to_owned(),
        format!("{id}0"),
        format!("{id} "),
    ]
    .into_iter()
    .map(|twin_id| {
        let mut record = live_record(&random_user_id("near-twin"), json!({ "twin": twin_id }));
        record.id = twin_id;
        record
    })
    .collect();
    for twin in &twins {
        must(
            store.save_session(twin).await,
            "save_session of a near-twin id",
        );
    }
    let validated = validate(&narvik, &token).await;
    assert!(
        validated.is_none(),
        "an unknown token validated to a session of a near-twin id: {validated:?}"
    );
    assert_absent(
        store.as_ref(),
        &token.session_id(),
        "after validating an unknown token",
    )
    .await;
    for twin in &twins {
        assert_stored(
            store.as_ref(),
            twin,
            "a near-twin id after validating an unknown token",
        )
        .await;
    }
}

/// After logout the token is dead and the record gone; a second logout succeeds.
pub async fn invalidate_then_validate_is_none(
    store: Arc<dyn SessionStore>,
    _capabilities: Capabilities,
) {
    let (narvik, _clock) = engine::<Value>(Arc::clone(&store));
    let created = create(&narvik, &random_user_id("leaver"), json!(null)).await;
    let id = &created.session.id;
    must(narvik.invalidate_session(id).await, "invalidate_session");
    assert!(
        validate(&narvik, &created.token).await.is_none(),
        "a logged-out token validated"
    );
    assert_absent(store.as_ref(), id, "after logout").await;
    must(
        narvik.invalidate_session(id).await,
        "a second invalidate_session",
    );
}

/// Rotation gives a new token and id for the same user, data and `created_at`; the old token
/// is dead. An unknown token does not rotate.
pub async fn rotate_gives_new_token_and_kills_old(
    store: Arc<dyn SessionStore>,
    _capabilities: Capabilities,
) {
    let (narvik, clock) = engine::<Value>(Arc::clone(&store));
    let user_id = random_user_id("promoted");
    let data = json!({ "role": "user", "cart": [1, 2, 3] });
    let old = create(&narvik, &user_id, data.clone()).await;
    clock.advance(Duration::hours(1));
    let rotated = must(
        narvik.rotate_session(old.token.as_str()).await,
        "rotate_session",
    );
    let Some(new) = rotated else {
        panic!("a live session did not rotate");
    };
    assert_ne!(new.token, old.token, "rotation kept the token");
    assert_ne!(new.session.id, old.session.id, "rotation kept the id");
    assert_eq!(new.session.user_id, user_id);
    assert_eq!(new.session.data, data);
    assert_eq!(new.session.created_at, old.session.created_at);
    assert!(new.session.new, "the rotated session is new");
    assert!(
        validate(&narvik, &old.token).await.is_none(),
        "the old token still validates"
    );
    assert_absent(
        store.as_ref(),
        &old.session.id,
        "the old session after rotation",
    )
    .await;
    let new_record = new.session.to_record().expect("JSON data");
    assert_stored(
        store.as_ref(),
        &new_record,
        "the new session after rotation (same user, data and created_at as the old one)",
    )
    .await;
    let Some(current) = validate(&narvik, &new.token).await else {
        panic!("the new token does not validate");
    };
    assert_eq!((current.user_id, current.data), (user_id, data));

    let unknown = must(SessionToken::generate(), "SessionToken::generate");
    let rotated = must(
        narvik.rotate_session(unknown.as_str()).await,
        "rotate_session",
    );
    assert!(rotated.is_none(), "an unknown token rotated");
}

/// "Sign out other devices": every other session of the user goes, the current one and other
/// users' sessions stay. On a store that does not declare `fetch_sessions_for_user`, the
/// engine answers the typed unsupported error without calling the store at all.
pub async fn invalidate_other_sessions_keeps_only_current(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    let spy = SpyStore::new(Arc::clone(&store));
    let (narvik, _clock) = engine::<Value>(Arc::clone(&spy) as _);
    let user_id = random_user_id("devices");
    let current = create(&narvik, &user_id, json!("laptop")).await;
    if !capabilities.fetch_sessions_for_user {
        let before = spy.calls();
        assert_unsupported(
            narvik
                .invalidate_other_sessions(&user_id, &current.session.id)
                .await,
            OptionalOperation::FetchSessionsForUser,
        );
        assert_eq!(
            spy.calls(),
            before,
            "without a declared `fetch_sessions_for_user`, invalidate_other_sessions must answer \
             Unsupported before any store call"
        );
        assert_stored(
            store.as_ref(),
            &current.session.to_record().expect("JSON data"),
            "the current session after an unsupported invalidate_other_sessions",
        )
        .await;
        return;
    }
    let phone = create(&narvik, &user_id, json!("phone")).await;
    let tablet = create(&narvik, &user_id, json!("tablet")).await;
    let stranger = create(&narvik, &random_user_id("stranger"), json!("theirs")).await;
    let deleted = must(
        narvik
            .invalidate_other_sessions(&user_id, &current.session.id)
            .await,
        "invalidate_other_sessions",
    );
    assert_eq!(deleted, 2, "two other sessions were to be deleted");
    assert!(
        validate(&narvik, &current.token).await.is_some(),
        "the current session died"
    );
    for other in [&phone, &tablet] {
        assert!(
            validate(&narvik, &other.token).await.is_none(),
            "another device survived"
        );
        assert_absent(
            store.as_ref(),
            &other.session.id,
            "another device's session",
        )
        .await;
    }
    assert!(
        validate(&narvik, &stranger.token).await.is_some(),
        "another user's session died"
    );
}

/// With an absolute cap, extension stops at `created_at + cap` and the session dies there,
/// however active it is.
pub async fn absolute_cap_stops_extension_and_expires(
    store: Arc<dyn SessionStore>,
    _capabilities: Capabilities,
) {
    let clock = Arc::new(ManualClock::starting_now());
    let lifetime = Duration::days(10);
    let cap = Duration::days(15);
    let narvik: Narvik<Value> = engine_with(Arc::clone(&store), &clock, |builder| {
        builder.session_lifetime(lifetime).absolute_lifetime(cap)
    });
    let created = create(&narvik, &random_user_id("capped"), json!(null)).await;
    let deadline = created.session.created_at + cap;
    let stored = must(
        store.fetch_session(&created.session.id).await,
        "fetch_session",
    );
    assert_eq!(
        stored.map(|record| record.expires_at),
        Some(created.session.created_at + lifetime),
        "a capped session is stored with the sliding lifetime first"
    );

    clock.advance(Duration::days(6));
    let session = validate(&narvik, &created.token)
        .await
        .expect("valid on day 6");
    assert!(
        session.extended,
        "day 6 is in the last half of a 10-day lifetime"
    );
    assert_eq!(
        session.expires_at, deadline,
        "extension must stop at created_at + cap"
    );
    let stored = must(
        store.fetch_session(&created.session.id).await,
        "fetch_session",
    );
    assert_eq!(stored.map(|record| record.expires_at), Some(deadline));

    clock.advance(Duration::days(8));
    let session = validate(&narvik, &created.token)
        .await
        .expect("valid on day 14");
    assert!(!session.extended, "a session at its cap cannot be extended");
    assert_eq!(session.expires_at, deadline);

    clock.advance(Duration::days(1));
    assert!(
        validate(&narvik, &created.token).await.is_none(),
        "a session past its absolute cap validated"
    );
    assert_absent(
        store.as_ref(),
        &created.session.id,
        "a session past its cap",
    )
    .await;
}

/// With a per-user cap of 3, a fourth session evicts the user's oldest, a fifth the next;
/// other users are untouched. On a store that does not declare `fetch_sessions_for_user`,
/// the builder refuses the cap with `InvalidConfiguration`.
pub async fn per_user_cap_evicts_oldest(store: Arc<dyn SessionStore>, capabilities: Capabilities) {
    let clock = Arc::new(ManualClock::starting_now());
    let built = build_with_user_cap(Arc::clone(&store), &clock, 3);
    if !capabilities.fetch_sessions_for_user {
        return assert_cap_refused(built);
    }
    let narvik = built.expect("a per-user cap on a store that declares listing builds");
    let user_id = random_user_id("capped-user");
    let neighbour = create(&narvik, &random_user_id("neighbour"), json!(null)).await;
    let mut sessions = Vec::new();
    for n in 0..5 {
        sessions.push(create(&narvik, &user_id, json!(n)).await);
        clock.advance(Duration::minutes(1));
    }
    for (n, created) in sessions.iter().enumerate() {
        let stored = must(
            store.fetch_session(&created.session.id).await,
            "fetch_session",
        );
        assert_eq!(
            stored.is_some(),
            n >= 2,
            "with a cap of 3 after 5 sessions, session {n} should be {}",
            if n >= 2 { "stored" } else { "evicted" }
        );
        let alive = validate(&narvik, &created.token).await.is_some();
        assert_eq!(
            alive,
            n >= 2,
            "with a cap of 3 after 5 sessions, session {n} should be {}",
            if n >= 2 { "alive" } else { "evicted" }
        );
    }
    assert!(
        validate(&narvik, &neighbour.token).await.is_some(),
        "another user's session was evicted"
    );
}

/// Rotation at the per-user cap replaces the rotated session; it never evicts another device.
/// On a store that does not declare `fetch_sessions_for_user`, the builder refuses the cap.
pub async fn rotate_at_user_cap_keeps_other_devices(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    let clock = Arc::new(ManualClock::starting_now());
    let built = build_with_user_cap(Arc::clone(&store), &clock, 2);
    if !capabilities.fetch_sessions_for_user {
        return assert_cap_refused(built);
    }
    let narvik = built.expect("a per-user cap on a store that declares listing builds");
    let user_id = random_user_id("capped-user");
    let laptop = create(&narvik, &user_id, json!("laptop")).await;
    clock.advance(Duration::minutes(1));
    let phone = create(&narvik, &user_id, json!("phone")).await;
    clock.advance(Duration::minutes(1));
    let rotated = must(
        narvik.rotate_session(phone.token.as_str()).await,
        "rotate_session",
    )
    .expect("a live session rotates");
    assert!(
        validate(&narvik, &laptop.token).await.is_some(),
        "rotating the phone at the cap signed the laptop out"
    );
    assert!(validate(&narvik, &rotated.token).await.is_some());
    assert!(validate(&narvik, &phone.token).await.is_none());
    assert_absent(
        store.as_ref(),
        &phone.session.id,
        "the rotated-away session",
    )
    .await;
}

/// An absolute cap configured after sessions were created still ends them at
/// `created_at + cap`, even though their stored expiry is later.
pub async fn absolute_cap_ends_sessions_created_before_it(
    store: Arc<dyn SessionStore>,
    _capabilities: Capabilities,
) {
    let clock = Arc::new(ManualClock::starting_now());
    let uncapped: Narvik<Value> = engine_with(Arc::clone(&store), &clock, |builder| builder);
    let created = create(&uncapped, &random_user_id("before-cap"), json!(null)).await;
    clock.advance(Duration::days(20));
    let extended = validate(&uncapped, &created.token)
        .await
        .expect("live on day 20 without a cap");
    assert!(extended.extended);
    let capped: Narvik<Value> = engine_with(Arc::clone(&store), &clock, |builder| {
        builder.absolute_lifetime(Duration::days(10))
    });
    assert!(
        validate(&capped, &created.token).await.is_none(),
        "a session 20 days old outlived a 10-day absolute cap"
    );
    let stored = must(
        store.fetch_session(&created.session.id).await,
        "fetch_session",
    );
    assert!(stored.is_none(), "the capped-out session was not deleted");
}

/// A store wrapper that makes the engine's first save collide: it first saves a decoy with
/// the same id, then forwards the engine's save, which the real store must refuse.
struct CollidingStore {
    inner: Arc<dyn SessionStore>,
    decoy: Mutex<Option<SessionRecord>>,
    first_answer: Mutex<Option<String>>,
    saves: Mutex<u32>,
}

#[async_trait]
impl SessionStore for CollidingStore {
    fn capabilities(&self) -> narvik_core::Capabilities {
        self.inner.capabilities()
    }
    fn subscribe_invalidations(
        &self,
    ) -> Option<narvik_core::invalidation::InvalidationSubscription> {
        self.inner.subscribe_invalidations()
    }
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
        *self.first_answer.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!("{answer:?}"));
        answer
    }
    async fn fetch_session(&self, session_id: &str) -> Result<Option<SessionRecord>> {
        self.inner.fetch_session(session_id).await
    }
    async fn update_session_expiry(
        &self,
        session_id: &str,
        expires_at: OffsetDateTime,
    ) -> Result<()> {
        self.inner
            .update_session_expiry(session_id, expires_at)
            .await
    }
    async fn update_record_expiry(
        &self,
        record: &SessionRecord,
        expires_at: OffsetDateTime,
    ) -> Result<()> {
        self.inner.update_record_expiry(record, expires_at).await
    }
    async fn delete_session(&self, session_id: &str) -> Result<()> {
        self.inner.delete_session(session_id).await
    }
    async fn fetch_sessions_for_user(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<SessionRecord>> {
        self.inner.fetch_sessions_for_user(user_id, now).await
    }
    async fn delete_sessions_for_user(&self, user_id: &str) -> Result<()> {
        self.inner.delete_sessions_for_user(user_id).await
    }
    async fn delete_all_expired_sessions(&self, now: OffsetDateTime) -> Result<u64> {
        self.inner.delete_all_expired_sessions(now).await
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

/// One `ManualClock`, three answers that agree. An engine with a one-hour lifetime and a
/// manual clock creates two batches of sessions. Before the clock moves, validation accepts
/// them, the engine's listing and the store's listing at the engine's `now` show them, and a
/// purge deletes none. After the clock moves two hours (the wall clock has not), validation
/// rejects the first batch, both listings are empty, and the engine's purge deletes the
/// second batch (counted exactly, or by the at-most rule), which is gone from the store after.
///
/// Catches a store that decides listing or purge by a clock of its own (the wall clock, the
/// server's `now()`, its native TTL) instead of the `now` the engine hands down: validation
/// would say "expired" while the listing still shows the sessions and the purge deletes 0.
pub async fn manual_clock_agrees_across_validation_listing_and_purge(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    let clock = Arc::new(ManualClock::starting_now());
    let lifetime = Duration::hours(1);
    let narvik: Narvik<Value> = engine_with(Arc::clone(&store), &clock, |builder| {
        builder.session_lifetime(lifetime)
    });
    let validated_user = random_user_id("clock-validated");
    let purged_user = random_user_id("clock-purged");
    let mut validated = Vec::new();
    for n in 0..3 {
        validated.push(create(&narvik, &validated_user, json!({ "validated": n })).await);
    }
    let mut purged = Vec::new();
    for n in 0..4 {
        purged.push(create(&narvik, &purged_user, json!({ "purged": n })).await);
    }
    let records = |batch: &[CreatedSession<Value>]| -> Vec<SessionRecord> {
        batch
            .iter()
            .map(|created| created.session.to_record().expect("JSON data"))
            .collect()
    };

    // Before the clock moves: all three agree the sessions are live.
    for created in validated.iter().chain(&purged) {
        assert!(
            validate(&narvik, &created.token).await.is_some(),
            "a fresh session did not validate"
        );
    }
    for (user, batch) in [(&validated_user, &validated), (&purged_user, &purged)] {
        assert_listing_at_engine_now(&store, &narvik, capabilities, user, &records(batch)).await;
    }
    if capabilities.delete_all_expired_sessions {
        let counted = must(
            narvik.delete_all_expired_sessions().await,
            "the engine's delete_all_expired_sessions",
        );
        assert_eq!(
            counted, 0,
            "a purge at the engine's now, before any session expired"
        );
        for record in records(&validated).iter().chain(&records(&purged)) {
            assert_stored(store.as_ref(), record, "a live session after a purge").await;
        }
    } else {
        assert_unsupported(
            narvik.delete_all_expired_sessions().await,
            OptionalOperation::DeleteAllExpiredSessions,
        );
    }

    clock.advance(lifetime * 2);
    for (user, _) in [(&validated_user, &validated), (&purged_user, &purged)] {
        assert_listing_at_engine_now(&store, &narvik, capabilities, user, &[]).await;
    }
    for created in &validated {
        assert!(
            validate(&narvik, &created.token).await.is_none(),
            "a session past its lifetime by the engine's clock validated"
        );
        assert_absent(
            store.as_ref(),
            &created.session.id,
            "a session the engine found expired",
        )
        .await;
    }
    if capabilities.delete_all_expired_sessions {
        let counted = must(
            narvik.delete_all_expired_sessions().await,
            "the engine's delete_all_expired_sessions",
        );
        let expired = u64::try_from(purged.len()).unwrap_or(u64::MAX);
        match capabilities.expired_count {
            ExpiredCount::Exact => assert_eq!(
                counted, expired,
                "the engine's purge, with its clock two hours ahead, must delete the {expired} \
                 sessions expired by that clock (the store must cut off on the `now` it is given)"
            ),
            ExpiredCount::AtMost => assert!(
                counted <= expired,
                "the engine's purge counted {counted} of {expired} expired sessions"
            ),
        }
        for created in &purged {
            assert_absent(
                store.as_ref(),
                &created.session.id,
                "a session expired by the engine's clock, after the engine's purge (live by \
                 the wall clock, so only a purge on the given `now` removes it)",
            )
            .await;
        }
    }
}

/// Asserts what the engine's listing and the store's own listing at the engine's `now` show
/// for `user`: exactly `expected`, or the typed unsupported error from both.
async fn assert_listing_at_engine_now(
    store: &Arc<dyn SessionStore>,
    narvik: &Narvik<Value>,
    capabilities: Capabilities,
    user: &str,
    expected: &[SessionRecord],
) {
    if !capabilities.fetch_sessions_for_user {
        assert_unsupported(
            narvik.fetch_sessions_for_user(user).await,
            OptionalOperation::FetchSessionsForUser,
        );
        assert_unsupported(
            store.fetch_sessions_for_user(user, narvik.now()).await,
            OptionalOperation::FetchSessionsForUser,
        );
        return;
    }
    let through_engine = must(
        narvik.fetch_sessions_for_user(user).await,
        "the engine's fetch_sessions_for_user",
    );
    let through_engine: Vec<SessionRecord> = through_engine
        .iter()
        .map(|session| session.to_record().expect("JSON data"))
        .collect();
    assert_same_set(
        through_engine,
        expected,
        "the engine's listing at its manual clock's now",
    );
    // The engine filters its listing again, so the store's own answer is asked for directly.
    assert_same_set(
        must(
            store.fetch_sessions_for_user(user, narvik.now()).await,
            "fetch_sessions_for_user at the engine's now",
        ),
        expected,
        "the store's listing at the engine's manual clock's now (a store must filter on the \
         `now` it is given)",
    );
}

/// A per-user cap needs per-user listing. If the store declares `fetch_sessions_for_user`, the
/// builder accepts a cap of 1 and the cap works (a second sign-in evicts the first session
/// from the store); if not, `build()` refuses it with `InvalidConfiguration` and the store
/// itself answers the listing with the typed unsupported error.
///
/// Catches a store whose declaration and behaviour disagree: one declaring listing whose
/// listing finds nothing (the cap then never evicts), or one declaring none that answers the
/// call anyway.
pub async fn per_user_cap_needs_declared_listing(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    let clock = Arc::new(ManualClock::starting_now());
    let built = build_with_user_cap(Arc::clone(&store), &clock, 1);
    if !capabilities.fetch_sessions_for_user {
        assert_cap_refused(built);
        assert_unsupported(
            store
                .fetch_sessions_for_user(&random_user_id("uncapped"), narvik_now(&clock))
                .await,
            OptionalOperation::FetchSessionsForUser,
        );
        return;
    }
    let narvik = match built {
        Ok(narvik) => narvik,
        Err(error) => panic!(
            "the store declares `fetch_sessions_for_user`, so a per-user cap must build, got \
             {error:?}"
        ),
    };
    let user_id = random_user_id("single-device");
    let first = create(&narvik, &user_id, json!("first")).await;
    clock.advance(Duration::minutes(1));
    let second = create(&narvik, &user_id, json!("second")).await;
    assert_absent(
        store.as_ref(),
        &first.session.id,
        "the first session after a second sign-in under a cap of 1",
    )
    .await;
    assert_stored(
        store.as_ref(),
        &second.session.to_record().expect("JSON data"),
        "the second session under a cap of 1",
    )
    .await;
}

/// The manual clock's time, to the millisecond.
fn narvik_now(clock: &ManualClock) -> OffsetDateTime {
    narvik_core::time_util::truncate_to_millis(clock_now(clock))
}
