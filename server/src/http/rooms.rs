//! Room endpoints: list (in pages, each room marked with whether the caller is in it), create
//! (rate-limited per user; the creator joins it), join and leave (durable membership). A
//! room's retention has endpoints of its own (`crate::http::retention`).

use std::collections::HashSet;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use quibble_protocol::ConversationId;
use serde::{Deserialize, Serialize};

use crate::access;
use crate::auth;
use crate::fleet::control::Control;
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, Authenticated, PageQuery};
use crate::http::retention::RetentionView;
use crate::state::AppState;
use crate::store::{Retention, Room, RoomEntry, StoreError};

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
    /// Whether the caller is a member.
    pub member: bool,
    /// How long, or how many messages, the room keeps (`crate::http::retention`).
    pub retention: RetentionView,
}

#[derive(Serialize)]
pub struct RoomList {
    pub rooms: Vec<RoomView>,
    /// The `after` for the next page; `null` on the last page.
    pub next: Option<u64>,
}

/// Answer of join and leave: whether the call changed the membership.
#[derive(Serialize)]
pub struct MembershipChange {
    pub room: u64,
    pub member: bool,
    pub changed: bool,
}

fn view(room: Room, head_seq: u64, member: bool, retention: Retention) -> RoomView {
    RoomView {
        id: room.id.0,
        name: room.name,
        created_at_ms: room.created_at_ms,
        head_seq,
        member,
        retention: retention.into(),
    }
}

/// A conversation id from the path; a bad one is a 400 JSON error.
pub fn conversation_path(
    path: Result<Path<u64>, PathRejection>,
) -> Result<ConversationId, ApiError> {
    path.map(|Path(id)| ConversationId(id))
        .map_err(|rejection| ApiError::bad_request("bad_request", rejection.body_text()))
}

/// `GET /api/rooms?limit=N&after=ID`
pub async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
    query: PageQuery<u64>,
) -> Result<Json<RoomList>, ApiError> {
    let limit = query.limit;
    let page = state
        .store
        .rooms_page(query.after.map(ConversationId), limit)
        .await?;
    let joined: HashSet<ConversationId> = state
        .store
        .memberships(auth.user.id)
        .await?
        .into_iter()
        .collect();
    let rooms = page
        .rooms
        .into_iter()
        .map(
            |RoomEntry {
                 room,
                 head_seq,
                 retention,
             }| {
                let member = joined.contains(&room.id);
                view(room, head_seq, member, retention)
            },
        )
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
        Ok(room) => {
            state.tell_fleet(Control::Joined {
                user: auth.user.id,
                conversation: room.id,
            });
            state
                .users
                .joined(&state.store, auth.user.id, room.id)
                .await;
            Ok((
                StatusCode::CREATED,
                Json(view(room, 0, true, Retention::default())),
            ))
        }
        Err(StoreError::NameTaken) => Err(ApiError::name_taken("room name")),
        Err(e) => Err(e.into()),
    }
}

/// `POST /api/rooms/{id}/join`
pub async fn join(
    State(state): State<AppState>,
    auth: Authenticated,
    path: Result<Path<u64>, PathRejection>,
) -> Result<Json<MembershipChange>, ApiError> {
    let room = conversation_path(path)?;
    access::may_join(&state.store, auth.user.id, room).await?;
    if state.store.is_member(auth.user.id, room).await? {
        return Ok(Json(MembershipChange {
            room: room.0,
            member: true,
            changed: false,
        }));
    }
    state
        .join_limiter
        .check(auth.user.id)
        .map_err(|wait| ApiError {
            message: "joining rooms too fast; try again later".into(),
            ..ApiError::rate_limited(wait)
        })?;
    let changed = state.store.join_room(auth.user.id, room).await?;
    if changed {
        state.tell_fleet(Control::Joined {
            user: auth.user.id,
            conversation: room,
        });
        state.users.joined(&state.store, auth.user.id, room).await;
    }
    Ok(Json(MembershipChange {
        room: room.0,
        member: true,
        changed,
    }))
}

/// `POST /api/rooms/{id}/leave`
pub async fn leave(
    State(state): State<AppState>,
    auth: Authenticated,
    path: Result<Path<u64>, PathRejection>,
) -> Result<Json<MembershipChange>, ApiError> {
    let room = conversation_path(path)?;
    access::may_join(&state.store, auth.user.id, room).await?;
    let changed = state.store.leave_room(auth.user.id, room).await?;
    if changed {
        state.tell_fleet(Control::Left {
            user: auth.user.id,
            conversation: room,
        });
        state.users.left(auth.user.id, room);
    }
    Ok(Json(MembershipChange {
        room: room.0,
        member: false,
        changed,
    }))
}
