//! Account endpoints: sign up, log in, log out, who am I, and change the password.
//!
//! A banned user's login is refused (403 `banned`, with the reason and until when) only after
//! their password verified, so the ban is told to nobody else. A password change verifies the
//! current password like a login (same limiter, same pool), then replaces the password, revokes
//! every session of the user and hands the caller a fresh token, in one store request.
//!
//! Sign-up and login are where peers can make the server spend the most (an argon2 hash is
//! 19 MiB and tens of ms of CPU), so both go through their per-address limits first
//! ([`crate::http::signup_limit`], [`crate::http::login_limit`]), then hash or verify only in
//! the bounded [`crate::auth::HashPool`] (503 with Retry-After when it is full).

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::admin::ops::ban_message;
use crate::auth::{self, HashPoolError, new_token};
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, Authenticated};
use crate::state::AppState;
use crate::store::{Role, StoreError, User};
use crate::tls::unix_ms;

/// How long a login lasts.
const SESSION_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Deserialize)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// `User` of the API (also an admin operation's answer, read back by `quibble admin`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserView {
    pub id: u64,
    pub username: String,
    /// `"user"` or `"admin"`.
    pub role: Role,
    pub created_at_ms: u64,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        UserView {
            id: u.id.0,
            username: u.username.clone(),
            role: u.role,
            created_at_ms: u.created_at_ms,
        }
    }
}

#[derive(Serialize)]
pub struct LoginView {
    pub user: UserView,
    pub token: String,
    pub expires_at_ms: u64,
}

/// `POST /api/signup`
pub async fn signup(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(creds): ApiJson<Credentials>,
) -> Result<(StatusCode, Json<LoginView>), ApiError> {
    state.signup_limiter.reserve(peer.ip())?;
    auth::validate_username(&creds.username)
        .map_err(|m| ApiError::bad_request("invalid_username", m))?;
    auth::validate_password(&creds.password)
        .map_err(|m| ApiError::bad_request("invalid_password", m))?;
    if state.store.user_by_name(&creds.username).await?.is_some() {
        return Err(ApiError::name_taken("username"));
    }
    let phc = match state.hash_pool.hash(creds.password).await {
        Ok(phc) => phc,
        Err(e) => {
            if matches!(e, HashPoolError::Busy) {
                state.signup_limiter.refund(peer.ip());
            }
            return Err(hashing_failed(&state, e));
        }
    };
    let user = match state.store.create_user(&creds.username, phc).await {
        Ok(user) => user,
        Err(StoreError::NameTaken) => return Err(ApiError::name_taken("username")),
        Err(e) => return Err(e.into()),
    };
    Ok((
        StatusCode::CREATED,
        Json(start_session(&state, &user).await?),
    ))
}

/// `POST /api/login`
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(creds): ApiJson<Credentials>,
) -> Result<Json<LoginView>, ApiError> {
    // Reserved before verifying: concurrent guesses cannot verify more than the budget holds.
    let attempt = state.login_limiter.reserve(peer.ip(), &creds.username)?;
    let user = match state.store.user_by_name(&creds.username).await {
        Ok(user) => user,
        Err(e) => {
            state.login_limiter.refund(attempt);
            return Err(e.into());
        }
    };
    let phc = user.as_ref().map(|u| u.password_phc.clone());
    // Verified even for unknown users, so timing does not reveal which names exist.
    let ok = match state.hash_pool.verify(creds.password, phc).await {
        Ok(ok) => ok,
        Err(e) => {
            state.login_limiter.refund(attempt);
            return Err(hashing_failed(&state, e));
        }
    };
    match user {
        Some(user) if ok => {
            state.login_limiter.refund(attempt);
            let (token, hash) = new_token();
            let expires_at_ms = unix_ms(SystemTime::now() + SESSION_TTL);
            let verified = user.password_phc.clone();
            match state
                .store
                .create_login_session(hash, user.id, expires_at_ms, verified)
                .await
            {
                Ok(()) => {}
                Err(StoreError::Banned { reason, until_ms }) => {
                    return Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        "banned",
                        ban_message(&reason, until_ms),
                    ));
                }
                // The password changed while this one was being verified.
                Err(StoreError::PasswordChanged) => return Err(ApiError::invalid_credentials()),
                Err(e) => return Err(e.into()),
            }
            Ok(Json(LoginView {
                user: UserView::from(&user),
                token,
                expires_at_ms,
            }))
        }
        // The attempt stays spent: a failure.
        _ => Err(ApiError::invalid_credentials()),
    }
}

#[derive(Deserialize)]
pub struct PasswordChange {
    pub current: String,
    pub new: String,
}

#[derive(Serialize)]
pub struct TokenView {
    pub token: String,
    pub expires_at_ms: u64,
}

/// `POST /api/account/password`: verifies `current`, sets `new`, revokes every session of the
/// user (the presented token too) and returns the caller's new token.
pub async fn change_password(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    auth: Authenticated,
    ApiJson(change): ApiJson<PasswordChange>,
) -> Result<Json<TokenView>, ApiError> {
    auth::validate_password(&change.new)
        .map_err(|m| ApiError::bad_request("invalid_password", m))?;
    let user = auth.user;
    let attempt = state.login_limiter.reserve(peer.ip(), &user.username)?;
    let verified = user.password_phc.clone();
    let ok = match state
        .hash_pool
        .verify(change.current, Some(verified.clone()))
        .await
    {
        Ok(ok) => ok,
        Err(e) => {
            state.login_limiter.refund(attempt);
            return Err(hashing_failed(&state, e));
        }
    };
    if !ok {
        // The attempt stays spent: a failure.
        return Err(wrong_password());
    }
    state.login_limiter.refund(attempt);
    let phc = state
        .hash_pool
        .hash(change.new)
        .await
        .map_err(|e| hashing_failed(&state, e))?;
    let (token, hash) = new_token();
    let expires_at_ms = unix_ms(SystemTime::now() + SESSION_TTL);
    match state
        .store
        .change_password(user.id, verified, phc, hash, expires_at_ms)
        .await
    {
        Ok(()) => Ok(Json(TokenView {
            token,
            expires_at_ms,
        })),
        // Changed by another request since this one read it.
        Err(StoreError::PasswordChanged) => Err(wrong_password()),
        // Banned since this request was authenticated: its token is revoked already.
        Err(StoreError::Banned { .. }) => Err(ApiError::unauthorized("invalid or expired token")),
        Err(e) => Err(e.into()),
    }
}

fn wrong_password() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "wrong_password",
        "the current password is wrong",
    )
}

fn hashing_failed(state: &AppState, e: HashPoolError) -> ApiError {
    match e {
        HashPoolError::Busy => ApiError::busy(
            state.hash_pool.retry_after_secs(),
            "the server is busy checking passwords; try again shortly",
        ),
        HashPoolError::Hash(e) => {
            tracing::error!("password hashing failed: {e}");
            ApiError::internal()
        }
    }
}

/// `POST /api/logout`: revokes the presented token.
pub async fn logout(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<StatusCode, ApiError> {
    state.store.delete_session(auth.token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/account`
pub async fn account(auth: Authenticated) -> Json<UserView> {
    Json(UserView::from(&auth.user))
}

async fn start_session(state: &AppState, user: &User) -> Result<LoginView, ApiError> {
    let (token, hash) = new_token();
    let expires_at_ms = unix_ms(SystemTime::now() + SESSION_TTL);
    state
        .store
        .create_session(hash, user.id, expires_at_ms)
        .await?;
    Ok(LoginView {
        user: UserView::from(user),
        token,
        expires_at_ms,
    })
}
