//! Any `CookieConfig`: `validate` accepts exactly what keeps narvik's rules and what a browser
//! keeps as configured; an accepted one serialises without injection, reads back as
//! configured, returns as the session token and is deleted by the blank cookie.
#![no_main]

use libfuzzer_sys::fuzz_target;
use narvik_fuzz::{checks, inputs::ConfigInput};

fuzz_target!(|input: ConfigInput| {
    checks::check_cookie_config(&input.to_config());
});
