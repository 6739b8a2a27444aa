// Over 400 lines in one file: one `LISTEN` task, whose connection, heartbeat and trigger check
// share its private state, and the parser of the payloads it hears. (The rest is its unit
// tests.)
//! Pushed invalidations for the engine's near cache: migration 3's trigger `NOTIFY`s every
//! change a cached copy must not outlive, and one `LISTEN` connection per store hears them.
//!
//! The listener is a Tokio task started by the first
//! [`subscribe_invalidations`](narvik_core::SessionStore::subscribe_invalidations) on a pool of
//! its own (one connection, the store pool's connect options, its own `application_name`), so
//! that it never takes a connection the store's calls need and a connection it gave up on can
//! be closed without touching the store's pool.
//!
//! Health is kept strictly: the hub is healthy only between a `LISTEN` confirmed on a live
//! connection (with the triggers present and enabled) and the first sign that a notification
//! may have been missed. sqlx's `PgListener::recv` reconnects silently and drops what was sent
//! meanwhile, so the task uses `try_recv`, which reports the loss, and reconnects itself.
//!
//! The task stops when every clone of the store is dropped (the store holds the sending half
//! of a oneshot, so the task hears of it at once; the task holds only a weak reference to the
//! store's side) or when no subscription is left (counted at every wake-up, at least every
//! 250 ms): a cache that is gone costs the server no connection. Both, because either can go
//! first: an engine may be dropped while the application keeps its store, and a store may be
//! dropped while a cache still holds its subscription (which then reads `Lost` for good). It
//! is a task, not a thread, so it never keeps a process alive.

use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use narvik_core::invalidation::{InvalidationHub, InvalidationSubscription};
use narvik_core::{Error, Result};
use sqlx::postgres::{PgConnectOptions, PgListener, PgNotification, PgPool, PgPoolOptions};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::PostgresConfig;

/// The suffix of the trigger function's name (`<table>_invalidate`), beside the table.
#[cfg_attr(not(feature = "migrate"), allow(dead_code))]
pub(crate) const FUNCTION_SUFFIX: &str = "_invalidate";

/// The triggers of migration 3. The listener is healthy only while all of them are present and
/// fire in ordinary sessions: without them it would hear nothing and call that health.
pub(crate) const TRIGGERS: [&str; 3] = [
    "narvik_invalidate_delete",
    "narvik_invalidate_update",
    "narvik_invalidate_truncate",
];

/// How long the connection may stay silent before the listener asks the server whether it is
/// still there. A frozen server or a partition leaves the socket open and quiet; this bounds
/// how long a cache may trust it (see [`HEARTBEAT_DEADLINE`]).
pub(crate) const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// How long the heartbeat query may take before the connection counts as lost. A missed
/// change is therefore noticed within `HEARTBEAT_INTERVAL + HEARTBEAT_DEADLINE` (2 s).
pub(crate) const HEARTBEAT_DEADLINE: Duration = Duration::from_secs(1);

/// How often a quiet listener looks whether anyone still subscribes, so that the connection
/// of a cache that is gone closes within a quarter of a second, not a heartbeat.
const SUBSCRIBER_CHECK: Duration = Duration::from_millis(250);

/// The first pause before reconnecting: short, since a terminated backend on a healthy server
/// is back at once, and caches serve nothing until then.
const BACKOFF_START: Duration = Duration::from_millis(50);

/// The longest pause between reconnection attempts: the listener is back within 1 s of the
/// server accepting connections again.
const BACKOFF_CAP: Duration = Duration::from_secs(1);

/// The heartbeat: a round trip on the listener's connection that also proves the triggers
/// still fire (`O`: in ordinary sessions, `A`: always). A disabled or dropped trigger would
/// leave the channel silent while every change went unannounced.
const TRIGGER_CHECK: &str = "SELECT count(*) FROM pg_catalog.pg_trigger AS t \
     JOIN pg_catalog.pg_class AS c ON c.oid = t.tgrelid \
     JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace \
     WHERE n.nspname = $1 AND c.relname = $2 AND t.tgname = ANY($3) \
       AND t.tgenabled IN ('O', 'A')";

/// The default `application_name` of the listener's connection, for `pg_stat_activity`.
pub(crate) const DEFAULT_APPLICATION_NAME: &str = "narvik-invalidation";

/// Checks a listener's `application_name`: Postgres silently truncates it past 63 bytes and
/// replaces anything but printable ASCII with `?`, so an operator looking for the configured
/// name in `pg_stat_activity` would not find it.
pub(crate) fn check_application_name(name: &str) -> Result<()> {
    let printable = name.bytes().all(|byte| (b' '..=b'~').contains(&byte));
    if name.is_empty() || name.len() > 63 || !printable {
        return Err(Error::InvalidConfiguration(format!(
            "the listener's application_name must be 1 to 63 bytes of printable ASCII, got \
             {name:?}"
        )));
    }
    Ok(())
}

