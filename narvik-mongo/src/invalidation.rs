// Over 400 lines in one file: one change-stream listener, whose driving by hand (`aggregate`,
// `getMore`, kill on loss) and health reporting share its private state. (The rest is its
// unit tests.)
//! Invalidations pushed through a change stream on the sessions collection, for the engine's
//! near cache (see the crate's "Pushed invalidations" section).
//!
//! The stream is driven by hand (`aggregate` with `$changeStream`, then `getMore` in an explicit
//! session) rather than through the driver's `ChangeStream`: that one resumes by itself from its
//! resume token after a network error, so a server that crashed and came back (having lost
//! unjournaled writes, or on other storage) would look like an unbroken stream. Here every
//! error, silence or end of the stream is reported to the hub as a loss, and the stream is
//! opened afresh: the caches flush anyway, so nothing would be gained by resuming.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use mongodb::bson::{doc, Bson, Document};
use mongodb::{Client, ClientSession, Collection, Database};
use narvik_core::deadline::{self, StoreFault};
use narvik_core::invalidation::{InvalidationHub, InvalidationSubscription};
use narvik_core::{Error, Result};
use tokio::sync::watch;

use crate::config::CHANGE_STREAM_MAX_AWAIT;
use crate::error::{Call, DriverBounds, STORE_NAME};

/// The first pause before the stream is opened again after a loss; it doubles on every failed
/// attempt up to [`LAST_RETRY`], and starts again once a `getMore` has been answered.
const FIRST_RETRY: Duration = Duration::from_millis(50);

/// The longest pause between two attempts to open the stream: how late a listener may notice
/// that the server is back (on top of the driver's own server selection).
const LAST_RETRY: Duration = Duration::from_secs(1);

/// How long the listener waits for the server to close its cursor when it stops: a server
/// that does not answer drops the cursor by itself after its idle timeout.
const KILL_WITHIN: Duration = Duration::from_secs(1);

/// How long the listener waits, once its store is dropped, before it closes its cursor (see
/// where it is used).
const KILL_GRACE: Duration = Duration::from_millis(100);

/// The operation name in the listener's faults and log lines.
const OPERATION: &str = "watch_invalidations";

/// The store's side of the push: the hub every near cache subscribes to, and at most one
/// listener task feeding it. Shared by the clones of a store; dropping the last clone stops the
/// listener.
#[derive(Debug)]
pub(crate) struct Push {
    shared: Arc<Shared>,
    /// Never sent on: the listener only waits for it to close, which happens when the last
    /// clone of the store is dropped.
    alive: watch::Sender<()>,
}

#[derive(Debug)]
struct Shared {
    hub: InvalidationHub,
    /// Whether a listener task is running. Starting and stopping one are decided under this
    /// lock, with the hub's subscriber count read inside it: a subscription taken while the
    /// listener decides to stop finds it stopped and starts another.
    running: Mutex<bool>,
}

/// What the listener watches, and how long it may wait to open the stream.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) collection: Collection<Document>,
    pub(crate) open_within: Duration,
    pub(crate) answer_within: Duration,
    pub(crate) bounds: DriverBounds,
}

impl Default for Push {
    fn default() -> Self {
        let (alive, _) = watch::channel(());
        Self {
            shared: Arc::new(Shared {
                hub: InvalidationHub::new(),
                running: Mutex::new(false),
            }),
            alive,
        }
    }
}

impl Push {
    /// A new subscription, starting the listener on `target` if none runs. Outside a Tokio
    /// runtime no listener can start: the subscription is returned anyway and stays unhealthy,
    /// so a cache on it never serves, until a later call from within a runtime starts one.
    pub(crate) fn subscribe(&self, target: &Target) -> InvalidationSubscription {
        // Taken before the lock: a listener deciding to stop under it counts this one.
        let subscription = self.shared.hub.subscribe();
        let mut running = self.shared.lock();
        if !*running {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    let listener = Listener {
                        shared: Arc::clone(&self.shared),
                        client: target.collection.client().clone(),
                        database: target
                            .collection
                            .client()
                            .database(&target.collection.namespace().db),
                        collection: target.collection.name().to_owned(),
                        open_within: target.open_within,
                        answer_within: target.answer_within,
                        bounds: target.bounds,
                        stopped: AtomicBool::new(false),
                    };
                    runtime.spawn(listener.run(self.alive.subscribe()));
                    *running = true;
                }
                Err(_) => tracing::warn!(
                    "narvik-mongo: subscribe_invalidations called outside a Tokio runtime; no \
                     change stream is opened and the near cache is bypassed"
                ),
            }
        }
        subscription
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, bool> {
        // The flag is a plain bool, consistent whatever a panicking holder was doing.
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks the listener stopped and the channel unhealthy, in one step under the lock.
    fn finish(&self) {
        let mut running = self.lock();
        self.hub.lost();
        *running = false;
    }

    /// Stops the listener (as [`Shared::finish`]) if no cache listens any more.
    fn finish_if_unwanted(&self) -> bool {
        let mut running = self.lock();
        if self.hub.subscriber_count() > 0 {
            return false;
        }
        self.hub.lost();
        *running = false;
        true
    }
}

