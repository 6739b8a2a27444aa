//! The bounded calls on a real pool: SQLite in memory, one connection.

use std::time::Duration;

use narvik_core::deadline::{fault_of, Bound};
use narvik_core::Error;
use narvik_sqlx::{connect_pool, Calls, Cancelled, Timeouts};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::Sqlite;

const STORE: &str = "narvik-test";

fn map(operation: &'static str, error: sqlx::Error) -> Error {
    narvik_core::deadline::StoreFault::new(STORE, operation, "driver error")
        .with_source(error)
        .into()
}

async fn one_connection_pool(acquire: Duration) -> SqlitePool {
    let options: SqliteConnectOptions = "sqlite::memory:".parse().expect("an in-memory URL");
    connect_pool::<Sqlite>(
        STORE,
        SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(acquire),
        options,
        map,
    )
    .await
    .expect("an in-memory pool")
}

fn calls(acquire: Duration, call: Duration, cancelled: Cancelled) -> Calls {
    Calls {
        store: STORE,
        timeouts: Timeouts { acquire, call },
        cancelled,
    }
}

fn bound_of(error: &Error) -> Option<Bound> {
    fault_of(error).and_then(|fault| fault.bound())
}

#[tokio::test]
async fn a_call_answers_and_returns_its_connection() {
    let pool = one_connection_pool(Duration::from_secs(5)).await;
    let calls = calls(
        Duration::from_secs(2),
        Duration::from_secs(5),
        Cancelled::Detach,
    );
    let answer: i64 = calls
        .call(&pool, "fetch_session", map, async |connection| {
            sqlx::query_scalar("SELECT 41 + 1")
                .fetch_one(connection)
                .await
        })
        .await
        .expect("an answer");
    assert_eq!(answer, 42);
    assert_eq!(pool.size(), 1);
    // Back in the pool: the one connection can be taken again.
    let again = tokio::time::timeout(Duration::from_secs(2), pool.acquire()).await;
    assert!(matches!(again, Ok(Ok(_))), "{again:?}");
}

#[tokio::test]
async fn a_full_pool_is_the_acquire_bound_the_shorter_of_the_two() {
    let pool = one_connection_pool(Duration::from_secs(30)).await;
    let held = pool.acquire().await.expect("the only connection");
    let calls = calls(
        Duration::from_millis(100),
        Duration::from_secs(5),
        Cancelled::Detach,
    );
    let error = calls
        .acquire(&pool, "save_session", map)
        .await
        .expect_err("no connection free");
    assert_eq!(bound_of(&error), Some(Bound::Acquire), "{error}");
    assert!(error.to_string().contains("100ms"), "{error}");

    // The pool's own timeout, shorter than the store's, is the one reported.
    let short = one_connection_pool(Duration::from_millis(50)).await;
    let held_too = short.acquire().await.expect("the only connection");
    let calls = self::calls(
        Duration::from_secs(2),
        Duration::from_secs(5),
        Cancelled::Detach,
    );
    let error = calls
        .acquire(&short, "save_session", map)
        .await
        .expect_err("no connection free");
    assert_eq!(bound_of(&error), Some(Bound::Acquire), "{error}");
    assert!(error.to_string().contains("50ms"), "{error}");
    drop((held, held_too));
}

#[tokio::test]
async fn a_cancelled_call_detaches_or_returns_its_connection_as_configured() {
    for (cancelled, size_after) in [(Cancelled::Detach, 0), (Cancelled::Return, 1)] {
        let pool = one_connection_pool(Duration::from_secs(5)).await;
        let calls = calls(Duration::from_secs(2), Duration::from_millis(50), cancelled);
        let error = calls
            .call(&pool, "update_session_expiry", map, async |connection| {
                tokio::time::sleep(Duration::from_secs(2)).await;
                sqlx::query("SELECT 1").execute(connection).await
            })
            .await
            .expect_err("cut off by the call deadline");
        assert_eq!(bound_of(&error), Some(Bound::Call), "{error}");
        let fault = fault_of(&error).expect("a store fault");
        assert_eq!(
            (fault.store(), fault.operation()),
            (STORE, "update_session_expiry")
        );
        assert_eq!(pool.size(), size_after, "{cancelled:?}");
    }
}

#[tokio::test]
async fn driver_errors_go_through_the_map_and_unbounded_work_has_no_call_deadline() {
    let pool = one_connection_pool(Duration::from_secs(5)).await;
    let calls = calls(
        Duration::from_secs(2),
        Duration::from_millis(20),
        Cancelled::Detach,
    );
    let error = calls
        .unbounded(&pool, "migrate", map, async |connection| {
            // Longer than the call deadline: only the acquire bound applies here.
            tokio::time::sleep(Duration::from_millis(100)).await;
            sqlx::query("SELECT * FROM no_such_table")
                .execute(connection)
                .await
                .map_err(|error| map("migrate", error))
        })
        .await
        .expect_err("no such table");
    let fault = fault_of(&error).expect("a store fault");
    assert_eq!(fault.bound(), None, "{error}");
    assert_eq!(fault.operation(), "migrate");
    assert!(error.to_string().ends_with("driver error"), "{error}");
    // The work answered, so its connection went back to the pool.
    assert_eq!(pool.size(), 1);
}