/// The store's side of its listener.
pub(crate) struct Listener {
    /// Shared with the task through a `Weak`: when the store goes, so does the slot, and with
    /// it the oneshot sender that keeps the task running.
    slot: Arc<Mutex<Slot>>,
    settings: Arc<Settings>,
}

/// What the task needs, fixed when the store is built.
struct Settings {
    channel: String,
    schema: String,
    table: String,
    application_name: String,
    connect_timeout: Duration,
    /// Where the listener connects, when not where the store's pool does (a pool behind a
    /// transaction-pooling PgBouncer, where `LISTEN` does not work).
    connect_options: Option<PgConnectOptions>,
}

#[derive(Default)]
struct Slot {
    /// Created by the first subscription: a hub's channel has its backlog allocated up front,
    /// which a store that never feeds a cache should not pay for.
    hub: Option<InvalidationHub>,
    running: Option<Running>,
    /// Tells a task that stops itself whether the slot still describes it.
    generation: u64,
}

struct Running {
    generation: u64,
    handle: JoinHandle<()>,
    /// Dropped with the store (or when the task stops itself): the task's receiver then ends.
    _stop: oneshot::Sender<()>,
}

impl Listener {
    pub(crate) fn new(
        config: &PostgresConfig,
        application_name: String,
        connect_timeout: Duration,
        connect_options: Option<PgConnectOptions>,
    ) -> Self {
        Self {
            slot: Arc::default(),
            settings: Arc::new(Settings {
                channel: config.invalidation_channel(),
                schema: config.schema().as_str().to_owned(),
                table: config.table().as_str().to_owned(),
                application_name,
                connect_timeout,
                connect_options,
            }),
        }
    }

    /// The channel the listener listens on.
    pub(crate) fn channel(&self) -> &str {
        &self.settings.channel
    }

    /// The listener connection's `application_name`.
    pub(crate) fn application_name(&self) -> &str {
        &self.settings.application_name
    }

    /// A new subscription; starts the listener task unless it is running. Outside a Tokio
    /// runtime nothing can be started: the subscription then stays unhealthy (a cache on it
    /// serves nothing) until a later call from within a runtime starts the task.
    pub(crate) fn subscribe(&self, pool: &PgPool) -> InvalidationSubscription {
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        let hub = slot.hub.get_or_insert_with(InvalidationHub::new).clone();
        // Subscribed under the lock: a task deciding under the same lock that nobody listens
        // any more sees this subscription, so it cannot stop just after it was counted out.
        let subscription = hub.subscribe();
        let running = slot
            .running
            .as_ref()
            .is_some_and(|running| !running.handle.is_finished());
        if running {
            return subscription;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                "narvik-postgres: subscribe_invalidations outside a Tokio runtime; the \
                 invalidation listener is not started and the subscription stays unhealthy"
            );
            return subscription;
        };
        let (stop, stopped) = oneshot::channel();
        slot.generation += 1;
        let task = Task {
            slot: Arc::downgrade(&self.slot),
            generation: slot.generation,
            hub,
            settings: Arc::clone(&self.settings),
            options: self
                .settings
                .connect_options
                .clone()
                .unwrap_or_else(|| pool.connect_options().as_ref().clone())
                .application_name(&self.settings.application_name),
        };
        slot.running = Some(Running {
            generation: slot.generation,
            handle: runtime.spawn(task.run(stopped)),
            _stop: stop,
        });
        subscription
    }
}

/// The listener task's state.
struct Task {
    slot: Weak<Mutex<Slot>>,
    generation: u64,
    hub: InvalidationHub,
    settings: Arc<Settings>,
    options: PgConnectOptions,
}

/// Marks the channel lost when the task ends, however it ends (a panic included), so that no
/// cache trusts a channel nobody listens on.
struct LostOnExit(InvalidationHub);

impl Drop for LostOnExit {
    fn drop(&mut self) {
        self.0.lost();
    }
}

/// How one connection's session ended.
enum Ended {
    /// The store is gone or nobody subscribes: the task ends.
    Stop,
    /// The connection failed or may have missed a notification; `served` if it had been
    /// healthy (the next attempt starts at the shortest back-off).
    Lost { served: bool },
}

