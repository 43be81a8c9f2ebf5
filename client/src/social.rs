//! The social half of the REST API (`docs/api.md`): friends and requests, the DM with a
//! friend, room membership and the conversation list with unread counts. Methods of [`Api`],
//! typed like the rest of it; live changes to all of this come on the realtime connection as
//! session events.

use quibble_protocol::{ConversationId, UserId};
use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::api::Api;
use crate::error::ApiError;

/// Largest page of `GET /api/conversations`.
pub const MAX_CONVERSATION_PAGE: u32 = 500;
/// Pages [`Api::conversations`] reads at most (the server caps a user's conversations at 1000
/// rooms plus their DMs, so this is never the limit for a well-behaved server).
const MAX_CONVERSATION_PAGES: usize = 16;

/// Another user as the friend calls show them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Friend {
    pub id: UserId,
    pub username: String,
    /// The pair's DM, once they were friends.
    pub dm: Option<ConversationId>,
}

/// `GET /api/friends`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Friends {
    pub friends: Vec<Friend>,
    /// Requests others made to the caller.
    pub incoming: Vec<Friend>,
    /// Requests the caller made.
    pub outgoing: Vec<Friend>,
}

/// What an add or remove did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FriendOutcome {
    Requested,
    AlreadyRequested,
    /// They had asked the caller: now friends.
    Accepted,
    AlreadyFriends,
    /// Their request was declined.
    Declined,
    /// The caller's request was withdrawn.
    Cancelled,
    Unfriended,
    Nothing,
    /// An outcome this client does not know yet.
    #[serde(other)]
    Other,
}

/// Answer of `POST /api/users/add` and `/remove`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FriendChange {
    pub status: FriendOutcome,
    pub user: Friend,
}

/// Answer of `POST /api/users/dm`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Dm {
    pub conversation: ConversationId,
    pub user: Friend,
    /// False after unfriending: the DM stays readable, sends are refused.
    pub can_send: bool,
}

/// Answer of `POST /api/rooms/{id}/join` and `/leave`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Membership {
    pub room: ConversationId,
    pub member: bool,
    /// False when the caller already was (or was not) a member.
    pub changed: bool,
}

/// A room or a DM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Room,
    Dm,
    #[serde(other)]
    Other,
}

/// The other member of a DM.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Peer {
    pub id: UserId,
    pub username: String,
}

/// A conversation's newest message, in the list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Last {
    pub seq: u64,
    pub author_id: UserId,
    pub author: String,
    /// The body's first 100 characters.
    pub preview: String,
    pub sent_at_ms: u64,
}

/// One entry of `GET /api/conversations`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Conversation {
    pub id: ConversationId,
    pub kind: Kind,
    /// The room's name or the other member's username.
    pub title: String,
    pub peer: Option<Peer>,
    pub head_seq: u64,
    pub read_seq: u64,
    pub delivered_seq: u64,
    pub peer_read_seq: Option<u64>,
    pub peer_delivered_seq: Option<u64>,
    /// Messages after `read_seq` not written by the caller.
    pub unread: u64,
    pub last: Option<Last>,
    pub activity_ms: u64,
}

/// One page of `GET /api/conversations`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ConversationPage {
    pub conversations: Vec<Conversation>,
    /// The `after` of the next page; `None` on the last.
    pub next: Option<String>,
}

#[derive(Serialize)]
struct Username<'a> {
    username: &'a str,
}

impl Api {
    /// `GET /api/friends`: friends, incoming and outgoing requests.
    pub async fn friends(&self, token: &str) -> Result<Friends, ApiError> {
        self.call(Method::GET, "friends", Some(token), None::<&()>)
            .await
    }

    /// `POST /api/users/add`: ask `username` to be friends, or accept their request.
    pub async fn add_friend(&self, token: &str, username: &str) -> Result<FriendChange, ApiError> {
        let body = Username { username };
        self.call(Method::POST, "users/add", Some(token), Some(&body))
            .await
    }

    /// `POST /api/users/remove`: decline their request, cancel the caller's, or unfriend.
    pub async fn remove_friend(
        &self,
        token: &str,
        username: &str,
    ) -> Result<FriendChange, ApiError> {
        let body = Username { username };
        self.call(Method::POST, "users/remove", Some(token), Some(&body))
            .await
    }

    /// `POST /api/users/dm`: the DM with `username` (`not_friends` if never friends).
    pub async fn dm(&self, token: &str, username: &str) -> Result<Dm, ApiError> {
        let body = Username { username };
        self.call(Method::POST, "users/dm", Some(token), Some(&body))
            .await
    }

    /// `POST /api/rooms/{id}/join`: become a member of a room.
    pub async fn join_room(
        &self,
        token: &str,
        room: ConversationId,
    ) -> Result<Membership, ApiError> {
        let path = format!("rooms/{}/join", room.0);
        self.call(Method::POST, &path, Some(token), None::<&()>)
            .await
    }

    /// `POST /api/rooms/{id}/leave`: stop being a member of a room.
    pub async fn leave_room(
        &self,
        token: &str,
        room: ConversationId,
    ) -> Result<Membership, ApiError> {
        let path = format!("rooms/{}/leave", room.0);
        self.call(Method::POST, &path, Some(token), None::<&()>)
            .await
    }

    /// `GET /api/conversations?limit=&after=`: one page of the caller's conversations, most
    /// recent activity first.
    pub async fn conversations_page(
        &self,
        token: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<ConversationPage, ApiError> {
        let path = match after {
            // The cursor is `ACTIVITY_MS-ID`: digits and a dash, nothing to escape.
            Some(after) => format!("conversations?limit={limit}&after={after}"),
            None => format!("conversations?limit={limit}"),
        };
        self.call(Method::GET, &path, Some(token), None::<&()>)
            .await
    }

    /// Every conversation of the caller, most recent activity first.
    pub async fn conversations(&self, token: &str) -> Result<Vec<Conversation>, ApiError> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_CONVERSATION_PAGES {
            let page = self
                .conversations_page(token, after.as_deref(), MAX_CONVERSATION_PAGE)
                .await?;
            all.extend(page.conversations);
            match page.next {
                Some(next) if after.as_ref() != Some(&next) => after = Some(next),
                _ => break,
            }
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_types_match_the_api_document() {
        let change: FriendChange = serde_json::from_str(
            r#"{"status":"accepted","user":{"id":4,"username":"bob","dm":9}}"#,
        )
        .unwrap();
        assert_eq!(change.status, FriendOutcome::Accepted);
        assert_eq!(change.user.dm, Some(ConversationId(9)));
        let page: ConversationPage = serde_json::from_str(
            r#"{"conversations":[{"id":9,"kind":"dm","title":"bob",
                "peer":{"id":4,"username":"bob"},"head_seq":3,"read_seq":1,"delivered_seq":2,
                "peer_read_seq":3,"peer_delivered_seq":3,"unread":2,
                "last":{"seq":3,"author_id":4,"author":"bob","preview":"hi","sent_at_ms":5},
                "activity_ms":5}],"next":"5-9"}"#,
        )
        .unwrap();
        assert_eq!(page.conversations[0].kind, Kind::Dm);
        assert_eq!(page.conversations[0].unread, 2);
        assert_eq!(page.next.as_deref(), Some("5-9"));
        let membership: Membership =
            serde_json::from_str(r#"{"room":3,"member":true,"changed":false}"#).unwrap();
        assert!(!membership.changed);
    }
}
