//! Building a [`RedisStore`]: key prefix and the time bounds of its calls.

use std::time::Duration;

use narvik_core::{Error, Result};

use redis::{
    AsyncConnectionConfig, ConnectionInfo, IntoConnectionInfo, ProtocolVersion, RedisError,
};

use crate::connection::{Backend, Reconnecting};
use crate::error::{name_fault, Failure, Limits};
use crate::invalidation::{Invalidations, Source};
use crate::keys::KeySpace;
use crate::store::RedisStore;

/// The key prefix used unless [`RedisStoreBuilder::prefix`] says otherwise.
pub const DEFAULT_PREFIX: &str = "narvik";

/// Configures and connects a [`RedisStore`].
///
/// Every default is a bound narvik promises: a call never takes longer than the call timeout
/// (5 s), a connection attempt never longer than the connect timeout (2 s), a checkout from
/// an application's pool never longer than the acquire timeout (2 s). Past a bound, the call
/// fails with [`Error::Unavailable`] naming the store, the call and the bound.
///
/// ```no_run
/// # async fn demo() -> narvik_core::Result<()> {
/// use narvik_redis::RedisStore;
/// use std::time::Duration;
///
/// let store = RedisStore::builder()
///     .prefix("myapp:sessions")
///     .call_timeout(Duration::from_secs(2))
///     .connect("redis://127.0.0.1:6379")
///     .await?;
/// # let _ = store; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RedisStoreBuilder {
    prefix: String,
    connection_timeout: Duration,
    response_timeout: Option<Duration>,
    call_timeout: Duration,
    acquire_timeout: Duration,
    listener_name: Option<String>,
}

impl Default for RedisStoreBuilder {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_owned(),
            connection_timeout: Duration::from_secs(2),
            response_timeout: None,
            call_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(2),
            listener_name: None,
        }
    }
}

impl RedisStoreBuilder {
    /// A builder with the defaults: prefix `narvik`, 2 s connect timeout, 5 s call timeout,
    /// 2 s pool acquire timeout, no response timeout of its own (the call timeout bounds every
    /// command).
    pub fn new() -> Self {
        Self::default()
    }

