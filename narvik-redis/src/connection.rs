//! The connections a store talks through, behind one [`ConnectionLike`] type. The shared
//! reconnecting connection is in `reconnecting`.

mod reconnecting;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use narvik_core::Result;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{Cmd, Pipeline, RedisFuture, Value};

use crate::error::Failure;

use reconnecting::after_failure;
pub(crate) use reconnecting::Reconnecting;

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
