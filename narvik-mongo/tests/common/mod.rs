//! The test server and fresh, isolated stores on it.
//!
//! The server is found in this order:
//! 1. `NARVIK_TEST_MONGO_URL` (scripts/test.sh sets it, starting SecantusDB if needed);
//! 2. with `NARVIK_TEST_CONTAINERS=1` and a reachable Docker engine, a reusable testcontainers
//!    `mongo` named `narvik-test-mongo` (kept running between runs; `docker rm -f
//!    narvik-test-mongo` removes it);
//! 3. the local default, `mongodb://127.0.0.1:27017`.
//!
//! If none answers, every test that needs the server panics with how to provide one: a missing
//! server is never a skip.
//!
//! Every store gets its own collection `s_<unix seconds>_<random>` in the database
//! `narvik_test`. The test harness has no teardown, so at start-up each process drops the test
//! collections older than an hour: finished or crashed runs never fill the server, and a run
//! going on in parallel is not disturbed.

#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod own_server;

use std::sync::{mpsc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use narvik_conformance::harness::random_suffix;
use narvik_mongo::mongodb::bson::{doc, Document};
use narvik_mongo::mongodb::options::ClientOptions;
use narvik_mongo::mongodb::{Client, Collection};
use narvik_mongo::{MongoStore, MongoStoreConfig};

/// The database every test collection lives in.
pub const TEST_DATABASE: &str = "narvik_test";

/// Where a MongoDB usually listens.
pub const LOCAL_DEFAULT_URL: &str = "mongodb://127.0.0.1:27017";

/// Test collections older than this belong to runs that are over.
const STALE_AFTER: Duration = Duration::from_secs(3600);

const HOW_TO_PROVIDE: &str = "set NARVIK_TEST_MONGO_URL=mongodb://HOST:PORT, run scripts/test.sh \
     (it installs and starts SecantusDB, a MongoDB wire-protocol server, under .build/), or set \
     NARVIK_TEST_CONTAINERS=1 with a reachable Docker engine";

/// The URL of the test server (resolved once per test process).
pub fn server_url() -> String {
    static URL: OnceLock<Result<String, String>> = OnceLock::new();
    match URL.get_or_init(resolve_on_own_thread) {
        Ok(url) => url.clone(),
        Err(message) => {
            panic!("no MongoDB for the tests: {message}. To provide one, {HOW_TO_PROVIDE}.")
        }
    }
}

/// A client for the test server, on the calling test's runtime (a client's background tasks
/// die with the runtime that started them, so clients are never shared between tests).
pub async fn client() -> Client {
    client_for(&server_url()).await
}

/// The server a new store's collection goes to: one of `NARVIK_TEST_MONGO_URLS`, picked at
/// random, when scripts/test.sh started several (SecantusDB serves on one core, so the suite's
/// big cases spread over instances finish sooner); else the test server.
pub fn fresh_store_url() -> String {
    // The harness resolves (and cleans) the main server once either way.
    let main = server_url();
    let urls: Vec<String> = std::env::var("NARVIK_TEST_MONGO_URLS")
        .unwrap_or_default()
        .split(',')
        .filter(|url| !url.is_empty())
        .map(str::to_owned)
        .collect();
    let pick = u64::from_str_radix(&random_suffix(), 16).unwrap_or(0);
    match usize::try_from(pick % u64::try_from(urls.len().max(1)).unwrap_or(1)) {
        Ok(index) if index < urls.len() => urls[index].clone(),
        _ => main,
    }
}

async fn client_for(url: &str) -> Client {
    let mut options = ClientOptions::parse(url)
        .await
        .unwrap_or_else(|error| panic!("bad NARVIK_TEST_MONGO_URL {url:?}: {error}"));
    // Fail in seconds, not the default 30 s, when the server goes away.
    options
        .server_selection_timeout
        .get_or_insert(Duration::from_secs(10));
    Client::with_options(options).expect("a client for the test server")
}

/// The per-call deadline of the stores on the shared test server. SecantusDB serves the whole
/// suite, running in parallel, one request at a time (a Python server): a call can queue
/// behind the others' for longer than the 5 s default (a purge of 5,000 sessions, 0.6 s on its
/// own, was seen to take over 5 s there). These tests check what the store does, not how fast;
/// the default bounds are checked by tests/faults.rs, on servers of their own. The change
/// stream's getMores get the same bound, so that a queued answer is no loss of the channel
/// there (tests/invalidation.rs checks the default on servers of its own).
pub const SHARED_SERVER_CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A store on a new, empty collection of its own, with its indexes.
pub async fn fresh_store() -> MongoStore {
    let store = MongoStore::from_client(
        &client_for(&fresh_store_url()).await,
        &MongoStoreConfig::default()
            .database(TEST_DATABASE)
            .collection(fresh_collection_name())
            .call_timeout(SHARED_SERVER_CALL_TIMEOUT)
            .change_stream_timeout(SHARED_SERVER_CALL_TIMEOUT),
    )
    .expect("valid test names");
    store.ensure_indexes().await.unwrap_or_else(|error| {
        panic!("the test server failed to index a fresh collection: {error}")
    });
    store
}

/// Two stores on one new collection (with its indexes), each on a client of its own, as two
/// instances of an application, and the collection through a third plain client, as another
/// tool writing to it.
pub async fn two_instances() -> (MongoStore, MongoStore, Collection<Document>) {
    let url = fresh_store_url();
    let name = fresh_collection_name();
    let config = MongoStoreConfig::default()
        .database(TEST_DATABASE)
        .collection(&name)
        .call_timeout(SHARED_SERVER_CALL_TIMEOUT)
        .change_stream_timeout(SHARED_SERVER_CALL_TIMEOUT);
    let a = MongoStore::from_client(&client_for(&url).await, &config).expect("valid test names");
    a.ensure_indexes().await.unwrap_or_else(|error| {
        panic!("the test server failed to index a fresh collection: {error}")
    });
    let b = MongoStore::from_client(&client_for(&url).await, &config).expect("valid test names");
    let other = client_for(&url)
        .await
        .database(TEST_DATABASE)
        .collection::<Document>(&name);
    (a, b, other)
}

/// A store on a new, empty collection without the TTL index, so that the server's TTL monitor
/// never deletes anything there: tests of the store's own expiry filters use it, and their
/// outcome cannot depend on whether the monitor happened to run.
pub async fn fresh_store_without_ttl_index() -> MongoStore {
    MongoStore::from_client(
        &client_for(&fresh_store_url()).await,
        &MongoStoreConfig::default()
            .database(TEST_DATABASE)
            .collection(fresh_collection_name())
            .call_timeout(SHARED_SERVER_CALL_TIMEOUT),
    )
    .expect("valid test names")
}

/// The raw collection under `store`, for tests that look past the store's API.
pub fn raw(store: &MongoStore) -> Collection<Document> {
    store.collection().clone()
}

/// `s_<unix seconds>_<16 random hex digits>`.
pub fn fresh_collection_name() -> String {
    format!("s_{}_{}", unix_seconds(), random_suffix())
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

/// Resolves the server on a thread with its own runtime: the first test's runtime may end
/// before the others start, and the resolution must not die with it.
fn resolve_on_own_thread() -> Result<String, String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::Builder::new()
        .name("narvik-mongo-test-harness".into())
        .spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|error| format!("no tokio runtime: {error}"))
                .and_then(|runtime| {
                    runtime.block_on(async {
                        let url = resolve_url().await?;
                        drop_stale_collections(&url).await;
                        Ok(url)
                    })
                });
            let _ = sender.send(result);
        })
        .map_err(|error| format!("cannot spawn the harness thread: {error}"))?;
    receiver
        .recv()
        .map_err(|_| "the harness thread died".to_owned())?
}

