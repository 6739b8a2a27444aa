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

use std::sync::Arc;

use narvik_core::{Error, OptionalOperation, SessionRecord, SessionStore};
use serde_json::json;
use time::Duration;

use crate::harness::{
    assert_absent, assert_same_set, assert_stored, declared_absent, list_at, live_record, must,
    now_ms, random_session_id, random_suffix,
};
use crate::Capabilities;

const FETCH: OptionalOperation = OptionalOperation::FetchSessionsForUser;
const DELETE: OptionalOperation = OptionalOperation::DeleteSessionsForUser;

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

/// What a save answered for a record with a NUL in an id.
enum NulSave {
    Stored,
    Refused,
}

/// Saves a record with a NUL in an id: `Ok` (then it must fetch back byte for byte) or
/// `Err(InvalidData)` (then it must not be there). Anything else fails the case.
async fn save_with_nul(store: &dyn SessionStore, record: &SessionRecord, what: &str) -> NulSave {
    match store.save_session(record).await {
        Ok(()) => {
            assert_stored(
                store,
                record,
                &format!("a record with a NUL in its {what}, saved Ok"),
            )
            .await;
            NulSave::Stored
        }
        Err(Error::InvalidData(_)) => {
            // The store cannot hold the value, so it cannot have stored it: asked for the id,
            // it answers None (or, for an id it cannot even look up, the same typed refusal).
            match store.fetch_session(&record.id).await {
                Ok(None) | Err(Error::InvalidData(_)) => {}
                other => panic!(
                    "a save with a NUL in the {what} was refused with InvalidData, yet fetching \
                     its id answered {other:?}"
                ),
            }
            NulSave::Refused
        }
        Err(Error::DuplicateId) => panic!(
            "a save with a NUL in the {what} failed with DuplicateId: the store cut or stripped \
             the NUL and merged the id with a twin"
        ),
        Err(other) => panic!(
            "a save with a NUL in the {what} must be Ok (stored byte for byte) or \
             Err(Error::InvalidData), got {other:?}"
        ),
    }
}

/// User id `a\0b` and session id `x\0y` (each with a random part before them): the save is
/// either `Ok`, and the record round-trips byte for byte without touching its twins (`a`,
/// `ab`; `x`, `xy`), or `Err(InvalidData)` and nothing is stored or altered.
///
/// Catches an id cut at its NUL as a C string is (`a\0b` becomes `a`), and a NUL stripped
/// (`ab`): either merges the id with a twin, or stores an altered one.
pub async fn nul_in_ids_round_trips_or_is_invalid_data(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    let r = random_suffix();
    let nul_user = format!("{r}a\0b");
    let user_twins = [format!("{r}a"), format!("{r}ab")];
    let user_twin_records: Vec<SessionRecord> = user_twins
        .iter()
        .map(|user| live_record(user, json!({ "twin": user })))
        .collect();
    let base = random_session_id();
    let id_twins = [format!("{base}x"), format!("{base}xy")];
    let id_twin_records = session_twins(&id_twins, "nul-twin");
    for record in user_twin_records.iter().chain(&id_twin_records) {
        must(store.save_session(record).await, "save_session of a twin");
    }

    let with_nul_user = live_record(&nul_user, json!({ "nul": "user" }));
    let user_saved = save_with_nul(store.as_ref(), &with_nul_user, "user id").await;
    let mut with_nul_id = live_record(&format!("nul-id-{r}"), json!({ "nul": "id" }));
    with_nul_id.id = format!("{base}x\0y");
    let id_saved = save_with_nul(store.as_ref(), &with_nul_id, "session id").await;

    for record in user_twin_records.iter().chain(&id_twin_records) {
        assert_stored(store.as_ref(), record, "a twin of an id with a NUL").await;
    }
    if !declared_absent(store.as_ref(), capabilities, FETCH).await {
        for (twin, record) in user_twins.iter().zip(&user_twin_records) {
            assert_same_set(
                list_at(store.as_ref(), twin, now_ms()).await,
                std::slice::from_ref(record),
                &format!("the listing of {twin:?}, a twin of a user id with a NUL"),
            );
        }
        if let NulSave::Stored = user_saved {
            assert_same_set(
                list_at(store.as_ref(), &nul_user, now_ms()).await,
                std::slice::from_ref(&with_nul_user),
                "the listing of a user id with a NUL",
            );
        }
    }

    if let NulSave::Stored = id_saved {
        let mut extended = with_nul_id.clone();
        extended.expires_at += Duration::days(2);
        must(
            store
                .update_session_expiry(&with_nul_id.id, extended.expires_at)
                .await,
            "update_session_expiry of an id with a NUL",
        );
        assert_stored(
            store.as_ref(),
            &extended,
            "an id with a NUL after an update",
        )
        .await;
        must(
            store.delete_session(&with_nul_id.id).await,
            "delete_session of an id with a NUL",
        );
        assert_absent(store.as_ref(), &with_nul_id.id, "a deleted id with a NUL").await;
        for record in &id_twin_records {
            assert_stored(
                store.as_ref(),
                record,
                "a twin after updating and deleting an id with a NUL",
            )
            .await;
        }
    }
    if let NulSave::Stored = user_saved {
        if !declared_absent(store.as_ref(), capabilities, DELETE).await {
            must(
                store.delete_sessions_for_user(&nul_user).await,
                "delete_sessions_for_user of a user id with a NUL",
            );
            assert_absent(
                store.as_ref(),
                &with_nul_user.id,
                "a deleted session of a user id with a NUL",
            )
            .await;
            for record in &user_twin_records {
                assert_stored(
                    store.as_ref(),
                    record,
                    "a twin after deleting the sessions of a user id with a NUL",
                )
                .await;
            }
        }
    }
}
