//! `SessionToken::parse` on any text: never panics, accepts exactly 32 characters of `a-z2-7`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use narvik_fuzz::checks;

fuzz_target!(|data: &[u8]| {
    checks::check_token(&String::from_utf8_lossy(data));
});
