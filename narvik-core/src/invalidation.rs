//! Invalidations a store pushes to the engine's near cache: which sessions changed in the store,
//! and whether the channel that carries that news is healthy.
//!
//! A store that declares
//! [`pushes_invalidations`](crate::Capabilities::pushes_invalidations) owns one
//! [`InvalidationHub`]. Its listener (a Redis tracking connection, a Postgres `LISTEN`) calls
//! [`InvalidationHub::subscribed`] once it receives every change, [`InvalidationHub::invalidate`]
//! for each change it hears of, and [`InvalidationHub::lost`] the moment it may have missed one
//! (the connection dropped, the server was restarted). Each near cache holds an
//! [`InvalidationSubscription`] from [`SessionStore::subscribe_invalidations`](crate::SessionStore::subscribe_invalidations).
//!
//! The health of the channel is one atomic word, read on every cache hit: a hit is served only
//! while the channel is healthy *and* the cache has processed the `Subscribed` of the current
//! subscription epoch (so entries cached before a loss are flushed before any is served again).
//!
//! ```
//! use narvik_core::invalidation::{Invalidation, InvalidationHub};
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let hub = InvalidationHub::new();
//! let mut subscription = hub.subscribe();
//! assert!(!subscription.is_healthy(), "nothing listens yet");
//! hub.subscribed();
//! hub.invalidate(["a1b2".to_owned()]);
//! assert!(matches!(subscription.recv().await, Invalidation::Subscribed { .. }));
//! assert_eq!(subscription.recv().await, Invalidation::Sessions(vec!["a1b2".to_owned()]));
//! hub.lost();
//! assert!(!subscription.is_healthy());
//! # });
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::broadcast;

/// How many invalidations a slow cache may fall behind before it is told it lagged (and flushes
/// itself). A burst larger than this (a purge of many sessions) costs a flush, never a miss.
const BACKLOG: usize = 4096;

/// One message of the channel.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Invalidation {
    /// These sessions (by id) were deleted or changed in the store.
    Sessions(Vec<String>),
    /// Anything may have changed (the store was flushed, or this subscriber fell behind).
    Everything,
    /// The channel was lost: changes may be missed until the next `Subscribed`.
    Lost,
    /// The channel receives every change again, from the start of `epoch`. Anything cached
    /// before may have missed a change.
    Subscribed {
        /// The subscription epoch that starts here.
        epoch: u64,
    },
}

/// The sending side, owned by a store. Cheap to clone; clones share the channel.
#[derive(Debug, Clone)]
pub struct InvalidationHub {
    sender: broadcast::Sender<Invalidation>,
    /// `epoch << 1 | healthy`: one word, so that a reader never sees a healthy flag of one
    /// epoch with the number of another.
    state: Arc<AtomicU64>,
}

impl Default for InvalidationHub {
    fn default() -> Self {
        Self::new()
    }
}

