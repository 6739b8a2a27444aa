//! The one reconnecting multiplexed connection a store built from a URL shares between all its
//! calls, and the background task that re-establishes it when it closes and checks it when a
//! call timed out on it.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use narvik_core::Result;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, PushInfo, PushKind, RedisError};
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
    pub(super) async fn link(&self) -> Result<(MultiplexedConnection, Arc<AtomicBool>)> {
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

/// What a failed command on the shared connection says about the connection: closed (the
/// background task reconnects, and no later call sends on it) or maybe half-open.
pub(super) fn after_failure(error: &RedisError, closed: &AtomicBool, shared: &Reconnecting) {
    if error.is_timeout() {
        shared.suspect();
    } else if error.is_connection_dropped() || error.is_unrecoverable_error() {
        shared.closed(closed);
    }
}
