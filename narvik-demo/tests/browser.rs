//! The demo in a real browser: Debian's Chromium driven through chromedriver with `fantoccini`.
//!
//! Two browser profiles (separate `--user-data-dir`s, so separate cookie jars) sign in as the
//! same user; one signs the other out; the engine's clock is moved to show extension and expiry.
//!
//! Needs `chromium` and `chromedriver` (Debian: `apt-get install chromium chromium-driver`;
//! `scripts/servers/chromium.sh` installs them). Paths come from `NARVIK_TEST_CHROMEDRIVER`
//! and `NARVIK_TEST_CHROMIUM`, else `/usr/bin`, else `PATH`. Without them the test fails with
//! that message: it never skips.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use narvik_core::{Clock, ManualClock};
use narvik_demo::Demo;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

const COOKIE: &str = "narvik_session";
const HOW_TO_PROVIDE: &str = "install Debian's `chromium` and `chromium-driver` \
     (scripts/servers/chromium.sh does it), or set NARVIK_TEST_CHROMEDRIVER and NARVIK_TEST_CHROMIUM";

/// The first of: the environment variable, the Debian path, the name on `PATH`.
fn find_binary(env: &str, debian_path: &str, names: &[&str]) -> PathBuf {
    if let Some(path) = std::env::var_os(env) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{env}={} does not exist; {HOW_TO_PROVIDE}",
            path.display()
        );
        return path;
    }
    let debian = PathBuf::from(debian_path);
    if debian.is_file() {
        return debian;
    }
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path_var) {
        for name in names {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!("{} not found; {HOW_TO_PROVIDE}", names[0]);
}

fn output_dir() -> PathBuf {
    match std::env::var_os("NARVIK_BUILD_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_TARGET_TMPDIR")),
    }
}

/// chromedriver on a free loopback port, stopped when dropped.
struct Chromedriver {
    child: Child,
    url: String,
}

impl Chromedriver {
    fn start(binary: &Path, log: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot start {}: {error}; {HOW_TO_PROVIDE}",
                    binary.display()
                )
            });
        let mut driver = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + StdDuration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = driver.child.try_wait() {
                panic!(
                    "chromedriver exited at start-up ({status}); see {}",
                    log.display()
                );
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not open port {port} within 20 s; see {}",
                log.display()
            );
            std::thread::sleep(StdDuration::from_millis(50));
        }
        driver
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A headless Chromium with its own, fresh profile directory (its own cookie jar).
async fn open_browser(driver: &Chromedriver, chromium: &Path, profile: &Path) -> Client {
    let _ = std::fs::remove_dir_all(profile);
    std::fs::create_dir_all(profile).expect("profile directory");
    let args = [
        "--headless".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-quic".to_owned(),
        "--no-first-run".to_owned(),
        "--disable-background-networking".to_owned(),
        "--disable-component-update".to_owned(),
        "--disable-sync".to_owned(),
        "--disable-dev-shm-usage".to_owned(),
        "--window-size=1100,760".to_owned(),
        format!("--user-data-dir={}", profile.display()),
    ];
    let capabilities = serde_json::json!({
        "browserName": "chrome",
        "goog:chromeOptions": { "binary": chromium, "args": args },
    });
    let serde_json::Value::Object(capabilities) = capabilities else {
        unreachable!("a JSON object literal")
    };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .unwrap_or_else(|error| panic!("chromium did not start through chromedriver: {error}"))
}

/// One browser profile in the scenario.
struct Browser {
    client: Client,
    base: String,
}