async fn resolve_url() -> Result<String, String> {
    if let Ok(url) = std::env::var("NARVIK_TEST_MONGO_URL") {
        if !url.is_empty() {
            return Ok(url);
        }
    }
    if containers_requested() {
        match container_url().await {
            Ok(url) => return Ok(url),
            Err(error) => {
                eprintln!(
                    "narvik-mongo tests: no Docker MongoDB ({error}); trying {LOCAL_DEFAULT_URL}"
                )
            }
        }
    }
    ping(LOCAL_DEFAULT_URL)
        .await
        .map(|()| LOCAL_DEFAULT_URL.to_owned())
        .map_err(|error| {
            format!(
                "NARVIK_TEST_MONGO_URL is unset and {LOCAL_DEFAULT_URL} did not answer: {error}"
            )
        })
}

async fn ping(url: &str) -> Result<(), String> {
    let mut options = ClientOptions::parse(url).await.map_err(|e| e.to_string())?;
    options.server_selection_timeout = Some(Duration::from_secs(3));
    let client = Client::with_options(options).map_err(|e| e.to_string())?;
    client
        .database("admin")
        .run_command(doc! { "ping": 1 })
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Whether the run asks for a testcontainers server (`NARVIK_TEST_CONTAINERS=1`): opt-in, so
/// that a machine with Docker still tests against its local server by default.
fn containers_requested() -> bool {
    std::env::var_os("NARVIK_TEST_CONTAINERS").is_some_and(|value| value == "1")
}

/// Starts (or reuses) a `mongo` container. Reusable: the Rust test harness has no global
/// teardown, so a container per process would be left behind by every run; one named,
/// reused container is left behind once.
async fn container_url() -> Result<String, String> {
    use testcontainers::{runners::AsyncRunner, ImageExt, ReuseDirective};
    use testcontainers_modules::mongo::Mongo;

    let container = Mongo::default()
        .with_container_name("narvik-test-mongo")
        .with_reuse(ReuseDirective::Always)
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let host = container.get_host().await.map_err(|e| e.to_string())?;
    let port = container
        .get_host_port_ipv4(27017)
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!("mongodb://{host}:{port}"))
}

/// Drops the test collections of runs that are over. Best effort: a failure here leaves
/// collections for the next run, it never fails a test.
async fn drop_stale_collections(url: &str) {
    let result: Result<(), narvik_mongo::mongodb::error::Error> = async {
        let options = ClientOptions::parse(url).await?;
        let database = Client::with_options(options)?.database(TEST_DATABASE);
        let cutoff = unix_seconds().saturating_sub(STALE_AFTER.as_secs());
        for name in database.list_collection_names().await? {
            let created = name
                .strip_prefix("s_")
                .and_then(|rest| rest.split('_').next())
                .and_then(|seconds| seconds.parse::<u64>().ok());
            if created.is_some_and(|created| created < cutoff) {
                database.collection::<Document>(&name).drop().await?;
            }
        }
        Ok(())
    }
    .await;
    if let Err(error) = result {
        eprintln!("narvik-mongo tests: stale test collections not cleaned: {error}");
    }
}
