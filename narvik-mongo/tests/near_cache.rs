//! The near cache's promises across two app instances (narvik-conformance's `near_cache`
//! checks), on two stores with a client each: revocations on one instance reach the other by
//! push, and a channel broken by a server restart is bypassed until it is back.

mod common;

use std::sync::Arc;

use common::own_server::OwnServer;
use narvik_conformance::near_cache;
use narvik_core::SessionStore;
use narvik_mongo::{MongoStore, MongoStoreConfig};

#[tokio::test(flavor = "multi_thread")]
async fn revocations_reach_the_other_instance() {
    let (a, b, _) = common::two_instances().await;
    let slowest = near_cache::revocations_reach_the_other_instance(Arc::new(a), Arc::new(b)).await;
    eprintln!(
        "push figures: near cache: slowest revocation seen by the other instance after {} ms",
        slowest.as_millis()
    );
}

/// A store as the README builds it (default bounds), on a server of the test's own.
async fn store_on(server: &OwnServer) -> Arc<dyn SessionStore> {
    let store = MongoStore::connect(
        &server.url("app"),
        &MongoStoreConfig::default().collection("sessions"),
    )
    .await
    .expect("connect to the test's own server");
    store
        .ensure_indexes()
        .await
        .expect("indexes on the test's own server");
    Arc::new(store)
}

/// B's stream is broken by a restart of the server (kill -9, then a start on the same storage).
#[tokio::test(flavor = "multi_thread")]
async fn a_channel_broken_by_a_restart_is_bypassed_until_it_is_back() {
    let mut server = OwnServer::start("near-cache-restart");
    let a = store_on(&server).await;
    let b = store_on(&server).await;
    let process = &mut server.process;
    near_cache::a_broken_channel_is_bypassed_until_it_is_back(a, b, || async move {
        tokio::task::block_in_place(|| {
            process.kill();
            process.start_again();
        });
    })
    .await;
}
