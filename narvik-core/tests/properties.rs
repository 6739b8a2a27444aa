//! Property tests of the parsers at narvik's edges: cookie headers against a browser model,
//! look-alike cookies, the browser-versus-server differential for prefixed names, token
//! parsing, `SessionData`'s text form and `CookieConfig` validation.
//!
//! The properties are the fuzz crate's (`fuzz/src/checks.rs`, against the model in
//! `fuzz/src/browser.rs`), compiled here as they are, so fuzzing and these bounded, stable runs
//! check the same definitions. Case counts are fixed: the whole file runs in about a second.

#[path = "../../fuzz/src/browser.rs"]
mod browser;
#[path = "../../fuzz/src/checks.rs"]
mod checks;

use std::collections::BTreeMap;

use narvik_core::{CookieConfig, CookiePrefix, SameSite, SessionData};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::select;
use serde::{Deserialize, Serialize};
use serde_json::{Number, Value};
use time::Duration;

const CASES: u32 = 512;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        // Nothing is written next to the sources; a failure prints its minimal input.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Characters that matter to cookie parsing, often, and any character, sometimes.
fn cookie_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => select(vec![
            ';', '=', ' ', '\t', 'a', 'n', '_', '-', 'H', 's', '"', ',', '\u{a0}', '\u{2000}',
            '\u{3000}', '\u{feff}', '\u{85}', '\u{2028}', '\u{b}', '\u{c}', '\r', '\n', '\0',
        ]),
        1 => any::<char>(),
    ]
}

fn padding() -> impl Strategy<Value = String> {
    vec(select(browser::look_alike_padding()), 0..3).prop_map(String::from_iter)
}

fn cookie_name() -> impl Strategy<Value = String> {
    prop_oneof![
        select(vec![
            "narvik_session",
            "__Host-narvik_session",
            "__host-narvik_session",
            "__Secure-narvik_session",
            "sid",
            "",
        ])
        .prop_map(str::to_owned),
        vec(cookie_char(), 0..8).prop_map(String::from_iter),
    ]
}

fn cookie_value() -> impl Strategy<Value = String> {
    prop_oneof![
        select(vec![
            checks::TOKEN,
            "",
            "x",
            "a=b",
            "\"quoted\"",
            "__Host-narvik_session=x",
            "\u{a0}__Host-narvik_session=x",
        ])
        .prop_map(str::to_owned),
        vec(cookie_char(), 0..8).prop_map(String::from_iter),
    ]
}

/// One `name=value` pair (no `;`), padded with anything a trim could strip.
fn cookie_pair() -> impl Strategy<Value = String> {
    (
        padding(),
        cookie_name(),
        padding(),
        any::<bool>(),
        padding(),
        cookie_value(),
        padding(),
    )
        .prop_map(|(a, name, b, equals, c, value, d)| {
            let equals = if equals { "=" } else { "" };
            format!("{a}{name}{b}{equals}{c}{value}{d}").replace(';', "")
        })
}

fn cookie_header() -> impl Strategy<Value = String> {
    prop_oneof![
        vec(cookie_char(), 0..48).prop_map(String::from_iter),
        vec((cookie_pair(), select(vec![";", "; ", " ;", ";\t"])), 0..6).prop_map(|pairs| {
            pairs
                .into_iter()
                .map(|(pair, separator)| format!("{pair}{separator}"))
                .collect::<String>()
        }),
    ]
}

