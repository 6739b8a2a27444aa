// Over 400 lines only with its unit tests (`mod tests`); the code above them is under 400 (the
// cluster's tracking is in `invalidation/cluster.rs`).
//! The invalidation listener behind [`RedisStore::subscribe_invalidations`]: a connection of its
//! own to every server that takes writes, on which Redis pushes the name of every session record
//! written (`CLIENT TRACKING ON BCAST PREFIX P:s:`), turned into session ids for the engine's near
//! cache through an [`InvalidationHub`].
//!
//! The hub is healthy only while every such connection is up and tracking. Anything that may have
//! cost a push (a closed connection, an unanswered heartbeat, a moved slot) makes it lost at once;
//! the listener then reconnects, turns tracking on again and only then says it is subscribed.
//!
//! [`RedisStore::subscribe_invalidations`]: narvik_core::SessionStore::subscribe_invalidations

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use narvik_core::invalidation::{InvalidationHub, InvalidationSubscription};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, PushInfo, PushKind, RedisError, Value};
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;

/// The first pause before reconnecting after a loss, doubled after each failed attempt up to
/// [`MAX_PAUSE`]: a server that comes back is listened to again within about a second, and one
/// that stays down costs one attempt a second.
const FIRST_PAUSE: Duration = Duration::from_millis(50);
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// How often the listener looks at its subscribers and at the silence of its connections.
const TICK: Duration = Duration::from_millis(250);

/// A frozen server, or one cut off by the network, leaves the socket silent rather than closed:
/// after this long without a push, a `PING` must come back within [`DEADLINE`], or the channel
/// is lost. Both bound how long a partition can go unnoticed (see the README).
const SILENCE: Duration = Duration::from_secs(1);
const DEADLINE: Duration = Duration::from_secs(1);

/// Where the listener connects.
pub(crate) enum Source {
    /// One server, through the store's own client (its URL, credentials and TLS, on RESP3).
    Single(Box<Client>),
    /// A cluster, given some of its nodes (RESP3): tracking is per node, so the listener holds
    /// one connection to each primary.
    #[cfg(feature = "cluster")]
    Cluster(Vec<redis::ConnectionInfo>),
}

/// What every connection of one listener is opened with.
struct Settings {
    source: Source,
    /// `P:s:`: the record keys, the only ones whose writes matter to a cache of sessions (the
    /// user indexes and the expiry queue are not tracked, so their writes cost no push).
    record_prefix: String,
    /// `CLIENT SETNAME`: how operators and tests find the listener in `CLIENT LIST`.
    name: String,
    connect_timeout: Duration,
}

/// A store's invalidation channel: the hub its subscribers read, and the listener task that
/// feeds it, started by the first subscription.
pub(crate) struct Invalidations {
    hub: InvalidationHub,
    settings: Arc<Settings>,
    /// Whether a listener task runs. It stops when its last subscriber is gone, and the next
    /// subscription starts another.
    running: Arc<AtomicBool>,
    /// Never sent on: dropped with the store, which ends its listener at once (the task holds
    /// nothing of the store, so it never keeps the store, or the process, alive).
    stop: watch::Sender<()>,
}

impl Invalidations {
    /// A channel that is not healthy until its listener, started by the first
    /// [`Invalidations::subscribe`], is tracking.
    pub(crate) fn new(
        source: Source,
        record_prefix: String,
        name: String,
        connect_timeout: Duration,
    ) -> Self {
        Self {
            hub: InvalidationHub::new(),
            settings: Arc::new(Settings {
                source,
                record_prefix,
                name,
                connect_timeout,
            }),
            running: Arc::new(AtomicBool::new(false)),
            stop: watch::channel(()).0,
        }
    }

    /// The name the listener's connections carry (`CLIENT SETNAME`).
    pub(crate) fn name(&self) -> &str {
        &self.settings.name
    }

