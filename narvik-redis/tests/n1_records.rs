//! Records in the old "n1" layout, as the save of earlier versions wrote them (record, user
//! index entry and expiry-queue entry, written here with raw commands), read and written
//! through today's store: fetched with every field intact (no lifetime, data version 0),
//! listed, extended and shortened in place, upgraded to "n2" by a data update that keeps the
//! key's TTL, and purged.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::shared::{expire_time, index_key, ms, now, queue, queue_member, record_key};
use narvik_core::{Narvik, SessionData, SessionRecord, SessionStore, SessionToken};
use narvik_redis::redis::{self, aio::MultiplexedConnection};
use narvik_redis::RedisStore;
use time::OffsetDateTime;

/// Data whose numbers only survive as exact text (u64::MAX, 2^53 + 1, a 17-digit float).
const DATA: &str = r#"{"theme":"dark","big":18446744073709551615,"odd":9007199254740993,"f":0.30000000000000004,"s":"\"{}\\"}"#;

/// A user id with braces, a NUL and non-ASCII bytes (hex-encoded in the key names).
const USER: &str = "{ünï}\0x";

/// The exact bytes the old save stored: "n1", expiry ms and creation ms (16 hex digits each),
/// user id length (8 hex digits), user id, data JSON.
fn n1_value(record: &SessionRecord, data_json: &str) -> Vec<u8> {
    let mut value = b"n1".to_vec();
    value.extend_from_slice(format!("{:016x}", ms(record.expires_at) as u64).as_bytes());
    value.extend_from_slice(format!("{:016x}", ms(record.created_at) as u64).as_bytes());
    value.extend_from_slice(format!("{:08x}", record.user_id.len()).as_bytes());
    value.extend_from_slice(record.user_id.as_bytes());
    value.extend_from_slice(data_json.as_bytes());
    value
}

/// The expiry-queue bucket of a session id: FNV-1a of the id, modulo 16 (src/keys.rs).
fn queue_bucket(store: &RedisStore, session_id: &str) -> String {
    let hash = session_id
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("{}:x:{{{:x}}}", store.prefix(), hash % 16)
}

/// What the queue bucket's TTL is kept past its latest entry (src/keys.rs).
const QUEUE_GRACE_MS: i64 = 7 * 24 * 3600 * 1000;

/// Writes `record` as the old save did (save.lua, unchanged since): the n1 value with a `PX`
/// TTL ending at its expiry, its id in the user's index scored by expiry (the index kept alive
/// that long), and its queue member in its bucket scored by expiry (the bucket kept alive a
/// week past it).
async fn write_n1(store: &RedisStore, raw: &mut MultiplexedConnection, record: &SessionRecord) {
    let expires = ms(record.expires_at);
    let ttl = expires - ms(now());
    assert!(ttl > 0, "the record is live");
    let () = redis::cmd("SET")
        .arg(record_key(store, &record.id))
        .arg(n1_value(record, DATA))
        .arg("NX")
        .arg("PX")
        .arg(ttl)
        .query_async(raw)
        .await
        .expect("SET n1 record");
    let index = index_key(store, &record.user_id);
    let bucket = queue_bucket(store, &record.id);
    let mut pipe = redis::pipe();
    pipe.cmd("ZADD")
        .arg(&index)
        .arg("GT")
        .arg(expires)
        .arg(&record.id)
        .ignore();
    // keep_until in scripts/lib.lua: set on a key without a TTL, else only ever later.
    for option in ["NX", "GT"] {
        pipe.cmd("PEXPIREAT")
            .arg(&index)
            .arg(expires)
            .arg(option)
            .ignore();
    }
    pipe.cmd("ZADD")
        .arg(&bucket)
        .arg("LT")
        .arg(expires)
        .arg(queue_member(&record.user_id, &record.id))
        .ignore();
    for option in ["NX", "GT"] {
        pipe.cmd("PEXPIREAT")
            .arg(&bucket)
            .arg(expires + QUEUE_GRACE_MS)
            .arg(option)
            .ignore();
    }
    let () = pipe
        .query_async(raw)
        .await
        .expect("index and queue entries");
}

