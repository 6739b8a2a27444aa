//! What the conformance suite cannot see from the trait: migrations, the column types, indexes
//! in the plans, batching, values at the edges, the connection settings and errors. (Faults of
//! a whole server, frozen or killed, are in `faults.rs`, against a server of the test's own.)

mod common;

use narvik_conformance::harness::{live_record, random_user_id};
use narvik_core::{Error, SessionRecord, SessionStore};
use narvik_mysql::sqlx::{self, AssertSqlSafe, Row};
use narvik_mysql::MySqlStore;
use serde_json::json;
use time::OffsetDateTime;

fn record(id: &str, user_id: &str, expires_in: time::Duration) -> SessionRecord {
    let mut record = live_record(user_id, json!({"n": 1}));
    record.id = id.to_owned();
    record.expires_at = narvik_conformance::harness::now_ms() + expires_in;
    record
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_is_idempotent_and_safe_when_instances_start_at_once() {
    let table = common::fresh_table();
    let pool = common::pool().await;
    let stores: Vec<MySqlStore> = (0..4)
        .map(|_| {
            MySqlStore::builder(pool.clone())
                .table(&table)
                .build()
                .expect("valid")
        })
        .collect();
    let handles: Vec<_> = stores
        .iter()
        .cloned()
        .map(|store| tokio::spawn(async move { store.migrate().await }))
        .collect();
    for handle in handles {
        handle
            .await
            .expect("migrate task")
            .expect("concurrent migrate");
    }
    stores[0].migrate().await.expect("a second migrate");
    let applied: Vec<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT version FROM `{table}_migrations` ORDER BY version"
    )))
    .fetch_all(&pool)
    .await
    .expect("bookkeeping");
    assert_eq!(applied, [1, 2], "each migration recorded once");
}

