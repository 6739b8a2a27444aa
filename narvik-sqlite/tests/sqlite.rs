//! What the conformance suite cannot see from the trait: migrations, identifiers, pragmas,
//! indexes in the plans, the in-memory database's lifetime, and the faults that apply to a
//! database without a server (a lock held by another writer, a directory that does not exist,
//! a read-only database, a file that is not a database, a closed store).

mod common;

use std::time::{Duration, Instant};

use narvik_conformance::harness::record_expiring_in;
use narvik_core::deadline::{self, Bound};
use narvik_core::{Error, SessionRecord, SessionStore};
use narvik_faults::assert_unavailable_within;
use narvik_sqlite::sqlx::{self, AssertSqlSafe, Connection, SqliteConnection};
use narvik_sqlite::SqliteStore;
use time::OffsetDateTime;

/// Slack over a bound for a busy 2-core machine (the shared fault harness's margin).
const MARGIN: Duration = Duration::from_millis(750);

fn record(id: &str, user_id: &str) -> SessionRecord {
    SessionRecord {
        id: id.to_owned(),
        ..record_expiring_in(
            user_id,
            time::Duration::hours(1),
            serde_json::json!({"n": 1}),
        )
    }
}

fn statement<'a>(store: &'a SqliteStore, call: &str) -> &'a str {
    store
        .statements()
        .into_iter()
        .find(|(name, _)| *name == call)
        .map(|(_, sql)| sql)
        .expect("the store has this call")
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_is_idempotent_and_safe_when_instances_start_at_once() {
    let path = common::fresh_path();
    // Eight "instances" opening and migrating the same new file at the same moment.
    let mut starts = Vec::new();
    for _ in 0..8 {
        let path = path.clone();
        starts.push(tokio::spawn(async move {
            let store = SqliteStore::open(&path).await?;
            store.migrate().await?;
            Ok::<_, Error>(store)
        }));
    }
    let mut stores = Vec::new();
    for start in starts {
        stores.push(
            start
                .await
                .expect("task")
                .expect("every concurrent start succeeds"),
        );
    }
    stores[0].migrate().await.expect("and once more, later");
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM narvik_sessions_migrations")
        .fetch_one(stores[0].read_pool())
        .await
        .expect("bookkeeping table");
    assert_eq!(applied, 2, "migrations 1 and 2 recorded exactly once each");
    stores[3]
        .save_session(&record("a", "u"))
        .await
        .expect("the migrated table takes records");
    assert!(stores[5].fetch_session("a").await.expect("fetch").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn configured_names_keep_their_case_and_get_their_indexes() {
    let opened = common::fresh_file_store().await;
    let store = SqliteStore::builder(opened.read_pool().clone())
        .write_pool(opened.write_pool().clone())
        .table("Sessions_Of_App")
        .build()
        .expect("valid");
    store.migrate().await.expect("migrate");
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_schema WHERE name LIKE 'Sessions_Of_App%' ORDER BY name",
    )
    .fetch_all(store.read_pool())
    .await
    .expect("catalog");
    assert_eq!(
        names,
        [
            "Sessions_Of_App",
            "Sessions_Of_App_expires_at_idx",
            "Sessions_Of_App_migrations",
            "Sessions_Of_App_user_id_idx"
        ]
    );
    store.save_session(&record("a", "u")).await.expect("save");
    assert!(store.fetch_session("a").await.expect("fetch").is_some());
    assert!(
        opened.fetch_session("a").await.expect("fetch").is_none(),
        "the default table is another table"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn names_that_are_not_plain_identifiers_never_reach_sql() {
    let store = common::fresh_memory_store().await;
    for table in [
        "sessions; DROP TABLE x",
        "a\"b",
        "1a",
        "",
        "sqlite_x",
        "a b",
    ] {
        let built = SqliteStore::builder(store.read_pool().clone())
            .table(table)
            .build();
        assert!(
            matches!(built, Err(Error::InvalidConfiguration(_))),
            "{table:?}: {built:?}"
        );
    }
    let zero = SqliteStore::builder(store.read_pool().clone())
        .call_timeout(Duration::ZERO)
        .build();
    assert!(matches!(zero, Err(Error::InvalidConfiguration(_))));
}

#[tokio::test(flavor = "multi_thread")]
async fn open_sets_wal_busy_timeout_and_full_sync_on_every_connection() {
    let store = common::fresh_file_store().await;
    for pool in [store.read_pool(), store.write_pool()] {
        let mut connection = pool.acquire().await.expect("connection");
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut *connection)
            .await
            .expect("journal_mode");
        assert_eq!(mode, "wal");
        let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
            .fetch_one(&mut *connection)
            .await
            .expect("busy_timeout");
        assert_eq!(busy, 4_000);
        assert!(Duration::from_millis(busy as u64) < store.call_timeout());
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut *connection)
            .await
            .expect("synchronous");
        assert_eq!(synchronous, 2, "FULL");
    }
    assert_eq!(store.write_pool().options().get_max_connections(), 1);
    assert_eq!(store.acquire_timeout(), Duration::from_secs(2));
    assert_eq!(store.call_timeout(), Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread")]
async fn per_user_calls_and_the_purge_use_their_indexes() {
    let store = common::fresh_file_store().await;
    for (call, index) in [
        ("fetch_session", "sqlite_autoindex_narvik_sessions_1"),
        (
            "update_session_expiry",
            "sqlite_autoindex_narvik_sessions_1",
        ),
        ("delete_session", "sqlite_autoindex_narvik_sessions_1"),
        ("fetch_sessions_for_user", "narvik_sessions_user_id_idx"),
        ("delete_sessions_for_user", "narvik_sessions_user_id_idx"),
        (
            "delete_all_expired_sessions",
            "narvik_sessions_expires_at_idx",
        ),
    ] {
        let plan: Vec<String> = sqlx::query(AssertSqlSafe(format!(
            "EXPLAIN QUERY PLAN {}",
            statement(&store, call)
        )))
        .bind("x")
        .bind(1_i64)
        .bind(2_i64)
        .fetch_all(store.read_pool())
        .await
        .expect("plan")
        .iter()
        .map(|row| sqlx::Row::get::<String, _>(row, "detail"))
        .collect();
        let plan = plan.join("; ");
        assert!(plan.contains(index), "{call}: {plan}");
        assert!(
            !plan.contains("SCAN narvik_sessions"),
            "{call} scans: {plan}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn data_is_stored_as_the_json_text_it_was_given() {
    let store = common::fresh_file_store().await;
    let data = serde_json::json!({"f": 0.1 + 0.2, "big": 1e16, "u": u64::MAX, "neg0": -0.0, "s": "a\u{0}\u{2028}"});
    let saved = SessionRecord {
        id: "id".into(),
        ..record_expiring_in("u", time::Duration::hours(1), data.clone())
    };
    store.save_session(&saved).await.expect("save");
    let stored: String = sqlx::query_scalar("SELECT data FROM narvik_sessions WHERE id = 'id'")
        .fetch_one(store.read_pool())
        .await
        .expect("row");
    assert_eq!(stored, serde_json::to_string(&data).expect("json"));
    let fetched = store
        .fetch_session("id")
        .await
        .expect("fetch")
        .expect("row");
    let back: serde_json::Value = fetched.data.decode().expect("decodes");
    assert_eq!(
        back["neg0"].as_f64().map(f64::to_bits),
        Some((-0.0_f64).to_bits())
    );
    assert!(back["big"].is_f64());
    assert_eq!(back, data);
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_that_do_not_decode_are_corrupt_records() {
    let store = common::fresh_file_store().await;
    // A time outside what OffsetDateTime holds; STRICT refuses a wrong type outright.
    sqlx::query(
        "INSERT INTO narvik_sessions (id, user_id, expires_at, created_at, data) \
         VALUES ('far', 'u', 9223372036854775807, 0, '{}')",
    )
    .execute(store.write_pool())
    .await
    .expect("raw insert");
    let error = store.fetch_session("far").await.expect_err("corrupt");
    assert!(matches!(error, Error::CorruptRecord { .. }), "{error:?}");
    let wrong_type = sqlx::query(
        "INSERT INTO narvik_sessions (id, user_id, expires_at, created_at, data) \
         VALUES ('t', 'u', 'tomorrow', 0, '{}')",
    )
    .execute(store.write_pool())
    .await;
    assert!(
        wrong_type.is_err(),
        "STRICT refuses text in an INTEGER column"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_in_memory_database_is_private_and_outlives_its_pool_connection() {
    let a = common::fresh_memory_store().await;
    let b = common::fresh_memory_store().await;
    a.save_session(&record("x", "u")).await.expect("save");
    assert!(
        b.fetch_session("x").await.expect("fetch").is_none(),
        "isolated"
    );
    // Close the pool's only connection: the pool opens another, and the database is still
    // there, because the store holds a connection of its own to it.
    let connection = a.write_pool().acquire().await.expect("connection");
    connection.close().await.expect("close");
    assert!(a.fetch_session("x").await.expect("fetch").is_some());
    let listed = a
        .fetch_sessions_for_user("u", time::OffsetDateTime::now_utc())
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    // `open(":memory:")` is the same thing, never a private database per pooled connection.
    let spec = SqliteStore::open(":memory:").await.expect("open");
    spec.migrate().await.expect("migrate");
    spec.save_session(&record("y", "u")).await.expect("save");
    assert!(spec.fetch_session("y").await.expect("fetch").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_locked_by_another_writer_is_unavailable_within_the_busy_timeout() {
    let store = common::fresh_file_store().await;
    store
        .save_session(&record("kept", "u"))
        .await
        .expect("save");
    let path = common::fresh_path(); // unused; keeps the harness directory alive
    drop(path);
    // Another process's writer, as far as SQLite can tell: a connection of its own holding
    // the write lock.
    let file = store_file(&store).await;
    let mut other = SqliteConnection::connect(&format!("sqlite://{}", file.display()))
        .await
        .expect("second connection");
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .expect("take the write lock");

    let started = Instant::now();
    let took = assert_unavailable_within(
        "save while another writer holds the lock",
        SqliteStore::DEFAULT_BUSY_TIMEOUT + MARGIN,
        store.save_session(&record("new", "u")),
    )
    .await;
    assert!(
        took >= SqliteStore::DEFAULT_BUSY_TIMEOUT - Duration::from_millis(100),
        "gave up after {took:?}, before the busy_timeout"
    );
    let error = store
        .delete_session("kept")
        .await
        .expect_err("still locked");
    assert!(
        error.to_string().contains("narvik-sqlite delete_session"),
        "{error}"
    );
    assert!(error.to_string().contains("locked"), "{error}");
    // Readers do not wait for the writer in WAL mode.
    let read_started = Instant::now();
    assert!(store.fetch_session("kept").await.expect("read").is_some());
    assert!(read_started.elapsed() < Duration::from_secs(1));

    sqlx::raw_sql("ROLLBACK")
        .execute(&mut other)
        .await
        .expect("release the lock");
    let released = Instant::now();
    store
        .save_session(&record("new", "u"))
        .await
        .expect("writes succeed once the lock is released");
    println!(
        "fault figures: locked database: save failed after {took:?}; first save after release \
         took {:?} (test ran {:?})",
        released.elapsed(),
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_call_deadline_cuts_a_wait_the_busy_timeout_would_allow() {
    let opened = common::fresh_file_store().await;
    let store = SqliteStore::builder(opened.read_pool().clone())
        .write_pool(opened.write_pool().clone())
        .call_timeout(Duration::from_millis(300))
        .build()
        .expect("valid");
    let file = store_file(&store).await;
    let mut other = SqliteConnection::connect(&format!("sqlite://{}", file.display()))
        .await
        .expect("second connection");
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .expect("take the write lock");
    let took = assert_unavailable_within(
        "save under a 300 ms call deadline",
        Duration::from_millis(300) + MARGIN,
        store.save_session(&record("a", "u")),
    )
    .await;
    let error = store
        .save_session(&record("b", "u"))
        .await
        .expect_err("locked");
    assert_eq!(deadline::bound_hit(&error), Some(Bound::Call), "{error}");
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut other)
        .await
        .expect("release");
    // The writer connection the deadline abandoned finishes its wait and serves again.
    let recovered = Instant::now();
    loop {
        match store.save_session(&record("c", "u")).await {
            Ok(()) => break,
            Err(error) if recovered.elapsed() < SqliteStore::DEFAULT_BUSY_TIMEOUT + MARGIN => {
                let _ = error;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => panic!("not recovered: {error}"),
        }
    }
    println!(
        "fault figures: call deadline 300 ms: failed after {took:?}; recovered {:?} after release",
        recovered.elapsed()
    );
}

async fn store_file(store: &SqliteStore) -> std::path::PathBuf {
    let file: String =
        sqlx::query_scalar("SELECT file FROM pragma_database_list WHERE name = 'main'")
            .fetch_one(store.read_pool())
            .await
            .expect("database list");
    file.into()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_directory_is_a_clear_error_at_open() {
    let missing = common::fresh_path()
        .with_file_name("no-such-directory")
        .join("s.db");
    let started = Instant::now();
    let error = SqliteStore::open(&missing).await.expect_err("cannot open");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(error, Error::Unavailable { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "the session store is unavailable: narvik-sqlite connect: cannot open the database \
         file (does its directory exist, is it writable?)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_database_is_a_clear_error_on_writes_only() {
    let path = common::fresh_path();
    let writable = SqliteStore::open(&path).await.expect("open");
    writable.migrate().await.expect("migrate");
    writable
        .save_session(&record("kept", "u"))
        .await
        .expect("save");
    // A read-only mount or file answers the same result code as a connection opened read-only.
    let pool = SqliteStore::pool_options()
        .connect_with(SqliteStore::connect_options(&path).read_only(true))
        .await
        .expect("read-only pool");
    let store = SqliteStore::new(pool);
    assert!(store
        .fetch_session("kept")
        .await
        .expect("reads work")
        .is_some());
    let error = store
        .save_session(&record("new", "u"))
        .await
        .expect_err("read-only");
    assert!(matches!(error, Error::Unavailable { .. }), "{error:?}");
    assert!(error.to_string().contains("read-only"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_that_is_not_a_database_is_a_clear_error() {
    let path = common::fresh_path();
    std::fs::write(&path, vec![b'x'; 8192]).expect("write junk");
    let error = match SqliteStore::open(&path).await {
        Err(error) => error,
        Ok(store) => store.migrate().await.expect_err("not a database"),
    };
    assert!(matches!(error, Error::Unavailable { .. }), "{error:?}");
    assert!(error.to_string().contains("not a database"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_store_is_unavailable_not_hung() {
    let store = common::fresh_file_store().await;
    store.close().await;
    let took = assert_unavailable_within(
        "fetch on a closed store",
        Duration::from_millis(100) + MARGIN,
        store.fetch_session("x"),
    )
    .await;
    let error = store
        .save_session(&record("x", "u"))
        .await
        .expect_err("closed");
    assert!(
        error.to_string().contains("closed"),
        "{error} after {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_in_a_file_survive_reopening_it() {
    let path = common::fresh_path();
    let first = SqliteStore::open(&path).await.expect("open");
    first.migrate().await.expect("migrate");
    first
        .save_session(&record("kept", "u"))
        .await
        .expect("save");
    first
        .save_session(&record("gone", "u"))
        .await
        .expect("save");
    first.delete_session("gone").await.expect("delete");
    first.close().await;
    let second = SqliteStore::open(&path).await.expect("reopen");
    second.migrate().await.expect("migrate again is a no-op");
    assert!(second.fetch_session("kept").await.expect("fetch").is_some());
    assert!(second.fetch_session("gone").await.expect("fetch").is_none());
}

/// Milliseconds since the Unix epoch, as the store keeps its times.
fn epoch_millis(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).expect("a time of this century")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_row_from_before_migration_0002_reads_as_default_lifetime_and_version_0() {
    // Migration 1's checksum as the store records it, from a database it migrated itself.
    let scratch = common::fresh_memory_store().await;
    let (description, checksum): (String, Vec<u8>) = sqlx::query_as(
        "SELECT description, checksum FROM narvik_sessions_migrations WHERE version = 1",
    )
    .fetch_one(scratch.read_pool())
    .await
    .expect("migration 1 recorded");
    scratch.close().await;

    // The database as narvik-sqlite left it with only migration 1: its table and indexes, and
    // its bookkeeping row.
    let path = common::fresh_path();
    let mut old = SqliteConnection::connect_with(&SqliteStore::connect_options(&path))
        .await
        .expect("create the old database");
    let migration_1 = include_str!("../migrations/0001_create_sessions.sql")
        .replace("{{table}}", "\"narvik_sessions\"")
        .replace("{{user_id_index}}", "\"narvik_sessions_user_id_idx\"")
        .replace("{{expires_at_index}}", "\"narvik_sessions_expires_at_idx\"");
    sqlx::raw_sql(AssertSqlSafe(migration_1))
        .execute(&mut old)
        .await
        .expect("migration 1 by hand");
    sqlx::raw_sql(
        "CREATE TABLE narvik_sessions_migrations (
            version     INTEGER NOT NULL PRIMARY KEY,
            description TEXT    NOT NULL,
            checksum    BLOB    NOT NULL,
            applied_at  INTEGER NOT NULL
        ) STRICT",
    )
    .execute(&mut old)
    .await
    .expect("bookkeeping");
    sqlx::query(
        "INSERT INTO narvik_sessions_migrations (version, description, checksum, applied_at) \
         VALUES (1, ?1, ?2, ?3)",
    )
    .bind(&description)
    .bind(&checksum)
    .bind(epoch_millis(OffsetDateTime::now_utc()))
    .execute(&mut old)
    .await
    .expect("record migration 1");
    // A session written the old way: the five columns of migration 1, times in milliseconds,
    // the data as the JSON text the application gave.
    let user = narvik_conformance::harness::random_user_id("old-row");
    let id = narvik_conformance::harness::random_session_id();
    let created_at = narvik_conformance::harness::now_ms() - time::Duration::minutes(5);
    let expires_at = created_at + time::Duration::hours(1);
    let old_text = r#"{"n": 1, "cart": [1, 2.5, "x"]}"#;
    sqlx::query(
        "INSERT INTO narvik_sessions (id, user_id, expires_at, created_at, data) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .bind(&id)
    .bind(&user)
    .bind(epoch_millis(expires_at))
    .bind(epoch_millis(created_at))
    .bind(old_text)
    .execute(&mut old)
    .await
    .expect("old row");
    old.close().await.expect("close the old database");

    // The new store brings the file up to date and reads the old row with nothing lost.
    let store = SqliteStore::open(&path).await.expect("open");
    store.migrate().await.expect("migrate from version 1");
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM narvik_sessions_migrations ORDER BY version")
            .fetch_all(store.read_pool())
            .await
            .expect("versions");
    assert_eq!(versions, [1, 2], "only migration 2 was applied");
    let fetched = store
        .fetch_session(&id)
        .await
        .expect("fetch")
        .expect("the old row is found");
    let expected = SessionRecord {
        id: id.clone(),
        user_id: user.clone(),
        expires_at,
        created_at,
        data: narvik_core::SessionData::from_json_text(old_text),
        lifetime: None,
        data_version: 0,
    };
    assert_eq!(fetched, expected);
    assert_eq!(
        fetched.data.to_json_text().expect("text"),
        old_text,
        "the data's text is kept byte for byte"
    );

    narvik_conformance::upgrade::assert_record_from_before_lifetimes_upgrades(&store, &expected)
        .await;
}
