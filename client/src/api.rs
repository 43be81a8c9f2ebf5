//! The REST client for the server's JSON API (`docs/api.md`): accounts, sessions, rooms, message
//! deletion and the certificate hash for WebTransport pinning (friends, DMs, membership and the conversation
//! list are in `social.rs`). Error bodies become [`ApiError::Server`] with the
//! HTTP status and the API's stable code. An `https://` server is verified with the client's
//! [`TlsRoots`] (`tls.rs`); a certificate it refuses is [`ApiError::Certificate`].

use quibble_protocol::{ConversationId, UserId};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Method, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::endpoints::ServerUrl;
use crate::error::ApiError;
use crate::tls::{self, TlsRoots};

/// An account's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
    /// A role this client does not know yet.
    #[serde(other)]
    Other,
}

/// An account.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub role: Role,
    pub created_at_ms: u64,
}

/// A room; its id is its conversation id on the realtime protocol.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Room {
    pub id: ConversationId,
    pub name: String,
    pub created_at_ms: u64,
    /// The newest message's seq (0: no messages yet).
    pub head_seq: u64,
    /// Whether the caller is a member (in the room list; absent from older servers).
    #[serde(default)]
    pub member: bool,
}

/// A successful signup or login: the account and a bearer token.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Login {
    pub user: User,
    pub token: String,
    pub expires_at_ms: u64,
}

/// The server's current WebTransport certificate.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CertInfo {
    /// SHA-256 of the DER certificate, hex.
    pub sha256_hex: String,
    /// Expiry, Unix ms (absent for a CA-issued certificate the server does not rotate).
    pub not_after_ms: Option<u64>,
    /// UDP port of the WebTransport endpoint.
    pub webtransport_port: u16,
}

/// One page of the room list (`GET /api/rooms`), in ascending id (creation) order.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RoomPage {
    pub rooms: Vec<Room>,
    /// The `after` for the next page; `None` on the last page.
    pub next: Option<ConversationId>,
}

/// A deleted message (`DELETE /api/conversations/{id}/messages/{seq}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DeletedMessage {
    pub conversation: ConversationId,
    pub seq: u64,
    pub deleted: bool,
}

/// The largest page `GET /api/rooms` serves; [`Api::rooms`] asks for pages of this size.
pub const MAX_ROOM_PAGE: u32 = 500;

/// The most pages [`Api::rooms`] reads (a million rooms), so a misbehaving server cannot keep
/// it paging forever.
const MAX_ROOM_PAGES: usize = 2_000;

#[derive(Serialize)]
struct Credentials<'a> {
    username: &'a str,
    password: &'a str,
}

#[derive(Serialize)]
struct NewRoom<'a> {
    name: &'a str,
}

/// A REST client for one server. Cheap to clone (connections are pooled and shared).
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    server: ServerUrl,
    tls: TlsRoots,
}

/// How long connecting to the server may take (TCP and TLS).
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long one API call may take, from sending it to its whole answer.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

impl Api {
    /// A client for the server at `server` (`http://host:port` or `https://host:port`; HTTPS
    /// is verified with the system's roots).
    pub fn new(server: &str) -> Result<Api, ApiError> {
        Api::with_tls(server, TlsRoots::system()?)
    }

    /// A client for the server at `server` that verifies HTTPS with `tls` (e.g.
    /// [`TlsRoots::with_ca_cert`]).
    pub fn with_tls(server: &str, tls: TlsRoots) -> Result<Api, ApiError> {
        Api::for_server(ServerUrl::parse(server)?, tls)
    }

