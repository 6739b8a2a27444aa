//! The server goes away mid-run and comes back on the same storage: operations fail with the
//! typed unavailable error while it is gone, and the same store recovers with the data intact.
//!
//! The test owns its server: it starts its own instance on its own port and storage path, so
//! stopping it disturbs no other test. The binary is `NARVIK_TEST_MONGO_SERVER_BIN` (set by
//! scripts/servers/mongo.sh to SecantusDB's `secantusd-py`; a `mongod` works too), else the
//! SecantusDB that script installs under `.build/mongo-venv`.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use narvik_conformance::harness::record_expiring_in;
use narvik_core::{Error, SessionRecord, SessionStore};
use narvik_mongo::{MongoStore, MongoStoreConfig};
use serde_json::json;
use time::OffsetDateTime;

const HOW_TO_PROVIDE: &str = "set NARVIK_TEST_MONGO_SERVER_BIN to a `secantusd-py` or `mongod` \
     binary, or run scripts/test.sh (it installs SecantusDB under .build/mongo-venv)";

fn build_dir() -> PathBuf {
    std::env::var_os("NARVIK_BUILD_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.build"))
}

fn server_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("NARVIK_TEST_MONGO_SERVER_BIN") {
        return PathBuf::from(bin);
    }
    let installed = build_dir().join("mongo-venv/bin/secantusd-py");
    if installed.exists() {
        return installed;
    }
    panic!("no MongoDB server binary for the restart test: {HOW_TO_PROVIDE}.");
}

/// A server process this test started; stopped (SIGTERM, then waited for) when dropped.
struct OwnServer {
    child: Option<Child>,
}

impl OwnServer {
    fn start(bin: &Path, port: u16, storage: &Path) -> Self {
        let log = std::fs::File::create(storage.with_extension("log")).expect("server log");
        let mut command = Command::new(bin);
        let is_mongod = bin
            .file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with("mongod"));
        if is_mongod {
            command
                .args([
                    "--bind_ip",
                    "127.0.0.1",
                    "--port",
                    &port.to_string(),
                    "--dbpath",
                ])
                .arg(storage);
        } else {
            // An explicit empty config stops SecantusDB from reading stray config files.
            let config = storage.with_extension("conf");
            std::fs::write(&config, "").expect("empty config");
            command
                .arg("--config")
                .arg(&config)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .arg("--storage-path")
                .arg(storage)
                .args(["--cache-size", "64M"]);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot start {}: {error}; {HOW_TO_PROVIDE}", bin.display())
            });
        let mut server = Self { child: Some(child) };
        server.wait_for_port(port);
        server
    }

    fn wait_for_port(&mut self, port: u16) {
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                return;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("the test server exited before listening on {port}: {status}");
                }
            }
            assert!(
                Instant::now() < deadline,
                "the test server did not listen on {port} in 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Graceful stop, as an operator would do it: SIGTERM, then wait for the exit.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the test server ignored SIGTERM for 30 s");
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn record(id: String, user_id: &str) -> SessionRecord {
    let data = json!({"id": id, "n": [1, 2.5, u64::MAX]});
    SessionRecord {
        id,
        ..record_expiring_in(user_id, time::Duration::hours(1), data)
    }
}

