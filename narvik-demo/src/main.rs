//! `cargo run -p narvik-demo [-- --port 3000 --store memory]`: the demo on 127.0.0.1.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use narvik_core::{Clock, SystemClock};
use narvik_demo::store::{open_store, DEFAULT_STORE};
use narvik_demo::{Demo, DemoError, DEFAULT_SIGN_IN_PERMITS};

const USAGE: &str = "\
narvik-demo: sign in, see your devices, sign them out.

USAGE: narvik-demo [--port N] [--store SPEC] [--origin URL]... [--secure-cookie]
                   [--sign-in-permits N] [--trust-x-forwarded-for]

  --port N          port on 127.0.0.1 (env NARVIK_DEMO_PORT or PORT; default 3000; 0 = any free)
  --store SPEC      session store: `memory` (default) or a database URL (env NARVIK_DEMO_STORE)
  --origin URL      another origin the browser may use (e.g. an https proxy in front); forms
                    from other origins are refused
  --secure-cookie   mark the cookie Secure and send Strict-Transport-Security (only when the
                    browser reaches the demo over https)
  --sign-in-permits N
                    password checks at once (default 4; each holds 19 MiB of Argon2 memory)
  --trust-x-forwarded-for
                    count sign-in failures by the rightmost X-Forwarded-For address (only
                    behind one reverse proxy that appends it; default: the socket's peer)
";

struct Args {
    port: u16,
    store: String,
    origins: Vec<String>,
    secure_cookie: bool,
    sign_in_permits: usize,
    trust_x_forwarded_for: bool,
}

fn parse_args() -> Result<Args, String> {
    let env_port = std::env::var("NARVIK_DEMO_PORT")
        .or_else(|_| std::env::var("PORT"))
        .ok();
    let mut args = Args {
        port: 3000,
        store: std::env::var("NARVIK_DEMO_STORE").unwrap_or_else(|_| DEFAULT_STORE.to_owned()),
        origins: Vec::new(),
        secure_cookie: false,
        sign_in_permits: DEFAULT_SIGN_IN_PERMITS,
        trust_x_forwarded_for: false,
    };
    if let Some(port) = env_port {
        args.port = port
            .parse()
            .map_err(|_| format!("invalid port in the environment: {port:?}"))?;
    }
    let mut argv = std::env::args().skip(1);
    while let Some(arg) = argv.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
            None => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| argv.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--port" | "-p" => {
                let port = value()?;
                args.port = port.parse().map_err(|_| format!("invalid port {port:?}"))?;
            }
            "--store" => args.store = value()?,
            "--origin" => args.origins.push(value()?),
            "--secure-cookie" => args.secure_cookie = true,
            "--sign-in-permits" => {
                let permits = value()?;
                args.sign_in_permits = permits
                    .parse()
                    .ok()
                    .filter(|&permits| permits > 0)
                    .ok_or_else(|| format!("invalid number of permits {permits:?}"))?;
            }
            "--trust-x-forwarded-for" => args.trust_x_forwarded_for = true,
            "--help" | "-h" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n\n{USAGE}")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt().with_target(false).init();
    if let Err(error) = run().await {
        eprintln!("narvik-demo: {error}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), DemoError> {
    let args = parse_args()?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = open_store(&args.store).await?;
    // Loopback only: this is a demo, not a server to expose.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
    let port = listener.local_addr()?.port();
    let url = format!("http://127.0.0.1:{port}");

    let mut builder = Demo::builder()
        .store(store)
        .clock(clock)
        .origin(url.clone())
        .origin(format!("http://localhost:{port}"))
        // The demo is served over plain http. Browsers drop a `Secure` cookie set over http
        // (only `localhost` is exempt, and this prints 127.0.0.1), so sign-in would silently
        // not stick. Off here in development mode only; the library default stays on.
        .secure_cookie(args.secure_cookie)
        .sign_in_permits(args.sign_in_permits)
        .trust_x_forwarded_for(args.trust_x_forwarded_for);
    for origin in args.origins {
        builder = builder.origin(origin);
    }
    let demo = builder.build()?;

    println!("narvik demo listening on {url}");
    println!("  store: {}", store_label(&args.store));
    println!(
        "  sign-in bound: {} password checks at once, at most {} MiB of Argon2 memory",
        demo.sign_in_permits(),
        demo.argon2_memory_bound() / (1024 * 1024)
    );
    println!("  sign in as:");
    for user in demo.seed_users() {
        println!("    {:<6} / {}", user.username, user.password);
    }
    println!("  (Ctrl-C to stop)");

    // The engine's purge, on every store that can purge (kept running
    // until the server stops).
    let purge = demo.spawn_purge_task()?;
    if purge.is_some() {
        println!(
            "  purge of expired sessions: every {} minutes",
            narvik_demo::PURGE_INTERVAL.as_secs() / 60
        );
    }

    // With each connection's peer address: the sign-in throttle counts failures per client.
    let app = demo
        .router()
        .into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// The store kind without anything after the scheme (a URL may hold a password).
fn store_label(spec: &str) -> &str {
    spec.split_once("://").map_or(spec, |(scheme, _)| scheme)
}
