//! Saves committed together (the store's group commit): every save of a batch gets its own
//! answer, and a caller that gives up while holding the writer strands nobody behind it.

mod common;

use std::time::Duration;

use narvik_conformance::harness::record_expiring_in;
use narvik_core::{Error, SessionRecord, SessionStore};

fn record(id: &str) -> SessionRecord {
    SessionRecord {
        id: id.to_owned(),
        ..record_expiring_in(
            "group",
            time::Duration::hours(1),
            serde_json::json!({ "id": id }),
        )
    }
}

/// 200 saves at once, every fourth one of an id saved before: the 150 new ones land, each of
/// the 50 others answers `DuplicateId` and leaves the first record as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_save_of_a_batch_gets_its_own_answer() {
    let store = common::fresh_file_store().await;
    for n in (0..200).step_by(4) {
        store
            .save_session(&record(&format!("id-{n}")))
            .await
            .expect("first save");
    }
    let saves: Vec<_> = (0..200)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut again = record(&format!("id-{n}"));
                again.data = serde_json::json!({ "second": true }).into();
                (n, store.save_session(&again).await)
            })
        })
        .collect();
    for save in saves {
        let (n, answer) = save.await.expect("task");
        if n % 4 == 0 {
            assert!(
                matches!(answer, Err(Error::DuplicateId)),
                "save {n} of an existing id answered {answer:?}"
            );
        } else {
            answer.unwrap_or_else(|error| panic!("save {n} of a new id failed: {error}"));
        }
        let stored = store
            .fetch_session(&format!("id-{n}"))
            .await
            .expect("fetch")
            .expect("stored");
        let second = stored.data.to_json_text().expect("text").contains("second");
        assert_eq!(second, n % 4 != 0, "record {n} holds the wrong save");
    }
}

/// The save holding the writer is dropped while saves queue behind it: they are written all
/// the same, well within the call deadline, instead of waiting for a writer that is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_giving_up_strands_no_queued_save() {
    let store = common::fresh_file_store().await;
    let first_record = record("first");
    let mut first = Box::pin(store.save_session(&first_record));
    // Polled once: it holds the writer role and its statement is under way.
    tokio::select! {
        biased;
        _ = &mut first => panic!("the first save finished on its first poll"),
        () = std::future::ready(()) => {}
    }
    let queued: Vec<_> = (0..10)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move { store.save_session(&record(&format!("queued-{n}"))).await })
        })
        .collect();
    // Let them reach the queue, then give up on the first.
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(first);
    // Half the call deadline: a queued save left without a writer gives up only at the
    // whole deadline.
    let within = narvik_sqlite::SqliteStore::DEFAULT_CALL_TIMEOUT / 2;
    for (n, save) in queued.into_iter().enumerate() {
        tokio::time::timeout(within, save)
            .await
            .unwrap_or_else(|_| panic!("queued save {n} still waits after {within:?}"))
            .expect("task")
            .unwrap_or_else(|error| panic!("queued save {n} failed: {error}"));
        assert!(store
            .fetch_session(&format!("queued-{n}"))
            .await
            .expect("fetch")
            .is_some());
    }
}
