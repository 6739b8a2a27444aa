//! The fault scenarios every store's `tests/faults.rs` runs against a server of its own.
//!
//! Each one breaks the server, asserts the bounds of [`Bounds`] (plus its margin), checks that
//! every error is the typed [`Error::Unavailable`](narvik_core::Error::Unavailable), and returns
//! what it measured; it also prints a `fault figures` line for the store's README.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use narvik_conformance::harness::{live_record, random_user_id};
use narvik_core::{Result, SessionRecord, SessionStore};
use serde_json::json;
use time::OffsetDateTime;

use crate::{assert_unavailable_within, recover_within, Bounds, ServerProcess, SilentListener};

/// How many sessions the crash scenario logs out just before the crash.
pub const LOGOUT_BURST: usize = 40;

/// What a scenario measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct Figures {
    /// The slowest failure while the server was broken.
    pub time_to_error: Duration,
    /// From the server being back to the first successful call, where the scenario brings it
    /// back.
    pub time_to_recover: Option<Duration>,
}

impl Figures {
    fn report(self, store: &str, scenario: &str) -> Self {
        let recover = self
            .time_to_recover
            .map_or_else(|| "-".to_owned(), |time| format!("{} ms", time.as_millis()));
        eprintln!(
            "fault figures: {store} {scenario}: time to error {} ms, time to recover {recover}",
            self.time_to_error.as_millis()
        );
        self
    }
}

fn expiry_in_days() -> OffsetDateTime {
    OffsetDateTime::now_utc() + time::Duration::days(3)
}

/// One store call, its answer dropped: only how it fails matters.
type Call<'a> = Pin<Box<dyn Future<Output = Result<()>> + 'a>>;

