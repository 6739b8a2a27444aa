//! Session ids that differ by case, whitespace, a control character or Unicode normalisation
//! name different records.

use std::sync::Arc;

use narvik_core::{Error, SessionRecord, SessionStore};
use time::Duration;

use super::session_twins;
use crate::harness::{assert_absent, assert_stored, must, random_session_id};
use crate::Capabilities;

/// Saves every twin and proves them distinct: each fetches back as itself (id byte for
/// byte); updating one twin's expiry changes it alone; deleting one twin (each in turn, the
/// others present) removes it alone, and it can then be saved again (the delete really freed
/// the id).
async fn assert_session_ids_stay_distinct(store: &dyn SessionStore, ids: &[String], what: &str) {
    let mut records = session_twins(ids, "sid-twin");
    for record in &records {
        match store.save_session(record).await {
            Ok(()) => {}
            Err(Error::DuplicateId) => panic!(
                "saving session id {:?} failed with DuplicateId: the store merged it with a \
                 twin that differs only by {what}",
                record.id
            ),
            Err(error) => panic!("`save_session` of id {:?} failed: {error:?}", record.id),
        }
    }
    let assert_all = |records: &[SessionRecord], context: &str| {
        let records = records.to_vec();
        let context = format!("{context} ({what})");
        async move {
            for record in &records {
                assert_stored(store, record, &format!("{context}: id {:?}", record.id)).await;
            }
        }
    };
    assert_all(&records, "after saving every twin").await;

    for index in 0..records.len() {
        let new_expiry = records[index].expires_at + Duration::days(1) + Duration::milliseconds(7);
        must(
            store
                .update_session_expiry(&records[index].id, new_expiry)
                .await,
            "update_session_expiry",
        );
        records[index].expires_at = new_expiry;
        assert_all(&records, "after updating one twin's expiry").await;
    }

    for index in 0..records.len() {
        let doomed = records[index].clone();
        must(store.delete_session(&doomed.id).await, "delete_session");
        assert_absent(
            store,
            &doomed.id,
            &format!("a deleted twin {:?} ({what})", doomed.id),
        )
        .await;
        let others: Vec<SessionRecord> = records
            .iter()
            .filter(|record| record.id != doomed.id)
            .cloned()
            .collect();
        assert_all(&others, "after deleting one twin").await;
        let again = session_twins(std::slice::from_ref(&doomed.id), "sid-again")
            .pop()
            .expect("one twin");
        must(
            store.save_session(&again).await,
            "save_session of a deleted twin's id again",
        );
        records[index] = again;
    }
    assert_all(&records, "after every twin was deleted and saved again").await;
}

/// A session id of the engine's shape (64 lowercase hex characters), its upper-case twin and
/// a mixed-case twin are three sessions: fetch, update and delete of one never touch another.
///
/// Catches a case-insensitive primary key (a `NOCASE` or `_ci` collation, a lower-cased key).
pub async fn session_ids_differing_by_case_stay_distinct(
    store: Arc<dyn SessionStore>,
    _capabilities: Capabilities,
) {
    // Letters at the front, so that the case twins differ whatever the random part holds.
    let base = format!("abcdef{}", &random_session_id()[6..]);
    let mixed: String = base
        .chars()
        .enumerate()
        .map(|(n, c)| {
            if n % 2 == 0 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect();
    let ids = vec![base.clone(), base.to_uppercase(), mixed];
    assert_session_ids_stay_distinct(store.as_ref(), &ids, "letter case").await;
}

/// `id`, ` id`, `id `, `id` + no-break space, `id` + U+0001 and `id` + tab are six sessions.
///
/// Catches a trimmed key, a `CHAR(n)` key or `PAD SPACE` comparison, and a key stripped of
/// control characters.
pub async fn session_ids_differing_by_whitespace_or_control_stay_distinct(
    store: Arc<dyn SessionStore>,
    _capabilities: Capabilities,
) {
    let base = random_session_id();
    let ids: Vec<String> = ["{}", " {}", "{} ", "{}\u{a0}", "{}\u{1}", "{}\t"]
        .iter()
        .map(|shape| shape.replace("{}", &base))
        .collect();
    assert_session_ids_stay_distinct(store.as_ref(), &ids, "whitespace or a control character")
        .await;
}

/// Session ids ending in `é` precomposed or decomposed, in `Å` as U+00C5, U+212B or
/// decomposed, and in `ﬁ` or `fi` are seven sessions.
///
/// Catches a key normalised on the way in, or compared under canonical equivalence.
pub async fn session_ids_differing_by_normalisation_stay_distinct(
    store: Arc<dyn SessionStore>,
    _capabilities: Capabilities,
) {
    let base = random_session_id();
    let ids: Vec<String> = [
        "\u{e9}", "e\u{301}", "\u{c5}", "\u{212b}", "A\u{30a}", "\u{fb01}", "fi",
    ]
    .iter()
    .map(|tail| format!("{base}{tail}"))
    .collect();
    assert_session_ids_stay_distinct(store.as_ref(), &ids, "Unicode normalisation").await;
}
