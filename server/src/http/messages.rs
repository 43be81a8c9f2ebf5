//! `DELETE /api/conversations/{id}/messages/{seq}`: delete a message. The rule is
//! [`access::may_delete`] (its author, or an admin; 403 `forbidden` for anyone else, 404
//! `not_found` for no such conversation or seq). The store replaces the message with its
//! tombstone and erases the text from the file before answering; its commit hook sends `Deleted`
//! to the conversation's joined streams. Deleting a tombstone again answers the same and
//! changes nothing. Users (not admins) are rate-limited: `delete_burst`, then
//! `deletes_per_hour` (429 with `Retry-After`), since each deletion makes the store overwrite
//! its file's free pages.
//!
//! When the deleted message was the conversation's last one, the members' conversation lists
//! get the entry afresh, so their preview drops the text. An admin deleting someone else's
//! message is a moderation action: the store records it in the audit log with the deletion.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use quibble_protocol::ConversationId;
use serde::Serialize;

use crate::access::{self, DeleteAs};
use crate::fleet::control::Control;
use crate::http::error::ApiError;
use crate::http::extract::Authenticated;
use crate::state::AppState;
use crate::store::{Actor, Role};

#[derive(Serialize)]
pub struct DeletedView {
    pub conversation: u64,
    pub seq: u64,
    pub deleted: bool,
}

/// `DELETE /api/conversations/{id}/messages/{seq}`
pub async fn delete(
    State(state): State<AppState>,
    auth: Authenticated,
    path: Result<Path<(u64, u64)>, PathRejection>,
) -> Result<Json<DeletedView>, ApiError> {
    let Path((id, seq)) =
        path.map_err(|rejection| ApiError::bad_request("bad_request", rejection.body_text()))?;
    let conversation = ConversationId(id);
    let (message, authority) =
        access::may_delete(&state.store, &auth.user, conversation, seq).await?;
    // Only a change costs a quota (a repeat answers the same at once).
    if !message.is_deleted() && auth.user.role != Role::Admin {
        state
            .delete_limiter
            .check(auth.user.id)
            .map_err(ApiError::rate_limited)?;
    }
    let moderator = (authority == DeleteAs::Admin).then_some(Actor::User(auth.user.id));
    let deletion = state
        .store
        .delete_message(conversation, seq, moderator)
        .await?;
    if deletion.changed && state.store.head(conversation).await? == seq {
        state.tell_fleet(Control::LastMessageDeleted { conversation });
        state
            .users
            .last_message_deleted(&state.store, conversation)
            .await;
    }
    Ok(Json(DeletedView {
        conversation: id,
        seq,
        deleted: true,
    }))
}
