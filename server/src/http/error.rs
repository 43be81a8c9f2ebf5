//! API errors: every failure is an HTTP status plus `{"error":{"code","message"}}` with a
//! stable code (see docs/api.md).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::access::Refusal;
use crate::store::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds, for 429/503.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn invalid_credentials() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "invalid username or password",
        )
    }

    /// 404 `unknown_user`: no account is called `username`.
    pub fn unknown_user(username: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "unknown_user",
            format!("no user named {username:?}"),
        )
    }

    pub fn name_taken(what: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "name_taken",
            format!("that {what} is taken"),
        )
    }

    pub fn rate_limited(retry_after: u64) -> Self {
        ApiError {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many attempts; try again later",
            )
        }
    }

    pub fn overloaded() -> Self {
        ApiError {
            retry_after: Some(5),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "the server is at its connection limit; try again shortly",
            )
        }
    }

    /// 503 `overloaded` for work the server has no room for right now.
    pub fn busy(retry_after: u64, message: impl Into<String>) -> Self {
        ApiError {
            retry_after: Some(retry_after),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message)
        }
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server failed; try again",
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::new(StatusCode::NOT_FOUND, "not_found", "not found"),
            StoreError::Blocked => Self::new(StatusCode::FORBIDDEN, "not_allowed", "not allowed"),
            StoreError::TooMany(what) => Self::new(
                StatusCode::CONFLICT,
                "too_many",
                format!("too many {what}; the limit is reached"),
            ),
            other => {
                tracing::error!("store error: {other}");
                Self::internal()
            }
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Unknown(_) => {
                Self::new(StatusCode::NOT_FOUND, "not_found", refusal.to_string())
            }
            Refusal::Forbidden => {
                Self::new(StatusCode::FORBIDDEN, "forbidden", refusal.to_string())
            }
            Refusal::NotFriends => {
                Self::new(StatusCode::FORBIDDEN, "not_friends", refusal.to_string())
            }
            Refusal::Store(e) => e.into(),
            Refusal::NotYours => Self::new(StatusCode::FORBIDDEN, "forbidden", refusal.to_string()),
            Refusal::NotAllowed => {
                Self::new(StatusCode::FORBIDDEN, "not_allowed", refusal.to_string())
            }
            Refusal::NotRoomOwner => {
                Self::new(StatusCode::FORBIDDEN, "forbidden", refusal.to_string())
            }
        }
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        tracing::error!("blocking task failed: {e}");
        Self::internal()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
