//! The JSON API over HTTP/3 (hyperium `h3` on quinn): [`Http3Api`] opens one QUIC connection
//! to a server's HTTP/3 port (the port its HTTPS responses advertise in `Alt-Svc`, or
//! `quibble serve` prints), verifying the certificate against the roots it is given, and makes
//! requests on it, one stream each. Error bodies become the same [`ApiError`] as with [`Api`];
//! each request has a deadline and a response body is read up to a size limit. Only a few
//! calls are typed here (status, certificate, sign-up, login, rooms); [`Http3Api::call`] makes
//! any other.
//!
//! [`Api`]: crate::Api

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{Method, Request, StatusCode, header};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use wtransport::quinn;
use wtransport::quinn::crypto::rustls::QuicClientConfig;
use wtransport::tls::rustls;

use crate::api::{CertInfo, Login, Room, error_from_response};
use crate::endpoints::ServerUrl;
use crate::error::{ApiError, InvalidUrl};

/// How long one request may take, connection set-up included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest response body read.
const MAX_RESPONSE: usize = 8 * 1024 * 1024;

/// A failed HTTP/3 call.
#[derive(Debug, thiserror::Error)]
pub enum Http3Error {
    #[error(transparent)]
    InvalidUrl(#[from] InvalidUrl),
    /// The server answered with an error status.
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("cannot resolve {host}")]
    Resolve {
        host: String,
        #[source]
        source: Option<std::io::Error>,
    },
    #[error("cannot open a QUIC socket")]
    Socket(#[source] std::io::Error),
    #[error("cannot set up TLS for HTTP/3: {0}")]
    Tls(String),
    #[error("cannot connect to {addr} over QUIC")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("the HTTP/3 request failed")]
    Stream(#[source] h3::error::StreamError),
    #[error("the response body is larger than {MAX_RESPONSE} bytes")]
    TooLarge,
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the response is not the JSON expected")]
    Decode(#[source] serde_json::Error),
}

/// An HTTP/3 connection to one server's API.
pub struct Http3Api {
    server: ServerUrl,
    endpoint: quinn::Endpoint,
    connection: quinn::Connection,
    requests: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    driver: JoinHandle<()>,
}

/// A response: its status and body.
#[derive(Debug, Clone)]
pub struct Http3Response {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Http3Api {
    /// Connect to `server` (`https://host:port`, the HTTP/3 UDP port) trusting `roots`.
    pub async fn connect(
        server: &str,
        roots: rustls::RootCertStore,
    ) -> Result<Http3Api, Http3Error> {
        let server = ServerUrl::parse(server)?;
        let host = server
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let addr = tokio::net::lookup_host((host.as_str(), server.port()))
            .await
            .map_err(|source| Http3Error::Resolve {
                host: host.clone(),
                source: Some(source),
            })?
            .next()
            .ok_or_else(|| Http3Error::Resolve {
                host: host.clone(),
                source: None,
            })?;
        let local: SocketAddr = if addr.is_ipv6() {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        };
        let mut endpoint = quinn::Endpoint::client(local).map_err(Http3Error::Socket)?;
        endpoint.set_default_client_config(client_config(roots)?);
        let connect =
            |source: Box<dyn std::error::Error + Send + Sync>| Http3Error::Connect { addr, source };
        let setup = async {
            let connection = endpoint
                .connect(addr, &host)
                .map_err(|e| connect(e.into()))?
                .await
                .map_err(|e| connect(e.into()))?;
            let (mut driver, requests) =
                h3::client::new(h3_quinn::Connection::new(connection.clone()))
                    .await
                    .map_err(|e| connect(e.into()))?;
            let driver = tokio::spawn(async move {
                let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
            });
            Ok::<_, Http3Error>((connection, requests, driver))
        };
        let (connection, requests, driver) = timeout(REQUEST_TIMEOUT, setup)
            .await
            .map_err(|_| Http3Error::Timeout(REQUEST_TIMEOUT))??;
        Ok(Http3Api {
            server,
            endpoint,
            connection,
            requests,
            driver,
        })
    }

    /// `GET /healthz`: the server's status document.
    pub async fn health(&self) -> Result<serde_json::Value, Http3Error> {
        let response = self.send(Method::GET, "/healthz", None, None).await?;
        decode(checked(response)?)
    }

    /// `GET /api/cert`.
    pub async fn cert(&self) -> Result<CertInfo, Http3Error> {
        self.call(Method::GET, "cert", None, None::<&()>).await
    }

    /// `POST /api/signup`.
    pub async fn signup(&self, username: &str, password: &str) -> Result<Login, Http3Error> {
        let body = serde_json::json!({ "username": username, "password": password });
        self.call(Method::POST, "signup", None, Some(&body)).await
    }

    /// `POST /api/login`.
    pub async fn login(&self, username: &str, password: &str) -> Result<Login, Http3Error> {
        let body = serde_json::json!({ "username": username, "password": password });
        self.call(Method::POST, "login", None, Some(&body)).await
    }

    /// `POST /api/rooms`: create a room (the creator joins it).
    pub async fn create_room(&self, token: &str, name: &str) -> Result<Room, Http3Error> {
        let body = serde_json::json!({ "name": name });
        self.call(Method::POST, "rooms", Some(token), Some(&body))
            .await
    }

    /// A request to `/api/{path}` whose JSON success body is decoded as `T`.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&impl Serialize>,
    ) -> Result<T, Http3Error> {
        let body = match body {
            Some(body) => Some(Bytes::from(
                serde_json::to_vec(body).map_err(Http3Error::Decode)?,
            )),
            None => None,
        };
        let response = self
            .send(method, &format!("/api/{path}"), token, body)
            .await?;
        decode(checked(response)?)
    }

    /// One request to `path` on this connection, whatever its status.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Bytes>,
    ) -> Result<Http3Response, Http3Error> {
        let uri = format!(
            "https://{}:{}{path}",
            self.server.host(),
            self.server.port()
        );
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request.body(()).map_err(|e| InvalidUrl {
            url: path.to_owned(),
            reason: e.to_string(),
        })?;
        let mut requests = self.requests.clone();
        let exchange = async move {
            let mut stream = requests
                .send_request(request)
                .await
                .map_err(Http3Error::Stream)?;
            if let Some(body) = body {
                stream.send_data(body).await.map_err(Http3Error::Stream)?;
            }
            stream.finish().await.map_err(Http3Error::Stream)?;
            let head = stream.recv_response().await.map_err(Http3Error::Stream)?;
            let mut body = BytesMut::new();
            while let Some(mut chunk) = stream.recv_data().await.map_err(Http3Error::Stream)? {
                if body.len() + chunk.remaining() > MAX_RESPONSE {
                    return Err(Http3Error::TooLarge);
                }
                while chunk.has_remaining() {
                    let part = chunk.chunk();
                    body.extend_from_slice(part);
                    let n = part.len();
                    chunk.advance(n);
                }
            }
            Ok(Http3Response {
                status: head.status(),
                body: body.freeze(),
            })
        };
        timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| Http3Error::Timeout(REQUEST_TIMEOUT))?
    }

    /// Close the connection (HTTP/3 no-error) and wait briefly for the server to hear of it.
    pub async fn close(self) {
        self.connection.close(quinn::VarInt::from_u32(0x100), b"");
        self.driver.abort();
        let _ = timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }
}

/// TLS 1.3 with ALPN `h3`, trusting `roots`.
fn client_config(roots: rustls::RootCertStore) -> Result<quinn::ClientConfig, Http3Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| Http3Error::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let quic = QuicClientConfig::try_from(tls).map_err(|e| Http3Error::Tls(e.to_string()))?;
    Ok(quinn::ClientConfig::new(Arc::new(quic)))
}

/// A success passes; an error status becomes the API's error.
fn checked(response: Http3Response) -> Result<Http3Response, Http3Error> {
    if response.status.is_success() {
        return Ok(response);
    }
    Err(error_from_response(response.status, None, &response.body).into())
}

fn decode<T: DeserializeOwned>(response: Http3Response) -> Result<T, Http3Error> {
    serde_json::from_slice(&response.body).map_err(Http3Error::Decode)
}
