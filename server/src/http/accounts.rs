//! Account endpoints: sign up, log in, log out, and who am I.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::auth::{self, new_token};
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

#[derive(Serialize)]
pub struct UserView {
    pub id: u64,
    pub username: String,
    pub role: &'static str,
    pub created_at_ms: u64,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        UserView {
            id: u.id.0,
            username: u.username.clone(),
            role: match u.role {
                Role::Admin => "admin",
                Role::User => "user",
            },
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
    ApiJson(creds): ApiJson<Credentials>,
) -> Result<(StatusCode, Json<LoginView>), ApiError> {
    auth::validate_username(&creds.username)
        .map_err(|m| ApiError::bad_request("invalid_username", m))?;
    auth::validate_password(&creds.password)
        .map_err(|m| ApiError::bad_request("invalid_password", m))?;
    if state.store.user_by_name(&creds.username).await?.is_some() {
        return Err(ApiError::name_taken("username"));
    }
    let password = creds.password;
    let phc = tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await?
        .map_err(|e| {
            tracing::error!("password hashing failed: {e}");
            ApiError::internal()
        })?;
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
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    ApiJson(creds): ApiJson<Credentials>,
) -> Result<Json<LoginView>, ApiError> {
    state.login_limiter.check(peer.ip(), &creds.username)?;
    let user = state.store.user_by_name(&creds.username).await?;
    let phc = user.as_ref().map(|u| u.password_phc.clone());
    let password = creds.password;
    // Verify even for unknown users, so timing does not reveal which names exist.
    let ok = tokio::task::spawn_blocking(move || match phc {
        Some(phc) => auth::verify_password(&password, &phc),
        None => {
            let _ = auth::verify_password(&password, dummy_phc());
            false
        }
    })
    .await?;
    match user {
        Some(user) if ok => Ok(Json(start_session(&state, &user).await?)),
        _ => {
            state.login_limiter.failed(peer.ip(), &creds.username);
            Err(ApiError::invalid_credentials())
        }
    }
}

/// A real hash of nothing in particular, verified against when the user does not exist.
fn dummy_phc() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| auth::hash_password("not a password of anyone").unwrap_or_default())
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
