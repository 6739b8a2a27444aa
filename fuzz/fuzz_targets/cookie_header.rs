//! Any `Cookie` header: narvik reads exactly the browser model's pairs, finds a name only
//! when exactly one pair has it byte for byte, and a look-alike pair inserted anywhere changes
//! nothing about the session cookie.
#![no_main]

use libfuzzer_sys::fuzz_target;
use narvik_fuzz::checks;

fuzz_target!(|input: (String, String, u8, u8)| {
    let (header, other, at, name) = input;
    checks::check_cookie_header(&header);
    if !other.contains(';') {
        let name = checks::SESSION_NAMES[usize::from(name) % checks::SESSION_NAMES.len()];
        checks::check_other_cookie_changes_nothing(&header, &other, usize::from(at), name);
    }
});
