//! The axum layer under arbitrary `Cookie` headers (`{0}` and `{1}` in the input stand for
//! two live sessions' tokens): never a panic, always 200, signed in only through a cookie of
//! exactly the session cookie's name, and only such a cookie is ever cleared.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use narvik_fuzz::inputs::with_tokens;
use narvik_fuzz::layer::LayerHarness;

fn harness(host_prefix: bool) -> &'static LayerHarness {
    static PREFIXED: OnceLock<LayerHarness> = OnceLock::new();
    static PLAIN: OnceLock<LayerHarness> = OnceLock::new();
    let cell = if host_prefix { &PREFIXED } else { &PLAIN };
    cell.get_or_init(|| LayerHarness::new(host_prefix))
}

fuzz_target!(|input: (bool, Vec<Vec<u8>>)| {
    let (host_prefix, headers) = input;
    let harness = harness(host_prefix);
    let headers: Vec<Vec<u8>> = headers
        .iter()
        .take(4)
        .map(|header| with_tokens(header, [harness.token(), harness.attacker_token()]))
        .collect();
    let headers: Vec<&[u8]> = headers.iter().map(Vec::as_slice).collect();
    harness.check(&headers);
});
