//! The layer reads the session cookie as browsers write it (RFC 6265bis): every Unicode
//! whitespace code point and every control, before or after the name or the value, with and
//! without `__Host-`, alone and beside the real cookie, through the whole router
//! (`ServiceExt::oneshot`). Then property tests of arbitrary `Cookie` headers against the
//! browser model (the fuzz crate's `layer` harness, compiled here as it is).

#[path = "../../fuzz/src/browser.rs"]
mod browser;
#[path = "../../fuzz/src/layer.rs"]
mod layer;

use std::sync::OnceLock;

use axum::http::StatusCode;
use layer::{LayerHarness, Outcome};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

/// Whether the `http` crate refuses `c` in a header value (C0 controls but HTAB, and DEL):
/// such a header never reaches any server, so the layer cannot see it.
fn refused_by_http(c: char) -> bool {
    (c < ' ' && c != '\t') || c == '\u{7f}'
}

fn anonymous() -> Outcome {
    Outcome {
        status: StatusCode::OK,
        user: None,
        set_cookies: Vec::new(),
    }
}

fn signed_in_as(user: &str) -> Outcome {
    Outcome {
        user: Some(user.to_owned()),
        ..anonymous()
    }
}

fn cleared(harness: &LayerHarness) -> Outcome {
    Outcome {
        set_cookies: vec![harness.blank_cookie()],
        ..anonymous()
    }
}

fn every_padding_in_every_position(host_prefix: bool) {
    let harness = LayerHarness::new(host_prefix);
    let name = harness.cookie_name().to_owned();
    assert_eq!(name.starts_with("__Host-"), host_prefix);
    let (alice, mallory) = (
        harness.token().to_owned(),
        harness.attacker_token().to_owned(),
    );
    let send = |header: &str| harness.send(&[header.as_bytes()]);
    let (mut sent, mut refused) = (0, 0);
    for c in browser::look_alike_padding() {
        let trimmed = c == ' ' || c == '\t';
        if refused_by_http(c) {
            assert_eq!(send(&format!("{c}{name}={mallory}")), None, "{c:?}");
            refused += 1;
            continue;
        }
        // The attacker's cookie under a look-alike name: another cookie, never ours, never a
        // reason to clear ours; alone it signs no one in, beside alice's it changes nothing.
        for look_alike in [
            format!("{c}{name}={mallory}"),
            format!("{name}{c}={mallory}"),
        ] {
            let expected = if trimmed {
                signed_in_as("mallory")
            } else {
                anonymous()
            };
            assert_eq!(send(&look_alike), Some(expected), "{look_alike:?}");
            for header in [
                format!("{look_alike}; {name}={alice}"),
                format!("{name}={alice}; {look_alike}"),
                format!("{name}={alice};{look_alike}"),
            ] {
                let expected = if trimmed {
                    // Two cookies of the exact name: cookie tossing, signed out and cleared.
                    cleared(&harness)
                } else {
                    signed_in_as("alice")
                };
                assert_eq!(send(&header), Some(expected), "{header:?}");
                sent += 1;
            }
            sent += 1;
        }
        // Padding around the value: the exact name with a value that is no token. It is our
        // cookie, so it is cleared, and never cut down to the token inside it.
        for header in [
            format!("{name}={c}{mallory}"),
            format!("{name}={mallory}{c}"),
        ] {
            let expected = if trimmed {
                signed_in_as("mallory")
            } else {
                cleared(&harness)
            };
            assert_eq!(send(&header), Some(expected), "{header:?}");
            sent += 1;
        }
    }
    // Every whitespace code point and control was tried: 25 whitespace, 65 controls (some
    // both), the invisible format characters; only C0 controls and DEL never reach a server.
    assert_eq!(refused, 32 - 1 + 1);
    assert!(sent >= (browser::look_alike_padding().len() - refused) * 10);
}

#[test]
fn every_padding_in_every_position_without_a_prefix() {
    every_padding_in_every_position(false);
}

#[test]
fn every_padding_in_every_position_with_the_host_prefix() {
    every_padding_in_every_position(true);
}

