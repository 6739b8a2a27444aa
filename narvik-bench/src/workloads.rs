//! The session workloads the benches time: seeding, validation, lookup and creation on a narvik
//! store, the same on a tower-sessions store, and the rows of the scaling tables.

use std::sync::Arc;
use std::time::Instant;

use narvik_core::{Narvik, SessionStore};
use serde::de::DeserializeOwned;
use serde::Serialize;
use time::OffsetDateTime;
use tower_sessions_core::session::{Id, Record};
use tower_sessions_core::SessionStore as TowerSessionStore;

use crate::{Op, EXPIRED, SESSIONS};

/// Creates [`SESSIONS`] sessions (200 users) with `{"theme": "dark"}` as JSON data and returns
/// their ids and tokens.
pub async fn seed_sessions(
    narvik: &Narvik<serde_json::Value>,
) -> (Arc<Vec<String>>, Arc<Vec<String>>) {
    seed_sessions_with(narvik, || serde_json::json!({"theme": "dark"})).await
}

/// Creates [`SESSIONS`] sessions (200 users) carrying `data()` and returns their ids and
/// tokens.
pub async fn seed_sessions_with<D: Serialize + DeserializeOwned>(
    narvik: &Narvik<D>,
    data: impl Fn() -> D,
) -> (Arc<Vec<String>>, Arc<Vec<String>>) {
    let mut tokens = Vec::with_capacity(SESSIONS);
    let mut ids = Vec::with_capacity(SESSIONS);
    for i in 0..SESSIONS {
        let created = narvik
            .create_session(&format!("user-{}", i % 200), data())
            .await
            .expect("create");
        ids.push(created.session.id.clone());
        tokens.push(created.token.as_str().to_owned());
    }
    (Arc::new(ids), Arc::new(tokens))
}

/// `Narvik::validate_session` on the seeded tokens, which must all be valid and not extended.
pub fn validate_op<D>(narvik: Narvik<D>, tokens: Arc<Vec<String>>) -> Op
where
    D: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    // One shared handle, cloned once per call (the engine alone would be two clones).
    let shared = Arc::new((narvik, tokens));
    Arc::new(move |i| {
        let shared = Arc::clone(&shared);
        Box::pin(async move {
            let (narvik, tokens) = &*shared;
            let session = narvik
                .validate_session(&tokens[i % tokens.len()])
                .await
                .expect("validate");
            assert!(session.is_some_and(|s| !s.extended));
        })
    })
}

/// The store's own `fetch_session` on the seeded ids, which must all be found.
pub fn fetch_op<S: SessionStore + Clone>(store: S, ids: Arc<Vec<String>>) -> Op {
    Arc::new(move |i| {
        let (store, ids) = (store.clone(), ids.clone());
        Box::pin(async move {
            let record = store
                .fetch_session(&ids[i % ids.len()])
                .await
                .expect("fetch");
            assert!(record.is_some());
        })
    })
}

/// `Narvik::create_session` on an engine over `store` (200 users).
pub fn narvik_create_op<S: SessionStore>(store: S) -> Op {
    let narvik: Narvik<serde_json::Value> = Narvik::new(Arc::new(store));
    Arc::new(move |i| {
        let narvik = narvik.clone();
        Box::pin(async move {
            narvik
                .create_session(
                    &format!("user-{}", i % 200),
                    serde_json::json!({"theme": "dark"}),
                )
                .await
                .expect("narvik create");
        })
    })
}

/// A new tower-sessions record holding what narvik's sessions hold, expiring in 30 days.
pub fn tower_record() -> Record {
    let mut data = std::collections::HashMap::new();
    data.insert("theme".to_owned(), serde_json::json!("dark"));
    Record {
        id: Id::default(),
        data,
        expiry_date: OffsetDateTime::now_utc() + time::Duration::days(30),
    }
}

/// Creates [`SESSIONS`] records in the tower-sessions store and returns their ids.
pub async fn seed_tower<T: TowerSessionStore>(tower: &T) -> Arc<Vec<Id>> {
    let mut ids = Vec::with_capacity(SESSIONS);
    for _ in 0..SESSIONS {
        let mut record = tower_record();
        tower.create(&mut record).await.expect("tower create");
        ids.push(record.id);
    }
    Arc::new(ids)
}

/// tower-sessions' `load` on the seeded ids, which must all be found.
pub fn tower_load_op<T: TowerSessionStore + Clone>(tower: T, ids: Arc<Vec<Id>>) -> Op {
    Arc::new(move |i| {
        let (tower, ids) = (tower.clone(), ids.clone());
        Box::pin(async move {
            let record = tower.load(&ids[i % ids.len()]).await.expect("tower load");
            assert!(record.is_some());
        })
    })
}

/// tower-sessions' `create` of a new record.
pub fn tower_create_op<T: TowerSessionStore + Clone>(tower: T) -> Op {
    Arc::new(move |_| {
        let tower = tower.clone();
        Box::pin(async move {
            let mut record = tower_record();
            tower.create(&mut record).await.expect("tower create");
        })
    })
}

/// Prints the title and header of the scaling table that [`scaling_row`] fills.
pub fn print_scaling_header() {
    println!("\nScaling: cost follows the rows touched, not the table\n");
    println!("| table rows | fill s | fetch_sessions_for_user (10 rows) µs | expired purge (10,000 rows) ms | purged |");
    println!("| ---: | ---: | ---: | ---: | ---: |");
}

/// Measures one scaling row on a store the bench filled with `rows` rows (10 sessions per
/// user, the first [`EXPIRED`] rows expired) in `fill_secs`: 2,000 `fetch_sessions_for_user`
/// calls spread over the live users, then the expired purge. Prints the row and returns
/// (fetch µs, purge ms).
pub async fn scaling_row<S: SessionStore>(store: &S, rows: i64, fill_secs: f64) -> (f64, f64) {
    // Users past the expired rows have 10 live sessions each.
    let first_live_user = EXPIRED / 10;
    let live_users = rows / 10 - first_live_user;
    let calls = 2_000;
    let mut found = 0;
    // The engine hands its clock down; a benchmark with no engine hands the wall clock.
    let now = OffsetDateTime::now_utc();
    let started = Instant::now();
    for call in 0..calls {
        // Spread over the table so the cache does not only hold one corner of it.
        let user = format!("user-{}", first_live_user + (call * 7_919) % live_users);
        found += store
            .fetch_sessions_for_user(&user, now)
            .await
            .expect("fetch")
            .len();
    }
    let fetch_micros = started.elapsed().as_secs_f64() * 1e6 / calls as f64;
    assert_eq!(
        found,
        calls as usize * 10,
        "every user has 10 live sessions"
    );

    let started = Instant::now();
    let purged = store
        .delete_all_expired_sessions(OffsetDateTime::now_utc())
        .await
        .expect("purge");
    let purge_millis = started.elapsed().as_secs_f64() * 1e3;
    println!("| {rows} | {fill_secs:.1} | {fetch_micros:.0} | {purge_millis:.0} | {purged} |");
    assert_eq!(purged, EXPIRED as u64);
    (fetch_micros, purge_millis)
}
