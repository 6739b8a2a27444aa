//! `--store sqlite:PATH`: a signed-in user stays signed in across a restart of the demo, because
//! the session lives in the SQLite file, not in the process.

#![cfg(feature = "sqlite")]

mod common;

use common::{loopback, send, DemoProcess};

async fn devices_page(demo: &DemoProcess, cookie: &str) -> common::Reply {
    send(
        demo.addr,
        loopback(1),
        "GET",
        "/devices",
        &[("Cookie", cookie)],
        "",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_in_user_stays_signed_in_across_a_restart() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = format!("sqlite:{}", dir.path().join("demo.db").display());

    let demo = DemoProcess::start(&["--store", &store]);
    let origin = format!("http://{}", demo.addr);
    let body = "username=alice&password=wonderland-rabbit";
    let signed_in = send(
        demo.addr,
        loopback(1),
        "POST",
        "/sign-in",
        &[
            ("Origin", &origin),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        body,
    )
    .await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    let cookie = signed_in.cookie().expect("a session cookie");
    assert_eq!(devices_page(&demo, &cookie).await.status, 200);

    drop(demo);
    let demo = DemoProcess::start(&["--store", &store]);
    let after = devices_page(&demo, &cookie).await;
    assert_eq!(
        after.status,
        200,
        "signed out by the restart: {:?} {}",
        after.header("location"),
        after.body
    );
    // Alice's own devices page, with this browser's session on it.
    assert!(after.body.contains(">Alice<"), "{}", after.body);
    assert!(after.body.contains("This device"), "{}", after.body);

    // And the store is the file: a fresh file signs the same cookie out.
    drop(demo);
    let other = format!("sqlite:{}", dir.path().join("other.db").display());
    let demo = DemoProcess::start(&["--store", &other]);
    assert_eq!(devices_page(&demo, &cookie).await.status, 303);
}