/// Every required call once, each of which must fail within `limit`; returns the slowest.
async fn every_call_fails_within<S: SessionStore + ?Sized>(
    store: &S,
    limit: Duration,
    when: &str,
) -> Duration {
    let record = live_record(&random_user_id("fault"), json!({}));
    let calls: [(&str, Call<'_>); 4] = [
        ("save_session", Box::pin(store.save_session(&record))),
        (
            "fetch_session",
            Box::pin(async { store.fetch_session(&record.id).await.map(drop) }),
        ),
        (
            "update_session_expiry",
            Box::pin(store.update_session_expiry(&record.id, expiry_in_days())),
        ),
        ("delete_session", Box::pin(store.delete_session(&record.id))),
    ];
    let mut slowest = Duration::ZERO;
    for (operation, call) in calls {
        let what = format!("{operation} {when}");
        slowest = slowest.max(assert_unavailable_within(&what, limit, call).await);
    }
    slowest
}

async fn save<S: SessionStore + ?Sized>(store: &S, record: &SessionRecord) {
    if let Err(error) = store.save_session(record).await {
        panic!("save_session on a healthy server: {error}");
    }
}

async fn fetch<S: SessionStore + ?Sized>(store: &S, id: &str) -> Option<SessionRecord> {
    match store.fetch_session(id).await {
        Ok(record) => record,
        Err(error) => panic!("fetch_session on a healthy server: {error}"),
    }
}

/// The store's address is a listener that accepts and never answers. Building the store may
/// fail (with `Unavailable`, within the connect bound) or succeed lazily; then every call must
/// fail within the connect bound.
pub async fn silent_listener<S, F, Fut>(store_name: &str, bounds: Bounds, build: F) -> Figures
where
    S: SessionStore,
    F: FnOnce(SocketAddr) -> Fut,
    Fut: Future<Output = Result<S>>,
{
    let listener = SilentListener::start();
    let limit = bounds.connect + bounds.margin;
    let started = Instant::now();
    let built = tokio::time::timeout(limit * 3, build(listener.address())).await;
    let build_time = started.elapsed();
    let figures = match built {
        Err(_) => panic!(
            "building the store against a silent listener: still waiting after {build_time:?}"
        ),
        Ok(Err(error)) => {
            assert!(
                matches!(error, narvik_core::Error::Unavailable { .. }),
                "building the store against a silent listener: expected Unavailable, got {error:?}"
            );
            assert!(
                build_time <= limit,
                "building the store took {build_time:?}, over {limit:?}"
            );
            Figures {
                time_to_error: build_time,
                time_to_recover: None,
            }
        }
        Ok(Ok(store)) => Figures {
            time_to_error: every_call_fails_within(&store, limit, "against a silent listener")
                .await,
            time_to_recover: None,
        },
    };
    figures.report(store_name, "silent listener")
}

/// The server freezes (SIGSTOP) under a working store: calls fail within the call deadline;
/// after SIGCONT the store answers again within the recovery bound, with its data.
pub async fn freeze_and_resume<S: SessionStore + ?Sized>(
    store_name: &str,
    bounds: Bounds,
    server: &ServerProcess,
    store: &S,
) -> Figures {
    let kept = live_record(&random_user_id("frozen"), json!({"kept": true}));
    save(store, &kept).await;
    server.freeze();
    let time_to_error =
        every_call_fails_within(store, bounds.call + bounds.margin, "on a frozen server").await;
    server.resume();
    let since = Instant::now();
    let time_to_recover = recover_within(
        "fetch_session after the server resumed",
        since,
        bounds.recover + bounds.margin,
        || store.fetch_session(&kept.id),
    )
    .await;
    assert_eq!(
        fetch(store, &kept.id).await.map(|record| record.id),
        Some(kept.id.clone()),
        "the session saved before the freeze is still there"
    );
    Figures {
        time_to_error,
        time_to_recover: Some(time_to_recover),
    }
    .report(store_name, "freeze and resume")
}

/// The server is killed (SIGKILL): calls fail within the connect bound while it is down, and
/// within the recovery bound of its restart they succeed. A `durable` store keeps what it
/// acknowledged.
pub async fn kill_and_restart<S: SessionStore + ?Sized>(
    store_name: &str,
    bounds: Bounds,
    server: &mut ServerProcess,
    store: &S,
    durable: bool,
) -> Figures {
    let kept = live_record(&random_user_id("killed"), json!({"kept": true}));
    save(store, &kept).await;
    server.kill();
    let time_to_error = every_call_fails_within(
        store,
        bounds.connect + bounds.margin,
        "while the server is down",
    )
    .await;
    let since = server.start_again();
    let time_to_recover = recover_within(
        "fetch_session after the restart",
        since,
        bounds.recover + bounds.margin,
        || store.fetch_session(&kept.id),
    )
    .await;
    if durable {
        assert!(
            fetch(store, &kept.id).await.is_some(),
            "an acknowledged save was lost in the crash"
        );
    }
    let fresh = live_record(&random_user_id("after-restart"), json!({}));
    save(store, &fresh).await;
    assert!(fetch(store, &fresh.id).await.is_some());
    Figures {
        time_to_error,
        time_to_recover: Some(time_to_recover),
    }
    .report(store_name, "kill and restart")
}

/// A burst of acknowledged logouts, then kill -9 at once: after the restart no logged-out
/// session is back, and a `durable` store still has every session it acknowledged saving.
pub async fn logouts_survive_crash<S: SessionStore + ?Sized>(
    store_name: &str,
    bounds: Bounds,
    server: &mut ServerProcess,
    store: &S,
    durable: bool,
) -> Figures {
    let user = random_user_id("crash");
    let kept: Vec<SessionRecord> = (0..LOGOUT_BURST)
        .map(|_| live_record(&user, json!({"kept": true})))
        .collect();
    let logged_out: Vec<SessionRecord> = (0..LOGOUT_BURST)
        .map(|_| live_record(&user, json!({"kept": false})))
        .collect();
    for record in logged_out.iter().chain(&kept) {
        save(store, record).await;
    }
    for record in &logged_out {
        if let Err(error) = store.delete_session(&record.id).await {
            panic!("delete_session on a healthy server: {error}");
        }
    }
    server.kill();
    let since = server.start_again();
    let time_to_recover = recover_within(
        "fetch_session after the crash",
        since,
        bounds.recover + bounds.margin,
        || store.fetch_session(&kept[0].id),
    )
    .await;
    let mut resurrected = 0;
    for record in &logged_out {
        if fetch(store, &record.id).await.is_some() {
            resurrected += 1;
        }
    }
    assert_eq!(
        resurrected, 0,
        "{resurrected} of {LOGOUT_BURST} logged-out sessions came back after the crash"
    );
    if durable {
        let mut lost = 0;
        for record in &kept {
            if fetch(store, &record.id).await.is_none() {
                lost += 1;
            }
        }
        assert_eq!(
            lost, 0,
            "{lost} of {LOGOUT_BURST} acknowledged saves were lost in the crash"
        );
    }
    Figures {
        time_to_error: Duration::ZERO,
        time_to_recover: Some(time_to_recover),
    }
    .report(store_name, "logouts survive a crash")
}

/// The server restarts while nobody calls; a moment later the first call of each of `tasks`
/// concurrent tasks must succeed: a closed connection is re-established when it closes, not on
/// the next user request.
pub async fn quiet_restart<S: SessionStore + 'static>(
    store_name: &str,
    bounds: Bounds,
    server: &mut ServerProcess,
    store: Arc<S>,
    tasks: usize,
) -> Figures {
    let kept = live_record(&random_user_id("quiet"), json!({}));
    save(store.as_ref(), &kept).await;
    let all_fetch = |store: Arc<S>| {
        let id = kept.id.clone();
        async move {
            let calls: Vec<_> = (0..tasks)
                .map(|_| {
                    let store = Arc::clone(&store);
                    let id = id.clone();
                    tokio::spawn(async move { store.fetch_session(&id).await })
                })
                .collect();
            let mut failures = Vec::new();
            for call in calls {
                match call.await {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => failures.push(error.to_string()),
                    Err(join) => failures.push(join.to_string()),
                }
            }
            failures
        }
    };
    assert_eq!(
        all_fetch(Arc::clone(&store)).await,
        Vec::<String>::new(),
        "before the restart"
    );
    server.restart();
    // No traffic while the store notices the closed connections and reconnects.
    tokio::time::sleep(bounds.recover + bounds.margin).await;
    let failures = all_fetch(Arc::clone(&store)).await;
    assert!(
        failures.is_empty(),
        "after a quiet restart, {} of {tasks} first calls failed: {failures:?}",
        failures.len()
    );
    // Nothing to time: the point is that no call failed at all.
    Figures::default().report(store_name, "quiet restart")
}