    /// A new subscription; starts the listener if none runs.
    pub(crate) fn subscribe(&self) -> InvalidationSubscription {
        // Subscribed before the listener may look at the count: it never stops for want of
        // this subscriber.
        let subscription = self.hub.subscribe();
        if self
            .running
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(listen(
                        Arc::clone(&self.settings),
                        self.hub.clone(),
                        Arc::clone(&self.running),
                        self.stop.subscribe(),
                    ));
                }
                Err(_) => {
                    // The subscription stays unhealthy (nothing is served from a cache), and a
                    // later subscription from within a runtime starts the listener.
                    self.running.store(false, Ordering::SeqCst);
                    tracing::warn!(
                        "narvik-redis: subscribe_invalidations called outside a Tokio runtime; \
                         no listener started"
                    );
                }
            }
        }
        subscription
    }
}

/// Why the listener may have missed a push.
#[derive(Debug, thiserror::Error)]
enum Loss {
    #[error("cannot connect: {0}")]
    Connect(#[source] RedisError),
    #[error("a command failed: {0}")]
    Command(#[source] RedisError),
    #[error("the connection closed")]
    Closed,
    #[error("no answer within {DEADLINE:?}")]
    Silent,
    #[cfg(feature = "cluster")]
    #[error("the cluster's slots moved")]
    Topology,
    #[cfg(feature = "cluster")]
    #[error("unreadable CLUSTER SLOTS reply")]
    Unreadable,
    #[cfg(feature = "cluster")]
    #[error("no cluster node was given")]
    NoNode,
}

impl Loss {
    fn command(error: RedisError) -> Self {
        if error.is_timeout() {
            Self::Silent
        } else {
            Self::Command(error)
        }
    }
}

/// A session ended because nobody listens any more.
struct Unwatched;

/// Ends the channel's health with the listener task however the task ends unannounced (the
/// store dropped, a panic, or its runtime shutting down and dropping it): the hub never says
/// healthy with nothing listening, and the next subscription starts a new listener.
struct Ending {
    hub: InvalidationHub,
    running: Arc<AtomicBool>,
    /// Cleared when the task has already stopped for want of subscribers ([`release`]): a task
    /// started since then must not be undone.
    armed: bool,
}

impl Drop for Ending {
    fn drop(&mut self) {
        if self.armed {
            self.hub.lost();
            self.running.store(false, Ordering::SeqCst);
        }
    }
}

/// The listener task: one session after another (connect, track, relay), with the hub lost in
/// between. Ends when the store is dropped, or when no subscriber is left.
async fn listen(
    settings: Arc<Settings>,
    hub: InvalidationHub,
    running: Arc<AtomicBool>,
    mut stop: watch::Receiver<()>,
) {
    let mut ending = Ending {
        hub: hub.clone(),
        running: Arc::clone(&running),
        armed: true,
    };
    let mut pause = FIRST_PAUSE;
    // The primaries of the last healthy session, asked first for the slots next time: the nodes
    // the store was given may have left the cluster since.
    #[cfg(feature = "cluster")]
    let mut known: Vec<redis::ConnectionInfo> = Vec::new();
    loop {
        let session = async {
            match &settings.source {
                Source::Single(client) => single(client, &settings, &hub).await,
                #[cfg(feature = "cluster")]
                Source::Cluster(seeds) => {
                    cluster::session(seeds, &mut known, &settings, &hub).await
                }
            }
        };
        let outcome = tokio::select! {
            biased;
            // Only ever an error: the store is gone (`ending` makes the hub lost).
            _ = stop.changed() => return,
            outcome = session => outcome,
        };
        let was_healthy = hub.is_healthy();
        hub.lost();
        match outcome {
            Ok(Unwatched) => {
                if release(&hub, &running) {
                    ending.armed = false;
                    return;
                }
                continue;
            }
            Err(cause) if was_healthy => {
                tracing::warn!(%cause, name = %settings.name, "narvik-redis: invalidation channel lost; reconnecting");
                pause = FIRST_PAUSE;
            }
            Err(cause) => {
                tracing::debug!(%cause, name = %settings.name, "narvik-redis: invalidation listener cannot track yet");
            }
        }
        tokio::select! {
            biased;
            _ = stop.changed() => return,
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(MAX_PAUSE);
        if hub.subscriber_count() == 0 && release(&hub, &running) {
            ending.armed = false;
            return;
        }
    }
}

/// Lets the listener stop for want of subscribers, unless one arrived meanwhile: `false` when
/// this task must go on. A subscription either sees `running` false (and starts a new task), or
/// is counted here.
fn release(hub: &InvalidationHub, running: &AtomicBool) -> bool {
    running.store(false, Ordering::SeqCst);
    !(hub.subscriber_count() > 0
        && running
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok())
}

/// Opens one tracking connection: named, and tracking every write under the record prefix, with
/// its pushes (and its end, as a `Disconnection` push) sent to `pushes`.
///
/// `BCAST` because the store reads through other connections: default tracking only reports
/// keys read on the tracking connection itself.
async fn open_tracking(
    client: &Client,
    settings: &Settings,
    pushes: &mpsc::UnboundedSender<PushInfo>,
) -> Result<MultiplexedConnection, Loss> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(settings.connect_timeout))
        .set_response_timeout(Some(DEADLINE))
        .set_push_sender(pushes.clone());
    let mut connection = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(Loss::Connect)?;
    redis::pipe()
        .cmd("CLIENT")
        .arg("SETNAME")
        .arg(&settings.name)
        .ignore()
        .cmd("CLIENT")
        .arg("TRACKING")
        .arg("ON")
        .arg("BCAST")
        .arg("PREFIX")
        .arg(&settings.record_prefix)
        .ignore()
        .query_async::<()>(&mut connection)
        .await
        .map_err(Loss::command)?;
    Ok(connection)
}

/// One session on a single server: tracking on, then every push relayed until the connection is
/// lost or nobody listens.
async fn single(
    client: &Client,
    settings: &Settings,
    hub: &InvalidationHub,
) -> Result<Unwatched, Loss> {
    let (sender, mut pushes) = mpsc::unbounded_channel();
    let mut connection = open_tracking(client, settings, &sender).await?;
    // The connection's driver holds the only sender left: the channel ends with it.
    drop(sender);
    hub.subscribed();
    let mut heard = Instant::now();
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            push = pushes.recv() => {
                let push = push.ok_or(Loss::Closed)?;
                heard = Instant::now();
                relay(push, &settings.record_prefix, hub)?;
            }
            _ = ticks.tick() => {
                if hub.subscriber_count() == 0 {
                    return Ok(Unwatched);
                }
                if heard.elapsed() >= SILENCE {
                    let _: Value = redis::cmd("PING")
                        .query_async(&mut connection)
                        .await
                        .map_err(Loss::command)?;
                    heard = Instant::now();
                }
            }
        }
    }
}

