//! The background purge: one task per engine that deletes expired sessions on an interval.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tracing::Instrument;

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::store::SessionStore;
use crate::store_calls::{error_outcome, TracedStore};
use crate::time_util::truncate_to_millis;

/// The first wait after a failed purge; it doubles on each failure in a row, up to the interval.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// The running purge of [`Narvik::spawn_purge_task`](crate::Narvik::spawn_purge_task). The task
/// stops when this handle is dropped (a purge in flight is cancelled; the store's calls are
/// atomic, so nothing is left half done).
#[derive(Debug)]
#[must_use = "the purge stops when its PurgeTask is dropped"]
pub struct PurgeTask {
    handle: tokio::task::JoinHandle<()>,
}

impl PurgeTask {
    pub(crate) fn spawn(
        store: Arc<dyn SessionStore>,
        clock: Arc<dyn Clock>,
        interval: Duration,
    ) -> Result<Self> {
        if interval.is_zero() {
            return Err(Error::InvalidConfiguration(
                "the purge interval must be longer than zero".to_owned(),
            ));
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Err(Error::InvalidConfiguration(
                "spawn_purge_task needs a Tokio runtime".to_owned(),
            ));
        };
        let handle = runtime.spawn(run(store, clock, interval));
        Ok(Self { handle })
    }

    /// Whether the task is still running (it only ends when stopped).
    pub fn is_running(&self) -> bool {
        !self.handle.is_finished()
    }
}

impl Drop for PurgeTask {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// `interval` with up to a tenth added at random.
fn jittered(interval: Duration) -> Duration {
    let tenth = interval / 10;
    let extra = rand::rng().random_range(0.0..=1.0);
    interval + tenth.mul_f64(extra)
}

async fn run(store: Arc<dyn SessionStore>, clock: Arc<dyn Clock>, interval: Duration) {
    let mut backoff = FIRST_BACKOFF.min(interval);
    let mut wait = jittered(interval);
    loop {
        tokio::time::sleep(wait).await;
        let now = truncate_to_millis(clock.now());
        let span = tracing::debug_span!(
            "purge",
            deleted = tracing::field::Empty,
            outcome = tracing::field::Empty
        );
        let purged = TracedStore::new(&*store)
            .delete_all_expired_sessions(now)
            .instrument(span.clone())
            .await;
        match purged {
            Ok(deleted) => {
                span.record("deleted", deleted);
                span.record("outcome", "purged");
                span.in_scope(|| tracing::info!(deleted, "purged expired sessions"));
                backoff = FIRST_BACKOFF.min(interval);
                wait = jittered(interval);
            }
            Err(error) => {
                span.record("outcome", error_outcome(&error));
                span.in_scope(|| {
                    tracing::warn!(%error, retry_in = ?backoff, "purge of expired sessions failed")
                });
                wait = backoff;
                backoff = (backoff * 2).min(interval);
            }
        }
    }
}
