//! Request bodies, read once for every route before any handler runs: a body larger than the
//! API's limit is refused with 413 (at once when `Content-Length` says so), and a body that has
//! not fully arrived within its deadline gets 408. Both close the connection, since the rest of
//! the body is never read. Handlers then see the buffered bytes and never wait on a peer.

use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::LengthLimitError;

use crate::http::error::ApiError;

/// What the middleware needs: the size limit and the deadline.
#[derive(Debug, Clone, Copy)]
pub struct BodyRules {
    pub max_bytes: usize,
    pub deadline: Duration,
}

/// The middleware (`axum::middleware::from_fn_with_state`).
pub async fn read_whole(State(rules): State<BodyRules>, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > rules.max_bytes as u64) {
        return too_large(rules.max_bytes);
    }
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    match tokio::time::timeout(rules.deadline, axum::body::to_bytes(body, rules.max_bytes)).await {
        Err(_) => closing(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "the request body did not arrive within {} ms",
                rules.deadline.as_millis()
            ),
        )),
        Ok(Err(e)) if is_length_limit(&e) => too_large(rules.max_bytes),
        Ok(Err(_)) => closing(ApiError::bad_request(
            "bad_body",
            "the request body could not be read",
        )),
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
    }
}

fn too_large(max: usize) -> Response {
    closing(ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the request body is larger than {max} bytes"),
    ))
}

/// The error response, and the connection closes after it (the body was not all read).
fn closing(error: ApiError) -> Response {
    let mut response = error.into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}
