//! Opening the store's pools on a database file that other instances may be opening too.

use std::time::{Duration, Instant};

use narvik_core::Result;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

use crate::error::{is_busy_fault, map_sqlx_error, STORE};

/// The longest pause between two attempts: short, since the lock it waits for is held only for
/// the instant a journal-mode switch takes.
const MAX_PAUSE: Duration = Duration::from_millis(50);

/// Connects a pool, trying again for up to `patience` while SQLite answers `SQLITE_BUSY`.
///
/// Switching a new file to WAL (the `journal_mode` pragma every connection sends) needs an
/// exclusive lock that SQLite does not wait for through `busy_timeout`: when several instances
/// open one new file at the same moment, all but one may be refused at once, although waiting
/// a few milliseconds would have let them in. Any other error, and a BUSY that lasts past
/// `patience`, is returned as it is.
pub(crate) async fn connect_pool(
    pool_options: SqlitePoolOptions,
    options: SqliteConnectOptions,
    patience: Duration,
) -> Result<SqlitePool> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(2);
    loop {
        let attempt =
            narvik_sqlx::connect_pool(STORE, pool_options.clone(), options.clone(), map_sqlx_error)
                .await;
        match attempt {
            Err(error) if is_busy_fault(&error) && started.elapsed() + pause < patience => {
                // Jittered, so that instances refused together do not come back together.
                let jitter = rand::random_range(0..=pause.as_micros() as u64);
                tokio::time::sleep(pause + Duration::from_micros(jitter)).await;
                pause = (pause * 2).min(MAX_PAUSE);
            }
            other => return other,
        }
    }
}
