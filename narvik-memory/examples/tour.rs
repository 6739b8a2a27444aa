//! A tour of narvik over the memory store: log in, validate the cookie, extend, rotate, list
//! devices, sign out the others, log out. Time is driven by a `ManualClock`, so the tour jumps
//! days ahead without waiting.
//!
//! Run it with `cargo run -p narvik-memory --example tour`.

use std::error::Error;
use std::sync::Arc;

use narvik_core::session::short_id;
use narvik_core::{Clock, ManualClock, Narvik, SessionToken};
use narvik_memory::MemoryStore;
use serde::{Deserialize, Serialize};
use time::Duration;

/// The application's own session data: which device signed in.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Device {
    name: String,
}

/// A `Set-Cookie` value fit for a log line: the token replaced by a placeholder.
fn printable_cookie(narvik: &Narvik<Device>, token: &SessionToken) -> String {
    narvik
        .create_cookie(token)
        .serialize()
        .replace(token.as_str(), "<token>")
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let clock = Arc::new(ManualClock::starting_now());
    // The store holds no clock: the engine hands its `now` down to listing and purge, so the
    // manual clock governs validation, listing and purge alike.
    let store = Arc::new(MemoryStore::new());
    let narvik: Narvik<Device> = Narvik::builder(store.clone())
        .clock(clock.clone())
        .build()?;
    let start = clock.now();
    let day = |at: time::OffsetDateTime| (at - start).whole_days();

    println!("1. alice logs in on her laptop, her phone and her tablet");
    let mut laptop = None;
    for name in ["laptop", "phone", "tablet"] {
        let created = narvik
            .create_session("alice", Device { name: name.into() })
            .await?;
        println!(
            "   {name}: session {} (new: {}), expires on day {}",
            short_id(&created.session.id),
            created.session.new,
            day(created.session.expires_at)
        );
        if name == "laptop" {
            println!(
                "   Set-Cookie: {}",
                printable_cookie(&narvik, &created.token)
            );
            laptop = Some(created);
        }
    }
    let laptop = laptop.ok_or("the laptop session was not created")?;

    println!("2. the laptop sends a request; the token comes from its Cookie header");
    let header = format!("theme=dark; narvik_session={}", laptop.token.as_str());
    let token = narvik
        .read_session_token(&header)
        .ok_or("no session cookie in the header")?;
    let session = narvik
        .validate_session(token.as_str())
        .await?
        .ok_or("the fresh session did not validate")?;
    println!(
        "   valid: user {}, device {}, extended: {}",
        session.user_id, session.data.name, session.extended
    );

    println!("3. 16 days later (past half the 30-day lifetime) the laptop comes back");
    clock.advance(Duration::days(16));
    let session = narvik
        .validate_session(token.as_str())
        .await?
        .ok_or("the session died before its expiry")?;
    println!(
        "   valid, extended: {}, now expires on day {}; send the cookie again",
        session.extended,
        day(session.expires_at)
    );

    println!("4. alice changes her role: the laptop session is rotated");
    let rotated = narvik
        .rotate_session(token.as_str())
        .await?
        .ok_or("rotation found no live session")?;
    println!(
        "   new session {} for {}, old token still valid: {}",
        short_id(&rotated.session.id),
        rotated.session.data.name,
        narvik.validate_session(token.as_str()).await?.is_some()
    );
    println!(
        "   Set-Cookie: {}",
        printable_cookie(&narvik, &rotated.token)
    );

    println!("5. alice lists her devices");
    let mut devices = narvik.fetch_sessions_for_user("alice").await?;
    devices.sort_by(|a, b| a.data.name.cmp(&b.data.name));
    for device in &devices {
        println!(
            "   {} session {}, expires on day {}",
            device.data.name,
            short_id(&device.id),
            day(device.expires_at)
        );
    }

    println!("6. alice signs out every other device");
    let signed_out = narvik
        .invalidate_other_sessions("alice", &rotated.session.id)
        .await?;
    let left = narvik.fetch_sessions_for_user("alice").await?;
    println!(
        "   signed out {signed_out} sessions; {} left ({})",
        left.len(),
        left.iter()
            .map(|s| s.data.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );

    println!("7. alice logs out");
    narvik.invalidate_session(&rotated.session.id).await?;
    println!(
        "   Set-Cookie: {}",
        narvik.create_blank_cookie().serialize()
    );
    println!(
        "   her token still valid: {}",
        narvik
            .validate_session(rotated.token.as_str())
            .await?
            .is_some()
    );

    println!("8. bob forgets to log out; 31 days later his session has expired");
    let bob = narvik
        .create_session(
            "bob",
            Device {
                name: "kiosk".into(),
            },
        )
        .await?;
    clock.advance(Duration::days(31));
    println!(
        "   bob's session {} valid: {}",
        short_id(&bob.session.id),
        narvik.validate_session(bob.token.as_str()).await?.is_some()
    );
    println!(
        "   expired on the engine's clock, so validation deleted it: {} record(s) held",
        store.len()
    );

    println!("9. carol abandons a session; one purge on the engine's clock frees it");
    let abandoned = narvik
        .create_session(
            "carol",
            Device {
                name: "library".into(),
            },
        )
        .await?;
    clock.advance(Duration::days(31));
    let purged = narvik.delete_all_expired_sessions().await?;
    println!(
        "   carol's session {} expired; purged {purged}, {} left in the store",
        short_id(&abandoned.session.id),
        store.len()
    );
    Ok(())
}
