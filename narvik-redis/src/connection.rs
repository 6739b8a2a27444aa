//! The connections a store talks through, behind one [`ConnectionLike`] type.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use narvik_core::Result;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{
    AsyncConnectionConfig, Client, Cmd, Pipeline, PushInfo, PushKind, RedisError, RedisFuture,
    Value,
};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::error::Failure;

/// How long a call that finds the connection closed reuses the last failed attempt's error
/// instead of trying again: while the server is down, a burst of calls costs one connection
/// attempt per pause, not one each. Well under the 1 s recovery bound.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// The background reconnection's first pause between attempts, doubled after each failure up
/// to [`MAX_PAUSE`]: with no traffic, a server that comes back is reconnected within
/// `MAX_PAUSE` (calls do not wait for it: they try themselves).
const FIRST_PAUSE: Duration = Duration::from_millis(25);
const MAX_PAUSE: Duration = Duration::from_millis(500);

/// Why the background task is woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    /// The connection closed (the driver saw the socket end, or a command failed on it).
    Closed,
    /// A call ran out of time on a connection that is still open: the server may be gone
    /// without closing it (a half-open connection), or only slow.
    Suspect,
}

/// One multiplexed connection and whether it has closed.
struct Link {
    connection: MultiplexedConnection,
    closed: Arc<AtomicBool>,
}

impl Link {
    /// Opens a connection whose driver reports its own end: the connection speaks RESP3, so
    /// the driver sends a `Disconnection` push the moment the socket closes, which marks the
    /// link closed and wakes the background task to reconnect at once, with no call waiting.
    async fn open(
        client: &Client,
        config: &AsyncConnectionConfig,
        wake: &UnboundedSender<Wake>,
    ) -> std::result::Result<Self, RedisError> {
        let closed = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&closed);
        let wake = wake.clone();
        let config = config.clone().set_push_sender(move |push: PushInfo| {
            if push.kind == PushKind::Disconnection {
                flag.store(true, Ordering::Release);
                // The receiver is gone only when the store is: nothing to reconnect.
                let _ = wake.send(Wake::Closed);
            }
            Ok::<(), Infallible>(())
        });
        let connection = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        Ok(Self { connection, closed })
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn handles(&self) -> (MultiplexedConnection, Arc<AtomicBool>) {
        (self.connection.clone(), Arc::clone(&self.closed))
    }
}

/// One multiplexed connection shared by every task, replaced in the background as soon as it
/// closes.
///
/// The hot path is a lock-free load, a flag check and a clone of the connection handle. A
/// closed connection is noticed by its driver (a `Disconnection` push) and re-established by a
/// background task before the next call needs it, so a server restart between calls costs no
/// call. A call that finds the connection closed waits for the reconnection in progress, or
/// makes one attempt itself; it never sends on a connection known to be closed. Nothing is
/// retried once sent: a request whose connection closed before its answer fails (it may have
/// been applied).
pub(crate) struct Reconnecting {
    client: Client,
    config: AsyncConnectionConfig,
    current: ArcSwap<Link>,
    /// Held for the length of one connection attempt, with the last failed attempt's moment
    /// and error: calls that wait for it share its outcome.
    connecting: tokio::sync::Mutex<Option<(Instant, RedisError)>>,
    wake: UnboundedSender<Wake>,
}

impl Reconnecting {
    /// Connects once (fails when the server cannot be reached) and starts the background task
    /// that re-establishes the connection when it closes.
    pub(crate) async fn connect(
        client: Client,
        config: AsyncConnectionConfig,
    ) -> std::result::Result<Arc<Self>, RedisError> {
        let (wake, woken) = unbounded_channel();
        let first = Link::open(&client, &config, &wake).await?;
        let shared = Arc::new(Self {
            client,
            config,
            current: ArcSwap::from_pointee(first),
            connecting: tokio::sync::Mutex::new(None),
            wake,
        });
        tokio::spawn(watch(Arc::downgrade(&shared), woken));
        Ok(shared)
    }

    /// The connection for one call: the current one if it is open, else a new one.
    async fn link(&self) -> Result<(MultiplexedConnection, Arc<AtomicBool>)> {
        {
            let current = self.current.load();
            if !current.is_closed() {
                return Ok(current.handles());
            }
        }
        // Boxed: the connect future is large, and the hot path above never needs it.
        Box::pin(self.reconnect(false))
            .await
            .map_err(Failure::connect)
    }

