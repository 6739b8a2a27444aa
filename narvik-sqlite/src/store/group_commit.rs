//! Group commit for `save_session`: saves that arrive while the writer is busy wait in a queue
//! and go in together, in one transaction, so they share one commit and its fsync.
//!
//! With `synchronous = FULL` a commit waits for the disk, which is most of what a create
//! costs; SQLite has one writer, so concurrent sign-ins would otherwise each wait for the
//! fsyncs of all those ahead of them. A save that finds the writer free runs at once, alone,
//! on its caller's task (no batching to gain, no hand-off to pay); saves that arrive meanwhile
//! queue, and when it ends a task of their own writes them, up to [`MAX_BATCH`] per
//! transaction, until none wait.
//!
//! Each save still gets its own answer: a duplicate id fails that insert alone (SQLite ends
//! only the statement on a constraint violation, the transaction goes on), and every other
//! save of a batch is `Ok` only once the commit is on disk. A batch the database refuses as a
//! whole (locked past the busy timeout, the disk, the deadline) gives each of its saves that
//! fault; a batch with a row the database will not take for another reason is rolled back and
//! its saves are tried again one by one, so each save reports what happened to it and no
//! other.
//!
//! A caller that gives up (its deadline, a dropped future) never strands the saves queued
//! behind it: the writer role passes on when the save or task holding it ends, however it
//! ends.

use std::sync::{Mutex, MutexGuard};

use narvik_core::deadline::fault_of;
use narvik_core::{Error, Result};
use sqlx::Connection as _;
use tokio::sync::oneshot;

use super::SqliteStore;
use crate::error::{map_insert_error, map_sqlx_error, STORE};

/// The most saves one transaction takes: enough to absorb a burst of sign-ins, few enough
/// that the write lock is held for a few milliseconds at most.
const MAX_BATCH: usize = 256;

const OPERATION: &str = "save_session";

/// A record's columns, owned, so that its save can outlive the caller's borrow.
pub(super) struct SaveRow {
    pub(super) id: String,
    pub(super) user_id: String,
    pub(super) expires_at: i64,
    pub(super) created_at: i64,
    pub(super) data: String,
    pub(super) lifetime_ms: Option<i64>,
    pub(super) data_version: i64,
}

struct Pending {
    row: SaveRow,
    answer: oneshot::Sender<Result<()>>,
}

/// The saves waiting for the writer, and whether a task is writing them.
#[derive(Default)]
pub(super) struct SaveQueue {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    waiting: Vec<Pending>,
    writing: bool,
}

impl SaveQueue {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The writer role while a save or a task holds it. Dropped, it hands the saves that queued
/// meanwhile to a task of their own, or gives the role up when none wait; so a caller that
/// gives up while writing (its deadline, a dropped future) never strands the saves behind it,
/// and neither does a task whose runtime shuts down.
struct Writer {
    store: SqliteStore,
    /// Set once the role was given up in the open, with nothing left to hand over.
    released: bool,
}

impl Writer {
    fn new(store: SqliteStore) -> Self {
        Self {
            store,
            released: false,
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let mut state = self.store.inner.saves.state();
        if state.waiting.is_empty() {
            state.writing = false;
            return;
        }
        match tokio::runtime::Handle::try_current() {
            // The role passes to the task with the queue.
            Ok(runtime) => drop(runtime.spawn(self.store.clone().write_queued())),
            // No runtime to run them on: the next save takes the role and writes them.
            Err(_) => state.writing = false,
        }
    }
}

impl SqliteStore {
    /// Saves `row`: at once, on the caller's task, when the writer is free; otherwise queued
    /// for the next batch, waiting for its own answer within the call deadline.
    pub(super) async fn save_in_group(&self, row: SaveRow) -> Result<()> {
        let queued = {
            let mut state = self.inner.saves.state();
            if state.writing {
                let (answer, answered) = oneshot::channel();
                state.waiting.push(Pending { row, answer });
                Ok(answered)
            } else {
                state.writing = true;
                Err(row)
            }
        };
        let answered = match queued {
            Ok(answered) => answered,
            // Alone, a save is one autocommit statement (a transaction would only add its
            // BEGIN and COMMIT), run here: a hand-off to another task would cost two wake-ups
            // across threads, more than the statement.
            Err(row) => {
                let _writer = Writer::new(self.clone());
                return self.insert_alone(&row).await;
            }
        };
        narvik_core::deadline::within(STORE, OPERATION, self.inner.calls.timeouts.call, async {
            answered.await.unwrap_or_else(|_| {
                Err(Error::unavailable(
                    "the task writing this save ended before it answered (its runtime shut down)",
                ))
            })
        })
        .await
    }