/// A record as the old save knew it: no lifetime, data version 0.
fn old_record(session_id: &str, expires_in: Duration) -> SessionRecord {
    let now = now();
    SessionRecord {
        id: session_id.to_owned(),
        user_id: USER.to_owned(),
        expires_at: now + expires_in,
        created_at: now - Duration::from_secs(3 * 24 * 3600),
        data: SessionData::from_json_text(DATA),
        lifetime: None,
        data_version: 0,
    }
}

async fn raw_value(store: &RedisStore, raw: &mut MultiplexedConnection, id: &str) -> Vec<u8> {
    let value: Option<Vec<u8>> = redis::cmd("GET")
        .arg(record_key(store, id))
        .query_async(raw)
        .await
        .expect("GET");
    value.expect("the record is there")
}

async fn pttl(raw: &mut MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("PTTL")
        .arg(key)
        .query_async(raw)
        .await
        .expect("PTTL")
}

async fn index_score(
    store: &RedisStore,
    raw: &mut MultiplexedConnection,
    user_id: &str,
    id: &str,
) -> Option<i64> {
    let score: Option<f64> = redis::cmd("ZSCORE")
        .arg(index_key(store, user_id))
        .arg(id)
        .query_async(raw)
        .await
        .expect("ZSCORE");
    score.map(|score| score as i64)
}

/// Fetches `id` and checks it field by field against `expected`, the data text included.
async fn fetch_exact(store: &RedisStore, expected: &SessionRecord) -> SessionRecord {
    let fetched = store
        .fetch_session(&expected.id)
        .await
        .expect("fetch")
        .unwrap_or_else(|| panic!("{} is live", expected.id));
    assert_eq!(&fetched, expected);
    assert_eq!(fetched.user_id, expected.user_id, "user id byte for byte");
    assert_eq!(ms(fetched.expires_at), ms(expected.expires_at));
    assert_eq!(ms(fetched.created_at), ms(expected.created_at));
    assert_eq!(fetched.lifetime, expected.lifetime);
    assert_eq!(fetched.data_version, expected.data_version);
    fetched
}