/// Why one opened stream ended.
enum Ended {
    /// The store is gone or no cache listens: the listener has finished.
    Stopped,
    /// The stream broke, fell silent or was closed by the server.
    Lost(Error),
}

/// One batch of change events and the cursor to ask for the next.
struct Batch {
    cursor_id: i64,
    events: Vec<Document>,
}

/// The task that keeps one change stream open and feeds the hub.
struct Listener {
    shared: Arc<Shared>,
    client: Client,
    database: Database,
    collection: String,
    open_within: Duration,
    answer_within: Duration,
    bounds: DriverBounds,
    /// Set once the listener has marked itself stopped under the lock. A listener dropped
    /// without it (a panic, or its runtime shutting down under it) does so in `drop`: a
    /// listener that is gone must never leave the channel healthy, nor the store believing it
    /// runs (the next subscription starts another).
    stopped: AtomicBool,
}

impl Drop for Listener {
    fn drop(&mut self) {
        if !self.stopped.load(Ordering::SeqCst) {
            self.shared.finish();
        }
    }
}

impl Listener {
    /// [`Shared::finish`], remembered.
    fn finish(&self) {
        self.shared.finish();
        self.stopped.store(true, Ordering::SeqCst);
    }

    /// [`Shared::finish_if_unwanted`], remembered when it stops the listener.
    fn finish_if_unwanted(&self) -> bool {
        let finished = self.shared.finish_if_unwanted();
        if finished {
            self.stopped.store(true, Ordering::SeqCst);
        }
        finished
    }

    /// Listens until `alive` closes (the store is gone) or no cache listens any more.
    async fn run(self, mut alive: watch::Receiver<()>) {
        let mut retry = FIRST_RETRY;
        // A loss is a warning the first time; the failed attempts that follow while the server
        // stays away are not worth a line each.
        let mut failing = false;
        loop {
            match self.listen(&mut alive, &mut retry, &mut failing).await {
                Ended::Stopped => return,
                Ended::Lost(error) => {
                    self.shared.hub.lost();
                    if failing {
                        tracing::debug!(%error, "narvik-mongo: invalidation stream still down");
                    } else {
                        tracing::warn!(
                            %error,
                            "narvik-mongo: invalidation stream lost; near caches bypass the \
                             store until it is open again"
                        );
                        failing = true;
                    }
                }
            }
            if self.finish_if_unwanted() {
                return;
            }
            tokio::select! {
                biased;
                _ = alive.changed() => return self.finish(),
                () = tokio::time::sleep(retry) => {}
            }
            retry = (retry * 2).min(LAST_RETRY);
        }
    }