fn set_cookie() -> impl Strategy<Value = String> {
    let attribute = select(vec![
        "; Secure",
        "; Path=/",
        "; Path=/app",
        "; path=/",
        "; Path=x",
        "; Domain=example.com",
        "; Domain=.example.com",
        "; Domain=app.example.com",
        "; Domain=evil.example.com",
        "; Max-Age=0",
        "; Max-Age=60",
        "; HttpOnly",
        "; SameSite=None",
        "; SameSite=Lax",
        "; secure",
    ]);
    (cookie_pair(), vec(attribute, 0..5))
        .prop_map(|(pair, attributes)| format!("{pair}{}", attributes.concat()))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_parser_reads_headers_as_the_browser_model(header in cookie_header()) {
        checks::check_cookie_header(&header);
    }

    #[test]
    fn a_look_alike_is_never_ours_nor_a_duplicate(
        header in cookie_header(),
        other in cookie_pair(),
        at in 0usize..8,
        name in select(checks::SESSION_NAMES.to_vec()),
    ) {
        checks::check_other_cookie_changes_nothing(&header, &other, at, name);
    }

    #[test]
    fn the_server_reads_the_names_the_browser_holds(
        set_cookies in vec((0usize..checks::SITES.len(), set_cookie()), 0..8),
        path in select(vec!["/", "/app", "/app/page", "/other"]),
    ) {
        checks::check_browser_differential(&set_cookies, path);
    }

    #[test]
    fn token_parsing_never_panics_and_accepts_exactly_tokens(
        candidate in prop_oneof![
            vec(any::<char>(), 0..40).prop_map(String::from_iter),
            vec(select(b"abcdefghijklmnopqrstuvwxyz234567".to_vec()), 30..34)
                .prop_map(|bytes| String::from_utf8(bytes).unwrap_or_default()),
            (0usize..32, any::<char>()).prop_map(|(at, c)| {
                let mut chars: Vec<char> = checks::TOKEN.chars().collect();
                chars[at] = c;
                chars.into_iter().collect()
            }),
        ],
    ) {
        checks::check_token(&candidate);
    }

    #[test]
    fn session_data_survives_the_text_form_exactly(value in json_value()) {
        checks::check_data_value(&value);
    }

    #[test]
    fn typed_data_survives_the_text_form_bit_for_bit(typed in typed()) {
        let data = SessionData::from(serde_json::to_value(&typed).expect("serialises"));
        let text = data.to_json_text().expect("writes").into_owned();
        let back: Typed = SessionData::from_json_text(text).decode().expect("decodes");
        prop_assert!(back.same_bits(&typed), "{typed:?} came back as {back:?}");
    }

    #[test]
    fn any_text_from_a_store_decodes_or_fails_cleanly(
        text in prop_oneof![
            vec(cookie_char(), 0..32).prop_map(String::from_iter),
            (json_value(), 0usize..64, any::<char>()).prop_map(|(value, at, c)| {
                // Valid JSON text with one character replaced: mostly not JSON any more.
                let mut chars: Vec<char> = value.to_string().chars().collect();
                if !chars.is_empty() {
                    let at = at % chars.len();
                    chars[at] = c;
                }
                chars.into_iter().collect()
            }),
            json_value().prop_map(|value| value.to_string()),
        ],
    ) {
        checks::check_data_text(&text);
    }

    #[test]
    fn validated_cookie_configs_are_what_browsers_keep(config in cookie_config()) {
        checks::check_cookie_config(&config);
    }
}

fn json_number() -> impl Strategy<Value = Value> {
    let float = |f: f64| Number::from_f64(f).map(Value::Number);
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        select(vec![i64::MIN, i64::MAX, -1, 0]).prop_map(Value::from),
        Just(Value::from(u64::MAX)),
        any::<u64>().prop_filter_map("finite", move |bits| float(f64::from_bits(bits))),
        select(vec![
            0.1,
            0.1 + 0.2,
            -0.0,
            0.0,
            1.0,
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            5e-324,
            1e300,
            123_456_789.123_456_78,
        ])
        .prop_filter_map("finite", float),
    ]
}

