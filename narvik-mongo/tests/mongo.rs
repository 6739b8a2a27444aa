//! What the conformance suite cannot see: the indexes, the stored document shape, corrupt
//! documents, and errors when the server is not there.

mod common;

use std::time::{Duration, Instant};

use narvik_conformance::harness::record_expiring_in;
use narvik_core::deadline::{self, Bound};
use narvik_core::time_util::truncate_to_millis;
use narvik_core::{Error, SessionRecord, SessionStore};
use narvik_mongo::mongodb::bson::{doc, Bson, DateTime as BsonDateTime, Document};
use narvik_mongo::mongodb::options::{Acknowledgment, ClientOptions, WriteConcern};
use narvik_mongo::mongodb::Client;
use narvik_mongo::{
    default_write_concern, MongoStore, MongoStoreConfig, EXPIRES_AT_INDEX, USER_ID_INDEX,
};
use serde_json::json;
use time::OffsetDateTime;

fn record(id: &str, user_id: &str, expires_in: time::Duration) -> SessionRecord {
    SessionRecord {
        id: id.to_owned(),
        ..record_expiring_in(user_id, expires_in, json!({"role": "admin"}))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ensure_indexes_creates_the_ttl_and_user_indexes_idempotently() {
    let store = common::fresh_store().await;
    // fresh_store already ran it once; a second run must be a no-op, not an error.
    store.ensure_indexes().await.expect("second ensure_indexes");

    let mut indexes: Vec<Document> = Vec::new();
    let mut cursor = store
        .collection()
        .list_indexes()
        .await
        .expect("list indexes");
    while cursor.advance().await.expect("next index") {
        let model = cursor.deserialize_current().expect("index model");
        let mut description = doc! { "key": model.keys };
        if let Some(options) = model.options {
            // A collation on an index would merge ids that differ by case or accents.
            assert!(
                options.collation.is_none(),
                "index {:?} has the collation {:?}",
                options.name,
                options.collation
            );
            description.insert("name", options.name.unwrap_or_default());
            if let Some(ttl) = options.expire_after {
                description.insert("expireAfterSeconds", ttl.as_secs() as i64);
            }
        }
        indexes.push(description);
    }
    let by_name = |name: &str| {
        indexes
            .iter()
            .find(|index| index.get_str("name") == Ok(name))
            .cloned()
            .unwrap_or_else(|| panic!("no index {name} in {indexes:?}"))
    };

    let ttl = by_name(EXPIRES_AT_INDEX);
    assert_eq!(
        ttl.get_document("key").expect("key"),
        &doc! { "expiresAt": 1 }
    );
    assert_eq!(ttl.get_i64("expireAfterSeconds"), Ok(0), "{ttl:?}");

    let by_user = by_name(USER_ID_INDEX);
    assert_eq!(
        by_user.get_document("key").expect("key"),
        &doc! { "userId": 1 }
    );
    assert!(by_user.get("expireAfterSeconds").is_none(), "{by_user:?}");
    assert_eq!(indexes.len(), 3, "_id plus the two: {indexes:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn stored_document_has_the_documented_shape() {
    let store = common::fresh_store().await;
    let saved = SessionRecord {
        data: json!({"big": u64::MAX, "small": 7, "float": 1.0, "list": [null, "x"]}).into(),
        ..record("shape-1", "alice", time::Duration::hours(1))
    };
    store.save_session(&saved).await.expect("save");

    let stored = common::raw(&store)
        .find_one(doc! { "_id": "shape-1" })
        .await
        .expect("find")
        .expect("stored");
    assert_eq!(stored.get_str("userId"), Ok("alice"));
    let expires_at = stored
        .get_datetime("expiresAt")
        .expect("expiresAt is a date");
    assert_eq!(
        i128::from(expires_at.timestamp_millis()),
        saved.expires_at.unix_timestamp_nanos() / 1_000_000
    );
    assert!(stored.get_datetime("createdAt").is_ok());
    let data = stored.get_document("data").expect("data is embedded");
    assert!(
        matches!(data.get("big"), Some(Bson::Decimal128(_))),
        "{data:?}"
    );
    assert_eq!(data.get("small"), Some(&Bson::Int64(7)));
    assert_eq!(data.get("float"), Some(&Bson::Double(1.0)));

    let fetched = store.fetch_session("shape-1").await.expect("fetch");
    assert_eq!(fetched, Some(saved.clone()));
    assert_eq!(
        fetched.map(|found| found.data.to_string()),
        Some(saved.data.to_string()),
        "numbers keep their kind through the server"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_document_that_does_not_decode_is_a_corrupt_record() {
    let store = common::fresh_store().await;
    let in_an_hour = narvik_mongo::mongodb::bson::DateTime::from_millis(
        narvik_mongo::mongodb::bson::DateTime::now().timestamp_millis() + 3_600_000,
    );
    common::raw(&store)
        .insert_many([
            doc! { "_id": "bad-user", "userId": 42, "expiresAt": in_an_hour, "createdAt": in_an_hour, "data": {} },
            doc! { "_id": "bad-data", "userId": "u", "expiresAt": in_an_hour, "createdAt": in_an_hour,
                   "data": { "when": in_an_hour } },
        ])
        .await
        .expect("insert foreign documents");

    for id in ["bad-user", "bad-data"] {
        match store.fetch_session(id).await {
            Err(Error::CorruptRecord { reason, .. }) => {
                assert!(reason.contains(&id[..8.min(id.len())]), "{reason}");
            }
            other => panic!("{id}: expected CorruptRecord, got {other:?}"),
        }
    }
    assert!(matches!(
        store
            .fetch_sessions_for_user("u", OffsetDateTime::now_utc())
            .await,
        Err(Error::CorruptRecord { .. })
    ));
}

/// The raw `expiresAt` of the document `id`, or `None` when there is no such document.
async fn raw_expiry(store: &MongoStore, id: &str) -> Option<Bson> {
    common::raw(store)
        .find_one(doc! { "_id": id })
        .await
        .expect("raw find")
        .map(|mut found| found.remove("expiresAt").unwrap_or(Bson::Null))
}

fn bson_date(at: OffsetDateTime) -> Bson {
    let millis = i64::try_from(at.unix_timestamp_nanos().div_euclid(1_000_000)).expect("millis");
    Bson::DateTime(BsonDateTime::from_millis(millis))
}

/// On a collection without the TTL index (so that no monitor deletes anything), an expired
/// record stays on disk and yet is never returned or extended: the hiding and the refusal are
/// the store's own filters on the wall clock, not the monitor's work.
#[tokio::test(flavor = "multi_thread")]
async fn an_expired_record_is_hidden_and_never_revived_until_purged() {
    let store = common::fresh_store_without_ttl_index().await;
    let expired = record("expired-1", "bob", time::Duration::minutes(-5));
    let short = record("short-1", "bob", time::Duration::seconds(4));
    store.save_session(&expired).await.expect("save");
    store.save_session(&short).await.expect("save");

    assert_eq!(store.fetch_session("expired-1").await.expect("fetch"), None);
    let fetched = store.fetch_session("short-1").await.expect("fetch");
    let listed = store
        .fetch_sessions_for_user("bob", OffsetDateTime::now_utc())
        .await
        .expect("list");
    // Only meaningful while the short one is still live: a server slowed by other tests may
    // answer after its expiry, and then hiding it is right.
    if OffsetDateTime::now_utc() < short.expires_at {
        assert_eq!(fetched, Some(short.clone()), "live for a few more seconds");
        assert_eq!(listed, vec![short.clone()]);
    }

    // Let the short one expire by the wall clock: nothing but time decides it.
    let wait = short.expires_at + time::Duration::milliseconds(500) - OffsetDateTime::now_utc();
    tokio::time::sleep(std::time::Duration::try_from(wait).unwrap_or_default()).await;
    assert_eq!(store.fetch_session("short-1").await.expect("fetch"), None);

    // Extensions of expired records, through both calls, change nothing on disk: the update's
    // own filter refuses them, whatever a later fetch would show.
    let tomorrow = OffsetDateTime::now_utc() + time::Duration::days(1);
    for gone in [&expired, &short] {
        store
            .update_session_expiry(&gone.id, tomorrow)
            .await
            .expect("update_session_expiry");
        store
            .update_record_expiry(gone, tomorrow)
            .await
            .expect("update_record_expiry");
        assert_eq!(
            raw_expiry(&store, &gone.id).await,
            Some(bson_date(gone.expires_at)),
            "{}: an expired record was extended",
            gone.id
        );
        assert_eq!(store.fetch_session(&gone.id).await.expect("fetch"), None);
    }
    assert!(store
        .fetch_sessions_for_user("bob", OffsetDateTime::now_utc())
        .await
        .expect("list")
        .is_empty());

    assert_eq!(
        store
            .delete_all_expired_sessions(OffsetDateTime::now_utc())
            .await
            .expect("purge"),
        2,
        "no TTL monitor here, so the count is exact"
    );
    assert_eq!(
        common::raw(&store)
            .count_documents(doc! {})
            .await
            .expect("count"),
        0
    );
}

/// The listing and the purge go by the `now` they are handed, not by a clock of the store's:
/// an engine with a manual clock gets answers for its time.
#[tokio::test(flavor = "multi_thread")]
async fn listing_and_purge_cut_off_at_the_given_now() {
    let store = common::fresh_store_without_ttl_index().await;
    let soon = record("soon", "carol", time::Duration::hours(1));
    let later = record("later", "carol", time::Duration::days(3));
    store.save_session(&soon).await.expect("save");
    store.save_session(&later).await.expect("save");

    let now = OffsetDateTime::now_utc();
    let in_two_hours = now + time::Duration::hours(2);
    let mut listed = store
        .fetch_sessions_for_user("carol", now)
        .await
        .expect("list now");
    listed.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(listed, vec![later.clone(), soon.clone()]);
    assert_eq!(
        store
            .fetch_sessions_for_user("carol", in_two_hours)
            .await
            .expect("list in two hours"),
        vec![later.clone()]
    );
    // The cut-off is `expiresAt > now` to the millisecond: at its very expiry a record is over.
    assert_eq!(
        store
            .fetch_sessions_for_user("carol", soon.expires_at)
            .await
            .expect("list at the expiry"),
        vec![later.clone()]
    );

    assert_eq!(
        store.delete_all_expired_sessions(now).await.expect("purge"),
        0
    );
    assert_eq!(
        store
            .delete_all_expired_sessions(in_two_hours)
            .await
            .expect("purge in two hours"),
        1
    );
    assert_eq!(raw_expiry(&store, "soon").await, None, "purged");
    assert_eq!(
        store.fetch_session("later").await.expect("fetch"),
        Some(later)
    );
}

/// The TTL-native audit: after a mixed workload (saves, both extension calls on live, expired,
/// deleted and unknown records, deletes, a purge) every document in the collection carries a
/// BSON date `expiresAt`, so the TTL monitor will remove each one in the end, and the TTL
/// index on `expiresAt` is in place with `expireAfterSeconds: 0`.
#[tokio::test(flavor = "multi_thread")]
async fn every_document_written_carries_a_date_expiry_under_the_ttl_index() {
    let store = common::fresh_store().await;
    let hours = time::Duration::hours;
    let soon = record("a-soon", "u1", hours(1));
    let extended = record("b-extended", "u1", hours(72));
    let moved = record("c-moved", "u1", hours(72));
    let expired = record("d-expired", "u1", time::Duration::minutes(-5));
    let deleted = record("e-deleted", "u1", hours(72));
    let other_soon = record("f-other", "u2", hours(1));
    let other_later = record("g-other", "u2", hours(72));
    for saved in [
        &soon,
        &extended,
        &moved,
        &expired,
        &deleted,
        &other_soon,
        &other_later,
    ] {
        store.save_session(saved).await.expect("save");
    }

    let now = OffsetDateTime::now_utc();
    let extended_to = now + hours(48);
    let moved_to = now + hours(96);
    store
        .update_record_expiry(&extended, extended_to)
        .await
        .expect("update_record_expiry");
    store
        .update_session_expiry(&moved.id, moved_to)
        .await
        .expect("update_session_expiry");
    // Still inside the purge's window below.
    store
        .update_record_expiry(&soon, now + time::Duration::minutes(90))
        .await
        .expect("update_record_expiry");
    store
        .update_session_expiry(&expired.id, now + hours(24))
        .await
        .expect("update of an expired record");
    store.delete_session(&deleted.id).await.expect("delete");
    store
        .update_record_expiry(&deleted, now + hours(24))
        .await
        .expect("update of a deleted record");
    store
        .update_session_expiry("never-saved", now + hours(24))
        .await
        .expect("update of an unknown record");
    store
        .delete_sessions_for_user("u2")
        .await
        .expect("delete u2");
    let after = record("h-after", "u2", hours(72));
    store.save_session(&after).await.expect("save after");
    let counted = store
        .delete_all_expired_sessions(now + hours(2))
        .await
        .expect("purge");
    // `a-soon` cannot have been taken by the monitor (it is live); `d-expired` may have been.
    assert!((1..=2).contains(&counted), "purge counted {counted}");

    let mut expiries = std::collections::BTreeMap::new();
    let mut cursor = common::raw(&store).find(doc! {}).await.expect("scan");
    while cursor.advance().await.expect("next document") {
        let found: Document = cursor.deserialize_current().expect("document");
        let id = found.get_str("_id").expect("string _id").to_owned();
        match found.get("expiresAt") {
            Some(Bson::DateTime(date)) => {
                expiries.insert(id, Bson::DateTime(*date));
            }
            other => panic!("document {id} has no date expiresAt: {other:?} in {found:?}"),
        }
    }
    let expected: std::collections::BTreeMap<String, Bson> = [
        ("b-extended", bson_date(extended_to)),
        ("c-moved", bson_date(moved_to)),
        ("h-after", bson_date(after.expires_at)),
    ]
    .into_iter()
    .map(|(id, date)| (id.to_owned(), date))
    .collect();
    assert_eq!(expiries, expected, "the documents left and their expiries");

    let (keys, expire_after) = index_by_name(&store, EXPIRES_AT_INDEX).await;
    assert_eq!(keys, doc! { "expiresAt": 1 });
    assert_eq!(expire_after, Some(Duration::ZERO), "the TTL of the index");
}

/// The key pattern and TTL of the index `name`, failing when there is none.
async fn index_by_name(store: &MongoStore, name: &str) -> (Document, Option<Duration>) {
    let mut cursor = store
        .collection()
        .list_indexes()
        .await
        .expect("list indexes");
    while cursor.advance().await.expect("next index") {
        let model = cursor.deserialize_current().expect("index model");
        let options = model.options.unwrap_or_default();
        if options.name.as_deref() == Some(name) {
            return (model.keys, options.expire_after);
        }
    }
    panic!("no index {name}");
}

/// A collection with a default collation would make the `_id` index and the per-user queries
/// merge twins ("ID"/"id"), so `ensure_indexes` refuses it; `simple` is byte comparison and fine.
#[tokio::test(flavor = "multi_thread")]
async fn ensure_indexes_refuses_a_collection_with_a_default_collation() {
    use narvik_mongo::mongodb::options::{Collation, CollationStrength};
    let database = common::client().await.database(common::TEST_DATABASE);

    let folding = common::fresh_collection_name();
    database
        .create_collection(&folding)
        .collation(
            Collation::builder()
                .locale("en")
                .strength(CollationStrength::Secondary)
                .build(),
        )
        .await
        .expect("create a collated collection");
    let store = MongoStore::new(database.collection::<Document>(&folding));
    match store.ensure_indexes().await {
        Err(Error::InvalidConfiguration(message)) => {
            assert!(message.contains("collation"), "{message}")
        }
        other => panic!("expected InvalidConfiguration, got {other:?}"),
    }

    let simple = common::fresh_collection_name();
    database
        .create_collection(&simple)
        .collation(Collation::builder().locale("simple").build())
        .await
        .expect("create a simple-collation collection");
    MongoStore::new(database.collection::<Document>(&simple))
        .ensure_indexes()
        .await
        .expect("simple collation is byte comparison");
}

/// Values at the edges come back bit for bit through the server, each stored as the BSON type
/// that holds it: integers past 2^53 and at the i64 extremes as `Int64`, integers past
/// `i64::MAX` as `Decimal128` (BSON has no unsigned 64-bit type), floats as `Double` with every
/// bit; NUL in ids and in data strings as plain BSON string bytes.
#[tokio::test(flavor = "multi_thread")]
async fn edge_values_keep_their_bits_and_bson_types() {
    let store = common::fresh_store().await;
    let two_53_plus_1 = (1_i64 << 53) + 1;
    let integers = [
        two_53_plus_1,
        -two_53_plus_1,
        i64::MAX - 1,
        i64::MIN + 1,
        i64::MAX,
        i64::MIN,
    ];
    let unsigned = [u64::MAX, u64::MAX - 1, 1_u64 << 63];
    let floats = [
        0.1 + 0.2,
        1.0 / 3.0,
        f64::MAX,
        f64::MIN_POSITIVE,
        5e-324,
        2.225_073_858_507_201_4e-308,
        9_007_199_254_740_993.0,
        1.000_000_000_000_000_2,
        -0.0,
    ];
    let texts = ["a\0b", "\u{1}\u{1f}\u{7f}", "\u{85}\u{2028}", "\r", "\0"];
    let saved = SessionRecord {
        id: "x\0y".to_owned(),
        user_id: "a\0b".to_owned(),
        data: json!({
            "integers": integers,
            "unsigned": unsigned,
            "floats": floats,
            "texts": texts,
        })
        .into(),
        ..record("unused", "unused", time::Duration::hours(1))
    };
    store.save_session(&saved).await.expect("save");
    // Near twins of both ids, each its own record.
    let twins = [("x", "a"), ("xy", "ab"), ("x\0", "a\0")].map(|(id, user)| SessionRecord {
        data: json!({ "twin": id }).into(),
        ..record(id, user, time::Duration::hours(1))
    });
    for twin in &twins {
        store.save_session(twin).await.expect("save twin");
    }

    let fetched = store
        .fetch_session("x\0y")
        .await
        .expect("fetch")
        .expect("stored");
    assert_eq!(fetched, saved);
    let data = fetched.data.to_value().expect("JSON").into_owned();
    for (index, expected) in integers.iter().enumerate() {
        assert_eq!(data["integers"][index].as_i64(), Some(*expected));
    }
    for (index, expected) in unsigned.iter().enumerate() {
        assert_eq!(data["unsigned"][index].as_u64(), Some(*expected));
    }
    for (index, expected) in floats.iter().enumerate() {
        let back = data["floats"][index].as_f64().expect("a float");
        assert_eq!(back.to_bits(), expected.to_bits(), "{expected:e}");
    }
    for (index, expected) in texts.iter().enumerate() {
        assert_eq!(data["texts"][index].as_str(), Some(*expected));
    }

    let stored = common::raw(&store)
        .find_one(doc! { "_id": "x\0y" })
        .await
        .expect("raw find")
        .expect("stored");
    assert_eq!(stored.get_str("userId"), Ok("a\0b"));
    let stored_data = stored.get_document("data").expect("data");
    let kinds = |name: &str| -> Vec<_> {
        stored_data
            .get_array(name)
            .expect(name)
            .iter()
            .map(Bson::element_type)
            .collect()
    };
    use narvik_mongo::mongodb::bson::spec::ElementType;
    assert_eq!(kinds("integers"), vec![ElementType::Int64; integers.len()]);
    assert_eq!(
        kinds("unsigned"),
        vec![ElementType::Decimal128; unsigned.len()]
    );
    assert_eq!(kinds("floats"), vec![ElementType::Double; floats.len()]);

    // The NUL does not truncate an id anywhere: each twin is found, listed and deleted alone.
    for twin in &twins {
        assert_eq!(
            store
                .fetch_session(&twin.id)
                .await
                .expect("fetch twin")
                .as_ref(),
            Some(twin)
        );
    }
    let now = OffsetDateTime::now_utc();
    assert_eq!(
        store
            .fetch_sessions_for_user("a\0b", now)
            .await
            .expect("list"),
        vec![saved]
    );
    store
        .delete_sessions_for_user("a\0b")
        .await
        .expect("delete user");
    assert_eq!(store.fetch_session("x\0y").await.expect("fetch"), None);
    for twin in &twins {
        assert_eq!(
            store
                .fetch_sessions_for_user(&twin.user_id, now)
                .await
                .expect("list twin"),
            vec![twin.clone()]
        );
    }
}

/// A NUL inside a data key cannot be a BSON key (a C string): the save fails with
/// `InvalidData` before anything is sent, at any depth, and nothing is stored.
#[tokio::test(flavor = "multi_thread")]
async fn nul_in_a_data_key_is_invalid_data_and_stores_nothing() {
    let store = common::fresh_store().await;
    for (id, data) in [
        ("top", json!({ "a\0b": 1 })),
        ("deep", json!({ "list": [{ "ok": { "\0": true } }] })),
    ] {
        let refused = SessionRecord {
            data: data.into(),
            ..record(id, "nul-key", time::Duration::hours(1))
        };
        match store.save_session(&refused).await {
            Err(Error::InvalidData(message)) => assert!(message.contains("NUL"), "{message}"),
            other => panic!("{id}: expected InvalidData, got {other:?}"),
        }
        assert_eq!(store.fetch_session(id).await.expect("fetch"), None);
    }
    assert_eq!(
        common::raw(&store)
            .count_documents(doc! {})
            .await
            .expect("count"),
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_id_is_typed_and_keeps_the_original() {
    let store = common::fresh_store().await;
    let original = record("dup", "dave", time::Duration::hours(1));
    store.save_session(&original).await.expect("save");
    let other = SessionRecord {
        user_id: "mallory".into(),
        ..original.clone()
    };
    assert!(matches!(
        store.save_session(&other).await,
        Err(Error::DuplicateId)
    ));
    assert_eq!(
        store.fetch_session("dup").await.expect("fetch"),
        Some(original)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn data_beyond_the_16_mib_document_limit_is_invalid_data() {
    let store = common::fresh_store().await;
    let huge = SessionRecord {
        data: json!("x".repeat(17 << 20)).into(),
        ..record("huge", "frank", time::Duration::hours(1))
    };
    match store.save_session(&huge).await {
        Err(Error::InvalidData(message)) => assert!(message.contains("16777216"), "{message}"),
        other => panic!("expected InvalidData, got {other:?}"),
    }
    assert_eq!(store.fetch_session("huge").await.expect("fetch"), None);
}

/// A data update whose resulting document would pass the 16 MiB limit is `InvalidData`, as a
/// save of it is, and the stored record is unchanged: data far beyond the limit (the update
/// itself is larger than a document may be), data that fits in the update but not with the
/// rest of the document, and (the server's refusal, mapped by its code) data that fits with
/// the fields the store writes but not with a foreign field another program added.
#[tokio::test(flavor = "multi_thread")]
async fn a_data_update_beyond_the_16_mib_document_limit_is_invalid_data() {
    let store = common::fresh_store().await;
    let saved = SessionRecord {
        data: json!({ "small": true }).into(),
        ..record("grows", "grace", time::Duration::hours(1))
    };
    store.save_session(&saved).await.expect("save");
    const LIMIT: usize = 16 * 1024 * 1024;
    // A top-level string of `len` bytes makes a `$set` of `len` + 37 bytes (frame, `data` and
    // `dataVersion` elements) and a document of `len` + 108 bytes here (with `_id`, `userId`
    // and the two dates): `LIMIT - 60` fits in the update but not in the document.
    for len in [17 << 20, LIMIT - 60] {
        let data = json!("x".repeat(len)).into();
        match store
            .update_session_data(&saved, &data, OffsetDateTime::now_utc())
            .await
        {
            Err(Error::InvalidData(message)) => {
                assert!(message.contains("16777216"), "{len}: {message}")
            }
            other => panic!("{len}: expected InvalidData, got {other:?}"),
        }
        assert_eq!(
            store.fetch_session("grows").await.expect("fetch"),
            Some(saved.clone()),
            "{len}: the stored record changed"
        );
    }

    // The store cannot see a field it does not write: the server refuses the grown document,
    // and its code maps to InvalidData as well.
    let foreign = record("foreign", "grace", time::Duration::hours(1));
    store.save_session(&foreign).await.expect("save");
    common::raw(&store)
        .update_one(
            doc! { "_id": "foreign" },
            doc! { "$set": { "note": "z".repeat(4096) } },
        )
        .await
        .expect("add a foreign field");
    let fetched = store
        .fetch_session("foreign")
        .await
        .expect("fetch")
        .expect("stored");
    assert_eq!(fetched, foreign, "a foreign field is ignored");
    match store
        .update_session_data(
            &fetched,
            &json!("x".repeat(LIMIT - 1024)).into(),
            OffsetDateTime::now_utc(),
        )
        .await
    {
        Err(Error::InvalidData(message)) => assert!(
            message.contains("server refused") && message.contains("16777216"),
            "{message}"
        ),
        other => panic!("expected InvalidData from the server, got {other:?}"),
    }
    assert_eq!(
        store.fetch_session("foreign").await.expect("fetch"),
        Some(foreign)
    );

    // Data just inside the limit is stored, and the version moves on.
    let fitting = json!("y".repeat(LIMIT - 1024));
    assert!(store
        .update_session_data(&saved, &fitting.clone().into(), OffsetDateTime::now_utc())
        .await
        .expect("an update that fits"));
    let updated = store
        .fetch_session("grows")
        .await
        .expect("fetch")
        .expect("stored");
    assert_eq!(updated.data_version, 1);
    assert_eq!(updated.data.to_value().expect("JSON").into_owned(), fitting);
}

/// A document written before `lifetimeMs` and `dataVersion` existed (the old shape, inserted
/// here with the raw driver) reads as no lifetime of its own and version 0, takes a data update
/// at version 0 (which gives it `dataVersion: 1`), and is listed for its user throughout.
#[tokio::test(flavor = "multi_thread")]
async fn a_document_of_the_old_shape_reads_updates_and_lists() {
    let store = common::fresh_store().await;
    // Whole milliseconds, as BSON dates hold them.
    let now = truncate_to_millis(OffsetDateTime::now_utc());
    let old = SessionRecord {
        id: "old-shape".to_owned(),
        user_id: "heidi".to_owned(),
        expires_at: now + time::Duration::hours(2),
        created_at: now - time::Duration::minutes(3),
        data: json!({ "role": "admin", "n": 1 }).into(),
        lifetime: None,
        data_version: 0,
    };
    common::raw(&store)
        .insert_one(doc! {
            "_id": &old.id,
            "userId": &old.user_id,
            "expiresAt": bson_date(old.expires_at),
            "createdAt": bson_date(old.created_at),
            "data": { "role": "admin", "n": 1_i64 },
        })
        .await
        .expect("insert an old document");

    // The filter names the user too: a record of the same id for another user matches nothing.
    let stranger = SessionRecord {
        user_id: "mallory".to_owned(),
        ..old.clone()
    };
    assert!(!store
        .update_session_data(&stranger, &json!({}).into(), OffsetDateTime::now_utc())
        .await
        .expect("an update for another user"));

    narvik_conformance::upgrade::assert_record_from_before_lifetimes_upgrades(&store, &old).await;
    let stored = common::raw(&store)
        .find_one(doc! { "_id": "old-shape" })
        .await
        .expect("raw find")
        .expect("stored");
    assert_eq!(stored.get("dataVersion"), Some(&Bson::Int64(1)));
    assert_eq!(stored.get("lifetimeMs"), None, "no lifetime is written");
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_server_is_unavailable_with_the_cause() {
    // A port nothing listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let store = MongoStore::connect(
        &format!("mongodb://127.0.0.1:{port}/?serverSelectionTimeoutMS=300&connectTimeoutMS=300"),
        &MongoStoreConfig::default(),
    )
    .await
    .expect("the driver connects lazily");

    let started = Instant::now();
    let error = store
        .fetch_session("anything")
        .await
        .expect_err("nothing listens there");
    assert!(
        matches!(&error, Error::Unavailable { source } if !source.to_string().is_empty()),
        "{error:?}"
    );
    // The URI's serverSelectionTimeoutMS wins over narvik's default of 2 s.
    assert_eq!(deadline::bound_hit(&error), Some(Bound::ServerSelection));
    assert_eq!(
        error.to_string(),
        "the session store is unavailable: narvik-mongo fetch_session: no answer within 300ms \
         (server selection timeout)"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(
        store
            .save_session(&record("x", "y", time::Duration::hours(1)))
            .await,
        Err(Error::Unavailable { .. })
    ));
    assert!(matches!(
        store.ensure_indexes().await,
        Err(Error::Unavailable { .. })
    ));
}

#[tokio::test]
async fn malformed_uri_and_names_are_invalid_configuration() {
    assert!(matches!(
        MongoStore::connect("postgres://nope", &MongoStoreConfig::default()).await,
        Err(Error::InvalidConfiguration(_))
    ));
    assert!(matches!(
        MongoStore::connect(
            "mongodb://127.0.0.1:1",
            &MongoStoreConfig::default().collection("")
        )
        .await,
        Err(Error::InvalidConfiguration(_))
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_uses_the_uri_database_and_configured_collection() {
    let url = common::server_url();
    let collection = common::fresh_collection_name();
    // Put the test database into the URL's path, keeping its hosts and options.
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url.as_str(), String::new()),
    };
    let hosts_end = base
        .find("://")
        .and_then(|scheme| base[scheme + 3..].find('/').map(|slash| scheme + 3 + slash))
        .unwrap_or(base.len());
    let base = &base[..hosts_end];
    let store = MongoStore::connect(
        &format!("{base}/{}{query}", common::TEST_DATABASE),
        &MongoStoreConfig::default()
            .collection(collection.clone())
            .call_timeout(common::SHARED_SERVER_CALL_TIMEOUT),
    )
    .await
    .expect("connect");
    let namespace = store.collection().namespace();
    assert_eq!(namespace.db, common::TEST_DATABASE);
    assert_eq!(namespace.coll, collection);
    store
        .save_session(&record("via-uri", "erin", time::Duration::hours(1)))
        .await
        .expect("save");
    assert!(store
        .fetch_session("via-uri")
        .await
        .expect("fetch")
        .is_some());
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configured_bound_wins_over_the_uri() {
    let store = MongoStore::connect(
        &format!(
            "mongodb://127.0.0.1:{}/?serverSelectionTimeoutMS=3000",
            free_port()
        ),
        &MongoStoreConfig::default().server_selection_timeout(Duration::from_millis(200)),
    )
    .await
    .expect("the driver connects lazily");
    let error = store
        .delete_session("anything")
        .await
        .expect_err("nothing listens there");
    assert_eq!(
        error.to_string(),
        "the session store is unavailable: narvik-mongo delete_session: no answer within 200ms \
         (server selection timeout)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_call_deadline_bounds_a_call_whatever_the_driver_waits_for() {
    let store = MongoStore::connect(
        &format!(
            "mongodb://127.0.0.1:{}/?serverSelectionTimeoutMS=30000",
            free_port()
        ),
        &MongoStoreConfig::default().call_timeout(Duration::from_millis(300)),
    )
    .await
    .expect("the driver connects lazily");
    let error = store
        .fetch_sessions_for_user("anyone", OffsetDateTime::now_utc())
        .await
        .expect_err("nothing listens there");
    assert_eq!(deadline::bound_hit(&error), Some(Bound::Call));
    assert_eq!(
        error.to_string(),
        "the session store is unavailable: narvik-mongo fetch_sessions_for_user: no answer \
         within 300ms (call deadline)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_of_your_own_keeps_its_timeouts_and_refuses_the_stores() {
    let client = Client::with_options(
        ClientOptions::parse("mongodb://127.0.0.1:1")
            .await
            .expect("a valid URI"),
    )
    .expect("a client");
    for config in [
        MongoStoreConfig::default().server_selection_timeout(Duration::from_secs(1)),
        MongoStoreConfig::default().connect_timeout(Duration::from_secs(1)),
    ] {
        assert!(
            matches!(
                MongoStore::from_client(&client, &config),
                Err(Error::InvalidConfiguration(_))
            ),
            "{config:?}"
        );
    }
    assert!(MongoStore::from_client(&client, &MongoStoreConfig::default()).is_ok());
    assert!(matches!(
        MongoStore::connect(
            "mongodb://127.0.0.1:1",
            &MongoStoreConfig::default().call_timeout(Duration::ZERO)
        )
        .await,
        Err(Error::InvalidConfiguration(_))
    ));
}

fn write_concern(w: Option<Acknowledgment>, journal: Option<bool>) -> WriteConcern {
    let mut write_concern = WriteConcern::default();
    write_concern.w = w;
    write_concern.journal = journal;
    write_concern
}

async fn write_concern_of(uri: &str, config: &MongoStoreConfig) -> Option<WriteConcern> {
    MongoStore::connect(uri, config)
        .await
        .expect("the driver connects lazily")
        .collection()
        .write_concern()
        .cloned()
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_are_journaled_on_a_majority_unless_told_otherwise() {
    let default = MongoStoreConfig::default();
    assert_eq!(
        write_concern_of("mongodb://127.0.0.1:1", &default).await,
        Some(default_write_concern())
    );
    assert_eq!(
        default_write_concern(),
        write_concern(Some(Acknowledgment::Majority), Some(true))
    );
    // What the URI sets is kept; what it leaves unset is narvik's.
    assert_eq!(
        write_concern_of("mongodb://127.0.0.1:1/?w=1", &default).await,
        Some(write_concern(Some(Acknowledgment::Nodes(1)), Some(true)))
    );
    assert_eq!(
        write_concern_of("mongodb://127.0.0.1:1/?journal=false", &default).await,
        Some(write_concern(Some(Acknowledgment::Majority), Some(false)))
    );
    // The configured write concern is used as given, over the URI's.
    let acknowledged = write_concern(Some(Acknowledgment::Nodes(1)), None);
    assert_eq!(
        write_concern_of(
            "mongodb://127.0.0.1:1/?w=majority&journal=true",
            &MongoStoreConfig::default().write_concern(acknowledged.clone())
        )
        .await,
        Some(acknowledged)
    );
    // A client or collection of your own gets the same filling-in.
    let mut options = ClientOptions::parse("mongodb://127.0.0.1:1")
        .await
        .expect("a valid URI");
    options.write_concern = Some(write_concern(Some(Acknowledgment::Nodes(1)), None));
    let client = Client::with_options(options).expect("a client");
    let store = MongoStore::from_client(&client, &default).expect("a store");
    assert_eq!(
        store.collection().write_concern(),
        Some(&write_concern(Some(Acknowledgment::Nodes(1)), Some(true)))
    );
    let plain = Client::with_options(
        ClientOptions::parse("mongodb://127.0.0.1:1")
            .await
            .expect("a valid URI"),
    )
    .expect("a client");
    let store = MongoStore::new(plain.database("app").collection::<Document>("web"));
    assert_eq!(
        store.collection().write_concern(),
        Some(&default_write_concern())
    );
    assert_eq!(store.collection().namespace().coll, "web");
}
