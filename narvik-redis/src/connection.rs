//! The connections a store talks through, behind one [`ConnectionLike`] type.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use narvik_core::{Error, Result};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, Cmd, Pipeline, RedisError, RedisFuture, Value};

/// One multiplexed connection shared by every task, replaced in the background when it breaks.
///
/// Cheaper per command than the redis crate's `ConnectionManager` (no shared-future poll, one
/// boxed future): the hot path is a lock-free load and a clone of the connection handle. A command on a broken connection
/// fails with the driver's error (so the caller sees [`Error::Unavailable`]) and starts one
/// reconnection; later commands use the new connection once it is up.
pub(crate) struct Reconnecting {
    client: Client,
    config: AsyncConnectionConfig,
    current: ArcSwap<(u64, MultiplexedConnection)>,
    reconnecting: AtomicBool,
}

impl Reconnecting {
    /// Connects once; fails when the server cannot be reached.
    pub(crate) async fn connect(client: Client, config: AsyncConnectionConfig) -> Result<Self> {
        let connection = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(Error::unavailable)?;
        Ok(Self {
            client,
            config,
            current: ArcSwap::from_pointee((0, connection)),
            reconnecting: AtomicBool::new(false),
        })
    }

    fn current(&self) -> (u64, MultiplexedConnection) {
        let current = self.current.load();
        (current.0, current.1.clone())
    }

    /// Replaces connection `generation` after `error`, unless it is already replaced or being
    /// replaced. A failed attempt leaves the broken connection in place: the next failing
    /// command tries again, so the store recovers whenever the server is back.
    fn recover(self: &Arc<Self>, generation: u64, error: &RedisError) {
        if !(error.is_unrecoverable_error() || error.is_io_error()) {
            return;
        }
        if self.current.load().0 != generation || self.reconnecting.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let fresh = this
                .client
                .get_multiplexed_async_connection_with_config(&this.config)
                .await;
            match fresh {
                Ok(connection) => {
                    // Only this task swaps (the flag), so the check cannot go stale.
                    if this.current.load().0 == generation {
                        this.current.store(Arc::new((generation + 1, connection)));
                    }
                }
                Err(error) => tracing::warn!(%error, "narvik-redis: reconnection failed"),
            }
            this.reconnecting.store(false, Ordering::Release);
        });
    }
}

/// Where a store gets its connection for one operation.
#[derive(Clone)]
pub(crate) enum Backend {
    /// One reconnecting multiplexed connection shared by every task: one round trip per
    /// command, no checkout.
    Multiplexed(Arc<Reconnecting>),
    /// A deadpool-redis pool the application already has: a checkout per operation (its
    /// recycle sends a `PING`, an extra round trip).
    Pool(deadpool_redis::Pool),
    /// The redis crate's async cluster client (multiplexed, follows slot moves).
    #[cfg(feature = "cluster")]
    Cluster(redis::cluster_async::ClusterConnection),
    /// A deadpool-redis cluster pool the application already has.
    #[cfg(feature = "cluster")]
    ClusterPool(deadpool_redis::cluster::Pool),
}

impl Backend {
    /// Whether keys of one operation may live on different nodes, so that multi-key scripts
    /// are off limits.
    pub(crate) fn is_cluster(&self) -> bool {
        match self {
            Self::Multiplexed(_) | Self::Pool(_) => false,
            #[cfg(feature = "cluster")]
            Self::Cluster(_) | Self::ClusterPool(_) => true,
        }
    }

    /// A connection for one store operation.
    pub(crate) async fn get(&self) -> Result<Conn<'_>> {
        // The pools' checkout futures are boxed: unboxed, their ~7 KB would be part of every
        // store future, the multiplexed hot path's included, and copied on every call.
        Ok(match self {
            Self::Multiplexed(shared) => {
                let (generation, connection) = shared.current();
                Conn::Multiplexed(connection, generation, shared)
            }
            Self::Pool(pool) => Conn::Pooled(Box::new(
                Box::pin(pool.get()).await.map_err(Error::unavailable)?,
            )),
            #[cfg(feature = "cluster")]
            Self::Cluster(cluster) => Conn::Cluster(cluster.clone()),
            #[cfg(feature = "cluster")]
            Self::ClusterPool(pool) => Conn::ClusterPooled(Box::new(
                Box::pin(pool.get()).await.map_err(Error::unavailable)?,
            )),
        })
    }
}

/// One operation's connection.
pub(crate) enum Conn<'a> {
    Multiplexed(MultiplexedConnection, u64, &'a Arc<Reconnecting>),
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
        if let Conn::Multiplexed(connection, generation, shared) = self {
            return Box::pin(async move {
                let result = connection.send_packed_command(cmd).await;
                if let Err(error) = &result {
                    shared.recover(*generation, error);
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
        if let Conn::Multiplexed(connection, generation, shared) = self {
            return Box::pin(async move {
                let result = connection
                    .send_packed_commands(pipeline, offset, count)
                    .await;
                if let Err(error) = &result {
                    shared.recover(*generation, error);
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
