//! The optional background sweeper: purges expired records on a timer.

use std::sync::{Arc, Weak};
use std::time::Duration;

use narvik_core::{Clock, SystemClock};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::store::MemoryStore;

/// The shortest period [`MemoryStore::spawn_sweeper`] accepts; shorter ones are raised to it.
pub const MIN_SWEEP_PERIOD: Duration = Duration::from_millis(1);

/// A running sweeper. Dropping it (or calling [`Sweeper::stop`]) stops the task; so does
/// dropping the last `Arc` of the store, because the task only holds a `Weak` one.
#[derive(Debug)]
#[must_use = "dropping the Sweeper stops it at once; call `detach` to let it run"]
pub struct Sweeper {
    task: Option<JoinHandle<()>>,
}

impl Sweeper {
    /// Stops the sweeper. A purge already under way finishes first (it holds no `.await`).
    pub fn stop(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    /// Lets the sweeper run until the store is dropped, without keeping this handle.
    pub fn detach(mut self) {
        self.task = None;
    }

    /// Whether the task has ended (the store was dropped, or the task was stopped).
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(JoinHandle::is_finished)
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl MemoryStore {
    /// Starts a tokio task that purges the records expired by the system clock every `every`
    /// (at least [`MIN_SWEEP_PERIOD`]), the first time one period from now: the sweeper of a
    /// deployment whose engine runs on [`SystemClock`] (the default). An engine built with
    /// another clock needs [`spawn_sweeper_with_clock`](Self::spawn_sweeper_with_clock).
    ///
    /// Without a sweeper, expired records are invisible but keep their memory until something
    /// purges them; with one, memory stays bounded by the live sessions plus one period's worth
    /// of expiries. Each run costs time in proportion to the records it removes.
    ///
    /// The task holds only a `Weak` reference: it ends by itself when the store is dropped,
    /// and it is stopped when the returned [`Sweeper`] is dropped (or [`Sweeper::detach`] it).
    ///
    /// # Panics
    /// When called outside a tokio runtime (as `tokio::spawn` does).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::{sync::Arc, time::Duration};
    /// use narvik_memory::MemoryStore;
    ///
    /// let store = Arc::new(MemoryStore::new());
    /// let sweeper = store.spawn_sweeper(Duration::from_secs(60));
    /// // ... serve requests; the sweeper stops with `sweeper` or with the store.
    /// sweeper.stop();
    /// # }
    /// ```
    pub fn spawn_sweeper(self: &Arc<Self>, every: Duration) -> Sweeper {
        self.spawn_sweeper_with_clock(every, Arc::new(SystemClock))
    }

    /// [`spawn_sweeper`](Self::spawn_sweeper) on `clock`: each run deletes the records expired
    /// at `clock.now()`, as
    /// [`delete_all_expired_sessions`](narvik_core::SessionStore::delete_all_expired_sessions)
    /// does with the `now` the engine hands down.
    ///
    /// A deployment has one clock: pass the one the engine was built with
    /// ([`NarvikBuilder::clock`](narvik_core::NarvikBuilder::clock)), so the sweeper never
    /// purges a session the engine still counts as live, nor keeps one it counts as expired.
    /// The period itself is measured by tokio's timer, not by `clock`.
    ///
    /// # Panics
    /// When called outside a tokio runtime (as `tokio::spawn` does).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> narvik_core::Result<()> {
    /// use std::{sync::Arc, time::Duration};
    /// use narvik_core::{Clock, ManualClock, Narvik};
    /// use narvik_memory::MemoryStore;
    ///
    /// let clock: Arc<dyn Clock> = Arc::new(ManualClock::starting_now());
    /// let store = Arc::new(MemoryStore::new());
    /// let narvik: Narvik = Narvik::builder(store.clone()).clock(clock.clone()).build()?;
    /// let sweeper = store.spawn_sweeper_with_clock(Duration::from_secs(60), clock);
    /// # drop((narvik, sweeper));
    /// # Ok(()) }
    /// ```
    pub fn spawn_sweeper_with_clock(
        self: &Arc<Self>,
        every: Duration,
        clock: Arc<dyn Clock>,
    ) -> Sweeper {
        let store: Weak<Self> = Arc::downgrade(self);
        let period = every.max(MIN_SWEEP_PERIOD);
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            // After a stall, one purge catches up on everything: no burst of back-to-back runs.
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(store) = store.upgrade() else {
                    break;
                };
                let purged = store.purge_expired_at(clock.now());
                if purged > 0 {
                    tracing::debug!(purged, "narvik-memory sweeper purged expired sessions");
                }
            }
        });
        Sweeper { task: Some(task) }
    }
}