impl Browser {
    async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .expect("navigation");
    }

    async fn path(&self) -> String {
        self.client
            .current_url()
            .await
            .expect("current url")
            .path()
            .to_owned()
    }

    /// Waits (up to 10 s) until the browser shows `path`; a form submit navigates on its own.
    async fn wait_for_path(&self, path: &str) {
        let deadline = Instant::now() + StdDuration::from_secs(10);
        loop {
            let current = self.path().await;
            if current == path {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "expected to land on {path}, still on {current}"
            );
            tokio::time::sleep(StdDuration::from_millis(50)).await;
        }
    }

    /// Clicks a form button and waits until the browser has left the page it was on. Every
    /// button here submits a form, and a POST that redirects back to the same path would
    /// otherwise let the next read see (or trip over) the old page.
    async fn click(&self, css: &str) {
        let old_page = self
            .client
            .find(Locator::Css("html"))
            .await
            .expect("the current page");
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|error| panic!("no {css} on the page: {error}"))
            .click()
            .await
            .expect("click");
        let deadline = Instant::now() + StdDuration::from_secs(10);
        loop {
            match old_page.tag_name().await {
                // Chromium says "stale", or, when the old document is torn down in the middle
                // of the call, that the node no longer belongs to the document: gone either way.
                Err(fantoccini::error::CmdError::Standard(error))
                    if error.error == fantoccini::error::ErrorStatus::StaleElementReference
                        || (error.error == fantoccini::error::ErrorStatus::UnknownError
                            && error.message.contains("does not belong to the document")) =>
                {
                    return;
                }
                Err(error) => panic!("waiting for the page after clicking {css}: {error}"),
                Ok(_) => {
                    assert!(
                        Instant::now() < deadline,
                        "clicking {css} did not leave the page within 10 s"
                    );
                    tokio::time::sleep(StdDuration::from_millis(50)).await;
                }
            }
        }
    }

    /// Fills in and submits the sign-in form ("Remember me" left unticked).
    async fn submit_sign_in(&self, username: &str, password: &str) {
        self.fill_sign_in(username, password).await;
        self.click("#sign-in").await;
    }

    /// Signs in with "Remember me" ticked.
    async fn sign_in_remembered(&self, username: &str, password: &str) {
        self.fill_sign_in(username, password).await;
        // A checkbox, not a submit: a plain click that stays on the page.
        self.client
            .find(Locator::Id("remember"))
            .await
            .expect("the remember-me checkbox")
            .click()
            .await
            .expect("click");
        self.click("#sign-in").await;
        self.wait_for_path("/").await;
    }

    async fn fill_sign_in(&self, username: &str, password: &str) {
        self.goto("/sign-in").await;
        self.wait_for_path("/sign-in").await;
        for (field, value) in [("username", username), ("password", password)] {
            self.client
                .find(Locator::Id(field))
                .await
                .expect("a sign-in field")
                .send_keys(value)
                .await
                .expect("typing");
        }
    }

    async fn sign_in(&self, username: &str, password: &str) {
        self.submit_sign_in(username, password).await;
        self.wait_for_path("/").await;
    }

    async fn sign_in_expecting_error(&self, username: &str, password: &str) {
        self.submit_sign_in(username, password).await;
        let error = self
            .client
            .wait()
            .at_most(StdDuration::from_secs(10))
            .for_element(Locator::Id("error"))
            .await
            .expect("an error message");
        assert_eq!(
            error.text().await.expect("text"),
            "Wrong username or password."
        );
    }

    /// Types `password` into the confirmation field and clicks "Sign out all other devices".
    async fn sign_out_others(&self, password: &str) {
        self.client
            .find(Locator::Id("others-password"))
            .await
            .expect("the password field of sign out all other devices")
            .send_keys(password)
            .await
            .expect("typing");
        self.click("#sign-out-others").await;
    }

    /// The session cookie as the browser keeps it, if it keeps one.
    async fn session_cookie(&self) -> Option<fantoccini::cookies::Cookie<'static>> {
        self.client
            .get_all_cookies()
            .await
            .expect("cookies")
            .into_iter()
            .find(|cookie| cookie.name() == COOKIE)
    }

    async fn cookie_expiry(&self) -> OffsetDateTime {
        self.session_cookie()
            .await
            .expect("a session cookie")
            .expires_datetime()
            .expect("a persistent cookie (Max-Age)")
    }

    /// The rows of the devices page: (is this device, expires at).
    async fn device_rows(&self) -> Vec<(bool, OffsetDateTime)> {
        self.wait_for_path("/devices").await;
        self.rows_on_page().await
    }

    /// The device rows of the page the browser shows now, wherever it is.
    async fn rows_on_page(&self) -> Vec<(bool, OffsetDateTime)> {
        let mut rows = Vec::new();
        for row in self
            .client
            .find_all(Locator::Css("#devices tr.device"))
            .await
            .expect("rows")
        {
            let class = row.attr("class").await.expect("class").unwrap_or_default();
            let expires = row
                .find(Locator::Css("td.expires time"))
                .await
                .expect("expiry cell")
                .attr("datetime")
                .await
                .expect("datetime")
                .expect("a datetime attribute");
            let expires = OffsetDateTime::parse(&expires, &Rfc3339).expect("RFC 3339");
            rows.push((class.split(' ').any(|c| c == "current"), expires));
        }
        rows
    }

    async fn current_expiry(&self) -> OffsetDateTime {
        let rows = self.device_rows().await;
        let current: Vec<_> = rows.iter().filter(|(current, _)| *current).collect();
        assert_eq!(current.len(), 1, "exactly one row marked as this device");
        current[0].1
    }

    async fn text(&self) -> String {
        self.client
            .find(Locator::Css("body"))
            .await
            .expect("body")
            .text()
            .await
            .expect("text")
    }
}

