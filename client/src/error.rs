//! The library's error types: [`ApiError`] for the REST API, [`TransportError`] for opening a
//! realtime transport, and [`ClientError`] for a realtime client as a whole ([`TlsError`], for
//! the trusted certificates, is in `tls.rs`). A server certificate that fails verification has
//! a variant of its own in the first two, which names the server and the reason.
//!
//! Messages name only their own step; the underlying cause is the error's `source()`, so print
//! the whole chain (e.g. anyhow's `{:#}`) to see everything.

use std::time::Duration;

use quibble_protocol::ErrorCode;

use crate::tls::TlsError;
use crate::transport::TransportKind;

/// A server URL that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid server URL {url:?}: {reason}")]
pub struct InvalidUrl {
    pub url: String,
    pub reason: String,
}

/// A failed REST API call.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    InvalidUrl(#[from] InvalidUrl),
    /// The server answered with the API's JSON error body.
    #[error("{message}")]
    Server {
        /// HTTP status.
        status: u16,
        /// The stable error code, e.g. `invalid_credentials` (see `docs/api.md`).
        code: String,
        /// Human-readable text from the server.
        message: String,
        /// Seconds from a `Retry-After` header (with `rate_limited`).
        retry_after_s: Option<u64>,
    },
    /// A response that is not what the API promises (e.g. an HTML error page from a proxy).
    #[error("unexpected response from the server (HTTP {status}): {detail}")]
    UnexpectedResponse { status: u16, detail: String },
    /// The server's TLS certificate failed verification (HTTPS): not issued by a trusted CA,
    /// not valid for the host name, expired, ...
    #[error("certificate verification failed for {server}: {reason}; trusted: {trusted}")]
    Certificate {
        /// The server's base URL.
        server: String,
        /// rustls's reason, e.g. `invalid peer certificate: UnknownIssuer`.
        reason: String,
        /// What the client trusts (the system's roots, and the CA file if given).
        trusted: String,
    },
    /// The client's TLS setup failed (e.g. a CA certificate file that cannot be used).
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The request could not be made or its response not read.
    #[error("HTTP request to {url} failed")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
}

impl ApiError {
    /// The HTTP status, if the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Server { status, .. } | ApiError::UnexpectedResponse { status, .. } => {
                Some(*status)
            }
            ApiError::InvalidUrl(_)
            | ApiError::Certificate { .. }
            | ApiError::Tls(_)
            | ApiError::Request { .. } => None,
        }
    }

    /// The API's stable error code, if the server sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ApiError::Server { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// Opening a realtime transport failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot fetch the certificate hash from /api/cert")]
    CertFetch(#[source] ApiError),
    #[error("/api/cert sent an invalid certificate hash {0:?}")]
    BadCertHash(String),
    #[error("{transport} connection failed: {reason}")]
    Failed {
        transport: TransportKind,
        reason: String,
    },
    /// The server's TLS certificate failed verification (WSS or WebTransport).
    #[error(
        "{transport}: certificate verification failed for {server}: {reason}; trusted: {trusted}"
    )]
    Certificate {
        transport: TransportKind,
        /// The server's host and port.
        server: String,
        /// rustls's reason, e.g. `invalid peer certificate: UnknownIssuer`.
        reason: String,
        /// What the client trusts (the system's roots, and the CA file if given).
        trusted: String,
    },
    #[error("{transport} connection timed out after {after:?}")]
    TimedOut {
        transport: TransportKind,
        after: Duration,
    },
    /// Both transports were tried (automatic choice) and neither came up.
    #[error("no transport came up ({webtransport}; {websocket})")]
    Neither {
        webtransport: Box<TransportError>,
        websocket: Box<TransportError>,
    },
}

/// A realtime client could not be created, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    InvalidUrl(#[from] InvalidUrl),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot connect")]
    Connect(#[source] TransportError),
    /// The server refused the token (missing, expired or revoked): log in again.
    #[error("the server refused the session token: {reason}")]
    Unauthorized { reason: String },
    /// The server refused the connection for good for another reason.
    #[error("the server refused the connection ({code}): {reason}")]
    Refused { code: ErrorCode, reason: String },
    /// The connection ended before the server's `Welcome`.
    #[error("the connection closed before the server accepted it: {reason}")]
    ClosedEarly { reason: String },
    /// The client was closed (or its driver stopped) before the request could be answered.
    #[error("the client is closed")]
    Closed,
}

impl ClientError {
    /// The error for a connection the server ended with `code` (if any) before `Welcome`.
    pub(crate) fn refused(code: Option<ErrorCode>, reason: String) -> ClientError {
        match code {
            Some(ErrorCode::Unauthorized) => ClientError::Unauthorized { reason },
            Some(code) if !code.is_retryable() => ClientError::Refused { code, reason },
            _ => ClientError::ClosedEarly { reason },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_map_to_errors() {
        assert!(matches!(
            ClientError::refused(Some(ErrorCode::Unauthorized), "bad".into()),
            ClientError::Unauthorized { reason } if reason == "bad"
        ));
        assert!(matches!(
            ClientError::refused(Some(ErrorCode::UnsupportedVersion), "v".into()),
            ClientError::Refused {
                code: ErrorCode::UnsupportedVersion,
                ..
            }
        ));
        assert!(matches!(
            ClientError::refused(Some(ErrorCode::ShuttingDown), "bye".into()),
            ClientError::ClosedEarly { .. }
        ));
        assert!(matches!(
            ClientError::refused(None, "eof".into()),
            ClientError::ClosedEarly { .. }
        ));
    }
}
