//! What the conformance suite cannot see: the indexes, the stored document shape, corrupt
//! documents, and errors when the server is not there.

mod common;

use std::time::{Duration, Instant};

use narvik_conformance::harness::record_expiring_in;
use narvik_core::{Error, SessionRecord, SessionStore};
use narvik_mongo::mongodb::bson::{doc, Bson, Document};
use narvik_mongo::{MongoStore, MongoStoreConfig, EXPIRES_AT_INDEX, USER_ID_INDEX};
use serde_json::json;

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
        store.fetch_sessions_for_user("u").await,
        Err(Error::CorruptRecord { .. })
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_record_is_gone_before_the_ttl_monitor_runs() {
    let store = common::fresh_store().await;
    let expired = record("expired-1", "bob", time::Duration::minutes(-5));
    store.save_session(&expired).await.expect("save");

    assert_eq!(store.fetch_session("expired-1").await.expect("fetch"), None);
    assert!(store
        .fetch_sessions_for_user("bob")
        .await
        .expect("list")
        .is_empty());
    // An extension must not revive it: whether the monitor ran yet must not matter.
    store
        .update_session_expiry("expired-1", expired.expires_at + time::Duration::days(1))
        .await
        .expect("update");
    assert_eq!(store.fetch_session("expired-1").await.expect("fetch"), None);
    assert_eq!(store.delete_all_expired_sessions().await.expect("purge"), 1);
    assert_eq!(
        common::raw(&store)
            .count_documents(doc! {})
            .await
            .expect("count"),
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn store_clock_decides_what_is_expired() {
    let clock = std::sync::Arc::new(narvik_core::ManualClock::starting_now());
    let store = common::fresh_store().await.with_clock(clock.clone());
    store
        .save_session(&record("clocked", "carol", time::Duration::hours(1)))
        .await
        .expect("save");
    assert!(store
        .fetch_session("clocked")
        .await
        .expect("fetch")
        .is_some());
    clock.advance(time::Duration::hours(2));
    assert_eq!(store.fetch_session("clocked").await.expect("fetch"), None);
    assert_eq!(store.delete_all_expired_sessions().await.expect("purge"), 1);
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
        &MongoStoreConfig::default().collection(collection.clone()),
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