    pub(crate) fn for_server(server: ServerUrl, tls: TlsRoots) -> Result<Api, ApiError> {
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(rustls::ClientConfig::clone(&tls.tcp()))
            // Every call has a deadline, and a redirect (which could lead from HTTPS to
            // plain HTTP, or to another host with the session token) is never followed: the
            // API answers where it is asked.
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|source| ApiError::Request {
                url: server.to_string(),
                source,
            })?;
        Ok(Api { http, server, tls })
    }

    /// The server this client talks to.
    pub fn server(&self) -> &ServerUrl {
        &self.server
    }

    /// The certificates this client trusts.
    pub fn tls(&self) -> &TlsRoots {
        &self.tls
    }

    /// The error for a request to `url` that failed: [`ApiError::Certificate`] if the server's
    /// certificate was refused.
    fn request_error(&self, url: String, source: reqwest::Error) -> ApiError {
        match tls::certificate_failure(&source) {
            Some(reason) => ApiError::Certificate {
                server: self.server.to_string(),
                reason,
                trusted: self.tls.describe(),
            },
            None => ApiError::Request { url, source },
        }
    }

    /// `POST /api/signup`: create an account (and a session for it).
    pub async fn signup(&self, username: &str, password: &str) -> Result<Login, ApiError> {
        let body = Credentials { username, password };
        self.call(Method::POST, "signup", None, Some(&body)).await
    }

    /// `POST /api/login`.
    pub async fn login(&self, username: &str, password: &str) -> Result<Login, ApiError> {
        let body = Credentials { username, password };
        self.call(Method::POST, "login", None, Some(&body)).await
    }

    /// `POST /api/logout`: revoke `token`.
    pub async fn logout(&self, token: &str) -> Result<(), ApiError> {
        self.execute(Method::POST, "logout", Some(token), None::<&()>)
            .await
            .map(drop)
    }

    /// `GET /api/account`: the token's account.
    pub async fn account(&self, token: &str) -> Result<User, ApiError> {
        self.call(Method::GET, "account", Some(token), None::<&()>)
            .await
    }

    /// `GET /api/rooms?limit=&after=`: up to `limit` rooms (1..=[`MAX_ROOM_PAGE`]) with ids
    /// above `after`, in ascending id order, and the cursor of the next page.
    pub async fn rooms_page(
        &self,
        token: &str,
        after: Option<ConversationId>,
        limit: u32,
    ) -> Result<RoomPage, ApiError> {
        let path = match after {
            Some(after) => format!("rooms?limit={limit}&after={}", after.0),
            None => format!("rooms?limit={limit}"),
        };
        self.call(Method::GET, &path, Some(token), None::<&()>)
            .await
    }

    /// Every room, in ascending id (creation) order: pages through `GET /api/rooms`.
    pub async fn rooms(&self, token: &str) -> Result<Vec<Room>, ApiError> {
        let mut rooms = Vec::new();
        let mut after = None;
        for _ in 0..MAX_ROOM_PAGES {
            let page = self.rooms_page(token, after, MAX_ROOM_PAGE).await?;
            rooms.extend(page.rooms);
            match page.next {
                // A cursor must move forwards; anything else would page forever.
                Some(next) if after.is_none_or(|a: ConversationId| next.0 > a.0) => {
                    after = Some(next)
                }
                _ => return Ok(rooms),
            }
        }
        Ok(rooms)
    }

    /// `POST /api/rooms`: create a room.
    pub async fn create_room(&self, token: &str, name: &str) -> Result<Room, ApiError> {
        self.call(Method::POST, "rooms", Some(token), Some(&NewRoom { name }))
            .await
    }

    /// `DELETE /api/conversations/{id}/messages/{seq}`: delete a message (the caller's own; an
    /// admin: anyone's). Deleting it again succeeds the same; someone else's is
    /// [`ApiError::Server`] 403 `forbidden`.
    pub async fn delete_message(
        &self,
        token: &str,
        conversation: ConversationId,
        seq: u64,
    ) -> Result<DeletedMessage, ApiError> {
        let path = format!("conversations/{}/messages/{seq}", conversation.0);
        self.call(Method::DELETE, &path, Some(token), None::<&()>)
            .await
    }

    /// `GET /api/cert`: the certificate hash to pin for WebTransport.
    pub async fn cert(&self) -> Result<CertInfo, ApiError> {
        self.call(Method::GET, "cert", None, None::<&()>).await
    }

    /// Make a request and decode its JSON success body.
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&impl Serialize>,
    ) -> Result<T, ApiError> {
        let response = self.execute(method, path, token, body).await?;
        let url = response.url().to_string();
        response
            .json()
            .await
            .map_err(|source| self.request_error(url, source))
    }

    /// Make a request to `path` (with an optional `?query`); an error status becomes an
    /// [`ApiError`].
    async fn execute(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&impl Serialize>,
    ) -> Result<Response, ApiError> {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let mut url = self.server.api(path);
        if !query.is_empty() {
            url.set_query(Some(query));
        }
        let mut request = self.http.request(method, url.clone());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|source| self.request_error(url.to_string(), source))?;
        self.check(response).await
    }

    /// Pass a success through; turn an error status into an [`ApiError`].
    async fn check(&self, response: Response) -> Result<Response, ApiError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after_s = retry_after(response.headers());
        let url = response.url().to_string();
        let body = response
            .bytes()
            .await
            .map_err(|source| self.request_error(url, source))?;
        Err(error_from_response(status, retry_after_s, &body))
    }
}

