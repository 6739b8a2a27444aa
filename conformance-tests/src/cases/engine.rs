//! The engine over the store under test, with a [`ManualClock`] that starts at the wall
//! clock's now and only moves forward, so that stores expiring records by their own clock
//! still hold them while the engine's time moves on.
//!
//! The cases are grouped by theme, one file each: what creating a session stores
//! (`create`), validation and its extension (`validation`), rotation and signing out other
//! sessions (`rotation`), the absolute and per-user caps (`caps`) and one manual clock's
//! agreement across the engine's calls (`clock`). All of them are re-exported here, so a case
//! is `cases::engine::NAME` whichever file holds it.

mod caps;
mod clock;
mod create;
mod rotation;
mod validation;

use std::sync::Arc;

use narvik_core::{CreatedSession, ManualClock, Narvik, SessionStore, SessionToken};
use serde::Serialize;
use time::{Duration, OffsetDateTime};

use crate::harness::{engine_with, must};

pub use caps::{
    absolute_cap_ends_sessions_created_before_it, absolute_cap_stops_extension_and_expires,
    per_user_cap_evicts_oldest, per_user_cap_needs_declared_listing,
    rotate_at_user_cap_keeps_other_devices,
};
pub use clock::manual_clock_agrees_across_validation_listing_and_purge;
pub use create::{
    create_returns_32_char_base32_token_and_sha256_hex_id,
    duplicate_id_on_create_retries_with_fresh_token, typed_data_round_trips_through_engine,
};
pub use rotation::{
    invalidate_other_sessions_keeps_only_current, rotate_gives_new_token_and_kills_old,
};
pub use validation::{
    create_then_validate_returns_same_session_not_extended, invalidate_then_validate_is_none,
    validate_after_expiry_is_none_and_deletes, validate_in_first_half_does_not_write,
    validate_in_last_half_extends_to_now_plus_lifetime_and_sets_extended,
    validate_unknown_token_is_none,
};

/// The default sliding lifetime the engine cases rely on.
const LIFETIME: Duration = Duration::days(30);

/// An engine with the defaults over `store`, and its clock.
fn engine<D: Clone + Send + Sync + 'static>(
    store: Arc<dyn SessionStore>,
) -> (Narvik<D>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::starting_now());
    (engine_with(store, &clock, |builder| builder), clock)
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

fn clock_now(clock: &ManualClock) -> OffsetDateTime {
    narvik_core::Clock::now(clock)
}
