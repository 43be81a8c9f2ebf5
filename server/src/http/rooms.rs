//! Room endpoints: list and create.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::auth;
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, Authenticated};
use crate::state::AppState;
use crate::store::{Room, StoreError};

#[derive(Deserialize)]
pub struct NewRoom {
    pub name: String,
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
}

fn view(state: &AppState, room: Room) -> Result<RoomView, StoreError> {
    Ok(RoomView {
        id: room.id.0,
        head_seq: state.store.head(room.id)?,
        name: room.name,
        created_at_ms: room.created_at_ms,
    })
}

/// `GET /api/rooms`
pub async fn list(
    State(state): State<AppState>,
    _auth: Authenticated,
) -> Result<Json<RoomList>, ApiError> {
    let rooms = state
        .store
        .rooms()?
        .into_iter()
        .map(|room| view(&state, room))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(RoomList { rooms }))
}

/// `POST /api/rooms`
pub async fn create(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiJson(new): ApiJson<NewRoom>,
) -> Result<(StatusCode, Json<RoomView>), ApiError> {
    let name = auth::normalize_room_name(&new.name)
        .map_err(|m| ApiError::bad_request("invalid_room_name", m))?;
    match state.store.create_room(&name, auth.user.id).await {
        Ok(room) => Ok((StatusCode::CREATED, Json(view(&state, room)?))),
        Err(StoreError::NameTaken) => Err(ApiError::name_taken("room name")),
        Err(e) => Err(e.into()),
    }
}
