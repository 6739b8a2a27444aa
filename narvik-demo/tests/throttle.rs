//! The sign-in throttle over real TCP, each client at its own loopback address: what issue 12's
//! attack (40 wrong passwords for one account, then the right one) gets now, and what the
//! account's owner at another address gets meanwhile.

mod common;

use common::{loopback, post_form, sign_in, Served};
use time::Duration;

const OWNER_PASSWORD: &str = "wonderland-rabbit";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_wrong_passwords_then_the_right_one_no_longer_signs_in_from_that_address() {
    let demo = Served::start(|builder| builder).await;
    let attacker = loopback(66);
    let owner = loopback(77);

    let mut statuses = Vec::new();
    let mut longest_wait = 0;
    for _ in 0..40 {
        let reply = sign_in(demo.addr, attacker, "alice", "guess").await;
        if reply.status == 429 {
            let wait = reply.retry_after().expect("Retry-After on 429");
            assert!(wait >= 1);
            longest_wait = longest_wait.max(wait);
            assert!(reply.body.contains("Too many wrong passwords"));
        }
        assert_eq!(reply.header("set-cookie"), None);
        statuses.push(reply.status);
    }
    assert_eq!(&statuses[..5], &[401; 5], "five free attempts");
    assert!(
        statuses[5..].iter().all(|&status| status == 429),
        "then throttled: {statuses:?}"
    );

    // The right password from the attacker's address: refused, unchecked, no session.
    let reply = sign_in(demo.addr, attacker, "alice", OWNER_PASSWORD).await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.header("set-cookie"), None);
    let wait = reply.retry_after().expect("Retry-After");

    // The owner, at another address, signs in at once.
    let reply = sign_in(demo.addr, owner, "alice", OWNER_PASSWORD).await;
    assert_eq!(reply.status, 303, "{}", reply.body);
    assert!(reply.cookie().is_some());

    // The wait is temporary: once it is over, that address may try again.
    demo.clock
        .advance(Duration::seconds(i64::try_from(wait).expect("small")));
    let reply = sign_in(demo.addr, attacker, "alice", OWNER_PASSWORD).await;
    assert_eq!(reply.status, 303);
    println!("attacker's wait after 40 wrong passwords: {wait} s (longest seen {longest_wait} s)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_from_many_addresses_slows_a_new_address_boundedly_and_the_known_one_not_at_all() {
    let demo = Served::start(|builder| builder).await;
    let owner = loopback(77);
    let reply = sign_in(demo.addr, owner, "alice", OWNER_PASSWORD).await;
    assert_eq!(
        reply.status, 303,
        "the owner signs in once: a known address"
    );

    // Twelve addresses, one guess each: past the account's ten free failures.
    for last in 100..112 {
        let reply = sign_in(demo.addr, loopback(last), "alice", "guess").await;
        assert!(matches!(reply.status, 401 | 429), "{}", reply.status);
    }

    // The owner from a new address waits, at most the account's cap of one minute.
    let new_address = loopback(88);
    let reply = sign_in(demo.addr, new_address, "alice", OWNER_PASSWORD).await;
    assert_eq!(reply.status, 429);
    let wait = reply.retry_after().expect("Retry-After");
    assert!((1..=60).contains(&wait), "{wait}");

    // From the known address: no wait.
    let reply = sign_in(demo.addr, owner, "alice", OWNER_PASSWORD).await;
    assert_eq!(reply.status, 303);

    // And after the wait, from the new address too.
    demo.clock
        .advance(Duration::seconds(i64::try_from(wait).expect("small")));
    let reply = sign_in(demo.addr, new_address, "alice", OWNER_PASSWORD).await;
    assert_eq!(reply.status, 303);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_success_resets_its_address_and_failures_expire_after_the_window() {
    let demo = Served::start(|builder| builder).await;
    let client = loopback(50);
    for _ in 0..4 {
        assert_eq!(sign_in(demo.addr, client, "bob", "typo").await.status, 401);
    }
    let reply = sign_in(demo.addr, client, "bob", "builder-of-things").await;
    assert_eq!(reply.status, 303);
    // Five free attempts again, not one.
    for _ in 0..5 {
        assert_eq!(sign_in(demo.addr, client, "bob", "typo").await.status, 401);
    }
    assert_eq!(sign_in(demo.addr, client, "bob", "typo").await.status, 429);
    // An hour after the last failure, the counter is forgotten.
    demo.clock.advance(Duration::hours(1));
    assert_eq!(sign_in(demo.addr, client, "bob", "typo").await.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_for_is_ignored_unless_configured() {
    // By default a client cannot pick a fresh address per guess with the header.
    let demo = Served::start(|builder| builder).await;
    let client = loopback(60);
    let origin = format!("http://{}", demo.addr);
    for n in 0..6 {
        let forwarded = format!("203.0.113.{n}");
        let reply = common::send(
            demo.addr,
            client,
            "POST",
            "/sign-in",
            &[
                ("Origin", origin.as_str()),
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("X-Forwarded-For", forwarded.as_str()),
            ],
            "username=carol&password=guess",
        )
        .await;
        let expected = if n < 5 { 401 } else { 429 };
        assert_eq!(reply.status, expected, "attempt {n}");
    }

    // Behind a trusted proxy (one address for everyone), the rightmost entry counts.
    let proxied = Served::start(|builder| builder.trust_x_forwarded_for(true)).await;
    let proxy = loopback(61);
    let origin = format!("http://{}", proxied.addr);
    for n in 0..6 {
        let forwarded = format!("198.51.100.9, 203.0.113.{n}");
        let reply = common::send(
            proxied.addr,
            proxy,
            "POST",
            "/sign-in",
            &[
                ("Origin", origin.as_str()),
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("X-Forwarded-For", forwarded.as_str()),
            ],
            "username=carol&password=guess",
        )
        .await;
        assert_eq!(
            reply.status, 401,
            "attempt {n}: six clients, one guess each"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_out_other_devices_asks_for_the_password_under_the_same_throttle() {
    let demo = Served::start(|builder| builder).await;
    let laptop = loopback(70);
    let phone = loopback(71);
    let laptop_cookie = sign_in(demo.addr, laptop, "carol", "singing-in-snow")
        .await
        .cookie()
        .expect("laptop session");
    let phone_cookie = sign_in(demo.addr, phone, "carol", "singing-in-snow")
        .await
        .cookie()
        .expect("phone session");
    let page = common::send(
        demo.addr,
        laptop,
        "GET",
        "/devices",
        &[("Cookie", &laptop_cookie)],
        "",
    )
    .await;
    assert!(page.body.contains("id=\"others-password\""));
    let marker = "name=\"csrf\" value=\"";
    let start = page.body.find(marker).expect("a csrf field") + marker.len();
    let csrf = page.body[start..]
        .split('"')
        .next()
        .expect("csrf")
        .to_owned();

    // Someone on the laptop without the password: five wrong ones, then throttled.
    for n in 0..6 {
        let reply = post_form(
            demo.addr,
            laptop,
            "/devices/sign-out-others",
            Some(&laptop_cookie),
            &format!("csrf={csrf}&password=guess"),
        )
        .await;
        let expected = if n < 5 { 401 } else { 429 };
        assert_eq!(reply.status, expected, "attempt {n}");
        assert!(reply.body.contains("id=\"error\""));
        if expected == 429 {
            assert!(reply.retry_after().is_some());
        }
    }
    let phone_page = common::send(
        demo.addr,
        phone,
        "GET",
        "/devices",
        &[("Cookie", &phone_cookie)],
        "",
    )
    .await;
    assert_eq!(phone_page.status, 200, "the phone is still signed in");

    // Even the right password waits while throttled; after the wait it signs the phone out.
    let form = format!("csrf={csrf}&password=singing-in-snow");
    let reply = post_form(
        demo.addr,
        laptop,
        "/devices/sign-out-others",
        Some(&laptop_cookie),
        &form,
    )
    .await;
    assert_eq!(reply.status, 429);
    demo.clock.advance(Duration::seconds(
        i64::try_from(reply.retry_after().expect("Retry-After")).expect("small"),
    ));
    let reply = post_form(
        demo.addr,
        laptop,
        "/devices/sign-out-others",
        Some(&laptop_cookie),
        &form,
    )
    .await;
    assert_eq!(reply.status, 303);
    assert_eq!(reply.header("location"), Some("/devices"));
    let phone_page = common::send(
        demo.addr,
        phone,
        "GET",
        "/devices",
        &[("Cookie", &phone_cookie)],
        "",
    )
    .await;
    assert_eq!(phone_page.header("location"), Some("/sign-in"));
}
