//! Where a server's endpoints are, derived from its base URL (`http://host:port`): the REST
//! API under `api/`, the WebSocket at `ws://host:port/ws` and WebTransport at
//! `https://host:port/wt` (on UDP, the same port number unless `/api/cert` says otherwise).

use reqwest::Url;

use crate::error::InvalidUrl;

/// A server's base URL, checked and normalised (scheme `http` or `https`, a host, no query or
/// fragment, a path ending in `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    base: Url,
}

impl ServerUrl {
    /// Parse a base URL; `host:port` without a scheme means `http://host:port`.
    pub fn parse(input: &str) -> Result<ServerUrl, InvalidUrl> {
        let invalid = |reason: &str| InvalidUrl {
            url: input.to_owned(),
            reason: reason.to_owned(),
        };
        let trimmed = input.trim();
        let with_scheme = if trimmed.contains("://") {
            trimmed.to_owned()
        } else {
            format!("http://{trimmed}")
        };
        let mut base = Url::parse(&with_scheme).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https"));
        }
        if base.host_str().is_none_or(str::is_empty) {
            return Err(invalid("no host"));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(invalid("a query or fragment is not allowed"));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(invalid("credentials in the URL are not allowed"));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        Ok(ServerUrl { base })
    }

    /// Whether the server is reached over TLS (an `https` base).
    pub fn is_https(&self) -> bool {
        self.base.scheme() == "https"
    }

    /// The base URL itself.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// The host name or address (IPv6 addresses in brackets).
    pub fn host(&self) -> &str {
        self.base.host_str().unwrap_or_default()
    }

    /// The TCP port of the HTTP server.
    pub fn port(&self) -> u16 {
        self.base.port_or_known_default().unwrap_or(80)
    }

    /// An API endpoint, e.g. `api("rooms")` → `http://host:port/api/rooms`.
    pub fn api(&self, path: &str) -> Url {
        self.with_path(&format!("api/{path}"))
    }

    /// The WebSocket endpoint: `ws://…/ws` (or `wss://` for an `https` base).
    pub fn websocket(&self) -> Url {
        let mut url = self.with_path("ws");
        let scheme = if self.is_https() { "wss" } else { "ws" };
        // Both are special schemes, so the change is always accepted.
        let _ = url.set_scheme(scheme);
        url
    }

    /// The WebTransport endpoint `https://host:port/wt`, on UDP port `port` (default: the
    /// HTTP port).
    pub fn webtransport(&self, port: Option<u16>) -> Url {
        let port = port.unwrap_or_else(|| self.port());
        let mut url = self.with_path("wt");
        let _ = url.set_scheme("https");
        let _ = url.set_port(Some(port));
        url
    }

    fn with_path(&self, relative: &str) -> Url {
        let mut url = self.base.clone();
        url.set_path(&format!("{}{relative}", self.base.path()));
        url
    }
}

impl std::fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.base.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_every_endpoint_from_the_http_base() {
        let url = ServerUrl::parse("http://127.0.0.1:4433").unwrap();
        assert_eq!(url.api("rooms").as_str(), "http://127.0.0.1:4433/api/rooms");
        assert_eq!(url.websocket().as_str(), "ws://127.0.0.1:4433/ws");
        assert_eq!(url.webtransport(None).as_str(), "https://127.0.0.1:4433/wt");
        assert_eq!(
            url.webtransport(Some(5000)).as_str(),
            "https://127.0.0.1:5000/wt"
        );
        assert_eq!(url.host(), "127.0.0.1");
        assert_eq!(url.port(), 4433);
    }

    #[test]
    fn keeps_a_path_prefix_and_accepts_a_bare_host_port() {
        let url = ServerUrl::parse("localhost:8080/chat").unwrap();
        assert_eq!(
            url.api("login").as_str(),
            "http://localhost:8080/chat/api/login"
        );
        assert_eq!(url.websocket().as_str(), "ws://localhost:8080/chat/ws");
        assert_eq!(
            url.webtransport(None).as_str(),
            "https://localhost:8080/chat/wt"
        );
    }

    #[test]
    fn https_base_and_ipv6_hosts() {
        let url = ServerUrl::parse("https://[::1]:4433/").unwrap();
        assert_eq!(url.websocket().as_str(), "wss://[::1]:4433/ws");
        assert_eq!(url.webtransport(None).as_str(), "https://[::1]:4433/wt");
        assert_eq!(url.host(), "[::1]");
        let default_port = ServerUrl::parse("http://example.org").unwrap();
        assert_eq!(default_port.port(), 80);
        assert_eq!(
            default_port.webtransport(None).as_str(),
            "https://example.org:80/wt"
        );
    }

    #[test]
    fn refuses_unusable_urls() {
        for bad in [
            "ftp://host:1",
            "http://",
            "http://host:1/?q=1",
            "http://user:pw@host:1",
            "http://host:99999",
        ] {
            assert!(ServerUrl::parse(bad).is_err(), "{bad} was accepted");
        }
    }
}