fn assert_png(bytes: &[u8]) {
    const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];
    assert!(
        bytes.len() > 1024,
        "screenshot has only {} bytes",
        bytes.len()
    );
    assert_eq!(bytes[..8], SIGNATURE, "screenshot is not a PNG");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browsers_sign_in_see_devices_sign_out_extend_and_expire() {
    let chromedriver = find_binary(
        "NARVIK_TEST_CHROMEDRIVER",
        "/usr/bin/chromedriver",
        &["chromedriver"],
    );
    let chromium = find_binary(
        "NARVIK_TEST_CHROMIUM",
        "/usr/bin/chromium",
        &["chromium", "chromium-browser", "google-chrome"],
    );

    // The demo, in-process on a free port, on a clock the test moves.
    let clock = Arc::new(ManualClock::starting_now());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let base = format!(
        "http://127.0.0.1:{}",
        listener.local_addr().expect("addr").port()
    );
    let demo = Demo::builder()
        .clock(clock.clone())
        .origin(base.clone())
        // Plain http, as the demo binary serves it.
        .secure_cookie(false)
        .build()
        .expect("demo");
    let credentials = demo
        .seed_users()
        .iter()
        .find(|user| user.username == "alice")
        .map(|user| (user.username, user.password))
        .expect("alice is seeded");
    let server = tokio::spawn(demo.serve(listener));

    let out = output_dir();
    let profiles = out.join(format!("browser-profiles-{}", std::process::id()));
    std::fs::create_dir_all(&profiles).expect("output directory");
    let driver = Chromedriver::start(&chromedriver, &profiles.join("chromedriver.log"));
    let first = open_browser(&driver, &chromium, &profiles.join("first")).await;
    let second = open_browser(&driver, &chromium, &profiles.join("second")).await;

    // The scenario runs as its own task so that, pass or fail, both browsers are closed after.
    let scenario = tokio::spawn(scenario(
        Browser {
            client: first.clone(),
            base: base.clone(),
        },
        Browser {
            client: second.clone(),
            base,
        },
        clock,
        credentials,
        out.join("screenshots"),
    ));
    let outcome = tokio::time::timeout(StdDuration::from_secs(300), scenario).await;
    let _ = first.close().await;
    let _ = second.close().await;
    drop(driver);
    server.abort();
    let _ = std::fs::remove_dir_all(&profiles);
    match outcome {
        Err(_) => panic!("the browser scenario took longer than 300 s"),
        Ok(Err(error)) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Ok(Err(error)) => panic!("the browser scenario was cancelled: {error}"),
        Ok(Ok(())) => {}
    }
}

