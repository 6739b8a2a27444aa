//! User ids that differ by case, surrounding whitespace, a trailing control character or
//! Unicode normalisation name different users, in every call that takes a user id.

use std::sync::Arc;

use narvik_core::{SessionRecord, SessionStore};
use serde_json::json;

use super::{DELETE, FETCH};
use crate::harness::{
    assert_absent, assert_same_set, assert_stored, declared_absent, list_at, live_record, must,
    now_ms, random_suffix,
};
use crate::Capabilities;

/// Two sessions for `user_id`, whose data names the user (so a merged record shows whose).
fn sessions_of(user_id: &str) -> Vec<SessionRecord> {
    (0..2)
        .map(|n| live_record(user_id, json!({ "user": user_id, "n": n })))
        .collect()
}

/// Saves two sessions for each twin user id and proves them distinct: every record fetches
/// back with its user id byte for byte; each twin's listing holds its own sessions only; and
/// deleting one twin's sessions (each twin in turn, the others all present) leaves every other
/// twin's sessions stored and listed.
async fn assert_user_ids_stay_distinct(
    store: &dyn SessionStore,
    capabilities: Capabilities,
    twins: &[String],
    what: &str,
) {
    let mut held: Vec<Vec<SessionRecord>> = twins.iter().map(|twin| sessions_of(twin)).collect();
    for records in &held {
        for record in records {
            must(store.save_session(record).await, "save_session");
        }
    }
    for records in &held {
        for record in records {
            assert_stored(
                store,
                record,
                &format!("a session of user id {:?} ({what})", record.user_id),
            )
            .await;
        }
    }

    let listing = !declared_absent(store, capabilities, FETCH).await;
    let assert_listings = |held: &[Vec<SessionRecord>], context: &'static str| {
        let held = held.to_vec();
        async move {
            if !listing {
                return;
            }
            for (twin, records) in twins.iter().zip(&held) {
                assert_same_set(
                    list_at(store, twin, now_ms()).await,
                    records,
                    &format!("{context}: the listing of user id {twin:?} ({what})"),
                );
            }
        }
    };
    assert_listings(&held, "after saving every twin").await;

    if declared_absent(store, capabilities, DELETE).await {
        return;
    }
    for index in 0..twins.len() {
        let twin = &twins[index];
        must(
            store.delete_sessions_for_user(twin).await,
            "delete_sessions_for_user",
        );
        for record in &held[index] {
            assert_absent(
                store,
                &record.id,
                &format!("a session of user id {twin:?} after deleting its sessions ({what})"),
            )
            .await;
        }
        for (other, records) in twins.iter().zip(&held) {
            if other == twin {
                continue;
            }
            for record in records {
                assert_stored(
                    store,
                    record,
                    &format!(
                        "a session of user id {other:?} after deleting the sessions of its \
                         twin {twin:?} ({what})"
                    ),
                )
                .await;
            }
        }
        held[index] = Vec::new();
        assert_listings(&held, "after deleting one twin's sessions").await;
        // Back again, so that the next twin's deletion has every other twin to spare.
        held[index] = sessions_of(twin);
        for record in &held[index] {
            must(store.save_session(record).await, "save_session");
        }
    }
    assert_listings(&held, "after every twin was deleted and saved again").await;
}

/// `Alice`/`alice`/`ALICE`, `ß`/`SS`/`ss`/`Ss`, `İ`/`i̇`/`i`/`I` stay three, four and four users.
///
/// Catches a case-insensitive collation or comparison (MySQL's default, `citext`, `ILIKE`,
/// `COLLATE NOCASE`) and an id lower-cased on the way in.
pub async fn user_ids_differing_by_case_stay_distinct(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    let r = random_suffix();
    for (twins, what) in [
        (vec!["Alice", "alice", "ALICE"], "letter case"),
        (
            vec!["ß", "SS", "ss", "Ss"],
            "German sharp s and its case foldings",
        ),
        (
            vec!["İ", "i\u{307}", "i", "I"],
            "Turkish dotted I and its lower case",
        ),
    ] {
        let twins: Vec<String> = twins.iter().map(|twin| format!("{twin}-{r}")).collect();
        assert_user_ids_stay_distinct(store.as_ref(), capabilities, &twins, what).await;
    }
}

/// `bob`, ` bob`, `bob `, `\tbob`, `bob\n`, and Unicode spaces (no-break, en quad,
/// ideographic, a byte-order mark) before or after, stay ten users.
///
/// Catches a trimmed id, a `CHAR(n)` column or `PAD SPACE` collation (`'bob' = 'bob '`), and
/// a Unicode-aware trim.
pub async fn user_ids_differing_by_surrounding_whitespace_stay_distinct(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    let base = format!("bob-{}", random_suffix());
    let twins: Vec<String> = [
        "{}",
        " {}",
        "{} ",
        "\t{}",
        "{}\n",
        "\u{a0}{}",
        "{}\u{2000}",
        "\u{3000}{}",
        "\u{feff}{}",
        " {} ",
    ]
    .iter()
    .map(|shape| shape.replace("{}", &base))
    .collect();
    assert_user_ids_stay_distinct(
        store.as_ref(),
        capabilities,
        &twins,
        "surrounding whitespace",
    )
    .await;
}

/// `carol` and `carol` followed by U+0001, DEL, a carriage return or ESC stay five users.
///
/// Catches an id stripped of control characters (or of a trailing `\r`, as a line reader
/// does) on the way in.
pub async fn user_ids_differing_by_trailing_control_character_stay_distinct(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    let base = format!("carol-{}", random_suffix());
    let twins: Vec<String> = ["", "\u{1}", "\u{7f}", "\r", "\u{1b}"]
        .iter()
        .map(|tail| format!("{base}{tail}"))
        .collect();
    assert_user_ids_stay_distinct(
        store.as_ref(),
        capabilities,
        &twins,
        "a trailing control character",
    )
    .await;
}

/// `é` precomposed (NFC) and decomposed (NFD); `Å` as U+00C5, as the Ångström sign U+212B and
/// decomposed; the `ﬁ` ligature and `fi`: each stays its own user.
///
/// Catches an id normalised (NFC, NFKC) on the way in, and a collation that compares
/// canonically equivalent strings as equal (ICU's non-deterministic collations).
pub async fn user_ids_differing_by_normalisation_stay_distinct(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    let r = random_suffix();
    for (twins, what) in [
        (vec!["caf\u{e9}", "cafe\u{301}"], "NFC and NFD"),
        (
            vec!["\u{c5}ngstr", "\u{212b}ngstr", "A\u{30a}ngstr"],
            "three forms of Å",
        ),
        (
            vec!["\u{fb01}le", "file"],
            "a ligature and its compatibility decomposition",
        ),
    ] {
        let twins: Vec<String> = twins.iter().map(|twin| format!("{twin}-{r}")).collect();
        assert_user_ids_stay_distinct(store.as_ref(), capabilities, &twins, what).await;
    }
}
