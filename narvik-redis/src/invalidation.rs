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
mod cluster {
    //! Tracking on a cluster: `BCAST` tracking is per node, so one tracking connection to every
    //! primary, and the hub healthy only while all of them are up and the slots are where they
    //! were when tracking started (a failover or a resharding moves writes to a node that may not
    //! be tracked, so any change of the slot table is a loss and a rebuild).

    use std::collections::BTreeSet;

    use redis::{ConnectionAddr, ConnectionInfo};

    use super::*;

    /// How often every primary is asked for its slot table (it is also their heartbeat).
    const CHECK_EVERY: Duration = Duration::from_secs(1);

    /// One session: the slot table from any node, a tracking connection to each primary, each
    /// of which confirms the same table once tracking is on; then every push relayed until a
    /// connection is lost, a table differs, or nobody listens.
    pub(super) async fn session(
        seeds: &[ConnectionInfo],
        known: &mut Vec<ConnectionInfo>,
        settings: &Settings,
        hub: &InvalidationHub,
    ) -> Result<Unwatched, Loss> {
        let template = seeds.first().ok_or(Loss::NoNode)?;
        let topology = discover(known.iter().chain(seeds), settings).await?;
        let (sender, mut pushes) = mpsc::unbounded_channel();
        let mut links = Vec::new();
        let mut infos = Vec::new();
        for node in topology.primaries() {
            let info = node_info(template, node);
            let client = Client::open(info.clone()).map_err(Loss::Connect)?;
            let mut connection = open_tracking(&client, settings, &sender).await?;
            // Asked after tracking is on: a move before this answer is seen here, one after it
            // by the next check.
            check(&mut connection, &node.host, &topology).await?;
            links.push((connection, node.host.clone()));
            infos.push(info);
        }
        drop(sender);
        *known = infos;
        hub.subscribed();
        let mut checked = Instant::now();
        let mut ticks = tokio::time::interval(TICK);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                push = pushes.recv() => {
                    relay(push.ok_or(Loss::Closed)?, &settings.record_prefix, hub)?;
                }
                _ = ticks.tick() => {
                    if hub.subscriber_count() == 0 {
                        return Ok(Unwatched);
                    }
                    if checked.elapsed() >= CHECK_EVERY {
                        for (connection, host) in &mut links {
                            check(connection, host, &topology).await?;
                        }
                        checked = Instant::now();
                    }
                }
            }
        }
    }

    /// The slot table, from the first node that answers.
    async fn discover<'a>(
        nodes: impl Iterator<Item = &'a ConnectionInfo>,
        settings: &Settings,
    ) -> Result<Topology, Loss> {
        let mut last = Loss::NoNode;
        for info in nodes {
            let asked = host_of(info);
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(settings.connect_timeout))
                .set_response_timeout(Some(DEADLINE));
            let attempt = async {
                let client = Client::open(info.clone()).map_err(Loss::Connect)?;
                let mut connection = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map_err(Loss::Connect)?;
                slots(&mut connection, &asked).await
            };
            match attempt.await {
                Ok(topology) => return Ok(topology),
                Err(error) => last = error,
            }
        }
        Err(last)
    }

    /// Whether the node behind `connection` still serves the slots as `expected`.
    async fn check(
        connection: &mut MultiplexedConnection,
        host: &str,
        expected: &Topology,
    ) -> Result<(), Loss> {
        if slots(connection, host).await? == *expected {
            Ok(())
        } else {
            Err(Loss::Topology)
        }
    }

    async fn slots(connection: &mut MultiplexedConnection, asked: &str) -> Result<Topology, Loss> {
        let reply: Value = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(connection)
            .await
            .map_err(Loss::command)?;
        Topology::parse(&reply, asked).ok_or(Loss::Unreadable)
    }

    /// The connection settings of a node: the address the cluster gives, everything else (TLS,
    /// credentials, RESP3) as the nodes the store was given, as the cluster client does.
    fn node_info(template: &ConnectionInfo, node: &Node) -> ConnectionInfo {
        let mut addr = template.addr().clone();
        match &mut addr {
            ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
                host.clone_from(&node.host);
                *port = node.port;
            }
            _ => addr = ConnectionAddr::Tcp(node.host.clone(), node.port),
        }
        template.clone().set_addr(addr)
    }

    fn host_of(info: &ConnectionInfo) -> String {
        match info.addr() {
            ConnectionAddr::Tcp(host, _) | ConnectionAddr::TcpTls { host, .. } => host.clone(),
            _ => String::new(),
        }
    }

    /// A primary, as `CLUSTER SLOTS` names it.
    #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
    pub(super) struct Node {
        id: String,
        host: String,
        port: u16,
    }

    /// The slot ranges and their primaries, in slot order.
    #[derive(Debug, PartialEq, Eq)]
    pub(super) struct Topology(Vec<(i64, i64, Node)>);

    impl Topology {
        /// Reads a `CLUSTER SLOTS` reply (RESP2 or RESP3): `None` for anything unexpected, and
        /// for a node serving no slots (the cluster is not formed yet). An empty endpoint means
        /// the node asked (`asked`); `?` an endpoint the node does not know, which is no
        /// address to connect to.
        pub(super) fn parse(reply: &Value, asked: &str) -> Option<Self> {
            let Value::Array(entries) = reply else {
                return None;
            };
            let mut ranges = Vec::with_capacity(entries.len());
            for entry in entries {
                let Value::Array(fields) = entry else {
                    return None;
                };
                let [Value::Int(start), Value::Int(end), Value::Array(primary), ..] =
                    fields.as_slice()
                else {
                    return None;
                };
                let [host, Value::Int(port), id, ..] = primary.as_slice() else {
                    return None;
                };
                let host = match text(host)? {
                    "" => asked,
                    "?" => return None,
                    host => host,
                };
                let node = Node {
                    id: text(id)?.to_owned(),
                    host: host.to_owned(),
                    port: u16::try_from(*port).ok()?,
                };
                ranges.push((*start, *end, node));
            }
            if ranges.is_empty() {
                return None;
            }
            ranges.sort();
            Some(Self(ranges))
        }

        /// Every primary serving a slot, once.
        pub(super) fn primaries(&self) -> BTreeSet<&Node> {
            self.0.iter().map(|(_, _, node)| node).collect()
        }
    }

    fn text(value: &Value) -> Option<&str> {
        match value {
            Value::BulkString(bytes) => std::str::from_utf8(bytes).ok(),
            Value::SimpleString(text) => Some(text),
            Value::VerbatimString { text, .. } => Some(text),
            _ => None,
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn bulk(text: &str) -> Value {
            Value::BulkString(text.as_bytes().to_vec())
        }

        fn range(start: i64, end: i64, host: &str, port: i64, id: &str) -> Value {
            Value::Array(vec![
                Value::Int(start),
                Value::Int(end),
                Value::Array(vec![
                    bulk(host),
                    Value::Int(port),
                    bulk(id),
                    Value::Map(vec![]),
                ]),
                // A replica: not tracked.
                Value::Array(vec![bulk("10.0.0.9"), Value::Int(7009), bulk("r")]),
            ])
        }

        #[test]
        fn slot_tables_are_read_in_slot_order_with_their_primaries() {
            let reply = Value::Array(vec![
                range(8192, 16383, "", 7001, "b"),
                range(0, 8191, "10.0.0.1", 7000, "a"),
            ]);
            let topology = Topology::parse(&reply, "seed").expect("readable");
            let primaries: Vec<(&str, &str, u16)> = topology
                .primaries()
                .into_iter()
                .map(|node| (node.id.as_str(), node.host.as_str(), node.port))
                .collect();
            assert_eq!(primaries, [("a", "10.0.0.1", 7000), ("b", "seed", 7001)]);
            let reordered = Value::Array(vec![
                range(0, 8191, "10.0.0.1", 7000, "a"),
                range(8192, 16383, "", 7001, "b"),
            ]);
            assert_eq!(Topology::parse(&reordered, "seed"), Some(topology));
        }

        #[test]
        fn unreadable_slot_tables_are_none() {
            for reply in [
                Value::Nil,
                Value::Array(vec![]),
                Value::Array(vec![range(0, 1, "?", 7000, "a")]),
                Value::Array(vec![range(0, 1, "h", 70000, "a")]),
                Value::Array(vec![Value::Array(vec![Value::Int(0), Value::Int(1)])]),
                Value::Array(vec![Value::Array(vec![
                    Value::Int(0),
                    Value::Int(1),
                    Value::Array(vec![bulk("h"), bulk("7000"), bulk("a")]),
                ])]),
                Value::Array(vec![Value::Int(3)]),
            ] {
                assert_eq!(Topology::parse(&reply, "seed"), None, "{reply:?}");
            }
        }
    }
}

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