fn json_string() -> impl Strategy<Value = String> {
    vec(any::<char>(), 0..12).prop_map(String::from_iter)
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        json_number(),
        json_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(json_string(), inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// An application's typed data, with the numbers that lose bits most easily.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Typed {
    float: f64,
    signed: i64,
    unsigned: u64,
    text: String,
    nested: Vec<BTreeMap<String, Option<f64>>>,
}

impl Typed {
    fn same_bits(&self, other: &Self) -> bool {
        let same_floats = |left: &BTreeMap<String, Option<f64>>,
                           right: &BTreeMap<String, Option<f64>>| {
            left.len() == right.len()
                && left.iter().zip(right).all(|((lk, lv), (rk, rv))| {
                    lk == rk && lv.map(f64::to_bits) == rv.map(f64::to_bits)
                })
        };
        self.float.to_bits() == other.float.to_bits()
            && self.signed == other.signed
            && self.unsigned == other.unsigned
            && self.text == other.text
            && self.nested.len() == other.nested.len()
            && self
                .nested
                .iter()
                .zip(&other.nested)
                .all(|(l, r)| same_floats(l, r))
    }
}

fn finite_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<u64>()
            .prop_map(f64::from_bits)
            .prop_filter("finite", |f| f.is_finite()),
        select(vec![-0.0, 0.1, f64::MAX, f64::MIN_POSITIVE, 5e-324]),
    ]
}

fn typed() -> impl Strategy<Value = Typed> {
    (
        finite_f64(),
        prop_oneof![any::<i64>(), select(vec![i64::MIN, i64::MAX])],
        prop_oneof![any::<u64>(), Just(u64::MAX)],
        json_string(),
        vec(
            btree_map(json_string(), proptest::option::of(finite_f64()), 0..4),
            0..4,
        ),
    )
        .prop_map(|(float, signed, unsigned, text, nested)| Typed {
            float,
            signed,
            unsigned,
            text,
            nested,
        })
}

fn cookie_config() -> impl Strategy<Value = CookieConfig> {
    // Weighted towards configurations one rule away from valid, where a wrong rule shows.
    let name = prop_oneof![
        6 => select(vec![
            "__Host-sid",
            "__host-sid",
            "__HOST-sid",
            "__Secure-sid",
            "__SECURE-sid",
            "__secure-sid",
            "__Host-",
            "__Secure-",
            "__Host-__Secure-x",
        ])
        .prop_map(str::to_owned),
        3 => select(vec!["narvik_session", "sid", "a;b", "a b", "a=b", "", "é"])
            .prop_map(str::to_owned),
        2 => vec(cookie_char(), 0..12).prop_map(String::from_iter),
        1 => select(vec![4064usize, 4065, 4060]).prop_map(|n| "n".repeat(n)),
    ];
    let max_age = prop_oneof![
        3 => Just(None),
        2 => select(vec![0i64, 1, 999, 1000, 1500, -1000, 86_400_000]).prop_map(Some),
        1 => any::<i32>().prop_map(|ms| Some(i64::from(ms))),
    ]
    .prop_map(|ms| ms.map(Duration::milliseconds));
    let domain = prop_oneof![
        4 => Just(None),
        2 => select(vec!["example.com", ".example.com", "Example.COM", "app.example.com", "localhost"])
            .prop_map(|domain| Some(domain.to_owned())),
        1 => select(vec![".", "..", "a..b", "a.", "a;b", "x.com; Secure", "exämple.com", ""])
            .prop_map(|domain| Some(domain.to_owned())),
        1 => Just(Some(format!("{}.com", "d".repeat(1021)))),
    ];
    let path = prop_oneof![
        6 => Just("/".to_owned()),
        2 => select(vec!["/app", "/app/", "/%20", "/Path=/"]).prop_map(str::to_owned),
        1 => select(vec!["", "x", "/a;b", "/a b", "/a,b", "/\r\n"]).prop_map(str::to_owned),
        1 => Just(format!("/{}", "p".repeat(1024))),
    ];
    (
        name,
        max_age,
        prop_oneof![3 => Just(true), 1 => Just(false)],
        any::<bool>(),
        domain,
        path,
        select(vec![SameSite::Strict, SameSite::Lax, SameSite::None]),
        select(vec![
            CookiePrefix::None,
            CookiePrefix::Secure,
            CookiePrefix::Host,
        ]),
    )
        .prop_map(
            |(name, max_age, secure, http_only, domain, path, same_site, prefix)| CookieConfig {
                name,
                max_age,
                browser_session: false,
                secure,
                http_only,
                domain,
                path,
                same_site,
                prefix,
            },
        )
}