/// Hands one push to the hub; a `Disconnection` (the driver saw the socket end) is a loss.
fn relay(push: PushInfo, record_prefix: &str, hub: &InvalidationHub) -> Result<(), Loss> {
    match push.kind {
        PushKind::Disconnection => Err(Loss::Closed),
        PushKind::Invalidate => {
            match invalidated(&push.data, record_prefix) {
                Invalidated::Sessions(ids) => hub.invalidate(ids),
                Invalidated::Everything => hub.invalidate_everything(),
            }
            Ok(())
        }
        // Nothing else is asked for on this connection.
        _ => Ok(()),
    }
}

/// What one `invalidate` push says.
#[derive(Debug, PartialEq, Eq)]
enum Invalidated {
    Sessions(Vec<String>),
    Everything,
}

/// Reads an `invalidate` push: the record keys it names, as session ids. A null key list
/// (`FLUSHALL`, `FLUSHDB`) or anything that is not a record key of this store (it cannot be
/// mapped to the session it may have been) invalidates everything.
fn invalidated(data: &[Value], record_prefix: &str) -> Invalidated {
    let keys = match data.first() {
        Some(Value::Array(keys) | Value::Set(keys)) => keys,
        _ => return Invalidated::Everything,
    };
    let mut ids = Vec::with_capacity(keys.len());
    for key in keys {
        let bytes = match key {
            Value::BulkString(bytes) => bytes.as_slice(),
            Value::SimpleString(text) => text.as_bytes(),
            _ => return Invalidated::Everything,
        };
        let Some(id) = bytes.strip_prefix(record_prefix.as_bytes()) else {
            return Invalidated::Everything;
        };
        let Ok(id) = std::str::from_utf8(id) else {
            return Invalidated::Everything;
        };
        ids.push(id.to_owned());
    }
    Invalidated::Sessions(ids)
}

