//! Request extractors whose failures are API errors: a JSON body ([`ApiJson`]), a page of a
//! list ([`PageQuery`]), the bearer token's user ([`Authenticated`]) and an admin ([`Admin`]).

use std::time::SystemTime;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::auth::{TokenHash, hash_token};
use crate::http::error::ApiError;
use crate::state::AppState;
use crate::store::{Actor, Role, User};
use crate::tls::unix_ms;

/// Items per page when the request names no `limit`.
pub const DEFAULT_PAGE: usize = 100;
/// The largest `limit` a request may ask for.
pub const MAX_PAGE: usize = 500;

/// `?limit=N&after=POSITION` of a paged list; a bad query, or a limit outside
/// 1..=[`MAX_PAGE`], is a 400 JSON error. The limit defaults to [`DEFAULT_PAGE`]; what
/// `after` holds is the list's own (an id, a position).
pub struct PageQuery<A> {
    pub limit: usize,
    pub after: Option<A>,
}

#[derive(Deserialize)]
struct RawPage<A> {
    limit: Option<usize>,
    after: Option<A>,
}

impl<A: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for PageQuery<A> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(raw) = Query::<RawPage<A>>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| {
                ApiError::bad_request(
                    "bad_request",
                    format!("invalid query: {}", rejection.body_text()),
                )
            })?;
        let limit = raw.limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(ApiError::bad_request(
                "bad_request",
                format!("limit must be 1 to {MAX_PAGE}"),
            ));
        }
        Ok(PageQuery {
            limit,
            after: raw.after,
        })
    }
}

/// A JSON body; a bad one is a 400/413/415 JSON error.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_error(&rejection)),
        }
    }
}

fn json_error(rejection: &JsonRejection) -> ApiError {
    let status = rejection.status();
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        _ => "bad_request",
    };
    let status = if code == "bad_request" {
        StatusCode::BAD_REQUEST
    } else {
        status
    };
    ApiError::new(status, code, rejection.body_text())
}

/// The user behind `Authorization: Bearer <token>`, and the token's hash (for logout).
pub struct Authenticated {
    pub user: User,
    pub token: TokenHash,
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer token"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::unauthorized("malformed Authorization header"))?;
        let token = hash_token(token);
        let user = state
            .store
            .session_user(&token, unix_ms(SystemTime::now()))
            .await?
            .ok_or_else(|| ApiError::unauthorized("invalid or expired token"))?;
        Ok(Authenticated { user, token })
    }
}

/// An admin behind the bearer token: 401 as for [`Authenticated`], then 403 `forbidden` for a
/// USER. (The store checks again, when it applies the action, that they are still an admin.)
pub struct Admin {
    pub user: User,
}

impl Admin {
    /// This admin as the actor of a moderation action.
    pub fn actor(&self) -> Actor {
        Actor::User(self.user.id)
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Authenticated { user, .. } = Authenticated::from_request_parts(parts, state).await?;
        if user.role != Role::Admin {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "only admins may do this",
            ));
        }
        Ok(Admin { user })
    }
}