fn retry_after(headers: &HeaderMap) -> Option<u64> {
    headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

/// Map an error response to an [`ApiError`]: the API's `{"error":{"code","message"}}` body
/// when it is one, else a short description of what came instead.
pub(crate) fn error_from_response(
    status: StatusCode,
    retry_after_s: Option<u64>,
    body: &[u8],
) -> ApiError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { error }) => ApiError::Server {
            status: status.as_u16(),
            code: error.code,
            message: error.message,
            retry_after_s,
        },
        Err(_) => ApiError::UnexpectedResponse {
            status: status.as_u16(),
            detail: snippet(body),
        },
    }
}

/// The start of a body, on one line, for error messages.
fn snippet(body: &[u8]) -> String {
    const MAX: usize = 120;
    let text = String::from_utf8_lossy(body);
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let trimmed = one_line.trim();
    if trimmed.is_empty() {
        return "empty body".to_owned();
    }
    match trimmed.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}…", &trimmed[..end]),
        None => trimmed.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_error_bodies_become_typed_errors() {
        let body =
            br#"{"error":{"code":"invalid_credentials","message":"invalid username or password"}}"#;
        let err = error_from_response(StatusCode::UNAUTHORIZED, None, body);
        assert_eq!(err.status(), Some(401));
        assert_eq!(err.code(), Some("invalid_credentials"));
        assert_eq!(err.to_string(), "invalid username or password");

        let err = error_from_response(
            StatusCode::TOO_MANY_REQUESTS,
            Some(3),
            br#"{"error":{"code":"rate_limited","message":"slow down","extra":1}}"#,
        );
        assert!(matches!(
            err,
            ApiError::Server {
                status: 429,
                retry_after_s: Some(3),
                ..
            }
        ));
    }

    #[test]
    fn other_error_bodies_are_described() {
        let err = error_from_response(
            StatusCode::BAD_GATEWAY,
            None,
            b"<html>\n<body>Bad gateway</body></html>",
        );
        assert_eq!(err.status(), Some(502));
        assert_eq!(err.code(), None);
        assert_eq!(
            err.to_string(),
            "unexpected response from the server (HTTP 502): <html> <body>Bad gateway</body></html>"
        );
        let empty = error_from_response(StatusCode::NOT_FOUND, None, b"");
        assert!(empty.to_string().ends_with("empty body"));
        let long = error_from_response(StatusCode::NOT_FOUND, None, "é".repeat(500).as_bytes());
        assert!(long.to_string().ends_with('…'));
    }

    #[test]
    fn json_types_match_the_api_document() {
        let login: Login = serde_json::from_str(
            r#"{"user":{"id":7,"username":"ann","role":"admin","created_at_ms":5},
                "token":"abc","expires_at_ms":9}"#,
        )
        .unwrap();
        assert_eq!(login.user.id, UserId(7));
        assert_eq!(login.user.role, Role::Admin);
        let room: Room =
            serde_json::from_str(r#"{"id":3,"name":"general","created_at_ms":1,"head_seq":42}"#)
                .unwrap();
        assert_eq!(room.id, ConversationId(3));
        let page: RoomPage = serde_json::from_str(
            r#"{"rooms":[{"id":3,"name":"general","created_at_ms":1,"head_seq":42}],"next":3}"#,
        )
        .unwrap();
        assert_eq!(page.next, Some(ConversationId(3)));
        let last: RoomPage = serde_json::from_str(r#"{"rooms":[],"next":null}"#).unwrap();
        assert_eq!(last.next, None);
        let user: User =
            serde_json::from_str(r#"{"id":1,"username":"x","role":"moderator","created_at_ms":0}"#)
                .unwrap();
        assert_eq!(user.role, Role::Other);
        let cert: CertInfo = serde_json::from_str(
            r#"{"sha256_hex":"ab","not_after_ms":null,"webtransport_port":4433}"#,
        )
        .unwrap();
        assert_eq!(cert.not_after_ms, None);
    }
}