impl Task {
    async fn run(self, mut stopped: oneshot::Receiver<()>) {
        let _lost_on_exit = LostOnExit(self.hub.clone());
        let mut backoff = BACKOFF_START;
        // After the first failed attempt in a row, the next ones are logged at debug: an
        // outage would otherwise log a warning a second.
        let mut failing = false;
        loop {
            if self.stop_if_unwatched() {
                return;
            }
            match self.session(&mut stopped, failing).await {
                Ended::Stop => return,
                Ended::Lost { served } => {
                    failing = !served;
                    if served {
                        backoff = BACKOFF_START;
                    }
                }
            }
            tokio::select! {
                _ = &mut stopped => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_CAP);
        }
    }

    /// Whether the task should end: the store is gone, or no subscription is left (then the
    /// slot is cleared under its lock, so the next subscription starts a new task).
    fn stop_if_unwatched(&self) -> bool {
        let Some(slot) = self.slot.upgrade() else {
            return true;
        };
        let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
        if self.hub.subscriber_count() > 0 {
            return false;
        }
        if slot
            .running
            .as_ref()
            .is_some_and(|running| running.generation == self.generation)
        {
            slot.running = None;
        }
        true
    }

    /// One connection: connect, `LISTEN`, check the triggers, then deliver notifications and
    /// heartbeat until the connection is lost or the task is to stop.
    async fn session(&self, stopped: &mut oneshot::Receiver<()>, failing: bool) -> Ended {
        // A pool of one, per connection: `PgListener` wants a pool, and a connection given up
        // on (a frozen server) may linger in sqlx's `UNLISTEN` on drop; it then holds only this
        // pool, which is closed, never the next connection's.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .acquire_timeout(self.settings.connect_timeout)
            .idle_timeout(None)
            .max_lifetime(None)
            .test_before_acquire(false)
            .connect_lazy_with(self.options.clone());
        let ended = tokio::select! {
            _ = &mut *stopped => Ended::Stop,
            ended = self.listen(&pool, failing) => ended,
        };
        // Marks the pool closed at once (the future is not needed): a connection still held
        // by a dropped listener is closed when it comes back instead of idling.
        drop(pool.close());
        ended
    }

    async fn listen(&self, pool: &PgPool, failing: bool) -> Ended {
        let connect = async {
            let mut listener = PgListener::connect_with(pool).await?;
            // Report a lost connection, never reconnect behind our back.
            listener.eager_reconnect(false);
            listener.listen(&self.settings.channel).await?;
            let watching = self.triggers_fire(&mut listener).await?;
            Ok::<_, sqlx::Error>((listener, watching))
        };
        let deadline = self.settings.connect_timeout + HEARTBEAT_DEADLINE;
        let cause = match tokio::time::timeout(deadline, connect).await {
            Ok(Ok(connected)) => Ok(connected),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!("no connection within {deadline:?}")),
        };
        let (mut listener, mut watching) = match cause {
            Ok(connected) => connected,
            Err(cause) if failing => {
                tracing::debug!(%cause, "narvik-postgres: the invalidation listener cannot connect");
                return Ended::Lost { served: false };
            }
            Err(cause) => {
                tracing::warn!(%cause, "narvik-postgres: the invalidation listener cannot connect");
                return Ended::Lost { served: false };
            }
        };
        let mut served = false;
        if watching {
            served = true;
            self.hub.subscribed();
        } else {
            self.warn_unwatched();
        }
        // Every interval, busy or not: a stream of notifications proves the connection is
        // alive, but not that every trigger still fires.
        let mut next_heartbeat = tokio::time::Instant::now() + HEARTBEAT_INTERVAL;
        let cause = loop {
            if self.stop_if_unwatched() {
                return Ended::Stop;
            }
            let wake = next_heartbeat.min(tokio::time::Instant::now() + SUBSCRIBER_CHECK);
            // `try_recv` is cancel-safe: a message half read stays buffered for the next call.
            match tokio::time::timeout_at(wake, listener.try_recv()).await {
                Ok(Ok(Some(notification))) => self.deliver(&notification),
                Ok(Ok(None)) => break "the connection was closed".to_owned(),
                Ok(Err(error)) => break error.to_string(),
                Err(_) if tokio::time::Instant::now() < next_heartbeat => {}
                Err(_due) => {
                    next_heartbeat = tokio::time::Instant::now() + HEARTBEAT_INTERVAL;
                    match tokio::time::timeout(
                        HEARTBEAT_DEADLINE,
                        self.triggers_fire(&mut listener),
                    )
                    .await
                    {
                        Ok(Ok(true)) if !watching => {
                            watching = true;
                            served = true;
                            self.hub.subscribed();
                        }
                        Ok(Ok(false)) if watching => {
                            watching = false;
                            self.hub.lost();
                            self.warn_unwatched();
                        }
                        Ok(Ok(_)) => {}
                        Ok(Err(error)) => break format!("heartbeat failed: {error}"),
                        Err(_) => {
                            break format!(
                                "no answer to the heartbeat within {HEARTBEAT_DEADLINE:?}"
                            )
                        }
                    }
                }
            }
        };
        // Before anything else: every cache stops serving the moment a change may be missed.
        self.hub.lost();
        tracing::warn!(cause = %cause, "narvik-postgres: the invalidation listener lost its connection");
        Ended::Lost { served }
    }

    /// Whether all of migration 3's triggers are on the table and fire in ordinary sessions.
    async fn triggers_fire(&self, listener: &mut PgListener) -> sqlx::Result<bool> {
        let enabled: i64 = sqlx::query_scalar(TRIGGER_CHECK)
            .bind(&self.settings.schema)
            .bind(&self.settings.table)
            .bind(&TRIGGERS[..])
            .fetch_one(listener)
            .await?;
        Ok(usize::try_from(enabled).is_ok_and(|enabled| enabled == TRIGGERS.len()))
    }

    fn warn_unwatched(&self) {
        tracing::warn!(
            schema = %self.settings.schema,
            table = %self.settings.table,
            "narvik-postgres: the invalidation triggers are missing or disabled (run migrate); \
             near caches stay bypassed"
        );
    }

    fn deliver(&self, notification: &PgNotification) {
        // sqlx's `payload()` unwraps its UTF-8 conversion. The server should never send
        // anything else to a UTF-8 client (a SQL_ASCII database checks NOTIFY bytes on the way
        // and ends the connection instead: tests/faults.rs), but a panic here would end the
        // task, so it is contained: a payload that cannot be read means flush everything.
        let parsed = panic::catch_unwind(AssertUnwindSafe(|| parse(notification.payload())))
            .unwrap_or(Payload::Everything);
        match parsed {
            Payload::Everything => self.hub.invalidate_everything(),
            Payload::Sessions(ids) => self.hub.invalidate(ids),
        }
    }
}

