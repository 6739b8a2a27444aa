//! The fault scenarios of narvik-faults against MongoDB (SecantusDB here), each on a server of
//! its own (a free loopback port, storage in a temporary directory; never a shared server),
//! with the store built exactly as the README shows: `MongoStore::connect(url, config)` with no
//! timeout or write concern of the test's own.
//!
//! Run with `--nocapture` to read the `fault figures:` lines quoted in the README.

mod common;

use std::sync::Arc;

use common::own_server::OwnServer;
use narvik_core::deadline::{self, Bound};
use narvik_core::{Error, SessionStore};
use narvik_faults::{assert_unavailable_within, scenarios, Bounds, SilentListener};
use narvik_mongo::{MongoStore, MongoStoreConfig, STORE_NAME};

/// The scenarios time their bounds on a two-core machine, and SecantusDB is a Python server
/// that keeps a core busy: one scenario at a time within this binary.
async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    TURN.lock().await
}

/// The README's construction, on `url` (`mongodb://HOST:PORT/app`).
async fn readme_store(url: &str) -> narvik_core::Result<MongoStore> {
    MongoStore::connect(url, &MongoStoreConfig::default().collection("sessions")).await
}

/// A store on a server of its own, indexes created, as an application starts.
async fn store_on(server: &OwnServer) -> MongoStore {
    let store = readme_store(&server.url("app"))
        .await
        .expect("connect to the test's own server");
    store
        .ensure_indexes()
        .await
        .expect("indexes on the test's own server");
    store
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_listener() {
    let _turn = one_at_a_time().await;
    scenarios::silent_listener(STORE_NAME, Bounds::default(), |address| async move {
        readme_store(&format!("mongodb://{address}/app")).await
    })
    .await;
}

/// What the issue saw: a 30 s wait and a 300-character topology dump. Now: the server
/// selection bound, named in one short line, with the driver's error kept as the source.
#[tokio::test(flavor = "multi_thread")]
async fn a_silent_listener_fails_with_a_short_message_naming_the_bound() {
    let _turn = one_at_a_time().await;
    let listener = SilentListener::start();
    let store = readme_store(&format!("mongodb://{}/app", listener.address()))
        .await
        .expect("the driver connects lazily");
    let error = store
        .fetch_session("anything")
        .await
        .expect_err("nothing answers");
    assert!(matches!(error, Error::Unavailable { .. }), "{error:?}");
    assert_eq!(deadline::bound_hit(&error), Some(Bound::ServerSelection));
    assert_eq!(
        error.to_string(),
        "the session store is unavailable: narvik-mongo fetch_session: no answer within 2s \
         (server selection timeout)"
    );
    let fault = deadline::fault_of(&error).expect("a store fault");
    assert_eq!(fault.store(), STORE_NAME);
    assert_eq!(fault.operation(), "fetch_session");
    let driver = std::error::Error::source(fault).expect("the driver error as source");
    assert!(
        driver.to_string().contains(&listener.address().to_string()),
        "the driver's error names the server: {driver}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn freeze_and_resume() {
    let _turn = one_at_a_time().await;
    let server = OwnServer::start("freeze");
    let store = store_on(&server).await;
    scenarios::freeze_and_resume(STORE_NAME, Bounds::default(), &server.process, &store).await;
}

/// A call in flight when the server freezes ends within the per-call deadline (the driver has
/// no socket timeout of its own; its monitor may interrupt the call sooner), typed, with a
/// short message naming the store and the operation.
#[tokio::test(flavor = "multi_thread")]
async fn a_call_in_flight_on_a_frozen_server_ends_within_the_call_deadline() {
    let _turn = one_at_a_time().await;
    let server = OwnServer::start("frozen-call");
    let store = store_on(&server).await;
    assert_eq!(store.fetch_session("warm-up").await.expect("fetch"), None);
    server.process.freeze();
    let bounds = Bounds::default();
    let took = assert_unavailable_within(
        "fetch_session on a frozen server",
        bounds.call + bounds.margin,
        store.fetch_session("anything"),
    )
    .await;
    let error = store
        .delete_session("anything")
        .await
        .expect_err("a frozen server answers nothing");
    server.process.resume();
    let fault = deadline::fault_of(&error).expect("a store fault");
    assert_eq!(fault.store(), STORE_NAME);
    assert_eq!(fault.operation(), "delete_session");
    assert!(
        error.to_string().len() < 120,
        "a short message, the driver's error as source: {error}"
    );
    eprintln!(
        "fault figures: narvik-mongo call in flight on a frozen server: failed after {} ms; \
         the next call: {error}",
        took.as_millis()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_and_restart() {
    let _turn = one_at_a_time().await;
    let mut server = OwnServer::start("kill");
    let store = store_on(&server).await;
    scenarios::kill_and_restart(
        STORE_NAME,
        Bounds::default(),
        &mut server.process,
        &store,
        true,
    )
    .await;
}

/// The case: with the driver's default write concern, a kill -9 right after a burst of
/// logouts brought logged-out sessions back and lost acknowledged creates. With the store's
/// default (`w: majority, j: true`) neither happens.
#[tokio::test(flavor = "multi_thread")]
async fn logouts_survive_crash() {
    let _turn = one_at_a_time().await;
    let mut server = OwnServer::start("crash");
    let store = store_on(&server).await;
    scenarios::logouts_survive_crash(
        STORE_NAME,
        Bounds::default(),
        &mut server.process,
        &store,
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn quiet_restart() {
    let _turn = one_at_a_time().await;
    let mut server = OwnServer::start("quiet");
    let store = Arc::new(store_on(&server).await);
    scenarios::quiet_restart(STORE_NAME, Bounds::default(), &mut server.process, store, 8).await;
}
