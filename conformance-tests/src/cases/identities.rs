//! Ids are compared byte for byte: user ids and session ids that differ only by letter case,
//! surrounding whitespace, a trailing control character or Unicode normalisation stay
//! distinct, and a value the store cannot hold (a NUL) is `InvalidData` at save, never an
//! altered or merged id.
//!
//! These are the bugs of a case-insensitive or accent-insensitive collation, of a `CHAR`
//! column or a `PAD SPACE` comparison, of an id trimmed or normalised on the way in, and of a
//! C string cut at its NUL.
//!
//! Every twin carries a random part in its middle, so that its edges (the leading or trailing
//! character the case is about) stay at the edges.
//!
//! One file per kind of id: user ids (`user_ids`), session ids (`session_ids`), and a NUL in
//! either (`nul`). All of them are re-exported here, so a case is `cases::identities::NAME`
//! whichever file holds it.

mod nul;
mod session_ids;
mod user_ids;

use narvik_core::{OptionalOperation, SessionRecord};
use serde_json::json;

use crate::harness::{live_record, random_suffix};

pub use nul::nul_in_ids_round_trips_or_is_invalid_data;
pub use session_ids::{
    session_ids_differing_by_case_stay_distinct,
    session_ids_differing_by_normalisation_stay_distinct,
    session_ids_differing_by_whitespace_or_control_stay_distinct,
};
pub use user_ids::{
    user_ids_differing_by_case_stay_distinct, user_ids_differing_by_normalisation_stay_distinct,
    user_ids_differing_by_surrounding_whitespace_stay_distinct,
    user_ids_differing_by_trailing_control_character_stay_distinct,
};

const FETCH: OptionalOperation = OptionalOperation::FetchSessionsForUser;
const DELETE: OptionalOperation = OptionalOperation::DeleteSessionsForUser;

/// A session for each twin id, with its own user and data.
fn session_twins(ids: &[String], label: &str) -> Vec<SessionRecord> {
    let user_suffix = random_suffix();
    ids.iter()
        .enumerate()
        .map(|(n, id)| {
            let mut record = live_record(
                &format!("{label}{n}-{user_suffix}"),
                json!({ "id": id, "n": n }),
            );
            record.id.clone_from(id);
            record
        })
        .collect()
}