#[cfg(feature = "cluster")]
mod cluster;

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(keys: &[&[u8]]) -> Vec<Value> {
        vec![Value::Array(
            keys.iter()
                .map(|key| Value::BulkString(key.to_vec()))
                .collect(),
        )]
    }

    #[test]
    fn record_keys_become_session_ids() {
        assert_eq!(
            invalidated(&keys(&[b"app:s:a1", b"app:s:", b"app:s:{x}:s:y"]), "app:s:"),
            Invalidated::Sessions(vec!["a1".into(), String::new(), "{x}:s:y".into()])
        );
        assert_eq!(
            invalidated(&keys(&[]), "app:s:"),
            Invalidated::Sessions(vec![])
        );
    }

    #[test]
    fn a_flush_or_anything_unmappable_invalidates_everything() {
        for data in [
            // FLUSHALL / FLUSHDB.
            vec![Value::Nil],
            vec![],
            vec![Value::Int(1)],
            keys(&[b"app:s:a1", b"other:s:a1"]),
            keys(&[b"app:s:\xff"]),
            vec![Value::Array(vec![Value::Int(4)])],
        ] {
            assert_eq!(
                invalidated(&data, "app:s:"),
                Invalidated::Everything,
                "{data:?}"
            );
        }
    }

    /// Nothing listens on port 1 of loopback: the listener never gets to track.
    fn unreachable() -> Invalidations {
        let client = Client::open("redis://127.0.0.1:1/?protocol=resp3").expect("valid URL");
        Invalidations::new(
            Source::Single(Box::new(client)),
            "p:s:".to_owned(),
            "narvik-unit".to_owned(),
            Duration::from_millis(100),
        )
    }

    #[test]
    fn a_subscription_outside_a_runtime_starts_nothing_and_is_never_healthy() {
        let invalidations = unreachable();
        let subscription = invalidations.subscribe();
        assert!(!subscription.is_healthy());
        assert!(!invalidations.running.load(Ordering::SeqCst));
        // A later subscription inside a runtime starts the listener; it stays unhealthy (the
        // server is unreachable) and ends once the store (here, the channel) is dropped.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let mut inside = invalidations.subscribe();
            assert!(invalidations.running.load(Ordering::SeqCst));
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(!inside.is_healthy());
            drop(invalidations);
            use narvik_core::invalidation::Invalidation;
            // The hub's last sender went with the task: closed, which reads as lost.
            let closed = tokio::time::timeout(Duration::from_secs(2), inside.recv()).await;
            assert_eq!(closed.ok(), Some(Invalidation::Lost));
        });
        drop(subscription);
    }

    #[tokio::test]
    async fn pushes_reach_the_hub_and_a_disconnection_is_a_loss() {
        let hub = InvalidationHub::new();
        let mut subscription = hub.subscribe();
        let push = |kind, data| PushInfo { kind, data };
        relay(push(PushKind::Invalidate, keys(&[b"p:s:id"])), "p:s:", &hub).expect("relayed");
        relay(push(PushKind::Invalidate, vec![Value::Nil]), "p:s:", &hub).expect("relayed");
        relay(push(PushKind::Message, vec![Value::Nil]), "p:s:", &hub).expect("ignored");
        assert!(matches!(
            relay(push(PushKind::Disconnection, vec![]), "p:s:", &hub),
            Err(Loss::Closed)
        ));
        use narvik_core::invalidation::Invalidation;
        assert_eq!(
            subscription.recv().await,
            Invalidation::Sessions(vec!["id".into()])
        );
        assert_eq!(subscription.recv().await, Invalidation::Everything);
    }
}
