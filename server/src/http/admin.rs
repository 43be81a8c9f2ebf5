//! The admin endpoints (`/api/admin/…`, `/api/users/ban`, `/api/users/unban`): each takes the
//! [`Admin`] extractor (401 without a valid token, 403 `forbidden` for a USER) and hands one
//! [`Operation`] to [`crate::admin::perform`], the same path the admin socket uses; the
//! [`Outcome`] is the response body. Refusals map to API errors here ([`From<OpError>`]).

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Deserialize;

use crate::admin::ops::{OpError, Operation, Outcome};
use crate::admin::perform;
use crate::http::error::ApiError;
use crate::http::extract::{Admin, ApiJson};
use crate::state::AppState;

#[derive(Deserialize)]
pub struct UsernameBody {
    pub username: String,
}

#[derive(Deserialize)]
pub struct BanBody {
    pub username: String,
    pub reason: String,
    pub duration_secs: Option<u64>,
}

#[derive(Deserialize)]
pub struct IpBanBody {
    pub network: String,
    pub reason: String,
    pub duration_secs: Option<u64>,
}

#[derive(Deserialize)]
pub struct NetworkBody {
    pub network: String,
}

#[derive(Deserialize)]
pub struct AuditQuery {
    pub limit: Option<usize>,
    pub before: Option<u64>,
}

type Answer = Result<Json<Outcome>, ApiError>;

async fn run(state: &AppState, admin: &Admin, op: Operation) -> Answer {
    Ok(Json(perform(state, admin.actor(), op).await?))
}

/// `POST /api/admin/promote`
pub async fn promote(
    State(state): State<AppState>,
    admin: Admin,
    ApiJson(body): ApiJson<UsernameBody>,
) -> Answer {
    let op = Operation::Promote {
        username: body.username,
    };
    run(&state, &admin, op).await
}

/// `POST /api/admin/demote`
pub async fn demote(
    State(state): State<AppState>,
    admin: Admin,
    ApiJson(body): ApiJson<UsernameBody>,
) -> Answer {
    let op = Operation::Demote {
        username: body.username,
    };
    run(&state, &admin, op).await
}

/// `POST /api/users/ban`
pub async fn ban(
    State(state): State<AppState>,
    admin: Admin,
    ApiJson(body): ApiJson<BanBody>,
) -> Answer {
    let op = Operation::Ban {
        username: body.username,
        reason: body.reason,
        duration_secs: body.duration_secs,
    };
    run(&state, &admin, op).await
}

/// `POST /api/users/unban`
pub async fn unban(
    State(state): State<AppState>,
    admin: Admin,
    ApiJson(body): ApiJson<UsernameBody>,
) -> Answer {
    let op = Operation::Unban {
        username: body.username,
    };
    run(&state, &admin, op).await
}

/// `GET /api/admin/bans`
pub async fn bans(State(state): State<AppState>, admin: Admin) -> Answer {
    run(&state, &admin, Operation::Bans).await
}

/// `GET /api/admin/ip-bans`
pub async fn ip_bans(State(state): State<AppState>, admin: Admin) -> Answer {
    run(&state, &admin, Operation::IpBans).await
}

/// `POST /api/admin/ip-bans`: 201 with the ban.
pub async fn add_ip_ban(
    State(state): State<AppState>,
    admin: Admin,
    ApiJson(body): ApiJson<IpBanBody>,
) -> Result<(StatusCode, Json<Outcome>), ApiError> {
    let op = Operation::IpBanAdd {
        network: body.network,
        reason: body.reason,
        duration_secs: body.duration_secs,
    };
    Ok((StatusCode::CREATED, run(&state, &admin, op).await?))
}

/// `POST /api/admin/ip-bans/remove`
pub async fn remove_ip_ban(
    State(state): State<AppState>,
    admin: Admin,
    ApiJson(body): ApiJson<NetworkBody>,
) -> Answer {
    let op = Operation::IpBanRemove {
        network: body.network,
    };
    run(&state, &admin, op).await
}

/// `GET /api/admin/audit?limit=N&before=ID`
pub async fn audit(
    State(state): State<AppState>,
    admin: Admin,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Answer {
    let Query(query) = query.map_err(|rejection| {
        ApiError::bad_request(
            "bad_request",
            format!("invalid query: {}", rejection.body_text()),
        )
    })?;
    let op = Operation::Audit {
        limit: query.limit,
        before: query.before,
    };
    run(&state, &admin, op).await
}

impl From<OpError> for ApiError {
    fn from(error: OpError) -> Self {
        let message = error.to_string();
        match error {
            OpError::UnknownUser(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown_user", message)
            }
            OpError::TargetIsAdmin(_) => {
                ApiError::new(StatusCode::CONFLICT, "target_is_admin", message)
            }
            OpError::InvalidReason(_) => ApiError::bad_request("invalid_reason", message),
            OpError::InvalidDuration(_) => ApiError::bad_request("invalid_duration", message),
            OpError::InvalidNetwork(_) => ApiError::bad_request("invalid_network", message),
            OpError::BadRequest(_) => ApiError::bad_request("bad_request", message),
            OpError::InvalidRetention(_) => ApiError::bad_request("invalid_retention", message),
            OpError::UnknownRoom(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", message),
            OpError::Forbidden => ApiError::new(StatusCode::FORBIDDEN, "forbidden", message),
            OpError::Store(e) => e.into(),
        }
    }
}