/// What a payload says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Payload {
    /// Anything may have changed: `*`, or a payload this version cannot read.
    Everything,
    /// These sessions changed.
    Sessions(Vec<String>),
}

/// Reads a payload of migration 3's trigger: `*`, or ids joined by `,`, each either plain or
/// `%` and the hex of its UTF-8 bytes. Anything else (an empty payload from a bare `NOTIFY`,
/// a malformed item, hex that is not UTF-8) is [`Payload::Everything`]: a notification that
/// cannot be read may have named any session.
pub(crate) fn parse(payload: &str) -> Payload {
    if payload == "*" || payload.is_empty() {
        return Payload::Everything;
    }
    let mut ids = Vec::new();
    for item in payload.split(',') {
        let id = match item.strip_prefix('%') {
            Some(hex) => hex::decode(hex)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok()),
            // The trigger writes these in hex; seen plain, the payload is not the trigger's.
            None if item.is_empty() || item == "*" || item.contains('%') => None,
            None => Some(item.to_owned()),
        };
        match id {
            Some(id) => ids.push(id),
            None => return Payload::Everything,
        }
    }
    Payload::Sessions(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions(ids: &[&str]) -> Payload {
        Payload::Sessions(ids.iter().map(|id| (*id).to_owned()).collect())
    }

    #[test]
    fn plain_and_hex_ids_are_read() {
        let id = "a".repeat(64);
        assert_eq!(parse(&id), sessions(&[&id]));
        assert_eq!(parse("ab,cd"), sessions(&["ab", "cd"]));
        // The trigger's encodings of "", "*", "a,b", "50%" and "Å".
        assert_eq!(
            parse("%,%2a,%612c62,%353025,%c385"),
            sessions(&["", "*", "a,b", "50%", "Å"])
        );
        assert_eq!(parse("%C385"), sessions(&["Å"]), "either case of hex");
        assert_eq!(parse("x y\u{1F600}'\""), sessions(&["x y\u{1F600}'\""]));
    }

    #[test]
    fn anything_else_means_everything() {
        for payload in [
            "",
            "*",
            "a,",
            ",a",
            "a,,b",
            "a,*",
            "a%b",
            "%6",
            "%zz",
            "%ff",
            "%c3",
            "%+1",
            "%\u{e9}\u{e9}",
        ] {
            assert_eq!(parse(payload), Payload::Everything, "{payload:?}");
        }
    }

    #[test]
    fn application_names_postgres_would_alter_are_rejected() {
        assert!(check_application_name("narvik-invalidation").is_ok());
        assert!(check_application_name(&"n".repeat(63)).is_ok());
        for bad in ["", "é", "a\nb", "a\0b"] {
            assert!(check_application_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_application_name(&"n".repeat(64)).is_err());
    }
}
