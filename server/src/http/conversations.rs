//! `GET /api/conversations`: the caller's conversation list — every room they are in and every
//! DM — most recent activity first, in pages. Each entry has the head seq, the caller's read
//! and delivered cursors, the unread count and the last message (see `crate::store::redb::summaries`).
//!
//! `GET /api/conversations/{id}/receipts`: the members' cursors of a conversation the caller
//! may read (for "seen by"), at most [`MAX_RECEIPTS`] members, leaving out those the caller
//! blocks.
//!
//! Paging: the list is ordered by (activity, id), newest first; `next` is the position of a
//! page's last entry as `ACTIVITY_MS-ID`, passed back as `after` for the entries that come
//! after it. A conversation with new activity moves to the front meanwhile, so a client that
//! pages sees each conversation at most once per pass and picks later changes up live.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use serde::Serialize;

use crate::access;
use crate::http::error::ApiError;
use crate::http::extract::{Authenticated, PageQuery};
use crate::http::rooms::conversation_path;
use crate::state::AppState;
use crate::store::{ConversationKind, Summary};

#[derive(Serialize)]
pub struct PeerView {
    pub id: u64,
    pub username: String,
}

#[derive(Serialize)]
pub struct LastView {
    pub seq: u64,
    pub author_id: u64,
    pub author: String,
    pub preview: String,
    pub sent_at_ms: u64,
}

#[derive(Serialize)]
pub struct ConversationView {
    pub id: u64,
    /// `room` or `dm`.
    pub kind: &'static str,
    /// The room's name, or the other member's username.
    pub title: String,
    /// For a DM, the other member.
    pub peer: Option<PeerView>,
    pub head_seq: u64,
    pub read_seq: u64,
    pub delivered_seq: u64,
    /// For a DM, the other member's cursors.
    pub peer_read_seq: Option<u64>,
    pub peer_delivered_seq: Option<u64>,
    pub unread: u64,
    pub last: Option<LastView>,
    pub activity_ms: u64,
}

#[derive(Serialize)]
pub struct ConversationList {
    pub conversations: Vec<ConversationView>,
    pub next: Option<String>,
}

/// A summary as the API shows it to `viewer`.
pub fn view(viewer: quibble_protocol::UserId, summary: Summary) -> ConversationView {
    let activity_ms = summary.activity_ms();
    let (kind, peer) = match summary.kind {
        ConversationKind::Room => ("room", None),
        ConversationKind::Dm(a, b) => (
            "dm",
            Some(PeerView {
                id: if a == viewer { b.0 } else { a.0 },
                username: summary.title.clone(),
            }),
        ),
    };
    ConversationView {
        id: summary.conversation.0,
        kind,
        title: summary.title,
        peer,
        head_seq: summary.head_seq,
        read_seq: summary.cursors.read,
        delivered_seq: summary.cursors.delivered,
        peer_read_seq: summary.peer_cursors.map(|c| c.read),
        peer_delivered_seq: summary.peer_cursors.map(|c| c.delivered),
        unread: summary.unread,
        last: summary.last.map(|last| LastView {
            seq: last.seq,
            author_id: last.author.0,
            author: last.author_name,
            preview: last.preview,
            sent_at_ms: last.sent_at_ms,
        }),
        activity_ms,
    }
}

/// Most members whose cursors `GET /api/conversations/{id}/receipts` lists (the first by
/// user id in a larger room).
pub const MAX_RECEIPTS: usize = 200;

#[derive(Serialize)]
pub struct ReceiptView {
    pub user_id: u64,
    pub username: String,
    pub delivered_seq: u64,
    pub read_seq: u64,
}

#[derive(Serialize)]
pub struct ReceiptList {
    pub receipts: Vec<ReceiptView>,
}

/// `GET /api/conversations/{id}/receipts`
pub async fn receipts(
    State(state): State<AppState>,
    auth: Authenticated,
    path: Result<Path<u64>, PathRejection>,
) -> Result<Json<ReceiptList>, ApiError> {
    let conversation = conversation_path(path)?;
    access::may_read(&state.store, auth.user.id, conversation).await?;
    let members = state
        .store
        .member_cursors(conversation, MAX_RECEIPTS)
        .await?;
    // Nothing of a blocked user reaches the blocker, receipts included.
    let blocked = state.store.blocked_users(auth.user.id).await?;
    Ok(Json(ReceiptList {
        receipts: members
            .into_iter()
            .filter(|m| !blocked.contains(&m.user))
            .map(|m| ReceiptView {
                user_id: m.user.0,
                username: m.username,
                delivered_seq: m.cursors.delivered,
                read_seq: m.cursors.read,
            })
            .collect(),
    }))
}

/// Parses `ACTIVITY_MS-ID`.
fn position(after: &str) -> Option<(u64, u64)> {
    let (ms, id) = after.split_once('-')?;
    Some((ms.parse().ok()?, id.parse().ok()?))
}

/// `GET /api/conversations?limit=N&after=POSITION`
pub async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
    query: PageQuery<String>,
) -> Result<Json<ConversationList>, ApiError> {
    let limit = query.limit;
    let after = match query.after.as_deref() {
        None => None,
        Some(text) => Some(position(text).ok_or_else(|| {
            ApiError::bad_request("bad_request", "after must be a page's next: ACTIVITY_MS-ID")
        })?),
    };
    let summaries = state.store.summaries(auth.user.id).await?;
    let mut page: Vec<Summary> = summaries
        .into_iter()
        .filter(|s| after.is_none_or(|a| (s.activity_ms(), s.conversation.0) < a))
        .take(limit + 1)
        .collect();
    let next = if page.len() > limit {
        page.truncate(limit);
        page.last()
            .map(|s| format!("{}-{}", s.activity_ms(), s.conversation.0))
    } else {
        None
    };
    Ok(Json(ConversationList {
        conversations: page
            .into_iter()
            .map(|summary| view(auth.user.id, summary))
            .collect(),
        next,
    }))
}