    /// The prefix of every key of this store (default `narvik`). It must not contain `{` or `}`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long one connection attempt may take, TCP connect and handshake together (default
    /// 2 s). While the server is unreachable, calls fail within it.
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// How long one command may wait for its answer, on connections the store opens itself;
    /// past it the call fails with the call deadline named. By default there is none of its
    /// own: the call timeout bounds every command of the call, with one timer per call
    /// instead of two. Worth setting below the call timeout only for calls made of many
    /// commands; on a cluster it is also how long one try may take before the client's
    /// retry (default: the call timeout).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = Some(timeout);
        self
    }

    /// How long one store call may take end to end, waiting for a connection included
    /// (default 5 s). Operations made of many commands (a purge of a large backlog) are
    /// bounded too: each run does what it can, and the next one goes on.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// How long a call may wait for a connection from a pool given to
    /// [`from_pool`](Self::from_pool) or [`from_cluster_pool`](Self::from_cluster_pool)
    /// (default 2 s), whatever the pool's own wait: a pool that cannot create connections
    /// makes calls fail within it instead of queueing.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// The name the invalidation listener's connections give themselves (`CLIENT SETNAME`), so
    /// that `CLIENT LIST` shows them and an operator can find (or `CLIENT KILL ID`) them. By
    /// default `narvik-invalidation-` and 16 random hex digits, chosen when the store is
    /// built. Redis allows no spaces or control characters in a name: the store's build fails
    /// with [`Error::InvalidConfiguration`] on such a name.
    pub fn invalidation_listener_name(mut self, name: impl Into<String>) -> Self {
        self.listener_name = Some(name.into());
        self
    }

    /// The invalidation channel of a store built from `source`, with its listener's name.
    fn invalidations(&self, source: Source, keys: &KeySpace) -> Result<Invalidations> {
        let name = match &self.listener_name {
            Some(name) => {
                // What Redis's `CLIENT SETNAME` accepts: a refused name would leave the
                // listener failing forever, so it is refused here instead.
                if name.is_empty() || !name.bytes().all(|byte| (b'!'..=b'~').contains(&byte)) {
                    return Err(Error::InvalidConfiguration(format!(
                        "invalidation listener name {name:?}: Redis client names are printable \
                         ASCII without spaces"
                    )));
                }
                name.clone()
            }
            None => format!("narvik-invalidation-{:016x}", rand::random::<u64>()),
        };
        Ok(Invalidations::new(
            source,
            keys.record_prefix().to_owned(),
            name,
            self.connection_timeout,
        ))
    }

    fn limits(&self) -> Limits {
        Limits {
            connect: self.connection_timeout,
            acquire: self.acquire_timeout,
            response: self.response_timeout.unwrap_or(self.call_timeout),
        }
    }

    fn store(
        &self,
        backend: Backend,
        keys: KeySpace,
        invalidations: Option<Invalidations>,
    ) -> RedisStore {
        RedisStore::from_parts(
            backend,
            keys,
            self.call_timeout,
            self.limits(),
            invalidations,
        )
    }

    /// A connection failure while building the store, as the `connect` operation's fault.
    fn connect_failure(&self, error: RedisError) -> Error {
        name_fault("connect", self.limits(), Failure::connect(error))
    }

    /// Connects to one Redis server (`redis://`, `rediss://` with the `tls` feature,
    /// `redis+unix://`) through one multiplexed connection shared by all tasks: every
    /// operation costs its round trips and nothing more. The connection speaks RESP3 whatever
    /// the URL asks for, so that its driver hears at once when the server closes it; it is
    /// then re-established in the background, before the next call needs it. Fails with
    /// [`Error::Unavailable`] when the server cannot be reached within the connect timeout.
    ///
    /// The store pushes invalidations: its first `subscribe_invalidations` opens a listener
    /// connection of its own to the same server, with the same credentials and TLS (see the
    /// crate docs, "Invalidations for the near cache").
    pub async fn connect(self, url: impl IntoConnectionInfo) -> Result<RedisStore> {
        let keys = KeySpace::new(&self.prefix)?;
        let info = Self::connection_info(url)?;
        let resp3 = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(resp3))
            .map_err(|error| Error::InvalidConfiguration(error.to_string()))?;
        let invalidations = self.invalidations(Source::Single(Box::new(client.clone())), &keys)?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connection_timeout))
            .set_response_timeout(self.response_timeout);
        let shared = Reconnecting::connect(client, config)
            .await
            .map_err(|error| self.connect_failure(error))?;
        Ok(self.store(Backend::Multiplexed(shared), keys, Some(invalidations)))
    }

    /// Uses a deadpool-redis pool the application already has. Each operation checks out a
    /// connection (within the acquire timeout), and deadpool-redis sends a `PING` when it
    /// recycles one: an extra round trip per operation, which also finds connections the
    /// server closed. Prefer [`RedisStoreBuilder::connect`] for the session hot path.
    ///
    /// The store does not know the pool's URL, so it pushes no invalidations
    /// (`pushes_invalidations` is `false`): no pushed near cache on it.
    pub fn from_pool(self, pool: deadpool_redis::Pool) -> Result<RedisStore> {
        let keys = KeySpace::new(&self.prefix)?;
        Ok(self.store(Backend::Pool(pool, self.acquire_timeout), keys, None))
    }

    /// Connects to a Redis Cluster through the redis crate's async cluster client, given some
    /// of its nodes, with the same bounds as [`connect`](Self::connect): connect and response
    /// timeouts on every node connection, the whole initial connect within the connect
    /// timeout, every call within the call timeout. See the crate docs for what is atomic on a
    /// cluster.
    ///
    /// The store pushes invalidations: its first `subscribe_invalidations` opens a listener
    /// connection to every primary (found through the given nodes), with their credentials and
    /// TLS.
    #[cfg(feature = "cluster")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
    pub async fn connect_cluster<T: IntoConnectionInfo>(
        self,
        nodes: impl IntoIterator<Item = T>,
    ) -> Result<RedisStore> {
        let keys = KeySpace::new(&self.prefix)?;
        let nodes = nodes
            .into_iter()
            .map(Self::connection_info)
            .collect::<Result<Vec<_>>>()?;
        // The listener's connections speak RESP3, which pushes need, whatever the URLs ask.
        let seeds = nodes
            .iter()
            .map(|node| {
                let resp3 = node
                    .redis_settings()
                    .clone()
                    .set_protocol(ProtocolVersion::RESP3);
                node.clone().set_redis_settings(resp3)
            })
            .collect();
        let invalidations = self.invalidations(Source::Cluster(seeds), &keys)?;
        let client = redis::cluster::ClusterClientBuilder::new(nodes)
            .connection_timeout(self.connection_timeout)
            .response_timeout(self.response_timeout.unwrap_or(self.call_timeout))
            // The client resends a command after a connection error or a slot move, and waits
            // between tries: by default at least 1.28 s, which alone breaks the recovery bound.
            // Three quick tries (10 ms to at most 250 ms apart) ride over a node's restart, and
            // the call timeout bounds them all.
            .retries(3)
            .min_retry_wait(10)
            .max_retry_wait(250)
            .build()
            .map_err(|error| Error::InvalidConfiguration(error.to_string()))?;
        let connection = match tokio::time::timeout(
            self.connection_timeout,
            client.get_async_connection(),
        )
        .await
        {
            Ok(Ok(connection)) => connection,
            Ok(Err(error)) => return Err(self.connect_failure(error)),
            Err(elapsed) => return Err(self.connect_failure(elapsed_error(elapsed))),
        };
        Ok(self.store(Backend::Cluster(connection), keys, Some(invalidations)))
    }

    /// Uses a deadpool-redis cluster pool the application already has (a checkout per
    /// operation within the acquire timeout, as [`RedisStoreBuilder::from_pool`]), pushing no
    /// invalidations (it does not know the pool's nodes).
    #[cfg(feature = "cluster")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
    pub fn from_cluster_pool(self, pool: deadpool_redis::cluster::Pool) -> Result<RedisStore> {
        let keys = KeySpace::new(&self.prefix)?;
        Ok(self.store(Backend::ClusterPool(pool, self.acquire_timeout), keys, None))
    }

    fn connection_info(url: impl IntoConnectionInfo) -> Result<ConnectionInfo> {
        url.into_connection_info()
            .map_err(|error| Error::InvalidConfiguration(error.to_string()))
    }
}

/// The connect timeout of the cluster's initial connect, as the driver reports its own.
#[cfg(feature = "cluster")]
fn elapsed_error(_: tokio::time::error::Elapsed) -> RedisError {
    std::io::Error::from(std::io::ErrorKind::TimedOut).into()
}