#[test]
fn the_reported_attacks_fail() {
    let harness = LayerHarness::new(true);
    let (alice, mallory) = (
        harness.token().to_owned(),
        harness.attacker_token().to_owned(),
    );
    // Session injection: a sibling subdomain's cookie whose name only looks prefixed.
    for c in [
        '\u{2000}', '\u{a0}', '\u{3000}', '\u{85}', '\u{2028}', '\u{feff}',
    ] {
        let injected = format!("{c}__Host-narvik_session={mallory}");
        assert_eq!(
            harness.send(&[injected.as_bytes()]),
            Some(anonymous()),
            "{injected:?}"
        );
        // Denial of service: a look-alike beside the real cookie neither signs alice out nor
        // makes the layer send Max-Age=0 for her cookie.
        let beside = format!("__Host-narvik_session={alice}; __Host-narvik_session{c}=x");
        assert_eq!(
            harness.send(&[beside.as_bytes()]),
            Some(signed_in_as("alice")),
            "{beside:?}"
        );
    }
    // The unprefixed name, in any case, and a nameless cookie: other cookies.
    for header in [
        format!("narvik_session={mallory}"),
        format!("__host-narvik_session={mallory}"),
        format!("={mallory}"),
        mallory.clone(),
    ] {
        assert_eq!(
            harness.send(&[header.as_bytes()]),
            Some(anonymous()),
            "{header:?}"
        );
    }
    // Raw bytes that are not UTF-8 around the name make another name too.
    let mut raw = vec![0xa0];
    raw.extend_from_slice(format!("__Host-narvik_session={mallory}").as_bytes());
    assert_eq!(harness.send(&[&raw]), Some(anonymous()));
    // Split over two Cookie headers (HTTP/2): one list; the look-alike in one header is no
    // duplicate of the real cookie in the other.
    let real = format!("__Host-narvik_session={alice}");
    let look_alike = format!("__Host-narvik_session\u{3000}={mallory}");
    assert_eq!(
        harness.send(&[real.as_bytes(), look_alike.as_bytes()]),
        Some(signed_in_as("alice"))
    );
    assert_eq!(
        harness.send(&[real.as_bytes(), real.as_bytes()]),
        Some(cleared(&harness))
    );
}

fn cookie_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => select(vec![
            ';', '=', ' ', '\t', 'a', '_', '-', '"', '\u{a0}', '\u{2000}', '\u{3000}', '\u{feff}',
            '\u{85}', '\u{2028}', '\u{fffd}',
        ]),
        1 => any::<char>(),
    ]
}

fn pair(harness_name: &'static str) -> impl Strategy<Value = String> {
    let padding = || vec(select(browser::look_alike_padding()), 0..2).prop_map(String::from_iter);
    (
        padding(),
        prop_oneof![
            3 => Just(harness_name.to_owned()),
            1 => select(vec!["narvik_session", "__host-narvik_session", "theme", ""])
                .prop_map(str::to_owned),
            1 => vec(cookie_char(), 0..6).prop_map(String::from_iter),
        ],
        padding(),
        prop_oneof![3 => Just("="), 1 => Just("")],
        padding(),
        prop_oneof![
            3 => select(vec![0usize, 1]).prop_map(|which| which.to_string()),
            1 => vec(cookie_char(), 0..6).prop_map(String::from_iter),
        ],
        padding(),
    )
        .prop_map(|(a, name, b, equals, c, value, d)| {
            format!("{a}{name}{b}{equals}{c}{{{value}}}{d}")
        })
}

/// Header values built from pairs; `{0}` and `{1}` stand for alice's and mallory's tokens.
fn headers(name: &'static str) -> impl Strategy<Value = Vec<String>> {
    vec(
        vec((pair(name), select(vec![";", "; ", " ;"])), 0..4).prop_map(|pairs| {
            pairs
                .into_iter()
                .map(|(pair, separator)| format!("{pair}{separator}"))
                .collect::<String>()
        }),
        0..3,
    )
}

fn check_with_tokens(harness: &LayerHarness, headers: &[String]) {
    let headers: Vec<String> = headers
        .iter()
        .map(|header| {
            header
                .replace("{0}", harness.token())
                .replace("{1}", harness.attacker_token())
                .replace(['{', '}'], "")
        })
        .collect();
    let bytes: Vec<&[u8]> = headers.iter().map(String::as_bytes).collect();
    harness.check(&bytes);
}

/// One application per cookie name for all cases (never dropped: a static).
fn shared(host_prefix: bool) -> &'static LayerHarness {
    static PREFIXED: OnceLock<LayerHarness> = OnceLock::new();
    static PLAIN: OnceLock<LayerHarness> = OnceLock::new();
    let cell = if host_prefix { &PREFIXED } else { &PLAIN };
    cell.get_or_init(|| LayerHarness::new(host_prefix))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_cookie_header_signs_in_only_through_the_exact_name(
        headers in headers("__Host-narvik_session"),
    ) {
        check_with_tokens(shared(true), &headers);
    }

    #[test]
    fn any_cookie_header_without_a_prefix_too(headers in headers("narvik_session")) {
        check_with_tokens(shared(false), &headers);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_layer(
        headers in vec(vec(any::<u8>(), 0..48), 0..3),
    ) {
        let bytes: Vec<&[u8]> = headers.iter().map(Vec::as_slice).collect();
        shared(true).check(&bytes);
    }
}