#[tokio::test(flavor = "multi_thread")]
async fn ids_compare_bytes_with_no_pad_space_and_no_collation() {
    let store = common::fresh_store().await;
    let user = random_user_id("pad");
    // A `_bin` collation with PAD SPACE (MariaDB, MySQL 5.7) would call these equal.
    let base = narvik_conformance::harness::random_session_id();
    for id in [
        base.clone(),
        format!("{base} "),
        format!("{base}\t"),
        base.to_uppercase(),
    ] {
        store
            .save_session(&record(&id, &user, time::Duration::hours(1)))
            .await
            .unwrap_or_else(|error| panic!("{id:?} is distinct: {error}"));
    }
    for (a, b) in [("u", "u "), ("u", "U"), ("\u{e9}", "e\u{301}")] {
        let a_user = format!("{user}{a}");
        let b_user = format!("{user}{b}");
        store
            .save_session(&live_record(&a_user, json!({})))
            .await
            .expect("save");
        let listed = store
            .fetch_sessions_for_user(&b_user, OffsetDateTime::now_utc())
            .await
            .expect("list");
        assert!(listed.is_empty(), "{b_user:?} sees {a_user:?}'s session");
    }
    let types: Vec<(String, String)> = sqlx::query(
        "SELECT CAST(column_name AS CHAR), CAST(column_type AS CHAR) FROM information_schema.columns \
         WHERE table_schema = DATABASE() AND table_name = ? ORDER BY ordinal_position",
    )
    .bind(store.config().table().as_str())
    .fetch_all(store.pool())
    .await
    .expect("columns")
    .iter()
    // MariaDB shows `bigint(20)`, MySQL 8 `bigint`.
    .map(|row| (row.get(0), row.get::<String, _>(1).replace("bigint(20)", "bigint")))
    .collect();
    assert_eq!(
        types,
        [
            ("id".to_owned(), "varbinary(255)".to_owned()),
            ("user_id".to_owned(), "varbinary(3072)".to_owned()),
            ("expires_at".to_owned(), "datetime(3)".to_owned()),
            ("created_at".to_owned(), "datetime(3)".to_owned()),
            ("data".to_owned(), "longtext".to_owned()),
            ("lifetime_ms".to_owned(), "bigint".to_owned()),
            ("data_version".to_owned(), "bigint".to_owned()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_data_is_kept_as_the_exact_text_written() {
    let store = common::fresh_store().await;
    let mut saved = live_record(&random_user_id("text"), json!(null));
    let text = r#"{"b":1e16,"a":-0.0,"c":18446744073709551615,"d":0.30000000000000004}"#;
    saved.data = narvik_core::SessionData::from_json_text(text);
    store.save_session(&saved).await.expect("save");
    let fetched = store
        .fetch_session(&saved.id)
        .await
        .expect("fetch")
        .expect("found");
    assert_eq!(fetched.data.to_json_text().expect("text"), text);
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_shows_the_per_user_calls_and_the_purge_use_their_indexes() {
    let store = common::fresh_store().await;
    let table = store.config().table().as_str().to_owned();
    // On an empty table (or for an id that is not there) the planner answers "impossible
    // WHERE" without naming an index: give it rows of several users, some expired.
    let mut known = String::new();
    for i in 0..200 {
        let user = if i % 40 == 0 {
            "u".to_owned()
        } else {
            format!("other-{i}")
        };
        let expires = if i % 3 == 0 {
            -time::Duration::hours(1)
        } else {
            time::Duration::hours(1)
        };
        let saved = record(&format!("{i:064x}"), &user, expires);
        store.save_session(&saved).await.expect("save");
        known = saved.id;
    }
    sqlx::query(AssertSqlSafe(format!("ANALYZE TABLE `{table}`")))
        .execute(store.pool())
        .await
        .expect("analyze");
    for (call, key) in [
        ("fetch_session", "PRIMARY"),
        ("fetch_sessions_for_user", "user_id_idx"),
        ("delete_sessions_for_user", "user_id_idx"),
        ("delete_all_expired_sessions", "expires_at_idx"),
    ] {
        let sql = store
            .statements()
            .into_iter()
            .find(|(name, _)| *name == call)
            .map(|(_, sql)| sql.to_owned())
            .expect("statement");
        let id = format!("'{known}'");
        let binds: Vec<&str> = match call {
            "fetch_session" => vec![&id],
            "delete_all_expired_sessions" => vec!["UTC_TIMESTAMP(3)", "100"],
            _ => vec!["'u'", "UTC_TIMESTAMP(3)"],
        };
        let concrete = binds
            .iter()
            .fold(sql.clone(), |sql, bind| sql.replacen('?', bind, 1));
        let rows = sqlx::query(AssertSqlSafe(format!("EXPLAIN {concrete}")))
            .fetch_all(store.pool())
            .await
            .unwrap_or_else(|error| panic!("EXPLAIN {concrete}: {error}"));
        let keys: Vec<Option<String>> = rows
            .iter()
            .map(|row| row.try_get::<Option<String>, _>("key").expect("key column"))
            .collect();
        assert_eq!(
            keys,
            [Some(key.to_owned())],
            "{call} on {table}: {concrete}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_purge_runs_in_bounded_batches_and_counts_them_all() {
    let pool = common::pool().await;
    let store = MySqlStore::builder(pool)
        .table(common::fresh_table())
        .purge_batch_size(7)
        .build()
        .expect("valid");
    store.migrate().await.expect("migrate");
    let user = random_user_id("batch");
    for i in 0..50 {
        let expires = if i < 43 {
            -time::Duration::hours(1)
        } else {
            time::Duration::hours(1)
        };
        let id = format!("{:064x}", i);
        store
            .save_session(&record(&id, &user, expires))
            .await
            .expect("save");
    }
    let purged = store
        .delete_all_expired_sessions(OffsetDateTime::now_utc())
        .await
        .expect("purge");
    assert_eq!(purged, 43);
    let left = store
        .fetch_sessions_for_user(&user, OffsetDateTime::now_utc())
        .await
        .expect("list");
    assert_eq!(left.len(), 7);
}

#[tokio::test(flavor = "multi_thread")]
async fn values_the_table_cannot_hold_are_invalid_data_and_nothing_is_stored() {
    let store = common::fresh_store().await;
    let user = random_user_id("edge");
    let long_id = "i".repeat(MySqlStore::MAX_ID_BYTES + 1);
    let error = store
        .save_session(&record(&long_id, &user, time::Duration::hours(1)))
        .await
        .expect_err("too long an id");
    assert!(matches!(error, Error::InvalidData(_)), "{error:?}");
    assert!(store
        .fetch_session(&long_id)
        .await
        .expect("fetch")
        .is_none());
    let long_user = "u".repeat(MySqlStore::MAX_USER_ID_BYTES + 1);
    let error = store
        .save_session(&live_record(&long_user, json!({})))
        .await
        .expect_err("too long a user id");
    assert!(matches!(error, Error::InvalidData(_)), "{error:?}");
    let mut far = live_record(&user, json!({}));
    far.created_at = time::macros::datetime!(0999-12-31 23:59 UTC);
    let error = store.save_session(&far).await.expect_err("before DATETIME");
    assert!(matches!(error, Error::InvalidData(_)), "{error:?}");
    assert!(store
        .fetch_sessions_for_user(&user, OffsetDateTime::now_utc())
        .await
        .expect("list")
        .is_empty());
    // The longest ids that fit are kept whole.
    let fits = record(
        &"i".repeat(MySqlStore::MAX_ID_BYTES),
        &"u".repeat(3072),
        time::Duration::hours(1),
    );
    store.save_session(&fits).await.expect("fits");
    let back = store
        .fetch_session(&fits.id)
        .await
        .expect("fetch")
        .expect("found");
    assert_eq!((back.id, back.user_id), (fits.id, fits.user_id));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pool_options_bound_lock_waits_below_the_call_deadline() {
    let store = common::fresh_store().await;
    let wait: i64 = sqlx::query_scalar("SELECT CAST(@@SESSION.innodb_lock_wait_timeout AS SIGNED)")
        .fetch_one(store.pool())
        .await
        .expect("variable");
    assert_eq!(wait, i64::from(MySqlStore::DEFAULT_LOCK_WAIT_TIMEOUT_SECS));
    assert!(std::time::Duration::from_secs(wait.unsigned_abs()) < store.call_timeout());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_server_is_unavailable_naming_the_store() {
    let port = narvik_faults::free_port();
    let started = std::time::Instant::now();
    let error = MySqlStore::connect(&format!("mysql://root@127.0.0.1:{port}/test"))
        .await
        .expect_err("nothing listens");
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    assert!(matches!(error, Error::Unavailable { .. }), "{error:?}");
    assert!(
        error.to_string().contains("narvik-mysql connect"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_table_is_unavailable_saying_run_migrate() {
    let store = MySqlStore::builder(common::pool().await)
        .table(common::fresh_table())
        .build()
        .expect("valid");
    let error = store.fetch_session("x").await.expect_err("no table");
    assert!(
        error.to_string().ends_with(
            "narvik-mysql fetch_session: the session table does not exist (run migrate)"
        ),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_row_written_before_migration_2_reads_as_no_lifetime_and_version_0_and_updates() {
    // The schema as narvik-mysql left it with only migration 1: its table, and its bookkeeping
    // row with migration 1's checksum (SHA-256 of its template, as the store records it).
    let table = common::fresh_table();
    let pool = common::pool().await;
    let template = include_str!("../migrations/0001_create_sessions.sql");
    sqlx::raw_sql(AssertSqlSafe(
        template.replace("{{table}}", &format!("`{table}`")),
    ))
    .execute(&pool)
    .await
    .expect("migration 1 by hand");
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE TABLE `{table}_migrations` (
            version     BIGINT       NOT NULL PRIMARY KEY,
            description VARCHAR(255) NOT NULL,
            checksum    VARBINARY(32) NOT NULL,
            applied_at  DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
        ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4"
    )))
    .execute(&pool)
    .await
    .expect("bookkeeping");
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO `{table}_migrations` (version, description, checksum) \
         VALUES (1, 'create sessions', UNHEX(SHA2(?, 256)))"
    )))
    .bind(template)
    .execute(&pool)
    .await
    .expect("record migration 1");
    // A session written the old way: five columns.
    let user = random_user_id("old-row");
    let id = format!("{:064x}", 7);
    let created_at = narvik_conformance::harness::now_ms();
    let expires_at = created_at + time::Duration::hours(1);
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO `{table}` (id, user_id, expires_at, created_at, data) VALUES (?, ?, ?, ?, ?)"
    )))
    .bind(id.as_bytes())
    .bind(user.as_bytes())
    .bind(expires_at)
    .bind(created_at)
    .bind(r#"{"n":1}"#)
    .execute(&pool)
    .await
    .expect("old row");

    // The new store brings the table up to date and reads the old row.
    let store = common::store_in(pool.clone(), &table).await;
    let versions: Vec<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT version FROM `{table}_migrations` ORDER BY version"
    )))
    .fetch_all(&pool)
    .await
    .expect("versions");
    assert_eq!(versions, [1, 2]);
    let old = SessionRecord {
        id,
        user_id: user,
        expires_at,
        created_at,
        data: json!({"n": 1}).into(),
        lifetime: None,
        data_version: 0,
    };
    narvik_conformance::upgrade::assert_record_from_before_lifetimes_upgrades(&store, &old).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stored_lifetimes_and_versions_that_are_not_valid_are_corrupt_records() {
    let store = common::fresh_store().await;
    let table = store.config().table().as_str().to_owned();
    for (n, (lifetime_ms, data_version)) in [(Some(0_i64), 0_i64), (Some(-5), 0), (None, -1)]
        .into_iter()
        .enumerate()
    {
        let saved = record(
            &format!("{:064x}", 100 + n),
            &random_user_id("corrupt"),
            time::Duration::hours(1),
        );
        store.save_session(&saved).await.expect("save");
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE `{table}` SET lifetime_ms = ?, data_version = ? WHERE id = ?"
        )))
        .bind(lifetime_ms)
        .bind(data_version)
        .bind(saved.id.as_bytes())
        .execute(store.pool())
        .await
        .expect("corrupt the row");
        let error = store
            .fetch_session(&saved.id)
            .await
            .expect_err("a corrupt row");
        assert!(matches!(error, Error::CorruptRecord { .. }), "{error:?}");
    }
}
