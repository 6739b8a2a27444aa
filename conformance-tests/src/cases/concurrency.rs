//! Many tasks at once: no lost writes, exactly one winner of a duplicate race, no resurrection
//! by a racing extension, and an exact final state after a mixed stress run.
//!
//! One file per theme: races over single records (`records`), the mixed stress run (`stress`),
//! and the calls over many records racing saves (`bulk`). All of them are re-exported here, so
//! a case is `cases::concurrency::NAME` whichever file holds it.

mod bulk;
mod records;
mod stress;

use std::sync::Arc;

use narvik_core::{SessionRecord, SessionStore};

use crate::harness::{assert_all_stored, assert_same_set, must, now_ms};
use crate::Capabilities;

pub use bulk::{
    concurrent_purges_count_each_record_once,
    concurrent_save_and_delete_for_user_never_leaves_orphans,
    delete_for_user_racing_saves_of_others_leaves_them,
};
pub use records::{
    concurrent_saves_of_distinct_ids_all_land, concurrent_saves_of_same_id_exactly_one_wins,
    concurrent_updates_keep_a_valid_expiry, delete_racing_update_never_resurrects,
    update_record_expiry_racing_delete_never_resurrects,
};
pub use stress::mixed_stress_10000_ops_exact_state;

/// Tasks in the concurrent cases.
const TASKS: usize = 20;

/// Checks that the store holds exactly `records` for `user_id`: by the user listing when the
/// store has one, else by fetching every id from [`BULK_TASKS`](crate::harness::BULK_TASKS)
/// tasks. Returns how many records the store showed.
async fn assert_user_holds(
    store: &Arc<dyn SessionStore>,
    capabilities: Capabilities,
    user_id: &str,
    records: Vec<SessionRecord>,
    context: &'static str,
) -> usize {
    if capabilities.fetch_sessions_for_user {
        let listed = must(
            store.fetch_sessions_for_user(user_id, now_ms()).await,
            "fetch_sessions_for_user",
        );
        let shown = listed.len();
        assert_same_set(listed, &records, context);
        return shown;
    }
    assert_all_stored(store, &records, context).await;
    records.len()
}