    /// Writes the queued saves, in batches, until none wait.
    async fn write_queued(self) {
        let mut writer = Writer::new(self);
        loop {
            let store = &writer.store;
            let batch = {
                let mut state = store.inner.saves.state();
                if state.waiting.is_empty() {
                    state.writing = false;
                    drop(state);
                    // Given up here, under the lock: the guard has nothing left to do.
                    writer.released = true;
                    return;
                }
                let take = state.waiting.len().min(MAX_BATCH);
                state.waiting.drain(..take).collect::<Vec<_>>()
            };
            let (rows, answers): (Vec<SaveRow>, Vec<_>) = batch
                .into_iter()
                .map(|pending| (pending.row, pending.answer))
                .unzip();
            let outcomes = if rows.len() == 1 {
                store.insert_one_by_one(&rows).await
            } else {
                match store.insert_together(&rows).await {
                    Ok(outcomes) => outcomes,
                    // The database refused the transaction (locked past the busy timeout, the
                    // disk, the deadline): it would refuse each save alike, so each gets the
                    // same fault now rather than wait for it again.
                    Err(error) if fault_of(&error).is_some() => shared_by(error, rows.len()),
                    // A row of its own the database would not take: each save alone, so
                    // that only that one fails.
                    Err(_) => store.insert_one_by_one(&rows).await,
                }
            };
            answer_all(answers, outcomes);
        }
    }

    /// All of `rows` in one transaction: each row's own answer (`Ok` or a duplicate id), given
    /// once the commit succeeded. `Err` when the transaction failed (a row's statement other
    /// than by a duplicate id, or the transaction itself): it is rolled back and nothing of
    /// it is stored.
    async fn insert_together(&self, rows: &[SaveRow]) -> Result<Vec<Result<()>>> {
        let insert = &self.inner.sql.insert;
        let answers = self
            .call(
                OPERATION,
                &self.inner.writer,
                map_sqlx_error,
                async |connection| {
                    let mut transaction = connection.begin().await?;
                    let mut answers = Vec::with_capacity(rows.len());
                    for row in rows {
                        match bind(insert, row).execute(&mut *transaction).await {
                            Ok(_) => answers.push(Ok(())),
                            Err(error) => match map_insert_error(OPERATION, error) {
                                duplicate @ Error::DuplicateId => answers.push(Err(duplicate)),
                                // Anything else may have ended the transaction already:
                                // give up on the batch (dropping it rolls back the rest).
                                other => return Ok(Err(other)),
                            },
                        }
                    }
                    transaction.commit().await?;
                    Ok(Ok(answers))
                },
            )
            .await;
        answers.and_then(|answers| answers)
    }

    /// `row` in an autocommit statement of its own.
    async fn insert_alone(&self, row: &SaveRow) -> Result<()> {
        let insert = &self.inner.sql.insert;
        self.call(
            OPERATION,
            &self.inner.writer,
            map_insert_error,
            async |connection| bind(insert, row).execute(connection).await,
        )
        .await
        .map(|_| ())
    }

    /// Each of `rows` in a statement of its own: the saves of a batch one of which the
    /// database would not take, so that each answers for itself.
    async fn insert_one_by_one(&self, rows: &[SaveRow]) -> Vec<Result<()>> {
        let mut outcomes = Vec::with_capacity(rows.len());
        for row in rows {
            outcomes.push(self.insert_alone(row).await);
        }
        outcomes
    }
}

/// Sends each save its outcome. A caller that gave up has dropped its receiver: nothing to
/// tell it.
fn answer_all(answers: Vec<oneshot::Sender<Result<()>>>, outcomes: Vec<Result<()>>) {
    for (answer, outcome) in answers.into_iter().zip(outcomes) {
        let _ = answer.send(outcome);
    }
}

/// `error` as the answer of `saves` saves: itself for the first, copies of its fault for the
/// others.
fn shared_by(error: Error, saves: usize) -> Vec<Result<()>> {
    let copies: Vec<Result<()>> = match fault_of(&error) {
        Some(fault) => (1..saves).map(|_| Err(fault.shared().into())).collect(),
        None => Vec::new(),
    };
    std::iter::once(Err(error)).chain(copies).collect()
}

/// The insert statement with `row`'s columns bound, in the order of the store's `COLUMNS`.
fn bind<'q>(
    insert: &sqlx::SqlStr,
    row: &'q SaveRow,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    sqlx::query(insert.clone())
        .bind(row.id.as_str())
        .bind(row.user_id.as_str())
        .bind(row.expires_at)
        .bind(row.created_at)
        .bind(row.data.as_str())
        .bind(row.lifetime_ms)
        .bind(row.data_version)
}
