//! Browser versus server: sites (the app, a sibling, the parent domain; https or http) set
//! arbitrary cookies in the browser model; narvik must read the browser's `Cookie` header
//! under the browser's own names, and a prefixed name only when the browser holds that exact
//! cookie, set as the prefix demands.
#![no_main]

use libfuzzer_sys::fuzz_target;
use narvik_fuzz::checks;

const PATHS: [&str; 4] = ["/", "/app", "/app/page", "/other"];

fuzz_target!(|input: (Vec<(u8, String)>, u8)| {
    let (set_cookies, path) = input;
    let set_cookies: Vec<(usize, String)> = set_cookies
        .into_iter()
        .take(16)
        .map(|(site, set_cookie)| (usize::from(site), set_cookie))
        .collect();
    checks::check_browser_differential(&set_cookies, PATHS[usize::from(path) % PATHS.len()]);
});
