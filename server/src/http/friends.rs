//! Friend endpoints: `POST /api/users/add` (a request; accepts if the other asked first, which
//! opens the pair's DM), `POST /api/users/remove` (decline, cancel or unfriend),
//! `POST /api/users/dm` (the DM with a user, as `crate::access::dm_with` allows) and
//! `GET /api/friends`. Adding is rate-limited per user (a request lands in someone else's
//! list); both users hear every change live on their control streams (`crate::chat::users`).

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use crate::access;
use crate::fleet::control::Control;
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, Authenticated};
use crate::state::AppState;
use crate::store::{Added, FriendState, Removed, User};

#[derive(Deserialize)]
pub struct Target {
    pub username: String,
}

#[derive(Serialize)]
pub struct FriendView {
    pub id: u64,
    pub username: String,
    /// The pair's DM conversation (always set for friends).
    pub dm: Option<u64>,
}

#[derive(Serialize)]
pub struct FriendList {
    pub friends: Vec<FriendView>,
    /// Requests others made to the caller.
    pub incoming: Vec<FriendView>,
    /// Requests the caller made.
    pub outgoing: Vec<FriendView>,
}

#[derive(Serialize)]
pub struct FriendChange {
    /// `requested`, `already_requested`, `accepted`, `already_friends` (add);
    /// `declined`, `cancelled`, `unfriended`, `nothing` (remove).
    pub status: &'static str,
    pub user: FriendView,
}

/// The user named `username`, other than the caller.
async fn target(state: &AppState, caller: &User, username: &str) -> Result<User, ApiError> {
    let other = state
        .store
        .user_by_name(username)
        .await?
        .ok_or_else(|| ApiError::unknown_user(username))?;
    if other.id == caller.id {
        return Err(ApiError::bad_request(
            "cannot_befriend_self",
            "you cannot add or remove yourself",
        ));
    }
    Ok(other)
}

/// `POST /api/users/add {"username"}`
pub async fn add(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiJson(body): ApiJson<Target>,
) -> Result<Json<FriendChange>, ApiError> {
    let other = target(&state, &auth.user, &body.username).await?;
    state
        .friend_limiter
        .check(auth.user.id)
        .map_err(|wait| ApiError {
            message: "adding friends too fast; try again later".into(),
            ..ApiError::rate_limited(wait)
        })?;
    let added = state.store.add_friend(auth.user.id, other.id).await?;
    let (status, dm) = match added {
        Added::Requested => ("requested", None),
        Added::AlreadyRequested => ("already_requested", None),
        Added::Accepted(dm) => ("accepted", Some(dm)),
        Added::AlreadyFriends(dm) => ("already_friends", Some(dm)),
    };
    if matches!(added, Added::Requested | Added::Accepted(_)) {
        state.tell_fleet(Control::FriendsChanged {
            a: auth.user.id,
            b: other.id,
            dm,
        });
        state
            .users
            .friends_changed(&state.store, auth.user.id, other.id, dm)
            .await;
    }
    Ok(Json(FriendChange {
        status,
        user: FriendView {
            id: other.id.0,
            username: other.username,
            dm: dm.map(|d| d.0),
        },
    }))
}

/// `POST /api/users/remove {"username"}`
pub async fn remove(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiJson(body): ApiJson<Target>,
) -> Result<Json<FriendChange>, ApiError> {
    let other = target(&state, &auth.user, &body.username).await?;
    let removed = state.store.remove_friend(auth.user.id, other.id).await?;
    let status = match removed {
        Removed::Declined => "declined",
        Removed::Cancelled => "cancelled",
        Removed::Unfriended => "unfriended",
        Removed::Nothing => "nothing",
    };
    if removed != Removed::Nothing {
        state.tell_fleet(Control::FriendsChanged {
            a: auth.user.id,
            b: other.id,
            dm: None,
        });
        state
            .users
            .friends_changed(&state.store, auth.user.id, other.id, None)
            .await;
    }
    let dm = state.store.dm_between(auth.user.id, other.id).await?;
    Ok(Json(FriendChange {
        status,
        user: FriendView {
            id: other.id.0,
            username: other.username,
            dm: dm.map(|d| d.0),
        },
    }))
}

#[derive(Serialize)]
pub struct DmView {
    pub conversation: u64,
    pub user: FriendView,
    /// Whether the caller may send in it now (they are friends).
    pub can_send: bool,
}

/// `POST /api/users/dm {"username"}`
pub async fn dm(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiJson(body): ApiJson<Target>,
) -> Result<Json<DmView>, ApiError> {
    let other = target(&state, &auth.user, &body.username).await?;
    let (dm, can_send) = access::dm_with(&state.store, auth.user.id, other.id).await?;
    Ok(Json(DmView {
        conversation: dm.0,
        user: FriendView {
            id: other.id.0,
            username: other.username,
            dm: Some(dm.0),
        },
        can_send,
    }))
}

/// `GET /api/friends`
pub async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<FriendList>, ApiError> {
    let mut list = FriendList {
        friends: Vec::new(),
        incoming: Vec::new(),
        outgoing: Vec::new(),
    };
    for entry in state.store.friends(auth.user.id).await? {
        let view = FriendView {
            id: entry.user.0,
            username: entry.username,
            dm: entry.dm.map(|d| d.0),
        };
        match entry.state {
            FriendState::Friends => list.friends.push(view),
            FriendState::Incoming => list.incoming.push(view),
            FriendState::Outgoing => list.outgoing.push(view),
        }
    }
    Ok(Json(list))
}
