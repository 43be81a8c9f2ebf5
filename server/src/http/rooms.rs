//! Room endpoints: list (in pages) and create (rate-limited per user).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use quibble_protocol::ConversationId;
use serde::{Deserialize, Serialize};

use crate::auth;
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, Authenticated};
use crate::state::AppState;
use crate::store::{Room, RoomEntry, StoreError};

/// Rooms per page when the request names no `limit`.
pub const DEFAULT_PAGE: usize = 100;
/// The largest `limit` a request may ask for.
pub const MAX_PAGE: usize = 500;

#[derive(Deserialize)]
pub struct NewRoom {
    pub name: String,
}

/// `GET /api/rooms` query: `limit` (1..=MAX_PAGE) and `after` (a room id: the previous
/// page's `next`).
#[derive(Deserialize)]
pub struct ListQuery {
    pub limit: Option<usize>,
    pub after: Option<u64>,
}

#[derive(Serialize)]
pub struct RoomView {
    pub id: u64,
    pub name: String,
    pub created_at_ms: u64,
    pub head_seq: u64,
}

#[derive(Serialize)]
pub struct RoomList {
    pub rooms: Vec<RoomView>,
    /// The `after` for the next page; `null` on the last page.
    pub next: Option<u64>,
}

fn view(room: Room, head_seq: u64) -> RoomView {
    RoomView {
        id: room.id.0,
        name: room.name,
        created_at_ms: room.created_at_ms,
        head_seq,
    }
}

/// `GET /api/rooms?limit=N&after=ID`
pub async fn list(
    State(state): State<AppState>,
    _auth: Authenticated,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<RoomList>, ApiError> {
    let Query(query) = query.map_err(|rejection| {
        ApiError::bad_request(
            "bad_request",
            format!("invalid query: {}", rejection.body_text()),
        )
    })?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(
            "bad_request",
            format!("limit must be 1 to {MAX_PAGE}"),
        ));
    }
    let page = state
        .store
        .rooms_page(query.after.map(ConversationId), limit)
        .await?;
    let rooms = page
        .rooms
        .into_iter()
        .map(|RoomEntry { room, head_seq }| view(room, head_seq))
        .collect();
    Ok(Json(RoomList {
        rooms,
        next: page.next.map(|id| id.0),
    }))
}

/// `POST /api/rooms`
pub async fn create(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiJson(new): ApiJson<NewRoom>,
) -> Result<(StatusCode, Json<RoomView>), ApiError> {
    let name = auth::normalize_room_name(&new.name)
        .map_err(|m| ApiError::bad_request("invalid_room_name", m))?;
    state
        .room_limiter
        .check(auth.user.id)
        .map_err(|wait| ApiError {
            message: "creating rooms too fast; try again later".into(),
            ..ApiError::rate_limited(wait)
        })?;
    match state.store.create_room(&name, auth.user.id).await {
        Ok(room) => Ok((StatusCode::CREATED, Json(view(room, 0)))),
        Err(StoreError::NameTaken) => Err(ApiError::name_taken("room name")),
        Err(e) => Err(e.into()),
    }
}
