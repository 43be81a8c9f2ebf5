//! `GET` and `PUT /api/rooms/{id}/retention`: a room's retention (how long, or how many of its
//! newest messages, it keeps; see `crate::store::retention`), which the background sweep
//! (`crate::retention`) applies.
//!
//! Any signed-in user may read a room's retention (rooms are public; the room list shows it
//! too). Setting it is [`access::may_set_retention`]'s rule: the room's creator or an admin
//! (403 `forbidden` for anyone else, 404 `not_found` for no such room; a DM has none). Values
//! are checked here against [`MAX_AGE_SECONDS`] and [`MAX_MESSAGES`] (400
//! `invalid_retention`); `null` or an absent key turns that rule off. The store audits each
//! change (`set_retention`, with the new values as the reason).

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use quibble_protocol::ConversationId;
use serde::{Deserialize, Serialize};

use crate::access;
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, Authenticated};
use crate::http::rooms::conversation_path;
use crate::state::AppState;
use crate::store::{Actor, Retention, StoreError};

/// The longest `max_age_seconds`: 100 years.
pub const MAX_AGE_SECONDS: u64 = 100 * 366 * 24 * 3600;
/// The largest `max_messages`.
pub const MAX_MESSAGES: u64 = 1_000_000_000;

/// A retention as the API shows and takes it (`null`: that rule is off).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionView {
    #[serde(default)]
    pub max_age_seconds: Option<u64>,
    #[serde(default)]
    pub max_messages: Option<u64>,
}

impl From<Retention> for RetentionView {
    fn from(retention: Retention) -> Self {
        RetentionView {
            max_age_seconds: retention.max_age_ms.map(|ms| ms / 1000),
            max_messages: retention.max_messages,
        }
    }
}

impl RetentionView {
    /// The setting, if its values are within bounds; else a 400 `invalid_retention`.
    pub fn to_retention(self) -> Result<Retention, ApiError> {
        let invalid = |message: String| ApiError::bad_request("invalid_retention", message);
        if let Some(age) = self.max_age_seconds
            && !(1..=MAX_AGE_SECONDS).contains(&age)
        {
            return Err(invalid(format!(
                "max_age_seconds must be from 1 to {MAX_AGE_SECONDS} (or null for no limit)"
            )));
        }
        if let Some(count) = self.max_messages
            && !(1..=MAX_MESSAGES).contains(&count)
        {
            return Err(invalid(format!(
                "max_messages must be from 1 to {MAX_MESSAGES} (or null for no limit)"
            )));
        }
        Ok(Retention {
            max_age_ms: self.max_age_seconds.map(|s| s * 1000),
            max_messages: self.max_messages,
        })
    }
}

/// The answer of both methods.
#[derive(Serialize)]
pub struct RoomRetention {
    pub room: u64,
    #[serde(flatten)]
    pub retention: RetentionView,
}

/// `GET /api/rooms/{id}/retention`
pub async fn get(
    State(state): State<AppState>,
    _auth: Authenticated,
    path: Result<Path<u64>, PathRejection>,
) -> Result<Json<RoomRetention>, ApiError> {
    let room = conversation_path(path)?;
    if state.store.room(room).await?.is_none() {
        return Err(not_a_room(room));
    }
    let retention = state.store.retention(room).await?;
    Ok(Json(RoomRetention {
        room: room.0,
        retention: retention.into(),
    }))
}

/// `PUT /api/rooms/{id}/retention`
pub async fn put(
    State(state): State<AppState>,
    auth: Authenticated,
    path: Result<Path<u64>, PathRejection>,
    ApiJson(body): ApiJson<RetentionView>,
) -> Result<Json<RoomRetention>, ApiError> {
    let room = conversation_path(path)?;
    access::may_set_retention(&state.store, &auth.user, room).await?;
    let retention = body.to_retention()?;
    match state
        .store
        .set_retention(Actor::User(auth.user.id), room, retention)
        .await
    {
        Ok(()) => Ok(Json(RoomRetention {
            room: room.0,
            retention: retention.into(),
        })),
        Err(StoreError::NotFound) => Err(not_a_room(room)),
        Err(e) => Err(e.into()),
    }
}

fn not_a_room(room: ConversationId) -> ApiError {
    ApiError::from(access::Refusal::Unknown(room.0))
}