#[tokio::test(flavor = "multi_thread")]
async fn an_n1_record_is_read_and_upgraded_by_a_data_update_that_keeps_its_ttl() {
    let store = common::fresh_store().await;
    let mut raw = common::admin(&common::single_url().await).await;
    let old = old_record("n1-data", Duration::from_secs(3600));
    write_n1(&store, &mut raw, &old).await;
    let key = record_key(&store, &old.id);
    assert_eq!(&raw_value(&store, &mut raw, &old.id).await[..2], b"n1");

    let fetched = fetch_exact(&store, &old).await;
    assert_eq!(fetched.lifetime, None);
    assert_eq!(fetched.data_version, 0);
    assert_eq!(
        fetched.data.to_json_text().expect("text").as_ref(),
        DATA,
        "the data text comes back as stored"
    );
    assert_eq!(
        store
            .fetch_sessions_for_user(USER, now())
            .await
            .expect("list"),
        vec![old.clone()]
    );

    let expire_at_before = expire_time(&mut raw, &key).await;
    let ttl_before = pttl(&mut raw, &key).await;
    assert!(ttl_before > 0, "the key has a TTL: {ttl_before}");
    let new_data: SessionData = serde_json::json!({"theme": "light", "n": 2}).into();
    // A writer that read another version loses, and changes nothing.
    let mut stale = fetched.clone();
    stale.data_version = 1;
    assert!(!store
        .update_session_data(&stale, &new_data, now())
        .await
        .expect("stale update"));
    assert_eq!(&raw_value(&store, &mut raw, &old.id).await[..2], b"n1");
    assert!(store
        .update_session_data(&fetched, &new_data, now())
        .await
        .expect("update"));
    let ttl_after = pttl(&mut raw, &key).await;
    assert_eq!(
        expire_time(&mut raw, &key).await,
        expire_at_before,
        "KEEPTTL: the key expires when it did"
    );
    assert!(
        ttl_after <= ttl_before && ttl_before - ttl_after < 2_000,
        "PTTL before {ttl_before} ms, after {ttl_after} ms"
    );

    let upgraded = SessionRecord {
        data: new_data.clone(),
        data_version: 1,
        ..old.clone()
    };
    let after = fetch_exact(&store, &upgraded).await;
    assert_eq!(after.data, serde_json::json!({"theme": "light", "n": 2}));
    let value = raw_value(&store, &mut raw, &old.id).await;
    let n1 = n1_value(&old, "");
    assert_eq!(&value[..2], b"n2", "rewritten in the new layout");
    assert_eq!(
        &value[2..42],
        &n1[2..42],
        "expiry, creation, user id length kept"
    );
    assert_eq!(&value[42..58], b"0000000000000000", "no lifetime");
    assert_eq!(&value[58..74], b"0000000000000001", "data version 1");
    assert_eq!(&value[74..74 + USER.len()], USER.as_bytes());
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&value[74 + USER.len()..]).expect("JSON"),
        serde_json::json!({"theme": "light", "n": 2})
    );
    // The version the n1 record was read at is spent.
    assert!(!store
        .update_session_data(&fetched, &new_data, now())
        .await
        .expect("second update at version 0"));
    assert_eq!(
        store
            .fetch_sessions_for_user(USER, now())
            .await
            .expect("list"),
        vec![upgraded.clone()]
    );
    // The index and queue entries the old save wrote still lead to it.
    assert_eq!(
        index_score(&store, &mut raw, USER, &old.id).await,
        Some(ms(old.expires_at))
    );
    assert_eq!(
        queue(&store, &mut raw)
            .await
            .get(&queue_member(USER, &old.id)),
        Some(&ms(old.expires_at))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn n1_records_take_both_expiry_updates_in_place_and_are_purged() {
    let store = common::fresh_store().await;
    let mut raw = common::admin(&common::single_url().await).await;
    let by_record = old_record("n1-by-record", Duration::from_secs(3600));
    let by_id = old_record("n1-by-id", Duration::from_secs(3 * 3600));
    write_n1(&store, &mut raw, &by_record).await;
    write_n1(&store, &mut raw, &by_id).await;
    let mut listed = store
        .fetch_sessions_for_user(USER, now())
        .await
        .expect("list");
    listed.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(listed, vec![by_id.clone(), by_record.clone()]);

    // Extended through the record (the engine's call): header, TTL and index move; the value
    // stays n1, its other bytes untouched.
    let later = now() + Duration::from_secs(5 * 3600);
    store
        .update_record_expiry(&by_record, later)
        .await
        .expect("extend");
    let extended = SessionRecord {
        expires_at: later,
        ..by_record.clone()
    };
    fetch_exact(&store, &extended).await;
    assert_eq!(
        raw_value(&store, &mut raw, &by_record.id).await,
        n1_value(&extended, DATA)
    );
    assert_eq!(
        expire_time(&mut raw, &record_key(&store, &by_record.id)).await,
        ms(later)
    );
    assert_eq!(
        index_score(&store, &mut raw, USER, &by_record.id).await,
        Some(ms(later))
    );

    // Shortened by id (the user is read from the n1 header): the queue entry moves earlier.
    let sooner = now() + Duration::from_secs(1800);
    store
        .update_session_expiry(&by_id.id, sooner)
        .await
        .expect("shorten by id");
    let shortened = SessionRecord {
        expires_at: sooner,
        ..by_id.clone()
    };
    fetch_exact(&store, &shortened).await;
    assert_eq!(
        raw_value(&store, &mut raw, &by_id.id).await,
        n1_value(&shortened, DATA)
    );
    assert_eq!(
        expire_time(&mut raw, &record_key(&store, &by_id.id)).await,
        ms(sooner)
    );
    assert_eq!(
        index_score(&store, &mut raw, USER, &by_id.id).await,
        Some(ms(sooner))
    );
    assert_eq!(
        queue(&store, &mut raw)
            .await
            .get(&queue_member(USER, &by_id.id)),
        Some(&ms(sooner)),
        "due when the record now expires"
    );

    // A data update after the extension keeps the extended TTL and expiry.
    assert!(store
        .update_session_data(&extended, &serde_json::json!([1]).into(), now())
        .await
        .expect("update"));
    assert_eq!(
        expire_time(&mut raw, &record_key(&store, &by_record.id)).await,
        ms(later)
    );
    fetch_exact(
        &store,
        &SessionRecord {
            data: serde_json::json!([1]).into(),
            data_version: 1,
            ..extended.clone()
        },
    )
    .await;

    // The purge finds both through the old queue entries: the shortened one (still n1) at
    // 2 h, the upgraded one at 6 h; nothing is left behind.
    let hours = |n: u64| now() + Duration::from_secs(n * 3600);
    assert_eq!(
        store
            .delete_all_expired_sessions(hours(2))
            .await
            .expect("purge at 2 h"),
        1
    );
    assert_eq!(store.fetch_session(&by_id.id).await.expect("fetch"), None);
    assert_eq!(index_score(&store, &mut raw, USER, &by_id.id).await, None);
    assert_eq!(
        store
            .delete_all_expired_sessions(hours(6))
            .await
            .expect("purge at 6 h"),
        1
    );
    assert_eq!(
        store.fetch_session(&by_record.id).await.expect("fetch"),
        None
    );
    assert!(queue(&store, &mut raw).await.is_empty());
    let exists: i64 = redis::cmd("EXISTS")
        .arg(index_key(&store, USER))
        .query_async(&mut raw)
        .await
        .expect("EXISTS");
    assert_eq!(exists, 0, "the user's index is gone");
}

/// Through the engine: an n1 session validates with the configured (default) lifetime, and
/// `Narvik::update_session_data` upgrades it.
#[tokio::test(flavor = "multi_thread")]
async fn the_engine_reads_an_n1_session_with_the_default_lifetime_and_updates_its_data() {
    let store = common::fresh_store().await;
    let mut raw = common::admin(&common::single_url().await).await;
    let lifetime = time::Duration::hours(2);
    let narvik: Narvik<serde_json::Value> = Narvik::builder(Arc::new(store.clone()))
        .session_lifetime(lifetime)
        .build()
        .expect("engine");
    let token = SessionToken::generate().expect("token");
    // Past half of the configured lifetime: validation extends it by that lifetime.
    let old = old_record(&token.session_id(), Duration::from_secs(1800));
    write_n1(&store, &mut raw, &old).await;

    let start = OffsetDateTime::now_utc();
    let session = narvik
        .validate_session(token.as_str())
        .await
        .expect("validate")
        .expect("live");
    assert_eq!(session.lifetime, None);
    assert_eq!(session.data_version, 0);
    assert_eq!(session.user_id, USER);
    assert!(session.extended, "extended by the default lifetime");
    let extended_to = ms(session.expires_at);
    assert!(
        extended_to >= ms(start + lifetime) && extended_to <= ms(now() + lifetime),
        "extended to now + 2 h"
    );
    assert_eq!(
        expire_time(&mut raw, &record_key(&store, &old.id)).await,
        extended_to
    );
    assert_eq!(&raw_value(&store, &mut raw, &old.id).await[..2], b"n1");

    let updated = narvik
        .update_session_data(&session, |data| data["theme"] = "light".into())
        .await
        .expect("update")
        .expect("live");
    assert_eq!(updated.data_version, 1);
    assert_eq!(updated.data["theme"], "light");
    let fetched = store
        .fetch_session(&old.id)
        .await
        .expect("fetch")
        .expect("live");
    assert_eq!(fetched.data_version, 1);
    assert_eq!(fetched.lifetime, None);
    assert_eq!(ms(fetched.expires_at), extended_to);
    assert_eq!(fetched.data.to_value().expect("JSON")["theme"], "light");
    assert_eq!(&raw_value(&store, &mut raw, &old.id).await[..2], b"n2");
    assert_eq!(
        expire_time(&mut raw, &record_key(&store, &old.id)).await,
        extended_to
    );
}