    /// Replaces a closed connection, unless another attempt already did. A call (`forced`
    /// false) that arrives within [`RETRY_PAUSE`] of a failed attempt gets that attempt's
    /// error; one that waited for an attempt gets its outcome.
    async fn reconnect(
        &self,
        forced: bool,
    ) -> std::result::Result<(MultiplexedConnection, Arc<AtomicBool>), RedisError> {
        let waiting_since = Instant::now();
        let mut last_failure = self.connecting.lock().await;
        {
            let current = self.current.load();
            if !current.is_closed() {
                return Ok(current.handles());
            }
        }
        if let Some((at, error)) = last_failure.as_ref() {
            if *at >= waiting_since || (!forced && at.elapsed() < RETRY_PAUSE) {
                return Err(error.clone());
            }
        }
        match Link::open(&self.client, &self.config, &self.wake).await {
            Ok(fresh) => {
                let handles = fresh.handles();
                self.current.store(Arc::new(fresh));
                *last_failure = None;
                Ok(handles)
            }
            Err(error) => {
                *last_failure = Some((Instant::now(), error.clone()));
                Err(error)
            }
        }
    }

    /// A call timed out on the open connection: find out whether the server still answers a
    /// fresh connection. If it does, the fresh one replaces it; if not, the connection is
    /// treated as closed, so that calls fail within the connect timeout rather than the call
    /// deadline until the server answers again.
    async fn probe(&self) {
        let mut last_failure = self.connecting.lock().await;
        let suspect = self.current.load_full();
        if suspect.is_closed() {
            return;
        }
        match Link::open(&self.client, &self.config, &self.wake).await {
            Ok(fresh) => {
                // Only this task swaps while it holds the lock.
                self.current.store(Arc::new(fresh));
                *last_failure = None;
            }
            Err(error) => {
                tracing::warn!(%error, "narvik-redis: the server answers no new connection");
                suspect.closed.store(true, Ordering::Release);
                *last_failure = Some((Instant::now(), error));
            }
        }
    }

    fn is_closed(&self) -> bool {
        self.current.load().is_closed()
    }

    fn closed(&self, flag: &AtomicBool) {
        flag.store(true, Ordering::Release);
        let _ = self.wake.send(Wake::Closed);
    }

    pub(crate) fn suspect(&self) {
        let _ = self.wake.send(Wake::Suspect);
    }
}

/// The background task of one store: re-establishes its connection whenever it closes, and
/// checks a connection a call timed out on. Ends when the store is dropped.
async fn watch(shared: Weak<Reconnecting>, mut woken: UnboundedReceiver<Wake>) {
    while let Some(first) = woken.recv().await {
        let mut suspect = first == Wake::Suspect;
        while let Ok(more) = woken.try_recv() {
            suspect |= more == Wake::Suspect;
        }
        if suspect {
            let Some(store) = shared.upgrade() else {
                return;
            };
            store.probe().await;
        }
        let mut pause = FIRST_PAUSE;
        loop {
            let Some(store) = shared.upgrade() else {
                return;
            };
            if !store.is_closed() {
                break;
            }
            match store.reconnect(true).await {
                Ok(_) => break,
                Err(error) => tracing::debug!(%error, "narvik-redis: reconnection failed"),
            }
            // Not holding the store while waiting: it may be dropped meanwhile.
            drop(store);
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }
}

/// Where a store gets its connection for one operation.
#[derive(Clone)]
pub(crate) enum Backend {
    /// One reconnecting multiplexed connection shared by every task: one round trip per
    /// command, no checkout.
    Multiplexed(Arc<Reconnecting>),
    /// A deadpool-redis pool the application already has: a checkout per operation (its
    /// recycle sends a `PING`, an extra round trip), waiting at most the acquire timeout.
    Pool(deadpool_redis::Pool, Duration),
    /// The redis crate's async cluster client (multiplexed, follows slot moves).
    #[cfg(feature = "cluster")]
    Cluster(redis::cluster_async::ClusterConnection),
    /// A deadpool-redis cluster pool the application already has.
    #[cfg(feature = "cluster")]
    ClusterPool(deadpool_redis::cluster::Pool, Duration),
}

/// Takes a connection from an application's pool within `limit` (the pool's own wait may be
/// longer, or unbounded).
async fn checkout<C>(
    limit: Duration,
    get: impl std::future::Future<Output = std::result::Result<C, deadpool_redis::PoolError>>,
) -> Result<C> {
    use deadpool_redis::PoolError;
    let started = Instant::now();
    match tokio::time::timeout(limit, get).await {
        Err(_) | Ok(Err(PoolError::Timeout(_))) => {
            Err(narvik_core::Error::unavailable(Failure::AcquireTimeout))
        }
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(PoolError::Backend(error))) => Err(narvik_core::Error::unavailable(
            Failure::PoolConnect(error, started.elapsed()),
        )),
        Ok(Err(other)) => Err(narvik_core::Error::unavailable(Failure::Pool(Box::new(
            other,
        )))),
    }
}

