//! Ids and data are data, never code: quotes, wildcards, operators and odd unicode in user
//! ids, session ids and data keys are stored and matched literally.

use std::sync::Arc;

use narvik_core::{OptionalOperation, SessionRecord, SessionStore};
use serde_json::json;
use time::Duration;

use crate::harness::{
    assert_absent, assert_same_set, assert_stored, declared_absent, live_record, must, now_ms,
    random_suffix, save_all,
};
use crate::Capabilities;

/// Pairs of a hostile user id part and a near twin that a pattern built from it would match
/// (`a%` matches `ab` in SQL `LIKE`, `x*` matches `xy` as a glob or key pattern, ...).
const HOSTILE_USER_IDS: &[(&str, &str)] = &[
    ("'", "''"),
    ("\"", "\\\""),
    ("a%", "ab"),
    ("%", "zz"),
    ("_", "y"),
    ("x*", "xy"),
    ("*", "everything"),
    ("?", "q"),
    ("{x}", "x"),
    ("[a]", "a"),
    ("[^z]", "b"),
    ("\\", "\\\\"),
    (":", "::"),
    ("a b  c", "abc"),
    (".*", "dotstar"),
    ("' OR '1'='1", "OR"),
    ("$ne", "$eq"),
    ("{\"$gt\": \"\"}", "gt"),
    ("ünïcødé 😀", "unicode"),
    ("שלום مرحبا", "rtl"),
    ("line\nbreak\ttab", "linebreak"),
];

/// Hostile user ids (quotes, `%`, `_`, `*`, `?`, `{x}`, `[a]`, `\`, `:`, spaces, unicode, a
/// 1 KiB id) round-trip exactly, and listing or deleting one never touches its near twin.
pub async fn user_ids_are_data_not_syntax(
    store: Arc<dyn SessionStore>,
    capabilities: Capabilities,
) {
    let suffix = random_suffix();
    let long_hostile = format!("{}{}", "k%*_".repeat(250), &suffix[..8]);
    let long_twin = format!("{}{}", "k%*_".repeat(250), &suffix[8..]);
    let long_hostile = format!("{long_hostile}{}", "é".repeat(8));
    let long_twin = format!("{long_twin}{}", "e".repeat(16));
    debug_assert_eq!((long_hostile.len(), long_twin.len()), (1_024, 1_024));
    let mut pairs: Vec<(String, String)> = HOSTILE_USER_IDS
        .iter()
        .map(|(hostile, twin)| (format!("{hostile}-{suffix}"), format!("{twin}-{suffix}")))
        .collect();
    pairs.push((long_hostile, long_twin));

    let hostile: Vec<SessionRecord> = pairs
        .iter()
        .map(|(user, _)| live_record(user, json!({ "user": user })))
        .collect();
    let twins: Vec<SessionRecord> = pairs
        .iter()
        .map(|(_, user)| live_record(user, json!({ "twin": user })))
        .collect();
    save_all(store.as_ref(), &hostile).await;
    save_all(store.as_ref(), &twins).await;
    for record in hostile.iter().chain(&twins) {
        assert_stored(store.as_ref(), record, "a session of a hostile user id").await;
    }

    if !declared_absent(
        store.as_ref(),
        capabilities,
        OptionalOperation::FetchSessionsForUser,
    )
    .await
    {
        for record in hostile.iter().chain(&twins) {
            let listed = must(
                store
                    .fetch_sessions_for_user(&record.user_id, now_ms())
                    .await,
                "fetch_sessions_for_user",
            );
            assert_same_set(
                listed,
                std::slice::from_ref(record),
                &format!("the listing of user id {:?}", record.user_id),
            );
        }
    }
    if !declared_absent(
        store.as_ref(),
        capabilities,
        OptionalOperation::DeleteSessionsForUser,
    )
    .await
    {
        for record in &hostile {
            must(
                store.delete_sessions_for_user(&record.user_id).await,
                "delete_sessions_for_user",
            );
            assert_absent(
                store.as_ref(),
                &record.id,
                "a deleted hostile user's session",
            )
            .await;
        }
        for record in &twins {
            assert_stored(
                store.as_ref(),
                record,
                "a near twin after deleting the hostile user ids",
            )
            .await;
        }
    }
}

/// Session ids that are not of the engine's shape (empty, wildcards, quotes, operators,
/// unicode, 1 KiB, a case-changed or truncated real id) are unknown ids: fetch answers
/// `None`, update and delete succeed and create or remove nothing.
pub async fn session_ids_are_data_not_syntax(
    store: Arc<dyn SessionStore>,
    _capabilities: Capabilities,
) {
    let bystander = live_record(
        &format!("bystander-{}", random_suffix()),
        json!({ "safe": true }),
    );
    must(store.save_session(&bystander).await, "save_session");
    let real = &bystander.id;
    let hostile_ids = [
        String::new(),
        "*".to_owned(),
        "%".to_owned(),
        "_".to_owned(),
        ".*".to_owned(),
        "?".to_owned(),
        "[0-9a-f]*".to_owned(),
        "' OR '1'='1".to_owned(),
        "'; DELETE FROM sessions; --".to_owned(),
        "{\"$ne\": null}".to_owned(),
        "$where".to_owned(),
        "../..".to_owned(),
        "\\".to_owned(),
        "\n".to_owned(),
        "ünï😀".to_owned(),
        "a".repeat(1_024),
        format!("{}*", &real[..8]),
        format!("{}%", &real[..8]),
        real.to_uppercase(),
        format!("{real} "),
        real[..63].to_owned(),
    ];
    let expires_at = bystander.expires_at + Duration::days(1);
    for id in &hostile_ids {
        let context = format!("session id {id:?}");
        assert_absent(store.as_ref(), id, &context).await;
        must(
            store.update_session_expiry(id, expires_at).await,
            "update_session_expiry of a hostile id",
        );
        assert_absent(store.as_ref(), id, &context).await;
        must(
            store.delete_session(id).await,
            "delete_session of a hostile id",
        );
    }
    assert_stored(
        store.as_ref(),
        &bystander,
        "a real session after hostile ids were fetched, updated and deleted",
    )
    .await;
}

/// Data keys that are operators or paths elsewhere (`$set`, `a.b`, `__proto__`, an empty key,
/// SQL) are plain keys, and values that look like queries are plain strings.
pub async fn data_keys_are_data_not_syntax(
    store: Arc<dyn SessionStore>,
    _capabilities: Capabilities,
) {
    let record = live_record(
        &format!("keys-{}", random_suffix()),
        json!({
            "$set": { "admin": true },
            "$where": "function() { return true; }",
            "a.b": { "c.d": 1 },
            "": "empty key",
            "__proto__": { "polluted": true },
            "constructor": { "prototype": {} },
            "'; DROP TABLE sessions; --": true,
            "{x}": ["{y}"],
            "%": "%",
            "nested": { "$gt": "", "$in": [1, 2] },
        }),
    );
    must(store.save_session(&record).await, "save_session");
    assert_stored(store.as_ref(), &record, "data with hostile keys").await;
}