fn assert_unavailable<T: std::fmt::Debug>(call: &str, result: narvik_core::Result<T>) {
    match result {
        Err(Error::Unavailable { source }) => assert!(!source.to_string().is_empty()),
        other => panic!("{call} while the server is down: expected Unavailable, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn server_restart_mid_run_fails_typed_and_recovers_with_data_intact() {
    let bin = server_bin();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let storage = build_dir().join(format!(
        "mongo-restart-{}",
        narvik_conformance::harness::random_suffix()
    ));
    std::fs::create_dir_all(&storage).expect("storage dir");

    let mut server = OwnServer::start(&bin, port, &storage);
    // Short timeouts: while the server is down each call fails in about a second.
    let store = MongoStore::connect(
        &format!("mongodb://127.0.0.1:{port}/?serverSelectionTimeoutMS=1000&connectTimeoutMS=1000"),
        &MongoStoreConfig::default()
            .database(common::TEST_DATABASE)
            .collection("restart"),
    )
    .await
    .expect("connect");
    store.ensure_indexes().await.expect("indexes");

    let before: Vec<SessionRecord> = (0..20)
        .map(|i| {
            record(
                format!("before-{i:02}"),
                if i % 2 == 0 { "ann" } else { "ben" },
            )
        })
        .collect();
    for saved in &before {
        store
            .save_session(saved)
            .await
            .expect("save before the stop");
    }

    // A writer keeps saving while the server goes away: what it saw acknowledged must survive,
    // and everything else must fail typed.
    let stop_writing = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn({
        let store = store.clone();
        let stop_writing = stop_writing.clone();
        async move {
            let (mut acknowledged, mut failures) = (Vec::new(), Vec::new());
            let mut i = 0;
            while !stop_writing.load(Ordering::Relaxed) {
                let saved = record(format!("during-{i:05}"), "cid");
                match store.save_session(&saved).await {
                    Ok(()) => acknowledged.push(saved),
                    Err(error) => failures.push(error),
                }
                i += 1;
            }
            (acknowledged, failures)
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::block_in_place(|| server.stop());

    let down_since = Instant::now();
    assert_unavailable("fetch_session", store.fetch_session("before-00").await);
    assert_unavailable(
        "save_session",
        store.save_session(&record("down".into(), "ann")).await,
    );
    assert_unavailable(
        "update_session_expiry",
        store
            .update_session_expiry("before-00", OffsetDateTime::now_utc())
            .await,
    );
    assert_unavailable("delete_session", store.delete_session("before-01").await);
    assert_unavailable(
        "fetch_sessions_for_user",
        store
            .fetch_sessions_for_user("ann", OffsetDateTime::now_utc())
            .await,
    );
    assert_unavailable(
        "delete_sessions_for_user",
        store.delete_sessions_for_user("ben").await,
    );
    assert_unavailable(
        "delete_all_expired_sessions",
        store
            .delete_all_expired_sessions(OffsetDateTime::now_utc())
            .await,
    );
    let down_for = down_since.elapsed();
    assert!(
        down_for < Duration::from_secs(30),
        "7 failing calls took {down_for:?}"
    );

    stop_writing.store(true, Ordering::Relaxed);
    let (acknowledged, failures) = writer.await.expect("writer task");
    assert!(
        !acknowledged.is_empty(),
        "the writer saved nothing before the stop"
    );
    assert!(
        !failures.is_empty(),
        "the writer never saw the server go away"
    );
    for failure in &failures {
        assert!(
            matches!(failure, Error::Unavailable { .. }),
            "writer saw {failure:?}"
        );
    }

    let mut server = tokio::task::block_in_place(|| OwnServer::start(&bin, port, &storage));

    // The same store, with the same client, recovers on its own once the server is back.
    let recovered_by = Instant::now() + Duration::from_secs(60);
    loop {
        match store.fetch_session("before-00").await {
            Ok(found) => {
                assert_eq!(found.as_ref(), Some(&before[0]));
                break;
            }
            Err(Error::Unavailable { .. }) if Instant::now() < recovered_by => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => panic!("the store did not recover in 60 s: {error:?}"),
        }
    }
    for saved in before.iter().chain(&acknowledged) {
        assert_eq!(
            store
                .fetch_session(&saved.id)
                .await
                .expect("fetch after restart")
                .as_ref(),
            Some(saved),
            "{} was acknowledged before the stop",
            saved.id
        );
    }
    assert_eq!(
        store
            .fetch_sessions_for_user("ann", OffsetDateTime::now_utc())
            .await
            .expect("list")
            .len(),
        10
    );
    assert_eq!(store.fetch_session("down").await.expect("fetch"), None);
    store
        .save_session(&record("after".into(), "ann"))
        .await
        .expect("save after restart");
    store
        .delete_sessions_for_user("ben")
        .await
        .expect("delete after restart");
    assert!(store
        .fetch_sessions_for_user("ben", OffsetDateTime::now_utc())
        .await
        .expect("list")
        .is_empty());

    tokio::task::block_in_place(|| server.stop());
    let _ = std::fs::remove_dir_all(&storage);
    let _ = std::fs::remove_file(storage.with_extension("log"));
    let _ = std::fs::remove_file(storage.with_extension("conf"));
}
