//! The engine's spans: a test binary of its own, because it installs a scoped subscriber and
//! tracing caches each callsite's interest process-wide; tests running beside it with no
//! subscriber could leave a callsite marked as never interesting.

mod common;

use std::sync::{Arc, Mutex};

use common::{engine, MapStore};
use narvik_core::ManualClock;
use time::{Duration, OffsetDateTime};

/// Everything the engine traces, as text.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn spans_carry_the_short_id_and_outcome_never_the_token() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (token, session_id) = tracing::subscriber::with_default(subscriber, || {
        runtime.block_on(async {
            let store = Arc::new(MapStore::default());
            let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
            let narvik = engine(store, Arc::clone(&clock));
            let created = narvik
                .create_session("alice", vec![])
                .await
                .expect("create");
            clock.advance(Duration::days(20));
            let session = narvik
                .validate_token(&created.token)
                .await
                .expect("validate")
                .expect("live");
            narvik
                .update_session_data(&session, |data| data.push(7))
                .await
                .expect("update");
            let rotated = narvik
                .rotate_session(created.token.as_str())
                .await
                .expect("rotate")
                .expect("live");
            let failing = Arc::new(MapStore {
                fail_purges: true,
                ..MapStore::default()
            });
            let failed = engine(failing, Arc::clone(&clock))
                .delete_all_expired_sessions()
                .await;
            assert!(failed.is_err(), "the failing store's purge succeeded");
            (
                rotated.token.as_str().to_owned() + created.token.as_str(),
                created.session.id,
            )
        })
    });
    let text =
        String::from_utf8_lossy(&captured.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
    for span in [
        "create_session",
        "validate_session",
        "update_session_data",
        "rotate_session",
    ] {
        assert!(text.contains(span), "no {span} span in:\n{text}");
    }
    for outcome in [
        "outcome=\"created\"",
        "outcome=\"extended\"",
        "outcome=\"updated\"",
        "outcome=\"rotated\"",
    ] {
        assert!(text.contains(outcome), "no {outcome} in:\n{text}");
    }
    assert!(text.contains(&session_id[..8]), "no short id in:\n{text}");
    // The store's own calls, one span each, whichever store it is.
    let store = format!("store=\"{}\"", std::any::type_name::<MapStore>());
    for call in [
        format!("save_session{{{store} session=\"{}\"", &session_id[..8]),
        format!(
            "fetch_session{{{store} session=\"{}\" outcome=\"found\"",
            &session_id[..8]
        ),
        format!("update_session_data{{{store} session=\"{}\"", &session_id[..8]),
        format!("delete_session{{{store} session=\"{}\"", &session_id[..8]),
        format!(
            "delete_all_expired_sessions{{{store} outcome=\"unavailable\" error=the session store is unavailable: the test's store is down"
        ),
    ] {
        assert!(text.contains(&call), "no {call} in:\n{text}");
    }
    assert!(
        !text.contains(&session_id),
        "the full id is logged:\n{text}"
    );
    assert!(
        !text.contains(&token[..32]) && !text.contains(&token[32..]),
        "a token is logged:\n{text}"
    );
}