async fn scenario(
    first: Browser,
    second: Browser,
    clock: Arc<ManualClock>,
    (username, password): (&'static str, &'static str),
    screenshots: PathBuf,
) {
    // Signed out, every page leads to the sign-in form; a wrong password is refused.
    first.goto("/devices").await;
    first.wait_for_path("/sign-in").await;
    first
        .sign_in_expecting_error(username, "not-the-password")
        .await;
    assert!(
        first.session_cookie().await.is_none(),
        "no cookie after a failed sign-in"
    );

    // Sign in: the cookie carries the narvik defaults (Secure is off on plain http).
    first.sign_in(username, password).await;
    assert!(first.text().await.contains("Hello, Alice"));
    let cookie = first.session_cookie().await.expect("the session cookie");
    assert_eq!(cookie.value().len(), 32, "a 160-bit base32 token");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.path(), Some("/"));
    assert_eq!(
        cookie
            .same_site()
            .map(|same_site| same_site.to_string())
            .as_deref(),
        Some("Lax")
    );

    // The devices page lists this one session, marked as this device.
    first.goto("/devices").await;
    let rows = first.device_rows().await;
    assert_eq!(rows.len(), 1, "one session");
    assert!(rows[0].0, "marked as this device");
    assert!(first
        .text()
        .await
        .contains("This is the only device signed in"));

    // A second, separate profile signs in as the same user: both see two sessions.
    clock.advance(Duration::minutes(7));
    second.sign_in(username, password).await;
    let first_token = first
        .session_cookie()
        .await
        .expect("cookie")
        .value()
        .to_owned();
    let second_token = second
        .session_cookie()
        .await
        .expect("cookie")
        .value()
        .to_owned();
    assert_ne!(
        first_token, second_token,
        "separate cookie jars, separate sessions"
    );
    second.goto("/devices").await;
    assert_eq!(second.device_rows().await.len(), 2);
    first.goto("/devices").await;
    let rows = first.device_rows().await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows.iter().filter(|(current, _)| *current).count(), 1);

    // The devices page as a person sees it.
    let png = first.client.screenshot().await.expect("screenshot");
    assert_png(&png);
    std::fs::create_dir_all(&screenshots).expect("screenshot directory");
    let shot = screenshots.join("devices.png");
    std::fs::write(&shot, &png).expect("write the screenshot");
    let written = std::fs::read(&shot).expect("read the screenshot back");
    assert_png(&written);
    println!("devices page screenshot: {}", shot.display());

    // "Sign out all other devices" asks for the password: a wrong one signs no one out.
    first.sign_out_others("not-the-password").await;
    let error = first
        .client
        .wait()
        .at_most(StdDuration::from_secs(10))
        .for_element(Locator::Id("error"))
        .await
        .expect("an error message");
    assert_eq!(
        error.text().await.expect("text"),
        "Wrong password: no device was signed out."
    );
    assert_eq!(
        first.path().await,
        "/devices/sign-out-others",
        "the refusal is shown where the form was sent"
    );
    assert_eq!(first.rows_on_page().await.len(), 2, "both still signed in");

    // With the password, the first signs out all other devices.
    first.sign_out_others(password).await;
    let rows = first.device_rows().await;
    assert_eq!(rows.len(), 1, "only this device is left");
    assert!(first.text().await.contains("Signed out 1 other device."));
    // The notice rode in the session across the redirect, and shows exactly once.
    first.goto("/devices").await;
    assert_eq!(first.device_rows().await.len(), 1);
    assert!(
        !first.text().await.contains("Signed out 1 other device."),
        "the notice is gone on the next page load"
    );

    // The second's next page load is signed out, and its cookie is gone.
    second.goto("/devices").await;
    second.wait_for_path("/sign-in").await;
    assert!(
        second.session_cookie().await.is_none(),
        "the dead cookie was cleared"
    );

    // Nothing changed, nothing sent: a later page load keeps the cookie's expiry as it was.
    let expiry_cookie_1 = first.cookie_expiry().await;
    let expiry_page_1 = first.current_expiry().await;
    tokio::time::sleep(StdDuration::from_millis(1_100)).await;
    first.goto("/devices").await;
    assert_eq!(first.current_expiry().await, expiry_page_1);
    assert_eq!(
        first.cookie_expiry().await,
        expiry_cookie_1,
        "no Set-Cookie when the session did not change"
    );

    // Extension: 16 days later (past half the 30-day lifetime) a page load extends the session;
    // the page shows the later expiry and the browser got the cookie again.
    clock.advance(Duration::days(16));
    tokio::time::sleep(StdDuration::from_millis(1_100)).await;
    first.goto("/devices").await;
    let expiry_page_2 = first.current_expiry().await;
    assert!(expiry_page_2 > expiry_page_1);
    assert_eq!(
        expiry_page_2,
        clock.now() + Duration::days(30),
        "a full lifetime from the (moved) now"
    );
    let expiry_cookie_2 = first.cookie_expiry().await;
    assert!(
        expiry_cookie_2 > expiry_cookie_1,
        "the cookie was refreshed: {expiry_cookie_1} -> {expiry_cookie_2}"
    );
    assert_eq!(
        first.session_cookie().await.expect("cookie").value(),
        first_token,
        "extension keeps the token"
    );

    // "Sign out this device" from the device list ends only that browser's session.
    second.sign_in(username, password).await;
    second.goto("/devices").await;
    assert_eq!(second.device_rows().await.len(), 2);
    second.click("#devices tr.device.current button").await;
    second.wait_for_path("/sign-in").await;
    assert!(second.session_cookie().await.is_none());
    first.goto("/devices").await;
    assert_eq!(first.device_rows().await.len(), 1);

    // Expiry: 30 idle days later the session is gone; the page load signs out and clears the cookie.
    clock.advance(Duration::days(30));
    first.goto("/devices").await;
    first.wait_for_path("/sign-in").await;
    assert!(
        first.session_cookie().await.is_none(),
        "the expired session's cookie was cleared"
    );

    // Remember me: a 90-day session, on a cookie the browser keeps for 90 days (its expiry
    // counts from the browser's own clock), outliving the default 30 days.
    first.sign_in_remembered(username, password).await;
    let remembered = first.cookie_expiry().await - OffsetDateTime::now_utc();
    assert!(
        (Duration::days(90) - Duration::minutes(5)..=Duration::days(90)).contains(&remembered),
        "a 90-day cookie, not {remembered}"
    );
    clock.advance(Duration::days(60));
    first.goto("/devices").await;
    assert_eq!(
        first.device_rows().await.len(),
        1,
        "still signed in on day 60"
    );
    assert_eq!(
        first.current_expiry().await,
        clock.now() + Duration::days(90),
        "extended by its own 90 days"
    );
}
