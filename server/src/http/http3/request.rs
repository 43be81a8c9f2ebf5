//! One HTTP/3 request through the axum router: the request head becomes an `http::Request`
//! with a streaming body ([`super::body::RecvBody`]), the connection's peer address and
//! admission slot, as the HTTP/1.1 listener gives them; the router's response goes back as a
//! HEADERS frame and DATA frames. Connection-specific headers, which HTTP/3 forbids
//! (`Connection`, `Keep-Alive`, `Transfer-Encoding`, `Upgrade`), are dropped from the
//! response. Every write waits at most the write deadline for a peer that reads nothing.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, Response, header};
use bytes::Bytes;
use h3::server::RequestStream;
use http_body_util::BodyExt;
use tokio::time::timeout;
use tower_service::Service;

use super::body::RecvBody;
use crate::admission::Slot;

/// What one request needs from its connection.
pub struct Context {
    pub router: Router,
    pub peer: SocketAddr,
    pub slot: Slot,
    /// How long a write may wait on a peer that reads nothing.
    pub write_stall: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("sending the response failed: {0}")]
    Send(#[from] h3::error::StreamError),
    #[error("the peer read nothing for {0:?}")]
    Stalled(Duration),
    #[error("the response body failed: {0}")]
    Body(axum::Error),
}

/// Serve `head` on `stream` and finish the stream.
pub async fn serve(
    context: Context,
    head: Request<()>,
    stream: RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>,
) -> Result<(), RequestError> {
    let (mut send, recv) = stream.split();
    let mut request = head.map(|()| Body::new(RecvBody::new(recv)));
    request.extensions_mut().insert(ConnectInfo(context.peer));
    request.extensions_mut().insert(context.slot.clone());
    metrics::counter!(crate::metrics::HTTP3_REQUESTS).increment(1);
    let mut router = context.router;
    let response = match router.call(request).await {
        Ok(response) => response,
        Err(infallible) => match infallible {},
    };
    let (mut parts, mut body) = response.into_parts();
    strip_connection_headers(&mut parts.headers);
    let stall = context.write_stall;
    within(stall, send.send_response(Response::from_parts(parts, ()))).await?;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(RequestError::Body)?;
        match frame.into_data() {
            Ok(data) if data.is_empty() => {}
            Ok(data) => within(stall, send.send_data(data)).await?,
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    within(stall, send.send_trailers(trailers)).await?;
                }
            }
        }
    }
    within(stall, send.finish()).await?;
    Ok(())
}

/// `work`, failed with [`RequestError::Stalled`] if it takes longer than `stall`.
async fn within<T>(
    stall: Duration,
    work: impl Future<Output = Result<T, h3::error::StreamError>>,
) -> Result<T, RequestError> {
    match timeout(stall, work).await {
        Ok(done) => Ok(done?),
        Err(_) => Err(RequestError::Stalled(stall)),
    }
}

/// Drop the headers HTTP/3 does not allow (RFC 9114, 4.2).
fn strip_connection_headers(headers: &mut HeaderMap) {
    for name in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::HeaderName::from_static("keep-alive"),
        header::HeaderName::from_static("proxy-connection"),
    ] {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn connection_specific_headers_are_dropped_and_the_rest_kept() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        strip_connection_headers(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key(header::CONTENT_TYPE));
    }
}
