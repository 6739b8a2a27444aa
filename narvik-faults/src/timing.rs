//! Measuring how long a store takes to fail and to recover, and asserting the bounds.

use std::fmt::Debug;
use std::future::Future;
use std::time::{Duration, Instant};

use narvik_core::{Error, Result};

/// Runs `call`, which must fail with [`Error::Unavailable`] within `limit`; returns how long it
/// took. Panics, naming `what`, on success, on another error, or when it takes too long (a call
/// still waiting at three times the limit is abandoned so the test itself stays bounded).
pub async fn assert_unavailable_within<T: Debug>(
    what: &str,
    limit: Duration,
    call: impl Future<Output = Result<T>>,
) -> Duration {
    let started = Instant::now();
    let outcome = tokio::time::timeout(limit * 3, call).await;
    let elapsed = started.elapsed();
    match outcome {
        Err(_) => panic!("{what}: still waiting after {elapsed:?} (bound {limit:?})"),
        Ok(Ok(value)) => panic!("{what}: succeeded ({value:?}) while the server is broken"),
        Ok(Err(error @ Error::Unavailable { .. })) => {
            assert!(
                elapsed <= limit,
                "{what}: failed after {elapsed:?}, over the bound of {limit:?}: {error}"
            );
            elapsed
        }
        Ok(Err(error)) => panic!("{what}: expected Error::Unavailable, got {error:?}"),
    }
}

/// Calls `call` until it succeeds, and asserts that it did within `limit` of `since` (the moment
/// the server was back). Returns the time from `since` to the first success.
pub async fn recover_within<T, F, Fut>(
    what: &str,
    since: Instant,
    limit: Duration,
    mut call: F,
) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut last_error = None;
    while since.elapsed() <= limit {
        let left = limit
            .saturating_sub(since.elapsed())
            .max(Duration::from_millis(1));
        match tokio::time::timeout(left, call()).await {
            Ok(Ok(_)) => return since.elapsed(),
            Ok(Err(error)) => last_error = Some(error),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "{what}: not recovered {:?} after the server was back (bound {limit:?}); last error: {last_error:?}",
        since.elapsed()
    );
}