    /// Opens the stream and applies its events until it ends.
    async fn listen(
        &self,
        alive: &mut watch::Receiver<()>,
        retry: &mut Duration,
        failing: &mut bool,
    ) -> Ended {
        let opened = tokio::select! {
            biased;
            _ = alive.changed() => {
                self.finish();
                return Ended::Stopped;
            }
            opened = self.open() => opened,
        };
        let (mut session, first) = match opened {
            Ok(opened) => opened,
            Err(error) => return Ended::Lost(error),
        };
        // The stream starts where the server opened it (the `aggregate`'s operation time): every
        // change after that is delivered, every change before it is in what a cache reads next.
        self.shared.hub.subscribed();
        if *failing {
            tracing::info!("narvik-mongo: invalidation stream open again");
            *failing = false;
        }
        let mut batch = first;
        loop {
            self.apply(&batch.events);
            if batch.cursor_id == 0 {
                // After an `invalidate` (the collection was dropped or renamed), or a server
                // that ended the cursor for its own reasons.
                return Ended::Lost(
                    StoreFault::new(STORE_NAME, OPERATION, "the server ended the change stream")
                        .into(),
                );
            }
            if self.finish_if_unwanted() {
                self.kill(batch.cursor_id).await;
                return Ended::Stopped;
            }
            let next = tokio::select! {
                biased;
                _ = alive.changed() => {
                    self.finish();
                    // A store is usually dropped just before its runtime shuts down (at the end
                    // of `main`), and the driver panics when asked for a connection while the
                    // shutdown drops its pool's task. Waiting a moment first lets the shutdown
                    // drop this task as it waits instead; a runtime that goes on runs the kill.
                    tokio::time::sleep(KILL_GRACE).await;
                    self.kill(batch.cursor_id).await;
                    return Ended::Stopped;
                }
                next = self.get_more(&mut session, batch.cursor_id) => next,
            };
            match next {
                Ok(next) => {
                    *retry = FIRST_RETRY;
                    batch = next;
                }
                Err(error) => return Ended::Lost(error),
            }
        }
    }

    /// `aggregate` with `$changeStream` on the collection, in a session of its own: the server
    /// takes a cursor's `getMore` only from the session that opened it.
    async fn open(&self) -> Result<(ClientSession, Batch)> {
        let call = Call::start(OPERATION, self.bounds);
        deadline::within(STORE_NAME, OPERATION, self.open_within, async {
            // Causal consistency would add `afterClusterTime` to a later `aggregate` in the
            // session; the stream needs no ordering with anything else.
            let mut session = self
                .client
                .start_session()
                .causal_consistency(false)
                .await
                .map_err(|error| call.error(error))?;
            let reply = self
                .database
                .run_command(change_stream_command(&self.collection))
                .session(&mut session)
                .await
                .map_err(|error| call.error(error))?;
            let batch = parse_reply(&reply, "firstBatch")?;
            Ok((session, batch))
        })
        .await
    }

    /// One `getMore`: the events since the last, or an empty batch after [`CHANGE_STREAM_MAX_AWAIT`] on a
    /// quiet collection. No answer within the change stream timeout is an error (the driver closes the
    /// connection the call was cut off on).
    async fn get_more(&self, session: &mut ClientSession, cursor_id: i64) -> Result<Batch> {
        let call = Call::start(OPERATION, self.bounds);
        let command = doc! {
            "getMore": cursor_id,
            "collection": &self.collection,
            "maxTimeMS": millis(CHANGE_STREAM_MAX_AWAIT),
        };
        deadline::within(STORE_NAME, OPERATION, self.answer_within, async {
            let reply = self
                .database
                .run_command(command)
                .session(session)
                .await
                .map_err(|error| call.error(error))?;
            parse_reply(&reply, "nextBatch")
        })
        .await
    }

    /// Closes the server's cursor when the listener stops, so that it does not linger until the
    /// server's idle timeout. Best effort: the listener is going away either way.
    async fn kill(&self, cursor_id: i64) {
        // `killCursors` takes no session (the driver refuses one); the server accepts it from
        // the cursor's owner without.
        let command = doc! { "killCursors": &self.collection, "cursors": [cursor_id] };
        let result = tokio::time::timeout(KILL_WITHIN, self.database.run_command(command)).await;
        if !matches!(result, Ok(Ok(_))) {
            tracing::debug!(
                "narvik-mongo: the change stream's cursor was not closed on the server"
            );
        }
    }

    /// Passes one batch to the hub: the changed sessions in one message, or a flush of
    /// everything when an event cannot be mapped to a session.
    fn apply(&self, events: &[Document]) {
        let mut ids = Vec::new();
        let mut everything = false;
        for event in events {
            match change_of(event) {
                Change::Nothing => {}
                Change::Session(id) => ids.push(id),
                Change::Everything => everything = true,
            }
        }
        if everything {
            self.shared.hub.invalidate_everything();
        } else {
            self.shared.hub.invalidate(ids);
        }
    }
}