impl Backend {
    /// Whether keys of one operation may live on different nodes, so that multi-key scripts
    /// are off limits.
    pub(crate) fn is_cluster(&self) -> bool {
        match self {
            Self::Multiplexed(_) | Self::Pool(..) => false,
            #[cfg(feature = "cluster")]
            Self::Cluster(_) | Self::ClusterPool(..) => true,
        }
    }

    /// A call ran out of time: have the connection checked (the shared connection only; a
    /// pool recycles its own, the cluster client refreshes its own).
    pub(crate) fn suspect(&self) {
        if let Self::Multiplexed(shared) = self {
            shared.suspect();
        }
    }

    /// A connection for one store operation.
    pub(crate) async fn get(&self) -> Result<Conn<'_>> {
        // The pools' checkout futures are boxed: unboxed, their ~7 KB would be part of every
        // store future, the multiplexed hot path's included, and copied on every call.
        Ok(match self {
            Self::Multiplexed(shared) => {
                let (connection, closed) = shared.link().await?;
                Conn::Multiplexed(connection, closed, shared)
            }
            Self::Pool(pool, limit) => {
                Conn::Pooled(Box::new(Box::pin(checkout(*limit, pool.get())).await?))
            }
            #[cfg(feature = "cluster")]
            Self::Cluster(cluster) => Conn::Cluster(cluster.clone()),
            #[cfg(feature = "cluster")]
            Self::ClusterPool(pool, limit) => {
                Conn::ClusterPooled(Box::new(Box::pin(checkout(*limit, pool.get())).await?))
            }
        })
    }
}

/// One operation's connection.
pub(crate) enum Conn<'a> {
    Multiplexed(
        MultiplexedConnection,
        Arc<AtomicBool>,
        &'a Arc<Reconnecting>,
    ),
    // Boxed: keeps every store future small on the hot path, which never uses it.
    Pooled(Box<deadpool_redis::Connection>),
    #[cfg(feature = "cluster")]
    Cluster(redis::cluster_async::ClusterConnection),
    #[cfg(feature = "cluster")]
    ClusterPooled(Box<deadpool_redis::cluster::Connection>),
}

impl Conn<'_> {
    /// A handle of the shared multiplexed cluster connection, for sending commands to several
    /// nodes at once (`None` on the other backends).
    #[cfg(feature = "cluster")]
    pub(crate) fn cluster_handle(&self) -> Option<redis::cluster_async::ClusterConnection> {
        match self {
            Conn::Cluster(connection) => Some(connection.clone()),
            _ => None,
        }
    }
}

/// What a failed command on the shared connection says about the connection: closed (the
/// background task reconnects, and no later call sends on it) or maybe half-open.
fn after_failure(error: &RedisError, closed: &AtomicBool, shared: &Reconnecting) {
    if error.is_timeout() {
        shared.suspect();
    } else if error.is_connection_dropped() || error.is_unrecoverable_error() {
        shared.closed(closed);
    }
}

/// Calls `$body` with `$conn` bound to the inner connection of the pass-through variants.
macro_rules! with_inner {
    ($self:expr, $conn:ident => $body:expr) => {
        match $self {
            Conn::Multiplexed($conn, ..) => $body,
            Conn::Pooled($conn) => $body,
            #[cfg(feature = "cluster")]
            Conn::Cluster($conn) => $body,
            #[cfg(feature = "cluster")]
            Conn::ClusterPooled($conn) => $body,
        }
    };
}

impl ConnectionLike for Conn<'_> {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        if let Conn::Multiplexed(connection, closed, shared) = self {
            return Box::pin(async move {
                let result = connection.send_packed_command(cmd).await;
                if let Err(error) = &result {
                    after_failure(error, closed, shared);
                }
                result
            });
        }
        with_inner!(self, conn => conn.req_packed_command(cmd))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        if let Conn::Multiplexed(connection, closed, shared) = self {
            return Box::pin(async move {
                let result = connection
                    .send_packed_commands(pipeline, offset, count)
                    .await;
                if let Err(error) = &result {
                    after_failure(error, closed, shared);
                }
                result
            });
        }
        with_inner!(self, conn => conn.req_packed_commands(pipeline, offset, count))
    }

    fn get_db(&self) -> i64 {
        with_inner!(self, conn => conn.get_db())
    }
}
