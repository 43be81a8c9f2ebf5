//! Block endpoints: `POST /api/users/block` and `POST /api/users/unblock` (`{"username"}`),
//! `GET /api/blocks`. A block is stored (ending any friendship or request between the two, see
//! `crate::store`'s blocks), then applied at once to every live connection of the blocker
//! through the user hub (`crate::chat::users`), which is what filters delivery; unblocking
//! lifts it the same way. Both are idempotent (`changed` says whether anything changed).

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use crate::fleet::control::Control;
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, Authenticated};
use crate::state::AppState;
use crate::store::User;

#[derive(Deserialize)]
pub struct Target {
    pub username: String,
}

#[derive(Serialize)]
pub struct UserView {
    pub id: u64,
    pub username: String,
}

#[derive(Serialize)]
pub struct BlockChange {
    pub user: UserView,
    /// Whether the caller blocks the user now.
    pub blocked: bool,
    /// Whether this call changed that.
    pub changed: bool,
}

#[derive(Serialize)]
pub struct BlockView {
    pub id: u64,
    pub username: String,
    pub since_ms: u64,
}

#[derive(Serialize)]
pub struct BlockList {
    pub blocks: Vec<BlockView>,
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
            "cannot_block_self",
            "you cannot block or unblock yourself",
        ));
    }
    Ok(other)
}

/// `POST /api/users/block {"username"}`
pub async fn block(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiJson(body): ApiJson<Target>,
) -> Result<Json<BlockChange>, ApiError> {
    let other = target(&state, &auth.user, &body.username).await?;
    let done = state.store.block(auth.user.id, other.id).await?;
    if done.changed {
        state.tell_fleet(Control::Blocked {
            blocker: auth.user.id,
            blocked: other.id,
            on: true,
        });
        state.users.set_blocked(auth.user.id, other.id, true);
    }
    if done.ended_friendship {
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
    Ok(Json(BlockChange {
        user: UserView {
            id: other.id.0,
            username: other.username,
        },
        blocked: true,
        changed: done.changed,
    }))
}

/// `POST /api/users/unblock {"username"}`
pub async fn unblock(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiJson(body): ApiJson<Target>,
) -> Result<Json<BlockChange>, ApiError> {
    let other = target(&state, &auth.user, &body.username).await?;
    let changed = state.store.unblock(auth.user.id, other.id).await?;
    if changed {
        state.tell_fleet(Control::Blocked {
            blocker: auth.user.id,
            blocked: other.id,
            on: false,
        });
        state.users.set_blocked(auth.user.id, other.id, false);
    }
    Ok(Json(BlockChange {
        user: UserView {
            id: other.id.0,
            username: other.username,
        },
        blocked: false,
        changed,
    }))
}

/// `GET /api/blocks`
pub async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<BlockList>, ApiError> {
    let blocks = state
        .store
        .block_list(auth.user.id)
        .await?
        .into_iter()
        .map(|entry| BlockView {
            id: entry.user.0,
            username: entry.username,
            since_ms: entry.since_ms,
        })
        .collect();
    Ok(Json(BlockList { blocks }))
}
