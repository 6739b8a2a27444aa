//! Security headers on real responses of a served demo, whatever produced the response.

mod common;

use common::{loopback, send, sign_in, Served};
use narvik_demo::HSTS;

const COOP: &str = "cross-origin-opener-policy";
const CORP: &str = "cross-origin-resource-policy";

/// One response of every kind the demo sends: a page, a redirect, a wrong password, a refused
/// cross-site form, a missing page, a throttled sign-in.
async fn every_kind_of_response(demo: &Served) -> Vec<(&'static str, common::Reply)> {
    let client = loopback(90);
    let mut replies = vec![
        (
            "page",
            send(demo.addr, client, "GET", "/sign-in", &[], "").await,
        ),
        (
            "redirect",
            send(demo.addr, client, "GET", "/", &[], "").await,
        ),
        (
            "not found",
            send(demo.addr, client, "GET", "/nothing-here", &[], "").await,
        ),
        (
            "cross-site form",
            send(
                demo.addr,
                client,
                "POST",
                "/sign-in",
                &[
                    ("Origin", "https://evil.example"),
                    ("Content-Type", "application/x-www-form-urlencoded"),
                ],
                "username=alice&password=x",
            )
            .await,
        ),
    ];
    for _ in 0..5 {
        replies.push((
            "wrong password",
            sign_in(demo.addr, client, "alice", "x").await,
        ));
    }
    replies.push(("throttled", sign_in(demo.addr, client, "alice", "x").await));
    replies.push((
        "signed in",
        sign_in(demo.addr, loopback(91), "alice", "wonderland-rabbit").await,
    ));
    let statuses: Vec<u16> = replies.iter().map(|(_, reply)| reply.status).collect();
    assert_eq!(
        statuses,
        [200, 303, 404, 403, 401, 401, 401, 401, 401, 429, 303]
    );
    replies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_isolates_the_origin_and_secure_cookies_come_with_hsts() {
    let demo = Served::start(|builder| builder).await;
    for (kind, reply) in every_kind_of_response(&demo).await {
        assert_eq!(reply.header(COOP), Some("same-origin"), "{kind}");
        assert_eq!(reply.header(CORP), Some("same-origin"), "{kind}");
        assert_eq!(
            reply.header("strict-transport-security"),
            Some(HSTS),
            "{kind}"
        );
        assert!(reply.header("content-security-policy").is_some(), "{kind}");
        assert_eq!(reply.header("x-frame-options"), Some("DENY"), "{kind}");
    }
    assert_eq!(HSTS, "max-age=63072000; includeSubDomains");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_development_mode_sends_no_hsts() {
    let demo = Served::start(|builder| builder.secure_cookie(false)).await;
    for (kind, reply) in every_kind_of_response(&demo).await {
        assert_eq!(reply.header("strict-transport-security"), None, "{kind}");
        assert_eq!(reply.header(COOP), Some("same-origin"), "{kind}");
        assert_eq!(reply.header(CORP), Some("same-origin"), "{kind}");
        if kind == "signed in" {
            let cookie = reply.header("set-cookie").expect("a cookie");
            assert!(!cookie.contains("Secure"), "{cookie}");
        }
    }
}
