//! `SessionData` from any text a store could hand back (decode never panics, JSON round-trips
//! exactly) and from any JSON value (the text form keeps it bit for bit).
#![no_main]

use libfuzzer_sys::fuzz_target;
use narvik_fuzz::{checks, inputs::Json};

fuzz_target!(|input: (String, Json)| {
    let (text, json) = input;
    checks::check_data_text(&text);
    checks::check_data_value(&json.to_value(32));
});
