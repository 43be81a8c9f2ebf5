//! Blocking over the REST API (`docs/api.md`, Blocks): block and unblock a user, and the
//! caller's block list. Methods of [`Api`], typed like the rest of it. What a block changes
//! on the realtime connection (hidden markers, no typing or presence from the blocked user) is
//! the server's doing; a hidden marker is a `ChatMessage` whose `is_hidden()` is true.

use quibble_protocol::UserId;
use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::api::Api;
use crate::error::ApiError;

/// A user as the block calls name them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BlockedUser {
    pub id: UserId,
    pub username: String,
}

/// Answer of `POST /api/users/block` and `/unblock`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BlockChange {
    pub user: BlockedUser,
    /// Whether the caller blocks the user now.
    pub blocked: bool,
    /// Whether the call changed that.
    pub changed: bool,
}

/// One entry of `GET /api/blocks`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Block {
    pub id: UserId,
    pub username: String,
    /// When the block was made, Unix ms.
    pub since_ms: u64,
}

#[derive(Deserialize)]
struct BlockList {
    blocks: Vec<Block>,
}

#[derive(Serialize)]
struct Username<'a> {
    username: &'a str,
}

impl Api {
    /// `POST /api/users/block`: stop seeing anything from `username` (ends a friendship).
    pub async fn block(&self, token: &str, username: &str) -> Result<BlockChange, ApiError> {
        let body = Username { username };
        self.call(Method::POST, "users/block", Some(token), Some(&body))
            .await
    }

    /// `POST /api/users/unblock`: see `username` again from now on.
    pub async fn unblock(&self, token: &str, username: &str) -> Result<BlockChange, ApiError> {
        let body = Username { username };
        self.call(Method::POST, "users/unblock", Some(token), Some(&body))
            .await
    }

    /// `GET /api/blocks`: the users the caller blocks, ascending by id.
    pub async fn blocks(&self, token: &str) -> Result<Vec<Block>, ApiError> {
        let list: BlockList = self
            .call(Method::GET, "blocks", Some(token), None::<&()>)
            .await?;
        Ok(list.blocks)
    }
}
