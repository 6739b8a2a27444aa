//! Which client a request comes from, for the sign-in throttle.
//!
//! The socket's peer address (axum's `ConnectInfo`, which [`Demo::serve`](crate::Demo::serve)
//! and the binary provide). `X-Forwarded-For` is read only when
//! [`DemoBuilder::trust_x_forwarded_for`](crate::DemoBuilder::trust_x_forwarded_for) says the
//! demo runs behind a reverse proxy: any client can send that header, so trusting it by
//! default would let an attacker pick a fresh address for every guess.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::HeaderMap;

use crate::handlers::AppState;

/// The client's address as the throttle counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientAddress(pub(crate) IpAddr);

/// Where a router served without connect info (a test's `oneshot`) puts every client: one
/// shared bucket, the strict side.
const UNKNOWN: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

impl FromRequestParts<AppState> for ClientAddress {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(UNKNOWN, |ConnectInfo(peer)| peer.ip());
        if state.trust_x_forwarded_for {
            if let Some(forwarded) = last_forwarded_for(&parts.headers) {
                return Ok(Self(forwarded));
            }
        }
        Ok(Self(peer))
    }
}

/// The rightmost `X-Forwarded-For` entry: the address the (one, trusted) proxy saw. Entries to
/// its left were written by the client and prove nothing. `None` when it is not an address.
fn last_forwarded_for(headers: &HeaderMap) -> Option<IpAddr> {
    let last_header = headers.get_all("x-forwarded-for").iter().next_back()?;
    let last_entry = last_header.to_str().ok()?.rsplit(',').next()?;
    let entry = last_entry.trim_matches([' ', '\t']);
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|socket| socket.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_rightmost_forwarded_entry_is_the_one_the_proxy_wrote() {
        let mut headers = HeaderMap::new();
        assert_eq!(last_forwarded_for(&headers), None);
        headers.append(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.9, 198.51.100.1"),
        );
        headers.append(
            "x-forwarded-for",
            HeaderValue::from_static("10.1.2.3,\t192.0.2.7"),
        );
        assert_eq!(last_forwarded_for(&headers), "192.0.2.7".parse().ok());
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("[2001:db8::1]:443"),
        );
        assert_eq!(last_forwarded_for(&headers), "2001:db8::1".parse().ok());
        headers.insert("x-forwarded-for", HeaderValue::from_static("unknown"));
        assert_eq!(last_forwarded_for(&headers), None);
        let padded = HeaderValue::from_bytes("\u{a0}192.0.2.7".as_bytes()).expect("obs-text");
        headers.insert("x-forwarded-for", padded);
        assert_eq!(last_forwarded_for(&headers), None, "not trimmed as Unicode");
    }
}
