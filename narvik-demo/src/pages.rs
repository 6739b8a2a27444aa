//! Server-rendered HTML: a shared layout and one function per page. No JavaScript.

use std::fmt::Write as _;

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::OffsetDateTime;

use crate::Device;

/// Escapes text for HTML element content and double-quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A time as people read it, in a `<time>` element that carries the exact instant.
fn time_element(at: OffsetDateTime) -> String {
    let readable = at
        .format(format_description!(
            "[year]-[month]-[day] [hour]:[minute] UTC"
        ))
        .unwrap_or_default();
    let exact = at.format(&Rfc3339).unwrap_or_default();
    format!("<time datetime=\"{exact}\">{readable}</time>")
}

const STYLE: &str = "
:root { color-scheme: light; --ink: #1d2433; --muted: #5b6475; --line: #dfe3ea; --accent: #1f5fbf; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, -apple-system, 'Segoe UI', sans-serif; color: var(--ink); background: #f5f7fa; }
header { background: #fff; border-bottom: 1px solid var(--line); }
header .bar { max-width: 960px; margin: 0 auto; padding: 14px 24px; display: flex; align-items: center; gap: 20px; }
header .brand { font-weight: 700; letter-spacing: .02em; margin-right: auto; }
header a { color: var(--accent); text-decoration: none; }
main { max-width: 960px; margin: 32px auto; padding: 0 24px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 24px 28px; }
h1 { font-size: 1.5rem; margin: 0 0 16px; }
p.muted, .muted { color: var(--muted); }
label { display: block; margin: 12px 0 4px; font-weight: 600; }
input[type=text], input[type=password] { width: 100%; max-width: 360px; padding: 8px 10px; border: 1px solid #c5ccd8; border-radius: 6px; font: inherit; }
button { font: inherit; padding: 7px 14px; border-radius: 6px; border: 1px solid var(--accent); background: var(--accent); color: #fff; cursor: pointer; }
button.secondary { background: #fff; color: var(--accent); }
button.danger { background: #fff; color: #b42318; border-color: #b42318; }
form.inline { display: inline; margin: 0; }
table { width: 100%; border-collapse: collapse; margin: 8px 0 20px; }
th, td { text-align: left; padding: 10px 8px; border-bottom: 1px solid var(--line); vertical-align: middle; }
td time, td button { white-space: nowrap; }
th { font-size: .85rem; color: var(--muted); font-weight: 600; }
.badge { display: inline-block; margin-left: 8px; padding: 1px 8px; border-radius: 999px; background: #e6f0ff; color: var(--accent); font-size: .8rem; font-weight: 600; }
.error { background: #fdecea; color: #8a1c12; border: 1px solid #f5c2bc; padding: 8px 12px; border-radius: 6px; }
.notice { background: #ecf8f0; color: #17603a; border: 1px solid #bfe5cc; padding: 8px 12px; border-radius: 6px; }
code { background: #eef1f5; padding: 1px 5px; border-radius: 4px; }
";

/// Who the page is for: shapes the header.
pub struct Viewer<'a> {
    /// The display name of the signed-in user.
    pub display_name: &'a str,
    /// The form token for the sign-out button.
    pub csrf_token: &'a str,
}

fn layout(title: &str, viewer: Option<&Viewer<'_>>, body: &str) -> String {
    let nav = match viewer {
        Some(viewer) => format!(
            "<a href=\"/\">Home</a><a href=\"/devices\">Your devices</a>\
             <span class=\"muted\">{name}</span>\
             <form class=\"inline\" method=\"post\" action=\"/sign-out\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <button class=\"secondary\" id=\"sign-out\" type=\"submit\">Sign out</button></form>",
            name = escape(viewer.display_name),
            csrf = escape(viewer.csrf_token),
        ),
        None => "<a href=\"/sign-in\">Sign in</a>".to_owned(),
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · narvik demo</title><style>{STYLE}</style></head>\
         <body><header><div class=\"bar\"><span class=\"brand\">narvik demo</span>{nav}</div></header>\
         <main>{body}</main></body></html>\n",
        title = escape(title),
    )
}

/// The sign-in form, with an optional error and the demo credentials.
pub fn sign_in(error: Option<&str>, username: &str, credentials: &[(&str, &str)]) -> String {
    let mut body = String::from("<div class=\"card\"><h1>Sign in</h1>");
    if let Some(error) = error {
        let _ = write!(
            body,
            "<p class=\"error\" id=\"error\">{}</p>",
            escape(error)
        );
    }
    let _ = write!(
        body,
        "<form method=\"post\" action=\"/sign-in\">\
         <label for=\"username\">Username</label>\
         <input type=\"text\" id=\"username\" name=\"username\" value=\"{}\" autocomplete=\"username\" required>\
         <label for=\"password\">Password</label>\
         <input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required>\
         <p><label><input type=\"checkbox\" id=\"remember\" name=\"remember\"> Remember me for 90 days</label></p>\
         <p><button type=\"submit\" id=\"sign-in\">Sign in</button></p></form>",
        escape(username)
    );
    body.push_str("<p class=\"muted\">Demo users: ");
    let list: Vec<String> = credentials
        .iter()
        .map(|(user, password)| {
            format!(
                "<code>{}</code> / <code>{}</code>",
                escape(user),
                escape(password)
            )
        })
        .collect();
    body.push_str(&list.join(", "));
    body.push_str("</p></div>");
    layout("Sign in", None, &body)
}

/// The home page of a signed-in user.
pub fn home(viewer: &Viewer<'_>, created_at: OffsetDateTime, expires_at: OffsetDateTime) -> String {
    let body = format!(
        "<div class=\"card\"><h1 id=\"greeting\">Hello, {name}</h1>\
         <p>You are signed in. This session started {created} and, unless you use it again, \
         ends <span id=\"expires\">{expires}</span>.</p>\
         <p class=\"muted\">Each request in the second half of the session's lifetime extends it.</p>\
         <p><a href=\"/devices\">See the devices you are signed in on →</a></p></div>",
        name = escape(viewer.display_name),
        created = time_element(created_at),
        expires = time_element(expires_at),
    );
    layout("Home", Some(viewer), &body)
}

/// One row of the devices page.
pub struct DeviceRow<'a> {
    /// The session id (safe to show: a token cannot be derived from it).
    pub session_id: &'a str,
    /// What the session's additional data says about the device.
    pub device: &'a Device,
    /// When the session began.
    pub created_at: OffsetDateTime,
    /// When it ends unless used.
    pub expires_at: OffsetDateTime,
    /// Whether it is the session of this very request.
    pub current: bool,
}

/// "Your devices": every live session of the user, each with a sign-out button, and "sign
/// out all other devices" behind the user's password. `notice` reports what was done, `error`
/// why the last request did nothing.
pub fn devices(
    viewer: &Viewer<'_>,
    rows: &[DeviceRow<'_>],
    notice: Option<&str>,
    error: Option<&str>,
) -> String {
    let csrf = escape(viewer.csrf_token);
    let mut body = String::from("<div class=\"card\"><h1>Your devices</h1>");
    if let Some(notice) = notice {
        let _ = write!(
            body,
            "<p class=\"notice\" id=\"notice\">{}</p>",
            escape(notice)
        );
    }
    if let Some(error) = error {
        let _ = write!(
            body,
            "<p class=\"error\" id=\"error\">{}</p>",
            escape(error)
        );
    }
    body.push_str(
        "<p class=\"muted\">Every browser signed in to your account. Sign out any you do not recognise.</p>\
         <table id=\"devices\"><thead><tr><th>Device</th><th>Signed in</th><th>Expires</th><th></th></tr></thead><tbody>",
    );
    for row in rows {
        let (class, marker, label) = if row.current {
            (
                "device current",
                "<span class=\"badge\">This device</span>",
                "Sign out this device",
            )
        } else {
            ("device", "", "Sign out")
        };
        let _ = write!(
            body,
            "<tr class=\"{class}\"><td>{device}{marker}</td><td class=\"created\">{created}</td>\
             <td class=\"expires\">{expires}</td><td>\
             <form class=\"inline\" method=\"post\" action=\"/devices/sign-out\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <input type=\"hidden\" name=\"session\" value=\"{id}\">\
             <button class=\"danger\" type=\"submit\">{label}</button></form></td></tr>",
            device = escape(&row.device.describe()),
            created = time_element(row.created_at),
            expires = time_element(row.expires_at),
            id = escape(row.session_id),
        );
    }
    body.push_str("</tbody></table>");
    if rows.iter().any(|row| !row.current) {
        let _ = write!(
            body,
            "<form method=\"post\" action=\"/devices/sign-out-others\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <label for=\"others-password\">Your password, to sign out every other device</label>\
             <input type=\"password\" id=\"others-password\" name=\"password\" autocomplete=\"current-password\" required>\
             <p><button class=\"danger\" id=\"sign-out-others\" type=\"submit\">Sign out all other devices</button></p></form>"
        );
    } else {
        body.push_str(
            "<p class=\"muted\" id=\"only-device\">This is the only device signed in.</p>",
        );
    }
    body.push_str("</div>");
    layout("Your devices", Some(viewer), &body)
}

/// A wait for people: "1 second", "45 seconds", "15 minutes" (rounded up).
pub fn wait_text(seconds: u64) -> String {
    match seconds {
        1 => "1 second".to_owned(),
        0..120 => format!("{seconds} seconds"),
        _ => format!("{} minutes", seconds.div_ceil(60)),
    }
}

/// A short page for a refused request.
pub fn message(title: &str, text: &str) -> String {
    let body = format!(
        "<div class=\"card\"><h1>{}</h1><p>{}</p><p><a href=\"/\">Back to the start</a></p></div>",
        escape(title),
        escape(text)
    );
    layout(title, None, &body)
}

#[cfg(test)]
mod tests {
    use super::{escape, wait_text};

    #[test]
    fn waits_read_as_seconds_then_minutes() {
        assert_eq!(wait_text(1), "1 second");
        assert_eq!(wait_text(2), "2 seconds");
        assert_eq!(wait_text(119), "119 seconds");
        assert_eq!(wait_text(120), "2 minutes");
        assert_eq!(wait_text(900), "15 minutes");
        assert_eq!(wait_text(901), "16 minutes");
    }

    #[test]
    fn escaping_covers_markup_and_attribute_quotes() {
        assert_eq!(
            escape("<a href=\"x\" onclick='y'>&</a>"),
            "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
    }
}