/// What one change event means for a cache.
#[derive(Debug, PartialEq, Eq)]
enum Change {
    /// Nothing a cache can hold (an insert: a new id is in no cache).
    Nothing,
    /// This session was deleted or changed.
    Session(String),
    /// Anything may have changed: the collection was dropped or renamed, the stream was
    /// invalidated, or the event names no session id this store could have written.
    Everything,
}

fn change_of(event: &Document) -> Change {
    match event.get_str("operationType") {
        Ok("insert") => Change::Nothing,
        Ok("delete" | "update" | "replace") => match event
            .get_document("documentKey")
            .ok()
            .and_then(|key| key.get("_id"))
        {
            Some(Bson::String(id)) => Change::Session(id.clone()),
            _ => Change::Everything,
        },
        // `drop`, `rename`, `dropDatabase`, `invalidate`, and any kind a later server adds.
        _ => Change::Everything,
    }
}

/// The `aggregate` that opens the stream.
///
/// Inserts are left out on the server (no cache holds a session before it exists); every other
/// event comes through, including an update that only moves `expiresAt`: the event cannot tell
/// an extension from another client moving the expiry earlier (the old value is not in it), and
/// a cache must drop a session whose expiry was brought forward. Only the resume token (`_id`,
/// which a change stream must keep), the kind and the key are sent: an update's or a
/// replacement's event would otherwise carry the session data.
fn change_stream_command(collection: &str) -> Document {
    doc! {
        "aggregate": collection,
        "pipeline": [
            { "$changeStream": {} },
            { "$match": { "operationType": { "$ne": "insert" } } },
            { "$project": { "operationType": 1, "documentKey": 1 } },
        ],
        "cursor": {},
    }
}

/// The cursor id and the events of an `aggregate` or `getMore` reply.
fn parse_reply(reply: &Document, batch_key: &str) -> Result<Batch> {
    let unexpected = |what: &str| -> Error {
        StoreFault::new(
            STORE_NAME,
            OPERATION,
            format!("unexpected change stream reply: {what}"),
        )
        .into()
    };
    let cursor = reply
        .get_document("cursor")
        .map_err(|_| unexpected("no cursor"))?;
    let cursor_id = match cursor.get("id") {
        Some(Bson::Int64(id)) => *id,
        Some(Bson::Int32(id)) => i64::from(*id),
        _ => return Err(unexpected("no cursor id")),
    };
    let events = cursor
        .get_array(batch_key)
        .map_err(|_| unexpected("no batch"))?
        .iter()
        .map(|event| match event {
            Bson::Document(event) => Ok(event.clone()),
            _ => Err(unexpected("an event that is not a document")),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Batch { cursor_id, events })
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletes_updates_and_replacements_name_their_session() {
        for kind in ["delete", "update", "replace"] {
            let event = doc! { "operationType": kind, "documentKey": { "_id": "ab12" } };
            assert_eq!(
                change_of(&event),
                Change::Session("ab12".to_owned()),
                "{kind}"
            );
        }
    }

    #[test]
    fn an_insert_changes_nothing_cached() {
        let event = doc! { "operationType": "insert", "documentKey": { "_id": "ab12" } };
        assert_eq!(change_of(&event), Change::Nothing);
    }

    #[test]
    fn what_names_no_session_flushes_everything() {
        for event in [
            doc! { "operationType": "drop" },
            doc! { "operationType": "rename" },
            doc! { "operationType": "dropDatabase" },
            doc! { "operationType": "invalidate" },
            doc! { "operationType": "somethingNew", "documentKey": { "_id": "ab12" } },
            doc! { "operationType": "delete" },
            doc! { "operationType": "delete", "documentKey": { "_id": 7 } },
            doc! { "documentKey": { "_id": "ab12" } },
        ] {
            assert_eq!(change_of(&event), Change::Everything, "{event}");
        }
    }

    #[test]
    fn a_reply_gives_its_cursor_and_events() {
        let reply = doc! { "cursor": {
            "id": 42_i64,
            "nextBatch": [{ "operationType": "delete", "documentKey": { "_id": "x" } }],
        }, "ok": 1.0 };
        let batch = parse_reply(&reply, "nextBatch").expect("a valid reply");
        assert_eq!(batch.cursor_id, 42);
        assert_eq!(batch.events.len(), 1);
        assert!(parse_reply(&doc! { "ok": 1.0 }, "nextBatch").is_err());
        assert!(parse_reply(&reply, "firstBatch").is_err());
    }
}
