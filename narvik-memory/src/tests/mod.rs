//! The store's own internals: index consistency, expiry handling.
//!
//! The store has no clock: listing and purge get their `now` here explicitly, and only the
//! tests of the two wall-clock decisions (fetch hiding, update refusal) use real, short
//! expiries.

mod concurrency;
mod data;
mod declared;
mod expiry;
mod per_user;
mod records;

use narvik_core::{SessionRecord, SessionStore};
use serde_json::json;
use time::{Duration, OffsetDateTime};

use crate::MemoryStore;

fn record(id: &str, user_id: &str, expires_at: OffsetDateTime) -> SessionRecord {
    SessionRecord {
        id: id.to_owned(),
        user_id: user_id.to_owned(),
        expires_at,
        created_at: expires_at - Duration::days(30),
        data: json!({ "id": id, "nested": [1, 2, { "x": "ü" }] }).into(),
        lifetime: None,
        data_version: 0,
    }
}

/// The wall clock to the millisecond, as the engine hands its `now` down.
fn wall_now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.millisecond() as u32 * 1_000_000)
        .expect("a whole millisecond is a valid nanosecond")
}

/// The record `id` of `store`, which must be there (a store error or a missing record fails
/// the test).
async fn live(store: &MemoryStore, id: &str) -> SessionRecord {
    store.fetch_session(id).await.expect("fetch").expect("live")
}

fn ids(records: &[SessionRecord]) -> Vec<&str> {
    let mut ids: Vec<_> = records.iter().map(|r| r.id.as_str()).collect();
    ids.sort_unstable();
    ids
}