impl InvalidationHub {
    /// A hub whose channel is not healthy yet: nothing is served from a cache until the
    /// store's listener calls [`InvalidationHub::subscribed`].
    pub fn new() -> Self {
        let (sender, _) = broadcast::channel(BACKLOG);
        Self {
            sender,
            state: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A new subscription for one cache.
    pub fn subscribe(&self) -> InvalidationSubscription {
        // The receiver exists before the state is read: a loss after this read is received.
        let receiver = self.sender.subscribe();
        let state = self.state.load(Ordering::SeqCst);
        InvalidationSubscription {
            receiver,
            state: Arc::clone(&self.state),
            synced_epoch: healthy_epoch(state),
        }
    }

    /// Sessions `ids` were deleted or changed in the store.
    pub fn invalidate(&self, ids: impl IntoIterator<Item = String>) {
        let ids: Vec<String> = ids.into_iter().collect();
        if !ids.is_empty() {
            let _ = self.sender.send(Invalidation::Sessions(ids));
        }
    }

    /// Anything may have changed in the store (it was flushed).
    pub fn invalidate_everything(&self) {
        let _ = self.sender.send(Invalidation::Everything);
    }

    /// The listener may have missed a change: every cache stops serving at once and flushes.
    pub fn lost(&self) {
        let before = self
            .state
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |state| {
                Some(((state >> 1) + 1) << 1)
            })
            .unwrap_or_else(|state| state);
        if before & 1 == 1 {
            let _ = self.sender.send(Invalidation::Lost);
        }
    }

    /// The listener receives every change from now on. Caches flush what they hold and serve
    /// again once they have processed this.
    pub fn subscribed(&self) {
        let state = self.state.fetch_or(1, Ordering::SeqCst) | 1;
        let _ = self
            .sender
            .send(Invalidation::Subscribed { epoch: state >> 1 });
    }

    /// Whether the listener currently receives every change.
    pub fn is_healthy(&self) -> bool {
        self.state.load(Ordering::SeqCst) & 1 == 1
    }

    /// How many caches listen (a store may stop its listener when none does).
    pub fn subscriber_count(&self) -> usize {
        self.sender.receiver_count()
    }
}

/// The epoch a subscription created in `state` may serve in: the current one when healthy.
fn healthy_epoch(state: u64) -> Option<u64> {
    (state & 1 == 1).then_some(state >> 1)
}

/// The receiving side, held by one near cache.
#[derive(Debug)]
pub struct InvalidationSubscription {
    receiver: broadcast::Receiver<Invalidation>,
    state: Arc<AtomicU64>,
    synced_epoch: Option<u64>,
}

impl InvalidationSubscription {
    /// The next message. A subscriber that fell behind gets [`Invalidation::Everything`] in
    /// place of what it missed; when the store (and its hub) is gone it gets
    /// [`Invalidation::Lost`] forever after.
    pub async fn recv(&mut self) -> Invalidation {
        match self.receiver.recv().await {
            Ok(message) => message,
            Err(broadcast::error::RecvError::Lagged(_)) => Invalidation::Everything,
            Err(broadcast::error::RecvError::Closed) => Invalidation::Lost,
        }
    }

    /// Whether the channel is healthy right now (one atomic load).
    pub fn is_healthy(&self) -> bool {
        self.state.load(Ordering::SeqCst) & 1 == 1
    }

    /// The epoch this subscription was created in, if the channel was healthy then (a cache
    /// created then may serve from the start).
    pub fn healthy_epoch_at_start(&self) -> Option<u64> {
        self.synced_epoch
    }

    /// The current `(epoch, healthy)` of the channel.
    pub fn state(&self) -> (u64, bool) {
        let state = self.state.load(Ordering::SeqCst);
        (state >> 1, state & 1 == 1)
    }

    /// A handle that reads the channel's health, for the code that serves entries while the
    /// subscription itself waits for messages elsewhere.
    pub fn health(&self) -> ChannelHealth {
        ChannelHealth(Arc::clone(&self.state))
    }
}

/// Reads a channel's health (one atomic load), apart from its subscription.
#[derive(Debug, Clone)]
pub struct ChannelHealth(Arc<AtomicU64>);

impl ChannelHealth {
    /// The current epoch while the channel is healthy, `None` while it is not.
    pub fn healthy_epoch(&self) -> Option<u64> {
        healthy_epoch(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_loss_ends_the_epoch_and_a_resubscription_starts_the_next() {
        let hub = InvalidationHub::new();
        let mut early = hub.subscribe();
        assert_eq!(early.healthy_epoch_at_start(), None);
        hub.subscribed();
        assert_eq!(early.recv().await, Invalidation::Subscribed { epoch: 0 });
        let late = hub.subscribe();
        assert_eq!(late.healthy_epoch_at_start(), Some(0));
        hub.lost();
        hub.lost();
        assert_eq!(early.state(), (2, false));
        assert_eq!(early.recv().await, Invalidation::Lost);
        hub.subscribed();
        assert_eq!(
            early.recv().await,
            Invalidation::Subscribed { epoch: 2 },
            "one Lost for two losses in a row"
        );
        assert!(late.is_healthy());
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_is_told_to_flush() {
        let hub = InvalidationHub::new();
        let mut subscription = hub.subscribe();
        for n in 0..BACKLOG + 1 {
            hub.invalidate([n.to_string()]);
        }
        assert_eq!(subscription.recv().await, Invalidation::Everything);
        hub.invalidate(Vec::new());
        drop(hub);
        assert_eq!(
            subscription.recv().await,
            Invalidation::Sessions(vec!["1".into()])
        );
    }
}
